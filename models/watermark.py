"""The job's event-time clock (contract section 2).

Per input partition: the largest `ts` read and whether it is caught up. The watermark is the
minimum over partitions still behind (caught-up ones do not hold it back), minus the allowed
lateness. Until every expected partition has reported, it stays unknown, so a partition read
ahead of a slower one never makes the slower one's parcels look stalled. It never goes back.
"""

from __future__ import annotations


class Watermark:
    __slots__ = ("_idle_anchor", "caught_up", "lateness_ms", "max_ts", "value")

    def __init__(self, partitions: list[str], lateness_ms: int):
        self.max_ts: dict[str, int | None] = dict.fromkeys(partitions)
        self.caught_up: dict[str, bool] = dict.fromkeys(partitions, False)
        self.lateness_ms = lateness_ms
        self.value: int | None = None
        self._idle_anchor: tuple[int, int] | None = None  # (wall ms, watermark) when idle began

    def observe(self, partition: str, max_ts: int | None, caught_up: bool) -> int | None:
        """Record a partition's progress; return the watermark (None while unknown)."""
        if max_ts is not None:
            previous = self.max_ts.get(partition)
            self.max_ts[partition] = max_ts if previous is None else max(previous, max_ts)
        elif partition not in self.max_ts:
            self.max_ts[partition] = None
        self.caught_up[partition] = caught_up
        self._idle_anchor = None
        self._raise_to(self._base())
        return self.value

    def forget_progress(self, partitions: list[str]) -> None:
        """Every partition is behind until it reports again (its largest ts is kept)."""
        for partition in partitions:
            self.max_ts.setdefault(partition, None)
        self.caught_up = dict.fromkeys(self.max_ts, False)
        self._idle_anchor = None

    def _base(self) -> int | None:
        behind = [p for p, done in self.caught_up.items() if not done]
        if behind:
            values = [self.max_ts[p] for p in behind]
            return None if None in values else min(values)
        known = [ts for ts in self.max_ts.values() if ts is not None]
        return max(known) if known else None

    def _raise_to(self, base: int | None) -> None:
        if base is None:
            return
        candidate = base - self.lateness_ms
        if self.value is None or candidate > self.value:
            self.value = candidate

    @property
    def frontier(self) -> int | None:
        """The largest ts read in any partition still being read, less the lateness: where
        the reading stands (the watermark is where its slowest partition stands)."""
        ahead = [ts for p, ts in self.max_ts.items() if ts is not None and not self.caught_up[p]]
        return max(ahead) - self.lateness_ms if ahead else None

    @property
    def all_caught_up(self) -> bool:
        return all(self.caught_up.values())

    def advance_idle(self, wall_ms: int) -> int | None:
        """While every input is caught up, let event time flow with the wall clock."""
        if not self.all_caught_up or self.value is None:
            self._idle_anchor = None
            return self.value
        if self._idle_anchor is None:
            self._idle_anchor = (wall_ms, self.value)
            return self.value
        since_wall, since_value = self._idle_anchor
        self.value = max(self.value, since_value + max(0, wall_ms - since_wall))
        return self.value
