"""Resident memory per tracked parcel.

    python -m benchmarks.memory --parcels 1000000 --json benchmarks/results/memory.json

Feeds PICKUP scans of N distinct parcels (none finishes, none stalls: all stay tracked)
through the shards of the real state (`models.shard.Shard`, the default 64 shards), then
reports the growth of this process's resident memory divided by N, and the size of the
pickled snapshots (what recovery writes) per parcel and the time to write them all.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from pathlib import Path

from benchmarks.machine import report, rss_bytes
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
    tracked = sum(s.no_movement.tracked for s in state)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    report("memory", f"python -m benchmarks.memory --parcels {args.parcels}",
           measure(args.parcels), args.json)


if __name__ == "__main__":
    main()
