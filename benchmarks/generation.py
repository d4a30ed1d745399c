"""How fast the scenario generator streams, and that its memory follows the parcels in
transit, not the scenario's size.

    python -m benchmarks.generation --parcels 10000000 --json benchmarks/results/generation.json

Draws every record of the scenario and drops it (no file, no broker: the generator alone),
then reports records per topic, records per second, the largest number of records waiting
in the generator at once and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter
from pathlib import Path

from benchmarks.machine import report
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import progress_bar


def measure(parcels: int, days: float, seed: int, show_progress: bool = True) -> dict:
    scenario = Scenario(ScenarioConfig(parcels=parcels, days=days, seed=seed, merchant=None))
    records: Counter[str] = Counter()
    started = time.perf_counter()
    with progress_bar(transient=not show_progress) as bar:
        task = bar.add_task("generating parcels", total=parcels)
        for count, (topic, _key, _value) in enumerate(scenario.records(), 1):
            records[topic] += 1
            if count % 50_000 == 0:
                bar.update(task, completed=scenario.parcels_started)
        bar.update(task, completed=parcels)
    seconds = time.perf_counter() - started
    total = sum(records.values())
    return {
        "parcels": parcels,
        "days": days,
        "seed": seed,
        "records": dict(records),
        "seconds": round(seconds, 1),
        "records_per_second": round(total / seconds),
        "most_records_waiting": scenario.most_waiting,
        "peak_resident_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "truth": {"stalls": len(scenario.truth.stalls),
                  "storm_held_parcels": scenario.truth.counts["storm_held_parcels"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    command = (f"python -m benchmarks.generation --parcels {args.parcels} "
               f"--days {args.days:g} --seed {args.seed}")
    report("generation", command, measure(args.parcels, args.days, args.seed), args.json)


if __name__ == "__main__":
    main()
