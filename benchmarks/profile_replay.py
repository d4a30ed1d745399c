"""Where `replay`'s CPU goes, by module: a cProfile of one replay of a generated scenario.

    python -m benchmarks.profile_replay --parcels 110000 \\
        --json benchmarks/results/profile-replay.json

The scenario (scans, claims and weather: no merchant side) is written once to a work
directory and replayed in this process under cProfile; the report gives each of the
project's modules' share of the profiled time (own time, not counting what it calls) and
the functions that take the most. cProfile slows small calls more than large ones, so
compare shares within one profile, not with a run's wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections import Counter
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerts.metrics import Metrics
from benchmarks.machine import report
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import write_files
from flows.config import load_settings
from flows.runner import replay

PROJECT = ("models/", "flows/", "connectors/", "alerts/")


def measure(parcels: int, top: int = 15) -> dict:
    with tempfile.TemporaryDirectory() as work:
        scenario = Scenario(ScenarioConfig(parcels=parcels, merchant=None, dwell_truth=False))
        paths = write_files(scenario, Path(work) / "in", show_progress=True)
        settings = load_settings(environ={}, thresholds={"score_interval_hours": 24})
        profile = cProfile.Profile()
        started = time.process_time()
        profile.enable()
        replay(settings, dict(paths), Path(work) / "out", Metrics(CollectorRegistry()))
        profile.disable()
        cpu = time.process_time() - started
    stats = pstats.Stats(profile).stats
    total = sum(own for _, _, own, _, _ in stats.values())
    by_module: Counter[str] = Counter()
    for (path, _, _), (_, _, own, _, _) in stats.items():
        module = next((path[path.index(p):] for p in PROJECT if p in path), "other")
        by_module[module] += own
    slowest = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    return {
        "parcels": parcels, "scans": scenario.truth.counts["scans_records"],
        "cpu_seconds_profiled": round(cpu, 1),
        "share_by_module": {m: round(t / total, 3) for m, t in by_module.most_common()},
        "slowest_functions": [{"function": f"{path.rsplit('/', 2)[-1]}:{line}({name})",
                               "calls": calls, "share": round(own / total, 3)}
                              for (path, line, name), (calls, _, own, _, _) in slowest],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=110_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report("profile_replay", f"python -m benchmarks.profile_replay --parcels {args.parcels}",
           measure(args.parcels), args.json)


if __name__ == "__main__":
    main()
