"""The typed messages between steps, in one place: what the per-parcel shards hand to the
global step, and what the global step hands the route shards.

They are plain tuples (cheap to move between workers). The global step dispatches on their
type through one table (`models.aggregate`), which raises on a type it does not know.
"""

from __future__ import annotations

from typing import NamedTuple

from models.detection import Detection
from models.settings import MINUTE_MS


class ShardTick(NamedTuple):
    shard: int
    watermark: int | None
    caught_up: bool          # every input partition was caught up for that shard


class Signed(NamedTuple):
    """A delivery, for route damage rates and hub / carrier dispute rates."""

    carrier: str
    origin: str | None
    destination: str | None
    merchant_id: str | None
    hub_id: str | None
    signed_ts: int
    damaged: bool


class RouteEvent(NamedTuple):
    """A delivery (SIGNED scan) or a damage signal of a delivered parcel, by its route."""

    kind: str                 # "delivery" or "damage"
    carrier: str
    origin: str | None
    destination: str | None
    merchant_id: str | None
    signed_ts: int            # the delivery's SIGNED time: it picks the daily bucket
    at_ts: int                # event time at which it became known


class DisputeCandidate(NamedTuple):
    """A NOT_RECEIVED claim that matched a signed parcel, with its local evidence."""

    dispute_id: str
    dispute_ts: int
    waybill: str
    carrier: str | None
    merchant_id: str | None
    order_id: str | None
    hub_id: str | None
    signed_ts: int
    signer: str | None
    proof: str | None
    distance_km: float | None
    factors: tuple[str, ...]
    note: str | None                 # masked


class DelayOnset(NamedTuple):
    """A parcel became delayed at `onset_ts`; it had sat still since `since_ts`."""

    waybill: str
    onset_ts: int
    since_ts: int
    weather: bool              # began with an EXCEPTION/WEATHER scan
    lat: float | None          # where it sits (None: unknown, it cannot be clustered)
    lon: float | None
    hub_id: str | None
    city: str | None
    carrier: str | None
    merchant_id: str | None
    order_id: str | None
    scan_type: str | None = None  # of the scan that brought it there: its leg's norm


class DelayEnd(NamedTuple):
    """The delay that began at `onset_ts` ended at `end_ts` (moved on, finished, or forgotten)."""

    waybill: str
    onset_ts: int
    end_ts: int


class LegWaits(NamedTuple):
    """How long parcels waited after a scan, by leg and log-histogram bin, for waits that
    ended on local day `day` (`models.lane_norms`); counted from `due_at`, the day's start."""

    due_at: int
    day: int
    legs: dict                 # (carrier, hub_id, scan_type) -> bin -> waits


class DwellCandidate(NamedTuple):
    """A parcel silent for `lane_min_hours` after its latest scan: the global step, which
    knows the leg's norm, judges whether it is a DWELL_ANOMALY."""

    due_at: int
    waybill: str
    last_scan_ts: int
    scan_type: str
    hub_id: str | None
    city: str | None
    carrier: str | None
    merchant_id: str | None
    order_id: str | None
    origin: str | None
    destination: str | None


class DwellEnd(NamedTuple):
    """The silence after `last_scan_ts` of a candidate ended at `end_ts`."""

    waybill: str
    last_scan_ts: int
    end_ts: int
    resolved_by: str


class DwellDue(NamedTuple):
    """A candidate's silence reaches its leg's norm at `fire_at`."""

    fire_at: int
    waybill: str
    last_scan_ts: int


class PlaceVisits(NamedTuple):
    """Parcels that arrived somewhere in one `cluster_interval` of event time, by the ~1 km
    grid cell they arrived in: the traffic a delay cluster sits in. Counted from `due_at`,
    the interval's end."""

    due_at: int
    cells: dict                # (lat cell, lon cell) -> parcels


class ScoreAt(NamedTuple):
    """Score the routes at `window_end_ts` with this prior (fitted over every route)."""

    window_end_ts: int
    alpha: float
    beta: float


class InOrder:
    """Batches a step's sender numbered (`seq`), handed on in that order whatever order the
    runtime delivers them in: the route shards' and the clusters' step's (a batch is a
    NamedTuple with `seq` and its items last)."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.waiting: dict[int, list] = {}   # batches that came before an earlier one

    def ready(self, batches) -> list[list]:
        """The items of every batch that is next in turn, batch by batch."""
        for batch in batches:
            self.waiting[batch.seq] = batch[-1]
        due = []
        while self.next_seq in self.waiting:
            due.append(self.waiting.pop(self.next_seq))
            self.next_seq += 1
        return due


class ClusterBatch(NamedTuple):
    """What the global step hands the delay clusters' step: its calls on the cluster board,
    in the order made. `seq` counts the batches, so they are applied in the order sent
    whatever order the runtime delivers them in."""

    seq: int
    calls: list               # (ClusterBoard method name, its arguments)


class RouteBatch(NamedTuple):
    """What the global step hands one route shard: route events and scorings in event-time
    order. `seq` counts the shard's batches, so they are applied in the order sent whatever
    order the runtime delivers them in."""

    shard: int
    seq: int
    items: list               # RouteEvent and ScoreAt


ONE_SCAN = 1 << 32


def packed_minute(scans: int, first: int, last: int) -> int:
    """A minute of a carrier's scans as one int, cheap to count and to move between
    processes: scans << 32 | first's ms in the minute << 16 | last's."""
    return scans << 32 | first % MINUTE_MS << 16 | last % MINUTE_MS


def unpacked_minute(minute: int, packed: int) -> tuple[int, int, int]:
    """(scans, first ts, last ts) of a packed minute."""
    base = minute * MINUTE_MS
    return packed >> 32, base + (packed >> 16 & 0xFFFF), base + (packed & 0xFFFF)


class CarrierScans(NamedTuple):
    """The scans one shard batch read, per carrier: how each carrier's feed is doing."""

    read_at: int                       # the shard's watermark when it read them (0: none)
    minutes: dict[str, dict[int, int]]  # carrier -> minute of ts -> packed_minute
    latest: dict[str, int]             # carrier -> largest ts
    late: dict[str, int]               # carrier -> scans read late
    shard: int = 0
    in_flight: dict[str, int] | None = None  # carrier -> the shard's parcels on their way
    settled_at: int | None = None      # the watermark once the batch is read (None: read_at)


class ParcelVerdict(NamedTuple):
    """A per-parcel alert a shard raised when its watermark was `decided_at`: the global
    step lets it out, or holds it while its carrier's feed is silent."""

    decided_at: int
    detection: Detection


class FeedBack(NamedTuple):
    """A silent carrier's feed was read again: what it held is judged at `release_at`."""

    release_at: int


class RouteScores(NamedTuple):
    """One scoring's `route-scores` records, encoded, and the window they end."""

    window_end_ts: int
    records: list[tuple[str, bytes]]   # (key, value)
