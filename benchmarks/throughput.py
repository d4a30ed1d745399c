"""End-to-end events per second of `replay` (files) and `run --exit-at-end` (Kafka).

    python -m benchmarks.throughput --parcels 20000 --json benchmarks/results/throughput.json

Generates the demo scenario (20,000 parcels, 30 days by default), then times the dataflow
from start to end of input: once over JSON Lines files, once through the embedded broker
(records produced beforehand, outputs written back to Kafka). One worker, one process. On
the same topics it then measures the ceiling (raw confluent-kafka consume) and the peer (a
naive Bytewax flow: per-item `json.loads`, per-waybill `stateful_map`), and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from alerts.metrics import Metrics
from benchmarks.machine import report
from benchmarks.peers import naive_flow, raw_consume
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import produce, write_files
from connectors.broker import EmbeddedBroker
from connectors.kafka import client_config
from flows.config import load_settings
from flows.runner import kafka_partitions, replay, run


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(parcels: int, days: float, seed: int, score_interval_hours: float = 1) -> dict:
    settings = load_settings(environ={},
                             thresholds={"score_interval_hours": score_interval_hours})
    config = ScenarioConfig(parcels=parcels, days=days, seed=seed)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        scenario = Scenario(config)
        paths = write_files(scenario, work_dir / "scenario")
        records = sum(scenario.truth.counts[f"{t}_records"] for t in ("scans", "disputes"))
        replay_s = timed(lambda: replay(
            settings, {"scans": paths["scans"], "disputes": paths["disputes"]},
            work_dir / "out", Metrics(CollectorRegistry())))
        with EmbeddedBroker() as broker:
            kafka_settings = msgspec.structs.replace(
                settings, brokers=broker.bootstrap, recovery=False)
            kafka_partitions(kafka_settings)
            produce(Scenario(config), client_config(broker.bootstrap),
                    settings.topics.inputs())
            run_s = timed(lambda: run(kafka_settings, Metrics(CollectorRegistry()),
                                      from_beginning=True, exit_at_end=True))
            topics = [settings.topics.scans, settings.topics.disputes]
            raw_records, raw_s = raw_consume(client_config(broker.bootstrap), topics,
                                             settings.topic_partitions)
            naive_records, naive_s = naive_flow(broker.bootstrap, topics)
    run_rate = records / run_s
    return {
        "parcels": parcels,
        "days": days,
        "score_interval_hours": score_interval_hours,
        "input_records": records,
        "replay": {"seconds": round(replay_s, 2), "events_per_second": round(records / replay_s)},
        "run_exit_at_end": {"seconds": round(run_s, 2),
                            "events_per_second": round(run_rate),
                            "input_partitions": settings.topic_partitions},
        # The same topics of the same broker, read by the ceiling and by the naive peer.
        "raw_consume": {"records": raw_records, "seconds": round(raw_s, 2),
                        "events_per_second": round(raw_records / raw_s)},
        "naive_bytewax": {"records": naive_records, "seconds": round(naive_s, 2),
                          "events_per_second": round(naive_records / naive_s)},
        "run_share_of_raw_consume": round(run_rate / (raw_records / raw_s), 3),
        "run_over_naive": round(run_rate / (naive_records / naive_s), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--score-interval-hours", type=float, default=1,
                        help="route-scores cadence (the contract's default is 1)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    command = (f"python -m benchmarks.throughput --parcels {args.parcels} "
               f"--days {args.days:g} --seed {args.seed} "
               f"--score-interval-hours {args.score_interval_hours:g}")
    figures = measure(args.parcels, args.days, args.seed, args.score_interval_hours)
    report("throughput", command, figures, args.json)

if __name__ == "__main__":
    main()
