"""What parcelwatch's throughput is compared with, on the same topics of the same broker:
the raw confluent-kafka consume rate (the ceiling) and a naive Bytewax flow (the peer)."""

from __future__ import annotations

import json
import time

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def raw_consume(config: dict, topics: list[str], partitions: int) -> tuple[int, float]:
    """Every record of the topics, read with `consume(10000)` until partition EOF:
    (records, seconds). The design notes' settings: `fetch.queue.backoff.ms=10`."""
    consumer = Consumer({**config, "group.id": "parcelwatch-raw-consume",
                         "enable.partition.eof": True, "enable.auto.commit": False,
                         "fetch.queue.backoff.ms": 10})
    assignment = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                  for p in range(partitions)]
    started = time.perf_counter()
    consumer.assign(assignment)
    remaining, records = len(assignment), 0
    try:
        while remaining:
            for message in consumer.consume(10_000, timeout=1.0):
                error = message.error()
                if error is None:
                    records += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining -= 1
        return records, time.perf_counter() - started
    finally:
        consumer.close()


class _Counted(StatelessSinkPartition):
    def __init__(self, counter: list[int]):
        self.counter = counter

    def write_batch(self, items: list) -> None:
        self.counter[0] += len(items)


class _CountingSink(DynamicSink):
    def __init__(self) -> None:
        self.counter = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Counted:
        return _Counted(self.counter)


def naive_flow(brokers: str, topics: list[str]) -> tuple[int, float]:
    """The obvious Bytewax job: the stock KafkaSource, `json.loads` per item, per-waybill
    `stateful_map` keeping the last scan time: (records, seconds)."""
    flow = Dataflow("naive")
    messages = op.input("in", flow, KafkaSource([brokers], topics, tail=False))
    decoded = op.filter_map("decode", messages, _decode)
    keyed = op.key_on("by_waybill", decoded, lambda event: event["waybill"])

    def last_seen(state: int | None, event: dict) -> tuple[int, int]:
        latest = max(state or 0, event["ts"])
        return latest, latest

    sink = _CountingSink()
    op.output("out", op.stateful_map("parcels", keyed, last_seen), sink)
    started = time.perf_counter()
    run_main(flow)
    return sink.counter[0], time.perf_counter() - started


def _decode(message) -> dict | None:
    try:
        event = json.loads(message.value)
    except ValueError:
        return None
    if isinstance(event, dict) and isinstance(event.get("waybill"), str) and isinstance(
            event.get("ts"), int):
        return event
    return None
