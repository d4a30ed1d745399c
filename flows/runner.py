"""Start the dataflow over files (`replay`) or over Kafka (`run`)."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import run_main

from alerts.metrics import Metrics
from connectors.decode import CLOCK_TOPICS
from connectors.files import JsonLinesInputs, JsonLinesOutputs
from connectors.kafka import (
    KafkaInputs,
    KafkaOutputs,
    check_connection,
    client_config,
    ensure_topics,
)
from connectors.records import partition_id
from flows.config import ConfigError, Settings
from flows.dataflow import build_flow

log = logging.getLogger("parcelwatch")


def replay(settings: Settings, inputs: dict[str, Path], out_dir: Path, metrics: Metrics) -> None:
    """Run the detectors over JSON Lines files; outputs land in `out_dir`."""
    for role, path in inputs.items():
        if not path.is_file():
            raise ConfigError(f"--{role} {path}: no such file")
    clock = [partition_id(role, 0) for role in CLOCK_TOPICS if role in inputs]
    flow = build_flow(JsonLinesInputs(inputs, settings.batch_size), JsonLinesOutputs(out_dir),
                      settings, clock, metrics, idle_advance=False)
    run_main(flow)


def kafka_partitions(settings: Settings) -> dict[str, int]:
    """Check the cluster answers, create missing topics if allowed; partitions per input."""
    config = client_config(settings.brokers, settings.kafka)
    timeout = settings.connect_timeout_seconds
    topics = settings.topics
    existing = check_connection(config, timeout)
    if settings.create_topics:
        ensure_topics(config, [*topics.inputs().values(), *topics.outputs().values()],
                      settings.topic_partitions, timeout)
        existing = check_connection(config, timeout)
    missing = [name for name in [topics.scans, *topics.outputs().values()]
               if name not in existing]
    if missing:
        raise ConfigError(f"topics missing on {settings.brokers}: {', '.join(missing)} "
                          f"(set create_topics = true or create them)")
    return {role: existing[name] for role, name in topics.inputs().items() if name in existing}


def run(settings: Settings, metrics: Metrics, from_beginning: bool, exit_at_end: bool) -> None:
    """The production job. Recovery state lets a restart continue where it stopped."""
    stop = _StopOnSignal()
    try:
        flow, recovery = _kafka_job(settings, metrics, from_beginning, exit_at_end)
        cli_main(flow, epoch_interval=timedelta(seconds=settings.snapshot_interval_seconds),
                 recovery_config=recovery)
    except BaseException:  # the runtime reports a stop as one of several exception types
        if not stop.requested:
            raise
        log.info("stopped on %s", stop.requested)


def _kafka_job(settings: Settings, metrics: Metrics, from_beginning: bool,
               exit_at_end: bool) -> tuple[Dataflow, RecoveryConfig | None]:
    partitions = kafka_partitions(settings)
    config = client_config(settings.brokers, settings.kafka)
    source = KafkaInputs(config, settings.topics.inputs(), partitions, from_beginning,
                         exit_at_end, settings.batch_size, metrics.report_lag)
    sink = KafkaOutputs(config, settings.topics.outputs())
    clock = [partition_id(role, p) for role in CLOCK_TOPICS
             for p in range(partitions.get(role, 0))]
    flow = build_flow(source, sink, settings, clock, metrics,
                      idle_advance=settings.idle_advance and not exit_at_end)
    recovery = None
    if settings.recovery:
        state_dir = Path(settings.state_dir)
        if not any(state_dir.glob("part-*.sqlite3")):
            state_dir.mkdir(parents=True, exist_ok=True)
            init_db_dir(state_dir, 1)
        recovery = RecoveryConfig(str(state_dir))
    log.info("running against %s: %s input partitions, recovery %s", settings.brokers,
             sum(partitions.values()), recovery.db_dir if recovery else "off")
    return flow, recovery


class _StopOnSignal:
    """SIGTERM and SIGINT stop the job cleanly: the dataflow ends at its next step."""

    def __init__(self) -> None:
        self.requested: str | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.requested = signal.Signals(signum).name
        raise KeyboardInterrupt
