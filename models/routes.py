"""ROUTE_DAMAGE_RATE and the `route-scores` records: damage rates per route (carrier, origin,
destination) over the trailing `damage_window_days` (30) of signed deliveries.

Raw rates of small routes are noise (1 damaged of 3 is not a 33 % route), so every route's
rate is an empirical-Bayes posterior: a beta prior fitted across all routes, updated with the
route's own counts. A route alerts only when it has enough deliveries and even the lower end
of its 95 % interval is above the threshold.

Counts live in one 2-D numpy array per kind, [route rows x ring of days]: a route costs two
rows of int32, a day is a column, and moving to a new day clears one column for all routes.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import itemgetter

import msgspec
import numpy as np
from scipy.optimize import minimize
from scipy.special import betaincinv, betaln, expit, logit

from models.detection import Detection
from models.messages import RouteEvent
from models.settings import DAY_MS, Thresholds

ROUTE_DAMAGE_RATE = "ROUTE_DAMAGE_RATE"
# Prior strength alpha + beta: a weak prior when the data say nothing about the spread
# between routes, and bounds so that one odd fit neither ignores nor swamps a route's counts.
WEAK_PRIOR_STRENGTH = 2.0
MIN_PRIOR_STRENGTH = 2.0
MAX_PRIOR_STRENGTH = 10_000.0
MIN_ALPHA = 0.5
DIGITS = 6

RouteKey = tuple[str, str | None, str | None]


def route_id(carrier: str, origin: str | None, destination: str | None) -> str:
    return f"{carrier}:{origin or '?'}>{destination or '?'}"


class RouteScore(msgspec.Struct, kw_only=True):
    """One `route-scores` record: the schema that `score_prefix` + `score_tail` encode."""

    route_id: str
    carrier: str
    origin: str | None
    destination: str | None
    deliveries: int
    damaged: int
    rate: float
    rate_low: float
    rate_high: float
    window_end_ts: int


encode = msgspec.json.encode


def score_prefix(route: str, carrier: str, origin: str | None, destination: str | None,
                 ) -> bytes:
    """The start of a route's `route-scores` records (a `RouteScore`), the same every time."""
    return (b'{"route_id":' + encode(route) + b',"carrier":' + encode(carrier)
            + b',"origin":' + encode(origin) + b',"destination":' + encode(destination) + b",")


def score_tail(deliveries: int, damaged: int, rate: float, low: float, high: float) -> bytes:
    """The counts and rounded figures of a record, up to its `window_end_ts` value."""
    return (b'"deliveries":%d,"damaged":%d,"rate":%s,"rate_low":%s,"rate_high":%s,'
            b'"window_end_ts":' % (deliveries, damaged, encode(round(rate, DIGITS)),
                                   encode(round(low, DIGITS)), encode(round(high, DIGITS))))


def decode_scores(records: list[tuple[str, bytes]]) -> list[RouteScore]:
    return [msgspec.json.decode(value, type=RouteScore) for _, value in records]


def gather(items: list, indices: list[int]) -> list:
    """[items[i] for i in indices], in one C call."""
    if len(indices) < 2:
        return [items[i] for i in indices]
    return list(itemgetter(*indices)(items))


def fit_prior(deliveries: np.ndarray, damaged: np.ndarray) -> tuple[float, float]:
    """Empirical-Bayes beta prior (alpha, beta) fitted across all routes by maximum likelihood.

    Route i has n_i deliveries and k_i damaged. If route rates are Beta(alpha, beta), k_i is
    beta-binomial, with log-likelihood sum_i [B(k_i + alpha, n_i - k_i + beta) - B(alpha, beta)]
    (B the log beta function; the binomial coefficients do not depend on the prior). We
    maximise it over the prior mean mu = alpha / (alpha + beta) and strength
    s = alpha + beta (in logit / log space, L-BFGS-B), starting from the pooled mean.

    Why not the method of moments: with thousands of routes of a few deliveries each, its
    estimate of the spread between routes is mostly noise and often negative, which leaves
    either no shrinkage or total shrinkage; the likelihood uses every route as it is.

    The strength is kept within [2, 10000] (a prior worth 2 to 10,000 deliveries). With no
    damage at all, or fewer than two routes, the prior is weak (strength 2) around the
    smoothed pooled mean (K + 0.5) / (N + 1). Either way alpha is raised to at least 0.5
    (Jeffreys' weight for the damaged side, the mean kept): a smaller alpha gives a beta so
    skewed that its mean can lie above its 97.5 % quantile, an interval nobody can read.
    """
    n = np.asarray(deliveries, dtype=np.float64)
    k = np.minimum(np.asarray(damaged, dtype=np.float64), n)
    keep = n > 0
    n, k = n[keep], k[keep]
    total, hits = float(n.sum()), float(k.sum())
    mean, strength = (hits + 0.5) / (total + 1.0), WEAK_PRIOR_STRENGTH
    if len(n) >= 2 and 0 < hits < total:

        def negative_log_likelihood(x: np.ndarray) -> float:
            mu, size = expit(x[0]), np.exp(x[1])
            a, b = mu * size, (1 - mu) * size
            return -float(np.sum(betaln(k + a, n - k + b) - betaln(a, b)))

        pooled = hits / total
        fit = minimize(negative_log_likelihood, np.array([logit(pooled), np.log(100.0)]),
                       method="L-BFGS-B",
                       bounds=[(-15.0, 15.0),
                               (np.log(MIN_PRIOR_STRENGTH), np.log(MAX_PRIOR_STRENGTH))])
        if fit.success:
            mean, strength = float(expit(fit.x[0])), float(np.exp(fit.x[1]))
    strength = max(strength, MIN_ALPHA / mean)
    strength = min(max(strength, MIN_PRIOR_STRENGTH), MAX_PRIOR_STRENGTH)
    return mean * strength, (1 - mean) * strength


def posterior_bounds(alpha: float, beta: float, deliveries: np.ndarray, damaged: np.ndarray,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and central 95 % interval of each route's rate, Beta(a + k, b + n - k)."""
    n = np.asarray(deliveries, dtype=np.float64)
    k = np.minimum(np.asarray(damaged, dtype=np.float64), n)
    a = alpha + k
    b = beta + n - k
    rate = a / (a + b)
    return rate, betaincinv(a, b, 0.025), betaincinv(a, b, 0.975)


class RouteCounts:
    """Daily delivery and damage counts per route in a ring of days: what a prior fit and a
    score read. The global step keeps one over every route (for the prior); each route shard
    keeps one over its lanes, inside its `RouteBoard`."""

    def __init__(self, thresholds: Thresholds):
        self.window_days = thresholds.damage_window_days
        # Damage can be learnt up to the dispute window after signing, and a score may lag
        # the newest event by as much: keep that many days beyond the window.
        self.ring = self.window_days + math.ceil(thresholds.dispute_window_days)
        self.head: int | None = None                 # newest day held in the ring
        self.index: dict[RouteKey, int] = {}
        self.keys: list[RouteKey | None] = []        # by row; None = free
        self.free_rows: list[int] = []
        self.delivered = np.zeros((0, self.ring), dtype=np.int32)
        self.damaged = np.zeros((0, self.ring), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.index)

    def apply(self, event: RouteEvent) -> int | None:
        """Count one event in the bucket of its signed day (events come in at_ts order);
        returns its route's row, None if it is older than anything kept."""
        day = event.signed_ts // DAY_MS
        self.advance_to(day)
        if day <= self.head - self.ring:
            return None
        row = self._row((event.carrier, event.origin, event.destination))
        column = day % self.ring
        if event.kind == "delivery":
            self.delivered[row, column] += 1
        elif event.kind == "damage":
            self.damaged[row, column] += 1
        else:
            raise ValueError(f"unknown route event kind {event.kind!r}")
        return row

    def advance_to(self, day: int) -> None:
        """Make `day` the newest day if it is newer, clearing the columns of dropped days."""
        if self.head is None:
            self.head = day
            return
        if day <= self.head:
            return
        fresh = np.arange(max(self.head + 1, day - self.ring + 1), day + 1) % self.ring
        self.delivered[:, fresh] = 0
        self.damaged[:, fresh] = 0
        self.head = day

    def _row(self, key: RouteKey) -> int:
        row = self.index.get(key)
        if row is not None:
            return row
        if self.free_rows:
            row = self.free_rows.pop()
            self.keys[row] = key
        else:
            row = len(self.keys)
            self.keys.append(key)
            if row >= len(self.delivered):
                grow = max(64, len(self.delivered))
                pad = np.zeros((grow, self.ring), dtype=np.int32)
                self.delivered = np.concatenate([self.delivered, pad])
                self.damaged = np.concatenate([self.damaged, pad])
        self.index[key] = row
        self._on_new_row(row, key)
        return row

    def _on_new_row(self, row: int, key: RouteKey) -> None:
        """A route took `row`: for what a subclass keeps by row."""

    def window(self, window_end_ts: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """(end day, first day, the routes' rows in row order, their deliveries, their
        damaged) over the window ending with the day of the last millisecond before
        `window_end_ts`: a score taken at midnight covers the 30 full days before it."""
        end_day = (window_end_ts - 1) // DAY_MS
        self.advance_to(end_day)
        first_day = max(end_day - self.window_days + 1, self.head - self.ring + 1)
        columns = np.arange(first_day, end_day + 1) % self.ring
        rows = self._rows()
        window = np.ix_(rows, columns)
        n = self.delivered[window].sum(axis=1, dtype=np.int64)
        k = np.minimum(self.damaged[window].sum(axis=1, dtype=np.int64), n)
        return end_day, first_day, rows, n, k

    def _rows(self) -> np.ndarray:
        return np.array(sorted(self.index.values()), dtype=np.intp)

    def drop_empty_routes(self) -> None:
        """Free the rows of routes with nothing left in any bucket (and nothing else kept)."""
        rows = self._rows()
        if not len(rows):
            return
        empty = ~(self.delivered[rows].any(axis=1) | self.damaged[rows].any(axis=1))
        for row in rows[empty].tolist():
            if self._keeps(row):
                continue
            del self.index[self.keys[row]]
            self.keys[row] = None
            self._on_free_row(row)
            self.free_rows.append(row)

    def _keeps(self, row: int) -> bool:
        return False

    def _on_free_row(self, row: int) -> None:
        """The route of `row` was forgotten."""


class RoutePrior:
    """The empirical-Bayes prior of every route's damage rate, fitted once a day of event
    time over all routes (it moves slowly): the one part of route scoring that needs them
    all at once."""

    def __init__(self, thresholds: Thresholds):
        self.counts = RouteCounts(thresholds)
        self.prior: tuple[float, float] | None = None
        self.day: int | None = None

    def apply(self, event: RouteEvent) -> None:
        self.counts.apply(event)

    def at(self, window_end_ts: int) -> tuple[float, float]:
        """The prior for a score of the window ending at `window_end_ts`.

        The likelihood is flat along the prior's strength when routes differ little, so
        where the optimiser stops depends on the order of the sums: the counts keep the
        rows of one board holding every route (the same rows, freed at every score), and
        the prior is the one that board would fit."""
        counts = self.counts
        if counts.head is None:  # nothing delivered yet: no board has a route to score
            return fit_prior(np.zeros(0), np.zeros(0))
        day = (window_end_ts - 1) // DAY_MS
        if self.prior is None or day != self.day:
            _, _, _, n, k = counts.window(window_end_ts)
            self.prior = fit_prior(n[n > 0], k[n > 0])
            self.day = day
        else:
            counts.advance_to(day)
        counts.drop_empty_routes()
        return self.prior


class RouteBoard(RouteCounts):
    """The routes of some lanes: their counts, `route-scores` records and ROUTE_DAMAGE_RATE
    alerts. Given no prior, it fits its own over its routes (one board holding them all)."""

    def __init__(self, thresholds: Thresholds):
        super().__init__(thresholds)
        self.min_deliveries = thresholds.damage_min_deliveries
        self.threshold = thresholds.damage_rate_threshold
        self.ids: list[str] = []                     # route_id by row
        self.prefixes: list[bytes] = []              # score_prefix by row
        self.layout: tuple[np.ndarray, np.ndarray] | None = None  # see _layout
        self.merchants: dict[int, dict[str, int]] = {}   # row -> merchant -> last signed day
        self.firing: dict[int, tuple[int, str]] = {}     # row -> onset_ts, severity if open
        self.pruned_day: int | None = None
        self.prior: tuple[float, float] | None = None
        self.prior_day: int | None = None
        self.bounds: dict[tuple[int, int], tuple[float, ...]] = {}

    # -- events --------------------------------------------------------------------------

    def apply(self, event: RouteEvent) -> int | None:
        row = super().apply(event)
        if row is not None and event.kind == "delivery" and event.merchant_id is not None:
            day = event.signed_ts // DAY_MS
            seen = self.merchants.setdefault(row, {})
            seen[event.merchant_id] = max(day, seen.get(event.merchant_id, day))
        return row

    def _on_new_row(self, row: int, key: RouteKey) -> None:
        route = route_id(*key)
        if row < len(self.ids):
            self.ids[row] = route
            self.prefixes[row] = score_prefix(route, *key)
        else:
            self.ids.append(route)
            self.prefixes.append(score_prefix(route, *key))
        self.layout = None

    def _keeps(self, row: int) -> bool:
        return row in self.firing

    def _rows(self) -> np.ndarray:
        return self._layout()[0]

    def _on_free_row(self, row: int) -> None:
        self.layout = None
        self.merchants.pop(row, None)

    # -- scores and alerts ---------------------------------------------------------------

    def score(self, window_end_ts: int, prior: tuple[float, float] | None = None,
              ) -> tuple[list[tuple[str, bytes]], list[Detection]]:
        """The `route-scores` records of the routes with deliveries in the window ending with
        the day of `window_end_ts`, as (route_id, encoded JSON) in route id order, and the
        alerts that fired or resolved since the last call.

        One pass over columns: a posterior depends only on a route's (deliveries, damaged),
        and most routes share a pair with others, so each distinct pair is computed and
        encoded once; a record is its route's encoded prefix plus its pair's encoded tail."""
        if self.head is None:
            return [], []
        end_day, first_day, rows, n, k = self.window(window_end_ts)
        by_id = self._layout()[1]
        scored = n > 0
        rate, low, high, tails = self._posteriors(end_day, n, k, scored, prior)
        flagged = (n >= self.min_deliveries) & (low > self.threshold)
        self._prune_merchants(end_day, first_day)

        ids, prefixes = self.ids, self.prefixes
        end = b"%d}" % window_end_ts
        listed = by_id[scored[by_id]]
        routes = rows[listed].tolist()
        # Gathered and joined by C loops (itemgetter, map, zip): no bytecode per record.
        values = map(b"".join, zip(gather(prefixes, routes), gather(tails, listed.tolist()),
                                   repeat(end)))
        scores = list(zip(gather(ids, routes), values, strict=True))

        def stat(row: int) -> tuple:  # only for the few routes that fire or resolve
            i = int(np.searchsorted(rows, row))  # rows are in row order
            return int(n[i]), int(k[i]), float(rate[i]), float(low[i]), float(high[i])

        detections: list[Detection] = []
        now_flagged = set(rows[flagged].tolist())
        lanes: dict[tuple[str | None, str | None], list[tuple[float, str]]] | None = None
        for row in sorted(now_flagged | set(self.firing), key=self.ids.__getitem__):
            if row in now_flagged and row not in self.firing:
                if lanes is None:
                    enough = n >= self.min_deliveries
                    lanes = self._lanes(rows[enough], high[enough])
                fired = self._detection(row, stat(row), "FIRING", window_end_ts,
                                        window_end_ts, lanes, first_day)
                self.firing[row] = (window_end_ts, fired.severity)
                detections.append(fired)
            elif row not in now_flagged and row in self.firing:
                onset, severity = self.firing.pop(row)
                detections.append(self._detection(row, stat(row), "RESOLVED", onset,
                                                  window_end_ts, None, first_day, severity))

        self.drop_empty_routes()
        return scores, detections

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """The routes' rows in row order, and their positions in route id order: kept until
        a route comes or goes."""
        if self.layout is None:
            rows = super()._rows()
            by_id = sorted(range(len(rows)), key=lambda i: self.ids[rows[i]])
            self.layout = rows, np.array(by_id, dtype=np.intp)
        return self.layout

    def _posteriors(self, day: int, n: np.ndarray, k: np.ndarray, scored: np.ndarray,
                    prior: tuple[float, float] | None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
        """Per route: posterior rate, low and high, and the encoded tail of its record
        (counts and rounded figures), computed once per distinct (deliveries, damaged).

        The prior changes once a day of event time (it moves slowly), so hourly scores
        compute only the pairs not seen since it last changed."""
        if prior is None:  # fitted here, over this board's routes
            prior = self.prior
            if prior is None or day != self.prior_day:
                prior = fit_prior(n[scored], k[scored])
        self.prior_day = day
        if prior != self.prior:
            self.prior = prior
            self.bounds = {}
        pairs, inverse = np.unique(n << 32 | k, return_inverse=True)  # 0 <= k <= n < 2**31
        keys = [(pair >> 32, pair & 0xFFFFFFFF) for pair in pairs.tolist()]
        new = [pair for pair in keys if pair not in self.bounds]
        if new:
            new_n, new_k = (np.array(column, dtype=np.int64) for column in zip(*new, strict=True))
            fresh = zip(new, *posterior_bounds(*self.prior, new_n, new_k), strict=True)
            for pair, *figures in fresh:
                rate, low, high = map(float, figures)
                self.bounds[pair] = (rate, low, high, score_tail(*pair, rate, low, high))
        known = [self.bounds[pair] for pair in keys]
        inverse = inverse.reshape(-1)
        rate, low, high = (np.array([entry[i] for entry in known], dtype=np.float64)[inverse]
                           for i in range(3))
        tails = gather([entry[3] for entry in known], inverse.tolist())
        return rate, low, high, tails

    def _lanes(self, rows: np.ndarray, highs: np.ndarray
               ) -> dict[tuple, list[tuple[float, str]]]:
        """(origin, destination) -> (rate_high, carrier) of the given routes (those with
        enough deliveries)."""
        lanes: dict[tuple, list[tuple[float, str]]] = {}
        for row, high in zip(rows.tolist(), highs.tolist(), strict=True):
            carrier, origin, destination = self.keys[row]
            lanes.setdefault((origin, destination), []).append((high, carrier))
        return lanes

    def _detection(self, row: int, stat: tuple, status: str, onset_ts: int, event_ts: int,
                   lanes: dict | None, first_day: int, severity: str | None = None,
                   ) -> Detection:
        """A RESOLVED keeps its FIRING's onset and severity, so it closes the same alert."""
        carrier, origin, destination = self.keys[row]
        deliveries, damaged, rate, low, high = stat[:5]
        if severity is None:
            severity = "CRITICAL" if low > 2 * self.threshold else "WARNING"
        better = None
        if lanes is not None:
            others = [c for c in lanes.get((origin, destination), []) if c[1] != carrier]
            better = min(others, default=None)
        merchants = self.merchants.get(row, {})
        notify = sorted(m for m, day in merchants.items() if day >= first_day)
        return Detection(
            type=ROUTE_DAMAGE_RATE,
            status=status,
            severity=severity,
            subject=self.ids[row],
            onset_ts=onset_ts,
            event_ts=event_ts,
            carrier=carrier,
            details={
                "route_id": self.ids[row],
                "origin": origin,
                "destination": destination,
                "deliveries": deliveries,
                "damaged": damaged,
                "rate": round(rate, DIGITS),
                "rate_low": round(low, DIGITS),
                "rate_high": round(high, DIGITS),
                "threshold": self.threshold,
                "better_carrier": better[1] if better else None,
                "better_carrier_rate_high": round(better[0], DIGITS) if better else None,
            },
            notify=notify if status == "FIRING" else [],
        )

    # -- memory --------------------------------------------------------------------------

    def _prune_merchants(self, end_day: int, first_day: int) -> None:
        """Once a day, forget merchants with no delivery in the window."""
        if self.pruned_day is not None and end_day <= self.pruned_day:
            return
        self.pruned_day = end_day
        for row in list(self.merchants):
            seen = self.merchants[row]
            for merchant in [m for m, day in seen.items() if day < first_day]:
                del seen[merchant]
            if not seen:
                del self.merchants[row]
