"""SIGNED_DISPUTED and delivery damage (contract sections 2 and 3) through a shard and the
aggregate step, driven in plain Python the way the dataflow drives them.

Every input batch goes to `Shard.apply` with its partition's progress; what the shard returns
besides per-parcel detections goes to one `Aggregate`, which returns the SIGNED_DISPUTED
alerts (and route records).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from models.aggregate import Aggregate
from models.detection import Detection
from models.detectors.signing import DisputeMatcher
from models.events import Dispute, Scan
from models.messages import (
    DisputeCandidate,
    RouteBatch,
    RouteEvent,
    RouteScores,
    ShardTick,
    Signed,
)
from models.risk import WEIGHTS
from models.route_shards import RouteShards
from models.routes import decode_scores
from models.settings import DAY_MS, HOUR_MS, MINUTE_MS, Thresholds
from models.shard import Shard, ShardInput

H, M, D = HOUR_MS, MINUTE_MS, DAY_MS
WINDOW = 15 * D  # dispute_window_days
FORGET = 15 * D  # forget_after_days
LATE = 10 * M  # allowed_lateness_minutes
SCANS, DISPUTES = "scans/0", "disputes/0"
PARTITIONS = [SCANS, DISPUTES]
ZONE = ZoneInfo("Asia/Shanghai")
# 2024-03-10 00:00 in Asia/Shanghai: signing times below are given as hours of that day.
MIDNIGHT = int(datetime(2024, 3, 10, tzinfo=ZONE).timestamp() * 1000)
T0 = MIDNIGHT
DEST = (30.2741, 120.1551)  # the consignee's geocode (Hangzhou)

SIGNER_VALUES = ("RECIPIENT", "PROXY", "LOCKER", "STATION", "UNKNOWN")
PROOF_VALUES = ("PHOTO", "PICKUP_CODE", "SIGNATURE", "NONE")
KINDS = ("NOT_RECEIVED", "DAMAGED", "WRONG_ITEM", "MISSING_ITEMS", "OTHER")


# -- builders ---------------------------------------------------------------------------------


def scan(event_id: str, waybill: str, ts: int, scan_type: str = "ARRIVE", **fields) -> Scan:
    return Scan(event_id=event_id, waybill=waybill, carrier=fields.pop("carrier", "SF"),
                scan_type=scan_type, ts=ts, **fields)


def pickup(waybill: str, ts: int, dest: tuple[float, float] | None = DEST, **fields) -> Scan:
    fields.setdefault("merchant_id", "M-" + waybill)
    fields.setdefault("order_id", "O-" + waybill)
    fields.setdefault("origin", "上海")
    fields.setdefault("destination", "杭州")
    fields.setdefault("hub_id", "SH01")
    if dest is not None:
        fields["dest_lat"], fields["dest_lon"] = dest
    return scan(f"{waybill}-pickup", waybill, ts, "PICKUP", **fields)


def north_of(point: tuple[float, float], km: float) -> tuple[float, float]:
    return point[0] + km / 111.195, point[1]


def signed(waybill: str, ts: int, signer: str = "RECIPIENT", proof: str = "PHOTO",
           at: tuple[float, float] | None = None, **fields) -> Scan:
    fields.setdefault("hub_id", "HZ01")
    if at is None:
        at = north_of(DEST, 0.05)
    if at != ():
        fields["lat"], fields["lon"] = at
    return scan(f"{waybill}-signed", waybill, ts, "SIGNED", signer=signer, proof=proof,
                **fields)


def delivered(waybill: str, signed_ts: int, **signing) -> list[Scan]:
    """A parcel picked up a day before it is signed, with one scan on the way."""
    return [pickup(waybill, signed_ts - D),
            scan(f"{waybill}-ofd", waybill, signed_ts - 2 * H, "OUT_FOR_DELIVERY",
                 hub_id="HZ01"),
            signed(waybill, signed_ts, **signing)]


def dispute(event_id: str, waybill: str, ts: int, kind: str = "NOT_RECEIVED",
            **fields) -> Dispute:
    return Dispute(event_id=event_id, waybill=waybill, ts=ts, kind=kind, **fields)


def at_hour(hour: float, day: int = 0) -> int:
    """Event time at `hour` o'clock Asia/Shanghai, `day` days after 2024-03-10."""
    return MIDNIGHT + day * D + round(hour * H)


# -- the pipeline -------------------------------------------------------------------------------


class Pipeline:
    """One shard, the aggregate and two route shards, fed batch by batch like the dataflow
    feeds them."""

    def __init__(self, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()
        self.shard = Shard(self.thresholds, PARTITIONS)
        self.aggregate = Aggregate(self.thresholds, shards=1, route_shards=2)
        self.route_shards = RouteShards(self.thresholds, 2)
        self.max_ts: dict[str, int | None] = dict.fromkeys(PARTITIONS)
        self.shard_items: list = []       # what the shard sent to the aggregate (no ticks)
        self.detections: list[Detection] = []
        self.aggregate_out: list = []

    def feed(self, partition: str, events: list, caught_up: bool = False) -> list:
        for event in events:
            previous = self.max_ts[partition]
            self.max_ts[partition] = event.ts if previous is None else max(previous, event.ts)
        out = self.shard.apply(ShardInput(partition, list(events), self.max_ts[partition],
                                          caught_up, shard=0))
        items = [item for item in out if type(item) is not Detection]
        self.shard_items.extend(item for item in items if type(item) is not ShardTick)
        self.detections.extend(item for item in out if type(item) is Detection)
        found = []
        aggregated = self.aggregate.apply(items)
        batches = [item for item in aggregated if type(item) is RouteBatch]
        for item in [*aggregated, *self.route_shards.apply(batches)]:
            if type(item) is RouteScores:  # the route scores of one scoring
                found.extend(decode_scores(item.records))
            elif type(item) is not RouteBatch:
                found.append(item)
        self.aggregate_out.extend(found)
        self.detections.extend(item for item in found if type(item) is Detection)
        return out

    def finish(self) -> None:
        """Both partitions read to their end."""
        self.feed(SCANS, [], caught_up=True)
        self.feed(DISPUTES, [], caught_up=True)

    @property
    def claims(self) -> list[Detection]:
        return [d for d in self.detections if d.type == "SIGNED_DISPUTED"]

    def of(self, kind: type) -> list:
        return [item for item in self.shard_items if type(item) is kind]


def run(scans: list[Scan], disputes: list[Dispute], thresholds: Thresholds | None = None,
        ) -> Pipeline:
    """Scans and disputes in one batch each, then both partitions reach their end."""
    pipeline = Pipeline(thresholds)
    pipeline.feed(SCANS, sorted(scans, key=lambda s: s.ts))
    pipeline.feed(DISPUTES, sorted(disputes, key=lambda d: d.ts))
    pipeline.finish()
    return pipeline


def only_claim(pipeline: Pipeline) -> Detection:
    claims = pipeline.claims
    assert len(claims) == 1, claims
    return claims[0]


def run_plan(scans: list[Scan], disputes: list[Dispute],
             plan: list[tuple[str, int]], thresholds: Thresholds) -> Pipeline:
    """Feed the two streams by `plan`: (partition, batch size) in read order; the last batch
    of a partition is caught up (a size 0 batch stands for an empty partition)."""
    streams = {SCANS: list(scans), DISPUTES: list(disputes)}
    left = {p: sum(size for q, size in plan if q == p) for p in PARTITIONS}
    batches = {p: sum(1 for q, _ in plan if q == p) for p in PARTITIONS}
    assert left == {p: len(streams[p]) for p in PARTITIONS}
    pipeline = Pipeline(thresholds)
    position = dict.fromkeys(PARTITIONS, 0)
    for partition, size in plan:
        start = position[partition]
        position[partition] += size
        batches[partition] -= 1
        pipeline.feed(partition, streams[partition][start:start + size],
                      caught_up=batches[partition] == 0)
    return pipeline


# -- an independent reference for risk factors ------------------------------------------------


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def expected_factors(signer: str | None, proof: str | None, at: tuple[float, float] | None,
                     dest: tuple[float, float] | None, signed_ts: int) -> list[str]:
    factors = []
    if signer != "RECIPIENT":
        factors.append(f"SIGNER_{signer or 'UNKNOWN'}")
    if proof in (None, "NONE"):
        factors.append("PROOF_NONE")
    if at is not None and dest is not None and distance_km(at, dest) > 2:
        factors.append("FAR_FROM_CONSIGNEE")
    hour = datetime.fromtimestamp(signed_ts / 1000, tz=ZONE).hour
    if not 7 <= hour < 22:
        factors.append("NIGHT_SIGNING")
    return factors


def noisy_or(factors: list[str]) -> float:
    keep = 1.0
    for factor in factors:
        keep *= 1.0 - WEIGHTS[factor]
    return round(1.0 - keep, 4)


def claim_key(detection: Detection) -> tuple:
    details = detection.details
    return (detection.waybill, detection.event_ts, details["risk"],
            tuple(sorted(details["risk_factors"])))


# -- 1. order independence --------------------------------------------------------------------

PLACES = {"near": 0.1, "far": 5.0, "none": None}
MIDDLE_TYPES = ("DEPART", "ARRIVE", "OUT_FOR_DELIVERY", "DELIVERY_FAILED")
# Gaps between a parcel's scans: from under the disorder (reordered in reading) to a stall.
GAPS = st.one_of(st.integers(1, 6).map(lambda m: m * M), st.integers(1, 80).map(lambda h: h * H))


class Parcel(msgspec.Struct):
    waybill: str
    dest: tuple[float, float] | None
    signed_ts: int | None = None
    signer: str | None = None
    proof: str | None = None
    at: tuple[float, float] | None = None


@st.composite
def scenarios(draw):
    parcels: dict[str, Parcel] = {}
    scans: list[Scan] = []
    disputes: list[Dispute] = []
    for i in range(draw(st.integers(2, 6))):
        waybill = f"WB{i}"
        dest = draw(st.sampled_from([DEST, (31.2304, 121.4737), None]))
        parcel = parcels[waybill] = Parcel(waybill, dest)
        ts = T0 + draw(st.integers(0, 3 * 24 * 60)) * M
        carrier = draw(st.sampled_from(["SF", "JD"]))
        scans.append(pickup(waybill, ts, dest, carrier=carrier, merchant_id=f"M{i % 2}"))
        for j in range(draw(st.integers(0, 3))):
            ts += draw(GAPS)
            scans.append(scan(f"{waybill}-{j}", waybill, ts, draw(st.sampled_from(MIDDLE_TYPES)),
                              carrier=carrier, hub_id=draw(st.sampled_from(["H1", "H2"]))))
        end = draw(st.sampled_from(["SIGNED", "SIGNED", "SIGNED", "RETURNED", "NONE"]))
        if end == "SIGNED":
            ts += draw(GAPS)
            parcel.signed_ts = ts
            parcel.signer = draw(st.sampled_from(SIGNER_VALUES))
            parcel.proof = draw(st.sampled_from(PROOF_VALUES))
            km = PLACES[draw(st.sampled_from(sorted(PLACES)))]
            parcel.at = None if km is None else north_of(dest or DEST, km)
            scans.append(signed(waybill, ts, parcel.signer, parcel.proof,
                                () if parcel.at is None else parcel.at, carrier=carrier,
                                hub_id=draw(st.sampled_from(["H1", "H2"]))))
        elif end == "RETURNED":
            ts += draw(GAPS)
            scans.append(scan(f"{waybill}-returned", waybill, ts, "RETURNED", carrier=carrier))
        for k in range(draw(st.integers(0, 2))):
            offset = draw(st.one_of(
                st.sampled_from([-1, 0, 1, WINDOW - 1, WINDOW, WINDOW + 1]),
                st.integers(-2 * D, 20 * D)))
            kind = draw(st.sampled_from(["NOT_RECEIVED", "NOT_RECEIVED", "DAMAGED",
                                         "WRONG_ITEM"]))
            disputes.append(dispute(f"D-{waybill}-{k}", waybill, ts + offset, kind))
    if draw(st.booleans()):
        disputes.append(dispute("D-unknown", "NOBODY", T0 + draw(st.integers(0, 10 * D))))
    # Scans are read in event-time order with a little disorder (under 5 minutes).
    jitter = [draw(st.integers(0, 5 * M - 1)) if draw(st.booleans()) else 0 for _ in scans]
    order = sorted(range(len(scans)), key=lambda n: (scans[n].ts + jitter[n], n))
    scans = [scans[n] for n in order]
    disputes.sort(key=lambda d: d.ts)
    return parcels, scans, disputes


def expected_claims(parcels: dict[str, Parcel], disputes: list[Dispute]) -> Counter:
    expected: Counter = Counter()
    for claim in disputes:
        parcel = parcels.get(claim.waybill)
        if claim.kind != "NOT_RECEIVED" or parcel is None or parcel.signed_ts is None:
            continue
        if not parcel.signed_ts <= claim.ts <= parcel.signed_ts + WINDOW:
            continue
        factors = expected_factors(parcel.signer, parcel.proof, parcel.at, parcel.dest,
                                   parcel.signed_ts)
        expected[claim.waybill, claim.ts, noisy_or(factors), tuple(sorted(factors))] += 1
    return expected


def chunks(data, n: int) -> list[int]:
    sizes, left = [], n
    while left:
        size = data.draw(st.integers(1, min(left, 6)))
        sizes.append(size)
        left -= size
    return sizes or [0]


def drawn_plan(data, n_scans: int, n_disputes: int) -> list[tuple[str, int]]:
    sizes = {SCANS: chunks(data, n_scans), DISPUTES: chunks(data, n_disputes)}
    order = data.draw(st.permutations([SCANS] * len(sizes[SCANS])
                                      + [DISPUTES] * len(sizes[DISPUTES])))
    taken = dict.fromkeys(PARTITIONS, 0)
    plan = []
    for partition in order:
        plan.append((partition, sizes[partition][taken[partition]]))
        taken[partition] += 1
    return plan


# Route scores every ten days keep the many runs fast; they play no part in SIGNED_DISPUTED.
FAST = Thresholds(score_interval_hours=240)


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_signed_disputed_does_not_depend_on_how_the_two_inputs_interleave(scenario, data):
    parcels, scans, disputes = scenario
    n_s, n_d = len(scans), len(disputes)
    plans = {
        # Every claim read long before any scan, and the other way round.
        "disputes first": [(DISPUTES, n_d), (SCANS, n_s)],
        "scans first": [(SCANS, n_s), (DISPUTES, n_d)],
        "one by one, disputes first": [(DISPUTES, 1)] * n_d + [(SCANS, 1)] * n_s,
        "drawn 1": drawn_plan(data, n_s, n_d),
        "drawn 2": drawn_plan(data, n_s, n_d),
    }
    expected = expected_claims(parcels, disputes)
    note(f"expected: {sorted(expected.elements())}")
    for name, plan in plans.items():
        if all(p == SCANS for p, _ in plan):  # no claims: one empty, caught-up batch
            plan = [*plan, (DISPUTES, 0)]
        pipeline = run_plan(scans, disputes, plan, FAST)
        got = Counter(claim_key(d) for d in pipeline.claims)
        note(f"{name}: {plan}")
        assert got == expected, name
        for claim in pipeline.claims:
            assert claim.status == "FIRING"
            assert claim.details["signed_ts"] == parcels[claim.waybill].signed_ts


def test_a_signed_scan_read_after_a_later_returned_keeps_its_own_time():
    # A SIGNED scan and, two minutes later, a RETURNED one, read in either order (well within
    # the allowed lateness). Whether the claim fires is the same for both orders, and the
    # delivery's time is the SIGNED scan's, never the RETURNED scan's.
    signing = signed("W1", S - 2 * M)
    returned = scan("W1-r", "W1", S, "RETURNED", hub_id="HZ01")
    found = {}
    for name, order in (("signed first", [signing, returned]),
                        ("returned first", [returned, signing])):
        pipeline = Pipeline()
        pipeline.feed(SCANS, [pickup("W1", S - D), *order])
        pipeline.feed(DISPUTES, [dispute("d1", "W1", S + D)])
        pipeline.finish()
        assert [s.signed_ts - S for s in pipeline.of(Signed)] == [-2 * M], name
        found[name] = [(c.event_ts, c.details["signed_ts"]) for c in pipeline.claims]
        assert {signed_ts - S for _, signed_ts in found[name]} <= {-2 * M}, name
    assert found["signed first"] == found["returned first"]


# -- 2. no alert ------------------------------------------------------------------------------

S = at_hour(15, day=1)  # a daytime signing


@pytest.mark.parametrize(("case", "scans", "disputes"), [
    ("dispute a millisecond before signing", delivered("W1", S), [dispute("d1", "W1", S - 1)]),
    ("dispute a day before signing", delivered("W1", S), [dispute("d1", "W1", S - D)]),
    ("dispute 15 days + 1 ms after signing", delivered("W1", S),
     [dispute("d1", "W1", S + WINDOW + 1)]),
    ("dispute 20 days after signing", delivered("W1", S), [dispute("d1", "W1", S + 20 * D)]),
    ("parcel stalled, never signed",
     [pickup("W1", S - D), scan("W1-a", "W1", S - 20 * H, "ARRIVE", hub_id="HZ01")],
     [dispute("d1", "W1", S + 5 * D)]),
    ("parcel returned, not signed",
     [pickup("W1", S - D), scan("W1-r", "W1", S, "RETURNED", hub_id="HZ01")],
     [dispute("d1", "W1", S + D)]),
    *[(f"{kind} claim", delivered("W1", S), [dispute("d1", "W1", S + D, kind)])
      for kind in ("DAMAGED", "WRONG_ITEM", "MISSING_ITEMS", "OTHER")],
    ("unknown waybill", delivered("W1", S), [dispute("d1", "NOBODY", S + D)]),
])
def test_no_signed_disputed(case, scans, disputes):
    # Another parcel scans long after, so every claim is judged by the watermark too.
    later = [pickup("LATER", S + 40 * D)]
    for pipeline in (run(scans, disputes), run(scans + later, disputes)):
        assert pipeline.claims == [], case
        assert pipeline.of(DisputeCandidate) == []


def test_the_window_bounds_are_inclusive():
    scans = delivered("W1", S) + delivered("W2", S)
    pipeline = run(scans, [dispute("a", "W1", S), dispute("b", "W2", S + WINDOW)])
    assert sorted((c.waybill, c.event_ts) for c in pipeline.claims) == [
        ("W1", S), ("W2", S + WINDOW)]


def test_dispute_window_is_configurable():
    scans = delivered("W1", S) + delivered("W2", S)
    disputes = [dispute("a", "W1", S + 3 * D), dispute("b", "W2", S + 3 * D + 1)]
    pipeline = run(scans, disputes, Thresholds(dispute_window_days=3))
    assert [c.waybill for c in pipeline.claims] == ["W1"]


# -- 3. duplicates ----------------------------------------------------------------------------


def test_a_repeated_dispute_gives_one_alert_and_counts_as_a_duplicate():
    pipeline = Pipeline()
    pipeline.feed(SCANS, delivered("W1", S))
    claim = dispute("d1", "W1", S + D)
    pipeline.feed(DISPUTES, [claim, claim])              # repeated within a batch
    pipeline.feed(DISPUTES, [dispute("d1", "W1", S + D)])  # and in a later one
    assert pipeline.shard.drain_outcomes() == Counter({
        ("scans", "accepted"): 3, ("disputes", "accepted"): 1,
        ("disputes", "duplicate"): 2})
    pipeline.feed(SCANS, [pickup("LATER", S + 2 * D)])
    pipeline.finish()
    pipeline.feed(DISPUTES, [claim], caught_up=True)      # once more after everything
    [alert] = pipeline.claims
    assert (alert.waybill, alert.event_ts, alert.details["dispute_id"]) == ("W1", S + D, "d1")
    assert pipeline.shard.drain_outcomes()["disputes", "duplicate"] == 1
    assert pipeline.shard.drain_outcomes() == Counter()  # drained


def test_distinct_dispute_ids_are_never_taken_for_duplicates():
    # "plumless" and "buckeroo" have the same CRC-32: two different claims all the same.
    scans = delivered("W1", S) + delivered("W2", S)
    pipeline = run(scans, [dispute("plumless", "W1", S + D), dispute("buckeroo", "W2", S + D)])
    outcomes = pipeline.shard.drain_outcomes()
    assert outcomes["disputes", "duplicate"] == 0
    assert outcomes["disputes", "accepted"] == 2
    assert sorted(c.waybill for c in pipeline.claims) == ["W1", "W2"]


def test_a_signed_scan_is_not_dropped_as_a_duplicate_of_another_scan_id():
    # The SIGNED scan's id is new to the parcel; only its CRC-32 equals the pickup's.
    scans = [scan("plumless", "W1", S - D, "PICKUP", merchant_id="M1", dest_lat=DEST[0],
                  dest_lon=DEST[1]),
             scan("buckeroo", "W1", S, "SIGNED", signer="RECIPIENT", proof="PHOTO",
                  hub_id="HZ01", lat=DEST[0], lon=DEST[1])]
    pipeline = run(scans, [dispute("d1", "W1", S + D)])
    assert pipeline.shard.drain_outcomes()["scans", "duplicate"] == 0
    assert len(pipeline.of(Signed)) == 1
    assert [c.waybill for c in pipeline.claims] == ["W1"]


# -- 4. risk factors --------------------------------------------------------------------------


def claim_for(thresholds: Thresholds | None = None, signed_ts: int = S,
              dest: tuple[float, float] | None = DEST, **signing) -> Detection:
    scans = [pickup("W1", signed_ts - D, dest), signed("W1", signed_ts, **signing)]
    return only_claim(run(scans, [dispute("d1", "W1", signed_ts + 2 * D)], thresholds))


@pytest.mark.parametrize(("signer", "factor"), [
    ("RECIPIENT", None), ("PROXY", "SIGNER_PROXY"), ("LOCKER", "SIGNER_LOCKER"),
    ("STATION", "SIGNER_STATION"), ("UNKNOWN", "SIGNER_UNKNOWN"),
])
def test_signer_factor(signer, factor):
    alert = claim_for(signer=signer)
    assert alert.details["signer"] == signer
    assert alert.details["risk_factors"] == ([factor] if factor else [])
    assert alert.details["risk"] == (WEIGHTS[factor] if factor else 0)


@pytest.mark.parametrize("proof", PROOF_VALUES)
def test_proof_factor(proof):
    alert = claim_for(proof=proof)
    assert alert.details["proof"] == proof
    assert ("PROOF_NONE" in alert.details["risk_factors"]) == (proof == "NONE")


@pytest.mark.parametrize(("km", "far"), [(0.1, False), (1.9, False), (2.1, True), (5, True)])
def test_far_from_consignee(km, far):
    at = north_of(DEST, km)
    assert distance_km(at, DEST) == pytest.approx(km, rel=1e-3)
    alert = claim_for(at=at)
    assert ("FAR_FROM_CONSIGNEE" in alert.details["risk_factors"]) == far
    assert alert.details["distance_km"] == pytest.approx(km, abs=0.02)


def test_no_position_means_no_distance_factor():
    assert "FAR_FROM_CONSIGNEE" not in claim_for(at=()).details["risk_factors"]
    assert "FAR_FROM_CONSIGNEE" not in claim_for(
        dest=None, at=north_of(DEST, 5)).details["risk_factors"]


def test_consignee_geocode_sent_on_a_later_scan_counts():
    scans = [pickup("W1", S - D, dest=None),
             scan("W1-ofd", "W1", S - H, "OUT_FOR_DELIVERY", dest_lat=DEST[0],
                  dest_lon=DEST[1]),
             signed("W1", S, at=north_of(DEST, 5))]
    alert = only_claim(run(scans, [dispute("d1", "W1", S + D)]))
    assert alert.details["risk_factors"] == ["FAR_FROM_CONSIGNEE"]


@pytest.mark.parametrize(("hour", "night"), [
    (3, True), (6.99, True), (7, False), (15, False), (21.99, False), (22, True), (23.5, True),
])
def test_night_signing_in_the_configured_zone(hour, night):
    alert = claim_for(signed_ts=at_hour(hour, day=1))
    assert ("NIGHT_SIGNING" in alert.details["risk_factors"]) == night


def test_risk_grows_with_factors_and_critical_severity_from_the_threshold():
    far = north_of(DEST, 5)
    ladder = [
        claim_for(),
        claim_for(signer="LOCKER"),
        claim_for(signer="LOCKER", proof="NONE"),
        claim_for(signer="PROXY", proof="NONE", at=far),
        claim_for(signer="UNKNOWN", proof="NONE", at=far, signed_ts=at_hour(3, day=1)),
    ]
    risks = [alert.details["risk"] for alert in ladder]
    assert risks[0] == 0
    assert all(0 <= risk <= 1 for risk in risks)
    assert risks == sorted(risks) and len(set(risks)) == len(risks)
    for alert in ladder:
        factors = alert.details["risk_factors"]
        assert alert.details["risk"] == pytest.approx(noisy_or(factors), abs=1e-4)
        critical = alert.details["risk"] >= Thresholds().critical_risk
        assert alert.severity == ("CRITICAL" if critical else "WARNING")
    assert [a.severity for a in ladder] == ["WARNING"] * 3 + ["CRITICAL"] * 2
    # The threshold is a setting.
    assert claim_for(Thresholds(critical_risk=0.15), signer="LOCKER").severity == "CRITICAL"
    assert claim_for(Thresholds(critical_risk=0.16), signer="LOCKER").severity == "WARNING"


def test_alert_fields():
    alert = claim_for(signer="PROXY")
    assert (alert.type, alert.status, alert.subject, alert.waybill) == (
        "SIGNED_DISPUTED", "FIRING", "W1", "W1")
    assert (alert.event_ts, alert.carrier, alert.merchant_id, alert.order_id) == (
        S + 2 * D, "SF", "M-W1", "O-W1")
    details = alert.details
    assert (details["signed_ts"], details["signer"], details["proof"], details["hub_id"],
            details["dispute_ts"]) == (S, "PROXY", "PHOTO", "HZ01", S + 2 * D)


def test_hub_dispute_rate_high():
    scans: list[Scan] = []
    disputes: list[Dispute] = []
    for hub in ("BAD", "GOOD1", "GOOD2"):
        for i in range(60):
            waybill = f"{hub}-{i}"
            signed_ts = at_hour(10 + i % 8, day=1 + i % 5)
            scans += [pickup(waybill, signed_ts - D),
                      signed(waybill, signed_ts, hub_id=hub)]
            if hub == "BAD" and i < 30:
                disputes.append(dispute(f"old-{waybill}", waybill, at_hour(12, day=7)))
    disputes += [dispute("new-bad", "BAD-40", at_hour(12, day=8)),
                 dispute("new-good", "GOOD1-40", at_hour(12, day=8))]
    scans.append(pickup("LATER", at_hour(12, day=9)))
    pipeline = run(scans, disputes)
    claims = {c.details["dispute_id"]: c for c in pipeline.claims}
    assert len(claims) == 32
    bad, good = claims["new-bad"], claims["new-good"]
    assert bad.details["hub_id"] == "BAD" and good.details["hub_id"] == "GOOD1"
    assert "HUB_DISPUTE_RATE_HIGH" in bad.details["risk_factors"]
    assert "HUB_DISPUTE_RATE_HIGH" not in good.details["risk_factors"]
    assert bad.details["risk"] > good.details["risk"]
    assert bad.details["risk"] == pytest.approx(noisy_or(bad.details["risk_factors"]),
                                                abs=1e-4)
    # The first claims at the bad hub came before its rate was known to be high.
    assert "HUB_DISPUTE_RATE_HIGH" not in claims["old-BAD-0"].details["risk_factors"]


# -- 5. the buyer's note ----------------------------------------------------------------------

NOTES = [
    "没收到货，电话13812341234，地址杭州市西湖区文三路100号，请核实",
    "13812341234 杭州市西湖区文三路100号",
    "please call 13812341234, I live at 杭州市西湖区文三路100号",
]


@pytest.mark.parametrize("text", NOTES)
def test_buyer_note_is_masked(text):
    scans = delivered("W1", S)
    pipeline = run(scans, [dispute("d1", "W1", S + D, note=text)])
    alert = only_claim(pipeline)
    note_out = alert.details["buyer_note"]
    assert "138****1234" in note_out
    everything = msgspec.json.encode(pipeline.detections).decode() + repr(pipeline.shard_items)
    for secret in ("13812341234", "杭州市", "西湖区", "文三路", "100号"):
        assert secret not in everything


def test_no_note_gives_no_buyer_note():
    alert = only_claim(run(delivered("W1", S), [dispute("d1", "W1", S + D)]))
    assert alert.details["buyer_note"] is None


# -- 6. damage --------------------------------------------------------------------------------


def damage_events(pipeline: Pipeline) -> list[RouteEvent]:
    return [e for e in pipeline.of(RouteEvent) if e.kind == "damage"]


@pytest.mark.parametrize(("offset", "counted"), [
    (0, True), (D, True), (WINDOW, True), (WINDOW + 1, False), (-1, False), (-D, False),
])
def test_damaged_dispute_within_the_window_is_a_damage_signal(offset, counted):
    pipeline = run(delivered("W1", S), [dispute("d1", "W1", S + offset, "DAMAGED")])
    [delivery] = pipeline.of(Signed)
    assert delivery.damaged is False
    expected = [RouteEvent("damage", "SF", "上海", "杭州", "M-W1", S, S + offset)]
    assert damage_events(pipeline) == (expected if counted else [])
    assert pipeline.claims == []


def test_damage_is_counted_once_per_delivery():
    disputes = [dispute("d1", "W1", S + D, "DAMAGED"), dispute("d2", "W1", S + 2 * D, "DAMAGED")]
    pipeline = run(delivered("W1", S), disputes)
    assert len(damage_events(pipeline)) == 1


def test_a_damaged_exception_before_signing_marks_the_delivery_damaged():
    scans = [pickup("W1", S - D),
             scan("W1-x", "W1", S - 5 * H, "EXCEPTION", exception_code="DAMAGED", hub_id="HZ01"),
             signed("W1", S)]
    pipeline = run(scans, [dispute("d1", "W1", S + D, "DAMAGED")])
    [delivery] = pipeline.of(Signed)
    assert delivery == Signed(carrier="SF", origin="上海", destination="杭州",
                              merchant_id="M-W1", hub_id="HZ01", signed_ts=S, damaged=True)
    assert damage_events(pipeline) == []  # already counted with the delivery


def test_another_exception_does_not_mark_damage():
    scans = [pickup("W1", S - D),
             scan("W1-x", "W1", S - 5 * H, "EXCEPTION", exception_code="WEATHER"),
             signed("W1", S)]
    pipeline = run(scans, [])
    assert [s.damaged for s in pipeline.of(Signed)] == [False]
    assert damage_events(pipeline) == []


def test_damaged_deliveries_reach_the_route_scores():
    scans = delivered("W1", S) + delivered("W2", S) + delivered("W3", S)
    scans.append(pickup("LATER", S + 3 * D))
    pipeline = run(scans, [dispute("d1", "W1", S + D, "DAMAGED")])
    scores = [r for r in pipeline.aggregate_out if type(r) is not Detection
              and r.route_id == "SF:上海>杭州"]
    assert scores
    last = max(scores, key=lambda r: r.window_end_ts)
    assert (last.deliveries, last.damaged) == (3, 1)


# -- 7. a claim judged at the step that frees its parcel --------------------------------------


@pytest.mark.parametrize("claim_at", [D, 5 * D, WINDOW])
@pytest.mark.parametrize("dispute_with_the_jump", [False, True])
def test_claim_fires_when_the_watermark_jumps_past_the_window(claim_at, dispute_with_the_jump):
    pipeline = Pipeline()
    claim = dispute("d1", "W1", S + claim_at)
    jump = [pickup("LATER", S + 40 * D)]
    pipeline.feed(SCANS, delivered("W1", S))
    if dispute_with_the_jump:
        # The claim is read in the very batch that moves time 40 days on.
        pipeline.feed(DISPUTES, [])
        pipeline.feed(SCANS, jump, caught_up=True)
        assert pipeline.shard.watermark.value is None
        pipeline.feed(DISPUTES, [claim], caught_up=True)
    else:
        pipeline.feed(DISPUTES, [claim], caught_up=True)
        assert pipeline.shard.watermark.value == S - LATE
        assert pipeline.claims == []
        pipeline.feed(SCANS, jump, caught_up=True)
    assert pipeline.shard.watermark.value == S + 40 * D - LATE
    assert pipeline.shard.tracker.parcels.find("W1") < 0  # freed in that step
    [alert] = pipeline.claims
    assert (alert.waybill, alert.event_ts, alert.details["signed_ts"]) == ("W1", S + claim_at, S)


def test_claim_fires_when_the_watermark_jumps_without_a_final_flush():
    # The jump comes from the scans while the disputes partition is still open.
    pipeline = Pipeline()
    pipeline.feed(SCANS, delivered("W1", S))
    pipeline.feed(DISPUTES, [dispute("d1", "W1", S + 5 * D)])
    pipeline.feed(DISPUTES, [dispute("d2", "W9", S + 50 * D)])
    pipeline.feed(SCANS, [pickup("LATER", S + 40 * D)])
    assert pipeline.shard.watermark.value == S + 40 * D - LATE
    assert not pipeline.shard.watermark.all_caught_up
    assert [(a.waybill, a.event_ts) for a in pipeline.claims] == [("W1", S + 5 * D)]


def test_in_a_live_job_a_claim_read_before_its_signed_scan_still_matches():
    """Every input caught up after each batch (a live job): the claim waits for its scan."""
    pipeline = Pipeline()
    pipeline.feed(SCANS, [pickup("W1", T0)], caught_up=True)
    pipeline.feed(DISPUTES, [dispute("d1", "W1", T0 + 2 * H + M)], caught_up=True)
    pipeline.feed(SCANS, delivered("W1", T0 + 2 * H)[1:], caught_up=True)
    pipeline.feed(SCANS, [scan("other", "W2", T0 + 3 * H, "PICKUP")], caught_up=True)
    assert [c.waybill for c in pipeline.claims] == ["W1"]


def test_recovery_snapshots_hold_buyer_notes_masked():
    import pickle

    pipeline = Pipeline()
    pipeline.feed(DISPUTES, [dispute("d1", "W1", T0 + DAY_MS,
                                     note="请联系 13812341234，杭州市西湖区文三路100号")])
    snapshot = pickle.dumps(pipeline.shard)
    assert b"13812341234" not in snapshot
    assert "文三路".encode() not in snapshot


def test_the_global_step_refuses_a_message_it_does_not_know():
    aggregate = Aggregate(Thresholds(), shards=1)
    with pytest.raises(TypeError, match="unknown message: Dispute"):
        aggregate.apply([Dispute(event_id="d", waybill="W", ts=T0, kind="NOT_RECEIVED")])


def test_a_claim_judged_before_its_signed_scan_was_read_meets_it_when_it_comes_late():
    # The carrier's feed was dark: the claim is judged (the watermark passed it) while the
    # parcel's SIGNED scan is still to come in the backfill, days later in read order.
    pipeline = Pipeline()
    scans = delivered("W1", at_hour(14))
    pipeline.feed(SCANS, scans[:2])
    pipeline.feed(DISPUTES, [dispute("d1", "W1", at_hour(14, day=1))], caught_up=True)
    pipeline.feed(SCANS, [pickup("W2", at_hour(14, day=3))])  # time moves on, past the claim
    assert pipeline.claims == []
    assert set(pipeline.shard.tracker.detector(DisputeMatcher).unmatched) == {"W1"}
    pipeline.feed(SCANS, [scans[2]])  # the late SIGNED scan
    pipeline.finish()
    claim = only_claim(pipeline)
    assert claim.subject == "W1" and claim.event_ts == at_hour(14, day=1)


def test_a_claim_without_a_signed_parcel_is_forgotten_after_the_window_and_the_memory():
    # Kept for the dispute window plus forget_after_days from when it was judged.
    pipeline = Pipeline()
    pipeline.feed(SCANS, [pickup("W1", T0)])
    pipeline.feed(DISPUTES, [dispute("d1", "W1", T0 + H)], caught_up=True)
    pipeline.feed(SCANS, [pickup("W2", T0 + 2 * D)])
    judged_at = pipeline.shard.watermark.value
    assert set(pipeline.shard.tracker.detector(DisputeMatcher).unmatched) == {"W1"}
    pipeline.feed(SCANS, [pickup("W3", judged_at + WINDOW + FORGET - H)])
    assert set(pipeline.shard.tracker.detector(DisputeMatcher).unmatched) == {"W1"}
    pipeline.feed(SCANS, [pickup("W4", judged_at + WINDOW + FORGET + D)])
    assert pipeline.shard.tracker.detector(DisputeMatcher).unmatched == {}


def test_a_claim_read_weeks_before_its_parcel_meets_it_when_the_parcel_is_backfilled():
    # The claims partition is read at once (a replay, a job from the beginning); the parcel's
    # whole history is loaded again weeks later, far behind the watermark.
    pipeline = Pipeline()
    pipeline.feed(DISPUTES, [dispute("d1", "W1", at_hour(14, day=2))], caught_up=True)
    for day in range(0, 25, 2):
        pipeline.feed(SCANS, [pickup(f"L{day}", at_hour(9, day=day))])
    assert pipeline.claims == []
    pipeline.feed(SCANS, delivered("W1", at_hour(9)))
    pipeline.finish()
    claim = only_claim(pipeline)
    assert claim.subject == "W1" and claim.event_ts == at_hour(14, day=2)
