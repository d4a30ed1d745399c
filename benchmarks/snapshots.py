"""How often `run` snapshots while it catches up on a backlog: what a crash would re-emit.

    python -m benchmarks.snapshots --events 320000 --interval 5 \\
        --json benchmarks/results/snapshots.json --plot benchmarks/results/snapshots.png

Produces a scenario of about N input events into the embedded broker, then starts
`parcelwatch run --from-beginning` with recovery at `snapshot_interval_seconds` = interval and
watches its recovery store: when each epoch commits, and the input offsets it holds. Once the
committed offsets account for every record produced (caught up) the job is stopped. A
crash re-emits what followed the last commit, so the longest time between two commits is
the figure to hold near the interval.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.machine import report
from benchmarks.plots import pyplot, save
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.throughput import CLI, EVENTS_PER_PARCEL, reap
from benchmarks.writers import produce
from connectors.broker import EmbeddedBroker
from connectors.kafka import client_config
from flows.config import load_settings
from flows.runner import kafka_partitions

INPUT_STEP = "parcelwatch.inputs"


def committed(state_dir: Path) -> tuple[int, dict[str, int]]:
    """The last committed epoch and the input offsets it holds (0 and {} before any)."""
    epoch, offsets = 0, {}
    for path in state_dir.glob("part-*.sqlite3"):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as store:
                (part_epoch,) = store.execute("select max(commit_epoch) from commits").fetchone()
                epoch = max(epoch, part_epoch or 0)
                for key, change in store.execute(
                        "select state_key, ser_change from snaps where step_id = ? "
                        "and ser_change is not null order by snap_epoch", (INPUT_STEP,)):
                    offsets[key] = pickle.loads(change)
        except sqlite3.OperationalError:
            pass  # created but not yet initialised by the job
    return epoch, offsets


def measure(events: int, interval: float, seed: int = 7) -> dict:
    parcels = max(100, math.ceil(events / EVENTS_PER_PARCEL))
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as work:
        settings = load_settings(environ={}, brokers=broker.bootstrap)
        kafka_partitions(settings)
        config = ScenarioConfig(parcels=parcels, days=30, seed=seed, merchant=None)
        records = produce(Scenario(config),
                          client_config(broker.bootstrap), settings.topics.inputs())
        state = Path(work) / "state"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
        env.update(PARCELWATCH_SNAPSHOT_INTERVAL_SECONDS=str(interval),
                   PARCELWATCH_METRICS__ENABLED="false", PARCELWATCH_IDLE_ADVANCE="false")
        started = time.perf_counter()
        job = subprocess.Popen([CLI, "run", "--brokers", broker.bootstrap, "--from-beginning",
                                "--state-dir", str(state)], env=env,
                               stderr=subprocess.DEVNULL)
        commits: list[float] = []
        try:
            last, offsets = 0, {}
            while sum(offsets.values()) < records:  # fresh topics: offsets count records
                if job.poll() is not None:
                    raise RuntimeError(f"parcelwatch run exited {job.returncode}")
                epoch, offsets = committed(state)
                if epoch > last:
                    commits.append(time.perf_counter() - started)
                    last = epoch
                time.sleep(0.05)  # sampling the store's progress, not synchronising
        finally:
            job.send_signal(signal.SIGTERM)
            usage = reap(job, time.perf_counter() + 60)
    gaps = [b - a for a, b in itertools.pairwise(commits)]
    return {
        "input_records": records,
        "snapshot_interval_seconds": interval,
        "caught_up_seconds": round(commits[-1], 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # steadier than wall time
        "commits": len(commits),
        "first_commit_seconds": round(commits[0], 2),
        "longest_seconds_between_commits": round(max(gaps), 2) if gaps else None,
        "median_seconds_between_commits": round(sorted(gaps)[len(gaps) // 2], 2)
        if gaps else None,
        "commit_seconds": [round(c, 2) for c in commits],
    }


def plot(figures: dict, path: Path) -> None:
    plt = pyplot()

    commits = figures["commit_seconds"]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.step(commits, range(1, len(commits) + 1), where="post", label="committed epochs")
    axes.set(xlabel="seconds since start", ylabel="epochs committed",
             title=f"catch-up of {figures['input_records']:,} records: longest "
                   f"{figures['longest_seconds_between_commits']} s between snapshots "
                   f"(interval {figures['snapshot_interval_seconds']:g} s)")
    axes.title.set_fontsize(9)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    save(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=320_000)
    parser.add_argument("--interval", type=float, default=5.0,
                        help="snapshot_interval_seconds of the job")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--plot", type=Path, help="draw the commits over time (PNG)")
    args = parser.parse_args()
    figures = measure(args.events, args.interval, args.seed)
    if args.plot:
        plot(figures, args.plot)
    report("snapshots", f"python -m benchmarks.snapshots --events {args.events} "
                        f"--interval {args.interval:g} --seed {args.seed}", figures, args.json)


if __name__ == "__main__":
    main()
