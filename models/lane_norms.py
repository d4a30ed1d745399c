"""What is usual on each leg: the time to the next scan, learned from the scans themselves.

A leg is (carrier, hub, scan type) of the scan a wait starts from. The shards see each
parcel's consecutive scans and count every transition (how long the parcel waited after a
scan of that leg) by the local day it ended on, in a log-histogram (`bin_of`): bins 2% wide,
so a quantile read from it is within 1% of the exact one, and a leg's day is at most
`MAX_BIN` + 1 counts however busy the leg is. The global step adds the shards' counts up
by day (`LaneNorms.learn`) and, as its watermark passes each local midnight, fixes that
day's norms from the `lane_history_days` before it (`refresh`). A wait is judged against
the norm of the day it began on, so what is found does not depend on read order or on
when a restart happened.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from models.settings import MINUTE_MS, Thresholds

GAMMA = 1.02                    # a bin's upper edge over its lower one
LOG_GAMMA = math.log(GAMMA)
BASE_MS = MINUTE_MS             # waits shorter than this share bin 0
MAX_BIN = 600                   # about 54 days: longer waits share the last bin
# Days of norms kept: a silence read late (a backfill weeks behind) is judged by the norm of
# the day it began. 20 bytes a leg a day.
TABLES_KEPT = 32
# Waits are kept this many days past the history, so a norm can be refixed when waits of its
# history are read up to a week late.
REFIX_DAYS = 7
BIN_BITS = 10                   # a (leg, bin) key: leg id << BIN_BITS | bin
BIN_MASK = (1 << BIN_BITS) - 1

Leg = tuple[str, str, str]      # (carrier, hub_id, scan_type)


def bin_of(ms: int) -> int:
    """The log-histogram bin of a wait."""
    if ms < BASE_MS * GAMMA:
        return 0
    return min(MAX_BIN, int(math.log(ms / BASE_MS) / LOG_GAMMA))


def bin_value(b):
    """A bin's value (or each of an array's): its geometric middle, within 1% of anything
    in it."""
    return np.round(BASE_MS * GAMMA ** (np.asarray(b) + 0.5)).astype(np.int64)


class LocalDays:
    """Calendar days in `zone`, as day numbers (proleptic ordinals), cheap for nearby times:
    the day last asked for is kept with its bounds."""

    def __init__(self, zone: str):
        self.zone = ZoneInfo(zone)
        self.day, self.start, self.end = 0, 0, 0

    def day_of(self, ts: int) -> int:
        if not self.start <= ts < self.end:
            date = datetime.fromtimestamp(ts / 1000, self.zone).date()
            self.day = date.toordinal()
            self.start, self.end = self.start_of(self.day), self.start_of(self.day + 1)
        return self.day

    def start_of(self, day: int) -> int:
        """The ms at which local day `day` begins."""
        date = datetime.fromordinal(day)
        return int(datetime(date.year, date.month, date.day, tzinfo=self.zone).timestamp()
                   * 1000)

    def next_midnight(self, ts: int) -> int:
        """The first local midnight at or after `ts`."""
        day = self.day_of(ts)
        return ts if self.start_of(day) == ts else self.start_of(day + 1)

    def __getstate__(self) -> dict:
        return {"zone": self.zone.key}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["zone"])


class Norm(NamedTuple):
    """A leg's norm on a day: the quantile of its waits and how many it was read from."""

    quantile_ms: int
    samples: int


class LaneNorms:
    """Every leg's waits by local day, and the norms fixed at each midnight.

    A day's counts arrive as dicts while the day is read, and are packed at the next
    refresh into two sorted arrays: a key per (leg, bin) and its count, 12 bytes an
    occupied bin. A refresh adds the history's days up and reads every leg's quantile at
    once with numpy, so its cost follows the occupied bins, not the number of legs times
    the bins."""

    def __init__(self, thresholds: Thresholds, zone: str):
        self.quantile = thresholds.lane_quantile
        self.history = thresholds.lane_history_days
        self.min_samples = thresholds.lane_min_samples
        self.days = LocalDays(zone)
        self.leg_ids: dict[Leg, int] = {}
        self.legs: list[Leg] = []
        self.open: dict[int, dict[int, int]] = {}     # day -> leg id << BIN_BITS | bin -> waits
        self.packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # day -> (keys, counts)
        # day -> (leg ids with a norm, sorted; their quantiles; their samples)
        self.tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.stale: set[int] = set()  # days whose history got waits read after it was fixed

    def learn(self, day: int, legs: dict[Leg, dict[int, int]]) -> None:
        """Waits that ended on `day`, by leg and bin."""
        counts = self.open.setdefault(day, {})
        # Waits read late (a feed's backfill): the norms fixed from that day are refixed
        # when next asked for, so a silence judged later counts them as if read in time.
        self.stale.update(d for d in self.tables if day < d <= day + self.history)
        for leg, bins in legs.items():
            base = self._id(leg) << BIN_BITS
            for b, n in bins.items():
                key = base | b
                counts[key] = counts.get(key, 0) + n

    def refresh(self, day: int) -> None:
        """Fix the norms of `day` from the waits that ended in the days before it."""
        if day >= max(self.tables, default=day):  # a midnight, not a refix
            for old in [d for d in (*self.open, *self.packed)
                        if d < day - self.history - REFIX_DAYS]:
                self.open.pop(old, None)
                self.packed.pop(old, None)
        history = [self._pack(d) for d in range(day - self.history, day)]
        history = [days for days in history if days is not None]
        table = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        if history:
            keys, counts = _summed(history)
            counts = counts.astype(np.int64)
            legs = keys >> BIN_BITS
            starts = np.flatnonzero(np.r_[True, legs[1:] != legs[:-1]])
            samples = np.add.reduceat(counts, starts)
            enough = samples >= self.min_samples
            running = np.cumsum(counts)
            before = running[starts] - counts[starts]
            ranks = np.maximum(1, np.ceil(np.round(self.quantile * samples, 9))).astype(np.int64)
            at = np.searchsorted(running, before + ranks)  # the first bin that reaches it
            bins = (keys[at] & BIN_MASK)[enough]
            table = (legs[starts][enough], bin_value(bins), samples[enough].astype(np.int64))
        self.tables[day] = table
        self.stale.discard(day)
        for old in [d for d in self.tables if d <= day - TABLES_KEPT]:
            del self.tables[old]

    def norm(self, leg: Leg, ts: int) -> Norm | None:
        """The norm of `leg` for a wait that began at `ts` (None: not enough history)."""
        day = self.days.day_of(ts)
        if day in self.stale:
            latest = max(self.tables)
            if day >= latest - REFIX_DAYS:  # its history's counts are still kept
                self.refresh(day)
            self.stale.discard(day)
        table = self.tables.get(day)
        leg_id = self.leg_ids.get(leg)
        if table is None or leg_id is None:
            return None
        ids, quantiles, samples = table
        at = int(np.searchsorted(ids, leg_id))
        if at == len(ids) or ids[at] != leg_id:
            return None
        return Norm(int(quantiles[at]), int(samples[at]))

    def _id(self, leg: Leg) -> int:
        leg_id = self.leg_ids.get(leg)
        if leg_id is None:
            leg_id = self.leg_ids[leg] = len(self.legs)
            self.legs.append(leg)
        return leg_id

    def _pack(self, day: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The day's counts as sorted arrays, with what arrived since they were packed."""
        counts = self.open.pop(day, None)
        packed = self.packed.get(day)
        if counts:
            arrived = (np.fromiter(counts.keys(), np.int64, len(counts)),
                       np.fromiter(counts.values(), np.int64, len(counts)))
            packed = _summed([arrived] if packed is None else [packed, arrived])
            self.packed[day] = packed
        return packed


def _summed(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Counts by key, added up over `parts`: sorted keys (int64), counts (uint32)."""
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts]).astype(np.int64)
    unique, where = np.unique(keys, return_inverse=True)
    return unique, np.bincount(where.ravel(), weights=counts,
                               minlength=len(unique)).astype(np.uint32)
