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

from models.settings import MINUTE_MS, Thresholds

GAMMA = 1.02                    # a bin's upper edge over its lower one
LOG_GAMMA = math.log(GAMMA)
BASE_MS = MINUTE_MS             # waits shorter than this share bin 0
MAX_BIN = 600                   # about 54 days: longer waits share the last bin
TABLES_KEPT = 8                 # days of norms kept: a wait is judged within days of its start

Leg = tuple[str, str, str]      # (carrier, hub_id, scan_type)


def bin_of(ms: int) -> int:
    """The log-histogram bin of a wait."""
    if ms < BASE_MS * GAMMA:
        return 0
    return min(MAX_BIN, int(math.log(ms / BASE_MS) / LOG_GAMMA))


def bin_value(b: int) -> int:
    """A bin's value: its geometric middle (within 1% of anything in it)."""
    return round(BASE_MS * GAMMA ** (b + 0.5))


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
    """Every leg's waits by local day, and the norms fixed at each midnight."""

    def __init__(self, thresholds: Thresholds, zone: str):
        self.quantile = thresholds.lane_quantile
        self.history = thresholds.lane_history_days
        self.min_samples = thresholds.lane_min_samples
        self.days = LocalDays(zone)
        self.counts: dict[int, dict[Leg, dict[int, int]]] = {}  # day -> leg -> bin -> waits
        self.tables: dict[int, dict[Leg, Norm]] = {}            # day -> leg -> its norm

    def learn(self, day: int, legs: dict[Leg, dict[int, int]]) -> None:
        """Waits that ended on `day`, by leg and bin."""
        known = self.counts.setdefault(day, {})
        for leg, bins in legs.items():
            mine = known.get(leg)
            if mine is None:
                known[leg] = dict(bins)
                continue
            for b, n in bins.items():
                mine[b] = mine.get(b, 0) + n

    def refresh(self, day: int) -> None:
        """Fix the norms of `day` from the waits that ended in the days before it."""
        merged: dict[Leg, dict[int, int]] = {}
        for past in range(day - self.history, day):
            for leg, bins in self.counts.get(past, {}).items():
                mine = merged.setdefault(leg, {})
                for b, n in bins.items():
                    mine[b] = mine.get(b, 0) + n
        table = {}
        for leg, bins in merged.items():
            samples = sum(bins.values())
            if samples >= self.min_samples:
                table[leg] = Norm(bin_value(_rank_bin(bins, samples, self.quantile)), samples)
        self.tables[day] = table
        for old in [d for d in self.counts if d < day - self.history]:
            del self.counts[old]
        for old in [d for d in self.tables if d <= day - TABLES_KEPT]:
            del self.tables[old]

    def norm(self, leg: Leg, ts: int) -> Norm | None:
        """The norm of `leg` for a wait that began at `ts` (None: not enough history)."""
        table = self.tables.get(self.days.day_of(ts))
        return None if table is None else table.get(leg)

    def legs_counted(self) -> int:
        return len({leg for legs in self.counts.values() for leg in legs})


def _rank_bin(bins: dict[int, int], samples: int, quantile: float) -> int:
    """The bin holding the wait at 1-based rank ceil(quantile x samples) (the inverted-CDF
    quantile)."""
    rank = max(1, math.ceil(round(quantile * samples, 9)))
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= rank:
            return b
    return max(bins)

