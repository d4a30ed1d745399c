"""The accuracy benchmark: its scores, its report, and the same figures over Kafka as over files."""

from __future__ import annotations

from benchmarks import accuracy
from benchmarks.sweep_grid import Sweep
from flows.config import load_settings

PNG = b"\x89PNG\r\n\x1a\n"
NO_MOVEMENT_SWEEP = [Sweep(name="no_movement_hours", detector="NO_MOVEMENT",
                           note="Short thresholds flag long legs.",
                           grid={"no_movement_hours": [24, 72]})]


def without_delays(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k != "delays_hours"}


def test_accuracy_benchmark_scores_every_detector_and_writes_its_report(tmp_path):
    results = accuracy.measure(parcels=800, days=8, seed=5, sweeps=NO_MOVEMENT_SWEEP,
                               show_progress=False)
    assert results["path"] == "replay"
    assert [s["name"] for s in results["sweeps"]] == ["no_movement_hours"]
    defaults, short, default_again = (r["detectors"] for r in results["runs"])
    # The same thresholds give the same answer.
    assert {d: without_delays(f) for d, f in defaults.items()} == {
        d: without_delays(f) for d, f in default_again.items()}
    assert default_again["NO_MOVEMENT"] == defaults["NO_MOVEMENT"]
    # A sweep run keeps the delays of the detector it tunes, and only those.
    assert [d for d, f in short.items() if "delays_hours" in f] == ["NO_MOVEMENT"]
    assert set(defaults) == {*accuracy.DETECTORS, *accuracy.MERCHANT_SIDE, accuracy.DWELL,
                             accuracy.DWELL_VS_STALLS}
    # The merchant's side is exact: every case at its time, nothing else, each resolution too.
    for kind in accuracy.MERCHANT_SIDE:
        figures = defaults[kind]
        assert (figures["false_alarms"], figures["missed"], figures["resolved_wrong"]) == (
            0, 0, 0), kind
        assert figures["resolved"] == figures["resolved_expected"], kind
    assert defaults["PICKUP_OVERDUE"]["found"] > 0 and defaults["PROMISE_MISSED"]["found"] > 0
    stalls = defaults["NO_MOVEMENT"]
    assert stalls["found"] == results["truth"]["stalls"] > 0 and stalls["recall"] == 1.0
    assert stalls["recall_ci"] == [1.0, 1.0]  # every resample of all-found cases finds all
    assert stalls["delay_hours_median"] == 72
    # A shorter threshold finds the stalls sooner but also flags normal long gaps.
    assert short["NO_MOVEMENT"]["delay_hours_median"] == 24
    assert short["NO_MOVEMENT"]["false_alarms"] > stalls["false_alarms"]
    low, high = short["NO_MOVEMENT"]["precision_ci"]
    assert low <= short["NO_MOVEMENT"]["precision"] <= high < 1
    assert defaults["SIGNED_DISPUTED"]["precision"] in (1.0, None)
    results["recommended"] = accuracy.recommend(results)
    assert results["recommended"]["no_movement_hours"]["best_f1"] == {"no_movement_hours": 72}

    accuracy.write_report(results, tmp_path, "python -m benchmarks.accuracy")
    text = (tmp_path / "accuracy.md").read_text(encoding="utf-8")
    assert "Sweep: no_movement_hours" in text and "Pick: best F1" in text
    assert "Short thresholds flag long legs." in text
    assert "| setting | precision | recall | F1 | median delay (h) | p90 delay (h) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| no_movement_hours=24 |"))
    assert row.endswith(f"| {short['NO_MOVEMENT']['delay_hours_p90']} |")
    assert f"| {short['NO_MOVEMENT']['precision']} [{low:.2f}, {high:.2f}] |" in row
    assert "empirical CDF" in text and "whiskers" not in text
    assert "Detection delay by setting" in text and "(delays-no_movement_hours.png)" in text
    for png in ("delays.png", "sweep-no_movement_hours.png", "delays-no_movement_hours.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG

    accuracy.write_recommended(results, tmp_path / "recommended.toml", "the command")
    assert load_settings(tmp_path / "recommended.toml", environ={}).thresholds.no_movement_hours \
        == 72


def test_accuracy_benchmark_on_kafka_gives_the_replay_figures(broker):
    scenario = {"parcels": 600, "days": 8, "seed": 5, "sweeps": NO_MOVEMENT_SWEEP,
                "show_progress": False}
    replayed = accuracy.measure(**scenario)
    on_kafka = accuracy.measure(**scenario, brokers=broker.bootstrap)
    assert (replayed["path"], on_kafka["path"]) == ("replay", "kafka")
    assert on_kafka["truth"] == replayed["truth"]
    assert on_kafka["runs"] == replayed["runs"]  # every detector of every run, delays included
    assert sum(f["found"] for f in on_kafka["runs"][0]["detectors"].values()) > 0
