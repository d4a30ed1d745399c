"""End-to-end events per second: `replay` (files) and `run --exit-at-end` (Kafka), with one
and with several worker processes, next to the raw consume ceiling and a naive peer.

    python -m benchmarks.throughput --events 1000000 --json benchmarks/results/throughput.json

Generates a scenario of about N input events (scans and disputes), then times the dataflow
from start to end of input: once over JSON Lines files; through the embedded broker
(records produced beforehand, all detectors on, outputs written back to Kafka) first as
`parcelwatch run` as 1 and as 2 processes (`--process-id`/`--addresses`), timed from launch
to exit, so Python's start-up is included, with each process's CPU seconds (the work per
event, and the share the busiest process does), then once in this process. On the same
topics it measures the ceiling (raw confluent-kafka consume) and the peer (a naive Bytewax
flow: per-item `json.loads`, per-waybill `stateful_map`), and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
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
from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import check_connection, client_config
from flows.config import Settings, load_settings
from flows.runner import kafka_partitions, replay, run

EVENTS_PER_PARCEL = 6.4   # scans and disputes per parcel of the default scenario
CLI = str(Path(sys.executable).with_name("parcelwatch"))
OUTPUTS = ("alerts", "merchant_notifications", "route_scores", "dead_letter")  # topic settings


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def timed_cpu(action) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all its threads) for the action."""
    cpu = time.process_time()
    wall = timed(action)
    return wall, time.process_time() - cpu


def rate(records: int, seconds: float, cpu_seconds: float | None = None) -> dict:
    figures = {"seconds": round(seconds, 2), "events_per_second": round(records / seconds)}
    if cpu_seconds is not None:  # the machine is shared: CPU time is the steadier figure
        figures.update(cpu_seconds=round(cpu_seconds, 2),
                       events_per_cpu_second=round(records / cpu_seconds))
    return figures


def scaling(records: int, seconds: float, cpu: list[float]) -> dict:
    """Wall time and work per event of a run as several processes."""
    total = sum(cpu)
    return {**rate(records, seconds, total),
            "cpu_seconds_per_million_events": round(total / records * 1e6, 2),
            "cpu_seconds_by_process": [round(c, 2) for c in cpu],
            "busiest_process_share": round(max(cpu) / total, 3)}


def _run_to_end(settings: Settings) -> None:
    if run(settings, Metrics(CollectorRegistry()), from_beginning=True, exit_at_end=True):
        raise KeyboardInterrupt  # stopped by Ctrl-C: the time would mean nothing


def run_processes(settings: Settings, count: int, outputs: str, timeout: float = 3600,
                  ) -> tuple[float, list[float]]:
    """`parcelwatch run --exit-at-end` as `count` processes writing to output topics named
    after `outputs`: seconds from launch to the last exit, and each process's CPU seconds
    (user and system, its threads included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    env.update({"PARCELWATCH_RECOVERY": "false", "PARCELWATCH_METRICS__ENABLED": "false",
                "PARCELWATCH_THRESHOLDS__SCORE_INTERVAL_HOURS":
                    str(settings.thresholds.score_interval_hours)})
    for name in OUTPUTS:
        env[f"PARCELWATCH_TOPICS__{name.upper()}"] = f"{outputs}-{name}"
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(count))
    command = [CLI, "run", "--brokers", settings.brokers, "--from-beginning", "--exit-at-end"]
    with contextlib.ExitStack() as stack:
        # Logs go to files: a pipe nobody reads while waiting on a peer would block.
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(count)]
        started = time.perf_counter()
        jobs = [subprocess.Popen([*command, "--process-id", str(n), "--addresses", addresses]
                                 if count > 1 else command, env=env, stderr=log)
                for n, log in enumerate(logs)]
        for job in jobs:  # a peer left waiting for one that failed must not outlive the run
            stack.callback(job.kill)
        cpu = []
        for job, log in zip(jobs, logs, strict=True):
            usage = reap(job, started + timeout)
            cpu.append(usage.ru_utime + usage.ru_stime)
            if job.returncode:
                log.seek(0)
                raise RuntimeError(f"parcelwatch run exited {job.returncode}: "
                                   f"{log.read()[-2000:].decode(errors='replace')}")
        return time.perf_counter() - started, cpu


def drop_outputs(config: dict, outputs: str) -> None:
    """Delete the output topics `run_processes` wrote under the name `outputs`."""
    from confluent_kafka.admin import AdminClient

    names = [f"{outputs}-{name}" for name in OUTPUTS]
    existing = check_connection(config, 10)
    admin = AdminClient(config)  # kept until the futures are done: they die with it
    for future in admin.delete_topics([name for name in names if name in existing]).values():
        future.result(30)


def reap(job: subprocess.Popen, deadline: float):
    """Wait for the job's exit (until `deadline`, a perf_counter time) and return its
    resource usage, which only the reaping wait can read."""
    while True:
        pid, status, usage = os.wait4(job.pid, os.WNOHANG)
        if pid:
            job.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.perf_counter() > deadline:
            raise subprocess.TimeoutExpired(job.args, 0)
        time.sleep(0.2)  # polling a child's exit, not synchronising a test


def measure(events: int, days: float, seed: int, score_interval_hours: float = 1,
            processes: tuple[int, ...] = (1, 2)) -> dict:
    settings = load_settings(environ={},
                             thresholds={"score_interval_hours": score_interval_hours})
    parcels = max(100, math.ceil(events / EVENTS_PER_PARCEL))
    # Scans and claims, the workload of every figure before 0.5 (no merchant side).
    config = ScenarioConfig(parcels=parcels, days=days, seed=seed, merchant=None)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        scenario = Scenario(config)
        paths = write_files(scenario, work_dir / "scenario")
        records = sum(scenario.truth.counts[f"{t}_records"] for t in ("scans", "disputes"))
        replay_s, replay_cpu = timed_cpu(lambda: replay(
            settings, {"scans": paths["scans"], "disputes": paths["disputes"]},
            work_dir / "out", Metrics(CollectorRegistry())))
        with EmbeddedBroker() as broker:
            kafka_settings = msgspec.structs.replace(
                settings, brokers=broker.bootstrap, recovery=False)
            kafka_partitions(kafka_settings)
            produce(Scenario(config), client_config(broker.bootstrap),
                    settings.topics.inputs())
            # The process counts first, on the broker as it was produced, each run's outputs
            # deleted after it: the in-memory broker slows as it holds more, and the runs
            # compared must meet the same broker.
            by_processes = {}
            for n in processes:
                by_processes[str(n)] = scaling(records, *run_processes(kafka_settings, n, f"p{n}"))
                drop_outputs(client_config(broker.bootstrap), f"p{n}")
            run_s, run_cpu = timed_cpu(lambda: _run_to_end(kafka_settings))
            topics = [settings.topics.scans, settings.topics.disputes]
            raw_records, raw_s = raw_consume(client_config(broker.bootstrap), topics,
                                             settings.topic_partitions)
            naive_records, naive_s = naive_flow(broker.bootstrap, topics)
    run_rate = records / run_s
    one, most = by_processes.get("1"), by_processes.get(str(max(processes)))
    scaling_figures = {} if not one or most is one else {
        # The same work as the most processes against one: how much faster, at what cost.
        "processes": max(processes),
        "speedup": round(one["seconds"] / most["seconds"], 2),
        "cpu_ratio": round(most["cpu_seconds"] / one["cpu_seconds"], 2),
        "busiest_process_share": most["busiest_process_share"],
    }
    return {
        "parcels": parcels,
        "days": days,
        "score_interval_hours": score_interval_hours,
        "input_records": records,
        "replay": rate(records, replay_s, replay_cpu),
        "run_exit_at_end": {**rate(records, run_s, run_cpu),
                            "input_partitions": settings.topic_partitions},
        # `parcelwatch run` as separate processes, start-up included.
        "processes": by_processes,
        "scaling": scaling_figures,
        # The same topics of the same broker, read by the ceiling and by the naive peer.
        "raw_consume": {"records": raw_records, **rate(raw_records, raw_s)},
        "naive_bytewax": {"records": naive_records, **rate(naive_records, naive_s)},
        "run_share_of_raw_consume": round(run_rate / (raw_records / raw_s), 3),
        "run_over_naive": round(run_rate / (naive_records / naive_s), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=130_000,
                        help="about this many input events (scans and disputes)")
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--score-interval-hours", type=float, default=1,
                        help="route-scores cadence (the contract's default is 1)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="also time `parcelwatch run` as this many processes")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    command = (f"python -m benchmarks.throughput --events {args.events} "
               f"--days {args.days:g} --seed {args.seed} "
               f"--score-interval-hours {args.score_interval_hours:g} "
               f"--processes {' '.join(map(str, args.processes))}")
    figures = measure(args.events, args.days, args.seed, args.score_interval_hours,
                      tuple(args.processes))
    report("throughput", command, figures, args.json)


if __name__ == "__main__":
    main()
