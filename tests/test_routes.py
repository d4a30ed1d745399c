"""ROUTE_DAMAGE_RATE and `route-scores` (contract section 3) through models.routes."""

from __future__ import annotations

import numpy as np
import pytest

from models.detection import Detection
from models.messages import RouteScores
from models.routes import (
    ROUTE_DAMAGE_RATE,
    RouteBoard,
    RouteEvent,
    RouteScore,
    decode_scores,
    fit_prior,
    posterior_bounds,
    route_id,
)
from models.settings import DAY_MS, HOUR_MS, Thresholds

D, H = DAY_MS, HOUR_MS
T0 = 19_700 * D  # midnight UTC, 2023-12-08
BAD = ("SF", "Shanghai", "Beijing")


def delivery(route: tuple, ts: int, merchant: str | None = None) -> RouteEvent:
    return RouteEvent("delivery", *route, merchant, ts, ts)


def damage(route: tuple, signed_ts: int, at_ts: int) -> RouteEvent:
    return RouteEvent("damage", *route, None, signed_ts, at_ts)


def deliveries(route: tuple, day: int, count: int, damaged: int = 0, merchant: str | None = None,
               ) -> list[RouteEvent]:
    """`count` deliveries spread over one day, the first `damaged` of them damaged a day later."""
    events = []
    for i in range(count):
        ts = T0 + day * D + i * (D // (count + 1))
        events.append(delivery(route, ts, merchant))
        if i < damaged:
            events.append(damage(route, ts, ts + D))
    return events


def background(days: range, routes: int = 40, per_day: int = 15, seed: int = 3,
               ) -> list[RouteEvent]:
    """Many routes of other carriers and lanes damaging about 0.2 % of their deliveries."""
    rng = np.random.default_rng(seed)
    events = []
    for day in days:
        for r in range(routes):
            route = ("ZTO" if r % 2 else "YTO", f"O{r}", f"D{r}")
            events += deliveries(route, day, per_day, int(rng.binomial(per_day, 0.002)))
    return events


def replay(board: RouteBoard, events: list[RouteEvent], score_days: range,
           ) -> tuple[dict[int, list[RouteScore]], list[tuple[int, Detection]]]:
    """Apply events in at_ts order, scoring at the end of each day of `score_days`."""
    events = sorted(events, key=lambda e: e.at_ts)
    scores, detections, i = {}, [], 0
    for day in score_days:
        end = T0 + (day + 1) * D - 1
        while i < len(events) and events[i].at_ts <= end:
            board.apply(events[i])
            i += 1
        encoded, fired = board.score(end)
        scores[day] = decode_scores(encoded)
        detections += [(day, d) for d in fired]
    return scores, detections


def by_route(scores: list[RouteScore]) -> dict[str, RouteScore]:
    return {s.route_id: s for s in scores}


# -- the estimator ------------------------------------------------------------------------


def reference_bounds(a: float, b: float) -> tuple[float, float, float]:
    """Mean, 2.5 % and 97.5 % quantiles of Beta(a, b) by integrating its density on a grid.

    The grid is in u with x = u^2, so that densities steep at 0 (a < 1) stay finite.
    """
    steps = 2_000_000
    u = (np.arange(steps) + 0.5) / steps
    x = u * u
    log_f = np.log(2 * u) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-x)
    f = np.exp(log_f - log_f.max())
    mass = f.sum()
    cdf = np.cumsum(f) / mass
    right_edges = ((np.arange(steps) + 1.0) / steps) ** 2
    low, high = np.interp([0.025, 0.975], cdf, right_edges)
    return float((x * f).sum() / mass), float(low), float(high)


@pytest.mark.parametrize(("alpha", "beta", "n", "k"), [
    (0.6, 300.0, 400, 0),
    (2.0, 500.0, 400, 20),
    (1.5, 3.0, 20, 10),
    (10.0, 2000.0, 5000, 30),
    (0.004, 1.996, 0, 0),
])
def test_posterior_bounds_match_numerical_integration(alpha, beta, n, k):
    rate, low, high = posterior_bounds(alpha, beta, np.array([n]), np.array([k]))
    a, b = alpha + k, beta + n - k
    if a < 0.5:  # too steep at 0 even for the u grid: only the mean and the upper end
        assert rate[0] == pytest.approx(a / (a + b))
        assert 0 <= low[0] < high[0] <= 1
        return
    expected = reference_bounds(a, b)
    assert np.allclose([rate[0], low[0], high[0]], expected, atol=1e-3, rtol=0)
    assert low[0] < rate[0] < high[0]


def test_posterior_bounds_are_vectorised():
    n = np.array([0, 20, 400, 5000])
    k = np.array([0, 10, 20, 30])
    rate, low, high = posterior_bounds(2.0, 500.0, n, k)
    assert rate.shape == low.shape == high.shape == (4,)
    assert np.all((low < rate) & (rate < high))
    assert rate[0] == pytest.approx(2 / 502)  # no data: the prior


def test_fit_prior_recovers_routes_drawn_from_a_known_beta():
    rng = np.random.default_rng(7)
    n = rng.integers(200, 2000, 2000)
    k = rng.binomial(n, rng.beta(4, 996, len(n)))  # mean 0.004, strength 1000
    alpha, beta = fit_prior(n, k)
    assert alpha / (alpha + beta) == pytest.approx(0.004, rel=0.1)
    assert 500 < alpha + beta < 2000


def test_fit_prior_falls_back_to_a_weak_prior_with_the_pooled_mean():
    cases = {
        "no damage": (np.array([100, 200, 300]), np.array([0, 0, 0])),
        "one route": (np.array([1000]), np.array([5])),
        "no routes": (np.array([], dtype=int), np.array([], dtype=int)),
    }
    for name, (n, k) in cases.items():
        alpha, beta = fit_prior(n, k)
        assert alpha > 0 and beta > 0, name
        pooled = (k.sum() + 0.5) / (n.sum() + 1)
        assert alpha / (alpha + beta) == pytest.approx(pooled), name
        # weak (strength 2), unless that would leave alpha under 0.5
        assert alpha + beta == pytest.approx(max(2.0, 0.5 / pooled)), name


def test_the_interval_always_brackets_the_estimate():
    n = np.array([0, 1, 5, 100, 1000, 10, 3])
    k = np.array([0, 0, 0, 0, 0, 0, 0])
    for routes in (n, n[:1], n[:2]):
        alpha, beta = fit_prior(routes, k[:len(routes)])
        assert alpha >= 0.5
        rate, low, high = posterior_bounds(alpha, beta, routes, k[:len(routes)])
        assert np.all(low <= rate) and np.all(rate <= high)


def test_identical_routes_give_the_strongest_prior_at_their_common_rate():
    alpha, beta = fit_prior(np.full(10, 1000), np.full(10, 2))
    assert alpha + beta == pytest.approx(10_000, rel=1e-3)
    assert alpha / (alpha + beta) == pytest.approx(0.002, rel=0.05)


def test_one_outlier_among_many_small_routes_still_stands_out():
    """Thousands of routes with a few deliveries each, one bad route: shrink the small
    ones hard, but leave the bad one above the threshold."""
    rng = np.random.default_rng(5)
    n = rng.integers(2, 15, size=2000)
    k = rng.binomial(n, 0.006)
    n, k = np.append(n, 165), np.append(k, 20)
    alpha, beta = fit_prior(n, k)
    rate, low, _ = posterior_bounds(alpha, beta, n, k)
    assert low[-1] > 0.01
    assert rate[:-1].max() < 0.05


def test_fit_prior_clamps_the_prior_strength():
    # Almost no spread beyond binomial noise between huge routes: a very strong prior.
    rng = np.random.default_rng(1)
    n = np.full(500, 1_000_000)
    k = rng.binomial(n, rng.beta(2_000_000, 1_000_000_000 - 2_000_000, len(n)))
    alpha, beta = fit_prior(n, k)
    assert alpha + beta <= 10_000
    # Routes that are either all damaged or never: rates spread as widely as they can be.
    alpha, beta = fit_prior(np.full(10, 100), np.array([0, 100] * 5))
    assert alpha + beta >= 2


def test_route_id():
    assert route_id("SF", "Shanghai", "Beijing") == "SF:Shanghai>Beijing"
    assert route_id("JD", None, "Beijing") == "JD:?>Beijing"
    assert route_id("JD", None, None) == "JD:?>?"


# -- alerts -------------------------------------------------------------------------------


def test_a_route_with_few_deliveries_is_not_flagged_however_bad():
    board = RouteBoard(Thresholds())
    events = background(range(10)) + deliveries(BAD, 5, 20, damaged=10)
    scores, detections = replay(board, events, range(10))
    assert detections == []
    bad = by_route(scores[9])["SF:Shanghai>Beijing"]
    assert (bad.deliveries, bad.damaged) == (20, 10)
    assert bad.rate_low > 0.01  # it would be flagged but for its 20 < 50 deliveries


def test_a_bad_route_fires_once_and_resolves_when_its_damage_leaves_the_window():
    board = RouteBoard(Thresholds())
    events = background(range(50))
    for day in range(10):  # 400 deliveries, 5 % damaged
        events += deliveries(BAD, day, 40, damaged=2, merchant=f"M{day % 3}")
    for day in range(10, 50):  # then clean
        events += deliveries(BAD, day, 10, merchant="M9")
    _, detections = replay(board, events, range(50))

    assert [(d.status, d.subject) for _, d in detections] == [
        ("FIRING", "SF:Shanghai>Beijing"), ("RESOLVED", "SF:Shanghai>Beijing")]
    (fired_day, fired), (resolved_day, resolved) = detections
    assert fired.type == resolved.type == ROUTE_DAMAGE_RATE
    assert fired_day < 10 < 30 <= resolved_day
    assert fired.event_ts == fired.onset_ts == T0 + (fired_day + 1) * D - 1
    assert resolved.onset_ts == fired.onset_ts and resolved.alert_id == fired.alert_id
    assert resolved.event_ts == T0 + (resolved_day + 1) * D - 1
    assert resolved.severity == fired.severity
    assert fired.carrier == "SF" and fired.merchant_id is fired.order_id is fired.waybill is None
    details = fired.details
    assert details["route_id"] == "SF:Shanghai>Beijing"
    assert (details["origin"], details["destination"]) == ("Shanghai", "Beijing")
    assert details["deliveries"] >= 50 and details["rate_low"] > details["threshold"] == 0.01
    assert details["rate_low"] < details["rate"] < details["rate_high"]
    assert fired.severity == ("CRITICAL" if details["rate_low"] > 0.02 else "WARNING")
    assert details["better_carrier"] is None  # no other carrier on Shanghai > Beijing
    # It resolved because the damaged days left the window, not because deliveries did.
    assert resolved.details["damaged"] < 20 and resolved.details["deliveries"] >= 50
    assert resolved.details["rate_low"] <= 0.01


def test_a_very_bad_route_is_critical():
    board = RouteBoard(Thresholds())
    events = background(range(5)) + deliveries(BAD, 4, 200, damaged=40)
    _, detections = replay(board, events, range(6))  # damage is learnt a day after signing
    [(_, fired)] = detections
    assert fired.severity == "CRITICAL" and fired.details["rate_low"] > 0.02


def test_notify_lists_the_merchants_with_deliveries_on_the_route_in_the_window():
    board = RouteBoard(Thresholds())
    events = background(range(30, 41)) + deliveries(BAD, 0, 5, merchant="M-old")
    events += deliveries(("SF", "Shanghai", "Wuhan"), 35, 5, merchant="M-other-route")
    events += deliveries(("JD", "Shanghai", "Beijing"), 35, 5, merchant="M-other-carrier")
    for day in range(31, 41):
        events += deliveries(BAD, day, 20, damaged=2, merchant="M-b" if day % 2 else "M-a")
    events += deliveries(BAD, 40, 3)  # no merchant known
    _, detections = replay(board, events, [0, *range(30, 41)])
    [(_, fired)] = detections
    assert fired.notify == ["M-a", "M-b"]


def test_better_carrier_is_the_other_carrier_with_the_lowest_upper_bound():
    board = RouteBoard(Thresholds())
    lane = ("Shanghai", "Beijing")
    events = background(range(-5, 10))
    for day in range(-5, 10):  # the other carriers, from five days before SF
        events += deliveries(("JD", *lane), day, 10)          # 150 clean
        events += deliveries(("ZTO", *lane), day, 30)         # 450 clean: a tighter bound
        events += deliveries(("YTO", *lane), day, 3)          # 45: too few to judge
        events += deliveries(("YTO", "Hangzhou", "Chengdu"), day, 3)  # too few
        events += deliveries(("JD", "Wuhan", "Xian"), day, 10)
        events += deliveries(("EMS", "Wuhan", "Xian"), day, 10)
    for day in range(10):
        for route in (("SF", *lane), ("SF", "Hangzhou", "Chengdu"), ("SF", "Wuhan", "Xian")):
            events += deliveries(route, day, 40, damaged=3)
    scores, detections = replay(board, events, range(-5, 10))
    fired = {d.subject: d.details for _, d in detections if d.status == "FIRING"}
    assert set(fired) == {"SF:Shanghai>Beijing", "SF:Hangzhou>Chengdu", "SF:Wuhan>Xian"}
    day = next(day for day, d in detections if d.subject == "SF:Shanghai>Beijing")
    zto = by_route(scores[day])["ZTO:Shanghai>Beijing"]
    assert fired["SF:Shanghai>Beijing"]["better_carrier"] == "ZTO"
    assert fired["SF:Shanghai>Beijing"]["better_carrier_rate_high"] == zto.rate_high
    assert fired["SF:Hangzhou>Chengdu"]["better_carrier"] is None
    assert fired["SF:Hangzhou>Chengdu"]["better_carrier_rate_high"] is None
    assert fired["SF:Wuhan>Xian"]["better_carrier"] == "EMS"  # tied with JD: lowest code


# -- counts and windows -------------------------------------------------------------------


def test_deliveries_older_than_the_window_drop_out_of_the_counts():
    board = RouteBoard(Thresholds())
    events = deliveries(BAD, 0, 10, damaged=1) + deliveries(BAD, 20, 5)
    scores, _ = replay(board, events, [1, 20, 29, 30, 49, 50])
    counts = {day: [(s.deliveries, s.damaged) for s in found] for day, found in scores.items()}
    assert counts == {1: [(10, 1)], 20: [(15, 1)], 29: [(15, 1)], 30: [(5, 0)], 49: [(5, 0)],
                      50: []}


def test_damage_counts_in_the_bucket_of_its_signed_day():
    board = RouteBoard(Thresholds())
    signed = T0 + 5 * D + 10 * H
    events = [delivery(BAD, signed), delivery(BAD, T0 + 20 * D)]
    events.append(damage(BAD, signed, T0 + 19 * D))  # learnt 14 days after signing
    scores, _ = replay(board, events, [18, 19, 34, 35])
    counts = {day: [(s.deliveries, s.damaged) for s in found] for day, found in scores.items()}
    # Day 34's window is days 5..34; on day 35 the signed day has left it, damage and all.
    assert counts == {18: [(1, 0)], 19: [(1, 1)], 34: [(2, 1)], 35: [(1, 0)]}


def test_scores_are_sorted_and_only_for_routes_with_deliveries_in_the_window():
    board = RouteBoard(Thresholds())
    routes = [("ZTO", "Xiamen", "Harbin"), ("JD", None, "Beijing"), ("SF", "A", "B"),
              ("EMS", "Lhasa", None)]
    events = [delivery(route, T0 + 40 * D + i * H) for i, route in enumerate(routes)]
    events.append(delivery(("YTO", "Old", "Route"), T0))  # out of the window by day 40
    scores, _ = replay(board, events, [0, 40])
    assert [s.route_id for s in scores[40]] == [
        "EMS:Lhasa>?", "JD:?>Beijing", "SF:A>B", "ZTO:Xiamen>Harbin"]
    assert all(s.window_end_ts == T0 + 41 * D - 1 for s in scores[40])
    record = by_route(scores[40])["JD:?>Beijing"]
    assert (record.carrier, record.origin, record.destination) == ("JD", None, "Beijing")
    for s in scores[40]:
        assert all(round(v, 6) == v for v in (s.rate, s.rate_low, s.rate_high))
        assert 0 <= s.rate_low <= s.rate <= s.rate_high <= 1


def test_after_a_long_quiet_period_routes_and_merchants_are_dropped():
    board = RouteBoard(Thresholds())
    for r in range(1000):
        board.apply(delivery(("ZTO", f"O{r}", f"D{r}"), T0 + r, merchant=f"M{r}"))
    scores, _ = board.score(T0 + D)
    assert len(decode_scores(scores)) == len(board) == 1000
    rows = board.delivered.shape[0]

    scores, detections = board.score(T0 + 200 * D)
    assert scores == [] and detections == []
    assert len(board) == 0 and board.merchants == {}
    for r in range(1000):  # new routes reuse the freed rows
        board.apply(delivery(("JD", f"O{r}", f"D{r}"), T0 + 201 * D + r))
    scores, _ = board.score(T0 + 202 * D)  # a score covers the days before its end
    assert len(scores) == len(board) == 1000
    assert board.delivered.shape[0] == rows


def test_merchants_without_a_delivery_in_the_window_are_forgotten():
    board = RouteBoard(Thresholds())
    board.apply(delivery(BAD, T0, merchant="M-old"))
    board.apply(delivery(BAD, T0 + 20 * D, merchant="M-new"))
    board.score(T0 + 20 * D)
    assert sorted(board.merchants[board.index[BAD]]) == ["M-new", "M-old"]
    board.score(T0 + 31 * D)
    assert list(board.merchants[board.index[BAD]]) == ["M-new"]


def test_events_older_than_everything_kept_are_ignored():
    board = RouteBoard(Thresholds())
    board.apply(delivery(BAD, T0 + 100 * D))
    board.apply(delivery(("JD", "X", "Y"), T0))  # 100 days before the newest day
    scores, _ = board.score(T0 + 101 * D)
    assert [s.route_id for s in decode_scores(scores)] == ["SF:Shanghai>Beijing"]
    assert len(board) == 1


# -- split by lane ------------------------------------------------------------------------


def scored_by(route_shards: int, signed: list, reverse_batches: bool = False,
              ) -> tuple[list[str], list[tuple]]:
    """The aggregate and `route_shards` route shards fed day by day: encoded route scores
    and (alert id, status, event_ts, details) of every alert."""
    from models.aggregate import Aggregate
    from models.messages import RouteBatch, ShardTick
    from models.route_shards import RouteShards

    thresholds = Thresholds(score_interval_hours=6)
    aggregate = Aggregate(thresholds, shards=1, route_shards=route_shards)
    shards = RouteShards(thresholds, route_shards)
    found: list = []
    for day in range(40):
        today = [s for s in signed if T0 + day * D <= s.signed_ts < T0 + (day + 1) * D]
        out = aggregate.apply([*today, ShardTick(0, T0 + (day + 1) * D, False)])
        batches = [item for item in out if type(item) is RouteBatch]
        if reverse_batches:  # delivered out of order: applied in the order sent
            batches = batches[::-1]
            found += [item for batch in batches for item in shards.apply([batch])]
        else:
            found += shards.apply(batches)
    scores = sorted(value.decode() for item in found if type(item) is RouteScores
                    for _, value in item.records)
    alerts = sorted((d.alert_id, d.status, d.event_ts, repr(sorted(d.details.items())))
                    for d in found if type(d) is Detection)
    return scores, alerts


def test_route_scores_and_alerts_are_the_same_however_many_route_shards_hold_them():
    from models.messages import Signed

    rng = np.random.default_rng(5)
    lanes = [(f"O{i}", f"D{i % 3}") for i in range(12)]
    signed = []
    for day in range(40):
        for origin, destination in lanes:
            for carrier in ("SF", "ZTO"):
                bad = carrier == "SF" and origin == "O1"  # one route that breaks goods
                for i in range(int(rng.integers(5, 15))):
                    ts = T0 + day * D + i * H
                    signed.append(Signed(carrier, origin, destination, f"M{i % 4}", "H1", ts,
                                         bool(rng.random() < (0.08 if bad else 0.002))))
    one = scored_by(1, signed)
    assert one[0] and any(alert[1] == "FIRING" for alert in one[1])
    assert scored_by(5, signed) == one
    assert scored_by(16, signed, reverse_batches=True) == one
