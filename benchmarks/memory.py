"""Resident memory per tracked parcel.

    python -m benchmarks.memory --parcels 1000000 --json benchmarks/results/memory.json
    python -m benchmarks.memory --replay 20000 1000000 \
        --json benchmarks/results/memory-replay.json \
        --plot benchmarks/results/memory-replay.png

The first feeds PICKUP scans of N distinct parcels (none finishes, none stalls: all stay
tracked) through the shards of the real state (`models.shard.Shard`, the default 64 shards),
then reports the growth of this process's resident memory divided by N, and the size of the
pickled snapshots (what recovery writes) per parcel and the time to write them all.

`--replay N...` measures the whole job instead: for each N, a file of N such pickups goes
through `parcelwatch replay` in its own process, and the figure is that process's peak
resident memory; the slope between the smallest and the largest N is what one more parcel in
flight costs, transient copies included.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from benchmarks.machine import report, rss_bytes
from benchmarks.plots import pyplot, save
from benchmarks.writers import progress_bar
from models.events import Scan
from models.settings import Thresholds
from models.shard import Shard, ShardInput, shard_of

CHUNK = 10_000
START_TS = 1_793_462_400_000
CARRIERS = ("SF", "JD", "ZTO", "YTO", "STO", "YUNDA", "EMS", "JT")


def pickups(first: int, count: int) -> list[Scan]:
    return [Scan(event_id=f"ev-{i:012d}", waybill=f"{CARRIERS[i % 8]}{i:013d}",
                 carrier=CARRIERS[i % 8], scan_type="PICKUP", ts=START_TS + i,
                 hub_id=f"{CARRIERS[i % 8]}-{i % 300:03d}", city=f"city-{i % 300}",
                 origin=f"city-{i % 300}", destination=f"city-{(i * 7) % 300}",
                 merchant_id=f"M{i % 5000:05d}", order_id=f"O{i:013d}")
            for i in range(first, first + count)]


def measure(parcels: int, shards: int = 64, show_progress: bool = True) -> dict:
    thresholds = Thresholds()
    state = [Shard(thresholds, ["scans/0"]) for _ in range(shards)]
    gc.collect()
    before = rss_bytes()
    with progress_bar(transient=not show_progress) as bar:
        task = bar.add_task("tracking parcels", total=parcels)
        for first in range(0, parcels, CHUNK):
            groups: dict[int, list] = {}
            for scan in pickups(first, min(CHUNK, parcels - first)):
                groups.setdefault(shard_of(scan.waybill, shards), []).append(scan)
            for shard, events in groups.items():
                state[shard].apply(ShardInput("scans/0", events, START_TS + first, False))
            bar.update(task, completed=min(parcels, first + CHUNK))
    gc.collect()
    after = rss_bytes()
    tracked = sum(s.tracker.tracked for s in state)
    started = time.perf_counter()
    snapshot = sum(len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)) for s in state)
    snapshot_seconds = time.perf_counter() - started
    return {
        "parcels_tracked": tracked,
        "shards": shards,
        "rss_growth_bytes": after - before,
        "bytes_per_tracked_parcel": round((after - before) / tracked, 1),
        "snapshot_bytes": snapshot,
        "snapshot_bytes_per_parcel": round(snapshot / tracked, 1),
        # What recovery pays at every epoch it snapshots the shards (all of them here).
        "snapshot_seconds": round(snapshot_seconds, 2),
    }


def peak_rss_of_replay(parcels: int, work: Path, show_progress: bool = True) -> int:
    """Peak resident bytes of `parcelwatch replay` over `parcels` in-flight pickups."""
    scans = work / f"pickups-{parcels}.jsonl"
    encode = msgspec.json.encode
    with scans.open("wb") as out, progress_bar(transient=not show_progress) as bar:
        task = bar.add_task(f"writing {parcels:,} pickups", total=parcels)
        for first in range(0, parcels, CHUNK):
            out.write(b"".join(encode(scan) + b"\n"
                               for scan in pickups(first, min(CHUNK, parcels - first))))
            bar.update(task, completed=min(parcels, first + CHUNK))
    cli = str(Path(sys.executable).with_name("parcelwatch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    env["PARCELWATCH_METRICS__ENABLED"] = "false"
    job = subprocess.Popen([cli, "replay", "--scans", str(scans), "--out", str(work / "out")],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(job.pid, 0)
    if status:
        raise RuntimeError(f"replay failed: {job.stderr.read()[-2000:].decode(errors='replace')}")
    scans.unlink()
    return usage.ru_maxrss * 1024  # KiB on Linux


def measure_replay(sizes: list[int], show_progress: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as work:
        peaks = {n: peak_rss_of_replay(n, Path(work), show_progress) for n in sorted(sizes)}
    low, high = min(peaks), max(peaks)
    slope = (peaks[high] - peaks[low]) / (high - low) if high > low else None
    return {
        "replay_peak_rss_bytes": {str(n): peak for n, peak in peaks.items()},
        "replay_bytes_per_parcel_in_flight": None if slope is None else round(slope, 1),
    }


def plot(figures: dict, path: Path) -> None:
    plt = pyplot()

    peaks = {int(n) / 1e6: b / 2**20 for n, b in figures["replay_peak_rss_bytes"].items()}
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(list(peaks), list(peaks.values()), marker="o")
    axes.set(xlabel="parcels in flight (millions)", ylabel="peak resident memory (MiB)",
             title=f"replay: {figures['replay_bytes_per_parcel_in_flight']} bytes per parcel "
                   "in flight (slope)")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    save(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--replay", type=int, nargs="+",
                        help="instead: peak memory of `parcelwatch replay` at these sizes")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--plot", type=Path, help="with --replay: draw peak memory (PNG)")
    args = parser.parse_args()
    if args.replay:
        figures = measure_replay(args.replay)
        if args.plot:
            plot(figures, args.plot)
        command = "python -m benchmarks.memory --replay " + " ".join(map(str, args.replay))
        report("memory", command, figures, args.json)
        return
    report("memory", f"python -m benchmarks.memory --parcels {args.parcels}",
           measure(args.parcels), args.json)


if __name__ == "__main__":
    main()
