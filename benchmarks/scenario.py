"""Synthetic scan, dispute, weather, shipment and merchant-action streams with their ground
truth.

Parcels are generated in order of pickup time and their records released in order of
arrival (event time plus a small random delay, so the stream is locally out of order by at
most `disorder_minutes`). Only parcels still travelling are held in memory, so a scenario
of any size streams. What the detectors must find is written as ground truth, computed
from the generated scans themselves, independently of the detectors' code.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone

import msgspec

from benchmarks.geography import (
    BAD_ROUTE,
    CARRIERS,
    CITIES,
    HOT_LANE,
    HOT_LANE_SHARE,
    HUBS_PER_CITY,
    METRO_SPREAD_DEGREES,
    NOT_RECEIVED_RATES,
    PEAK_DAYS,
    STALL_RATES,
    damage_rate,
    hub_id,
    hub_position,
)
from benchmarks.legs import DwellLog, LaneRule, draw_wait, dwell_truth, leg_dwell
from benchmarks.merchant_side import MerchantConfig, MerchantSide

HOUR = 3_600_000
DAY = 24 * HOUR
MINUTE = 60_000
CITY_NAMES = list(CITIES)
CARRIER_NAMES = list(CARRIERS)
CARRIER_WEIGHTS = list(CARRIERS.values())
CHINA = timezone(timedelta(hours=8))
SIGNERS = {"RECIPIENT": 0.55, "PROXY": 0.12, "LOCKER": 0.2, "STATION": 0.1, "UNKNOWN": 0.03}
PROOFS = {"PHOTO": 0.4, "PICKUP_CODE": 0.3, "SIGNATURE": 0.2, "NONE": 0.1}
RISKY_SIGNERS = ("PROXY", "UNKNOWN")
FAR_SIGNING_SHARE = 0.03
CLAIM_FACTOR = 3    # a risky signing, or one far from the door, is claimed this much more
encode = msgspec.json.encode


def _mean_claim_factor() -> float:
    """The average of the claim multipliers over all signings, so that a carrier's
    NOT_RECEIVED_RATES entry is its overall claim rate."""
    safe = (1 - sum(SIGNERS[s] for s in RISKY_SIGNERS)) * (1 - PROOFS["NONE"])
    risky = (1 - safe) * CLAIM_FACTOR + safe
    return risky * (1 + FAR_SIGNING_SHARE * (CLAIM_FACTOR - 1))


@dataclass(frozen=True)
class Storm:
    """Parcels at `city` while it lasts are held there until well after it ends; a share of
    them get an EXCEPTION/WEATHER scan. With `warning` set, a weather warning of that kind
    is issued for it; without, it stands for a hub jam nobody announced."""

    city: str
    start_share: float          # when it begins, as a share of the scenario's days
    hours: float
    weather_code_share: float
    warning: str | None = None  # the warning's kind (RAINSTORM, TYPHOON, ...)
    radius_km: float = 60


DEFAULT_STORMS = (
    Storm("杭州", 0.5, 24, 0.6, "RAINSTORM"),
    Storm("郑州", 0.3, 12, 0.0),
)


@dataclass(frozen=True)
class Outage:
    """A carrier's feed goes dark: its scans from `start_share` of the scenario's days on,
    for `days`, are read only once the feed resumes, as a backfill in event-time order with
    their own `ts` (replayed `backfill_speedup` times faster than they happened)."""

    carrier: str
    start_share: float
    days: float
    backfill_speedup: float = 100


DEFAULT_OUTAGE = Outage("ZTO", 0.4, 4)


@dataclass(frozen=True)
class Backfill:
    """A second scenario read days late, as when a platform loads a day's missed shipments
    again: `share` times as many parcels more (their own seed, so their own waybills), picked
    up over its first `days` days less six, their records read in event-time order from
    `resume_share` of the scenario's days on, `speedup` times faster than they happened;
    every one of them far behind the watermark. Its stalled parcels never move again."""

    share: float = 0.1
    days: float = 10
    resume_share: float = 0.8
    speedup: float = 1000


DEFAULT_BACKFILL = Backfill()
DEFAULT_MERCHANT = MerchantConfig()
# The backfilled parcels' merchant side: the platform's own records were read on time, so
# none comes with the backfill; their claims, read late, go unanswered.
CLAIMS_ONLY = MerchantConfig(shipped_share=0, never_picked_up_rate=0, prompt_answer_rate=0,
                             late_answer_rate=0)
FEED_SILENCE_MINUTES = 120  # the contract's feed_silence_minutes: the truth is cut at it
FEED_MIN_EXPECTED_SCANS = 50  # and its feed_min_expected_scans


@dataclass
class ScenarioConfig:
    parcels: int = 20_000
    days: float = 30
    seed: int = 7
    start_ts: int = 1_793_462_400_000          # 2026-11-01 00:00 +08:00, a local midnight
    no_movement_hours: float = 72              # the threshold the ground truth is cut at
    allowed_lateness_minutes: float = 10
    stall_scale: float = 1.0                   # times each carrier's STALL_RATES
    resume_rate: float = 0.4                   # of stalled parcels, the ones that move again
    exception_rate: float = 0.02
    failed_delivery_rate: float = 0.03
    return_rate: float = 0.01
    duplicate_rate: float = 0.01
    junk_rate: float = 0.002
    not_received_scale: float = 1.0            # times each carrier's NOT_RECEIVED_RATES
    wrong_item_rate: float = 0.005
    disorder_minutes: float = 5
    merchants: int = 500
    storms: tuple[Storm, ...] = DEFAULT_STORMS
    peaks: bool = True                         # Double-11 and 12.12 volume (PEAK_DAYS)
    delay_dwell_hours: float = 24              # held parcels sit at least this long
    outage: Outage | None = None               # a carrier's feed going dark, then backfilled
    backfill: Backfill | None = None           # a second scenario read days late
    feed_min_expected_scans: float = FEED_MIN_EXPECTED_SCANS  # the truth of feed silences
    # Shipments and merchant actions (None: scans, claims and weather only).
    merchant: MerchantConfig | None = DEFAULT_MERCHANT
    legs: bool = True            # per-leg log-normal waits (False: uniform in each range)
    dwell_truth: bool = True     # the DWELL_ANOMALY truth (False: nothing kept for it)
    # The DWELL_ANOMALY settings its truth is cut at (the contract's defaults).
    lane_quantile: float = 0.99
    lane_factor: float = 1.5
    lane_history_days: int = 14
    lane_min_samples: int = 100
    lane_min_hours: float = 12


@dataclass
class Truth:
    """Expected detections and the counts of injected faults."""

    alerts: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    bad_routes: list[str] = field(default_factory=list)  # routes injected with high damage
    clusters: list[dict] = field(default_factory=list)   # one per storm: where, when, who
    stalls: list[dict] = field(default_factory=list)     # injected stalls: waybill, since_ts
    route_deliveries: Counter = field(default_factory=Counter)  # route id -> deliveries
    # Every silence of at least no_movement_hours: waybill, last_scan_ts, whether its leg had
    # a DWELL_ANOMALY norm that day to warn of it (warnable), and its threshold_ms.
    dwell_stalls: list[dict] = field(default_factory=list)


class Scenario:
    def __init__(self, config: ScenarioConfig):
        self.config = config
        self.rng = random.Random(config.seed)
        self.truth = Truth()
        self._trailing: list[tuple[str, int]] = []   # (waybill, last non-terminal ts)
        self._max_ts = 0
        self._seq = 0
        self._event_seq = 0
        self.parcels_started = 0
        self.most_waiting = 0    # the most records held back at once (memory follows it)
        self._held: dict[Storm, list[str]] = {storm: [] for storm in config.storms}
        self._stalled_since = 0
        self._late = self._backfilled_scenario()
        # Each carrier's scans by minute of ts: [count, smallest ts, largest ts], for the
        # feed silences the contract's definition finds in them.
        self._feed_minutes: dict[str, dict[int, list[int]]] = {}
        self.merchant = (None if config.merchant is None
                         else MerchantSide(config.merchant, config.seed, self._next))
        self._dwell = (DwellLog(self.lane_rule(), CHINA, self._waybill)
                       if config.dwell_truth else None)

    def lane_rule(self) -> LaneRule:
        """The DWELL_ANOMALY settings of the config."""
        cfg = self.config
        return LaneRule(cfg.lane_quantile, cfg.lane_factor, cfg.lane_history_days,
                        cfg.lane_min_samples, cfg.lane_min_hours, cfg.no_movement_hours)

    # -- public --------------------------------------------------------------------------

    def records(self) -> Iterator[tuple[str, str | None, bytes]]:
        """(topic, key, value) in arrival order: scans, then-or-between disputes, weather."""
        arrivals = self._arrivals()
        if self._late is not None:
            arrivals = heapq.merge(arrivals, self._read_late(self._late), key=lambda i: i[0])
        for _, _, topic, key, value in arrivals:
            self.truth.counts[f"{topic}_records"] += 1
            yield topic, key, value
        self._finish_truth()

    # -- generation ----------------------------------------------------------------------

    def _backfilled_scenario(self) -> Scenario | None:
        cfg, backfill = self.config, self.config.backfill
        if backfill is None:
            return None
        return Scenario(replace(cfg, parcels=max(1, round(backfill.share * cfg.parcels)),
                                days=backfill.days, seed=cfg.seed + 50, storms=(),
                                peaks=False, resume_rate=0.0, outage=None, backfill=None,
                                merchant=CLAIMS_ONLY))

    def _read_late(self, late: Scenario) -> Iterator[tuple]:
        """The second scenario's arrivals, moved to the backfill's reading."""
        cfg, backfill = self.config, self.config.backfill
        resume = cfg.start_ts + round(backfill.resume_share * cfg.days * DAY)
        for arrival, *rest in late._arrivals():
            yield (resume + round((arrival - cfg.start_ts) / backfill.speedup), *rest)

    def _arrivals(self) -> Iterator[tuple]:
        """The arrival heap's items in arrival order."""
        cfg = self.config
        heap: list = [self._warning(n, storm) for n, storm in enumerate(cfg.storms)
                      if storm.warning is not None]
        heapq.heapify(heap)
        # A parcel's records begin this long before its pickup (its shipment).
        ahead = 0 if cfg.merchant is None else 72 * HOUR
        for i, offset in enumerate(self._pickup_offsets()):
            created = cfg.start_ts + offset
            self.parcels_started = i + 1
            while heap and heap[0][0] <= created - ahead:
                yield heapq.heappop(heap)
            for item in self._parcel(i, created):
                heapq.heappush(heap, item)
            self.most_waiting = max(self.most_waiting, len(heap))
        while heap:
            yield heapq.heappop(heap)

    def _day_weights(self) -> list[float]:
        """Pickup volume per day (the last six left for the trips to end): ordinary days
        weigh 1, sale days more (PEAK_DAYS)."""
        cfg = self.config
        days = math.ceil(max(DAY, cfg.days * DAY - 6 * DAY) / DAY)
        if not cfg.peaks:
            return [1.0] * days
        start = datetime.fromtimestamp(cfg.start_ts / 1000, CHINA)
        dates = (start + timedelta(days=day) for day in range(days))
        return [PEAK_DAYS.get((date.month, date.day), 1.0) for date in dates]

    def _pickup_offsets(self) -> Iterator[int]:
        """Pickup times in order: spread over the days by their weight, with a daily rhythm
        (`start_ts` is a local midnight): pickups 08:00-22:00 local, a few around 02:00.
        Drawn a day at a time and sorted, so records are released in arrival order."""
        parcels = self.config.parcels
        weights = list(itertools.accumulate(self._day_weights()))
        first = 0
        for day, weight in enumerate(weights):
            last = min(parcels, math.ceil(weight * parcels / weights[-1]))
            hours = (8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 2)
            yield from sorted(day * DAY + self.rng.choice(hours) * HOUR
                              + self.rng.randrange(HOUR)
                              for _ in range(last - first))
            first = last

    def _next(self, at: int, topic: str, key: str, record, carrier: str | None = None,
              rng: random.Random | None = None) -> tuple:
        """An item for the arrival heap; `carrier`: whose scan it is (for its outage);
        `rng`: the random stream it draws its delay from (the scans' by default)."""
        self._seq += 1
        arrival = at + (rng or self.rng).randrange(int(self.config.disorder_minutes * MINUTE) + 1)
        outage = self.config.outage
        if outage is not None and carrier == outage.carrier:
            start, end = self._outage_window()
            if start <= at < end:  # read when the feed resumes, in the order they happened
                arrival = end + round((arrival - start) / outage.backfill_speedup)
        return (arrival, self._seq, topic, key, encode(record))

    def _count_scan(self, carrier: str, ts: int) -> None:
        minutes = self._feed_minutes.setdefault(carrier, {})
        bucket = minutes.get(ts // MINUTE)
        if bucket is None:
            minutes[ts // MINUTE] = [1, ts, ts]
        else:
            bucket[0] += 1
            bucket[1], bucket[2] = min(bucket[1], ts), max(bucket[2], ts)

    def _feed_silences(self, watermark: int) -> list[dict]:
        """FEED_SILENT by the contract's definition: a carrier with no scan in the 120 min
        after one while its scans in those minutes of the 7 days before average at least
        `feed_min_expected_scans`, by the watermark's end; and one per outage (its scans
        are all there by ts, read days late). A quiet spell inside an outage is that outage."""
        silence = FEED_SILENCE_MINUTES * MINUTE
        outage = self.config.outage
        window = self._outage_window() if outage is not None else None
        found = []
        for carrier, minutes in sorted(self._feed_minutes.items()):
            ordered = sorted(minutes)
            for this, following in zip(ordered, [*ordered[1:], None], strict=True):
                onset = minutes[this][2] + silence
                if onset > watermark or (following is not None
                                         and minutes[following][1] <= onset):
                    continue
                if (window is not None and carrier == outage.carrier
                        and window[0] <= minutes[this][2] < window[1]):
                    continue
                if self._expected_scans(minutes, onset) >= self.config.feed_min_expected_scans:
                    found.append({"type": "FEED_SILENT", "status": "FIRING",
                                  "carrier": carrier, "event_ts": onset})
        if outage is not None:  # one alert for the outage, not one per parcel
            before = max(last for _, _, last in self._feed_minutes[outage.carrier].values()
                         if last < window[0])
            found.append({"type": "FEED_SILENT", "status": "FIRING", "carrier": outage.carrier,
                          "event_ts": before + silence})
        return sorted(found, key=lambda a: (a["event_ts"], a["carrier"]))

    @staticmethod
    def _expected_scans(minutes: dict[int, list[int]], at: int) -> float:
        """Scans in the 120 minutes before `at`, on average over the 7 days before."""
        last = (at - 1) // MINUTE
        total = 0
        for day in range(1, 8):
            end = last - day * 1440
            total += sum(minutes[m][0] for m in range(end - FEED_SILENCE_MINUTES + 1, end + 1)
                         if m in minutes)
        return total / 7

    def _outage_window(self) -> tuple[int, int]:
        outage, cfg = self.config.outage, self.config
        start = cfg.start_ts + round(outage.start_share * cfg.days * DAY)
        return start, start + round(outage.days * DAY)

    def _event_id(self) -> str:
        self._event_seq += 1
        return f"ev-{self.config.seed}-{self._event_seq:09d}"

    def _route(self) -> list[tuple[str, int]]:
        rng = self.rng
        if rng.random() < HOT_LANE_SHARE:
            origin, destination = (CITY_NAMES.index(city) for city in HOT_LANE)
        else:
            origin, destination = rng.sample(range(len(CITY_NAMES)), 2)
        stops = [origin]
        if rng.random() < 0.6:
            others = [c for c in range(len(CITY_NAMES)) if c not in (origin, destination)]
            stops.append(rng.choice(others))
        stops.append(destination)
        return [(CITY_NAMES[c], c) for c in stops]

    def _journey(self, created: int, stops: list[tuple[str, int]], damaged_in_transit: bool,
                 carrier: str, hub: int) -> list[tuple[str, int, int, dict]]:
        """(scan_type, ts, city index, extra fields) of a normal trip through hub number `hub`
        of each city, gaps well under 72 h."""
        rng = self.rng
        steps: list = []
        ts = created

        def wait(low: int, high: int) -> int:
            return self._wait(steps[-1], low, high, carrier, hub)

        for n, (_, city) in enumerate(stops):
            if n == 0:
                steps.append(("PICKUP", ts, city, {}))
            else:
                ts += wait(6 * HOUR, 26 * HOUR)
                steps.append(("ARRIVE", ts, city, {}))
            if rng.random() < self.config.exception_rate:
                ts += wait(HOUR, 8 * HOUR)
                # Weather codes come with storms only: scattered ones would be noise that
                # no real weather makes.
                steps.append(("EXCEPTION", ts, city, {"exception_code": rng.choice(
                    ["ADDRESS", "OTHER"])}))
            if damaged_in_transit and n == len(stops) - 1:
                ts += wait(HOUR, 4 * HOUR)
                steps.append(("EXCEPTION", ts, city, {"exception_code": "DAMAGED"}))
            if n < len(stops) - 1:
                ts += wait(HOUR, 8 * HOUR)
                steps.append(("DEPART", ts, city, {}))
        city = stops[-1][1]
        ts += wait(4 * HOUR, 14 * HOUR)
        steps.append(("OUT_FOR_DELIVERY", ts, city, {}))
        if rng.random() < self.config.failed_delivery_rate:
            ts += wait(2 * HOUR, 6 * HOUR)
            steps.append(("DELIVERY_FAILED", ts, city, {}))
            ts += wait(14 * HOUR, 26 * HOUR)
            steps.append(("OUT_FOR_DELIVERY", ts, city, {}))
        ts += wait(HOUR, 6 * HOUR)
        if rng.random() < self.config.return_rate:
            steps.append(("RETURNED", ts, city, {}))
        else:
            steps.append(("SIGNED", ts, city, self._signing()))
        return steps

    def _wait(self, after: tuple, low: int, high: int, carrier: str, hub: int) -> int:
        """The wait after the scan `after`, of a kind typically `low` to `high` ms: drawn for
        its leg (uniform in the range without `legs`)."""
        if not self.config.legs:
            return self.rng.randrange(low, high)
        kind, _, city, _ = after
        median, sigma = leg_dwell(carrier, city, hub, kind, low, high)
        return draw_wait(self.rng, median, sigma, self._longest_wait())

    def _longest_wait(self) -> int:
        """The longest ordinary wait: well short of a stall."""
        return int(0.9 * self.config.no_movement_hours * HOUR)

    def _waybill(self, carrier: str, number: int) -> str:
        return f"{carrier}{self.config.seed:02d}{number:010d}"

    def _signing(self) -> dict:
        rng = self.rng
        signer = rng.choices(list(SIGNERS), list(SIGNERS.values()))[0]
        proof = rng.choices(list(PROOFS), list(PROOFS.values()))[0]
        return {"signer": signer, "proof": proof}

    def _stall(self, steps: list) -> list:
        """Cut the trip after a random non-terminal step; maybe resume after a long silence."""
        rng = self.rng
        cut = rng.randrange(0, len(steps) - 1)
        head, tail = steps[:cut + 1], steps[cut + 1:]
        self._stalled_since = head[-1][1]
        if rng.random() >= self.config.resume_rate:
            return head
        silence = rng.randrange(int((self.config.no_movement_hours + 4) * HOUR),
                                int((self.config.no_movement_hours + 120) * HOUR))
        shift = head[-1][1] + silence - tail[0][1]
        return head + [(kind, ts + shift, city, extra) for kind, ts, city, extra in tail]

    def _parcel(self, i: int, created: int) -> list[tuple]:
        cfg, rng = self.config, self.rng
        carrier = rng.choices(CARRIER_NAMES, CARRIER_WEIGHTS)[0]
        waybill = self._waybill(carrier, i)
        hub = i % HUBS_PER_CITY
        stops = self._route()
        origin, destination = stops[0][0], stops[-1][0]
        damaged = rng.random() < damage_rate(carrier, origin, destination)
        in_transit = damaged and rng.random() < 0.5
        steps = self._journey(created, stops, in_transit, carrier, hub)
        for storm in cfg.storms:
            steps = self._weather_the_storm(storm, steps, waybill)
        if rng.random() < STALL_RATES[carrier] * cfg.stall_scale:
            steps = self._stall(steps)
            self.truth.stalls.append({"waybill": waybill, "since_ts": self._stalled_since})
        merchant = f"M{rng.randrange(cfg.merchants):05d}"
        order = f"O{cfg.seed:02d}{i:010d}"
        city_lat, city_lon = CITIES[destination]
        spread = METRO_SPREAD_DEGREES
        home = (round(city_lat + rng.uniform(-spread, spread), 5),
                round(city_lon + rng.uniform(-spread, spread), 5))
        items = []
        for n, (kind, ts, city, extra) in enumerate(steps):
            lat, lon = hub_position(carrier, city, hub)
            record = {
                "event_id": self._event_id(), "waybill": waybill, "carrier": carrier,
                "scan_type": kind, "ts": ts,
                "hub_id": hub_id(carrier, city, hub), "city": CITY_NAMES[city],
                "lat": round(lat + rng.uniform(-0.002, 0.002), 5),  # GPS noise, about 200 m
                "lon": round(lon + rng.uniform(-0.002, 0.002), 5),
            }
            if n == 0:
                record.update(origin=origin, destination=destination, merchant_id=merchant,
                              order_id=order, dest_lat=home[0], dest_lon=home[1])
            if kind == "SIGNED":
                position, far = self._signed_at(home, extra["signer"])
                record.update(position)
            record.update(extra)
            items.append(self._next(ts, "scans", waybill, record, carrier))
            self._count_scan(carrier, ts)
            if rng.random() < cfg.duplicate_rate:
                self.truth.counts["duplicates"] += 1
                items.append(self._next(ts, "scans", waybill, record, carrier))
            if rng.random() < cfg.junk_rate:
                self.truth.counts["junk"] += 1
                items.append(self._next(ts, "scans", waybill, self._junk(record), carrier))
            self._max_ts = max(self._max_ts, ts)
        self._expect(waybill, steps)
        if self._dwell is not None:
            self._dwell.add_trip(i, carrier, hub, steps)
        if self.merchant is not None:
            items += self.merchant.for_parcel(i, carrier, waybill, merchant, order, steps)
        last_kind, last_ts, _, last_extra = steps[-1]
        if last_kind == "SIGNED":
            self.truth.counts["deliveries"] += 1
            self.truth.route_deliveries[f"{carrier}:{origin}>{destination}"] += 1
            if damaged and not in_transit:
                items.append(self._dispute(waybill, merchant, order, last_ts, "DAMAGED")[0])
            if rng.random() < self._not_received_rate(carrier, last_extra, far):
                item, ts = self._dispute(waybill, merchant, order, last_ts, "NOT_RECEIVED")
                items.append(item)
                self.truth.alerts.append({"type": "SIGNED_DISPUTED", "status": "FIRING",
                                          "waybill": waybill, "event_ts": ts})
                if self.merchant is not None:
                    items += self.merchant.answer(waybill, merchant, ts)
            elif rng.random() < cfg.wrong_item_rate:
                items.append(self._dispute(waybill, merchant, order, last_ts, "WRONG_ITEM")[0])
        elif last_kind != "RETURNED" and rng.random() < 0.2:
            # A buyer complaining about a parcel that never got signed: not SIGNED_DISPUTED.
            items.append(self._dispute(waybill, merchant, order, last_ts, "NOT_RECEIVED")[0])
        return items

    def _signed_at(self, home: tuple[float, float], signer: str) -> tuple[dict, bool]:
        """Where the courier scanned SIGNED: at the door, nearby for lockers, rarely far off."""
        rng = self.rng
        far = rng.random() < FAR_SIGNING_SHARE
        if far:
            spread = rng.uniform(0.05, 0.15)
        elif signer in ("LOCKER", "STATION"):
            spread = 0.008
        else:
            spread = 0.001
        return {"lat": round(home[0] + rng.choice((-1, 1)) * spread, 5),
                "lon": round(home[1] + rng.uniform(-spread, spread), 5)}, far

    def _not_received_rate(self, carrier: str, signing: dict, far: bool) -> float:
        """The carrier's claim rate, shared out so riskier signings are claimed more."""
        rate = (NOT_RECEIVED_RATES[carrier] * self.config.not_received_scale
                / _mean_claim_factor())
        if signing.get("proof") == "NONE" or signing.get("signer") in RISKY_SIGNERS:
            rate *= CLAIM_FACTOR
        if far:
            rate *= CLAIM_FACTOR
        return rate

    def _junk(self, record: dict):
        kind = self.rng.randrange(4)
        if kind == 0:
            return msgspec.Raw(b"{not json")
        broken = dict(record, event_id=self._event_id())
        if kind == 1:
            del broken["ts"]
        elif kind == 2:
            broken["scan_type"] = "TELEPORTED"
        else:
            broken["ts"] = "yesterday"
        return broken

    def _dispute(self, waybill: str, merchant: str, order: str, after_ts: int,
                 kind: str) -> tuple:
        rng = self.rng
        ts = after_ts + rng.randrange(HOUR, 10 * DAY)
        phone = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
        notes = {
            "NOT_RECEIVED": f"显示签收了但我没收到货，请联系我 {phone}，"
                            "地址：杭州市西湖区文三路100号",
            "DAMAGED": f"收到的东西坏了，电话 {phone}",
            "WRONG_ITEM": "发错货了",
        }
        record = {"event_id": self._event_id(), "waybill": waybill, "ts": ts, "kind": kind,
                  "order_id": order, "merchant_id": merchant, "note": notes[kind]}
        self._max_ts = max(self._max_ts, ts)
        self.truth.counts[f"disputes_{kind.lower()}"] += 1
        return self._next(ts, "disputes", waybill, record), ts

    def _storm_window(self, storm: Storm) -> tuple[int, int]:
        start = self.config.start_ts + int(storm.start_share * self.config.days * DAY)
        return start, start + int(storm.hours * HOUR)

    def _warning(self, n: int, storm: Storm) -> tuple:
        """The warning for a storm, issued six hours before it begins."""
        lat, lon = CITIES[storm.city]
        start, end = self._storm_window(storm)
        record = {"event_id": self._warning_id(n), "kind": storm.warning, "lat": lat,
                  "lon": lon, "radius_km": storm.radius_km, "start_ts": start, "end_ts": end,
                  "severity": 3}
        self._seq += 1
        return (start - 6 * HOUR, self._seq, "weather", None, encode(record))

    def _warning_id(self, n: int) -> str:
        return f"wx-{self.config.seed}-{n + 1}"

    def _weather_the_storm(self, storm: Storm, steps: list, waybill: str) -> list:
        """A parcel sitting in the storm's city while it rages moves on only well after it,
        but within the longest ordinary wait of its last scan: a storm delays parcels, it
        does not make them look lost."""
        start, end = self._storm_window(storm)
        city = CITY_NAMES.index(storm.city)
        for i, (kind, ts, at, _) in enumerate(steps[:-1]):
            next_ts = steps[i + 1][1]
            if at != city or kind == "DEPART" or next_ts <= start or ts >= end:
                continue
            rng = self.rng
            held_from = max(ts, start)
            resume = max(end, held_from + int(self.config.delay_dwell_hours * HOUR) + 2 * HOUR)
            resume += rng.randrange(12 * HOUR)
            head, tail = steps[:i + 1], steps[i + 1:]
            if rng.random() < storm.weather_code_share:
                head.append(("EXCEPTION", held_from + rng.randrange(HOUR, 2 * HOUR), city,
                             {"exception_code": "WEATHER"}))
            resume = min(resume, head[-1][1] + self._longest_wait())
            shift = max(0, resume - tail[0][1])
            self._held[storm].append(waybill)
            return head + [(k, t + shift, c, extra) for k, t, c, extra in tail]
        return steps

    # -- ground truth --------------------------------------------------------------------

    def _expect(self, waybill: str, steps: list) -> None:
        """Silences over the threshold between consecutive scans, and a trailing one."""
        limit = int(self.config.no_movement_hours * HOUR)
        for (kind, ts, _, _), (_, next_ts, _, _next_extra) in itertools.pairwise(steps):
            if kind in ("SIGNED", "RETURNED"):
                return
            if next_ts > ts + limit:
                self._alert(waybill, "FIRING", ts + limit)
                self._alert(waybill, "RESOLVED", next_ts)
        last_kind, last_ts = steps[-1][0], steps[-1][1]
        if last_kind not in ("SIGNED", "RETURNED"):
            self._trailing.append((waybill, last_ts))

    def _alert(self, waybill: str, status: str, event_ts: int) -> None:
        self.truth.alerts.append({"type": "NO_MOVEMENT", "status": status, "waybill": waybill,
                                  "event_ts": event_ts})

    def _finish_truth(self) -> None:
        watermark = self._latest_ts() - int(self.config.allowed_lateness_minutes * MINUTE)
        self._trailing_stalls(watermark)
        self._merchant_truth(watermark)
        if self._late is not None:
            self._take_truth_of(self._late, watermark)
        if self._dwell is not None:
            self._dwell_truth(watermark)
        self.truth.counts["final_watermark"] = watermark
        self.truth.alerts += self._feed_silences(watermark)
        self.truth.counts["parcels"] = self.config.parcels
        self.truth.bad_routes = ["{}:{}>{}".format(*BAD_ROUTE)]
        for n, storm in enumerate(self.config.storms):
            start, end = self._storm_window(storm)
            self.truth.clusters.append({
                "type": "WEATHER_DELAY_CLUSTER", "city": storm.city, "start_ts": start,
                "end_ts": end, "cause": "WEATHER" if storm.warning or
                storm.weather_code_share > 0.5 else "UNKNOWN",
                "weather_event_id": self._warning_id(n) if storm.warning else None,
                "waybills": sorted(self._held[storm])})
            self.truth.counts["storm_held_parcels"] += len(self._held[storm])

    def _latest_ts(self) -> int:
        """The largest ts of every input that moves event time."""
        latest = self._max_ts if self.merchant is None else max(self._max_ts,
                                                                 self.merchant.max_ts)
        return latest if self._late is None else max(latest, self._late._latest_ts())

    def _merchant_truth(self, watermark: int) -> None:
        if self.merchant is not None:
            self.truth.alerts += self.merchant.truth(watermark)

    def _trailing_stalls(self, watermark: int) -> None:
        limit = int(self.config.no_movement_hours * HOUR)
        for waybill, last_ts in self._trailing:
            if last_ts + limit <= watermark:
                self._alert(waybill, "FIRING", last_ts + limit)

    def _dwell_truth(self, watermark: int) -> None:
        """DWELL_ANOMALY by the contract's definition, over this scenario's scans and the
        backfilled one's: both teach the legs' norms, and both are judged against them."""
        logs = [self._dwell] if self._late is None else [self._dwell, self._late._dwell]
        alerts, stalls, norms = dwell_truth(logs, self.lane_rule(), watermark)
        self.truth.alerts += alerts
        self.truth.dwell_stalls = stalls
        firing = [a for a in alerts if a["status"] == "FIRING"]
        days = range(self._dwell.day(self.config.start_ts), self._dwell.day(watermark) + 1)
        self.truth.counts.update(
            dwell_firing=sum(not a["ambiguous"] for a in firing),
            dwell_ambiguous=sum(a["ambiguous"] for a in firing),
            stalls=len(stalls), stalls_warnable=sum(s["warnable"] for s in stalls),
            dwell_legs_usable=norms.usable_legs(days))

    def _take_truth_of(self, late: Scenario, watermark: int) -> None:
        """The backfilled scenario's truth as of this one's end: its parcels are judged by
        the same watermark, its scans count in their carriers' feeds by ts."""
        late._trailing_stalls(watermark)
        late._merchant_truth(watermark)
        self.truth.alerts += late.truth.alerts
        self.truth.stalls += late.truth.stalls
        self.truth.route_deliveries += late.truth.route_deliveries
        self.truth.counts.update({name: n for name, n in late.truth.counts.items()
                                  if not name.endswith("_records")})
        self.truth.counts["backfilled_parcels"] = late.config.parcels
        for carrier, minutes in late._feed_minutes.items():
            for minute, (count, first, last) in minutes.items():
                mine = self._feed_minutes.setdefault(carrier, {}).setdefault(
                    minute, [0, first, last])
                mine[:] = [mine[0] + count, min(mine[1], first), max(mine[2], last)]

    def summary(self) -> dict:
        return {"config": asdict(self.config), "counts": dict(self.truth.counts),
                "bad_routes": self.truth.bad_routes,
                "clusters": [{k: v for k, v in c.items() if k != "waybills"}
                             | {"parcels": len(c["waybills"])} for c in self.truth.clusters]}
