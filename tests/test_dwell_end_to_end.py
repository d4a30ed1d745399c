"""DWELL_ANOMALY through `replay`, against the generator's truth: the contract's definition
applied to the generated scans with exact quantiles (silences within 5% of their threshold
left out as ambiguous). The legs' history is made short (`lane_min_samples` 5) so that a
small scenario has legs to judge; both sides use the same setting."""

from __future__ import annotations

from benchmarks import accuracy
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import write_files

from conftest import cli, cli_env, read_jsonl, replay_inputs

MIN_SAMPLES = 5
SCENARIO = ScenarioConfig(parcels=3000, days=30, seed=13, stall_scale=6, merchant=None,
                          lane_min_samples=MIN_SAMPLES)


def test_replay_warns_of_exactly_the_silences_the_definition_gives(tmp_path):
    generated = Scenario(SCENARIO)
    paths = write_files(generated, tmp_path / "in", show_progress=False)
    env = cli_env(thresholds__lane_min_samples=MIN_SAMPLES)
    result = cli("replay", *replay_inputs(paths), "--out", tmp_path / "out", env=env)
    assert result.returncode == 0, result.stderr
    alerts = read_jsonl(tmp_path / "out" / "alerts.jsonl")
    figures = accuracy.score(alerts, generated, {})
    dwell = figures[accuracy.DWELL]
    assert dwell["found"] == generated.truth.counts["dwell_firing"] > 20
    assert (dwell["false_alarms"], dwell["missed"]) == (0, 0)
    assert dwell["resolved"] == dwell["resolved_expected"] > 0
    # Each at its threshold as read from the sketch: within 1% of the exact one.
    exact = {(a["waybill"], a["last_scan_ts"]): a["threshold_ms"]
             for a in generated.truth.alerts
             if a["type"] == "DWELL_ANOMALY" and a["status"] == "FIRING"}
    for alert in alerts:
        if alert["type"] == "DWELL_ANOMALY" and alert["status"] == "FIRING":
            details = alert["details"]
            threshold = exact[alert["waybill"], details["last_scan_ts"]]
            assert abs(alert["event_ts"] - details["last_scan_ts"] - threshold) <= (
                0.011 * threshold)
            assert details["lane_samples"] >= MIN_SAMPLES
    # Stalls it warned of, it warned of before NO_MOVEMENT.
    stalls = figures[accuracy.DWELL_VS_STALLS]
    assert stalls["found"] > 0 and stalls["lead_hours_median"] > 0
    notes = [n for n in read_jsonl(tmp_path / "out" / "merchant-notifications.jsonl")
             if n["type"] == "DWELL_ANOMALY"]
    assert len(notes) == sum(a["type"] == "DWELL_ANOMALY" and a["status"] == "FIRING"
                             for a in alerts)
    assert [a["code"] for a in notes[0]["suggested_actions"]] == [
        "PROACTIVE_DELAY_NOTICE", "URGE_CARRIER"]
