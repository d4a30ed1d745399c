"""The global step: what needs every parcel at once (the routes' prior, hubs, carriers), and
the order in which route shards see route events and the delay clusters their delays.

Shards send deliveries, damage signals, matched claims and delay onsets and ends, each with
the event time at which it counts, plus ticks with their own watermark. The aggregate's
watermark is the minimum over all shards, so when it passes a time every shard has sent
everything up to that time. Items wait in a heap until then and are applied in event-time
order; route scores are taken every `score_interval_hours` (by the route shards, which get
each lane's events and the scorings in that order: `models.route_shards`) and delay clusters
looked for every `cluster_interval_minutes` of event time. The result never depends on
arrival order. Weather warnings do not move event time: they are kept as they arrive and
only name causes.
"""

from __future__ import annotations

import heapq
from itertools import chain

from models.answers import AFTER_TIES, MerchantAnswers, WaitEnds
from models.cluster_step import ClusterOutbox
from models.clusters import ClusterBoard
from models.detection import Detection
from models.dispute_rates import DisputeRates
from models.dwell_anomalies import DwellJudge
from models.events import MerchantAction, WeatherWarning
from models.feeds import CarrierFeeds
from models.lane_norms import LaneNorms
from models.messages import (
    CarrierScans,
    DelayEnd,
    DelayOnset,
    DisputeCandidate,
    DwellCandidate,
    DwellDue,
    DwellEnd,
    FeedBack,
    LegWaits,
    ParcelVerdict,
    PlaceVisits,
    RouteBatch,
    RouteEvent,
    ScoreAt,
    ShardTick,
    Signed,
)
from models.risk import risk_score
from models.route_shards import lane_shard
from models.routes import RoutePrior
from models.settings import DAY_MS, Thresholds

SIGNED_DISPUTED = "SIGNED_DISPUTED"
WAITING, EMITTED, CANCELLED = 0, 1, 2  # a deferred dwell delay's state


class Aggregate:
    def __init__(self, thresholds: Thresholds, shards: int, route_shards: int = 1,
                 caught_up_is_the_end: bool = True, clusters: ClusterOutbox | None = None,
                 zone: str = "Asia/Shanghai"):
        """`caught_up_is_the_end`: as for `Shard`: inputs all caught up are finished, so
        what a silent feed held is let out then. `clusters`: an outbox whose calls go to the
        clusters' own step (`models.cluster_step`, as the dataflow runs it); without one the
        board lives here and its clusters come out with the rest (tests, tools)."""
        self.thresholds = thresholds
        self.interval = thresholds.score_interval_ms
        self.cluster_interval = thresholds.cluster_interval_ms
        self.marks: dict[int, int | None] = dict.fromkeys(range(shards))
        self.caught_up: dict[int, bool] = dict.fromkeys(range(shards), False)
        self.heap: list[tuple[int, int, object]] = []
        self.seq = 0
        self.next_score: int | None = None
        self.next_clustering: int | None = None
        self.watermark: int | None = None
        self.routes = RoutePrior(thresholds)
        self.route_shards = route_shards
        self.outbox: list[list] = [[] for _ in range(route_shards)]  # per route shard
        self.route_seq = [0] * route_shards
        self.rates = DisputeRates(thresholds)
        self.clusters = ClusterBoard(thresholds) if clusters is None else clusters
        self.feeds = CarrierFeeds(thresholds)
        self.answers = MerchantAnswers(thresholds)
        self.norms = LaneNorms(thresholds, zone)
        self.dwells = DwellJudge(thresholds, self.norms)
        self.next_midnight: int | None = None
        # Dwell delays whose leg's norm is longer than the dwell: waybill -> [the onset the
        # shard sent, the one the norm sets, WAITING / EMITTED / CANCELLED]
        self.deferred: dict[str, list] = {}
        self.reading: int | None = None  # the most advanced shard batch's reading
        self.caught_up_is_the_end = caught_up_is_the_end

    def resume(self) -> None:
        """After a restart every shard must tick again before time moves."""
        self.caught_up = dict.fromkeys(self.caught_up, False)

    def apply(self, items: list) -> list[Detection | RouteBatch]:
        """`items`: weather warnings, and the shards' messages (one list per shard batch).
        Returns detections, for each route shard with something new one batch, and the
        clusters' step's calls as one batch."""
        out: list = []
        for item in chain.from_iterable(i if type(i) is list else (i,) for i in items):
            if type(item) is ShardTick:
                if item.watermark is not None:
                    previous = self.marks.get(item.shard)
                    self.marks[item.shard] = max(previous or item.watermark, item.watermark)
                self.caught_up[item.shard] = item.caught_up
            elif type(item) is WeatherWarning:
                self.clusters.on_warning(item)
            else:
                if type(item) is CarrierScans and item.settled_at is not None and (
                        self.reading is None or item.settled_at > self.reading):
                    self.reading = item.settled_at
                self._schedule(self._due(item), item)
        marks = list(self.marks.values())
        if None not in marks:
            self._advance(min(marks), out)
        if all(self.caught_up.values()):
            self._flush_claims(out)
            if self.caught_up_is_the_end and self.watermark is not None:
                for onset in self.feeds.finish(self.watermark, out):
                    self.clusters.on_late_onset(onset, self.watermark)
                self._flush_waits(out)
        if type(self.clusters) is ClusterOutbox:
            calls = self.clusters.take()
            if calls is not None:
                out.append(calls)
        for shard, box in enumerate(self.outbox):
            if box:
                out.append(RouteBatch(shard, self.route_seq[shard], box))
                self.route_seq[shard] += 1
                self.outbox[shard] = []
        return out

    def _open_waits(self, found: list) -> None:
        """Alerts under an SLA among `found` begin their wait for the merchant, judged in
        event-time order with the rest (after the actions of the same ms)."""
        for detection in found:
            if type(detection) is Detection:
                ends = self.answers.opened(detection, self.reading)
                if ends is not None:
                    self._schedule(ends.judge_at, ends, after_ties=True)

    def _flush_waits(self, out: list) -> None:
        """Every input is finished: waits held for answers read late are judged now."""
        held = [entry for entry in self.heap if type(entry[2]) is WaitEnds
                and entry[2].ends <= self.watermark < entry[0]]
        if held:
            self.heap = [entry for entry in self.heap if entry not in held]
            heapq.heapify(self.heap)
            for _, _, ends in sorted(held):
                self.answers.on_wait_end(ends, out)

    @staticmethod
    def _due(item) -> int:
        """The event time at which a message counts; an unknown message is an error."""
        handling = MESSAGES.get(type(item))
        if handling is None:
            raise TypeError(f"the global step got an unknown message: {type(item).__name__}")
        return getattr(item, handling[0])

    def _advance(self, watermark: int, out: list) -> None:
        if self.watermark is not None and watermark <= self.watermark:
            # What came in due already (a late record's verdict in a shard's last batch)
            # is applied now, not when time next moves: at the end of input it never does.
            self._apply_until(self.watermark, out)
            return
        self.watermark = watermark
        if self.next_score is None and self.heap:
            first = self.heap[0][0]
            self.next_score = -(-first // self.interval) * self.interval
            self.next_clustering = -(-first // self.cluster_interval) * self.cluster_interval
            self.next_midnight = self.norms.days.next_midnight(first)
        while self.next_score is not None:
            at = min(self.next_score, self.next_clustering, self.next_midnight)
            if at > watermark:
                break
            self._apply_until(at, out)
            if at == self.next_midnight:  # the day's leg norms, from the days before it
                day = self.norms.days.day_of(at)
                self.norms.refresh(day)
                self.next_midnight = self.norms.days.start_of(day + 1)
            if at == self.next_clustering:
                self.feeds.check(at, out)  # every carrier's feed, on the same cadence
                self._wait_for_releases()
                out.extend(self.clusters.evaluate(at))
                self.next_clustering += self.cluster_interval
            if at == self.next_score:
                self._score(at, out)
                self.next_score += self.interval
        self._apply_until(watermark, out)

    def _score(self, at: int, out: list) -> None:
        scoring = ScoreAt(at, *self.routes.at(at))
        for box in self.outbox:
            box.append(scoring)
        if at % DAY_MS == 0:
            self.rates.forget_before(at)
            self.answers.forget_before(at)
            self.dwells.forget_before(at)

    def _apply_until(self, ts: int, out: list) -> None:
        heap = self.heap
        while heap and heap[0][0] <= ts:
            self._apply(heapq.heappop(heap)[2], out)

    def _apply(self, item, out: list) -> None:
        found = len(out)
        MESSAGES[type(item)][1](self, item, out)
        if len(out) > found:
            self._open_waits(out[found:])
        if self.feeds.releases:
            self._wait_for_releases()
        if self.dwells.scheduled:
            for at, due in self.dwells.take_scheduled():
                self._schedule(at, due, after_ties=True)

    def _schedule(self, at: int, item, after_ties: bool = False) -> None:
        """`item` applied when the watermark reaches `at` (`after_ties`: after everything
        else due then)."""
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq + (AFTER_TIES if after_ties else 0), item))

    def _on_signed(self, item: Signed, out: list) -> None:
        self._route(RouteEvent("delivery", item.carrier, item.origin, item.destination,
                               item.merchant_id, item.signed_ts, item.signed_ts))
        if item.damaged:
            self._route(RouteEvent("damage", item.carrier, item.origin, item.destination,
                                   item.merchant_id, item.signed_ts, item.signed_ts))
        self.rates.delivered(self._keys(item.hub_id, item.carrier), item.signed_ts)

    def _route(self, event: RouteEvent) -> None:
        """Counted here for the prior, scored by its lane's route shard."""
        self.routes.apply(event)
        self.outbox[lane_shard(event.origin, event.destination, self.route_shards)].append(event)

    def _wait_for_releases(self) -> None:
        for release_at in self.feeds.take_releases():
            self._schedule(release_at, FeedBack(release_at))

    def _on_feed_back(self, item: FeedBack, out: list) -> None:
        for onset in self.feeds.release(item.release_at, out):
            self.clusters.on_late_onset(onset, item.release_at)

    def _on_onset(self, item: DelayOnset, out: list) -> None:
        deferred = self.deferred.get(item.waybill)
        if deferred is not None and deferred[1] == item.onset_ts:  # the one the norm set
            if deferred[2] == CANCELLED:
                del self.deferred[item.waybill]
                return
            deferred[2] = EMITTED
        elif not item.weather:
            at = self._dwell_onset(item)
            if at > item.onset_ts:  # a slow leg: the delay begins at its norm
                self.deferred[item.waybill] = [item.onset_ts, at, WAITING]
                self._schedule(at, item._replace(onset_ts=at), after_ties=True)
                return
        if not self.feeds.onset(item, out):
            self.clusters.on_onset(item)

    def _dwell_onset(self, item: DelayOnset) -> int:
        """When a dwell delay begins: at the dwell, or later where its leg's norm is longer."""
        norm = self.norms.norm((item.carrier, item.hub_id, item.scan_type), item.since_ts)
        if norm is None:
            return item.onset_ts
        return max(item.onset_ts,
                   item.since_ts + round(self.thresholds.lane_factor * norm.quantile_ms))

    def _on_end(self, item: DelayEnd, out: list) -> None:
        deferred = self.deferred.get(item.waybill)
        if deferred is not None and deferred[0] == item.onset_ts:
            if deferred[2] == WAITING:  # it moved on before its leg's norm: no delay
                deferred[2] = CANCELLED
                return
            if deferred[2] == EMITTED:
                del self.deferred[item.waybill]
                item = item._replace(onset_ts=deferred[1], end_ts=max(item.end_ts, deferred[1]))
        if not self.feeds.end(item):
            self.clusters.on_end(item)

    def _emit(self, out: list):
        """A per-parcel verdict found here, at event time `at`, as the shards' are judged."""
        return lambda detection, at: self.feeds.verdict(detection, at, out)

    @staticmethod
    def _keys(hub: str | None, carrier: str | None) -> list[str]:
        return [f"hub:{hub}" if hub else "hub:?", f"carrier:{carrier}"]

    def _flush_claims(self, out: list) -> None:
        """Every input is read: claims still waiting cannot be changed by anything more."""
        waiting = [entry for entry in self.heap if type(entry[2]) is DisputeCandidate]
        if not waiting:
            return
        self.heap = [entry for entry in self.heap if type(entry[2]) is not DisputeCandidate]
        heapq.heapify(self.heap)
        claims = [self._claim(claim) for _, _, claim in sorted(waiting)]
        out += claims
        self._open_waits(claims)

    def _claim(self, claim: DisputeCandidate) -> Detection:
        hub_key, carrier_key = self._keys(claim.hub_id, claim.carrier)
        factors = list(claim.factors)
        if claim.hub_id and self.rates.is_high(hub_key, claim.dispute_ts):
            factors.append("HUB_DISPUTE_RATE_HIGH")
        if self.rates.is_high(carrier_key, claim.dispute_ts):
            factors.append("CARRIER_DISPUTE_RATE_HIGH")
        self.rates.disputed([hub_key, carrier_key], claim.signed_ts)
        risk = risk_score(factors)
        return Detection(
            type=SIGNED_DISPUTED,
            status="FIRING",
            severity="CRITICAL" if risk >= self.thresholds.critical_risk else "WARNING",
            subject=claim.waybill,
            onset_ts=claim.dispute_ts,
            event_ts=claim.dispute_ts,
            carrier=claim.carrier,
            merchant_id=claim.merchant_id,
            order_id=claim.order_id,
            waybill=claim.waybill,
            details={
                "signed_ts": claim.signed_ts,
                "signer": claim.signer,
                "proof": claim.proof,
                "hub_id": claim.hub_id,
                "dispute_ts": claim.dispute_ts,
                "dispute_id": claim.dispute_id,
                "distance_km": claim.distance_km,
                "risk": risk,
                "risk_factors": factors,
                "buyer_note": claim.note,
            },
        )


# Every message the shards send (models.messages) that waits for its event time: the field
# holding that time, and how the global step applies it then.
MESSAGES = {
    Signed: ("signed_ts", Aggregate._on_signed),
    RouteEvent: ("at_ts", lambda self, item, out: self._route(item)),
    DelayOnset: ("onset_ts", Aggregate._on_onset),
    DelayEnd: ("end_ts", Aggregate._on_end),
    CarrierScans: ("read_at", lambda self, item, out: self.feeds.on_scans(item)),
    FeedBack: ("release_at", Aggregate._on_feed_back),
    ParcelVerdict: ("decided_at", lambda self, item, out: self.feeds.verdict(
        item.detection, item.decided_at, out)),
    DisputeCandidate: ("dispute_ts", lambda self, item, out: out.append(self._claim(item))),
    MerchantAction: ("ts", lambda self, item, out: self.answers.on_action(item, out)),
    WaitEnds: ("judge_at", lambda self, item, out: self.answers.on_wait_end(item, out)),
    LegWaits: ("due_at", lambda self, item, out: self.norms.learn(item.day, item.legs)),
    DwellCandidate: ("due_at", lambda self, item, out: self.dwells.on_candidate(item)),
    DwellDue: ("fire_at", lambda self, item, out: self.dwells.on_due(item, self._emit(out))),
    DwellEnd: ("end_ts", lambda self, item, out: self.dwells.on_end(item, self._emit(out))),
    PlaceVisits: ("due_at", lambda self, item, out: self.clusters.on_visits(item.due_at,
                                                                           item.cells)),
}
