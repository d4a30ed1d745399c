"""The detector protocol (`models.detectors`): a new detector is one small class the tracker
runs next to the others, with its own columns, deadlines, due and free hooks."""

from __future__ import annotations

import pickle
from typing import ClassVar

import pytest

from models.detectors import Columns, Detector, Prior
from models.detectors.no_movement import NoMovementDetector
from models.events import Dispute, Scan
from models.parcels import FREE, NO_TIMER
from models.settings import HOUR_MS, Thresholds
from models.tracking import DETECTORS, NEW, ParcelTracker

T0 = 1_793_462_400_000
H = HOUR_MS


class QuietHour(Detector):
    """A toy detector: a parcel with no scan for an hour is reported once; frees are logged."""

    columns: ClassVar[Columns] = {"scans": ("I", 0), "quiet_at": ("q", NO_TIMER)}

    def on_scan(self, row: int, scan: Scan, hub: int, prior: Prior, out: list) -> None:
        self.parcels.scans[row] += 1
        if prior is NEW:
            out.append(("NEW", scan.waybill))
        self.parcels.quiet_at[row] = self.parcels.last_ts[row] + H

    def deadline(self, row: int) -> int:
        return self.parcels.quiet_at[row]

    def on_due(self, row: int, watermark: int, out: list) -> None:
        table = self.parcels
        if table.quiet_at[row] <= watermark:
            out.append(("QUIET", table.waybill(row), table.quiet_at[row], table.scans[row]))
            table.quiet_at[row] = NO_TIMER

    def on_free(self, row: int, gone_at: int, out: list) -> None:
        out.append(("GONE", self.parcels.waybill(row), gone_at))


class Holder(Detector):
    """Keeps every row it has seen a scan for."""

    def __init__(self, thresholds, parcels, zone):
        super().__init__(thresholds, parcels, zone)
        self.held: set[int] = set()

    def on_scan(self, row, scan, hub, prior, out):
        self.held.add(row)

    def keeps(self, row):
        return row in self.held


def scan(event_id: str, waybill: str, ts: int, scan_type: str = "ARRIVE") -> Scan:
    return Scan(event_id=event_id, waybill=waybill, carrier="SF", scan_type=scan_type, ts=ts,
                hub_id="H1", city="杭州")


class Toys(list):
    """An output list that keeps what the toy detectors report (tuples), not what the
    project's own detectors hand the global step."""

    def append(self, item) -> None:
        if type(item) is tuple:
            super().append(item)


def tracker(*extra, thresholds=None) -> ParcelTracker:
    return ParcelTracker(thresholds or Thresholds(), detectors=(*DETECTORS, *extra))


def test_every_detector_implements_the_protocol():
    assert DETECTORS and all(issubclass(kind, Detector) for kind in DETECTORS)
    assert NoMovementDetector in DETECTORS


def test_a_new_detector_gets_its_columns_its_deadline_and_the_trip():
    t, out = tracker(QuietHour), Toys()
    t.on_scan(scan("a1", "A", T0, "PICKUP"), out)
    t.on_scan(scan("a2", "A", T0 + 10 * 60_000), out)
    t.on_scan(scan("a2", "A", T0 + 10 * 60_000), out)  # a repeat never reaches a detector
    assert out == [("NEW", "A")]
    row = t.parcels.find("A")
    assert t.parcels.scans[row] == 2
    t.on_watermark(T0 + 10 * 60_000 + H - 1, out)
    assert out == [("NEW", "A")]
    t.on_watermark(T0 + 10 * 60_000 + H, out)  # its deadline shares the row's one timer
    assert out[-1] == ("QUIET", "A", T0 + 10 * 60_000 + H, 2)


def test_a_freed_row_tells_every_detector_and_comes_back_empty():
    thresholds = Thresholds(dispute_window_days=1, finished_retention_hours=2)
    t, out = tracker(QuietHour, thresholds=thresholds), Toys()
    t.on_scan(scan("a1", "A", T0, "PICKUP"), out)
    t.on_scan(scan("a2", "A", T0 + H // 2, "SIGNED"), out)
    t.on_watermark(T0 + 30 * H, out)  # past the retention of a signed parcel (1 day)
    assert ("GONE", "A", T0 + H // 2 + 24 * H) in out
    assert t.tracked == 0
    assert t.parcels.status[0] == FREE and t.parcels.scans[0] == 0
    t.on_scan(scan("b1", "B", T0 + 30 * H, "PICKUP"), out)
    assert t.parcels.find("B") == 0 and t.parcels.scans[0] == 1  # the freed row, emptied


def test_a_detector_that_keeps_a_row_holds_it_past_its_trip():
    thresholds = Thresholds(dispute_window_days=1, finished_retention_hours=2)
    t, out = tracker(Holder, thresholds=thresholds), []
    t.on_scan(scan("a1", "A", T0, "SIGNED"), out)
    t.on_watermark(T0 + 30 * 24 * H, out)
    assert t.tracked == 1


def test_a_record_no_detector_consumes_is_refused():
    t = ParcelTracker(Thresholds(), detectors=(NoMovementDetector,))
    claim = Dispute(event_id="d1", waybill="A", kind="NOT_RECEIVED", ts=T0)
    with pytest.raises(TypeError, match="no detector consumes Dispute"):
        t.on_record(claim, [])
    assert tracker().on_record(claim, []) is False  # the signing detector takes claims


def test_a_new_detector_survives_a_snapshot_round_trip():
    scans = [scan("a1", "A", T0, "PICKUP"), scan("b1", "B", T0 + H // 4, "PICKUP")]
    whole, out_whole = tracker(QuietHour), []
    split, out_split = tracker(QuietHour), []
    for s in scans:
        whole.on_scan(s, out_whole)
    split.on_scan(scans[0], out_split)
    split = pickle.loads(pickle.dumps(split))
    split.on_scan(scans[1], out_split)
    for t, out in ((whole, out_whole), (split, out_split)):
        t.on_watermark(T0 + 2 * H, out)
    assert out_split == out_whole
    assert [o[0] for o in out_whole].count("QUIET") == 2
