"""Inputs and restarts that must neither crash the job nor change its answers."""

from __future__ import annotations

import pickle

import msgspec
import pytest
from confluent_kafka import OFFSET_END, Producer

from connectors.decode import BatchRouter, ShardDecoder
from connectors.kafka import _PartitionReader, client_config, ensure_topics
from connectors.records import OutputRecord, RawBatch
from flows.config import ConfigError, load_settings
from models.events import Scan
from models.settings import DAY_MS, HOUR_MS, Thresholds
from models.shard import Shard
from models.tracking import ParcelTracker

from conftest import Detections, poison_record

T0 = 1_793_462_400_000


def test_a_timestamp_in_the_wrong_unit_goes_to_the_dead_letter_output():
    router = BatchRouter(4, {"scans": "scans"}, 60_000)
    scan = {"event_id": "e1", "waybill": "W1", "carrier": "SF", "scan_type": "PICKUP"}
    records = [(0, None, msgspec.json.encode({**scan, "ts": T0 * 1000})),
               (1, None, msgspec.json.encode({**scan, "ts": 9_223_372_036_854_775_000}))]
    out = router.route(RawBatch("scans", 0, records, True))
    dead = [msgspec.json.decode(item.value) for item in out if type(item) is OutputRecord]
    assert len(dead) == 2
    assert all("$.ts" in record["error"] for record in dead)


def test_a_record_nested_too_deeply_to_decode_is_dead_lettered_with_the_reason():
    router = BatchRouter(4, {"scans": "scans"}, 60_000)
    good = msgspec.json.encode({"event_id": "e1", "waybill": "W1", "carrier": "SF",
                                "scan_type": "PICKUP", "ts": T0})
    out = router.route(RawBatch("scans", 0, [(0, None, poison_record(10_000)),
                                             (1, None, good)], True))
    (dead,) = [msgspec.json.decode(item.value) for item in out if type(item) is OutputRecord]
    assert dead["offset"] == 0 and "nested too deeply" in dead["error"]
    decoder = ShardDecoder({"scans": "scans"})
    decoded = [decoder.decode(item) for item in out if type(item) is not OutputRecord]
    assert sum(len(item.events) for item, _ in decoded) == 1
    assert not any(letters for _, letters in decoded)


def test_a_dead_lettered_dispute_loses_its_address_and_phone():
    router = BatchRouter(4, {"disputes": "disputes"}, 60_000)
    bad = {"event_id": "d1", "waybill": "W1", "ts": T0, "kind": "LOST_IT",
           "note": "电话１３８１２３４５６７８ 地址杭州市西湖区文三路100号"}
    out = router.route(RawBatch("disputes", 0, [(0, None, msgspec.json.encode(bad))], True))
    decoder = ShardDecoder({"disputes": "disputes"})
    (record,) = [item for item in out if type(item) is OutputRecord] + [
        letter for item in out if type(item) is not OutputRecord
        for letter in decoder.decode(item)[1]]
    text = msgspec.json.decode(record.value)["value"]
    assert "5678" in text and "12345678" not in text and "１２３４５６７８" not in text
    assert "文三路" not in text


def test_inverted_daytime_hours_are_a_configuration_error():
    try:
        load_settings(environ={"PARCELWATCH_THRESHOLDS__DAYTIME_START_HOUR": "22",
                               "PARCELWATCH_THRESHOLDS__DAYTIME_END_HOUR": "7"})
    except ConfigError as error:
        assert "daytime_start_hour" in str(error)
    else:
        raise AssertionError("accepted")


def scan(event_id: str, waybill: str, ts: int, kind: str = "ARRIVE") -> Scan:
    return Scan(event_id=event_id, waybill=waybill, carrier="SF", scan_type=kind, ts=ts)


def test_a_stall_past_the_stale_horizon_gives_the_same_answer_however_it_is_batched():
    def run(batches: list[list[Scan]]) -> list[tuple]:
        detector, out = ParcelTracker(Thresholds()), Detections()
        for batch in batches:
            for item in batch:
                detector.on_scan(item, out)
            detector.on_watermark(max(s.ts for s in batch) - 10 * 60_000, out)
        return [(d.waybill, d.status, d.event_ts) for d in out]

    scans = [scan("a", "W1", T0, "PICKUP"), scan("b", "W2", T0 + 31 * DAY_MS, "PICKUP"),
             scan("c", "W1", T0 + 31 * DAY_MS + HOUR_MS)]
    assert run([scans]) == run([[s] for s in scans])


def test_a_partition_started_at_its_end_resumes_after_a_restart_without_a_gap(broker):
    config = client_config(broker.bootstrap)
    ensure_topics(config, ["resume-gap"], 1, 10)
    reader = _PartitionReader(config, "scans", "resume-gap", 0, OFFSET_END, 100, True)
    while not any(batch.caught_up for batch in reader.next_batch()):
        pass  # consume(timeout=0) returns at once; the loop ends at partition EOF
    saved = reader.snapshot()
    reader.close()
    producer = Producer(config)
    for i in range(3):
        producer.produce("resume-gap", b"{}", str(i).encode())
    assert producer.flush(10) == 0
    resumed = _PartitionReader(config, "scans", "resume-gap", 0, saved, 100, True)
    records = []
    while not resumed.finished:
        for batch in resumed.next_batch():
            records.extend(batch.records)
    resumed.close()
    assert [offset for offset, _, _ in records] == [0, 1, 2]


def test_recovery_state_of_another_layout_is_refused_with_the_reason():
    from flows.dataflow import restored, snapshot_of

    shard = Shard(Thresholds(), ["scans/0"])
    assert type(restored(snapshot_of(shard))) is Shard
    for older in (pickle.dumps(shard), pickle.dumps((4, shard)), b"not a pickle"):
        with pytest.raises(RuntimeError, match="start with an empty --state-dir"):
            restored(older)
