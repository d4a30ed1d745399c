"""Memory per leg and CPU per scan of learning the legs' norms (DWELL_ANOMALY).

    python -m benchmarks.lane_norms --legs 2000 --waits-per-day 500 \\
        --json benchmarks/results/lane-norms.json

A busy platform's legs, each with `waits_per_day` log-normal waits a day for the history
(14 days) and one day more, learned by the global step as the shards hand them over
(`LaneNorms.learn`), then one midnight's refresh. Reports the bytes the norms hold per leg
(tracemalloc, after the refresh: the history's counts and the day's table), the CPU per
wait of a shard counting it (`DwellWatch`'s bin and day, one dict entry) and of the global
step adding it up, and the refresh's CPU per leg.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.machine import report
from models.lane_norms import LaneNorms, LocalDays, bin_of
from models.settings import HOUR_MS, Thresholds

T0 = 1_793_462_400_000  # 2026-11-01 00:00 +08:00


def measure(legs: int, waits_per_day: int, seed: int = 7) -> dict:
    """Learned twice on the same waits: once timed, once under tracemalloc (which slows
    every allocation) for the bytes held."""
    thresholds = Thresholds()
    days_learned = thresholds.lane_history_days + 1
    rng = np.random.default_rng(seed)
    medians = np.log(rng.uniform(1, 26, legs) * HOUR_MS)
    waits = [rng.lognormal(medians[:, None], 0.4, (legs, waits_per_day)).astype(np.int64)
             for _ in range(days_learned)]
    timed = _learn(thresholds, waits)
    tracemalloc.start()
    norms = _learn(thresholds, waits)["norms"]
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = legs * waits_per_day * days_learned
    occupied = sum(len(keys) for keys, _ in norms.packed.values())
    return {
        "legs": legs, "waits_per_day": waits_per_day, "days": days_learned,
        "legs_with_a_norm": len(norms.tables[max(norms.tables)][0]),
        "bytes_per_leg": round(held / legs),
        "occupied_bins_per_leg_day": round(occupied / (legs * len(norms.packed)), 1),
        "shard_count_ns_per_wait": round(timed["count_s"] / total * 1e9),
        "global_learn_ns_per_wait": round(timed["learn_s"] / total * 1e9),
        "refresh_ms_per_1000_legs": round(timed["refresh_s"] / legs * 1e6, 2),
    }


def _learn(thresholds: Thresholds, waits: list[np.ndarray]) -> dict:
    """Each day's waits counted as a shard counts them, learned, then the next midnight."""
    days = LocalDays("Asia/Shanghai")
    first_day = days.day_of(T0)
    norms = LaneNorms(thresholds, "Asia/Shanghai")
    count_s = learn_s = 0.0
    for d, day_waits in enumerate(waits):
        end = days.start_of(first_day + d) + 12 * HOUR_MS
        started = time.process_time()
        counted: dict[tuple, int] = {}
        for leg, row in enumerate(day_waits.tolist()):
            for wait in row:
                key = (leg, 0, 0, days.day_of(end), bin_of(wait))
                counted[key] = counted.get(key, 0) + 1
        count_s += time.process_time() - started
        started = time.process_time()
        by_leg: dict = {}
        for (leg, _, _, _, b), n in counted.items():
            by_leg.setdefault(("C", f"hub-{leg}", "ARRIVE"), {})[b] = n
        norms.learn(first_day + d, by_leg)
        learn_s += time.process_time() - started
    started = time.process_time()
    norms.refresh(first_day + len(waits))
    return {"norms": norms, "count_s": count_s, "learn_s": learn_s,
            "refresh_s": time.process_time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=2000)
    parser.add_argument("--waits-per-day", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    command = (f"python -m benchmarks.lane_norms --legs {args.legs} "
               f"--waits-per-day {args.waits_per_day}")
    report("lane_norms", command, measure(args.legs, args.waits_per_day), args.json)


if __name__ == "__main__":
    main()
