"""Route scoring split by lane, so that it runs on every worker, not only the global one.

The global step orders route events in event time, counts them for the one thing that needs
every route (the daily prior fit) and hands each lane's events, with the scorings and their
prior, to that lane's route shard. A shard holds the `RouteBoard` of its lanes: counts,
hourly `route-scores` records and ROUTE_DAMAGE_RATE alerts. All carriers of a lane (origin,
destination) share a shard, so an alert can name the better carrier on its lane.
"""

from __future__ import annotations

import zlib

from models.detection import Detection
from models.messages import InOrder, RouteBatch, RouteEvent, RouteScores, ScoreAt
from models.routes import RouteBoard
from models.settings import Thresholds


def lane_shard(origin: str | None, destination: str | None, shards: int) -> int:
    """Stable across processes and restarts (unlike `hash()`)."""
    return zlib.crc32(f"{origin or '?'}>{destination or '?'}".encode()) % shards


class RouteShard:
    def __init__(self, thresholds: Thresholds):
        self.board = RouteBoard(thresholds)
        self.order = InOrder()

    def apply(self, batches: list[RouteBatch]) -> list[Detection | RouteScores]:
        """Returns alerts and, per scoring, its encoded `route-scores` records."""
        out: list = []
        board = self.board
        for items in self.order.ready(batches):
            for item in items:
                if type(item) is ScoreAt:
                    scores, alerts = board.score(item.window_end_ts, (item.alpha, item.beta))
                    if scores:
                        out.append(RouteScores(item.window_end_ts, scores))
                    out.extend(alerts)
                elif type(item) is RouteEvent:
                    board.apply(item)
                else:
                    raise TypeError(f"a route shard got an unknown message: "
                                    f"{type(item).__name__}")
        return out


class RouteShards:
    """Every route shard in one place, for running the steps in one process (tests, tools)."""

    def __init__(self, thresholds: Thresholds, shards: int):
        self.shards = [RouteShard(thresholds) for _ in range(shards)]

    def apply(self, batches: list[RouteBatch]) -> list[Detection | RouteScores]:
        out: list = []
        for batch in batches:
            out += self.shards[batch.shard].apply([batch])
        return out
