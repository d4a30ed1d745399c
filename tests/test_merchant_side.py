"""The merchant's side (contract 0.5): shipments (PICKUP_OVERDUE, PROMISE_MISSED) and merchant
actions (DISPUTE_UNANSWERED), through `replay` and through the real broker, with the records
read in either order and some of them late; the global step's SLA rule on its own."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from prometheus_client import CollectorRegistry
from test_kafka_run import prepare, produce_records, wait_for

from alerts.metrics import Metrics
from connectors.kafka import client_config, read_topic
from flows.dataflow import RecordMaker
from models.aggregate import Aggregate
from models.answers import DISPUTE_UNANSWERED, MerchantResponse
from models.detection import Detection
from models.events import MerchantAction
from models.ids import alert_id
from models.messages import DisputeCandidate, ShardTick
from models.settings import HOUR_MS, Thresholds

from conftest import CLI, cli, cli_env, read_jsonl

T0 = 1_793_462_400_000  # a midnight in Asia/Shanghai
H = HOUR_MS


def scan(waybill: str, hours: float, kind: str, **fields) -> dict:
    return {"event_id": f"{waybill}-{kind}-{hours}", "waybill": waybill, "carrier": "SF",
            "scan_type": kind, "ts": T0 + round(hours * H), "hub_id": "SF-HZ01",
            "city": "杭州", **fields}


def signed(waybill: str, hours: float) -> dict:
    return scan(waybill, hours, "SIGNED", signer="LOCKER", proof="NONE")


def shipment(waybill: str, hours: float, promised: float | None = None) -> dict:
    record = {"event_id": f"ship-{waybill}", "waybill": waybill, "carrier": "SF",
              "merchant_id": f"M-{waybill}", "order_id": f"O-{waybill}",
              "ts": T0 + round(hours * H)}
    if promised is not None:
        record["promised_delivery_ts"] = T0 + round(promised * H)
    return record


def claim(waybill: str, hours: float) -> dict:
    return {"event_id": f"claim-{waybill}", "waybill": waybill, "ts": T0 + round(hours * H),
            "kind": "NOT_RECEIVED", "merchant_id": f"M-{waybill}", "order_id": f"O-{waybill}"}


def answer(of: str, hours: float, **naming) -> dict:
    """`of`'s merchant's answer, naming the alert as given (by waybill, alert id, type)."""
    return {"event_id": f"answer-{of}", "merchant_id": f"M-{of}",
            "action": "CONTACT_BUYER", "ts": T0 + round(hours * H),
            "note": "已联系买家 138 0013 8000", **naming}


def story() -> tuple[dict[str, list[dict]], dict[str, list[dict]], set[tuple]]:
    """Records in event-time order, records read late (each input's own, at its end), and
    the alerts the contract's definitions give: (type, status, waybill, hours)."""
    records = {"scans": [], "disputes": [], "shipments": [], "merchant-actions": []}
    late = {name: [] for name in records}
    records["shipments"] += [
        shipment("A", 0, promised=48),    # picked up at 2 h, signed at 30 h: nothing
        shipment("B", 0, promised=48),    # picked up at 30 h, signed at 60 h
        shipment("C", 1, promised=72),    # never scanned
        shipment("G", 5)]                 # picked up at 6 h, that scan read late
    records["scans"] += [scan("A", 2, "PICKUP"), signed("A", 30), scan("B", 30, "PICKUP"),
                         signed("B", 60)]
    late["scans"].append(scan("G", 6, "PICKUP"))
    # D: claimed at 20 h, answered at 50 h; E: answered at 30 h, by the alert's id;
    # H: answered at 22 h, read late; K: the answer names another type, so none.
    for waybill in "DEHK":
        records["scans"] += [scan(waybill, 1, "PICKUP", merchant_id=f"M-{waybill}",
                                  order_id=f"O-{waybill}"), signed(waybill, 10)]
        records["disputes"].append(claim(waybill, 20))
    records["merchant-actions"] += [
        answer("D", 50, waybill="D", alert_type="SIGNED_DISPUTED"),
        answer("E", 30, alert_id=alert_id("SIGNED_DISPUTED", "E", T0 + 20 * H)),
        answer("K", 25, waybill="K", alert_type="NO_MOVEMENT")]
    late["merchant-actions"].append(answer("H", 22, waybill="H"))
    # Other parcels keep event time moving to 120 h, each signed within the hour, and
    # their merchants acknowledge alerts of their own as often: every input is read at
    # about the pace of event time, so what comes at an input's end is read late.
    for n in range(120):
        records["scans"] += [scan(f"F{n}", n, "PICKUP", merchant_id="MF"), signed(f"F{n}", n + 1)]
        records["merchant-actions"] += [
            {**answer(f"F{n}", n + 0.5, alert_id=f"elsewhere-{n}"), "action": "ACKNOWLEDGED"},
            {**answer(f"F{n}-again", n + 1, alert_id=f"elsewhere-{n}"), "action": "ACKNOWLEDGED"}]
    for stream in records.values():
        stream.sort(key=lambda r: r["ts"])
    expected = {
        ("PICKUP_OVERDUE", "FIRING", "B", 24), ("PICKUP_OVERDUE", "RESOLVED", "B", 30),
        ("PROMISE_MISSED", "FIRING", "B", 48), ("PROMISE_MISSED", "RESOLVED", "B", 60),
        ("PICKUP_OVERDUE", "FIRING", "C", 25), ("PROMISE_MISSED", "FIRING", "C", 72),
        # G's pickup was not read by 29 h: overdue, then resolved by the late scan.
        ("PICKUP_OVERDUE", "FIRING", "G", 29), ("PICKUP_OVERDUE", "RESOLVED", "G", 6),
        (DISPUTE_UNANSWERED, "FIRING", "D", 44), (DISPUTE_UNANSWERED, "RESOLVED", "D", 50),
        (DISPUTE_UNANSWERED, "FIRING", "H", 44), (DISPUTE_UNANSWERED, "RESOLVED", "H", 22),
        (DISPUTE_UNANSWERED, "FIRING", "K", 44),
    }
    return records, late, expected


MERCHANT_TYPES = ("PICKUP_OVERDUE", "PROMISE_MISSED", DISPUTE_UNANSWERED)


def merchant_alerts(alerts: list[dict]) -> set[tuple]:
    return {(a["type"], a["status"], a["waybill"], (a["event_ts"] - T0) / H)
            for a in alerts if a["type"] in MERCHANT_TYPES}


def written(records: dict[str, list[dict]], late: dict[str, list[dict]], directory) -> list:
    """The inputs as JSON Lines files, late records last; `replay`'s options for them."""
    directory.mkdir()
    options = []
    for name, stream in records.items():
        path = directory / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                for r in stream + late[name]), encoding="utf-8")
        options += [f"--{name}", path]
    return options


@pytest.mark.parametrize("batch_size", [2, 7])
def test_replay_raises_each_merchant_alert_at_its_time(tmp_path, batch_size):
    records, late, expected = story()
    out = tmp_path / "out"
    result = cli("replay", *written(records, late, tmp_path / "in"), "--out", out,
                 env=cli_env(batch_size=batch_size))
    assert result.returncode == 0, result.stderr
    alerts = read_jsonl(out / "alerts.jsonl")
    assert merchant_alerts(alerts) == expected
    by_type = {(a["type"], a["status"], a["waybill"]): a for a in alerts}
    unanswered = by_type[DISPUTE_UNANSWERED, "FIRING", "D"]
    assert unanswered["severity"] == "CRITICAL"
    assert unanswered["details"]["sla_alert_id"] == alert_id("SIGNED_DISPUTED", "D",
                                                             T0 + 20 * H)
    assert unanswered["details"]["hours_waited"] == 24
    resolved = by_type[DISPUTE_UNANSWERED, "RESOLVED", "D"]
    assert resolved["alert_id"] == unanswered["alert_id"]
    overdue = by_type["PICKUP_OVERDUE", "FIRING", "C"]
    assert (overdue["merchant_id"], overdue["order_id"], overdue["carrier"]) == (
        "M-C", "O-C", "SF")  # from the shipment: no scan ever named them
    missed = by_type["PROMISE_MISSED", "FIRING", "B"]
    assert missed["details"]["last_scan_type"] == "PICKUP"  # its last scan by 48 h
    notes = {(n["type"], n["waybill"]): n for n in read_jsonl(
        out / "merchant-notifications.jsonl")}
    assert next(a["code"] for a in notes["PICKUP_OVERDUE", "C"]["suggested_actions"]) == (
        "URGE_PICKUP")
    stepped_in = notes[DISPUTE_UNANSWERED, "D"]
    assert "平台已介入" in stepped_in["title"] and "138" not in json.dumps(stepped_in)


@pytest.mark.parametrize("merchant_first", [True, False])
def test_the_broker_raises_them_whichever_input_is_written_first_and_late_records_resolve(
        broker, merchant_first):
    """The job runs live: the late records are written once it has raised what their
    absence means (G overdue, H unanswered), so they are read behind the watermark."""
    env_settings, topics = prepare(broker, f"merchant-{merchant_first}", partitions=2)
    records, late, expected = story()
    merchant = ("shipments", "merchant-actions")
    names = sorted(records, key=lambda name: (name in merchant) != merchant_first)
    config = client_config(broker.bootstrap)

    def encoded(streams: dict[str, list[dict]]) -> list:
        return [(name, record.get("waybill") or record["merchant_id"],
                 json.dumps(record, ensure_ascii=False).encode())
                for name in names for record in streams[name]]

    def found() -> set[tuple]:
        return merchant_alerts(json.loads(value)
                               for _, value, _ in read_topic(config, topics["alerts"], 5))

    produce_records(config, topics["inputs"], encoded(records))
    job = subprocess.Popen(
        [CLI, "run", "--brokers", broker.bootstrap, "--from-beginning"],
        env=cli_env(**env_settings, recovery="false", idle_advance="false", batch_size="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: {("PICKUP_OVERDUE", "FIRING", "G", 29),
                          (DISPUTE_UNANSWERED, "FIRING", "H", 44)} <= found(), 120,
                 "the alerts the late records answer")
        produce_records(config, topics["inputs"], encoded(late))
        wait_for(lambda: expected <= found(), 120, "the late records' resolutions")
    finally:
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
    assert job.returncode == 0, stderr
    assert found() == expected
    assert not read_topic(config, topics["dead-letter"], 5)


def test_a_bad_shipment_or_action_is_dead_lettered_with_its_reason(tmp_path):
    records, late, _ = story()
    records["shipments"].append({"event_id": "bad-1", "waybill": "Z", "ts": T0})  # no carrier
    records["merchant-actions"].append({**answer("Z", 3), "action": "SHRUG"})
    out = tmp_path / "out"
    result = cli("replay", *written(records, late, tmp_path / "in"), "--out", out)
    assert result.returncode == 0, result.stderr
    letters = {d["source_topic"]: d for d in read_jsonl(out / "dead-letter.jsonl")}
    assert "carrier" in letters["shipments"]["error"]
    assert "action" in letters["merchant-actions"]["error"]
    assert "138 0013 8000" not in letters["merchant-actions"]["value"]


# -- the SLA rule in the global step ----------------------------------------------------------

def candidate(waybill: str, hours: float) -> DisputeCandidate:
    return DisputeCandidate(f"claim-{waybill}", T0 + round(hours * H), waybill, "SF",
                            f"M-{waybill}", None, None, T0, "LOCKER", "NONE", None, (), None)


def action(waybill: str | None, hours: float, **naming) -> MerchantAction:
    return MerchantAction(event_id=f"a-{waybill}-{hours}", merchant_id="M", ts=T0 + round(
        hours * H), action="ACKNOWLEDGED", waybill=waybill, **naming)


def judged(*batches: list, until: float) -> list:
    """The global step fed each batch as one shard's, then its watermark moved to `until`."""
    step = Aggregate(Thresholds(), shards=1)
    out = []
    for batch in batches:
        out += step.apply([batch])
    return out + step.apply([[ShardTick(0, T0 + round(until * H), False)]])


def unanswered(out: list) -> list[tuple[str, float]]:
    return [(d.status, (d.event_ts - T0) / H) for d in out
            if type(d) is Detection and d.type == DISPUTE_UNANSWERED]


def test_an_answer_at_the_very_end_of_the_wait_is_in_time():
    out = judged([candidate("W", 20), action("W", 44)], until=100)
    assert unanswered(out) == []
    assert [r.seconds for r in out if type(r) is MerchantResponse] == [24 * 3600]


def test_an_answer_read_before_its_claim_answers_it_when_it_opens():
    out = judged([action("W", 30)], [candidate("W", 20)], until=100)
    assert unanswered(out) == []


def test_an_answer_from_before_the_claim_does_not_answer_it():
    out = judged([action("W", 19), candidate("W", 20)], until=100)
    assert unanswered(out) == [("FIRING", 44)]


def test_the_platform_steps_in_and_the_late_answer_resolves_it():
    out = judged([candidate("W", 20)], [ShardTick(0, T0 + 45 * H, False)],
                 [action(None, 70, alert_id=alert_id("SIGNED_DISPUTED", "W", T0 + 20 * H))],
                 until=100)
    assert unanswered(out) == [("FIRING", 44), ("RESOLVED", 70)]


def test_the_wait_applies_only_to_the_configured_types():
    step = Aggregate(Thresholds(sla_alert_types=()), shards=1)
    out = step.apply([[candidate("W", 20), ShardTick(0, T0 + 100 * H, False)]])
    assert unanswered(out) == []


def test_response_times_reach_the_histogram():
    metrics = Metrics(CollectorRegistry())
    maker = RecordMaker(notifier=None, metrics=metrics)
    assert maker(("aggregate", MerchantResponse(7200.0))) == []
    assert metrics.registry.get_sample_value(
        "parcelwatch_merchant_response_seconds_bucket", {"le": "7200.0"}) == 1
    assert metrics.registry.get_sample_value(
        "parcelwatch_merchant_response_seconds_bucket", {"le": "3600.0"}) == 0
