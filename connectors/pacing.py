"""How much an input partition reads at a time, so snapshots keep their cadence.

Bytewax ends an epoch (and snapshots) only between two reads of the input, and a read's
records are processed before the next read. During catch-up a read of `batch_size` records
from every partition can take many snapshot intervals to process, so a crash would re-emit
far more than one interval. The pacer measures how long the dataflow takes per record
(the time between two reads of this partition, over the records the first one read) and
asks for no more than the dataflow works off before the epoch's end, so an epoch lasts
about one interval however far behind the input is. Reads stay as large as that allows:
smaller ones cost throughput (more batches to route, more idle polls of the consumer).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReadPacer:
    """Sizes one partition's reads; `None` as the interval reads `most` every time."""

    LEAST = 100     # a read has a fixed cost: fewer than this, and the epoch ends first

    def __init__(self, interval_s: float | None, most: int,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s, self.most, self.clock = interval_s, most, clock
        self.epoch_started = clock()
        self.read_this_epoch = False
        self.seconds_per_record: float | None = None
        self.last_read: tuple[float, int] | None = None  # (when, records) of a full read

    def size(self) -> int:
        """Records to ask for now; 0 once the epoch's time is spent (wait for its end)."""
        if self.interval_s is None:
            return self.most
        now = self.clock()
        if self.last_read is not None:
            when, records = self.last_read
            sample = (now - when) / records
            self.seconds_per_record = sample if self.seconds_per_record is None else (
                (self.seconds_per_record + sample) / 2)
            self.last_read = None
        if self.seconds_per_record is None:
            return min(self.most, self.LEAST)
        fits = int(self.seconds_left() / self.seconds_per_record)
        if not self.read_this_epoch:  # however slow the work, every epoch reads something
            fits = max(fits, self.LEAST)
        return min(self.most, fits) if fits >= self.LEAST else 0

    def seconds_left(self) -> float:
        """Until the epoch's interval has passed (0 or less: it ends at the next turn)."""
        return self.epoch_started + (self.interval_s or 0) - self.clock()

    def read(self, asked: int, got: int) -> None:
        """What the read returned. The work of a few records is mostly the dataflow's
        fixed cost per turn, so only a read of `LEAST` or more (or all it asked) times it."""
        self.last_read = (self.clock(), got) if got and got >= min(asked, self.LEAST) else None
        self.read_this_epoch = self.read_this_epoch or got > 0

    def epoch_ended(self) -> None:
        """A snapshot is taken: the next epoch's time starts, and the time spent writing
        the snapshot is not work per record."""
        self.epoch_started = self.clock()
        self.read_this_epoch = False
        self.last_read = None
