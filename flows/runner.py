"""Start the dataflow over files (`replay`) or over Kafka (`run`)."""

from __future__ import annotations

import fcntl
import gc
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import run_main

from alerts.metrics import Metrics
from connectors.decode import CLOCK_TOPICS
from connectors.files import JsonLinesInputs, JsonLinesOutputs
from connectors.kafka import (
    STOP_READING,
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
# Allocations between collections of the youngest generation: ten times Python's default,
# set (not multiplied) so that a process starting several dataflows keeps it.
YOUNG_COLLECTION_THRESHOLD = 7000


def settle_the_heap() -> None:
    """Before the dataflow starts: what is loaded by then (modules, the flow) lives as long
    as the process, so the collector stops walking it (`gc.freeze`), and it runs a tenth as
    often. The state is in columns, not objects; what the steps pass each other is many
    short-lived tuples, whose allocations would otherwise set off a collection that walks
    every long-lived object again and again (5% of a two-process run's CPU)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, gen1, gen2)


def replay(settings: Settings, inputs: dict[str, Path], out_dir: Path, metrics: Metrics) -> None:
    """Run the detectors over JSON Lines files; outputs land in `out_dir`."""
    for role, path in inputs.items():
        if not path.is_file():
            raise ConfigError(f"--{role} {path}: no such file")
    clock = [partition_id(role, 0) for role in CLOCK_TOPICS if role in inputs]
    flow = build_flow(JsonLinesInputs(inputs, settings.batch_size), JsonLinesOutputs(out_dir),
                      settings, clock, metrics, idle_advance=False, recovery=False)
    settle_the_heap()
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


class ProcessGroup(NamedTuple):
    """This process's place among the job's processes (Bytewax's `-i` and `-a`): each
    input partition is read by one of them and each shard lives in one of them."""

    process_id: int
    addresses: list[str]

    @classmethod
    def parse(cls, process_id: int | None, addresses: str | None) -> ProcessGroup | None:
        if process_id is None and addresses is None:
            return None
        hosts = [a.strip() for a in (addresses or "").split(";") if a.strip()]
        if process_id is None or not hosts:
            raise ConfigError("--process-id and --addresses go together")
        if not 0 <= process_id < len(hosts):
            raise ConfigError(f"--process-id {process_id}: --addresses names {len(hosts)} "
                              f"processes, so it must be 0 to {len(hosts) - 1}")
        for address in hosts:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"--addresses: {address!r} is not HOST:PORT")
        return cls(process_id, hosts)


def run(settings: Settings, metrics: Metrics, from_beginning: bool, exit_at_end: bool,
        processes: ProcessGroup | None = None) -> str | None:
    """The production job. Recovery state lets a restart continue where it stopped.
    Returns the signal that stopped it, or None when it ended by itself (--exit-at-end)."""
    stop = _StopOnSignal()
    topology = {} if processes is None else {"process_id": processes.process_id,
                                             "addresses": processes.addresses}
    try:
        flow, recovery = _kafka_job(settings, metrics, from_beginning, exit_at_end)
        settle_the_heap()
        stop.running = metrics.health.connected = metrics.health.running = True
        cli_main(flow, epoch_interval=timedelta(seconds=settings.snapshot_interval_seconds),
                 recovery_config=recovery, **topology)
    except BaseException:  # the runtime reports a forced stop as one of several types
        if not stop.requested:
            raise
    finally:
        metrics.health.running = False
    if stop.requested:
        log.info("stopped on %s", stop.requested)
    return stop.requested


def _kafka_job(settings: Settings, metrics: Metrics, from_beginning: bool,
               exit_at_end: bool) -> tuple[Dataflow, RecoveryConfig | None]:
    partitions = kafka_partitions(settings)
    config = client_config(settings.brokers, settings.kafka)
    source = KafkaInputs(config, settings.topics.inputs(), partitions, from_beginning,
                         exit_at_end, settings.batch_size, metrics.report_lag,
                         settings.group_id,
                         settings.snapshot_interval_seconds if settings.recovery else None)
    sink = KafkaOutputs(config, settings.topics.outputs(), settings.cloudevents_source)
    clock = [partition_id(role, p) for role in CLOCK_TOPICS
             for p in range(partitions.get(role, 0))]
    flow = build_flow(source, sink, settings, clock, metrics,
                      idle_advance=settings.idle_advance and not exit_at_end,
                      recovery=settings.recovery)
    recovery = None
    if settings.recovery:
        state_dir = Path(settings.state_dir)
        _init_state_dir(state_dir)
        recovery = RecoveryConfig(str(state_dir))
    log.info("running against %s: %s input partitions, recovery %s", settings.brokers,
             sum(partitions.values()), recovery.db_dir if recovery else "off")
    return flow, recovery


def _init_state_dir(state_dir: Path) -> None:
    """Create the recovery store once, even when several processes of the job start
    together on one host (they share the directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(state_dir.glob("part-*.sqlite3")):
            init_db_dir(state_dir, 1)


class _StopOnSignal:
    """SIGTERM and SIGINT stop the job cleanly: every input partition ends at its next poll
    and the dataflow finishes as at the end of its input, state kept. Before the dataflow
    runs, or at a second signal, the stop is at once."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.running = False
        STOP_READING.clear()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if first and self.running:
            STOP_READING.set()
            return
        raise KeyboardInterrupt
