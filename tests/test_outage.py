"""A carrier's feed goes dark for 4 days, then arrives as a backfill (contract section 3,
FEED_SILENT), and a second scenario is read weeks behind the watermark, its claims with it
(section 2, late records): one alert for the outage, no parcel told it stalled when the
backfill shows it moved, every claim judged; through `replay` and through the real broker,
each against the scenario's truth (what is read late depends on the read order, so the two
need not match record for record)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks.scenario import DEFAULT_OUTAGE, Backfill, Scenario
from benchmarks.writers import produce, write_files
from connectors.kafka import client_config, ensure_topics, read_topic

from conftest import (
    CLI,
    SESSION_SCENARIO,
    cli,
    cli_env,
    read_jsonl,
    replay_inputs,
    topic_settings,
)

# The session scenario is small: fewer scans are due per 2 hours than at a platform's volume.
# Small batches keep reading close to event time, as at a platform's volume (here a batch of
# 10,000 would read half the month at once, the backfill with it). Its live feed is about one
# scan every two minutes (a platform's is thousands a second), so at night event time moves
# in steps of a quarter of an hour while a backfill is read: the allowed lateness (and the
# grace after it) must be longer than those steps for "the watermark moved on" to mean the
# reading did. The backfills land well within it: 4 days read 1000 times faster, in about 6
# minutes, and a parcel's history within a minute or two.
MIN_EXPECTED = 8
LATENESS_MINUTES = 60
OUTAGE = dataclasses.replace(DEFAULT_OUTAGE, backfill_speedup=1000)
OUTAGE_SCENARIO = dataclasses.replace(SESSION_SCENARIO, outage=OUTAGE,
                                      backfill=Backfill(share=0.1),
                                      feed_min_expected_scans=MIN_EXPECTED,
                                      allowed_lateness_minutes=LATENESS_MINUTES)
THRESHOLDS = {"feed_min_expected_scans": MIN_EXPECTED,
              "allowed_lateness_minutes": LATENESS_MINUTES,
              "feed_resume_grace_minutes": 2 * LATENESS_MINUTES}
SETTINGS = {**{f"thresholds__{key}": str(value) for key, value in THRESHOLDS.items()},
            "batch_size": "20"}


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    """The outage scenario as files, its truth, and what `replay` made of it."""
    work = tmp_path_factory.mktemp("outage")
    generated = Scenario(OUTAGE_SCENARIO)
    paths = write_files(generated, work / "scenario", show_progress=False)
    result = cli("replay", *replay_inputs(paths), "--out", work / "out", env=cli_env(**SETTINGS))
    assert result.returncode == 0, result.stderr
    return generated, read_jsonl(work / "out" / "alerts.jsonl")


def firing(alerts: list[dict], kind: str, key: str) -> set[tuple]:
    return {(a[key], a["event_ts"]) for a in alerts
            if a["type"] == kind and a["status"] == "FIRING"}


def test_an_outage_is_one_alert_and_its_backfill_leaves_only_real_stalls(outage):
    generated, alerts = outage
    truth = generated.truth.alerts
    assert firing(alerts, "FEED_SILENT", "carrier") == firing(truth, "FEED_SILENT", "carrier")
    outages = [a for a in alerts if a["type"] == "FEED_SILENT"
               and a["carrier"] == OUTAGE.carrier]
    assert outages[0]["status"] == "FIRING" and outages[0]["details"]["parcels_in_flight"] > 0
    back = [a for a in outages if a["status"] == "RESOLVED"]
    assert back and back[0]["alert_id"] == outages[0]["alert_id"]
    assert back[0]["details"]["backfilled"] > 0
    # Every parcel of the dark carrier fired while it was dark; the backfill settled them.
    assert firing(alerts, "NO_MOVEMENT", "waybill") == firing(truth, "NO_MOVEMENT", "waybill")
    # The second scenario's claims, read weeks late, are judged like any other.
    assert (firing(alerts, "SIGNED_DISPUTED", "waybill")
            == firing(truth, "SIGNED_DISPUTED", "waybill"))
    assert any(w.startswith(("SF61", "ZTO61", "YTO61", "JD61", "STO61", "JT61"))
               for w, _ in firing(truth, "SIGNED_DISPUTED", "waybill"))


def test_the_outage_through_the_broker_is_judged_as_exactly(broker, outage, tmp_path):
    import subprocess

    generated, _ = outage
    names = topic_settings("outage")
    config = client_config(broker.bootstrap)
    # One partition a topic: the partitions of a topic are read up to days of this small
    # scenario apart, and one read that far ahead holds the outage's backfill before event
    # time reaches the outage: its scans are there, so by the definition no silence is.
    # Splits over partitions read about together: tests/test_backfill_splits.py.
    ensure_topics(config, [name for key, name in names.items()], 1, 10)
    inputs = {role: names[f"topics__{role.replace('-', '_')}"]
              for role in ("scans", "disputes", "weather", "shipments", "merchant-actions")}
    produce(Scenario(OUTAGE_SCENARIO), config, inputs, show_progress=False)
    job = subprocess.run([CLI, "run", "--brokers", broker.bootstrap, "--from-beginning",
                          "--exit-at-end", "--state-dir", str(tmp_path / "state")],
                         env=cli_env(**names, **SETTINGS), capture_output=True, text=True,
                         timeout=300, check=False)
    assert job.returncode == 0, job.stderr
    emitted = [json.loads(value) for _, value, _ in read_topic(config, names["topics__alerts"])]
    truth = generated.truth.alerts
    assert firing(emitted, "FEED_SILENT", "carrier") == firing(truth, "FEED_SILENT", "carrier")
    assert firing(emitted, "NO_MOVEMENT", "waybill") == firing(truth, "NO_MOVEMENT", "waybill")
    assert (firing(emitted, "SIGNED_DISPUTED", "waybill")
            == firing(truth, "SIGNED_DISPUTED", "waybill"))
