"""Kafka: client settings, the connection check, topics, and the flow's source and sink.

The source is lean on purpose: one consumer per partition (`assign`, no consumer group; the
offsets live in the flow's recovery state), batches of raw records, and partition EOF as the
only signal that a partition is caught up (end offsets reported by some brokers are not exact).
The sink flushes and checks every delivery before a batch counts as written, so the recovery
epoch that contains it never commits outputs that were lost.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.cloudevents import Headers
from connectors.pacing import ReadPacer
from connectors.records import OutputBatch, OutputRecord, RawBatch, output_records

log = logging.getLogger("parcelwatch.kafka")
IDLE_POLL = timedelta(milliseconds=20)


class BrokerUnreachable(RuntimeError):
    """No Kafka broker answered in time."""


def client_config(brokers: str, extra: dict | None = None) -> dict:
    """librdkafka settings: the bootstrap servers plus whatever the config passes through."""
    return {"bootstrap.servers": brokers, "logger": log, **(extra or {})}


def check_connection(config: dict, timeout_s: float) -> dict[str, int]:
    """Fail within `timeout_s` with a clear message when no broker answers.

    Returns the topics the cluster has, with their partition counts.
    """
    admin = AdminClient({**config, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {config['bootstrap.servers']} within "
            f"{timeout_s:g} s ({exc.args[0].str()})") from None
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()
            if topic.error is None}


def ensure_topics(config: dict, names: list[str], partitions: int, timeout_s: float) -> None:
    """Create the topics that do not exist yet."""
    existing = check_connection(config, timeout_s)
    missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
    if not missing:
        return
    admin = AdminClient({**config, "log_level": 0})
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {exc.args[0].str()}") from None


# Set to end every partition's reading at its next poll: the dataflow then finishes as at the
# end of its input (state kept, a last snapshot taken), with no error to unwind.
STOP_READING = threading.Event()


class _PartitionReader(StatefulSourcePartition):
    def __init__(self, config: dict, role: str, topic: str, partition: int, start: int,
                 batch_size: int, exit_at_end: bool, on_lag=None, group_id: str = "parcelwatch",
                 snapshot_interval_s: float | None = None):
        self.role, self.partition = role, partition
        self.topic_partition = TopicPartition(topic, partition)
        self.on_lag = on_lag  # callable(role, partition, records behind), or None
        self.pacer = ReadPacer(snapshot_interval_s, batch_size)
        self.exit_at_end = exit_at_end
        self.next_offset = start
        self.committed: int | None = None
        self.finished = False
        self.awake_at: datetime | None = None
        self.consumer = Consumer({
            "queued.max.messages.kbytes": 16384,  # one consumer a partition: cap prefetch
            **config,
            "group.id": group_id,   # offsets committed at each snapshot, for lag tools only
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.queue.backoff.ms": 10,
            "auto.offset.reset": "earliest",
        })
        self.consumer.assign([TopicPartition(topic, partition, start)])

    def next_batch(self) -> list[RawBatch]:
        if self.finished or STOP_READING.is_set():
            raise StopIteration
        asked = self.pacer.size()
        if not asked:  # the epoch's time is spent: read again once it has ended
            self.awake_at = datetime.now(UTC) + timedelta(
                seconds=max(0.0, self.pacer.seconds_left()))
            return []
        messages = self.consumer.consume(asked, timeout=0)
        self.pacer.read(asked, len(messages))
        records, caught_up = [], None
        for message in messages:
            error = message.error()
            if error is None:
                records.append((message.offset(), message.key(), message.value()))
                caught_up = False
            elif error.code() == KafkaError._PARTITION_EOF:
                caught_up = True
                if self.next_offset < 0:  # started "at the end": remember where that was
                    self.next_offset = message.offset()
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("kafka: %s", error.str())
        if records:
            self.next_offset = records[-1][0] + 1
            if self.on_lag is not None:  # from the last fetch's answer: no request of its own
                high = self.consumer.get_watermark_offsets(self.topic_partition, cached=True)[1]
                self.on_lag(self.role, self.partition, max(0, high - self.next_offset))
        elif caught_up and self.on_lag is not None:
            self.on_lag(self.role, self.partition, 0)
        if caught_up and self.exit_at_end:
            self.finished = True
        if caught_up is None:  # nothing new: let other partitions run
            self.awake_at = datetime.now(UTC) + IDLE_POLL
            return []
        self.awake_at = None
        return [RawBatch(self.role, self.partition, records, caught_up)]

    def next_awake(self) -> datetime | None:
        return self.awake_at

    def snapshot(self) -> int:
        self.pacer.epoch_ended()
        # Lag tools read the group's committed offsets; a restart resumes from this
        # snapshot, not from them, so a commit that fails costs nothing but a stale figure.
        if self.next_offset >= 0 and self.next_offset != self.committed:
            try:
                self.consumer.commit(offsets=[TopicPartition(
                    self.topic_partition.topic, self.partition, self.next_offset)],
                    asynchronous=True)
                self.committed = self.next_offset
            except KafkaException as exc:
                log.warning("kafka: offsets not committed: %s", exc.args[0].str())
        return self.next_offset

    def close(self) -> None:
        self.consumer.close()


class KafkaInputs(FixedPartitionedSource):
    """Every partition of the input topics; `roles` maps contract names to topic names."""

    def __init__(self, config: dict, roles: dict[str, str], partitions: dict[str, int],
                 from_beginning: bool, exit_at_end: bool, batch_size: int, on_lag=None,
                 group_id: str = "parcelwatch", snapshot_interval_s: float | None = None):
        self.config, self.roles, self.partitions = config, roles, partitions
        self.snapshot_interval_s = snapshot_interval_s  # None: no snapshots, no pacing
        self.group_id = group_id
        self.from_beginning, self.exit_at_end = from_beginning, exit_at_end
        self.batch_size = batch_size
        self.on_lag = on_lag

    def list_parts(self) -> list[str]:
        return [f"{role}/{p}" for role, count in self.partitions.items() for p in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        role, partition = for_part.rsplit("/", 1)
        if resume_state is not None:
            start = resume_state
        else:
            start = OFFSET_BEGINNING if self.from_beginning else OFFSET_END
        return _PartitionReader(self.config, role, self.roles[role], int(partition), start,
                                self.batch_size, self.exit_at_end, self.on_lag, self.group_id,
                                self.snapshot_interval_s)


class _ProducerPartition(StatelessSinkPartition):
    def __init__(self, config: dict, topics: dict[str, str], source: str):
        self.topics = topics
        self.headers = Headers(source)
        # Defaults first, so the [kafka] config can turn idempotence on (ordered retries).
        self.producer = Producer({"linger.ms": 5, "enable.idempotence": False,
                                  "max.in.flight.requests.per.connection": 1, **config})
        self.failures: list[str] = []

    def _delivered(self, error, message) -> None:
        if error is not None:
            self.failures.append(f"{message.topic()}: {error.str()}")

    def write_batch(self, items: list[OutputRecord | OutputBatch]) -> None:
        produce, headers = self.producer.produce, self.headers.of
        for topic, key, value, event_id, emitted_at in output_records(items):
            while True:
                try:
                    produce(self.topics[topic], value, key, on_delivery=self._delivered,
                            headers=headers(topic, event_id, emitted_at))
                    break
                except BufferError:  # local queue full: serve deliveries, then retry
                    self.producer.poll(0.1)
        remaining = self.producer.flush(60)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            raise RuntimeError(f"{remaining} outputs undelivered after 60 s; "
                               f"failures: {failures[:3]}")

    def close(self) -> None:
        self.producer.flush(60)


class KafkaOutputs(DynamicSink):
    """Every output record, with its CloudEvents headers (`source`: their `ce_source`)."""

    def __init__(self, config: dict, topics: dict[str, str], source: str = "parcelwatch"):
        self.config, self.topics, self.source = config, topics, source

    def build(self, step_id: str, worker_index: int, worker_count: int):
        return _ProducerPartition(self.config, self.topics, self.source)


def read_topic(config: dict, topic: str, timeout_s: float = 30.0,
               headers: bool = False) -> list[tuple]:
    """Every record of a topic, from the beginning to partition EOF: (key, value, partition),
    and with `headers` its headers as a dict last."""
    partitions = check_connection(config, timeout_s).get(topic, 0)
    consumer = Consumer({**config, "group.id": "parcelwatch-read", "enable.auto.commit": False,
                         "enable.partition.eof": True, "log_level": 0})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records, open_parts = [], set(range(partitions))
    deadline = time.monotonic() + timeout_s
    try:
        while open_parts and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.2):
                if message.error() is None:
                    record = (message.key(), message.value(), message.partition())
                    if headers:
                        record += (dict(message.headers() or []),)
                    records.append(record)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    open_parts.discard(message.partition())
    finally:
        consumer.close()
    if open_parts:
        raise TimeoutError(f"topic {topic}: partitions {sorted(open_parts)} not read to the end")
    return records
