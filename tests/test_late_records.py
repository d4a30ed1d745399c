"""Late records (contract section 2, 0.5): older than the watermark when read, applied,
counted as `late`, and a deadline they leave behind the watermark is judged only once the
watermark has moved `allowed_lateness` past where it stood when they were read."""

from __future__ import annotations

from models.detection import Detection
from models.events import Scan
from models.settings import HOUR_MS, MINUTE_MS, Thresholds
from models.shard import Shard, ShardInput

T0 = 1_793_462_400_000
H, M = HOUR_MS, MINUTE_MS
LIVE, BACKFILL = "scans/0", "scans/1"
LATENESS = Thresholds().lateness_ms


def scan(waybill: str, ts: int, scan_type: str = "ARRIVE") -> Scan:
    return Scan(event_id=f"{waybill}-{ts}", waybill=waybill, carrier="SF", scan_type=scan_type,
                ts=ts, hub_id="H1", city="杭州", merchant_id="M1", order_id="O-" + waybill)


class Job:
    """One shard fed by a live partition that moves the watermark and a backfill partition."""

    def __init__(self, caught_up_is_the_end: bool = True):
        self.shard = Shard(Thresholds(), [LIVE, BACKFILL],
                           caught_up_is_the_end=caught_up_is_the_end)
        self.max_ts: dict[str, int] = {}
        self.found: list[Detection] = []

    def read(self, partition: str, events: list[Scan], caught_up: bool | None = None) -> None:
        """The backfill partition is read to its end each time (it never holds the
        watermark); the live one never is, unless told."""
        caught_up = partition == BACKFILL if caught_up is None else caught_up
        for event in events:
            self.max_ts[partition] = max(self.max_ts.get(partition, event.ts), event.ts)
        out = self.shard.apply(ShardInput(partition, events, self.max_ts.get(partition),
                                          caught_up))
        self.found += [item for item in out if type(item) is Detection]

    def live_at(self, ts: int) -> None:
        """The live feed moves event time (its own parcel keeps moving, never stalls)."""
        self.read(LIVE, [scan("LIVE", ts)])

    def alerts(self, waybill: str) -> list[tuple[str, int]]:
        return [(d.status, d.event_ts) for d in self.found if d.subject == waybill]


def job_with_a_watermark(at: int, **options) -> Job:
    job = Job(**options)
    job.read(BACKFILL, [scan("B0", at - 10 * 24 * H, "PICKUP")])  # the backfill has reported
    job.read(LIVE, [scan("LIVE", at - 10 * 24 * H, "PICKUP")])
    for hours in range(-240, 1, 24):
        job.live_at(at + hours * H)
    return job


def test_a_parcel_whose_whole_history_arrives_late_and_ends_signed_raises_nothing():
    now = T0 + 10 * 24 * H
    job = job_with_a_watermark(now)
    watermark = job.shard.watermark.value
    # Its pickup's 72 h deadline is days behind the watermark; the rest arrives a moment later.
    job.read(BACKFILL, [scan("B1", T0, "PICKUP")])
    job.live_at(now + 5 * M)
    job.read(BACKFILL, [scan("B1", T0 + 20 * H), scan("B1", T0 + 40 * H, "SIGNED")])
    job.live_at(now + 30 * M)
    assert job.shard.watermark.value > watermark + LATENESS
    assert job.alerts("B1") == []
    outcomes = job.shard.drain_outcomes()
    assert outcomes["scans", "late"] == 3  # B1's three


def test_a_late_parcel_that_really_stalled_fires_once_the_watermark_moved_on():
    now = T0 + 10 * 24 * H
    job = job_with_a_watermark(now)
    read_at = job.shard.watermark.value
    job.read(BACKFILL, [scan("B1", T0, "PICKUP")])
    job.live_at(now + LATENESS - M)  # not yet allowed_lateness past where it was read
    assert job.shard.watermark.value < read_at + LATENESS
    assert job.alerts("B1") == []
    job.live_at(now + LATENESS + M)
    assert job.alerts("B1") == [("FIRING", T0 + 72 * H)]  # at the event time it was due


def test_a_batch_is_read_as_one_so_a_coarse_batch_does_not_judge_a_backfill_half_read():
    # One partition carries live scans and a backfill. Its first batch moves the watermark
    # hours on and ends with the head of a late history; the rest is in the next batch.
    now = T0 + 10 * 24 * H
    job = Job()
    job.read(BACKFILL, [], caught_up=True)
    job.read(LIVE, [scan("LIVE", now - H, "PICKUP")])
    job.read(LIVE, [scan("LIVE", now + hour * H) for hour in range(0, 7)]
             + [scan("B1", T0, "PICKUP")])
    assert job.alerts("B1") == []
    job.read(LIVE, [scan("B1", T0 + 20 * H), scan("B1", T0 + 40 * H, "SIGNED"),
                    scan("LIVE", now + 7 * H)])
    job.live_at(now + 8 * H)
    assert job.alerts("B1") == []  # judged from where the first batch left the watermark


def test_a_backfill_in_a_partition_behind_the_others_waits_for_where_the_reading_stands():
    # The partition carrying the backfill is an hour behind the live one: its own progress
    # would let the hold end as soon as it catches up ten minutes.
    now = T0 + 10 * 24 * H
    job = Job()
    job.read(LIVE, [scan("LIVE", now, "PICKUP")])
    job.read(BACKFILL, [scan("A1", now - H, "PICKUP")], caught_up=False)
    job.read(BACKFILL, [scan("B1", T0, "PICKUP")], caught_up=False)
    job.read(LIVE, [scan("LIVE", now + 5 * M)])
    job.read(BACKFILL, [scan("A1", now - 45 * M)], caught_up=False)
    assert job.alerts("B1") == []
    job.read(BACKFILL, [scan("B1", T0 + 20 * H), scan("B1", T0 + 40 * H, "SIGNED"),
                        scan("A1", now + 20 * M)], caught_up=False)
    job.live_at(now + 30 * M)
    assert job.alerts("B1") == []


def test_held_deadlines_are_judged_once_every_input_is_read():
    now = T0 + 10 * 24 * H
    job = job_with_a_watermark(now)
    job.read(BACKFILL, [scan("B1", T0, "PICKUP")], caught_up=True)
    job.read(LIVE, [], caught_up=True)
    assert job.alerts("B1") == [("FIRING", T0 + 72 * H)]


def test_records_in_time_are_not_late():
    job = Job()
    job.read(BACKFILL, [scan("A", T0, "PICKUP")])
    job.read(LIVE, [scan("B", T0 + M, "PICKUP")])
    job.read(LIVE, [scan("C", T0 - 5 * M, "PICKUP")])  # disorder within the lateness
    outcomes = job.shard.drain_outcomes()
    assert outcomes["scans", "accepted"] == 3 and outcomes["scans", "late"] == 0


def test_a_live_job_reading_to_the_end_of_its_partitions_still_holds_for_the_backfill():
    # Live, a poll reaches the end of every partition most of the time: being caught up
    # there does not mean the backfill is over.
    now = T0 + 10 * 24 * H
    job = job_with_a_watermark(now, caught_up_is_the_end=False)
    job.read(BACKFILL, [scan("B1", T0, "PICKUP")])
    job.read(LIVE, [scan("LIVE", now + 5 * M)], caught_up=True)
    job.read(BACKFILL, [scan("B1", T0 + 20 * H), scan("B1", T0 + 40 * H, "SIGNED")])
    job.read(LIVE, [scan("LIVE", now + 30 * M)], caught_up=True)
    assert job.alerts("B1") == []
