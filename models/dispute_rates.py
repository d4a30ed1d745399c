"""Recent signed-dispute rates of hubs and carriers: "is this hub well above the rest?"

Per key (a hub, a carrier), daily counts of deliveries and of NOT_RECEIVED claims that
matched them, over the trailing `damage_window_days`. A key is flagged when it has at least
`damage_min_deliveries` deliveries and the lower end of the 95% Wilson interval of its rate
is more than `dispute_rate_ratio` times the pooled rate of all the other keys (smoothed as
(k + 0.5) / (n + 1), so that a lone key, or others with no claim yet, never set a zero bar).
"""

from __future__ import annotations

import math
from collections import defaultdict

from models.settings import DAY_MS, Thresholds

Z95 = 1.959964


def wilson_low(successes: int, trials: int) -> float:
    if trials == 0:
        return 0.0
    p = successes / trials
    centre = p + Z95 * Z95 / (2 * trials)
    spread = Z95 * math.sqrt(p * (1 - p) / trials + Z95 * Z95 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + Z95 * Z95 / trials))


class DisputeRates:
    def __init__(self, thresholds: Thresholds):
        self.days = thresholds.damage_window_days
        self.min_deliveries = thresholds.damage_min_deliveries
        self.ratio = thresholds.dispute_rate_ratio
        # key -> day -> [deliveries, disputes]; also per kind ("hub:", "carrier:") in total,
        # so that "the rest" is the kind's total minus the key, not a walk over every key.
        self.counts: dict[str, dict[int, list[int]]] = defaultdict(dict)

    def _bump(self, key: str, ts: int, field: int) -> None:
        day = ts // DAY_MS
        for name in (key, self._kind(key)):
            days = self.counts[name]
            bucket = days.get(day)
            if bucket is None:
                bucket = days[day] = [0, 0]
            bucket[field] += 1

    @staticmethod
    def _kind(key: str) -> str:
        return "total " + key.split(":", 1)[0]

    def delivered(self, keys: list[str], signed_ts: int) -> None:
        for key in keys:
            self._bump(key, signed_ts, 0)

    def disputed(self, keys: list[str], signed_ts: int) -> None:
        for key in keys:
            self._bump(key, signed_ts, 1)

    def _window(self, key: str, at: int) -> tuple[int, int]:
        last = at // DAY_MS
        deliveries = disputes = 0
        for day, (n, k) in self.counts.get(key, {}).items():
            if last - self.days < day <= last:
                deliveries += n
                disputes += k
        return deliveries, disputes

    def is_high(self, key: str, at: int) -> bool:
        """Is `key` ("hub:…" or "carrier:…") well above the rest of its kind at time `at`?"""
        deliveries, disputes = self._window(key, at)
        if deliveries < self.min_deliveries:
            return False
        total_n, total_k = self._window(self._kind(key), at)
        rest_n, rest_k = total_n - deliveries, total_k - disputes
        # Smoothed, so "no dispute elsewhere yet" (or no elsewhere at all) is not a zero bar.
        rest_rate = (rest_k + 0.5) / (rest_n + 1)
        return wilson_low(disputes, deliveries) > self.ratio * rest_rate

    def forget_before(self, ts: int) -> None:
        first = ts // DAY_MS - self.days
        for key in list(self.counts):
            days = self.counts[key]
            for day in [d for d in days if d <= first]:
                del days[day]
            if not days:
                del self.counts[key]
