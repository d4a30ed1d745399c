"""The per-parcel detector protocol: one module per detection, one small interface.

The shard's tracker (`models.tracking`) owns the columnar parcel store and the parcel's trip:
it looks each scan's waybill up once, drops repeated event ids, records the route, the latest
scan and the trip's status, and keeps one event-time timer per row (the earliest deadline any
detector wants). A detector sees each accepted scan after that bookkeeping, says when it next
needs the row, acts when the row is due, lets go when the row is freed, and flushes what it
holds once every input is caught up. It keeps its per-parcel values in columns it declares
(created in the store for every row) and its rare, short-lived cases in side dicts by row.

A new detector is one module here and one entry in `models.tracking.DETECTORS`; the
conformance suite (`tests/test_conformance.py`) runs it with the others.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from models.parcels import NO_TIMER, Columns, ParcelTable
from models.settings import Thresholds

__all__ = ["Columns", "Detector", "Prior"]


class Prior(NamedTuple):
    """The row as it was before the scan (status FREE: the scan started tracking it)."""

    status: int
    ts: int
    scan_type: int
    hub: int
    city: int


class Detector:
    """Defaults for every hook, so a detector implements only what it uses."""

    # The per-parcel columns it needs, created in the store for every row.
    columns: ClassVar[Columns] = {}
    # Record types besides scans this detector consumes (`on_record`).
    records: ClassVar[tuple[type, ...]] = ()
    # A finished parcel's row must stay at least this long after its trip ended.
    keep_finished_ms: int = 0

    def __init__(self, thresholds: Thresholds, parcels: ParcelTable, zone: str):
        self.thresholds = thresholds
        self.parcels = parcels

    def on_scan(self, row: int, scan, hub: int, prior: Prior, out: list) -> None:
        """An accepted scan of the parcel in `row`; `hub`: its hub's string code (0: none)."""

    def on_record(self, record, out: list, settled: int | None = None) -> bool:
        """A record of one of `records`, read in a batch that moves the reading to `settled`
        (a late record's deadlines wait from there); True if it repeats one already read."""
        raise TypeError(f"{type(self).__name__} does not consume {type(record).__name__}")

    def deadline(self, row: int) -> int:
        """Event time at which this detector next needs the row (NO_TIMER: never)."""
        return NO_TIMER

    def on_due(self, row: int, watermark: int, out: list) -> None:
        """The watermark reached the row's timer (perhaps another detector's deadline)."""

    def keeps(self, row: int) -> bool:
        """True while the row must not be freed, whatever its trip says."""
        return False

    def on_free(self, row: int, gone_at: int, out: list) -> None:
        """The row is about to be freed: its parcel counts as gone from event time `gone_at`."""

    def on_watermark(self, watermark: int, out: list) -> None:
        """Work not tied to one row, before due rows are handled."""

    def flush(self, out: list) -> None:
        """Every input is caught up: release what was held only in case more came."""
