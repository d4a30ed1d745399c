"""Delay clusters in a step of their own, so that they run beside the global step instead of
inside it.

The global step still decides what the clusters hear and when (delays in event-time order,
held ones let out when a silent feed is back, the evaluations on their cadence), but it only
writes those calls down (`ClusterOutbox`). The clusters' step (`ClusterStep`) makes them on
its `ClusterBoard` in the same order, so it finds exactly what the board would have found
inside the global step, and the two steps' work runs on different workers.
"""

from __future__ import annotations

from models.clusters import ClusterBoard
from models.detection import Detection
from models.messages import ClusterBatch, InOrder
from models.settings import Thresholds

CALLS = frozenset({"on_onset", "on_late_onset", "on_end", "on_warning", "on_visits",
                   "evaluate"})


class ClusterOutbox:
    """Stands in for the `ClusterBoard` in the global step: each call is kept, in order, for
    the clusters' step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.seq = 0

    def on_onset(self, onset) -> None:
        self.calls.append(("on_onset", (onset,)))

    def on_late_onset(self, onset, now: int) -> None:
        self.calls.append(("on_late_onset", (onset, now)))

    def on_end(self, end) -> None:
        self.calls.append(("on_end", (end,)))

    def on_warning(self, warning) -> None:
        self.calls.append(("on_warning", (warning,)))

    def on_visits(self, until: int, cells: dict) -> None:
        self.calls.append(("on_visits", (until, cells)))

    def evaluate(self, now: int) -> list[Detection]:
        self.calls.append(("evaluate", (now,)))
        return []  # what it finds comes from the clusters' step

    def take(self) -> ClusterBatch | None:
        """The calls since the last take, as one batch (None: there were none)."""
        if not self.calls:
            return None
        batch = ClusterBatch(self.seq, self.calls)
        self.seq += 1
        self.calls = []
        return batch


class ClusterStep:
    def __init__(self, thresholds: Thresholds):
        self.board = ClusterBoard(thresholds)
        self.order = InOrder()

    def apply(self, batches: list[ClusterBatch]) -> list[Detection]:
        """The calls of each batch in the order the global step made them; returns what the
        evaluations found."""
        out: list[Detection] = []
        board = self.board
        for calls in self.order.ready(batches):
            for name, args in calls:
                if name not in CALLS:
                    raise TypeError(f"the clusters' step got an unknown call: {name}")
                found = getattr(board, name)(*args)
                if name == "evaluate":
                    out.extend(found)
        return out
