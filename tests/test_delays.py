"""Delay onsets and ends, the per-parcel half of WEATHER_DELAY_CLUSTER."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Scan
from models.messages import DelayEnd, DelayOnset
from models.settings import HOUR_MS, Thresholds
from models.tracking import ParcelTracker

T0 = 1_790_000_000_000
H = HOUR_MS
DWELL = 24 * H
HANGZHOU = (30.27, 120.15)


def scan(event_id: str, ts: int, kind: str = "ARRIVE", waybill: str = "W1",
         hub: str | None = "HZ01", position: tuple[float, float] | None = HANGZHOU,
         **fields) -> Scan:
    lat, lon = position if position else (None, None)
    return Scan(event_id=event_id, waybill=waybill, carrier="SF", scan_type=kind, ts=ts,
                hub_id=hub, city="杭州" if hub else None, lat=lat, lon=lon, **fields)


def run(scans: list[Scan], watermark: int, detector: ParcelTracker | None = None
        ) -> list:
    """Delay onsets and ends only (not the NO_MOVEMENT alerts)."""
    detector = detector or ParcelTracker(Thresholds())
    out: list = []
    for s in scans:
        detector.on_scan(s, out)
    detector.on_watermark(watermark, out)
    return [item for item in out if type(item) in (DelayOnset, DelayEnd)]


def onsets(items: list) -> list[tuple[str, int, bool]]:
    return [(o.waybill, o.onset_ts, o.weather) for o in items if type(o) is DelayOnset]


def ends(items: list) -> list[tuple[str, int, int]]:
    return [(e.waybill, e.onset_ts, e.end_ts) for e in items if type(e) is DelayEnd]


def test_a_weather_exception_scan_is_a_delay_at_once_where_it_was_scanned():
    items = run([scan("p", T0, "PICKUP"), scan("x", T0 + H, "EXCEPTION", position=(30.3, 120.2),
                                               exception_code="WEATHER")], T0 + H)
    [onset] = [i for i in items if type(i) is DelayOnset]
    assert (onset.onset_ts, onset.since_ts, onset.weather) == (T0 + H, T0, True)
    assert (onset.lat, onset.lon) == (30.27, 120.15)  # the place it sits at, from its arrival
    assert (onset.hub_id, onset.city, onset.carrier) == ("HZ01", "杭州", "SF")


def test_other_exception_codes_are_no_delay_by_themselves():
    assert run([scan("p", T0, "PICKUP"), scan("x", T0 + H, "EXCEPTION", exception_code="ADDRESS")],
               T0 + 2 * H) == []


def test_dwelling_at_one_place_is_a_delay_exactly_at_the_dwell_deadline():
    detector = ParcelTracker(Thresholds())
    assert run([scan("a", T0)], T0 + DWELL - 1, detector) == []
    items = run([], T0 + DWELL, detector)
    assert onsets(items) == [("W1", T0 + DWELL, False)]
    assert items[0].since_ts == T0


def test_scans_that_do_not_move_the_parcel_keep_its_dwell_clock_running():
    scans = [scan("a", T0), scan("x", T0 + 5 * H, "EXCEPTION", exception_code="OTHER"),
             scan("f", T0 + 10 * H, "DELIVERY_FAILED")]
    assert onsets(run(scans, T0 + DWELL)) == [("W1", T0 + DWELL, False)]


def test_arriving_somewhere_else_restarts_the_dwell_clock():
    scans = [scan("a", T0), scan("b", T0 + 10 * H, "ARRIVE", hub="SH01", position=(31.2, 121.5))]
    assert run(scans, T0 + DWELL) == []
    assert onsets(run(scans, T0 + 10 * H + DWELL)) == [("W1", T0 + 10 * H + DWELL, False)]


def test_a_parcel_in_transit_has_no_dwell_clock():
    scans = [scan("a", T0), scan("d", T0 + H, "DEPART")]
    assert run(scans, T0 + 60 * H) == []


def test_moving_on_ends_the_delay():
    scans = [scan("a", T0), scan("d", T0 + 30 * H, "DEPART")]
    detector = ParcelTracker(Thresholds())
    first = run(scans[:1], T0 + DWELL, detector)
    assert onsets(first) == [("W1", T0 + DWELL, False)]
    assert ends(run(scans[1:], T0 + 30 * H, detector)) == [("W1", T0 + DWELL, T0 + 30 * H)]


def test_signing_ends_the_delay():
    scans = [scan("a", T0), scan("x", T0 + H, "EXCEPTION", exception_code="WEATHER"),
             scan("s", T0 + 5 * H, "SIGNED", signer="RECIPIENT", proof="PHOTO")]
    items = run(scans, T0 + 5 * H)
    assert onsets(items) == [("W1", T0 + H, True)]
    assert ends(items) == [("W1", T0 + H, T0 + 5 * H)]


def test_a_dwell_revealed_by_a_newer_scan_counts_even_if_no_watermark_saw_it():
    # The parcel's partition is read ahead: its next scan is read while the watermark is
    # still far behind the dwell deadline.
    scans = [scan("a", T0), scan("b", T0 + 30 * H, "ARRIVE", hub="SH01", position=(31.2, 121.5))]
    detector = ParcelTracker(Thresholds())
    assert run(scans, T0, detector) == []  # held: a scan from inside it may still come
    items = run([], T0 + DWELL, detector)
    assert onsets(items) == [("W1", T0 + DWELL, False)]
    assert onsets_of(items)[0].city == "杭州"  # where it sat, not where it went
    assert ends(items) == []  # its end waits for the watermark too
    assert ends(run([], T0 + 30 * H, detector)) == [("W1", T0 + DWELL, T0 + 30 * H)]


def test_a_dwell_revealed_by_the_scan_that_ends_the_trip_counts_too():
    # Signed 30 h after it went out for delivery, read before the watermark saw the dwell.
    scans = [scan("a", T0, "OUT_FOR_DELIVERY"),
             scan("s", T0 + 30 * H, "SIGNED", signer="RECIPIENT", proof="PHOTO")]
    detector = ParcelTracker(Thresholds())
    assert run(scans, T0, detector) == []  # held: a scan from inside it may still come
    assert onsets(run([], T0 + DWELL, detector)) == [("W1", T0 + DWELL, False)]
    assert ends(run([], T0 + 30 * H, detector)) == [("W1", T0 + DWELL, T0 + 30 * H)]


def test_a_late_scan_from_inside_a_revealed_dwell_cancels_it():
    scans = [scan("a", T0), scan("c", T0 + 30 * H, "DEPART", hub="SH01"),
             scan("b", T0 + 20 * H, "ARRIVE", hub="SH01", position=(31.2, 121.5))]  # late
    assert run(scans, T0 + 40 * H) == []


def test_a_dwell_held_until_every_input_is_caught_up_is_released_then():
    detector = ParcelTracker(Thresholds())
    run([scan("a", T0), scan("c", T0 + 30 * H, "DEPART")], T0, detector)
    out: list = []
    detector.flush(out)
    assert onsets(out) == [("W1", T0 + DWELL, False)] and len(ends(out)) == 1


def test_a_scan_without_a_position_takes_its_hubs_last_known_one():
    scans = [scan("other", T0 - H, waybill="W0"), scan("a", T0, position=None)]
    [onset] = [o for o in onsets_of(run(scans, T0 + DWELL)) if o.waybill == "W1"]
    assert (onset.lat, onset.lon) == HANGZHOU


def test_a_delay_with_no_known_position_is_still_reported_without_one():
    [onset] = onsets_of(run([scan("a", T0, hub="XX", position=None)], T0 + DWELL))
    assert onset.lat is None and onset.lon is None


def test_a_delayed_parcel_forgotten_as_stale_ends_its_delay():
    thresholds = Thresholds()
    items = run([scan("a", T0)], T0 + 40 * 24 * H, ParcelTracker(thresholds))
    assert onsets(items) == [("W1", T0 + DWELL, False)]
    assert ends(items) == [("W1", T0 + DWELL, T0 + thresholds.stale_after_ms)]


def onsets_of(items: list) -> list[DelayOnset]:
    return [i for i in items if type(i) is DelayOnset]


KINDS = ["ARRIVE", "DEPART", "EXCEPTION", "DELIVERY_FAILED", "OUT_FOR_DELIVERY"]


@st.composite
def journeys(draw) -> list[Scan]:
    """A few parcels, each a sequence of scans with random gaps, types and hubs, some
    ending with a terminal scan."""
    scans = []
    for parcel in range(draw(st.integers(1, 4))):
        ts = T0 + draw(st.integers(0, 10)) * H
        for n in range(draw(st.integers(1, 8))):
            kind = "PICKUP" if n == 0 else draw(st.sampled_from(KINDS))
            hub = draw(st.sampled_from(["HZ01", "HZ02", "SH01"]))
            code = draw(st.sampled_from(["WEATHER", "OTHER"])) if kind == "EXCEPTION" else None
            scans.append(scan(f"{parcel}-{n}", ts, kind, waybill=f"W{parcel}", hub=hub,
                              exception_code=code))
            ts += draw(st.integers(1, 40)) * H
        if draw(st.booleans()):  # the trip ends, maybe after a long wait at its last place
            scans.append(scan(f"{parcel}-end", ts, draw(st.sampled_from(["SIGNED", "RETURNED"])),
                              waybill=f"W{parcel}", hub=hub))
    return scans


@settings(max_examples=150, deadline=None)
@given(journeys(), st.data())
def test_delays_do_not_depend_on_when_the_watermark_moves(scans, data):
    """Read in event-time order (each parcel's scans in order), with the watermark moving
    after random scans (to just before the scan read: a lateness of 1 ms) or only at the
    end: the same onsets and ends."""
    ordered = sorted(scans, key=lambda s: s.ts)
    end = ordered[-1].ts
    at_the_end = run(ordered, end)
    detector, stepwise = ParcelTracker(Thresholds()), []
    for s in ordered:
        stepwise += run([s], s.ts - 1 if data.draw(st.booleans()) else T0, detector)
    stepwise += run([], end, detector)
    key = lambda item: (type(item).__name__, *item)  # noqa: E731
    assert sorted(stepwise, key=key) == sorted(at_the_end, key=key)


def test_a_delay_ends_at_the_first_move_after_it_whatever_order_the_moves_are_read_in():
    pickup = scan("p", T0, "PICKUP")
    first, second = scan("d1", T0 + 25 * H, "DEPART"), scan("d2", T0 + 25 * H + 60_000, "DEPART")
    in_order = run([pickup, first, second], T0 + 30 * H)
    swapped = run([pickup, second, first], T0 + 30 * H)
    assert ends(in_order) == ends(swapped) == [("W1", T0 + DWELL, T0 + 25 * H)]


def test_a_delay_end_waits_for_the_watermark_to_pass_it():
    detector = ParcelTracker(Thresholds())
    assert onsets(run([scan("p", T0, "PICKUP")], T0 + DWELL, detector)) == [
        ("W1", T0 + DWELL, False)]
    assert run([scan("d", T0 + 25 * H, "DEPART")], T0 + 25 * H - 1, detector) == []
    assert ends(run([], T0 + 25 * H, detector)) == [("W1", T0 + DWELL, T0 + 25 * H)]
