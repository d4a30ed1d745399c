"""What one delay-cluster evaluation costs with many delayed parcels in the window.

    python -m benchmarks.clustering --delayed 1000 10000 100000 \\
        --json benchmarks/results/clustering.json --plot benchmarks/results/clustering.png

For each count N and each layout, N delay onsets begun within the cluster window are applied
to a `models.clusters.ClusterBoard`, then it is evaluated once from nothing (clusters are
found and opened) and once more with one new onset (the steady state, where open clusters
take part). Layouts:
- `hubs`: the whole country on a peak week: every parcel at one of 48 hubs in 16 cities,
  scan positions scattered a few km around each;
- `one-city`: a storm over one metro area, positions spread over about 40 km;
- `scattered`: every parcel at its own random place across the country (no two share a grid
  cell: the worst case for the grid).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from benchmarks.geography import CITIES
from benchmarks.machine import report
from benchmarks.plots import pyplot, save
from benchmarks.writers import progress_bar
from models.clusters import ClusterBoard
from models.messages import DelayOnset
from models.settings import HOUR_MS, Thresholds

START_TS = 1_793_462_400_000
LAYOUTS = ("hubs", "one-city", "scattered")


def positions(layout: str, count: int, rng: random.Random) -> list[tuple[float, float]]:
    cities = list(CITIES.values())
    if layout == "hubs":
        hubs = [(lat + rng.uniform(-0.1, 0.1), lon + rng.uniform(-0.1, 0.1))
                for lat, lon in cities for _ in range(3)]
        return [(lat + rng.uniform(-0.03, 0.03), lon + rng.uniform(-0.03, 0.03))
                for lat, lon in (rng.choice(hubs) for _ in range(count))]
    if layout == "one-city":
        lat, lon = CITIES["杭州"]
        return [(lat + rng.uniform(-0.2, 0.2), lon + rng.uniform(-0.2, 0.2))
                for _ in range(count)]
    return [(rng.uniform(21, 45), rng.uniform(98, 125)) for _ in range(count)]


def onsets(layout: str, count: int, seed: int) -> list[DelayOnset]:
    rng = random.Random(seed)
    window = 11 * HOUR_MS
    return [DelayOnset(waybill=f"W{i:09d}", onset_ts=START_TS + i * window // count,
                       since_ts=START_TS - 24 * HOUR_MS, weather=i % 2 == 0, lat=lat,
                       lon=lon, hub_id=None, city=None, carrier="SF",
                       merchant_id=f"M{i % 500:03d}", order_id=None)
            for i, (lat, lon) in enumerate(positions(layout, count, rng))]


def measure_one(layout: str, count: int, seed: int = 7) -> dict:
    delays = onsets(layout, count, seed)
    now = START_TS + 12 * HOUR_MS
    warm_up = ClusterBoard(Thresholds())  # loads scikit-learn outside the timings
    for delay in onsets("one-city", 10, seed):
        warm_up.on_onset(delay)
    warm_up.evaluate(START_TS + 12 * HOUR_MS)
    board = ClusterBoard(Thresholds())
    started = time.perf_counter()
    for delay in delays:
        board.on_onset(delay)
    applied = time.perf_counter()
    found = board.evaluate(now)
    first = time.perf_counter()
    board.on_onset(delays[-1]._replace(waybill="W-last", onset_ts=now))
    board.evaluate(now + 1)
    steady = time.perf_counter()
    return {
        "layout": layout,
        "delayed": count,
        "apply_ms": round((applied - started) * 1000, 1),
        "first_evaluation_ms": round((first - applied) * 1000, 1),
        "steady_evaluation_ms": round((steady - first) * 1000, 1),
        "clusters": len(board.open),
        "parcels_in_clusters": sum(len(c.members) for c in board.open.values()),
        "records": len(found),
    }


def measure(counts: list[int], show_progress: bool = True) -> list[dict]:
    runs = []
    with progress_bar(transient=not show_progress) as bar:
        task = bar.add_task("clustering", total=len(counts) * len(LAYOUTS))
        for count in counts:
            for layout in LAYOUTS:
                runs.append(measure_one(layout, count))
                bar.advance(task)
    return runs


def plot(runs: list[dict], path: Path) -> None:
    plt = pyplot()

    figure, axes = plt.subplots(figsize=(6, 4))
    for layout in LAYOUTS:
        mine = [r for r in runs if r["layout"] == layout]
        axes.plot([r["delayed"] for r in mine], [r["first_evaluation_ms"] for r in mine],
                  marker="o", label=layout)
    axes.set(xscale="log", yscale="log", xlabel="delayed parcels in the window",
             ylabel="one evaluation (ms)", title="Delay-cluster evaluation cost")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delayed", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--plot", type=Path, help="draw evaluation time against N (PNG)")
    args = parser.parse_args()
    runs = measure(args.delayed)
    if args.plot:
        plot(runs, args.plot)
    command = "python -m benchmarks.clustering --delayed " + " ".join(map(str, args.delayed))
    report("clustering", command, {"runs": runs}, args.json)


if __name__ == "__main__":
    main()
