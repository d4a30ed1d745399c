"""One conformance suite for the per-parcel core: every detector of a shard (NO_MOVEMENT, delay
onsets and ends, signing and claims, damage, PICKUP_OVERDUE and PROMISE_MISSED from shipments)
and everything the shard hands the global step.

For the same records, whatever the batching, the interleaving of the partitions, and a
snapshot and restore at any point, a shard must give the same outputs; a RESOLVED must close
a FIRING under its id, and a delay must end only after it began.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hypothesis import given, note, settings
from hypothesis import strategies as st

from flows.dataflow import restored, snapshot_of
from models import messages
from models.detection import Detection
from models.events import Dispute, Scan, Shipment
from models.messages import (
    CarrierScans,
    DelayEnd,
    DelayOnset,
    LegWaits,
    PlaceVisits,
    ShardTick,
    unpacked_minute,
)
from models.settings import HOUR_MS, MINUTE_MS, Thresholds
from models.shard import Shard, ShardInput

T0 = 1_793_462_400_000
H, M = HOUR_MS, MINUTE_MS
SCANS, DISPUTES, SHIPMENTS = "scans/0", "disputes/0", "shipments/0"
PARTITIONS = ((SCANS, Scan), (DISPUTES, Dispute), (SHIPMENTS, Shipment))
HUBS = {"H1": (30.27, 120.15), "H2": (30.29, 120.17), "H3": (31.23, 121.47)}
MOVES = ("DEPART", "ARRIVE", "OUT_FOR_DELIVERY", "DELIVERY_FAILED", "EXCEPTION")
# Short gaps, dwells under and over 24 h, silences over 72 h; never within a minute of either
# threshold. A parcel's own scans are never read out of order here: NO_MOVEMENT's property
# tests cover that; delay onsets are taken from the place a parcel is at, and a late scan
# that would have moved it earlier is not replayed (no history is kept; see docs/detectors.md).
MESSAGE_NAMES = {name for name in dir(messages) if name[0].isupper()}
GAPS = st.one_of(st.integers(6 * M, 23 * H), st.integers(25 * H, 71 * H),
                 st.integers(73 * H, 120 * H))
# A shipment's hand-over before the first scan: picked up in time, or late.
LEADS = st.one_of(st.integers(30 * M, 23 * H), st.integers(25 * H, 60 * H))


@st.composite
def parcels(draw) -> list:
    """Scans (and claims) of 2 to 5 parcels, in event-time order per parcel."""
    records = []
    for i in range(draw(st.integers(2, 5))):
        waybill = f"SF{i:04d}"
        times = [T0 + draw(st.integers(0, 50 * H))]
        for gap in draw(st.lists(GAPS, max_size=5)):
            times.append(times[-1] + gap)
        ends = draw(st.sampled_from([None, "SIGNED", "RETURNED"]))
        for k, planned in enumerate(times):
            kind = ("PICKUP" if k == 0 else ends if ends and k == len(times) - 1
                    else draw(st.sampled_from(MOVES)))
            hub = draw(st.sampled_from(sorted(HUBS)))
            # Every scan is placed: where a scan has no position, a delay takes its hub's
            # position as learnt from other scans, which depends on what was read first.
            lat, lon = HUBS[hub]
            fields = {"hub_id": hub, "city": "杭州", "lat": lat, "lon": lon}
            if kind == "PICKUP":
                fields.update(merchant_id="M1", order_id=f"O{i}", origin="上海",
                              destination="杭州", dest_lat=30.27, dest_lon=120.15)
            if kind == "EXCEPTION":
                fields["exception_code"] = draw(st.sampled_from(["WEATHER", "DAMAGED", "LOST"]))
            ts = planned
            if kind == "SIGNED":
                fields.update(signer=draw(st.sampled_from(["RECIPIENT", "LOCKER", None])),
                              proof=draw(st.sampled_from(["PHOTO", "NONE", None])))
            records.append(Scan(event_id=f"{waybill}-{k}", waybill=waybill, carrier="SF",
                                scan_type=kind, ts=ts, **fields))
        if draw(st.booleans()):
            shipped = times[0] - draw(LEADS)
            waybills = [waybill] + ([f"SF{i:04d}N"] if draw(st.booleans()) else [])  # + never
            for number, shipped_waybill in enumerate(waybills):
                promised = draw(st.one_of(st.none(), st.integers(shipped + 6 * H,
                                                                 shipped + 9 * 24 * H)))
                records.append(Shipment(event_id=f"{shipped_waybill}-ship", carrier="SF",
                                        waybill=shipped_waybill, merchant_id="M1",
                                        order_id=f"O{i}-{number}", ts=shipped,
                                        promised_delivery_ts=promised))
        if ends == "SIGNED" and draw(st.booleans()):
            kind = draw(st.sampled_from(["NOT_RECEIVED", "DAMAGED"]))
            records.append(Dispute(event_id=f"{waybill}-claim", waybill=waybill,
                                   ts=times[-1] + draw(st.integers(M, 20 * 24 * H)), kind=kind))
    return records


@st.composite
def read_order(draw, records: list) -> list:
    """By ts plus a read delay of at most 5 minutes (within the allowed lateness), a few
    records twice."""
    if not records:
        return []
    delays = draw(st.lists(st.integers(0, 5 * M), min_size=len(records),
                           max_size=len(records)))
    items = [(r.ts + d, i, r) for i, (r, d) in enumerate(zip(records, delays, strict=True))]
    for j, i in enumerate(draw(st.lists(st.integers(0, len(records) - 1), max_size=3))):
        items.append((records[i].ts + draw(st.integers(0, 5 * M)), len(records) + j,
                      records[i]))
    return [r for _, _, r in sorted(items, key=lambda item: item[:2])]


def batches_of(draw, stream: list) -> list[list]:
    points = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return [stream[a:b] for a, b in pairwise([0, *points, len(stream)])]


def schedule(draw, records: list) -> list[tuple[str, list, bool]]:
    """(partition, batch, caught up) in one of the possible read orders of the partitions."""
    parts = {}
    for partition, kind in PARTITIONS:
        stream = draw(read_order([r for r in records if type(r) is kind]))
        parts[partition] = batches_of(draw, stream)
    order = draw(st.permutations([p for p, batches in parts.items() for _ in batches]))
    taken = dict.fromkeys(parts, 0)
    steps = []
    for partition in order:
        k = taken[partition]
        taken[partition] += 1
        steps.append((partition, parts[partition][k], k == len(parts[partition]) - 1))
    return steps


def run(steps: list[tuple[str, list, bool]], restore_at: int | None = None) -> Counter:
    """Feed a shard; optionally snapshot and restore it before step `restore_at`, as a
    restart does: then every partition reports again, those read to the end at once."""
    shard = Shard(Thresholds(), [partition for partition, _ in PARTITIONS])
    running: dict[str, int] = {}
    finished: list[str] = []
    out: list = []
    for i, (partition, batch, caught_up) in enumerate(steps):
        if i == restore_at:
            shard = restored(snapshot_of(shard))
            shard.resume([partition for partition, _ in PARTITIONS])
            for done in finished:
                out += shard.apply(ShardInput(done, [], None, True))
        if caught_up:
            finished.append(partition)
        for record in batch:
            running[partition] = max(running.get(partition, record.ts), record.ts)
        out += shard.apply(ShardInput(partition, batch, running.get(partition), caught_up))
    # What each batch read of a carrier's feed depends on the batching; what they read in
    # all does not.
    feeds: dict[tuple[str, int], list[int]] = {}
    for item in out:
        if type(item) is CarrierScans:
            for carrier, minutes in item.minutes.items():
                for minute, packed in minutes.items():
                    scans, first, last = unpacked_minute(minute, packed)
                    seen = feeds.setdefault((carrier, minute), [0, first, last])
                    seen[:] = [seen[0] + scans, min(seen[1], first), max(seen[2], last)]
    # So do the legs' waits and the arrivals by place each batch counted.
    waits: Counter = Counter()
    visits: Counter = Counter()
    for item in out:
        if type(item) is LegWaits:
            waits.update({(item.day, leg, b): n for leg, bins in item.legs.items()
                          for b, n in bins.items()})
        elif type(item) is PlaceVisits:
            visits.update({(item.due_at, cell): n for cell, n in item.cells.items()})
    outputs = Counter(summary(item) for item in out
                      if type(item) not in (ShardTick, CarrierScans, LegWaits, PlaceVisits))
    outputs[("CarrierScans", *sorted((k, *v) for k, v in feeds.items()))] = 1
    outputs[("LegWaits", *sorted(waits.items()))] = 1
    outputs[("PlaceVisits", *sorted(visits.items()))] = 1
    return outputs


# What a missed promise reports of the parcel's last scan by the promised time is lost when
# its shipment is read only after later scans (no history is kept): left out here, checked
# in tests/test_merchant_side.py in the order records really come in.
READ_ORDER_DETAILS = {"PROMISE_MISSED": {"last_scan_type", "last_scan_ts", "last_city",
                                         "last_hub_id"}}


def summary(item) -> tuple:
    if type(item) is Detection:
        left_out = READ_ORDER_DETAILS.get(item.type, ())
        return (item.type, item.status, item.subject, item.event_ts, item.alert_id,
                tuple(sorted((k, str(v)) for k, v in item.details.items()
                             if k not in left_out)))
    return (type(item).__name__, *item)


def check_lifecycles(outputs: Counter) -> None:
    """Every detector's RESOLVED closes a FIRING under its id; a delay ends after it began."""
    detections = [s for s in outputs if s[0] not in MESSAGE_NAMES]
    firing = {s[4] for s in detections if s[1] == "FIRING"}
    assert all(s[4] in firing for s in detections if s[1] == "RESOLVED")
    onsets = {(s[1], s[2]) for s in outputs if s[0] == DelayOnset.__name__}
    for s in outputs:
        if s[0] == DelayEnd.__name__:
            assert (s[1], s[2]) in onsets and s[3] >= s[2]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_batching_and_interleaving_gives_the_same_outputs(data):
    records = data.draw(parcels())
    one, other = schedule(data.draw, records), schedule(data.draw, records)
    note(f"one: {[(p, len(b), c) for p, b, c in one]}")
    note(f"other: {[(p, len(b), c) for p, b, c in other]}")
    first = run(one)
    check_lifecycles(first)
    assert run(other) == first


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_snapshot_and_restore_anywhere_changes_nothing(data):
    steps = schedule(data.draw, data.draw(parcels()))
    at = data.draw(st.integers(0, len(steps)))
    assert run(steps, restore_at=at) == run(steps)
