"""Per-leg dwell times of the synthetic scenarios, and the ground truth of DWELL_ANOMALY.

A leg is (carrier, hub_id, scan_type) of the scan a wait starts from. Each kind of wait at a
leg is log-normal with a median and spread fixed for the leg, so the legs differ the way real
hubs do; at the hubs of REMOTE_CITIES parcels wait about two days after they arrive. The truth
applies the contract's definition to the generated scans, with exact quantiles: a leg's norm
for a day is learned from the transitions that ended in the 14 days before it.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from functools import cache
from itertools import pairwise
from operator import itemgetter

import numpy as np

from benchmarks.geography import CITIES, REMOTE_CITIES, hub_id

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
CITY_NAMES = list(CITIES)
TERMINAL = ("SIGNED", "RETURNED")
SHORTEST_WAIT = 15 * MINUTE     # well apart from the stream's read disorder
ORDINARY_SIGMA = (0.25, 0.5)
REMOTE_MEDIAN_HOURS = (44, 50)
REMOTE_SIGMA = (0.18, 0.22)
AMBIGUOUS_SHARE = 0.05          # a silence this close to its threshold may go either way
NO_NEXT = -1                    # a silence the parcel never broke

Leg = tuple[str, str, str]      # carrier, hub_id, scan_type


@cache
def leg_dwell(carrier: str, city: int, hub: int, scan_type: str, low: int, high: int
              ) -> tuple[float, float]:
    """(median ms, sigma) of the log-normal wait after a `scan_type` scan at the hub, for a
    kind of wait whose typical range is [low, high) ms. Fixed for the leg, as a hub's position
    is, so a leg's norm can be learned. At a remote hub every wait after ARRIVE is about two
    days, whatever comes next."""
    leg = f"{hub_id(carrier, city, hub)}:{scan_type}"
    if scan_type == "ARRIVE" and CITY_NAMES[city] in REMOTE_CITIES:
        rng = random.Random(f"{leg}:remote")
        return rng.uniform(*REMOTE_MEDIAN_HOURS) * HOUR, rng.uniform(*REMOTE_SIGMA)
    rng = random.Random(f"{leg}:{low}-{high}")
    return rng.uniform(low, high), rng.uniform(*ORDINARY_SIGMA)


def draw_wait(rng: random.Random, median: float, sigma: float, longest: int) -> int:
    """A log-normal wait in ms, clipped to [SHORTEST_WAIT, longest] so that an ordinary trip
    never looks like a stall."""
    wait = round(rng.lognormvariate(math.log(median), sigma))
    return min(max(wait, SHORTEST_WAIT), longest)


@dataclass(frozen=True)
class LaneRule:
    """The contract's DWELL_ANOMALY settings the truth is cut at."""

    quantile: float = 0.99
    factor: float = 1.5
    history_days: int = 14
    min_samples: int = 100
    min_hours: float = 12
    no_movement_hours: float = 72


@dataclass(frozen=True)
class Norm:
    """A leg's usable norm on a day: `threshold_ms` = max(factor × quantile, min_hours),
    in whole ms (rounded)."""

    threshold_ms: int
    quantile_ms: int
    samples: int
    # Its threshold within AMBIGUOUS_SHARE above no_movement_hours: a quantile read from a
    # sketch may make the leg usable; what it would warn of is ambiguous.
    borderline: bool = False


class DwellLog:
    """One scenario's scans as the truth needs them, in flat arrays (some 20 bytes a scan,
    so that a million-parcel scenario keeps them): per leg, the day each transition ended and
    its duration; and the silences that may fire (longer than `min_hours`, or never broken)
    or are stalls."""

    def __init__(self, rule: LaneRule, zone: tzinfo, waybill: Callable[[str, int], str]):
        """`zone`: a fixed-offset zone whose calendar days the norms are learned by;
        `waybill(carrier, parcel number)`: the parcel's waybill."""
        self.rule = rule
        self.waybill = waybill
        self.offset = round(zone.utcoffset(None).total_seconds() * 1000)
        self.legs: list[Leg] = []
        self._ids: dict[tuple[str, int, int, str], int] = {}
        self.days: list[array] = []
        self.durations: list[array] = []
        self._silences = (array("i"), array("i"), array("q"), array("q"))  # leg, parcel, ts, next
        self._stall_ms = round(rule.no_movement_hours * HOUR)
        self._kept_above = min(round(rule.min_hours * HOUR), self._stall_ms - 1)

    def day(self, ts: int) -> int:
        """The calendar day of `ts` in the zone, as days since the epoch."""
        return (ts + self.offset) // DAY

    def add_trip(self, parcel: int, carrier: str, hub: int, steps: Iterable[tuple]) -> None:
        """A parcel's final scans, (scan_type, ts, city index, extra fields), at hub number
        `hub` of each city."""
        scans = sorted(steps, key=itemgetter(1))
        for (kind, ts, city, _), (_, next_ts, _, _) in pairwise(scans):
            if kind not in TERMINAL:
                leg = self._leg(carrier, city, hub, kind)
                self.days[leg].append(self.day(next_ts))
                self.durations[leg].append(next_ts - ts)
                if next_ts - ts > self._kept_above:
                    self._keep(leg, parcel, ts, next_ts)
        kind, ts, city, _ = scans[-1]
        if kind not in TERMINAL:
            self._keep(self._leg(carrier, city, hub, kind), parcel, ts, NO_NEXT)

    def _leg(self, carrier: str, city: int, hub: int, kind: str) -> int:
        key = (carrier, city, hub, kind)
        leg = self._ids.get(key)
        if leg is None:
            leg = self._ids[key] = len(self.legs)
            self.legs.append((carrier, hub_id(carrier, city, hub), kind))
            self.days.append(array("i"))
            self.durations.append(array("q"))
        return leg

    def _keep(self, leg: int, parcel: int, ts: int, next_ts: int) -> None:
        legs, parcels, starts, ends = self._silences
        legs.append(leg)
        parcels.append(parcel)
        starts.append(ts)
        ends.append(next_ts)

    def silences(self) -> Iterator[tuple[Leg, int, int, int]]:
        """(leg, parcel number, ts, next ts or NO_NEXT) of the silences kept."""
        for leg, parcel, ts, next_ts in zip(*self._silences, strict=True):
            yield self.legs[leg], parcel, ts, next_ts


class Norms:
    """Each leg's norm by day, learned from the transitions of every log together: a
    backfill's scans teach the norms like the rest of the input."""

    def __init__(self, logs: list[DwellLog], rule: LaneRule):
        self.rule = rule
        gathered: dict[Leg, tuple[list, list]] = {}
        for log in logs:
            for leg, days, durations in zip(log.legs, log.days, log.durations, strict=True):
                mine = gathered.setdefault(leg, ([], []))
                mine[0].append(np.frombuffer(days, dtype=np.int32))
                mine[1].append(np.frombuffer(durations, dtype=np.int64))
        self._by_leg: dict[Leg, tuple[np.ndarray, np.ndarray]] = {}
        for leg, (days, durations) in gathered.items():
            days_, durations_ = np.concatenate(days), np.concatenate(durations)
            order = np.argsort(days_, kind="stable")
            self._by_leg[leg] = days_[order], durations_[order]
        self._cache: dict[tuple[Leg, int], Norm | None] = {}

    def on(self, leg: Leg, day: int) -> Norm | None:
        """The leg's usable norm for silences that begin on `day`, or None."""
        key = (leg, day)
        if key not in self._cache:
            self._cache[key] = self._learn(leg, day)
        return self._cache[key]

    def _learn(self, leg: Leg, day: int) -> Norm | None:
        """The `quantile` of the transitions that ended in the `history_days` before `day`:
        the inverted-CDF one (the sorted durations' value at rank ceil(q × n))."""
        rule = self.rule
        if leg not in self._by_leg:
            return None
        days, durations = self._by_leg[leg]
        first = np.searchsorted(days, day - rule.history_days, side="left")
        end = np.searchsorted(days, day - 1, side="right")
        samples = int(end - first)
        if samples < max(1, rule.min_samples):
            return None
        rank = max(1, math.ceil(rule.quantile * samples))
        quantile = int(np.partition(durations[first:end], rank - 1)[rank - 1])
        threshold = round(rule.factor * quantile)
        limit = round(rule.no_movement_hours * HOUR)
        if threshold >= limit * (1 + AMBIGUOUS_SHARE):
            return None
        return Norm(max(threshold, round(rule.min_hours * HOUR)), quantile, samples,
                    borderline=threshold >= limit * (1 - AMBIGUOUS_SHARE))

    def usable_legs(self, days: range) -> int:
        """How many legs have a usable norm on at least one of `days`."""
        rule, wanted = self.rule, np.arange(days.start, days.stop)
        usable = 0
        for leg, (ended, _) in self._by_leg.items():
            if len(ended) < rule.min_samples:
                continue
            samples = (np.searchsorted(ended, wanted - 1, side="right")
                       - np.searchsorted(ended, wanted - rule.history_days, side="left"))
            usable += any(_usable(self._learn(leg, int(day)))
                          for day in wanted[samples >= rule.min_samples])
        return usable


def dwell_truth(logs: list[DwellLog], rule: LaneRule, watermark: int
                ) -> tuple[list[dict], list[dict], Norms]:
    """The DWELL_ANOMALY alerts by the final `watermark`, and every silence of at least
    `no_movement_hours` with whether its leg's norm could have warned of it (and the norms)."""
    norms = Norms(logs, rule)
    stall_ms = round(rule.no_movement_hours * HOUR)
    alerts: list[dict] = []
    stalls: list[dict] = []
    for log in logs:
        for leg, parcel, ts, next_ts in log.silences():
            norm = norms.on(leg, log.day(ts))
            broken = next_ts != NO_NEXT
            silence = (next_ts if broken else watermark) - ts
            if norm is not None:
                alerts += _alerts(log.waybill(leg[0], parcel), ts,
                                  next_ts if broken else None, silence, norm,
                                  round(rule.min_hours * HOUR))
            if silence >= stall_ms:
                stalls.append({"waybill": log.waybill(leg[0], parcel), "last_scan_ts": ts,
                               "warnable": _usable(norm),
                               "threshold_ms": None if norm is None else norm.threshold_ms})
    return alerts, stalls, norms


def _usable(norm: Norm | None) -> bool:
    return norm is not None and not norm.borderline


def _alerts(waybill: str, ts: int, next_ts: int | None, silence: int, norm: Norm,
            min_ms: int) -> list[dict]:
    """A silence's FIRING, and its RESOLVED at the next scan; none if it did not last its
    threshold. Ambiguous (a FIRING the detector may or may not give, the near misses
    included): within AMBIGUOUS_SHARE of the threshold, or on a borderline leg, where a
    quantile read from a sketch may decide it."""
    threshold = norm.threshold_ms
    fired = silence > threshold if next_ts is not None else silence >= threshold
    # Never sooner than lane_min_hours: a silence no longer than that cannot fire at all.
    ambiguous = (norm.borderline and fired) or (
        silence > min_ms and abs(silence - threshold) <= AMBIGUOUS_SHARE * threshold)
    if not (fired or ambiguous):
        return []
    firing = {"type": "DWELL_ANOMALY", "status": "FIRING", "waybill": waybill,
              "event_ts": ts + threshold, "last_scan_ts": ts, "threshold_ms": threshold,
              "quantile_ms": norm.quantile_ms, "samples": norm.samples,
              "silence_ms": None if next_ts is None else silence, "ambiguous": ambiguous}
    if next_ts is None or not fired:
        return [firing]
    return [firing, {"type": "DWELL_ANOMALY", "status": "RESOLVED", "waybill": waybill,
                     "event_ts": next_ts, "last_scan_ts": ts}]
