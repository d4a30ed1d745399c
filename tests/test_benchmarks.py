"""Small runs of the benchmarks: they run and their figures are well-formed (no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from itertools import pairwise

import msgspec

from benchmarks import clustering, generation, snapshots, throughput
from benchmarks.scenario import CHINA, Outage, Scenario, ScenarioConfig
from models.settings import DAY_MS


def test_memory_benchmark_reports_bytes_per_tracked_parcel(tmp_path):
    # In a process of its own, as it is meant to run: memory that earlier tests freed would
    # otherwise absorb the growth it measures.
    out = tmp_path / "memory.json"
    subprocess.run([sys.executable, "-m", "benchmarks.memory", "--parcels", "3000",
                    "--json", str(out)], check=True, capture_output=True, timeout=120)
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["machine"]["cores"] > 0 and "benchmarks.memory" in result["command"]
    assert result["parcels_tracked"] == 3000
    assert result["bytes_per_tracked_parcel"] > 0
    assert result["snapshot_bytes_per_parcel"] > 0 and result["snapshot_seconds"] >= 0


def test_throughput_benchmark_reports_every_path_and_process_count():
    result = throughput.measure(events=2000, days=10, seed=3)
    assert 1000 < result["input_records"] < 4000
    assert set(result["processes"]) == {"1", "2"}  # `run` as one and as two processes
    two = result["processes"]["2"]
    assert len(two["cpu_seconds_by_process"]) == 2 and all(two["cpu_seconds_by_process"])
    assert 0.5 <= two["busiest_process_share"] <= 1
    assert result["scaling"]["speedup"] > 0 and result["scaling"]["cpu_ratio"] > 0
    paths = ("replay", "run_exit_at_end", "raw_consume", "naive_bytewax")
    for figures in [*(result[path] for path in paths), *result["processes"].values()]:
        assert figures["seconds"] > 0 and figures["events_per_second"] > 0
    assert result["raw_consume"]["records"] == result["input_records"]  # the same topics
    # The naive flow drops what json.loads cannot read: the junk, and only that.
    assert 0.95 * result["input_records"] < result["naive_bytewax"]["records"] <= result[
        "input_records"]
    assert result["run_share_of_raw_consume"] > 0 and result["run_over_naive"] > 0


def test_snapshots_benchmark_follows_the_commits_until_every_record_is_held(tmp_path):
    result = snapshots.measure(events=3000, interval=0.5, seed=3)
    assert 1000 < result["input_records"] < 5000
    commits = result["commit_seconds"]
    assert len(commits) == result["commits"] >= 1 and commits == sorted(commits)
    assert result["caught_up_seconds"] == commits[-1] and result["cpu_seconds"] > 0
    snapshots.plot(result, tmp_path / "snapshots.png")
    assert (tmp_path / "snapshots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clustering_benchmark_reports_every_layout_and_draws_its_plot(tmp_path):
    runs = clustering.measure([200, 400], show_progress=False)
    assert [(r["layout"], r["delayed"]) for r in runs] == [
        (layout, n) for n in (200, 400) for layout in clustering.LAYOUTS]
    for run in runs:
        assert run["first_evaluation_ms"] >= 0 and run["steady_evaluation_ms"] >= 0
        assert 0 <= run["parcels_in_clusters"] <= run["delayed"]
    by_layout = {r["layout"]: r for r in runs if r["delayed"] == 400}
    assert by_layout["one-city"]["clusters"] == 1  # a storm over one city is one cluster
    assert by_layout["scattered"]["clusters"] == 0  # 400 places across the country: none
    clustering.plot(runs, tmp_path / "clustering.png")
    assert (tmp_path / "clustering.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generation_benchmark_streams_holding_only_parcels_in_transit():
    result = generation.measure(parcels=3000, days=20, seed=3, show_progress=False)
    total = sum(result["records"].values())
    assert result["records"]["scans"] > 5 * 3000 and result["records"]["weather"] == 1
    assert 0 < result["most_records_waiting"] < total / 4  # not the whole scenario at once
    assert result["records_per_second"] > 0 and result["peak_resident_mib"] > 0


def test_pickups_follow_the_daily_rhythm_and_peak_after_double_eleven():
    config = ScenarioConfig(parcels=20_000, days=30, seed=5)
    days: Counter[tuple[int, int]] = Counter()
    hours: Counter[int] = Counter()
    for topic, _, value in Scenario(config).records():
        scan = msgspec.json.decode(value) if topic == "scans" and b"PICKUP" in value else {}
        if scan.get("scan_type") == "PICKUP" and isinstance(scan.get("ts"), int):  # not junk
            local = datetime.fromtimestamp(scan["ts"] / 1000, CHINA)
            days[local.month, local.day] += 1
            hours[local.hour] += 1
    assert set(hours) == {2, *range(8, 22)}  # working hours, and a few night pickups
    assert min(days) == (11, 1)  # none before the scenario starts
    ordinary = sorted(days.values())[len(days) // 2]
    assert max(days, key=days.get) == (11, 12)  # the day after the sale: 3.5 times
    assert 3 < days[11, 12] / ordinary < 4 and 2.6 < days[11, 11] / ordinary < 3.4


def test_the_generator_is_out_of_order_by_at_most_its_disorder():
    config = ScenarioConfig(parcels=2000, days=10, seed=5)
    latest, worst = 0, 0
    for topic, _key, value in Scenario(config).records():
        try:
            record = msgspec.json.decode(value)
        except msgspec.DecodeError:
            continue  # junk
        if topic == "weather" or not isinstance(record.get("ts"), int):
            continue  # weather records are issued ahead; junk has no usable time
        worst = max(worst, latest - record["ts"])
        latest = max(latest, record["ts"])
    assert 0 < worst <= config.disorder_minutes * 60_000


def test_storms_fall_inside_a_short_scenario_and_hold_parcels():
    generated = Scenario(ScenarioConfig(parcels=3000, days=7, seed=5))
    last_ts = generated.config.start_ts + 7 * 86_400_000
    for _ in generated.records():
        pass
    for storm in generated.truth.clusters:
        assert generated.config.start_ts < storm["start_ts"] < storm["end_ts"] < last_ts
        assert storm["waybills"]



def test_an_outage_holds_a_carriers_scans_back_and_backfills_them_in_order():
    outage = Outage("ZTO", 0.4, 2)
    scenario = Scenario(ScenarioConfig(parcels=1500, days=10, seed=3, outage=outage))
    start = scenario.config.start_ts + round(0.4 * 10 * DAY_MS)
    end = start + 2 * DAY_MS
    read: list[dict] = []
    for topic, _key, value in scenario.records():
        if topic == "scans":
            try:
                record = json.loads(value)
                read.append(record if isinstance(record.get("ts"), int) else None)
            except ValueError:  # a junk record
                read.append(None)
    read = [r for r in read if r is not None]
    disorder = 5 * 60_000
    dark = [n for n, r in enumerate(read) if r["carrier"] == "ZTO" and start <= r["ts"] < end]
    assert len(dark) > 100, "the outage covers some scans"
    # Read once the feed resumes: after every other scan from before the end of the outage.
    dark_set = set(dark)
    before_end = [n for n, r in enumerate(read) if r["ts"] < end - disorder and n not in dark_set]
    assert min(dark) > max(before_end)
    # In the order they happened (up to the stream's usual disorder), with their own ts.
    dark_ts = [read[n]["ts"] for n in dark]
    assert all(later >= earlier - disorder for earlier, later in pairwise(dark_ts))
    before = max(r["ts"] for r in read if r["carrier"] == "ZTO" and r["ts"] < start)
    [silent] = [a for a in scenario.truth.alerts if a["type"] == "FEED_SILENT"]
    assert silent == {"type": "FEED_SILENT", "status": "FIRING", "carrier": "ZTO",
                      "event_ts": before + 120 * 60_000}


def test_the_merchant_side_leaves_the_scans_and_claims_as_they_were():
    from dataclasses import replace

    config = ScenarioConfig(parcels=1500, days=10, seed=3)
    kept = ("scans", "disputes", "weather")
    with_it = list(Scenario(config).records())
    without = [r for r in Scenario(replace(config, merchant=None)).records()]
    assert [r for r in with_it if r[0] in kept] == without
    assert {r[0] for r in with_it} == {*kept, "shipments", "merchant-actions"}
