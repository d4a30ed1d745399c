"""Per-parcel state as compact columns: one row per tracked waybill.

There are millions of tracked parcels, so a row is a handful of machine integers in
`array.array` columns and no Python object at all: waybills and order ids are packed in
fixed-width slots (`models.packed`, the waybill index compiled), low-cardinality strings are
interned, and each row has one event-time `timer` whose meaning depends on its status. Due
timers are found with one vectorised comparison per watermark step.
"""

from __future__ import annotations

import zlib
from array import array

import numpy as np

from models.events import SCAN_TYPES
from models.interning import StringTable
from models.packed import WIDTH, PackedStrings, WaybillSlots

NO_TIMER = np.iinfo(np.int64).max
NAN = float("nan")
# Bits of the `flags` column.
DAMAGED = 1  # an EXCEPTION/DAMAGED scan or a DAMAGED dispute
SIGNED = 2   # the SIGNED scan's evidence is recorded in the row

NO_TIME = -1  # in the place_since / delay_onset columns: none

# Row status; the timer means: ACTIVE -> no-movement deadline, STALLED / FINISHED -> forget at.
FREE, ACTIVE, STALLED, FINISHED = 0, 1, 2, 3

SCAN_TYPE_CODE = {name: i for i, name in enumerate(SCAN_TYPES)}
FINGERPRINTS = 4  # recent event ids remembered per parcel, for duplicate detection


def event_fingerprint(event_id: str) -> int:
    """64-bit fingerprint of an event id (two independent checksums, so ids that collide in
    one, which is easy to arrange for CRC-32, still differ); nonzero: 0 marks an empty slot."""
    data = event_id.encode()
    return (zlib.crc32(data) << 32 | zlib.adler32(data)) or 1


class ParcelTable:
    """Rows of parcel state addressed through a waybill -> row index."""


    def __init__(self) -> None:
        self.waybills = WaybillSlots(WIDTH)   # and the waybill -> row index
        self.order_ids = PackedStrings(WIDTH)
        self.rows = 0                 # rows allocated (live or free)
        self.last_ts = array("q")
        self.timer = array("q")
        self.last_type = array("B")
        self.status = array("B")
        self.fingerprints = array("Q")
        self.carrier = array("I")
        self.hub = array("I")
        self.city = array("I")
        self.merchant = array("I")
        self.origin = array("I")
        self.destination = array("I")
        # Delays (for delay clusters): where the parcel sits and since when, and when its
        # current delay began (NO_TIME: none).
        self.place = array("I")       # hub code of the current place (0: unknown, in transit)
        self.place_since = array("q")
        self.delay_onset = array("q")
        # Signing evidence and damage, for disputes and route damage rates.
        self.signer = array("B")      # index in SIGNERS + 1, 0 = unknown
        self.proof = array("B")       # index in PROOFS + 1, 0 = unknown
        self.flags = array("B")       # DAMAGED
        # Last known position (NaN: unknown): the current place while travelling, where the
        # SIGNED scan happened once signed.
        self.lat = array("f")
        self.lon = array("f")
        self.dest_lat = array("f")    # the consignee's geocode (NaN: unknown)
        self.dest_lon = array("f")
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
        """A new ACTIVE row with no timer; its columns are zeroed."""
        if self.free_rows:
            row = self.free_rows.pop()
        else:
            row = self.rows
            self.rows += 1
            self.waybills.grow(self.rows)
            self.order_ids.grow(self.rows)
            for column in (self.last_ts, self.timer, self.last_type, self.status, *self._ints(),
                           *self._evidence(), *self._times()):
                column.append(0)
            for column in self._places():
                column.append(NAN)
            self.fingerprints.extend((0,) * FINGERPRINTS)
        self.waybills.add(waybill, row)
        self.timer[row] = NO_TIMER
        self.place_since[row] = self.delay_onset[row] = NO_TIME
        self.status[row] = ACTIVE
        self.counts[ACTIVE] += 1
        return row

    def free(self, row: int) -> None:
        self.waybills.remove(row)
        self.counts[self.status[row]] -= 1
        self.order_ids.set(row, None)
        self.last_ts[row] = 0
        self.timer[row] = NO_TIMER
        self.last_type[row] = 0
        self.status[row] = FREE
        for column in (*self._ints(), *self._evidence(), *self._times()):
            column[row] = 0
        for column in self._places():
            column[row] = NAN
        base = row * FINGERPRINTS
        self.fingerprints[base:base + FINGERPRINTS] = array("Q", (0,) * FINGERPRINTS)
        self.free_rows.append(row)

    def _ints(self):
        return (self.carrier, self.hub, self.city, self.merchant, self.origin, self.destination,
                self.place)

    def _times(self):
        return (self.place_since, self.delay_onset)

    def _evidence(self):
        return (self.signer, self.proof, self.flags)

    def _places(self):
        return (self.lat, self.lon, self.dest_lat, self.dest_lon)

    def set_status(self, row: int, status: int) -> None:
        self.counts[self.status[row]] -= 1
        self.counts[status] += 1
        self.status[row] = status

    def set_timer(self, row: int, at: int) -> None:
        self.timer[row] = at
        if at < self.next_timer:
            self.next_timer = at

    def is_duplicate(self, row: int, event_id: str) -> bool:
        """True if this event id was among the parcel's recent ones; else remember it."""
        fp = event_fingerprint(event_id)
        base = row * FINGERPRINTS
        slots = self.fingerprints
        recent = slots[base:base + FINGERPRINTS]
        if fp in recent:
            return True
        # Rotate: the newest fingerprint goes first, the oldest falls off.
        slots[base + 1:base + FINGERPRINTS] = recent[:-1]
        slots[base] = fp
        return False

    def pop_due(self, watermark: int) -> np.ndarray:
        """Rows whose timer is at or before the watermark, earliest first; their timers clear."""
        if watermark < self.next_timer:
            return np.empty(0, dtype=np.intp)
        timers = np.frombuffer(self.timer, dtype=np.int64)
        due = np.flatnonzero(timers <= watermark)
        due = due[np.argsort(timers[due], kind="stable")]
        timers[due] = NO_TIMER
        self.next_timer = int(timers.min()) if len(timers) else NO_TIMER
        return due

    def text(self, code: int) -> str | None:
        return self.strings.text(code)

    def code(self, value: str | None) -> int:
        return self.strings.code(value)

