"""Notification texts are written for people: no code, a risk only where one means
something, places by city and the carrier's own hub, and English throughout in `en`."""

from __future__ import annotations

import re
from typing import get_args

import msgspec
import pytest

from alerts.notifications import Notifier, romanised
from alerts.records import Alert
from models import events
from models.risk import WEIGHTS, risk_score

# Every code an alert's details may carry into a text (carrier codes stay inside hub ids).
CODES = {code for kind in (events.ScanType, events.Signer, events.Proof,
                           events.ExceptionCode, events.DisputeKind, events.WeatherKind)
         for code in get_args(kind)} | set(WEIGHTS) | {"WEATHER", "UNKNOWN"}
CODE = re.compile(r"(?<![A-Za-z0-9_-])(" + "|".join(sorted(CODES, key=len, reverse=True))
                  + r")(?![A-Za-z0-9_-])")
CJK = re.compile(r"[\u2e80-\u9fff\uff00-\uffef]")
SIGNED_TS, DISPUTE_TS = 1_793_462_400_000, 1_793_548_800_000


def claim(signer: str, proof: str, factors: list[str]) -> Alert:
    return Alert(alert_id="a1", type="SIGNED_DISPUTED", severity="WARNING", status="FIRING",
                 waybill="JT0001", carrier="JT", merchant_id="M1",
                 order_id="O1", event_ts=DISPUTE_TS, emitted_at=DISPUTE_TS,
                 details={"signed_ts": SIGNED_TS, "signer": signer, "proof": proof,
                          "hub_id": "JT-012", "dispute_ts": DISPUTE_TS,
                          "risk": risk_score(factors), "risk_factors": factors,
                          "buyer_note": "没收到"})


def texts(note) -> str:
    return note.title + "\n" + note.body.split("Buyer's note:")[0].split("买家留言：")[0]


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("signer", get_args(events.Signer))
@pytest.mark.parametrize("proof", get_args(events.Proof))
def test_a_claim_names_every_signer_proof_and_factor_in_words(locale, signer, proof):
    [note] = Notifier(locale=locale).for_alert(claim(signer, proof, sorted(WEIGHTS)))
    assert CODE.search(note.title + note.body) is None, note.body
    if locale == "en":
        assert CJK.search(texts(note)) is None, note.body  # the buyer's own words aside


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_a_claim_with_nothing_against_it_shows_no_risk_at_all(locale):
    [note] = Notifier(locale=locale).for_alert(claim("RECIPIENT", "PHOTO", []))
    assert "0%" not in note.title + note.body and "风险" not in note.title + note.body
    assert "Worth checking" not in note.body and "值得注意" not in note.body
    assert " -" not in note.body and "：-" not in note.body


def test_a_likely_claim_says_so_and_why_in_the_merchants_words():
    [zh] = Notifier().for_alert(claim("LOCKER", "NONE", ["SIGNER_LOCKER", "PROOF_NONE",
                                                          "FAR_FROM_CONSIGNEE"]))
    assert zh.title.endswith("（很可能确未收到）")
    assert "值得注意：放入快递柜，无人当面签收；没有签收凭证；签收地点远离收货地址。" in zh.body
    assert "签收方式：放入快递柜，凭证：无" in zh.body
    assert "极兔网点（JT-012）" in zh.body
    [en] = Notifier(locale="en").for_alert(claim("LOCKER", "NONE", ["PROOF_NONE"]))
    assert en.title.endswith(" (possibly genuine)")
    assert "Worth checking: there is no proof of delivery." in en.body
    assert "J&T Express's hub JT-012" in en.body


def test_a_delay_cluster_names_the_city_not_another_carriers_hub():
    cluster = Alert(alert_id="c1", type="WEATHER_DELAY_CLUSTER", severity="CRITICAL",
                    status="FIRING", waybill=None, carrier=None,
                    merchant_id=None, order_id=None, event_ts=SIGNED_TS, emitted_at=SIGNED_TS,
                    details={"city": "杭州", "hub_id": "ZTO-040", "parcel_count": 7,
                             "window_start_ts": SIGNED_TS, "cause": "UNKNOWN"})
    parcels = [("M1", "STO1", "O1")]
    [zh] = Notifier().for_alert(cluster, parcels=parcels)
    [en] = Notifier(locale="en").for_alert(cluster, parcels=parcels)
    assert "ZTO" not in zh.title + zh.body and "杭州附近" in zh.body
    assert "around Hangzhou" in en.body and CJK.search(en.title + en.body) is None


def test_place_names_are_romanised_as_one_word():
    assert [romanised(c) for c in ("武汉", "重庆", "石家庄", "Shenzhen")] == [
        "Wuhan", "Chongqing", "Shijiazhuang", "Shenzhen"]


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_no_notification_of_a_generated_scenario_shows_a_code(replayed, locale):
    """Every alert of the session's scenario, as its merchants would read it."""
    notifier, seen = Notifier(locale=locale), 0
    by_alert: dict[str, list] = {}
    for note in replayed["merchant-notifications"]:
        by_alert.setdefault(note["alert_id"], []).append(
            (note["merchant_id"], note["waybill"], note["order_id"]))
    for record in replayed["alerts"]:
        alert = msgspec.convert(record, Alert)
        recipients = by_alert.get(alert.alert_id)
        parcels = recipients if alert.type == "WEATHER_DELAY_CLUSTER" else None
        merchants = ([m for m, _, _ in recipients or []]
                     if alert.type == "ROUTE_DAMAGE_RATE" else None)
        for note in notifier.for_alert(alert, merchants=merchants, parcels=parcels):
            seen += 1
            assert CODE.search(note.title + note.body) is None, note.body
            assert "{" not in note.title + note.body
            if locale == "en":
                assert CJK.search(texts(note)) is None, note.body
    assert seen >= len(replayed["merchant-notifications"]) > 100
