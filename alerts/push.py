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
import contextlib
import email.utils
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

import httpx
import msgspec
from aiolimiter import AsyncLimiter
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from alerts.endpoints import Endpoint
from alerts.webhooks import headers
from connectors.cloudevents import Headers
from models.events import undecodable_reason
from models.ids import digest_id

log = logging.getLogger("parcelwatch.push")
MAX_IN_FLIGHT = 2000


class Retryable(Exception):
    """An attempt that may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Envelope(msgspec.Struct):
    """What `push` needs of a notification; the rest is sent as it came."""

    # Printable ASCII: it goes in the webhook-id header.
    notification_id: Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,256}$")]
    merchant_id: Annotated[str, msgspec.Meta(min_length=1)]
    digest_key: str | None = None


read_envelope = msgspec.json.Decoder(Envelope).decode


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
    generation: int          # of the partition's assignment it was read in
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
    """Per partition, the offsets read and done; commits the longest finished prefix. Each
    assignment of a partition is a new generation: work from an earlier one is ignored."""

    def __init__(self) -> None:
        self.read: dict[int, deque[int]] = {}
        self.done: dict[int, set[int]] = {}
        self.generations: dict[int, int] = {}

    def generation(self, partition: int) -> int:
        return self.generations.get(partition, 0)

    def reset(self, partition: int) -> None:
        """The partition was revoked or assigned anew: forget what was read of it."""
        self.read.pop(partition, None)
        self.done.pop(partition, None)
        self.generations[partition] = self.generation(partition) + 1

    def started(self, partition: int, offset: int) -> None:
        self.read.setdefault(partition, deque()).append(offset)
        self.done.setdefault(partition, set())

    def finished(self, partition: int, offset: int, generation: int = 0) -> int | None:
        """Mark done; return the next offset to commit if the prefix grew."""
        if generation != self.generation(partition) or partition not in self.read:
            return None
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
                 exit_at_end: bool = False, source: str = "parcelwatch"):
        self.consumer, self.producer = consumer, producer
        self.headers = Headers(source)  # CloudEvents headers of its dead letters
        self.topic, self.dead_letter_topic = topic, dead_letter_topic
        self.endpoints = endpoints
        self.metrics = metrics
        self.exit_at_end = exit_at_end
        self.book = OffsetBook()
        self.stopping = asyncio.Event()
        self.at_end: set[int] = set()
        self.owned: set[int] = set()
        self.paused = False
        self.states: dict[str, EndpointState] = {}
        self.tasks: set[asyncio.Task] = set()
        self.committed: dict[int, int] = {}  # partition -> next offset, as last committed
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self.stopping.set()

    # -- the consumer group --------------------------------------------------------------

    def assigned(self, _consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.book.reset(tp.partition)  # read again from the committed offset
            self.owned.add(tp.partition)
        self.paused = False

    def revoked(self, consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is finished; work still in flight for them is re-sent by the new
        owner (same webhook-ids) and its outcome here no longer commits anything."""
        mine = [tp.partition for tp in partitions if tp.partition in self.committed]
        if mine:
            with contextlib.suppress(KafkaException):
                consumer.commit(offsets=[TopicPartition(self.topic, p, self.committed[p])
                                         for p in mine], asynchronous=False)
        for tp in partitions:
            self.book.reset(tp.partition)
            self.owned.discard(tp.partition)
            self.committed.pop(tp.partition, None)
            self.at_end.discard(tp.partition)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits) as client:
            self.client = client
            while not self.stopping.is_set():
                self._back_pressure()
                # Called even when paused: it keeps this member of the group alive.
                messages = self.consumer.consume(500, timeout=0)
                if not messages:
                    if self.exit_at_end and self._everything_done():
                        break
                    await asyncio.sleep(0.05)
                    continue
                for message in messages:
                    self._take(message)
                await asyncio.sleep(0)  # let deliveries run between batches
            await self._drain()
        if self.committed:  # the last commits were asynchronous: make sure they landed
            with contextlib.suppress(KafkaException):
                self.consumer.commit(offsets=[TopicPartition(self.topic, p, offset)
                                              for p, offset in self.committed.items()],
                                     asynchronous=False)
        if self.failure is not None:
            raise self.failure

    async def _drain(self) -> None:
        """On a stop, deliveries still waiting to retry are abandoned (uncommitted: they are
        sent again after a restart, under the same ids); at the end of input, all finish."""
        if self.stopping.is_set():
            for task in self.tasks:
                task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def _back_pressure(self) -> None:
        """Records wait for those before them to be committed: stop reading while too many
        are in flight (one slow endpoint must not make memory grow)."""
        in_flight = self.book.in_flight
        if not self.paused and in_flight >= MAX_IN_FLIGHT:
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif self.paused and in_flight < MAX_IN_FLIGHT // 2:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    def _everything_done(self) -> bool:
        assigned = {tp.partition for tp in self.consumer.assignment()}
        return (bool(assigned) and assigned <= self.at_end and not self.tasks
                and self.book.in_flight == 0)

    def _take(self, message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(message.partition())
            else:
                log.warning("kafka: %s", error.str())
            return
        partition, offset = message.partition(), message.offset()
        self.at_end.discard(partition)
        self.book.started(partition, offset)
        generation = self.book.generation(partition)
        value = message.value() or b""
        try:
            envelope = read_envelope(value)
        except Exception as exc:  # any failure to decode is the record's: dead-letter it
            self._dead_letter(Record(partition, offset, generation, value, None, None, None),
                              f"not a merchant notification: {undecodable_reason(exc)}", 0)
            return
        record = Record(partition, offset, generation, value, envelope.notification_id,
                        envelope.merchant_id, envelope.digest_key)
        state = self._state(record.merchant_id)
        if state is None:
            self._outcome("no_endpoint")
            self._finish(record)
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
            rate = endpoint.policy.rate_per_second
            limiter = AsyncLimiter(rate, 1) if rate >= 1 else AsyncLimiter(1, 1 / rate)
            state = self.states[merchant] = EndpointState(
                endpoint, limiter, asyncio.Semaphore(endpoint.policy.concurrency))
        return state

    def _spawn(self, work) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        """A delivery that failed in an unexpected way stops the job (its offset stays
        uncommitted, so a restart sends it again) instead of hanging silently."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
            self.stopping.set()

    async def _digest_later(self, state: EndpointState, key: str, window: float) -> None:
        try:
            await asyncio.sleep(window)
        finally:
            records = state.digests.pop(key)
        await self._deliver(state, records)

    # -- one push ------------------------------------------------------------------------

    async def _deliver(self, state: EndpointState, records: list[Record]) -> None:
        attempts = 0
        try:
            reason, attempts = await self._attempts(state, records)
        except Exception as exc:  # an unexpected failure is an outcome too, with its reason
            log.exception("merchant %s: delivery failed", state.endpoint.merchant_id)
            reason = f"internal error: {exc!r}"
        if reason is None:
            self._outcome("delivered", len(records))
        for record in records:
            if reason is None:
                self._finish(record)
            else:
                self._dead_letter(record, reason, attempts)

    async def _attempts(self, state: EndpointState, records: list[Record]
                        ) -> tuple[str | None, int]:
        """(None, attempts) once delivered, else (the reason it never will be, attempts)."""
        if len(records) == 1:
            message_id, body = records[0].notification_id, records[0].value
        else:
            message_id = digest_id([r.notification_id for r in records])
            body = b'{"digest_key":' + msgspec.json.encode(records[0].digest_key) + \
                b',"notifications":[' + b",".join(r.value for r in records) + b"]}"
        if state.disabled is not None:
            return state.disabled, 0
        policy = state.endpoint.policy
        attempts = 0
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
            return f"gave up after {attempts} attempts: {exc.reason}", attempts
        return reason, attempts

    async def _post(self, state: EndpointState, message_id: str, body: bytes) -> str | None:
        """One attempt: None if delivered, the reason if it never will be; raises Retryable."""
        endpoint = state.endpoint
        timeout = endpoint.policy.timeout_seconds
        async with state.slots, state.limiter:
            if state.disabled is not None:
                return state.disabled
            sent = headers(endpoint.key, message_id, int(time.time()), body)
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout):  # the whole request, however it trickles
                    response = await self.client.post(endpoint.url, content=body,
                                                       headers=sent, timeout=timeout)
            except (TimeoutError, httpx.TimeoutException):
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

    # -- outcomes ------------------------------------------------------------------------

    def _dead_letter(self, record: Record, reason: str, attempts: int) -> None:
        """Written and acknowledged before the offset may be committed."""
        letter = NotificationDeadLetter(
            notification_id=record.notification_id, merchant_id=record.merchant_id,
            reason=reason, attempts=attempts,
            value=record.value.decode("utf-8", errors="replace"), ts=int(time.time() * 1000))
        failures: list[str] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failures.append(error.str())

        event_id = f"{record.notification_id}:{attempts}"
        self.producer.produce(self.dead_letter_topic, msgspec.json.encode(letter),
                              record.merchant_id.encode() if record.merchant_id else None,
                              on_delivery=delivered, headers=self.headers.of(
                                  "notifications-dead-letter", event_id, letter.ts))
        if self.producer.flush(10) or failures:
            raise RuntimeError(f"the notifications dead-letter topic did not take a record: "
                               f"{failures or 'timed out'}")
        self._outcome("dead_letter")
        self._finish(record)

    def _finish(self, record: Record) -> None:
        partition = record.partition
        commit = self.book.finished(partition, record.offset, record.generation)
        if commit is not None and partition in self.owned:
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
            return min(failure.retry_after, cap)
        return jitter(retry_state)
    return wait
