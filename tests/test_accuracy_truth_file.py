"""Scoring an analyst's own files against a truth file: a generated scenario written out
with its truth scores exactly as the generator does; a kind of truth left out is not
scored; a bad file is refused with its reason."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import msgspec
import pytest

from benchmarks import accuracy
from benchmarks.scenario import DEFAULT_OUTAGE, Scenario, ScenarioConfig, Truth
from benchmarks.scoring import SCORED, Context, score_against, truth_summary
from benchmarks.sweep_grid import Sweep
from benchmarks.truth_file import load_truth, write_truth_file
from benchmarks.writers import write_files
from models.settings import ConfigError

SCENARIO = {"parcels": 600, "days": 8, "seed": 5}
SWEEPS = [Sweep(name="no_movement_hours", detector="NO_MOVEMENT",
                grid={"no_movement_hours": [24, 72, 96]}),
          Sweep(name="cluster_min_share", detector="WEATHER_DELAY_CLUSTER",
                grid={"cluster_min_share": [0, 0.05]})]
HOUR = 3_600_000
T0 = 1_793_462_400_000


def test_a_generated_scenario_scored_from_its_files_gives_the_generators_figures(tmp_path):
    truth_path = tmp_path / "truth.json"
    generated = accuracy.measure(**SCENARIO, sweeps=SWEEPS[:1], quick=True,
                                 outage=DEFAULT_OUTAGE, truth_file=truth_path,
                                 show_progress=False)
    inputs = tmp_path / "inputs"
    write_files(Scenario(ScenarioConfig(**SCENARIO, outage=DEFAULT_OUTAGE)), inputs,
                show_progress=False)
    from_files = accuracy.measure_files(inputs, truth_path, SWEEPS[:1], quick=True,
                                        show_progress=False)
    assert [r["setting"] for r in from_files["runs"]] == [
        {}, {"no_movement_hours": 24}, {"no_movement_hours": 72}]  # --quick: two points
    assert from_files["runs"] == generated["runs"]  # every figure, intervals and delays too
    assert from_files["truth"] == generated["truth"]
    defaults = from_files["runs"][0]["detectors"]
    assert {"FEED_SILENT", "PICKUP_OVERDUE", accuracy.DWELL, accuracy.DWELL_VS_STALLS} <= set(
        defaults)
    assert sum(f["found"] + f["missed"] for f in defaults.values()) > 50

    # Without clusters in the truth, the cluster sweep is left out and so are its figures.
    data = json.loads(truth_path.read_text(encoding="utf-8"))
    del data["clusters"]
    fewer = tmp_path / "no-clusters.json"
    fewer.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    partial = accuracy.measure_files(inputs, fewer, SWEEPS[1:], show_progress=False)
    assert partial["sweeps_left_out"] == ["cluster_min_share"] and len(partial["runs"]) == 1
    assert partial["truth"]["storms"] is None
    expected = {d: f for d, f in defaults.items() if d != "WEATHER_DELAY_CLUSTER"}
    assert partial["runs"][0]["detectors"] == expected
    accuracy.write_report(partial, tmp_path / "report", "the command")
    text = (tmp_path / "report" / "accuracy.md").read_text(encoding="utf-8")
    assert f"Inputs: `{inputs}`" in text and "Sweeps left out" in text
    assert "WEATHER_DELAY_CLUSTER" not in text


def dwell(status: str, waybill: str, last_scan_ts: int, event_ts: int, **more) -> dict:
    return {"type": "DWELL_ANOMALY", "status": status, "waybill": waybill,
            "last_scan_ts": last_scan_ts, "event_ts": event_ts, **more}


def test_the_truth_file_keeps_all_that_scoring_reads(tmp_path):
    truth = Truth(
        alerts=[dwell("FIRING", "SF1", T0, T0 + 30 * HOUR, ambiguous=False, threshold_ms=1),
                dwell("RESOLVED", "SF1", T0, T0 + 40 * HOUR),
                dwell("FIRING", "SF2", T0, T0 + 20 * HOUR, ambiguous=True),
                {"type": "FEED_SILENT", "status": "FIRING", "carrier": "ZTO", "event_ts": T0},
                {"type": "PICKUP_OVERDUE", "status": "RESOLVED", "waybill": "SF3",
                 "event_ts": T0}],
        counts=collections.Counter(final_watermark=T0 + 200 * HOUR, parcels=3),
        bad_routes=["JT:广州>上海"], stalls=[{"waybill": "SF1", "since_ts": T0}],
        clusters=[{"type": "WEATHER_DELAY_CLUSTER", "city": "杭州", "start_ts": T0,
                   "end_ts": T0 + HOUR, "cause": "WEATHER", "weather_event_id": "wx-1",
                   "waybills": ["SF2"]}],
        route_deliveries=collections.Counter({"JT:广州>上海": 60}),
        dwell_stalls=[{"waybill": "SF1", "last_scan_ts": T0, "warnable": True,
                       "threshold_ms": 30 * HOUR}])
    context = Context(frozenset(SCORED), T0, {"JT:广州>上海": 0.08})
    write_truth_file(truth, context, tmp_path / "truth.json")
    loaded, loaded_context = load_truth(tmp_path / "truth.json")
    assert loaded_context == context
    got = [dwell("FIRING", "SF1", T0, T0 + 31 * HOUR), dwell("RESOLVED", "SF1", T0, T0 + 40 * HOUR),
           dwell("FIRING", "SF2", T0, T0 + 21 * HOUR),
           {"type": "FEED_SILENT", "status": "FIRING", "carrier": "ZTO", "event_ts": T0},
           {"type": "PICKUP_OVERDUE", "status": "RESOLVED", "waybill": "SF3", "event_ts": T0},
           {"type": "ROUTE_DAMAGE_RATE", "status": "FIRING", "event_ts": T0 + HOUR,
            "details": {"route_id": "JT:广州>上海"}},
           {"type": "WEATHER_DELAY_CLUSTER", "status": "FIRING", "alert_id": "c1",
            "event_ts": T0 + HOUR, "details": {"city": "杭州"}},
           stalled("SF1", T0 + 72 * HOUR)]
    for alert in got:
        if alert["type"] == "DWELL_ANOMALY":
            alert["details"] = {"last_scan_ts": alert.pop("last_scan_ts")}
    figures = score_against(got, loaded, loaded_context, {})
    assert figures == score_against(got, truth, context, {})
    assert set(figures) == set(SCORED)
    assert (figures["DWELL_ANOMALY"]["found"], figures["DWELL_ANOMALY"]["ambiguous"],
            figures["DWELL_ANOMALY"]["resolved"]) == (1, 1, 1)
    assert figures["PICKUP_OVERDUE"]["resolved_expected"] == 1
    assert loaded.clusters[0]["waybills"] == ["SF2"] and loaded.bad_routes == ["JT:广州>上海"]


def stalled(waybill: str, ts: int) -> dict:
    return {"type": "NO_MOVEMENT", "status": "FIRING", "waybill": waybill, "event_ts": ts}


def test_only_the_kinds_of_truth_the_file_holds_are_scored(tmp_path):
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({
        "counts": {"final_watermark": T0 + 30 * 24 * HOUR},
        "stalls": [{"waybill": "SF1", "since_ts": T0}, {"waybill": "SF2", "since_ts": T0}],
        "alerts": {"SIGNED_DISPUTED": []},  # labelled, and none
    }), encoding="utf-8")
    truth, context = load_truth(path)
    alerts = [stalled("SF1", T0 + 72 * HOUR), stalled("SF3", T0),
              {"type": "SIGNED_DISPUTED", "status": "FIRING", "waybill": "SF4",
               "event_ts": T0, "details": {"dispute_ts": T0}},
              {"type": "WEATHER_DELAY_CLUSTER", "status": "FIRING", "alert_id": "c1",
               "event_ts": T0, "details": {"city": "杭州"}}]
    figures = score_against(alerts, truth, context, {})
    assert set(figures) == {"NO_MOVEMENT", "SIGNED_DISPUTED"}
    stalls = figures["NO_MOVEMENT"]
    assert (stalls["found"], stalls["false_alarms"], stalls["missed"]) == (1, 1, 1)
    assert stalls["delay_hours_median"] == 72
    disputes = figures["SIGNED_DISPUTED"]
    assert (disputes["found"], disputes["false_alarms"], disputes["precision"]) == (0, 1, 0.0)
    assert truth_summary(truth, context) == {
        "stalls": 2, "signed_disputed": 0, "bad_routes": None, "storms": None,
        "feed_outages": 0, "backfilled_parcels": 0}


def test_routes_are_judged_by_their_true_damage_rate_from_the_file(tmp_path):
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"start_ts": T0, "routes": {
        "JT:广州>上海": {"deliveries": 400, "damage_rate": 0.08},
        "SF:北京>上海": {"deliveries": 900, "damage_rate": 0.001},
        "YTO:杭州>成都": {"deliveries": 80, "damage_rate": 0.03}}}, ensure_ascii=False),
        encoding="utf-8")
    truth, context = load_truth(path)
    flagged = [{"type": "ROUTE_DAMAGE_RATE", "status": "FIRING", "event_ts": T0 + 10 * HOUR,
                "details": {"route_id": route}} for route in ("JT:广州>上海", "SF:北京>上海")]
    routes = score_against(flagged, truth, context, {})["ROUTE_DAMAGE_RATE"]
    assert (routes["found"], routes["false_alarms"], routes["missed"]) == (1, 1, 1)
    assert routes["delays_hours"] == [10.0]
    strict = score_against(flagged, truth, context, {"damage_rate_threshold": 0.05})
    assert strict["ROUTE_DAMAGE_RATE"]["missed"] == 0  # at 5% the 3% route is not bad


@pytest.mark.parametrize(("truth", "reason"), [
    ({"stals": []}, "unknown field `stals`"),
    ({"alerts": {"NO_SUCH_TYPE": []}}, "Invalid enum value 'NO_SUCH_TYPE'"),
    ({"stalls": [{"waybill": "SF1", "since_ts": T0}]}, "stalls need counts.final_watermark"),
    ({"routes": {"JT:广州>上海": {"deliveries": 1, "damage_rate": 0.1}}}, "routes need start_ts"),
    ({"start_ts": T0, "routes": {"JT:广州>上海": {"deliveries": 1, "damage_rate": 2}}},
     "Expected `float` <= 1"),
    ({"alerts": {"FEED_SILENT": [{"event_ts": T0, "waybill": "SF1"}]}},
     "alerts.FEED_SILENT[0] has no carrier"),
    ({"alerts": {"DWELL_ANOMALY": [{"event_ts": T0, "waybill": "SF1"}]}},
     "has no last_scan_ts"),
    ({"alerts": {"SIGNED_DISPUTED": [{"waybill": "SF1"}]}}, "missing required field `event_ts`"),
    ({"clusters": [{"city": "杭州", "start_ts": T0, "end_ts": T0 - 1}]}, "ends before it starts"),
    ({"stalls": [{"waybill": "SF1", "since_ts": "yesterday"}],
      "counts": {"final_watermark": T0}}, "Expected `int`, got `str`"),
])
def test_a_bad_truth_file_is_refused_with_its_reason(tmp_path, truth, reason):
    path = tmp_path / "truth.json"
    path.write_bytes(msgspec.json.encode(truth))
    with pytest.raises(ConfigError) as refused:
        load_truth(path)
    message = str(refused.value)
    assert reason in message and "\n" not in message and str(path) in message


@pytest.mark.parametrize("bad", ["truth", "sweeps", "inputs"])
def test_the_command_line_stops_on_a_bad_file_with_one_line_and_exit_code_2(tmp_path, bad):
    inputs, truth, sweeps = tmp_path / "in", tmp_path / "truth.json", tmp_path / "sweeps.toml"
    inputs.mkdir()
    if bad != "inputs":
        (inputs / "scans.jsonl").write_text("", encoding="utf-8")
    truth.write_text('{"stalls": [' if bad == "truth" else "{}", encoding="utf-8")
    sweeps.write_text("[[sweep]]\nname = 1\n" if bad == "sweeps" else
                      '[[sweep]]\nname = "a"\ndetector = "NO_MOVEMENT"\n'
                      "grid = { no_movement_hours = [24] }\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "benchmarks.accuracy", "--inputs", inputs,
                           "--truth", truth, "--sweeps", sweeps, "--json", tmp_path / "out.json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("benchmarks.accuracy: error: ")
    assert {"truth": str(truth), "sweeps": str(sweeps), "inputs": "no scans.jsonl"}[bad] in (
        done.stderr)
    assert not (tmp_path / "out.json").exists()
