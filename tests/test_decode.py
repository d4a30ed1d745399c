"""Decoding, dead letters and shard routing: connectors.decode (the router reads each record's
head, the shard decodes it in full)."""

from __future__ import annotations

import json
import pickle
import time

from connectors.decode import VALUE_LIMIT, BatchRouter, ShardDecoder
from connectors.records import OutputRecord, RawBatch
from models.events import Scan, WeatherWarning
from models.shard import ShardInput, shard_of

SHARDS = 8
TOPICS = {"scans": "prod.scans", "disputes": "prod.disputes", "weather": "prod.weather"}
TICK = 60_000
T0 = 1_700_000_000_000
DEAD_LETTER_FIELDS = {"source_topic", "partition", "offset", "key", "value", "error", "ts"}


def router(**kwargs) -> BatchRouter:
    return BatchRouter(kwargs.pop("shards", SHARDS), TOPICS, kwargs.pop("tick", TICK), **kwargs)


def scan_json(waybill: str, ts: int, **fields) -> bytes:
    record = {"event_id": f"{waybill}-{ts}", "waybill": waybill, "carrier": "SF",
              "scan_type": "ARRIVE", "ts": ts, **fields}
    return json.dumps(record, ensure_ascii=False).encode()


def batch(values: list[bytes | None], partition: int = 0, caught_up: bool = False,
          topic: str = "scans", first_offset: int = 0) -> RawBatch:
    return RawBatch(topic, partition, [(first_offset + i, b"key", v)
                                       for i, v in enumerate(values)], caught_up)


def routed_to(waybill: str) -> int:
    return shard_of(waybill, SHARDS)


def decoded(items) -> tuple[dict[int, ShardInput], list[OutputRecord]]:
    """The router's output as the shards see it after their decode, by shard, and every dead
    letter (the router's and the shards')."""
    decoder = ShardDecoder(TOPICS)
    inputs: dict[int, ShardInput] = {}
    letters = [item for item in items if type(item) is OutputRecord]
    for item in items:
        if type(item) is ShardInput:
            assert item.shard not in inputs
            assert all(type(record) is tuple and len(record) == 3 for record in item.events)
            inputs[item.shard], dead = decoder.decode(item)
            letters += dead
    return inputs, letters


def dead_letters(items) -> list[dict]:
    out = []
    for record in decoded(items)[1]:
        assert record.topic == "dead-letter"
        out.append(json.loads(record.value))
    return sorted(out, key=lambda d: d["offset"])


def shard_inputs(items) -> dict[int, ShardInput]:
    return decoded(items)[0]


def waybills_for_distinct_shards(count: int) -> list[str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < count:
        found.setdefault(shard_of(f"SF{i:08d}", SHARDS), f"SF{i:08d}")
        i += 1
    return list(found.values())


# -- dead letters ---------------------------------------------------------------------------


def test_bad_records_go_to_the_dead_letter_topic_with_a_reason():
    r = router()
    good = [scan_json("SF1", T0), scan_json("SF2", T0 + 1)]
    missing = json.dumps({"event_id": "e3", "waybill": "SF3", "carrier": "SF",
                          "scan_type": "ARRIVE"}).encode()
    bad_enum = scan_json("SF4", T0, scan_type="TELEPORTED")
    wrong_type = scan_json("SF5", "yesterday")
    raw = batch([good[0], b"{not json", missing, bad_enum, wrong_type, good[1]], partition=3,
                first_offset=100)
    before = int(time.time() * 1000)
    items = r.route(raw)
    letters = dead_letters(items)  # the shards' decode makes some of them
    after = int(time.time() * 1000)
    assert [d["offset"] for d in letters] == [101, 102, 103, 104]
    for d in letters:
        assert set(d) >= DEAD_LETTER_FIELDS
        assert d["source_topic"] == "prod.scans"  # the configured topic name
        assert d["partition"] == 3
        assert d["key"] == "key"
        assert before <= d["ts"] <= after
        assert d["error"]
    by_offset = {d["offset"]: d for d in letters}
    assert by_offset[101]["value"] == "{not json"
    assert "ts" in by_offset[102]["error"]
    assert by_offset[102]["value"] == missing.decode()
    assert "scan_type" in by_offset[103]["error"] and "TELEPORTED" in by_offset[103]["error"]
    assert "ts" in by_offset[104]["error"]
    assert json.loads(by_offset[104]["value"])["ts"] == "yesterday"
    # The valid scans still go through.
    events = [e for si in shard_inputs(items).values() for e in si.events]
    assert sorted(e.waybill for e in events) == ["SF1", "SF2"]


def test_other_bad_shapes():
    r = router()
    values = [
        b"[1, 2, 3]",                                          # not an object
        None,                                                  # no value at all
        scan_json("", T0),                                     # empty waybill
        scan_json("SF1", -5),                                  # negative ts
        scan_json("SF1", T0, lat=123.0),                       # latitude out of range
        b"\xff\xfe",                                            # not UTF-8, not JSON
    ]
    letters = dead_letters(r.route(batch(values)))
    assert len(letters) == len(values)
    errors = [d["error"] for d in letters]
    assert "waybill" in errors[2] and "ts" in errors[3] and "lat" in errors[4]
    assert letters[1]["value"] is None


def test_invalid_utf8_inside_a_json_string_is_a_dead_letter_not_a_crash():
    # Contract: "The job never stops because of input". One byte that is not UTF-8 inside
    # an otherwise well-formed record (e.g. a GBK-encoded city name).
    value = '{"event_id": "e1", "waybill": "SF1", "carrier": "SF", "scan_type": "ARRIVE", ' \
            '"ts": 1700000000000, "city": "广州"}'.encode("gbk")
    items = router().route(batch([value, scan_json("SF2", T0)]))
    [d] = dead_letters(items)
    assert d["offset"] == 0 and d["error"]
    assert [e.waybill for si in shard_inputs(items).values() for e in si.events] == ["SF2"]


def test_dead_letter_record_key_and_json():
    items = router().route(RawBatch("scans", 1, [(7, None, b"oops")], False))
    [record] = [item for item in items if type(item) is OutputRecord]
    d = json.loads(record.value)
    assert d["key"] is None and record.key is None
    assert d["offset"] == 7 and d["value"] == "oops"


def test_phone_numbers_in_a_bad_record_are_masked():
    value = json.dumps({"event_id": "e1", "waybill": "SF1", "carrier": "SF",
                        "scan_type": "ARRIVE", "note": "买家电话 13812341234"},
                       ensure_ascii=False).encode()
    raw = RawBatch("scans", 0, [(0, b"13987654321", value)], False)
    [d] = dead_letters(router().route(raw))
    assert "13812341234" not in d["value"]
    assert "138****1234" in d["value"]
    assert "买家电话" in d["value"]
    assert d["key"] == "139****4321"


def test_phone_numbers_in_an_enum_error_are_masked():
    [d] = dead_letters(router().route(batch([scan_json("SF1", T0, scan_type="13812341234")])))
    assert "13812341234" not in d["error"] and "13812341234" not in d["value"]
    assert "scan_type" in d["error"]


def test_long_values_are_cut_at_4_kib():
    value = b'{"event_id": "e1", "note": "' + b"x" * 10_000 + b'"}'
    [d] = dead_letters(router().route(batch([value])))
    assert VALUE_LIMIT == 4096
    assert d["value"] == value[:4096].decode()
    short = b"{" * 100
    [d] = dead_letters(router().route(batch([short])))
    assert d["value"] == short.decode()


def test_cutting_does_not_unmask_a_phone_number_across_the_limit():
    # A phone number straddling the 4 KiB cut: what is left of it must not show the digits
    # that masking hides (138****1234 hides the middle four).
    value = b'{"note": "' + b"x" * (VALUE_LIMIT - 10 - 10) + b" 13812341234 and more"
    assert value.index(b"13812341234") < VALUE_LIMIT < value.index(b"13812341234") + 11
    [d] = dead_letters(router().route(batch([value])))
    assert len(d["value"]) <= VALUE_LIMIT
    assert "1381234" not in d["value"]


def test_weather_warnings_go_to_the_global_step_and_never_to_shards():
    r = router()
    weather_ok = json.dumps({"event_id": "w1", "kind": "TYPHOON", "lat": 22.5, "lon": 114.1,
                             "radius_km": 80, "start_ts": T0, "end_ts": T0 + 1,
                             "severity": 4}).encode()
    items = r.route(batch([weather_ok, b"{}"], topic="weather"))
    assert [type(item) for item in items] == [WeatherWarning, OutputRecord]
    assert items[0] == WeatherWarning(event_id="w1", kind="TYPHOON", lat=22.5, lon=114.1,
                                         radius_km=80, start_ts=T0, end_ts=T0 + 1, severity=4)
    assert dead_letters(items)[0]["source_topic"] == "prod.weather"


def test_counts_callback():
    seen = []
    r = router(counts=lambda topic, outcome, n: seen.append((topic, outcome, n)))
    r.route(batch([scan_json("SF1", T0), b"nope"]))
    assert ("scans", "rejected", 1) in seen


# -- routing to shards ------------------------------------------------------------------------


def test_valid_events_go_to_their_shard():
    waybills = waybills_for_distinct_shards(5) + [f"JD{i}" for i in range(20)]
    values = [scan_json(wb, T0 + i) for i, wb in enumerate(waybills)]
    inputs = shard_inputs(router().route(batch(values, partition=2)))
    routed = 0
    for shard, si in inputs.items():
        assert si.partition == "scans/2"
        for event in si.events:
            assert isinstance(event, Scan)
            assert shard == routed_to(event.waybill)
            routed += 1
    assert routed == len(waybills)
    # Events keep their read order within a shard.
    for si in inputs.values():
        assert [e.ts for e in si.events] == sorted(e.ts for e in si.events)


def test_disputes_are_routed_like_scans():
    value = json.dumps({"event_id": "d1", "waybill": "SF77", "ts": T0,
                        "kind": "NOT_RECEIVED"}).encode()
    inputs = shard_inputs(router().route(batch([value], topic="disputes")))
    shard = routed_to("SF77")
    assert [e.waybill for e in inputs[shard].events] == ["SF77"]
    assert inputs[shard].partition == "disputes/0"


def test_first_batch_of_a_partition_goes_to_every_shard():
    [wb] = waybills_for_distinct_shards(1)
    inputs = shard_inputs(router().route(batch([scan_json(wb, T0)])))
    assert set(inputs) == set(range(SHARDS))
    for shard, si in inputs.items():
        assert si.max_ts == T0 and si.caught_up is False
        assert len(si.events) == (1 if shard == routed_to(wb) else 0)


def test_first_batch_without_events_still_reaches_every_shard():
    inputs = shard_inputs(router().route(batch([], caught_up=True)))
    assert set(inputs) == set(range(SHARDS))
    assert all(si.max_ts is None and si.caught_up for si in inputs.values())


def test_later_small_batches_go_only_to_shards_with_events():
    r = router()
    a, b = waybills_for_distinct_shards(2)
    r.route(batch([scan_json(a, T0)]))
    inputs = shard_inputs(r.route(batch([scan_json(b, T0 + 1_000), scan_json(b, T0 + 500)])))
    assert set(inputs) == {routed_to(b)}
    [si] = inputs.values()
    assert si.max_ts == T0 + 1_000  # the running max, not the last event's ts
    assert [e.ts for e in si.events] == [T0 + 1_000, T0 + 500]
    # A batch of only bad records, or an empty one, sends nothing to the shards.
    assert shard_inputs(r.route(batch([b"bad"]))) == {}
    assert r.route(batch([])) == []


def test_progress_past_the_tick_goes_to_every_shard():
    r = router()
    a, b = waybills_for_distinct_shards(2)
    r.route(batch([scan_json(a, T0)]))
    assert len(shard_inputs(r.route(batch([scan_json(b, T0 + TICK - 1)])))) == 1
    inputs = shard_inputs(r.route(batch([scan_json(b, T0 + TICK)])))
    assert len(inputs) == SHARDS
    assert all(si.max_ts == T0 + TICK for si in inputs.values())


def test_caught_up_change_goes_to_every_shard():
    r = router()
    a, b = waybills_for_distinct_shards(2)
    r.route(batch([scan_json(a, T0)]))
    inputs = shard_inputs(r.route(batch([scan_json(b, T0 + 1)], caught_up=True)))
    assert len(inputs) == SHARDS
    assert all(si.caught_up and si.max_ts == T0 + 1 for si in inputs.values())
    # Still caught up: nothing new to tell every shard.
    assert shard_inputs(r.route(batch([], caught_up=True))) == {}
    # New records: no longer caught up, every shard hears it.
    inputs = shard_inputs(r.route(batch([scan_json(a, T0 + 2)], caught_up=False)))
    assert len(inputs) == SHARDS
    assert not any(si.caught_up for si in inputs.values())


def test_partitions_are_tracked_separately():
    r = router()
    [wb] = waybills_for_distinct_shards(1)
    r.route(batch([scan_json(wb, T0)], partition=0))
    # The first batch of partition 1 reaches every shard even though 0 was seen.
    inputs = shard_inputs(r.route(batch([scan_json(wb, T0 + 5)], partition=1)))
    assert len(inputs) == SHARDS
    assert all(si.partition == "scans/1" and si.max_ts == T0 + 5 for si in inputs.values())


def test_only_bytes_and_plain_tuples_travel_to_the_shards():
    values = [scan_json(wb, T0) for wb in waybills_for_distinct_shards(3)]
    items = router().route(batch(values))
    for item in items:
        assert type(item) is ShardInput
        for offset, key, value in item.events:
            assert type(offset) is int and type(key) is bytes and type(value) is bytes
        assert b"models.events" not in pickle.dumps(item)  # no decoded record crosses


def test_records_are_routed_by_their_waybill_whatever_their_key():
    wb = "SF123"
    records = [(0, b"not-the-waybill", scan_json(wb, T0)), (1, None, scan_json(wb, T0 + 1)),
               (2, wb.encode(), scan_json(wb, T0 + 2))]
    inputs = shard_inputs(router().route(RawBatch("scans", 0, records, False)))
    assert [e.ts for e in inputs[routed_to(wb)].events] == [T0, T0 + 1, T0 + 2]


def test_a_record_with_a_good_head_and_a_bad_body_is_dead_lettered_by_its_shard():
    items = router().route(batch([scan_json("SF1", T0, lat=123.0)]))  # an optional field
    assert not any(type(item) is OutputRecord for item in items)  # the head was fine
    [d] = dead_letters(items)
    assert "lat" in d["error"] and d["source_topic"] == "prod.scans"


def test_addresses_and_phones_in_any_dead_letter_are_masked():
    value = scan_json("SF1", T0, scan_type="LOST", city="杭州市西湖区文三路100号",
                      note="电话 131 - 2345 - 6789")
    [d] = dead_letters(router().route(batch([value])))
    assert "文三路" not in d["value"] and "[address]" in d["value"]
    assert "2345" not in d["value"] and "131 - **** - 6789" in d["value"]


def test_a_record_missing_a_required_field_never_moves_event_time():
    r = router()
    good = scan_json("SF1", T0)
    far = json.dumps({"waybill": "SF2", "ts": 4_102_444_800_000}).encode()  # no scan fields
    items = r.route(batch([good, far]))
    [letter] = [item for item in items if type(item) is OutputRecord]  # dead at the router
    assert json.loads(letter.value)["offset"] == 1
    assert {si.max_ts for si in shard_inputs(items).values()} == {T0}


def test_addresses_in_a_dead_letters_key_and_error_are_dropped():
    value = scan_json("SF1", T0, scan_type="上海市浦东新区张江路100号 13812345678")
    raw = RawBatch("scans", 0, [(0, "北京市朝阳区建国路88号".encode(), value)], False)
    [d] = dead_letters(router().route(raw))
    for field in ("key", "error", "value"):
        assert "张江路" not in d[field] and "建国路" not in d[field], (field, d[field])
    assert "13812345678" not in d["error"]
