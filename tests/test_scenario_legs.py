"""The generator's per-leg waits and its DWELL_ANOMALY truth, checked against the contract's
definition computed here from the generated records alone."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from benchmarks.geography import CARRIERS, CITIES, HUBS_PER_CITY, REMOTE_CITIES
from benchmarks.legs import ORDINARY_SIGMA, REMOTE_MEDIAN_HOURS, REMOTE_SIGMA, leg_dwell
from benchmarks.scenario import CHINA, Backfill, Scenario, ScenarioConfig

H = 3_600_000
MINUTE = 60_000
TERMINAL = ("SIGNED", "RETURNED")
SCAN_TYPES = {"PICKUP", "DEPART", "ARRIVE", "OUT_FOR_DELIVERY", "DELIVERY_FAILED", "SIGNED",
              "EXCEPTION", "RETURNED"}
# Every kind of wait of an ordinary trip: (scan types it may start from, its typical range).
KINDS = [(("PICKUP", "ARRIVE"), (H, 8 * H)), (("ARRIVE", "EXCEPTION"), (H, 4 * H)),
         (("PICKUP", "ARRIVE", "EXCEPTION"), (H, 8 * H)), (("DEPART",), (6 * H, 26 * H)),
         (("ARRIVE", "EXCEPTION"), (4 * H, 14 * H)), (("OUT_FOR_DELIVERY",), (2 * H, 6 * H)),
         (("DELIVERY_FAILED",), (14 * H, 26 * H)), (("OUT_FOR_DELIVERY",), (H, 6 * H))]
CITY_NAMES = list(CITIES)
REMOTE = [n for n, city in enumerate(CITY_NAMES) if city in REMOTE_CITIES]
QUIET = {"storms": (), "stall_scale": 0}  # trips as drawn: no storm holds them, none stalls


def scans_by_waybill(records) -> dict[str, list[dict]]:
    """Each parcel's scans in event time: duplicates and junk left out."""
    seen: set[str] = set()
    parcels: dict[str, list[dict]] = defaultdict(list)
    for topic, _key, value in records:
        if topic != "scans":
            continue
        try:
            scan = json.loads(value)
        except ValueError:
            continue
        if (not isinstance(scan.get("ts"), int) or scan.get("scan_type") not in SCAN_TYPES
                or scan["event_id"] in seen):
            continue
        seen.add(scan["event_id"])
        parcels[scan["waybill"]].append(scan)
    return {waybill: sorted(scans, key=lambda s: s["ts"]) for waybill, scans in parcels.items()}


def gaps(parcels: dict[str, list[dict]]):
    """(earlier scan, wait) of every pair of consecutive scans of a parcel."""
    for scans in parcels.values():
        for earlier, later in pairwise(scans):
            yield earlier, later["ts"] - earlier["ts"]


def generated(config: ScenarioConfig) -> tuple[Scenario, list]:
    scenario = Scenario(config)
    return scenario, list(scenario.records())


def test_waits_are_fixed_by_leg_and_the_scenario_by_its_seed():
    first = leg_dwell("ZTO", 3, 1, "ARRIVE", H, 8 * H)
    leg_dwell.cache_clear()
    assert leg_dwell("ZTO", 3, 1, "ARRIVE", H, 8 * H) == first
    assert leg_dwell("ZTO", 3, 2, "ARRIVE", H, 8 * H) != first  # another hub, another norm
    config = ScenarioConfig(parcels=300, days=8, seed=4)
    assert list(Scenario(config).records()) == list(Scenario(config).records())
    other = ScenarioConfig(parcels=300, days=8, seed=5)
    assert list(Scenario(other).records()) != list(Scenario(config).records())


def test_remote_legs_wait_about_two_days_and_the_others_within_their_range():
    for carrier in CARRIERS:
        for city in range(len(CITIES)):
            for hub in range(HUBS_PER_CITY):
                for starts, (low, high) in KINDS:
                    for kind in starts:
                        median, sigma = leg_dwell(carrier, city, hub, kind, low, high)
                        if kind == "ARRIVE" and city in REMOTE:
                            assert REMOTE_MEDIAN_HOURS[0] * H <= median <= REMOTE_MEDIAN_HOURS[
                                1] * H
                            assert REMOTE_SIGMA[0] <= sigma <= REMOTE_SIGMA[1]
                        else:
                            assert low <= median <= high
                            assert ORDINARY_SIGMA[0] <= sigma <= ORDINARY_SIGMA[1]
    _, records = generated(ScenarioConfig(parcels=3000, days=20, seed=3, **QUIET))
    after_arrive = defaultdict(list)
    for scan, wait in gaps(scans_by_waybill(records)):
        if scan["scan_type"] == "ARRIVE":
            after_arrive[scan["city"] in REMOTE_CITIES].append(wait)
    assert 44 * H <= statistics.median(after_arrive[True]) <= 50 * H
    assert 1 * H <= statistics.median(after_arrive[False]) <= 14 * H


def test_no_ordinary_wait_comes_near_a_stall_and_only_stalls_pass_72_hours():
    scenario, records = generated(ScenarioConfig(parcels=3000, days=30, seed=11,
                                                 stall_scale=0))
    waits = [wait for _, wait in gaps(scans_by_waybill(records))]
    assert min(waits) >= 15 * MINUTE and max(waits) <= 0.9 * 72 * H
    assert scenario.truth.counts["storm_held_parcels"] > 0  # storms held some, within it
    scenario, _ = generated(ScenarioConfig(parcels=3000, days=30, seed=11, stall_scale=6))
    end = scenario.truth.counts["final_watermark"]
    stalled = {s["waybill"] for s in scenario.truth.stalls if s["since_ts"] + 72 * H <= end}
    fired = {a["waybill"] for a in scenario.truth.alerts
             if a["type"] == "NO_MOVEMENT" and a["status"] == "FIRING"}
    assert fired == stalled and len(stalled) > 20


class Spy(random.Random):
    """A random stream that notes which draws a journey takes."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.draws: list[tuple] = []

    def randrange(self, *args):
        value = super().randrange(*args)
        self.draws.append(("randrange", args, value))
        return value

    def lognormvariate(self, mu, sigma):
        value = super().lognormvariate(mu, sigma)
        self.draws.append(("lognormvariate", (mu, sigma), value))
        return value


def uniform_range(earlier: tuple, later: tuple) -> tuple[int, int]:
    """The range the generator of 0.4 drew a wait of this kind from."""
    kind, extra = later[0], later[3]
    if kind == "ARRIVE":
        return 6 * H, 26 * H
    if kind == "EXCEPTION":
        return (H, 4 * H) if extra["exception_code"] == "DAMAGED" else (H, 8 * H)
    if kind == "DEPART":
        return H, 8 * H
    if kind == "OUT_FOR_DELIVERY":
        return (14 * H, 26 * H) if earlier[0] == "DELIVERY_FAILED" else (4 * H, 14 * H)
    if kind == "DELIVERY_FAILED":
        return 2 * H, 6 * H
    return H, 6 * H


def journeys(legs: bool, count: int = 400):
    """(steps, draws) of journeys drawn as the generator draws them, on varied routes."""
    scenario = Scenario(ScenarioConfig(parcels=10, legs=legs, exception_rate=0.3,
                                       failed_delivery_rate=0.3, merchant=None))
    for n in range(count):
        scenario.rng = Spy(n)
        cities = random.Random(-n).sample(range(len(CITIES)), 2 + n % 2)
        stops = [(CITY_NAMES[city], city) for city in cities]
        steps = scenario._journey(1_793_462_400_000, stops, n % 3 == 0, "ZTO", n % 3)
        yield steps, scenario.rng.draws, n % 3


def test_without_legs_every_wait_is_the_uniform_draw_of_its_kind():
    for steps, draws, _ in journeys(legs=False):
        pairs = list(pairwise(steps))
        assert [(name, args) for name, args, _ in draws] == [
            ("randrange", uniform_range(earlier, later)) for earlier, later in pairs]
        assert [value for *_, value in draws] == [b[1] - a[1] for a, b in pairs]


def test_with_legs_every_wait_is_its_legs_log_normal_draw():
    for steps, draws, hub in journeys(legs=True):
        pairs = list(pairwise(steps))
        assert [name for name, *_ in draws] == ["lognormvariate"] * len(pairs)
        for (earlier, later), (_, (mu, sigma), value) in zip(pairs, draws, strict=True):
            median, leg_sigma = leg_dwell("ZTO", earlier[2], hub, earlier[0],
                                          *uniform_range(earlier, later))
            assert (mu, sigma) == (math.log(median), leg_sigma)
            assert later[1] - earlier[1] == min(max(round(value), 15 * MINUTE),
                                                int(0.9 * 72 * H))


def local_day(ts: int) -> date:
    return datetime.fromtimestamp(ts / 1000, CHINA).date()


def brute_force(parcels: dict[str, list[dict]], watermark: int, min_samples: int
                ) -> tuple[list[dict], list[dict]]:
    """DWELL_ANOMALY and the stalls by the contract's definition, from the scans alone."""
    ended: dict[tuple, list[tuple[date, int]]] = defaultdict(list)
    silences = []
    for waybill, scans in parcels.items():
        for scan, following in zip(scans, [*scans[1:], None], strict=True):
            if scan["scan_type"] in TERMINAL:
                continue
            leg = (scan["carrier"], scan["hub_id"], scan["scan_type"])
            if following is not None:
                ended[leg].append((local_day(following["ts"]), following["ts"] - scan["ts"]))
            silences.append((waybill, leg, scan["ts"], following and following["ts"]))
    norms: dict[tuple, tuple | None] = {}

    def norm(leg: tuple, day: date) -> tuple | None:
        if (leg, day) not in norms:
            window = [wait for end, wait in ended[leg]
                      if day - timedelta(days=14) <= end <= day - timedelta(days=1)]
            norms[leg, day] = None
            if len(window) >= min_samples:
                quantile = int(np.quantile(window, 0.99, method="inverted_cdf"))
                # Within 5% of 72 h a sketch's quantile may or may not make the leg usable.
                if 1.5 * quantile < 1.05 * 72 * H:
                    norms[leg, day] = (max(round(1.5 * quantile), 12 * H), quantile,
                                       len(window), 1.5 * quantile >= 0.95 * 72 * H)
        return norms[leg, day]

    alerts, stalls = [], []
    for waybill, leg, ts, next_ts in silences:
        found = norm(leg, local_day(ts))
        silence = (watermark if next_ts is None else next_ts) - ts
        if found is not None:
            threshold, quantile, samples, borderline = found
            fired = (next_ts is not None and next_ts > ts + threshold) or (
                next_ts is None and ts + threshold <= watermark)
            ambiguous = (borderline and fired) or (
                silence > 12 * H and abs(silence - threshold) <= 0.05 * threshold)
            if fired or ambiguous:
                alerts.append({"type": "DWELL_ANOMALY", "status": "FIRING", "waybill": waybill,
                               "event_ts": ts + threshold, "last_scan_ts": ts,
                               "threshold_ms": threshold, "quantile_ms": quantile,
                               "samples": samples,
                               "silence_ms": None if next_ts is None else silence,
                               "ambiguous": ambiguous})
                if next_ts is not None and fired:
                    alerts.append({"type": "DWELL_ANOMALY", "status": "RESOLVED",
                                   "waybill": waybill, "event_ts": next_ts,
                                   "last_scan_ts": ts})
        if silence >= 72 * H:
            stalls.append({"waybill": waybill, "last_scan_ts": ts,
                           "warnable": bool(found) and not found[3],
                           "threshold_ms": found and found[0]})
    return alerts, stalls


def watermark_of(records) -> int:
    """The final watermark: the largest ts of the inputs that move event time, less 10 min."""
    latest = 0
    for topic, _key, value in records:
        if topic == "weather":
            continue
        try:
            ts = json.loads(value).get("ts")
        except ValueError:
            continue
        if isinstance(ts, int):
            latest = max(latest, ts)
    return latest - 10 * MINUTE


def place(silence: dict) -> tuple:
    return silence["waybill"], silence["last_scan_ts"]


def key(alert: dict) -> tuple:
    return alert["status"], *place(alert)


@pytest.mark.parametrize("backfill", [None, Backfill()])
def test_the_dwell_truth_is_the_definition_applied_to_the_records(backfill):
    # Few samples make a norm, so that a small scenario has many legs to judge.
    config = ScenarioConfig(parcels=3000, days=30, seed=11, stall_scale=6, lane_min_samples=5,
                            backfill=backfill)
    scenario, records = generated(config)
    watermark = watermark_of(records)
    assert watermark == scenario.truth.counts["final_watermark"]
    expected, stalls = brute_force(scans_by_waybill(records), watermark, min_samples=5)
    got = [a for a in scenario.truth.alerts if a["type"] == "DWELL_ANOMALY"]
    assert sorted(got, key=key) == sorted(expected, key=key)
    assert sorted(scenario.truth.dwell_stalls, key=place) == sorted(stalls, key=place)
    counts = scenario.truth.counts
    firing = [a for a in expected if a["status"] == "FIRING"]
    assert counts["dwell_firing"] == sum(not a["ambiguous"] for a in firing) > 50
    assert counts["dwell_ambiguous"] == sum(a["ambiguous"] for a in firing) > 5
    assert counts["stalls"] == len(stalls) and 0 < counts["stalls_warnable"] < len(stalls)
    assert any(a["silence_ms"] is None for a in firing)  # trailing silences fire too
    assert any(a["silence_ms"] is not None and a["silence_ms"] < 72 * H for a in firing)
    seeds = {a["waybill"][-12:-10] for a in firing}  # the backfill's parcels are judged too
    assert seeds == ({"11"} if backfill is None else {"11", "61"})


def test_the_dwell_truth_can_be_left_out_and_changes_no_record():
    config = ScenarioConfig(parcels=500, days=10, seed=3)
    with_it, records = generated(config)
    without, same = generated(ScenarioConfig(parcels=500, days=10, seed=3, dwell_truth=False))
    assert same == records
    assert without.truth.dwell_stalls == []
    assert not [a for a in without.truth.alerts if a["type"] == "DWELL_ANOMALY"]
    assert [a for a in with_it.truth.alerts if a["type"] != "DWELL_ANOMALY"] == (
        without.truth.alerts)
