"""NO_MOVEMENT (contract section 3) through its detector, the tracker and the shard."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hypothesis import given, note, settings
from hypothesis import strategies as st

from models.detection import Detection
from models.events import TERMINAL_SCAN_TYPES, Scan
from models.settings import DAY_MS, HOUR_MS, MINUTE_MS, Thresholds
from models.shard import Shard, ShardInput
from models.tracking import DUPLICATE, UNTRACKED, ParcelTracker

from conftest import Detections

H, M = HOUR_MS, MINUTE_MS
LIMIT = 72 * H  # no_movement_hours
LATE = 10 * M  # allowed_lateness_minutes
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
P0, P1 = "scans/0", "scans/1"


def scan(event_id: str, waybill: str, ts: int, scan_type: str = "ARRIVE", **fields) -> Scan:
    return Scan(event_id=event_id, waybill=waybill, carrier=fields.pop("carrier", "SF"),
                scan_type=scan_type, ts=ts, **fields)


def pickup(waybill: str, ts: int, **fields) -> Scan:
    fields.setdefault("merchant_id", "M-" + waybill)
    fields.setdefault("order_id", "O-" + waybill)
    return scan(f"{waybill}-pickup", waybill, ts, "PICKUP", **fields)


def feed(shard: Shard, events: list[Scan], max_ts: int | None, caught_up: bool = False,
         partition: str = P0) -> list[Detection]:
    return only_detections(shard.apply(ShardInput(partition, events, max_ts, caught_up)))


def only_detections(found: list) -> list[Detection]:
    """A shard also returns what the aggregate step needs; these tests look at alerts."""
    return [item for item in found if type(item) is Detection]


def summary(detections: list[Detection]) -> list[tuple[str, str, int]]:
    return [(d.waybill, d.status, d.event_ts) for d in detections]


def run(detector: ParcelTracker, scans: list[Scan], watermark: int) -> list[Detection]:
    out = Detections()
    for s in scans:
        detector.on_scan(s, out)
    detector.on_watermark(watermark, out)
    return out


# -- firing and resolving -----------------------------------------------------------------


def test_fires_at_last_scan_plus_72h_once_the_watermark_reaches_it():
    shard = Shard(Thresholds(), [P0])
    scans = [pickup("W1", T0), scan("W1-d", "W1", T0 + 5 * H, "DEPART"),
             scan("W1-a", "W1", T0 + 20 * H, "ARRIVE")]
    assert feed(shard, scans, T0 + 20 * H) == []
    deadline = T0 + 20 * H + LIMIT
    # The watermark (max ts - lateness) one millisecond short of the deadline: nothing.
    assert feed(shard, [], deadline + LATE - 1) == []
    assert shard.watermark.value == deadline - 1
    out = feed(shard, [], deadline + LATE)
    assert summary(out) == [("W1", "FIRING", deadline)]
    assert out[0].type == "NO_MOVEMENT"
    assert shard.tracker.stalled == 1
    # One FIRING per stall: later watermarks do not repeat it.
    assert feed(shard, [], deadline + 50 * H) == []


def test_detector_fires_exactly_at_the_deadline_not_a_millisecond_before():
    det = ParcelTracker(Thresholds())
    out = Detections()
    det.on_scan(pickup("W1", T0), out)
    det.on_watermark(T0 + LIMIT - 1, out)
    assert out == []
    det.on_watermark(T0 + LIMIT, out)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT)]


def test_configured_threshold_is_used():
    det = ParcelTracker(Thresholds(no_movement_hours=48))
    out = run(det, [pickup("W1", T0)], T0 + 48 * H)
    assert summary(out) == [("W1", "FIRING", T0 + 48 * H)]


def test_resolved_has_the_same_alert_id_and_the_new_scans_ts():
    shard = Shard(Thresholds(), [P0])
    feed(shard, [pickup("W1", T0)], T0)
    [firing] = feed(shard, [], T0 + LIMIT + LATE)
    assert firing.status == "FIRING"
    moved = scan("W1-a", "W1", T0 + 90 * H, "ARRIVE", hub_id="HZ01", city="杭州")
    # (Whether RESOLVED goes out at once or once the watermark passes the scan is not fixed.)
    [resolved] = feed(shard, [moved], T0 + 90 * H) + feed(shard, [], T0 + 90 * H + LATE)
    assert resolved.status == "RESOLVED"
    assert resolved.event_ts == T0 + 90 * H
    assert resolved.alert_id == firing.alert_id
    assert shard.tracker.stalled == 0
    # A second stall is a different alert.
    [again] = feed(shard, [], T0 + 90 * H + LIMIT + LATE)
    assert (again.status, again.event_ts) == ("FIRING", T0 + 90 * H + LIMIT)
    assert again.alert_id != firing.alert_id


def test_a_silence_already_over_when_read_gives_firing_and_resolved():
    # The next scan arrives before the watermark reached the deadline: both records follow
    # once the watermark passes it, with the same alert id.
    det = ParcelTracker(Thresholds())
    out = Detections()
    det.on_scan(pickup("W1", T0), out)
    det.on_scan(scan("W1-a", "W1", T0 + 100 * H), out)
    det.on_watermark(T0 + LIMIT - 1, out)
    assert out == []
    det.on_watermark(T0 + LIMIT, out)
    assert summary(out[:1]) == [("W1", "FIRING", T0 + LIMIT)]
    det.on_watermark(T0 + 150 * H, out)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT), ("W1", "RESOLVED", T0 + 100 * H)]
    assert out[0].alert_id == out[1].alert_id
    assert out[1].details["dwell_hours"] == 100


def test_alert_id_is_deterministic_across_runs():
    def once():
        det = ParcelTracker(Thresholds())
        return [d.alert_id for d in run(det, [pickup("W1", T0), pickup("W2", T0 + H)],
                                         T0 + 100 * H)]

    first = once()
    assert len(first) == 2 and len(set(first)) == 2
    assert once() == first


def test_a_scan_exactly_at_the_deadline_does_not_fire():
    det = ParcelTracker(Thresholds())
    out = run(det, [pickup("W1", T0), scan("W1-a", "W1", T0 + LIMIT)], T0 + LIMIT + H)
    assert out == []


# -- duplicates -----------------------------------------------------------------------------


def test_duplicate_event_id_is_reported_and_changes_nothing():
    det = ParcelTracker(Thresholds())
    out = Detections()
    first = pickup("W1", T0)
    assert det.on_scan(first, out) >= 0
    assert det.on_scan(first, out) == DUPLICATE
    # The same event id with other content is still the same event.
    assert det.on_scan(scan("W1-pickup", "W1", T0 + 50 * H), out) == DUPLICATE
    det.on_watermark(T0 + LIMIT, out)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT)]
    moved = scan("W1-a", "W1", T0 + 80 * H)
    assert det.on_scan(moved, out) >= 0
    assert det.on_scan(moved, out) == DUPLICATE
    det.on_watermark(T0 + 81 * H, out)
    assert summary(out[1:]) == [("W1", "RESOLVED", T0 + 80 * H)]
    assert det.tracked == 1


def test_duplicates_do_not_change_the_detections():
    scans = [pickup("W1", T0), scan("W1-d", "W1", T0 + H, "DEPART"),
             scan("W1-a", "W1", T0 + 80 * H), pickup("W2", T0 + 2 * H),
             scan("W2-s", "W2", T0 + 90 * H, "SIGNED", signer="LOCKER", proof="PICKUP_CODE")]
    doubled = [s for s in scans for _ in range(2)]
    plain = run(ParcelTracker(Thresholds()), scans, T0 + 400 * H)
    det = ParcelTracker(Thresholds())
    twice = run(det, doubled, T0 + 400 * H)
    assert summary(twice) == summary(plain)
    assert len(plain) == 5  # W1 stalls twice, W2 once before it was signed


def test_shard_counts_duplicates():
    shard = Shard(Thresholds(), [P0])
    first = pickup("W1", T0)
    feed(shard, [first, scan("W1-d", "W1", T0 + H, "DEPART"), first], T0 + H)
    assert shard.drain_outcomes() == Counter({("scans", "accepted"): 2,
                                              ("scans", "duplicate"): 1})


def test_a_repeat_of_an_older_event_changes_nothing():
    # Fingerprints of the last 4 events are kept per parcel. An older repeat may be counted
    # as accepted, but it is older than the parcel's latest scan, so it cannot move it.
    det = ParcelTracker(Thresholds())
    out = Detections()
    first = pickup("W1", T0)
    det.on_scan(first, out)
    for k in range(1, 6):
        assert det.on_scan(scan(f"W1-{k}", "W1", T0 + k * H, "DEPART"), out) >= 0
    det.on_scan(first, out)
    det.on_watermark(T0 + 5 * H + 72 * H, out)
    assert summary(out) == [("W1", "FIRING", T0 + 5 * H + 72 * H)]


def test_a_repeat_after_the_parcel_was_forgotten_does_not_revive_it():
    det = ParcelTracker(Thresholds(dispute_window_days=1))
    out = Detections()
    first = pickup("W1", T0)
    det.on_scan(first, out)
    det.on_scan(scan("W1-s", "W1", T0 + 10 * H, "SIGNED"), out)
    det.on_watermark(T0 + 40 * H, out)  # past the 24 h retention: the row is freed
    assert det.tracked == 0
    assert det.on_scan(first, out) == UNTRACKED  # accepted, not tracked again
    assert det.tracked == 0
    for day in range(2, 14):
        det.on_watermark(T0 + day * DAY_MS, out)
    assert out == []


def test_a_stale_stall_that_is_forgotten_never_fires_again():
    thresholds = Thresholds(stale_after_days=5)
    det = ParcelTracker(thresholds)
    out = Detections()
    det.on_scan(pickup("W1", T0), out)
    det.on_watermark(T0 + 6 * DAY_MS, out)  # fired at 72 h, freed after 5 days
    assert det.tracked == 0
    det.on_scan(scan("W1-x", "W1", T0 + 2 * H, "DEPART"), out)  # very late
    det.on_watermark(T0 + 12 * DAY_MS, out)
    assert [d.status for d in out] == ["FIRING"]


# -- terminal scans -------------------------------------------------------------------------


def test_signed_and_returned_parcels_never_fire():
    for terminal in sorted(TERMINAL_SCAN_TYPES):
        det = ParcelTracker(Thresholds())
        scans = [pickup("W1", T0), scan("W1-t", "W1", T0 + 10 * H, terminal),
                 scan("W2-t", "W2", T0 + 20 * H, terminal)]  # first seen already terminal
        out = Detections()
        for s in scans:
            det.on_scan(s, out)
        for step in range(1, 60):
            det.on_watermark(T0 + step * 10 * H, out)
        assert out == [], terminal


def test_stalled_then_signed_resolves_and_never_fires_again():
    det = ParcelTracker(Thresholds())
    out = run(det, [pickup("W1", T0)], T0 + LIMIT)
    signed = scan("W1-s", "W1", T0 + 100 * H, "SIGNED", signer="RECIPIENT", proof="SIGNATURE")
    det.on_scan(signed, out)
    det.on_watermark(T0 + 1000 * H, out)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT), ("W1", "RESOLVED", T0 + 100 * H)]


# -- late scans -------------------------------------------------------------------------------


def test_late_scan_inside_a_pending_silence_prevents_the_alert():
    shard = Shard(Thresholds(), [P0])
    feed(shard, [pickup("W1", T0)], T0)
    ahead = T0 + LIMIT + 3 * M  # more than 72 h after the pickup: a silence, pending
    feed(shard, [scan("W1-a", "W1", ahead)], ahead)
    late = scan("W1-d", "W1", T0 + LIMIT - M, "DEPART")  # older than the latest, not late
    assert late.ts > shard.watermark.value
    assert feed(shard, [late], ahead) == []
    assert feed(shard, [], T0 + 140 * H) == []


def test_late_scan_inside_a_pending_silence_shortens_it():
    shard = Shard(Thresholds(), [P0])
    feed(shard, [pickup("W1", T0)], T0)
    ahead = T0 + LIMIT + 5 * M
    assert feed(shard, [scan("W1-a", "W1", ahead)], ahead) == []  # watermark < deadline
    late = scan("W1-d", "W1", T0 + LIMIT + M, "DEPART")
    assert late.ts > shard.watermark.value
    feed(shard, [late], ahead)
    out = feed(shard, [], T0 + 100 * H)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT), ("W1", "RESOLVED", late.ts)]
    assert out[0].alert_id == out[1].alert_id
    assert out[0].details["last_scan_type"] == "PICKUP"
    assert out[1].details["dwell_hours"] == round((late.ts - T0) / H, 2)


def test_late_scan_moves_the_start_of_a_pending_silence():
    # scans/1 lags, so the watermark stays low and a much older scan of a parcel in scans/0
    # is not late: the silence is the one after it.
    shard = Shard(Thresholds(), [P0, P1])
    feed(shard, [], T0, partition=P1)
    feed(shard, [pickup("W1", T0), scan("W1-a", "W1", T0 + 100 * H)], T0 + 100 * H)
    feed(shard, [scan("W1-d", "W1", T0 + 10 * H, "DEPART", hub_id="H9")], T0 + 100 * H)
    out = feed(shard, [], T0 + 150 * H, partition=P1)
    out += feed(shard, [], T0 + 100 * H, caught_up=True)  # scans/0 read to its end
    assert summary(out) == [("W1", "FIRING", T0 + 10 * H + LIMIT),
                            ("W1", "RESOLVED", T0 + 100 * H)]
    assert out[0].details["last_scan_ts"] == T0 + 10 * H
    assert out[0].details["last_scan_type"] == "DEPART"
    assert out[0].details["last_hub_id"] == "H9"


def test_late_scan_after_the_terminal_scan_still_splits_the_silence():
    # PICKUP at 0, a DEPART at 71h58m and SIGNED at 72h02m: no gap reaches 72 h. The DEPART
    # is read after the SIGNED (4 minutes out of order, within the 10 minute lateness).
    shard = Shard(Thresholds(), [P0])
    feed(shard, [pickup("W1", T0)], T0)
    signed = scan("W1-s", "W1", T0 + LIMIT + 2 * M, "SIGNED", signer="PROXY", proof="PHOTO")
    feed(shard, [signed], signed.ts)
    late = scan("W1-d", "W1", T0 + LIMIT - 2 * M, "DEPART")
    assert late.ts > shard.watermark.value
    out = feed(shard, [late], signed.ts)
    out += feed(shard, [], T0 + 200 * H, caught_up=True)
    assert summary(out) == []


def test_resolved_event_ts_is_the_first_scan_after_the_stall():
    # A parcel's next two scans after a stall are read 2 minutes out of order, both newer
    # than the watermark (so neither is late). The stall ended at the earlier one, and the
    # result must not depend on where the input batches were cut. Two variants: the FIRING
    # already went out before the scans are read (a), or the watermark passes the deadline in
    # the same batch as the first of them (b).
    def scenario(variant: str, cut: bool) -> list[tuple[str, str, int]]:
        shard = Shard(Thresholds(), [P0])
        out = feed(shard, [pickup("W1", T0)], T0)
        first_read = scan("W1-b", "W1", T0 + LIMIT + 60 * M)
        second_read = scan("W1-c", "W1", T0 + LIMIT + 58 * M)
        if variant == "a":
            other = scan("W2-a", "W2", T0 + LIMIT + 11 * M)
            out += feed(shard, [other], other.ts)
        if cut:
            out += feed(shard, [first_read], first_read.ts)
            out += feed(shard, [second_read], first_read.ts)
        else:
            out += feed(shard, [first_read, second_read], first_read.ts)
        out += feed(shard, [], T0 + 100 * H, caught_up=True)
        return [row for row in summary(out) if row[0] == "W1"]

    expected = [("W1", "FIRING", T0 + LIMIT), ("W1", "RESOLVED", T0 + LIMIT + 58 * M)]
    results = {(v, c): scenario(v, c) for v in "ab" for c in (False, True)}
    assert results == dict.fromkeys(results, expected)


# -- partitions ---------------------------------------------------------------------------


def test_a_partition_read_ahead_never_makes_a_slower_ones_parcel_stalled():
    shard = Shard(Thresholds(), [P0, P1])
    assert feed(shard, [pickup("W1", T0)], T0, partition=P1) == []
    # scans/0 is read 200 hours ahead; scans/1 is still behind at T0 + 1 h.
    assert feed(shard, [pickup("W2", T0 + 200 * H)], T0 + 200 * H, partition=P0) == []
    assert feed(shard, [], T0 + H, partition=P1) == []
    # scans/1 catches up at T0 + 1 h: nothing more to read there, time moves on.
    out = feed(shard, [], T0 + H, caught_up=True, partition=P1)
    assert summary(out) == [("W1", "FIRING", T0 + LIMIT)]


# -- state is freed ---------------------------------------------------------------------------


def test_finished_parcel_is_freed_after_the_dispute_window():
    # Kept max(finished_retention_hours, dispute_window_days): a claim may come that late.
    det = ParcelTracker(Thresholds())
    signed_at = T0 + 10 * H
    run(det, [pickup("W1", T0), scan("W1-s", "W1", signed_at, "SIGNED")], T0 + 11 * H)
    assert det.tracked == 1
    det.on_watermark(signed_at + 15 * DAY_MS - 1, [])
    assert det.tracked == 1
    det.on_watermark(signed_at + 15 * DAY_MS, [])
    assert det.tracked == 0


def test_finished_retention_is_configurable():
    det = ParcelTracker(Thresholds(finished_retention_hours=2, dispute_window_days=0.05))
    run(det, [scan("W1-s", "W1", T0, "RETURNED")], T0 + 2 * H)
    assert det.tracked == 0


def test_stalled_parcel_is_freed_after_stale_after_days():
    det = ParcelTracker(Thresholds())
    out = run(det, [pickup("W1", T0)], T0 + LIMIT)
    assert len(out) == 1
    assert (det.tracked, det.stalled) == (1, 1)
    det.on_watermark(T0 + 30 * DAY_MS - 1, out)
    assert (det.tracked, det.stalled) == (1, 1)
    det.on_watermark(T0 + 30 * DAY_MS, out)
    assert (det.tracked, det.stalled) == (0, 0)
    assert len(out) == 1


def test_resolved_then_signed_parcel_is_freed():
    shard = Shard(Thresholds(), [P0])
    feed(shard, [pickup("W1", T0)], T0)
    feed(shard, [], T0 + LIMIT + LATE)
    feed(shard, [scan("W1-s", "W1", T0 + 80 * H, "SIGNED")], T0 + 80 * H)
    feed(shard, [], T0 + 80 * H + 15 * DAY_MS + LATE, caught_up=True)
    assert shard.tracker.tracked == 0


# -- record contents --------------------------------------------------------------------------


def test_details_and_merchant_fields():
    det = ParcelTracker(Thresholds())
    scans = [
        pickup("W1", T0, carrier="ZTO", merchant_id="M42", order_id="O-9001",
               origin="深圳", destination="成都", hub_id="SZ01", city="深圳"),
        scan("W1-d", "W1", T0 + 3 * H, "DEPART", carrier="ZTO", hub_id="SZ01", city="深圳"),
        scan("W1-a", "W1", T0 + 20 * H, "ARRIVE", carrier="ZTO", hub_id="WH07", city="武汉"),
    ]
    [firing] = run(det, scans, T0 + 20 * H + LIMIT)
    assert firing.type == "NO_MOVEMENT"
    assert (firing.status, firing.event_ts) == ("FIRING", T0 + 20 * H + LIMIT)
    assert firing.severity in {"INFO", "WARNING", "CRITICAL"}
    assert (firing.waybill, firing.carrier) == ("W1", "ZTO")
    assert (firing.merchant_id, firing.order_id) == ("M42", "O-9001")
    details = firing.details
    assert details["last_scan_type"] == "ARRIVE"
    assert details["last_scan_ts"] == T0 + 20 * H
    assert details["last_hub_id"] == "WH07"
    assert details["last_city"] == "武汉"
    assert details["dwell_hours"] == 72
    out = Detections()
    det.on_scan(scan("W1-o", "W1", T0 + 100 * H, "OUT_FOR_DELIVERY", carrier="ZTO"), out)
    det.on_watermark(T0 + 101 * H, out)
    [resolved] = out
    assert resolved.status == "RESOLVED"
    assert (resolved.merchant_id, resolved.order_id) == ("M42", "O-9001")
    assert resolved.details["last_scan_type"] == "ARRIVE"
    assert resolved.details["last_scan_ts"] == T0 + 20 * H
    assert resolved.details["last_hub_id"] == "WH07"
    assert resolved.details["dwell_hours"] == 80


def test_merchant_remembered_when_pickup_is_not_the_first_scan_read():
    det = ParcelTracker(Thresholds())
    scans = [scan("W1-d", "W1", T0 + H, "DEPART"), pickup("W1", T0, merchant_id="M7",
                                                           order_id="O7")]
    [firing] = run(det, scans, T0 + H + LIMIT)
    assert (firing.merchant_id, firing.order_id) == ("M7", "O7")
    assert firing.details["last_scan_type"] == "DEPART"


# -- properties ---------------------------------------------------------------------------------

MOVES = ("DEPART", "ARRIVE", "OUT_FOR_DELIVERY", "DELIVERY_FAILED", "EXCEPTION")
# Gaps between consecutive scans: some close (reordered by the delivery delay), some below
# and some above 72 h, never within a minute of exactly 72 h.
GAPS = st.one_of(
    st.integers(1_000, 10 * M),
    st.integers(10 * M, LIMIT - M - 1),
    st.integers(LIMIT + M + 1, 200 * H),
)


@st.composite
def parcel_scans(draw):
    """{waybill: scans in ts order}, 2 to 5 parcels, some ending in SIGNED."""
    n = draw(st.integers(2, 5))
    parcels = {}
    for i in range(n):
        waybill = f"SF{i:04d}"
        times = [T0 + draw(st.integers(0, 100 * H))]
        for gap in draw(st.lists(GAPS, max_size=5)):
            times.append(times[-1] + gap)
        signed = draw(st.booleans())
        scans = []
        for k, ts in enumerate(times):
            if signed and k == len(times) - 1:
                kind = "SIGNED"
            elif k == 0:
                kind = "PICKUP"
            else:
                kind = draw(st.sampled_from(MOVES))
            extra = {"merchant_id": "M1", "order_id": f"O{i}"} if kind == "PICKUP" else {}
            scans.append(scan(f"{waybill}-{k}", waybill, ts, kind, hub_id=f"H{k}", **extra))
        parcels[waybill] = scans
    return parcels


@st.composite
def delivered(draw, scans):
    """The scans in read order: by ts plus a delay of at most 5 minutes, some twice."""
    if not scans:
        return []
    delays = draw(st.lists(st.integers(0, 5 * M), min_size=len(scans), max_size=len(scans)))
    items = [(s.ts + d, i, s) for i, (s, d) in enumerate(zip(scans, delays, strict=True))]
    repeats = draw(st.lists(st.tuples(st.integers(0, len(scans) - 1), st.integers(0, 5 * M)),
                            max_size=3))
    items += [(scans[i].ts + d, len(scans) + j, scans[i]) for j, (i, d) in enumerate(repeats)]
    items.sort(key=lambda item: (item[0], item[1]))
    return [s for _, _, s in items]


def cut(draw, stream):
    points = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


def expected(parcels: dict[str, list[Scan]], final_watermark: int) -> Counter:
    """Reference, straight from the contract: silences between consecutive scans."""
    rows: Counter = Counter()
    for waybill, scans in parcels.items():
        for a, b in pairwise(scans):
            if a.scan_type in TERMINAL_SCAN_TYPES:
                break
            if b.ts > a.ts + LIMIT and a.ts + LIMIT <= final_watermark:
                rows[waybill, "FIRING", a.ts + LIMIT] += 1
                rows[waybill, "RESOLVED", b.ts] += 1
        last = scans[-1]
        if last.scan_type not in TERMINAL_SCAN_TYPES and last.ts + LIMIT <= final_watermark:
            rows[waybill, "FIRING", last.ts + LIMIT] += 1
    return rows


def feed_batch(shard: Shard, partition: str, batch: list[Scan], last: bool,
               running: dict[str, int]) -> list[Detection]:
    """One batch of a partition with its running max ts; its last batch is caught up."""
    for s in batch:
        running[partition] = max(running.get(partition, s.ts), s.ts)
    return only_detections(
        shard.apply(ShardInput(partition, batch, running.get(partition), last)))


def describe(scans: list[Scan]) -> str:
    """Compact: event id, type and minutes after T0, for failure reports."""
    return ", ".join(f"{s.event_id}:{s.scan_type}@{(s.ts - T0) / M:g}m" for s in scans)


def check_pairs(detections: list[Detection]) -> None:
    """Every RESOLVED answers a FIRING of the same parcel with the same alert id."""
    firing = {d.alert_id for d in detections if d.status == "FIRING"}
    for d in detections:
        if d.status == "RESOLVED":
            assert d.alert_id in firing


def single_partition(batches: list[list[Scan]]) -> list[Detection]:
    shard = Shard(Thresholds(), [P0])
    running: dict[str, int] = {}
    out = []
    for k, batch in enumerate(batches):
        out += feed_batch(shard, P0, batch, k == len(batches) - 1, running)
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_alerts_match_the_reference(data):
    parcels = data.draw(parcel_scans())
    all_scans = [s for scans in parcels.values() for s in scans]
    stream = data.draw(delivered(all_scans))
    final_watermark = max(s.ts for s in all_scans) - LATE
    batches = cut(data.draw, stream)
    note("batches: " + " | ".join(describe(b) for b in batches))
    detections = single_partition(batches)
    check_pairs(detections)
    assert Counter(summary(detections)) == expected(parcels, final_watermark)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_batching_does_not_change_the_result(data):
    parcels = data.draw(parcel_scans())
    stream = data.draw(delivered([s for scans in parcels.values() for s in scans]))
    one_batches, other_batches = cut(data.draw, stream), cut(data.draw, stream)
    note("one: " + " | ".join(describe(b) for b in one_batches))
    note("other: " + " | ".join(describe(b) for b in other_batches))
    one, other = single_partition(one_batches), single_partition(other_batches)
    assert Counter(summary(one)) == Counter(summary(other))
    assert sorted(d.alert_id for d in one) == sorted(d.alert_id for d in other)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_two_partitions_in_any_interleaving(data):
    parcels = data.draw(parcel_scans())
    homes = {wb: data.draw(st.sampled_from([P0, P1])) for wb in parcels}
    batches = {}
    for partition in (P0, P1):
        scans = [s for wb, ss in parcels.items() if homes[wb] == partition for s in ss]
        batches[partition] = cut(data.draw, data.draw(delivered(scans)))
    order = data.draw(st.permutations([P0] * len(batches[P0]) + [P1] * len(batches[P1])))
    shard = Shard(Thresholds(), [P0, P1])
    running: dict[str, int] = {}
    position = {P0: 0, P1: 0}
    detections = []
    for partition in order:
        k = position[partition]
        position[partition] += 1
        last = k == len(batches[partition]) - 1
        note(f"{partition}: {describe(batches[partition][k])}{' (caught up)' if last else ''}")
        detections += feed_batch(shard, partition, batches[partition][k], last, running)
    all_scans = [s for scans in parcels.values() for s in scans]
    final_watermark = max(s.ts for s in all_scans) - LATE
    check_pairs(detections)
    assert Counter(summary(detections)) == expected(parcels, final_watermark)
