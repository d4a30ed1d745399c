"""Merchant push: `merchant-notifications` -> signed webhooks, at least once.

A consumer group reads the notifications. Each goes to its merchant's endpoint (see
`alerts.endpoints`) as a Standard Webhooks POST whose `webhook-id` is the notification id, so
a receiver can drop repeats. Timeouts, connection errors, 5xx and 429 are retried with
exponential backoff and full jitter (a 429's `Retry-After` wins); 410 Gone disables the
endpoint; any other answer, or the last failed attempt, sends the record to the
notifications dead-letter topic with the reason. An offset is committed only once every
record before it in its partition has an outcome (delivered, dead-lettered or skipped), so a
restart re-sends at most what was in flight. With a digest window, a merchant's
notifications sharing a `digest_key` that arrive within it go out as one push.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
import msgspec
from aiolimiter import AsyncLimiter
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from alerts.endpoints import Endpoint
from alerts.records import stable_id
from alerts.webhooks import headers

log = logging.getLogger("parcelwatch.push")
MAX_IN_FLIGHT = 2000
RETRY_AFTER_LIMIT = 3600.0  # seconds: a longer Retry-After is read as this


class Retryable(Exception):
    """An attempt that may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class NotificationDeadLetter(msgspec.Struct, kw_only=True):
    notification_id: str | None
    merchant_id: str | None
    reason: str
    attempts: int
    value: str
    ts: int


@dataclass
class Record:
    partition: int
    offset: int
    value: bytes
    notification_id: str
    merchant_id: str
    digest_key: str | None


@dataclass
class EndpointState:
    endpoint: Endpoint
    limiter: AsyncLimiter
    slots: asyncio.Semaphore
    disabled: str | None = None                  # why, once a 410 came
    digests: dict[str, list[Record]] = field(default_factory=dict)


class OffsetBook:
    """Per partition, the offsets read and done; commits the longest finished prefix."""

    def __init__(self) -> None:
        self.read: dict[int, deque[int]] = {}
        self.done: dict[int, set[int]] = {}

    def started(self, partition: int, offset: int) -> None:
        self.read.setdefault(partition, deque()).append(offset)
        self.done.setdefault(partition, set())

    def finished(self, partition: int, offset: int) -> int | None:
        """Mark done; return the next offset to commit if the prefix grew."""
        read, done = self.read[partition], self.done[partition]
        done.add(offset)
        last = None
        while read and read[0] in done:
            last = read.popleft()
            done.discard(last)
        return None if last is None else last + 1

    @property
    def in_flight(self) -> int:
        return sum(len(offsets) for offsets in self.read.values())


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds (a number or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Pusher:
    def __init__(self, consumer: Consumer, producer: Producer, topic: str,
                 dead_letter_topic: str, endpoints: dict[str, Endpoint], metrics,
                 exit_at_end: bool = False):
        self.consumer, self.producer = consumer, producer
        self.topic, self.dead_letter_topic = topic, dead_letter_topic
        self.endpoints = endpoints
        self.metrics = metrics
        self.exit_at_end = exit_at_end
        self.book = OffsetBook()
        self.stopping = asyncio.Event()
        self.at_end: set[int] = set()
        self.states: dict[str, EndpointState] = {}
        self.tasks: set[asyncio.Task] = set()
        self.committed: dict[int, int] = {}  # partition -> next offset, as last committed

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            self.client = client
            while not self.stopping.is_set():
                if self.book.in_flight >= MAX_IN_FLIGHT:
                    await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                messages = self.consumer.consume(500, timeout=0)
                if not messages:
                    if self.exit_at_end and self._everything_done():
                        break
                    await asyncio.sleep(0.05)
                    continue
                for message in messages:
                    self._take(message)
            if self.tasks:
                await asyncio.wait(self.tasks)
        self.producer.flush(10)
        if self.committed:  # the last commits were asynchronous: make sure they landed
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, offset)
                                          for p, offset in self.committed.items()],
                                 asynchronous=False)

    def _everything_done(self) -> bool:
        assigned = {tp.partition for tp in self.consumer.assignment()}
        return bool(assigned) and assigned <= self.at_end and not self.tasks

    def _take(self, message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(message.partition())
            else:
                log.warning("kafka: %s", error.str())
            return
        self.at_end.discard(message.partition())
        self.book.started(message.partition(), message.offset())
        value = message.value() or b""
        try:
            note = msgspec.json.decode(value)
            record = Record(message.partition(), message.offset(), value,
                            note["notification_id"], note["merchant_id"], note.get("digest_key"))
        except (msgspec.DecodeError, KeyError, TypeError):
            self._dead_letter(message.partition(), message.offset(), value, None, None,
                              "not a merchant notification", 0)
            return
        state = self._state(record.merchant_id)
        if state is None:
            self._outcome("no_endpoint")
            self._finish(record.partition, record.offset)
            return
        window = state.endpoint.policy.digest_window_seconds
        if window > 0 and record.digest_key:
            waiting = state.digests.get(record.digest_key)
            if waiting is not None:
                waiting.append(record)
                return
            state.digests[record.digest_key] = [record]
            self._spawn(self._digest_later(state, record.digest_key, window))
        else:
            self._spawn(self._deliver(state, [record]))

    def _state(self, merchant: str) -> EndpointState | None:
        state = self.states.get(merchant)
        if state is None and merchant in self.endpoints:
            endpoint = self.endpoints[merchant]
            state = self.states[merchant] = EndpointState(
                endpoint, AsyncLimiter(endpoint.policy.rate_per_second, 1),
                asyncio.Semaphore(endpoint.policy.concurrency))
        return state

    def _spawn(self, work) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _digest_later(self, state: EndpointState, key: str, window: float) -> None:
        await asyncio.sleep(window)
        await self._deliver(state, state.digests.pop(key))

    async def _deliver(self, state: EndpointState, records: list[Record]) -> None:
        if len(records) == 1:
            message_id, body = records[0].notification_id, records[0].value
        else:
            ids = sorted(r.notification_id for r in records)
            message_id = "digest-" + stable_id(*ids)
            body = b'{"digest_key":' + msgspec.json.encode(records[0].digest_key) + \
                b',"notifications":[' + b",".join(r.value for r in records) + b"]}"
        attempts = 0
        reason = None
        if state.disabled is not None:
            reason = state.disabled
        else:
            policy = state.endpoint.policy
            retrying = AsyncRetrying(
                stop=stop_after_attempt(policy.max_attempts), reraise=True,
                retry=retry_if_exception_type(Retryable),
                wait=_backoff(policy.backoff_base_seconds, policy.backoff_max_seconds),
                before_sleep=lambda _state: self._outcome("retry"))
            try:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        reason = await self._post(state, message_id, body)
            except Retryable as exc:
                reason = f"gave up after {attempts} attempts: {exc.reason}"
        if reason is None:
            self._outcome("delivered", len(records))
        for record in records:
            if reason is not None:
                self._dead_letter(record.partition, record.offset, record.value,
                                  record.notification_id, record.merchant_id, reason, attempts)
            else:
                self._finish(record.partition, record.offset)

    async def _post(self, state: EndpointState, message_id: str, body: bytes) -> str | None:
        """One attempt: None if delivered, the reason if it never will be; raises Retryable."""
        endpoint = state.endpoint
        async with state.slots, state.limiter:
            if state.disabled is not None:
                return state.disabled
            sent = headers(endpoint.key, message_id, int(time.time()), body)
            started = time.monotonic()
            try:
                response = await self.client.post(endpoint.url, content=body, headers=sent,
                                                   timeout=endpoint.policy.timeout_seconds)
            except httpx.TimeoutException:
                raise Retryable("timed out") from None
            except httpx.TransportError as exc:
                raise Retryable(f"connection failed: {type(exc).__name__}") from None
            finally:
                self.metrics.webhook_seconds.observe(time.monotonic() - started)
        status = response.status_code
        if 200 <= status < 300:
            return None
        if status == 410:
            state.disabled = f"endpoint disabled: HTTP 410 Gone from {endpoint.url}"
            log.warning("merchant %s: %s", endpoint.merchant_id, state.disabled)
            return state.disabled
        if status == 429 or status >= 500:
            raise Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get(
                "retry-after")))
        return f"HTTP {status} (not retried)"

    def _dead_letter(self, partition: int, offset: int, value: bytes, notification_id,
                     merchant_id, reason: str, attempts: int) -> None:
        record = NotificationDeadLetter(
            notification_id=notification_id, merchant_id=merchant_id, reason=reason,
            attempts=attempts, value=value.decode("utf-8", errors="replace"),
            ts=int(time.time() * 1000))
        self.producer.produce(self.dead_letter_topic, msgspec.json.encode(record),
                              merchant_id.encode() if merchant_id else None)
        if self.producer.flush(10):
            raise RuntimeError("the notifications dead-letter topic did not take a record")
        self._outcome("dead_letter")
        self._finish(partition, offset)

    def _finish(self, partition: int, offset: int) -> None:
        commit = self.book.finished(partition, offset)
        if commit is not None:
            self.committed[partition] = commit
            self.consumer.commit(offsets=[TopicPartition(self.topic, partition, commit)],
                                 asynchronous=True)

    def _outcome(self, outcome: str, count: int = 1) -> None:
        self.metrics.webhook_deliveries.labels(outcome).inc(count)


def _backoff(base: float, cap: float):
    jitter = wait_random_exponential(multiplier=base, max=cap)

    def wait(retry_state) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, Retryable) and failure.retry_after is not None:
            return min(failure.retry_after, RETRY_AFTER_LIMIT)
        return jitter(retry_state)
    return wait
