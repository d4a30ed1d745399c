"""Small runs of the benchmarks: they run and their figures are well-formed (no timing)."""

from __future__ import annotations

from benchmarks import memory, throughput


def test_memory_benchmark_reports_bytes_per_tracked_parcel():
    result = memory.measure(parcels=3000, show_progress=False)
    assert result["parcels_tracked"] == 3000
    assert result["bytes_per_tracked_parcel"] > 0
    assert result["snapshot_bytes_per_parcel"] > 0


def test_throughput_benchmark_reports_both_paths():
    result = throughput.measure(parcels=300, days=10, seed=3)
    assert result["input_records"] > 1000
    for path in ("replay", "run_exit_at_end"):
        assert result[path]["seconds"] > 0
        assert result[path]["events_per_second"] > 0
