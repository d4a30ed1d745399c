"""FEED_SILENT (contract section 3, 0.5): one alert per silent carrier, and what its parcels'
alerts do while it is silent, through the global step as the dataflow drives it."""

from __future__ import annotations

from models.aggregate import Aggregate
from models.detection import Detection
from models.feeds import FEED_SILENT
from models.messages import (
    CarrierScans,
    DelayEnd,
    DelayOnset,
    ParcelVerdict,
    ShardTick,
    packed_minute,
    unpacked_minute,
)
from models.settings import DAY_MS, HOUR_MS, MINUTE_MS, Thresholds

T0 = 1_793_462_400_000  # midnight UTC
H, M = HOUR_MS, MINUTE_MS


class Step:
    """The global step alone: the shards' messages fed as one shard's batches."""

    def __init__(self) -> None:
        self.aggregate = Aggregate(Thresholds(), shards=1, caught_up_is_the_end=False)
        self.out: list[Detection] = []

    def feed(self, items: list, watermark: int) -> list[Detection]:
        found = [d for d in self.aggregate.apply([[*items, ShardTick(0, watermark, False)]])
                 if type(d) is Detection]
        self.out += found
        return found

    def of(self, kind: str) -> list[Detection]:
        return [d for d in self.out if d.type == kind]


def scans(carrier: str, start: int, end: int, every: int = 1, read_at: int | None = None,
          late: bool = False) -> CarrierScans:
    """One scan every `every` minutes of ts in [start, end), read at `read_at`."""
    minutes = {minute: packed_minute(1, minute * M, minute * M)
               for minute in range(start // M, end // M, every)}
    return CarrierScans(start if read_at is None else read_at, {carrier: minutes},
                        {carrier: max(minutes) * M},
                        {carrier: len(minutes)} if late else {})


def history(step: Step, days: int = 8, every: int = 1) -> int:
    """`days` of steady scans of SF and YTO, an hour a batch; returns the end."""
    for hour in range(days * 24):
        start = T0 + hour * H
        step.feed([scans("SF", start, start + H, every), scans("YTO", start, start + H)],
                  start + H - M)
    return T0 + days * 24 * H


def stall(waybill: str, status: str, event_ts: int, carrier: str = "SF") -> Detection:
    return Detection(type="NO_MOVEMENT", status=status, severity="WARNING", subject=waybill,
                     onset_ts=event_ts if status == "FIRING" else event_ts - H,
                     event_ts=event_ts, carrier=carrier, waybill=waybill,
                     details={"last_scan_ts": event_ts - 72 * H})


def test_a_silent_feed_raises_one_alert_and_resolves_under_its_id_when_read_again():
    step = Step()
    end = history(step)
    last = end - M  # SF's last scan; YTO goes on
    for hour in range(6):
        start = end + hour * H
        step.feed([scans("YTO", start, start + H)], start + H - M)
    fired = step.of(FEED_SILENT)
    assert [(d.status, d.subject, d.event_ts) for d in fired] == [
        ("FIRING", "feed:SF", last + 120 * M)]
    assert fired[0].details["expected_scans"] == 120  # one a minute, the days before
    assert fired[0].details["last_scan_ts"] == last and fired[0].notify == []

    back = end + 6 * H
    step.feed([scans("SF", end, end + H, read_at=back, late=True)], back + 30 * M)
    assert len(step.of(FEED_SILENT)) == 1  # held for the grace: the backfill lands first
    step.feed([scans("YTO", back, back + H)], back + 61 * M)
    resolved = step.of(FEED_SILENT)[1]
    assert resolved.status == "RESOLVED" and resolved.alert_id == fired[0].alert_id
    assert resolved.event_ts == back and resolved.details["backfilled"] == 60
    assert resolved.details["silent_minutes"] == (back - last) // M


def test_a_carrier_quiet_where_it_usually_is_raises_nothing():
    step = Step()
    end = history(step, every=3)  # 40 in two hours: fewer than 50 were due
    step.feed([scans("YTO", end, end + 6 * H)], end + 6 * H)
    assert step.of(FEED_SILENT) == []


def test_while_a_feed_is_silent_its_parcels_alerts_are_held_and_the_backfill_settles_them():
    step = Step()
    end = history(step)
    silent = end + 3 * H   # SF silent since end - 1 min + 2 h; YTO goes on
    step.feed([scans("YTO", end, silent),
               ParcelVerdict(silent, stall("SF-moved", "FIRING", silent - H)),
               ParcelVerdict(silent, stall("SF-stuck", "FIRING", silent - H)),
               ParcelVerdict(silent, stall("SF-late", "FIRING", silent - H)),
               ParcelVerdict(silent, stall("YTO-1", "FIRING", silent - H, carrier="YTO"))],
              silent)
    assert [d.subject for d in step.of("NO_MOVEMENT")] == ["YTO-1"]  # other carriers go out

    back = end + 2 * DAY_MS
    step.feed([scans("YTO", silent, back + 2 * H),
               scans("SF", end, end + H, read_at=back, late=True),
               # a backfilled scan from before its deadline: that parcel never stalled
               ParcelVerdict(back, stall("SF-moved", "RESOLVED", silent - 2 * H)),
               # one from after it: it did sit that long, both go out
               ParcelVerdict(back, stall("SF-late", "RESOLVED", silent + H))], back)
    step.feed([], back + 61 * M)
    out = {(d.subject, d.status): d for d in step.of("NO_MOVEMENT")}
    assert set(out) == {("YTO-1", "FIRING"), ("SF-late", "FIRING"), ("SF-late", "RESOLVED"),
                        ("SF-stuck", "FIRING")}
    stuck = out["SF-stuck", "FIRING"]
    assert stuck.details["after_feed_silence"] is True and stuck.event_ts == silent - H
    assert "after_feed_silence" not in out["YTO-1", "FIRING"].details


def onset(waybill: str, ts: int) -> DelayOnset:
    return DelayOnset(waybill=waybill, onset_ts=ts, since_ts=ts - 24 * H, weather=False,
                      lat=30.27, lon=120.15, hub_id="SF-1", city="杭州", carrier="SF",
                      merchant_id="M1", order_id=None)


def test_delays_of_a_silent_feed_wait_and_those_the_backfill_ends_are_dropped():
    step = Step()
    end = history(step)
    back = end + 13 * H
    at = back - 4 * H  # still inside the clusters' window when let out
    step.feed([scans("YTO", end, back + 2 * H), onset("SF-moved", at), onset("SF-stuck", at)],
              at + M)
    assert step.aggregate.clusters.delays == {}  # held
    step.feed([scans("SF", end, end + H, read_at=back, late=True),
               DelayEnd("SF-moved", at, at + 30 * M)], back)
    step.feed([], back + 61 * M)
    assert set(step.aggregate.clusters.delays) == {"SF-stuck"}


def test_a_gap_read_in_one_batch_ahead_of_time_is_found_at_its_exact_onset():
    # The whole day is read in one batch, long before event time reaches it: the gap in
    # the middle is still a silence, from its last scan + 120 min, and the scan after it
    # (already read) brings the feed back at once.
    step = Step()
    end = history(step)
    gap = end + 5 * H
    day = CarrierScans(end - H, {
        "SF": {**scans("SF", end, gap).minutes["SF"],
               **scans("SF", gap + 139 * M, end + DAY_MS).minutes["SF"]},
        "YTO": scans("YTO", end, end + DAY_MS).minutes["YTO"]},
        {"SF": end + DAY_MS - M, "YTO": end + DAY_MS - M}, {})
    step.feed([day], end + DAY_MS - 10 * M)
    assert [(d.carrier, d.status, d.event_ts) for d in step.of(FEED_SILENT)] == [
        ("SF", "FIRING", gap - M + 120 * M), ("SF", "RESOLVED", gap + 139 * M)]


def test_a_shard_reports_what_it_read_of_each_carrier_and_its_parcels_on_their_way():
    from models.events import Scan
    from models.shard import Shard, ShardInput

    shard = Shard(Thresholds(), ["scans/0"])
    scans_read = [Scan(event_id=f"e{i}", waybill=f"W{i % 3}", carrier="SF", ts=T0 + i * 20_000,
                       scan_type="PICKUP" if i < 3 else "SIGNED" if i == 5 else "ARRIVE")
                  for i in range(6)]
    out = shard.apply(ShardInput("scans/0", scans_read, T0 + 100_000, False))
    (report,) = [item for item in out if type(item) is CarrierScans]
    assert {minute: unpacked_minute(minute, packed)
            for minute, packed in report.minutes["SF"].items()} == {
        T0 // M: (3, T0, T0 + 40_000), T0 // M + 1: (3, T0 + 60_000, T0 + 100_000)}
    assert list(report.minutes) == ["SF"]
    assert report.latest == {"SF": T0 + 100_000}
    assert report.in_flight == {"SF": 2}  # W2 was signed


def test_one_feed_coming_back_does_not_let_out_what_another_silent_feed_holds():
    step = Step()
    end = history(step)
    silent = end + 3 * H  # both carriers silent since end - 1 min + 2 h
    step.feed([ParcelVerdict(silent, stall("SF-1", "FIRING", silent - H)),
               ParcelVerdict(silent, stall("YTO-1", "FIRING", silent - H, carrier="YTO"))],
              silent)
    back = end + DAY_MS
    step.feed([scans("YTO", end, end + H, read_at=back, late=True)], back)
    step.feed([], back + 61 * M)
    assert [d.subject for d in step.of("NO_MOVEMENT")] == ["YTO-1"]  # SF is still silent


def back_with_the_first_of_its_backfill(waybill: str) -> tuple[Step, int, int, int]:
    """SF silent from the history's end, holding `waybill`'s stall; read again a day later,
    the first batch of its backfill settling where it was read. Returns the step, the
    history's end, when the stall fired, and when SF came back."""
    step = Step()
    end = history(step)
    silent = end + 3 * H
    step.feed([scans("YTO", end, silent),
               ParcelVerdict(silent, stall(waybill, "FIRING", silent - H))], silent)
    back = end + DAY_MS
    first = scans("SF", end, end + H, read_at=back, late=True)._replace(settled_at=back)
    step.feed([scans("YTO", silent, back), first], back)
    return step, end, silent, back


def test_each_batch_more_of_the_backfill_moves_the_grace_on():
    # Another partition's part of the backfill is read 50 minutes later, in a coarse batch:
    # what it settles must land before anything held goes out.
    step, end, silent, back = back_with_the_first_of_its_backfill("SF-moved")
    later = back + 50 * M
    rest = scans("SF", end + H, end + 2 * H, read_at=later, late=True)._replace(
        settled_at=later + 30 * M)
    step.feed([scans("YTO", back, later), rest], later)
    step.feed([scans("YTO", later, back + 70 * M)], back + 70 * M)  # past the first grace
    assert [d.status for d in step.of(FEED_SILENT)] == ["FIRING"]
    step.feed([ParcelVerdict(later + 40 * M, stall("SF-moved", "RESOLVED", silent - 2 * H))],
              later + 40 * M)
    step.feed([scans("YTO", back + 70 * M, later + 91 * M)], later + 91 * M)
    assert [d.status for d in step.of(FEED_SILENT)] == ["FIRING", "RESOLVED"]
    assert step.of("NO_MOVEMENT") == []  # the later batch showed it moved


def test_late_scans_from_before_an_outage_do_not_hold_what_it_holds_longer():
    # Another backfill (a day loaded again) arrives while the carrier's own is landing:
    # its scans are from before the outage, so the grace is not moved on for them.
    step, end, _, back = back_with_the_first_of_its_backfill("SF-stuck")
    later = back + 50 * M
    other = scans("SF", end - 5 * DAY_MS, end - 5 * DAY_MS + H, read_at=later, late=True)
    step.feed([scans("YTO", back, later), other._replace(settled_at=later + 30 * M)], later)
    step.feed([scans("YTO", later, back + 61 * M)], back + 61 * M)
    assert [d.subject for d in step.of("NO_MOVEMENT")] == ["SF-stuck"]


def test_every_outage_after_a_feed_came_back_in_the_last_batch_is_judged_at_the_end():
    aggregate = Aggregate(Thresholds(), shards=1, caught_up_is_the_end=True)
    step = Step()
    step.aggregate = aggregate
    end = history(step)
    back, again = end + DAY_MS, end + DAY_MS + 6 * H
    finish = back + 9 * DAY_MS
    aggregate.apply([[scans("YTO", end, end + 3 * H)], ShardTick(0, end + 3 * H, False)])
    found = aggregate.apply([[scans("SF", end, end + H, read_at=back, late=True)
                              ._replace(settled_at=finish),
                              scans("SF", back, back + H, read_at=back),
                              scans("SF", again, again + H, read_at=back),
                              scans("YTO", end + 3 * H, finish), ShardTick(0, finish, True)]])
    outages = [(d.status, d.event_ts) for d in found if type(d) is Detection
               and d.type == FEED_SILENT and d.carrier == "SF"]
    assert outages == [("RESOLVED", back), ("FIRING", back + H - M + 120 * M),
                       ("RESOLVED", again), ("FIRING", again + H - M + 120 * M)]


def test_scans_read_before_event_time_is_known_count_from_the_earliest_read():
    # A partition read ahead while another has not reported: its scans must count for every
    # check of a feed's silence from the earliest of them on, not from where it stopped.
    from models.events import Scan
    from models.shard import Shard, ShardInput

    shard = Shard(Thresholds(), ["scans/0", "scans/1"])
    ahead = [Scan(event_id=f"e{i}", waybill=f"W{i}", carrier="SF", ts=T0 + i * H,
                  scan_type="PICKUP") for i in range(30)]
    out = shard.apply(ShardInput("scans/0", ahead, T0 + 29 * H, False))
    (report,) = [item for item in out if type(item) is CarrierScans]
    assert shard.watermark.value is None and report.read_at == T0
