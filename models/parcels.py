"""Per-parcel state as compact columns: one row per tracked waybill.

There are millions of tracked parcels, so a row is a handful of machine integers in
`array.array` columns and no Python object at all: waybills and order ids are packed in
fixed-width slots (`models.packed`, the waybill index compiled), low-cardinality strings are
interned, and each row has one event-time `timer`: the earliest deadline the trip or any
detector wants for it. Due timers are found with one vectorised comparison per watermark
step. Detectors declare the columns they need (`models.detectors`); the trip's are here.
"""

from __future__ import annotations

from array import array

import numpy as np

from models._waybills import seen_before
from models.events import SCAN_TYPES
from models.interning import StringTable
from models.packed import WIDTH, PackedStrings, WaybillSlots

NO_TIMER = np.iinfo(np.int64).max
NAN = float("nan")
# Bits of the `flags` column.
DAMAGED = 1  # an EXCEPTION/DAMAGED scan or a DAMAGED dispute
SIGNED = 2   # the SIGNED scan's evidence is recorded in the row

NO_TIME = -1  # in a time column: none

# The trip's status: FREE (no parcel), ACTIVE (moving), STALLED (a detector found it stuck:
# forgotten after `stale_after_hours` of silence), FINISHED (its terminal scan came: kept for
# the retention, then forgotten).
FREE, ACTIVE, STALLED, FINISHED = 0, 1, 2, 3

SCAN_TYPE_CODE = {name: i for i, name in enumerate(SCAN_TYPES)}
FINGERPRINTS = 4  # recent event ids remembered per parcel, for duplicate detection


Columns = dict[str, tuple[str, int | float]]  # name -> (array typecode, value of an empty row)

# The columns every row has: the trip (latest scan, status, the one timer) and the route.
# Detectors declare theirs besides.
TRIP_COLUMNS: Columns = {
    "last_ts": ("q", 0), "timer": ("q", NO_TIMER), "last_type": ("B", 0), "status": ("B", FREE),
    "carrier": ("I", 0), "hub": ("I", 0), "city": ("I", 0), "merchant": ("I", 0),
    "origin": ("I", 0), "destination": ("I", 0),
}


class ParcelTable:
    """Rows of parcel state addressed through a waybill -> row index. Each column is an
    attribute named as declared (`table.last_ts[row]`)."""

    def __init__(self, columns: Columns | None = None) -> None:
        self.waybills = WaybillSlots(WIDTH)   # and the waybill -> row index
        self.order_ids = PackedStrings(WIDTH)
        self.rows = 0                 # rows allocated (live or free)
        self.fingerprints = array("Q")
        self.empty: list[tuple[array, int | float]] = []
        for name, (typecode, empty) in {**TRIP_COLUMNS, **(columns or {})}.items():
            column = array(typecode)
            setattr(self, name, column)
            self.empty.append((column, empty))
        self.strings = StringTable()
        self.free_rows: list[int] = []
        self.next_timer = NO_TIMER
        self.counts = [0, 0, 0, 0]  # rows per status

    def __len__(self) -> int:
        return self.rows - len(self.free_rows)

    def find(self, waybill: str) -> int:
        """The parcel's row, or -1 if it is not tracked."""
        return self.waybills.find(waybill)

    def waybill(self, row: int) -> str:
        return self.waybills.get(row)

    def order_id(self, row: int) -> str | None:
        return self.order_ids.get(row)

    def add(self, waybill: str) -> int:
        """A new ACTIVE row with no timer; every column holds its empty value."""
        if self.free_rows:
            row = self.free_rows.pop()
        else:
            row = self.rows
            self.rows += 1
            self.waybills.grow(self.rows)
            self.order_ids.grow(self.rows)
            for column, empty in self.empty:
                column.append(empty)
            self.fingerprints.extend((0,) * FINGERPRINTS)
        self.waybills.add(waybill, row)
        self.status[row] = ACTIVE
        self.counts[ACTIVE] += 1
        return row

    def free(self, row: int) -> None:
        self.waybills.remove(row)
        self.counts[self.status[row]] -= 1
        self.order_ids.set(row, None)
        for column, empty in self.empty:
            column[row] = empty
        base = row * FINGERPRINTS
        self.fingerprints[base:base + FINGERPRINTS] = array("Q", (0,) * FINGERPRINTS)
        self.free_rows.append(row)

    def set_status(self, row: int, status: int) -> None:
        self.counts[self.status[row]] -= 1
        self.counts[status] += 1
        self.status[row] = status

    def set_timer(self, row: int, at: int) -> None:
        self.timer[row] = at
        if at < self.next_timer:
            self.next_timer = at

    def bring_forward(self, row: int, at: int) -> None:
        """A detector's new deadline: the row's timer moves to it if it is sooner."""
        if at < self.timer[row]:
            self.set_timer(row, at)

    def is_duplicate(self, row: int, event_id: str) -> bool:
        """True if this event id was among the parcel's recent ones; else remember it."""
        return seen_before(self.fingerprints, row, event_id, FINGERPRINTS)

    def pop_due(self, watermark: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose timer is at or before the watermark, earliest first, and their timers'
        times; their timers clear."""
        if watermark < self.next_timer:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
        timers = np.frombuffer(self.timer, dtype=np.int64)
        due = np.flatnonzero(timers <= watermark)
        due = due[np.argsort(timers[due], kind="stable")]
        times = timers[due]
        timers[due] = NO_TIMER
        self.next_timer = int(timers.min()) if len(timers) else NO_TIMER
        return due, times

    def text(self, code: int) -> str | None:
        return self.strings.text(code)

    def code(self, value: str | None) -> int:
        return self.strings.code(value)

