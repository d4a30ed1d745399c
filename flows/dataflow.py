"""The one dataflow behind `run` (Kafka) and `replay` (files).

    inputs -> route (each record's head: its shard and its partition's progress; raw bytes on)
           -> parcel_shards (decode in full, dead letters; per-parcel detectors; state keyed
              by shard, recovered)
           -> aggregate (carriers' feeds, which may hold per-parcel alerts; the routes' prior,
              hubs; what the delay clusters hear and when; weather warnings join here: one
              global key, recovered)
           -> route_shards (each lane's route scores and damage alerts; keyed by lane,
              recovered)
           -> clusters (delay clusters, from the global step's calls in its order; one key,
              recovered)
           -> records (alerts, merchant notifications, route scores) -> outputs

Step ids are part of the recovery state: renaming `inputs`, `parcel_shards`, `aggregate`,
`route_shards` or `clusters` drops it.
"""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from alerts.metrics import Metrics
from alerts.notifications import Notifier
from alerts.records import to_alert
from connectors.decode import BatchRouter, ShardDecoder
from connectors.records import OutputBatch, OutputRecord
from flows.config import Settings
from models.aggregate import Aggregate
from models.answers import MerchantResponse
from models.cluster_step import ClusterOutbox, ClusterStep
from models.detection import Detection
from models.events import WeatherWarning
from models.messages import ClusterBatch, RouteBatch, RouteScores
from models.route_shards import RouteShard
from models.shard import Shard, ShardInput

encode = msgspec.json.encode
AGGREGATE_KEY = "aggregate"  # the one key of the global step
CLUSTERS_KEY = "clusters"    # the one key of the delay clusters' step
# Recovery snapshots are (STATE_FORMAT, state): a state dir written by a version whose state
# is laid out differently is refused with a reason, not misread.
STATE_FORMAT = 12


def snapshot_of(state) -> bytes:
    return pickle.dumps((STATE_FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)


def restored(snapshot: bytes):
    try:
        stamp, state = pickle.loads(snapshot)
    except Exception:  # an older layout: its classes may not even load
        stamp, state = None, None
    if stamp != STATE_FORMAT:
        raise RuntimeError(
            "the recovery state in the state dir was written by another version of "
            "parcelwatch (its state format is not "
            f"{STATE_FORMAT}): resume it with that version, or start with an empty --state-dir")
    return state


def shard_key(shard: int) -> str:
    return f"shard-{shard:04d}"


def route_key(shard: int) -> str:
    return f"routes-{shard:04d}"


def now_ms() -> int:
    return int(time.time() * 1000)


class ShardLogic(op.StatefulBatchLogic):
    """Bytewax wrapper around one `Shard`: decodes its records, feeds it, reports metrics,
    snapshots it."""

    def __init__(self, shard: Shard, decoder: ShardDecoder, metrics: Metrics,
                 idle_every: timedelta | None, recovery: bool):
        self.shard = shard
        self.decoder = decoder
        self.recovery = recovery
        self.metrics = metrics
        self.idle_every = idle_every
        self.name = str(id(self))

    def on_batch(self, items: list[ShardInput]):
        out: list = []
        dead: list[OutputRecord] = []
        rejected = self.metrics.events.labels
        for item in items:
            item, letters = self.decoder.decode(item)
            if letters:
                dead += letters
                rejected(item.partition.rsplit("/", 1)[0], "rejected").inc(len(letters))
            out.extend(self.shard.apply(item))
        self._report()
        return dead + self._for_outputs(out), self.RETAIN

    def notify_at(self) -> datetime | None:
        return None if self.idle_every is None else datetime.now(UTC) + self.idle_every

    def on_notify(self):
        out = self.shard.advance_idle(now_ms())
        self._report()
        return self._for_outputs(out), self.RETAIN

    def _for_outputs(self, out: list) -> list:
        """Everything for the global step as one list (per-parcel alerts included, as
        verdicts it may hold): one item through the dataflow per batch, not one per
        message."""
        return [self.shard.for_aggregate(out)] if out else []

    def snapshot(self) -> bytes | None:
        # The runtime asks at every epoch, recovery or not: without it, nothing is kept.
        if not self.recovery:
            return None
        return snapshot_of(self.shard)

    def _report(self) -> None:
        events = self.metrics.events
        for (topic, outcome), count in self.shard.drain_outcomes().items():
            events.labels(topic, outcome).inc(count)
        detector = self.shard.tracker
        self.metrics.report_shard(self.name, detector.tracked, detector.stalled,
                                  self.shard.watermark.value, self.shard.carrier_latest)


class StepLogic(op.StatefulBatchLogic):
    """Bytewax wrapper around a step's state with an `apply(items) -> outputs` (the global
    `Aggregate`, a `RouteShard`)."""

    def __init__(self, state, recovery: bool):
        self.state = state
        self.recovery = recovery

    def on_batch(self, items: list):
        return self.state.apply(items), self.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.recovery:
            return None
        return snapshot_of(self.state)


class RecordMaker:
    """Detections -> alert records and merchant notifications, stamped with the wall clock."""

    def __init__(self, notifier: Notifier, metrics: Metrics):
        self.notifier = notifier
        self.metrics = metrics

    def __call__(self, keyed: tuple[str, Detection | RouteScores],
                 ) -> list[OutputRecord | OutputBatch]:
        found = keyed[1]
        if type(found) is MerchantResponse:
            self.metrics.merchant_response.observe(found.seconds)
            return []
        if type(found) is RouteScores:  # the route scores of one interval, encoded
            return [OutputBatch("route-scores", found.records, found.window_end_ts, now_ms())]
        alert = to_alert(found, now_ms())
        self.metrics.report_alert(alert.type, alert.status, alert.severity, alert.carrier)
        records = [OutputRecord("alerts", found.subject, encode(alert),
                                f"{alert.alert_id}:{alert.status}", alert.emitted_at)]
        for note in self.notifier.for_alert(alert, found.notify, found.parcels):
            records.append(OutputRecord("merchant-notifications", note.merchant_id, encode(note),
                                        note.notification_id, alert.emitted_at))
            self.metrics.notifications.labels("emitted").inc()
        return records


def build_flow(source: Source, sink: Sink, settings: Settings, clock_partitions: list[str],
               metrics: Metrics, idle_advance: bool, recovery: bool) -> Dataflow:
    """`clock_partitions`: every input partition that moves event time (all but weather), as
    "topic/partition". `recovery`:
    the run keeps recovery state, so the stateful steps' snapshots are worth taking."""
    thresholds = settings.thresholds
    idle_every = timedelta(seconds=settings.idle_check_seconds) if idle_advance else None

    def count(topic: str, outcome: str, n: int) -> None:
        if n:
            metrics.events.labels(topic, outcome).inc(n)

    router = BatchRouter(settings.shards, settings.topics.inputs(),
                         round(settings.progress_tick_seconds * 1000), counts=count)
    decoder = ShardDecoder(settings.topics.inputs())

    def build_shard(resume: bytes | None) -> ShardLogic:
        if resume is None:
            shard = Shard(thresholds, clock_partitions, settings.zone,
                          caught_up_is_the_end=not idle_advance)
        else:
            shard = restored(resume)
            shard.resume(clock_partitions)
        return ShardLogic(shard, decoder, metrics, idle_every, recovery)

    flow = Dataflow("parcelwatch")
    batches = op.input("inputs", flow, source)
    routed = op.flat_map("route", batches, router.route)
    split = op.branch("split", routed, lambda item: type(item) is ShardInput)
    weather = op.branch("weather", split.falses, lambda item: type(item) is WeatherWarning)
    to_shards = op.map("to_shards", split.trues, lambda item: (shard_key(item.shard), item))
    found = op.stateful_batch("parcel_shards", to_shards, build_shard)
    shard_letters = op.branch("shard_letters", found,
                              lambda kv: type(kv[1]) is OutputRecord)
    from_shards = op.map("to_aggregate", shard_letters.falses,
                         lambda kv: (AGGREGATE_KEY, kv[1]))
    warnings = op.map("warnings", weather.trues, lambda item: (AGGREGATE_KEY, item))
    to_aggregate = op.merge("aggregate_inputs", from_shards, warnings)
    dead_letters = op.merge("dead_letters", weather.falses,
                            op.map("shard_dead_letters", shard_letters.trues, lambda kv: kv[1]))

    def build_aggregate(resume: bytes | None) -> StepLogic:
        if resume is None:
            return StepLogic(Aggregate(thresholds, settings.shards, settings.route_shards,
                                       caught_up_is_the_end=not idle_advance,
                                       clusters=ClusterOutbox(), zone=settings.zone),
                              recovery)
        aggregate = restored(resume)
        aggregate.resume()
        return StepLogic(aggregate, recovery)

    def build_route_shard(resume: bytes | None) -> StepLogic:
        return StepLogic(RouteShard(thresholds) if resume is None else restored(resume),
                         recovery)

    def build_cluster_step(resume: bytes | None) -> StepLogic:
        return StepLogic(ClusterStep(thresholds) if resume is None else restored(resume),
                         recovery)

    aggregated = op.stateful_batch("aggregate", to_aggregate, build_aggregate)
    to_routes = op.branch("to_routes", aggregated, lambda kv: type(kv[1]) is RouteBatch)
    by_lane = op.map("by_lane", to_routes.trues, lambda kv: (route_key(kv[1].shard), kv[1]))
    scored = op.stateful_batch("route_shards", by_lane, build_route_shard)
    to_clusters = op.branch("to_clusters", to_routes.falses,
                            lambda kv: type(kv[1]) is ClusterBatch)
    clustered = op.stateful_batch(
        "clusters", op.map("by_clusters", to_clusters.trues, lambda kv: (CLUSTERS_KEY, kv[1])),
        build_cluster_step)
    maker = RecordMaker(Notifier(settings.locale, settings.zone, settings.coupon_amount_yuan,
                                 thresholds.reship_risk, thresholds.damage_window_days),
                        metrics)
    detections = op.merge("found", to_clusters.falses, scored, clustered)
    records = op.flat_map("records", detections, maker)
    op.output("outputs", op.merge("all_outputs", records, dead_letters), sink)
    return flow
