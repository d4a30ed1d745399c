"""DWELL_ANOMALY: a parcel silent for longer than is usual on its leg.

The shards hand the global step every silence that reached `lane_min_hours`
(`models.detectors.dwell`); here it meets its leg's norm for the day it began
(`models.lane_norms`): legs with `lane_min_samples` waits whose threshold, `lane_factor` x
the `lane_quantile` quantile, is below `no_movement_hours` are judged, the others left to
NO_MOVEMENT. The silence fires at last scan + max(threshold, `lane_min_hours`) if no scan
ended it by then (a scan exactly at the deadline ends it in time), and resolves, under the
same id, at the scan that ends it. Candidates, deadlines and ends are applied in the global
step's event-time order, so what fires does not depend on arrival order; a firing is a
per-parcel verdict like NO_MOVEMENT's, held while its carrier's feed is silent.
"""

from __future__ import annotations

from collections.abc import Callable

from models.detection import Detection
from models.lane_norms import LaneNorms, Norm
from models.messages import DwellCandidate, DwellDue, DwellEnd
from models.settings import HOUR_MS, Thresholds

DWELL_ANOMALY = "DWELL_ANOMALY"


class _Silence:
    __slots__ = ("candidate", "fired", "norm", "threshold")

    def __init__(self, candidate: DwellCandidate, threshold: int, norm: Norm):
        self.candidate = candidate
        self.threshold = threshold
        self.norm = norm
        self.fired = False

    @property
    def fire_at(self) -> int:
        return self.candidate.last_scan_ts + self.threshold


class DwellJudge:
    """`emit(detection, at)`: a verdict found at event time `at` (the global step holds it
    while the parcel's carrier's feed is silent)."""

    def __init__(self, thresholds: Thresholds, norms: LaneNorms):
        self.norms = norms
        self.factor = thresholds.lane_factor
        self.limit = thresholds.no_movement_ms
        self.min_ms = thresholds.lane_min_ms
        self.stale_after = thresholds.stale_after_ms
        self.open: dict[str, _Silence] = {}      # waybill -> its silence being judged
        # Deadlines for the global step to judge at their time, after what else is due then.
        self.scheduled: list[tuple[int, DwellDue]] = []

    def on_candidate(self, candidate: DwellCandidate) -> None:
        norm = self.norms.norm((candidate.carrier, candidate.hub_id, candidate.scan_type),
                               candidate.last_scan_ts)
        if norm is None:
            return  # too few waits on the leg to know its norm
        threshold = round(self.factor * norm.quantile_ms)
        if threshold >= self.limit:
            return  # a slow leg: NO_MOVEMENT speaks first
        silence = _Silence(candidate, max(threshold, self.min_ms), norm)
        self.open[candidate.waybill] = silence
        # A scan exactly at the deadline is applied first: it ends the silence in time.
        self.scheduled.append((silence.fire_at, DwellDue(silence.fire_at, candidate.waybill,
                                                         candidate.last_scan_ts)))

    def on_due(self, due: DwellDue, emit: Callable[[Detection, int], None]) -> None:
        silence = self.open.get(due.waybill)
        if silence is None or silence.fired or silence.candidate.last_scan_ts != due.last_scan_ts:
            return
        silence.fired = True
        emit(self._detection(silence, "FIRING", silence.fire_at), silence.fire_at)

    def on_end(self, end: DwellEnd, emit: Callable[[Detection, int], None]) -> None:
        silence = self.open.get(end.waybill)
        if silence is None or silence.candidate.last_scan_ts != end.last_scan_ts:
            return
        del self.open[end.waybill]
        if silence.fired:
            # A scan read late may show the parcel moved before the deadline: a silent feed
            # holding the firing then drops both.
            emit(self._detection(silence, "RESOLVED", end.end_ts,
                                 resolved_by=end.resolved_by), end.end_ts)

    def take_scheduled(self) -> list[tuple[int, DwellDue]]:
        scheduled, self.scheduled = self.scheduled, []
        return scheduled

    def forget_before(self, watermark: int) -> None:
        """Fired silences of parcels the shards have forgotten as stale never resolve."""
        horizon = watermark - self.stale_after
        for waybill in [w for w, s in self.open.items()
                        if s.fired and s.candidate.last_scan_ts < horizon]:
            del self.open[waybill]

    def _detection(self, silence: _Silence, status: str, event_ts: int, **extra) -> Detection:
        c = silence.candidate
        return Detection(
            type=DWELL_ANOMALY,
            status=status,
            severity="WARNING",
            subject=c.waybill,
            onset_ts=silence.fire_at,
            event_ts=event_ts,
            carrier=c.carrier,
            merchant_id=c.merchant_id,
            order_id=c.order_id,
            waybill=c.waybill,
            details={
                "last_scan_type": c.scan_type,
                "last_scan_ts": c.last_scan_ts,
                "last_hub_id": c.hub_id,
                "last_city": c.city,
                "origin": c.origin,
                "destination": c.destination,
                "dwell_hours": round((max(event_ts, silence.fire_at) - c.last_scan_ts)
                                     / HOUR_MS, 2),
                "lane_quantile_hours": round(silence.norm.quantile_ms / HOUR_MS, 2),
                "lane_samples": silence.norm.samples,
                "threshold_hours": round(silence.threshold / HOUR_MS, 2),
                **extra,
            },
        )
