"""Precision, recall and detection delay of every detector against the ground truth, and
threshold sweeps, through the real dataflow (`replay`, or `run` on Kafka with `--kafka`).

    python -m benchmarks.accuracy --parcels 20000 --json benchmarks/results/accuracy.json \\
        --report benchmarks/results/accuracy

Generates one scenario, replays it with the default thresholds and once per point of each
sweep, and scores each run. With `--kafka` the scenario is produced once to the embedded
broker and each run is `run --from-beginning --exit-at-end` writing to output topics of its
own; both paths are scored alike:
- NO_MOVEMENT against the injected stalls: a stall is found when a FIRING names its parcel
  at or after the stall began; a parcel with a FIRING that was never stalled, or before its
  stall (an ordinary long leg), is a false alarm. Stalls too close to the end of input
  to be judged at that threshold are left out. Delay: the alert's `event_ts` minus the
  parcel's last scan before the stall.
- SIGNED_DISPUTED against the ground-truth alerts (waybill and `event_ts`); delay: alert
  minus dispute.
- ROUTE_DAMAGE_RATE against each route's true damage rate: a flagged route is right when
  its true rate is above `damage_rate_threshold` (the injected bad route, but also a small
  courier's busy lane at 1.2%), a false alarm otherwise; a route is missed when its true
  rate is above the threshold and it had at least the default `damage_min_deliveries` (50)
  deliveries, whatever the setting, but was never flagged. Delay: first FIRING minus the
  start. Settings are compared only within one threshold, which decides what counts.
- WEATHER_DELAY_CLUSTER against the injected storms: a cluster matches a storm in its city
  whose first FIRING falls between the storm's start and two days after its end; precision
  counts clusters, recall storms; delay: first FIRING minus the storm's start.
- PICKUP_OVERDUE, PROMISE_MISSED and DISPUTE_UNANSWERED exactly: every FIRING and every
  RESOLVED at the event time the contract's definition gives on the generated times.
- DWELL_ANOMALY two ways. Against its definition (the generator applies it with exact
  quantiles; silences within 5% of their threshold are left out as ambiguous): a silence is
  found when a FIRING names its parcel and last scan; delay: alert minus the truth's
  `event_ts` (the sketch's error). And for what a merchant gains (DWELL_ANOMALY vs stalls,
  any setting): against every silence of `no_movement_hours` or more, precision (firings on
  such silences over all firings), recall, the share of them it could warn of at all (legs
  with a norm), and the lead over NO_MOVEMENT.
The report (markdown and PNG plots) says which setting to pick for which goal.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from alerts.metrics import Metrics
from benchmarks.geography import damage_rate
from benchmarks.machine import report
from benchmarks.merchant_side import MerchantConfig
from benchmarks.plots import pyplot, save
from benchmarks.scenario import (
    DEFAULT_BACKFILL,
    DEFAULT_MERCHANT,
    DEFAULT_OUTAGE,
    Backfill,
    Outage,
    Scenario,
    ScenarioConfig,
)
from benchmarks.writers import produce, progress_bar, write_files
from connectors.broker import EmbeddedBroker
from connectors.kafka import client_config, ensure_topics, read_topic
from flows.config import Settings, Topics, load_settings
from flows.runner import replay, run
from models.settings import Thresholds

DEFAULTS = Thresholds()
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DETECTORS = ("NO_MOVEMENT", "SIGNED_DISPUTED", "ROUTE_DAMAGE_RATE", "WEATHER_DELAY_CLUSTER")
# Scored exactly against the generator's truth (FIRING and RESOLVED at their event times).
MERCHANT_SIDE = ("PICKUP_OVERDUE", "PROMISE_MISSED", "DISPUTE_UNANSWERED")
DWELL = "DWELL_ANOMALY"
DWELL_VS_STALLS = "DWELL_ANOMALY vs stalls"
SWEEPS: dict[str, list[dict]] = {
    "no_movement_hours": [{"no_movement_hours": h} for h in (24, 48, 72, 96)],
    "delay_dwell_hours": [{"delay_dwell_hours": h} for h in (12, 24, 36)],
    "cluster_radius_km x cluster_min_parcels": [
        {"cluster_radius_km": r, "cluster_min_parcels": n} for r in (10, 25, 50)
        for n in (3, 5, 10)],
    "damage_rate_threshold x damage_min_deliveries": [
        {"damage_rate_threshold": t, "damage_min_deliveries": n} for t in (0.005, 0.01, 0.02)
        for n in (20, 50, 100)],
    "lane_quantile x lane_factor": [
        {"lane_quantile": q, "lane_factor": f} for q in (0.95, 0.99) for f in (1.25, 1.5, 2)],
    "cluster_min_share": [{"cluster_min_share": s} for s in (0, 0.02, 0.05, 0.1)],
}
QUICK_SWEEPS = {name: points[:2] for name, points in SWEEPS.items()}
SWEPT_DETECTOR = {
    "no_movement_hours": "NO_MOVEMENT",
    "delay_dwell_hours": "WEATHER_DELAY_CLUSTER",
    "cluster_radius_km x cluster_min_parcels": "WEATHER_DELAY_CLUSTER",
    "damage_rate_threshold x damage_min_deliveries": "ROUTE_DAMAGE_RATE",
    "lane_quantile x lane_factor": DWELL_VS_STALLS,
    "cluster_min_share": "WEATHER_DELAY_CLUSTER",
}
SWEEP_NOTES = {
    "no_movement_hours": "A silence shorter than the threshold is never reported, so a short "
    "threshold also flags ordinary long legs; a long one reports later and misses stalls "
    "that end before it.",
    "delay_dwell_hours": "A short dwell counts ordinary waits (a failed delivery retried the "
    "next day) as delays, so background clusters appear; a long one reports storms later.",
    "cluster_radius_km x cluster_min_parcels": "A city's hubs lie up to about 40 km apart: a "
    "small radius splits a storm into groups around single hubs, each of which must gather "
    "its own parcels (later alerts); a large radius with a low minimum joins unrelated "
    "delays across a metro area into clusters.",
    "lane_quantile x lane_factor": "A lower quantile or factor warns sooner and of more stalls, "
    "and of more parcels that were only slow; a higher one warns later, of fewer, and of legs "
    "whose norm passes no_movement_hours not at all (NO_MOVEMENT speaks there).",
    "cluster_min_share": "0 turns the rule off: every group of cluster_min_parcels is a "
    "cluster, at a busy hub on a peak day too; a high share loses storms in busy places.",
    "damage_rate_threshold x damage_min_deliveries": "The threshold defines which routes count "
    "as bad (true damage rate above it), so precision and recall compare the minimum "
    "deliveries within one threshold; across thresholds, choose the rate worth hearing about "
    "and read its delay.",
}
# A setting that decides what counts as a case: settings are compared only with the
# settings that share its value.
COMPARED_WITHIN = {"damage_rate_threshold x damage_min_deliveries": "damage_rate_threshold"}
INPUT_FIELDS = ("scans", "disputes", "weather", "shipments", "merchant_actions")
OUTPUT_FIELDS = ("alerts", "merchant_notifications", "route_scores", "dead_letter")


def score(alerts: list[dict], scenario: Scenario, thresholds: dict) -> dict:
    """Per detector: true/false positives, misses, precision, recall, F1, delays (hours)."""
    truth = scenario.truth
    firing = [a for a in alerts if a["status"] == "FIRING"]
    by_type = {kind: [a for a in firing if a["type"] == kind] for kind in DETECTORS}
    outages = {(a["carrier"], a["event_ts"]) for a in truth.alerts if a["type"] == "FEED_SILENT"}
    feeds = {} if not outages else {"FEED_SILENT": _feeds(
        [a for a in firing if a["type"] == "FEED_SILENT"], outages)}
    merchant_side = {kind: _exact(alerts, truth, kind) for kind in MERCHANT_SIDE
                     if scenario.config.merchant is not None}
    return {
        **feeds,
        **merchant_side,
        "NO_MOVEMENT": _stalls(by_type["NO_MOVEMENT"], truth, thresholds),
        "SIGNED_DISPUTED": _disputes(by_type["SIGNED_DISPUTED"], truth),
        "ROUTE_DAMAGE_RATE": _routes(by_type["ROUTE_DAMAGE_RATE"], truth, scenario,
                                     thresholds),
        "WEATHER_DELAY_CLUSTER": _storms(by_type["WEATHER_DELAY_CLUSTER"], truth),
        **_dwell(alerts, truth, thresholds),
    }


def _dwell(alerts: list[dict], truth, thresholds: dict) -> dict:
    """DWELL_ANOMALY against its definition (meaningful at the generator's own settings,
    the defaults) and against the stalls (any setting)."""
    firing = {(a["waybill"], a["details"]["last_scan_ts"]): a["event_ts"] for a in alerts
              if a["type"] == DWELL and a["status"] == "FIRING"}
    expected = {(a["waybill"], a["last_scan_ts"]): a for a in truth.alerts
                if a["type"] == DWELL and a["status"] == "FIRING"}
    clear = {key for key, a in expected.items() if not a["ambiguous"]}
    found = clear & firing.keys()
    wrong = firing.keys() - expected.keys()
    by_definition = _figures(len(found), len(wrong), len(clear - found),
                             [firing[key] - expected[key]["event_ts"] for key in found])
    by_definition["ambiguous"] = len(expected) - len(clear)
    resolved = {(a["waybill"], a["last_scan_ts"], a["event_ts"]) for a in truth.alerts
                if a["type"] == DWELL and a["status"] == "RESOLVED"
                and (a["waybill"], a["last_scan_ts"]) in clear}
    resolved_got = {(a["waybill"], a["details"]["last_scan_ts"], a["event_ts"]) for a in alerts
                    if a["type"] == DWELL and a["status"] == "RESOLVED"}
    by_definition["resolved"] = len(resolved & resolved_got)
    by_definition["resolved_expected"] = len(resolved)
    limit = round(thresholds.get("no_movement_hours", 72) * HOUR_MS)
    stalls = {(s["waybill"], s["last_scan_ts"]): s for s in truth.dwell_stalls}
    warned = stalls.keys() & firing.keys()
    vs_stalls = _figures(len(warned), len(firing.keys() - stalls.keys()),
                         len(stalls) - len(warned), [firing[key] - key[1] for key in warned])
    leads = sorted((key[1] + limit - firing[key]) / HOUR_MS for key in warned)
    vs_stalls["lead_hours_median"] = _round(statistics.median(leads)) if leads else None
    vs_stalls["stalls"] = len(stalls)
    vs_stalls["warnable_share"] = _round(
        sum(s["warnable"] for s in stalls.values()) / len(stalls)) if stalls else None
    return {DWELL: by_definition, DWELL_VS_STALLS: vs_stalls}


def _figures(found: int, false_alarms: int, missed: int, delays_ms: list[int]) -> dict:
    precision = found / (found + false_alarms) if found + false_alarms else None
    recall = found / (found + missed) if found + missed else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision and recall else 0.0 if precision is not None else None)
    delays = sorted(d / HOUR_MS for d in delays_ms)
    return {
        "found": found, "false_alarms": false_alarms, "missed": missed,
        "precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
        "delay_hours_median": _round(statistics.median(delays)) if delays else None,
        "delay_hours_p90": _round(delays[math.ceil(0.9 * len(delays)) - 1]) if delays else None,
        "delays_hours": [round(d, 2) for d in delays],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _stalls(alerts: list[dict], truth, thresholds: dict) -> dict:
    limit = round(thresholds.get("no_movement_hours", 72) * HOUR_MS)
    end = truth.counts["final_watermark"]
    judged = {s["waybill"]: s["since_ts"] for s in truth.stalls if s["since_ts"] + limit <= end}
    stalled = {s["waybill"]: s["since_ts"] for s in truth.stalls}
    # A stall's alert is the parcel's first FIRING from its stall on; a FIRING for a parcel
    # never stalled, or before its stall (an ordinary long leg), is a false alarm.
    first: dict[str, int] = {}
    early: set[str] = set()
    for alert in alerts:
        waybill, ts = alert["waybill"], alert["event_ts"]
        if waybill in stalled and ts >= stalled[waybill]:
            first[waybill] = min(ts, first.get(waybill, ts))
        else:
            early.add(waybill)
    found = [w for w in judged if w in first]
    return _figures(len(found), len(early), len(judged) - len(found),
                    [first[w] - judged[w] for w in found])


def _exact(alerts: list[dict], truth, kind: str) -> dict:
    """Every FIRING at its exact event time, and whether each RESOLVED came at its own:
    the truth is the contract's definition applied to the generated times."""
    def keyed(records: list[dict], status: str) -> set[tuple[str, int]]:
        return {(a["waybill"], a["event_ts"]) for a in records
                if a["type"] == kind and a["status"] == status}
    expected, got = keyed(truth.alerts, "FIRING"), keyed(alerts, "FIRING")
    found = expected & got
    figures = _figures(len(found), len(got - expected), len(expected - found), [0] * len(found))
    resolved, resolved_got = keyed(truth.alerts, "RESOLVED"), keyed(alerts, "RESOLVED")
    figures["resolved"] = len(resolved & resolved_got)
    figures["resolved_expected"] = len(resolved)
    figures["resolved_wrong"] = len(resolved_got - resolved)
    return figures


def _feeds(alerts: list[dict], expected: set[tuple[str, int]]) -> dict:
    """One FEED_SILENT per outage, at the carrier's last scan before it + 120 min exactly."""
    got = {(a["carrier"], a["event_ts"]) for a in alerts}
    found = expected & got
    return _figures(len(found), len(got - expected), len(expected - found), [0] * len(found))


def _disputes(alerts: list[dict], truth) -> dict:
    expected = {(a["waybill"], a["event_ts"]) for a in truth.alerts
                if a["type"] == "SIGNED_DISPUTED"}
    got = {(a["waybill"], a["event_ts"]): a for a in alerts}
    found = expected & got.keys()
    return _figures(len(found), len(got.keys() - expected), len(expected - found),
                    [got[key]["event_ts"] - got[key]["details"]["dispute_ts"] for key in found])


def _routes(alerts: list[dict], truth, scenario: Scenario, thresholds: dict) -> dict:
    threshold = thresholds.get("damage_rate_threshold", DEFAULTS.damage_rate_threshold)
    first: dict[str, int] = {}
    for alert in alerts:
        first.setdefault(alert["details"]["route_id"], alert["event_ts"])
    above = {route for route in truth.route_deliveries if _true_damage_rate(route) > threshold}
    found = above & first.keys()
    # One floor for every setting, so recall compares settings on the same routes.
    missed = {route for route in above - found
              if truth.route_deliveries[route] >= DEFAULTS.damage_min_deliveries}
    return _figures(len(found), len(first.keys() - above), len(missed),
                    [first[route] - scenario.config.start_ts for route in found])


def _true_damage_rate(route_id: str) -> float:
    carrier, _, lane = route_id.partition(":")
    origin, _, destination = lane.partition(">")
    return damage_rate(carrier, origin, destination)


def _storms(alerts: list[dict], truth) -> dict:
    first: dict[str, dict] = {}
    for alert in alerts:
        first.setdefault(alert["alert_id"], alert)
    matched, found_storms, delays = set(), 0, []
    for storm in truth.clusters:
        mine = [a for a in first.values() if a["details"]["city"] == storm["city"]
                and storm["start_ts"] <= a["event_ts"] <= storm["end_ts"] + 2 * DAY_MS]
        matched.update(a["alert_id"] for a in mine)
        if mine:
            found_storms += 1
            delays.append(min(a["event_ts"] for a in mine) - storm["start_ts"])
    return _figures(found_storms, len(first) - len(matched), len(truth.clusters) - found_storms,
                    delays)


def measure(parcels: int, days: float, seed: int, sweeps: dict[str, list[dict]],
            show_progress: bool = True, kafka: bool = False,
            brokers: str | None = None, outage: Outage | None = None,
            backfill: Backfill | None = None,
            merchant: MerchantConfig | None = DEFAULT_MERCHANT) -> dict:
    """Every run of the sweeps on one scenario, scored. On Kafka (`kafka`, or `brokers`
    naming a cluster to use instead of a fresh embedded broker) runs go through `run`, as in
    production; otherwise through `replay` over files."""
    scenario = Scenario(ScenarioConfig(parcels=parcels, days=days, seed=seed, outage=outage,
                                       backfill=backfill, merchant=merchant))
    runs = [("defaults", {})] + [(name, point) for name, points in sweeps.items()
                                 for point in points]
    path = "kafka" if kafka or brokers else "replay"
    with progress_bar(transient=not show_progress) as bar:
        task = bar.add_task(f"runs ({path})", total=len(runs))
        results = []
        for sweep, point, alerts in _alerts_of_runs(scenario, runs, path, brokers):
            results.append(_scored(sweep, point, alerts, scenario))
            bar.advance(task)
    return {"parcels": parcels, "days": days, "seed": seed, "path": path,
            "truth": {"stalls": len(scenario.truth.stalls),
                      "signed_disputed": sum(a["type"] == "SIGNED_DISPUTED"
                                             for a in scenario.truth.alerts),
                      "bad_routes": len(scenario.truth.bad_routes),
                      "storms": len(scenario.truth.clusters),
                      "feed_outages": sum(a["type"] == "FEED_SILENT"
                                          for a in scenario.truth.alerts),
                      "backfilled_parcels": scenario.truth.counts["backfilled_parcels"]},
            "outage": None if outage is None else asdict(outage),
            "backfill": None if backfill is None else asdict(backfill),
            "runs": results}


def _alerts_of_runs(scenario: Scenario, runs: list[tuple[str, dict]], path: str,
                    brokers: str | None) -> Iterator[tuple[str, dict, list[dict]]]:
    """(sweep, setting, alerts) of each run, on the path asked for."""
    if path == "replay":
        yield from _replayed(scenario, runs)
    elif brokers:
        yield from _on_kafka(scenario, runs, brokers)
    else:
        with EmbeddedBroker() as broker:
            yield from _on_kafka(scenario, runs, broker.bootstrap)


def _settings(point: dict, **overrides) -> Settings:
    """Daily route scores keep the outputs small; nothing comes from the environment, so
    both paths run the same configuration."""
    return load_settings(environ={}, thresholds={"score_interval_hours": 24, **point},
                         **overrides)


def _replayed(scenario: Scenario,
              runs: list[tuple[str, dict]]) -> Iterator[tuple[str, dict, list[dict]]]:
    """The scenario written once to JSON Lines files, each run a `replay` of them."""
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        paths = write_files(scenario, work_dir / "scenario", show_progress=False)
        inputs = dict(paths)
        for n, (sweep, point) in enumerate(runs):
            out = work_dir / f"run-{n}"
            replay(_settings(point), inputs, out, Metrics(CollectorRegistry()))
            with (out / "alerts.jsonl").open(encoding="utf-8") as lines:
                yield sweep, point, [json.loads(line) for line in lines if line.strip()]


def _on_kafka(scenario: Scenario, runs: list[tuple[str, dict]],
              brokers: str) -> Iterator[tuple[str, dict, list[dict]]]:
    """The scenario produced once to input topics named for this measurement (a shared
    cluster may hold others), each run `run --exit-at-end` from the beginning of them."""
    prefix = f"accuracy-{uuid.uuid4().hex[:8]}"
    base = _settings({}, brokers=brokers, recovery=False)
    inputs = _prefixed(base.topics, prefix, INPUT_FIELDS)
    config = client_config(brokers)
    ensure_topics(config, list(inputs.inputs().values()), base.topic_partitions,
                  base.connect_timeout_seconds)
    produce(scenario, config, inputs.inputs(), show_progress=False)
    for n, (sweep, point) in enumerate(runs):
        settings = _settings(point, brokers=brokers, recovery=False)
        settings = msgspec.structs.replace(
            settings, topics=_prefixed(inputs, f"{prefix}-run{n}", OUTPUT_FIELDS))
        if run(settings, Metrics(CollectorRegistry()), from_beginning=True, exit_at_end=True):
            raise KeyboardInterrupt  # stopped by Ctrl-C: its alerts would be partial
        records = read_topic(config, settings.topics.alerts)
        yield sweep, point, [json.loads(value) for _key, value, _partition in records]


def _prefixed(topics: Topics, prefix: str, fields: tuple[str, ...]) -> Topics:
    """`topics` with `fields` renamed `<prefix>-<default name>`: runs on one cluster never
    read or write each other's topics."""
    defaults = Topics()
    return msgspec.structs.replace(
        topics, **{field: f"{prefix}-{getattr(defaults, field)}" for field in fields})


def _scored(sweep: str, point: dict, alerts: list[dict], scenario: Scenario) -> dict:
    """One run's figures. Delay lists are kept only where a plot draws them (every detector
    at the defaults, the swept detector in a sweep), to keep the JSON small."""
    detectors = score(alerts, scenario, point)
    if sweep != "defaults":
        for detector, figures in detectors.items():
            if detector != SWEPT_DETECTOR.get(sweep):
                del figures["delays_hours"]
    return {"sweep": sweep, "setting": point, "detectors": detectors}


def recommend(results: dict) -> dict[str, dict]:
    """Per sweep: the setting with the best F1, and the one with the best recall among those
    with precision at least 0.8 (for teams that would rather hear of every case); between
    equals, the one that alerts sooner. Where a setting decides what counts as a case
    (COMPARED_WITHIN), the picks are made among the settings that share its value."""
    picks: dict[str, dict] = {}
    for sweep, detector in SWEPT_DETECTOR.items():
        points = [r for r in results["runs"] if r["sweep"] == sweep]
        within = COMPARED_WITHIN.get(sweep)
        if within is None:
            pick = _pick(points, detector)
            if pick is not None:
                picks[sweep] = {"detector": detector, **pick}
            continue
        groups: dict[str, list[dict]] = {}
        for r in points:
            groups.setdefault(f"{within}={r['setting'][within]:g}", []).append(r)
        chosen = {group: _pick(members, detector) for group, members in groups.items()}
        picks[sweep] = {"detector": detector,
                        "within": {g: pick for g, pick in chosen.items() if pick is not None}}
    return picks


def _pick(points: list[dict], detector: str) -> dict | None:
    scored = [(r["setting"], r["detectors"][detector]) for r in points]
    scored = [(s, f) for s, f in scored if f["f1"] is not None]
    if not scored:
        return None
    best = max(scored, key=lambda sf: (sf[1]["f1"], sf[1]["recall"] or 0, _sooner(sf[1])))
    careful = [sf for sf in scored if (sf[1]["precision"] or 0) >= 0.8]
    recall_first = max(careful, key=lambda sf: (sf[1]["recall"] or 0, _sooner(sf[1]))
                       ) if careful else None
    return {"best_f1": best[0],
            "best_recall_at_precision_0_8": recall_first and recall_first[0]}


def _sooner(figures: dict) -> float:
    """Larger for a shorter median detection delay (none found: the smallest)."""
    median = figures["delay_hours_median"]
    return -math.inf if median is None else -median


def write_report(results: dict, out_dir: Path, command: str) -> None:
    """accuracy.md with tables and recommendations, and PNG plots next to it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Accuracy against ground truth", "", f"`{command}`", "",
             f"Scenario: {results['parcels']:,} parcels over {results['days']:g} days, seed "
             f"{results['seed']}; ground truth: {results['truth']}.", "",
             PATHS[results.get("path", "replay")], ""]
    lines += _defaults_section(results["runs"][0]["detectors"], out_dir)
    picks = recommend(results)
    for sweep, detector in SWEPT_DETECTOR.items():
        points = [r for r in results["runs"] if r["sweep"] == sweep]
        if points:
            lines += _sweep_section(sweep, detector, points, picks.get(sweep), out_dir)
    (out_dir / "accuracy.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


PATHS = {
    "replay": "Each run is `replay` over the scenario written to JSON Lines files.",
    "kafka": "Each run is `run --from-beginning --exit-at-end` over the scenario produced once "
             "to Kafka, writing to output topics of its own; its alerts are read back from "
             "its alerts topic.",
}
MARKERS = "os^Dv<>PX*"
FEW_CASES = 30  # a setting's delays drawn one by one when it found at most this many


def _label(setting: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in setting.items())


def _defaults_section(defaults: dict, out_dir: Path) -> list[str]:
    """The table at the default thresholds and the histogram of each detector's delays."""
    lines = ["## Default thresholds", "",
             "| detector | found | false alarms | missed | precision | recall | F1 | "
             "median delay (h) | p90 delay (h) |", "|---|---|---|---|---|---|---|---|---|"]
    for detector, f in defaults.items():
        lines.append(f"| {detector} | {f['found']} | {f['false_alarms']} | {f['missed']} | "
                     f"{f['precision']} | {f['recall']} | {f['f1']} | "
                     f"{f['delay_hours_median']} | {f['delay_hours_p90']} |")
    exact = [kind for kind in MERCHANT_SIDE if kind in defaults]
    if exact:
        lines += ["", "The merchant's side is scored exactly (delay 0: each FIRING at the event "
                  "time the contract's definition gives); its resolutions likewise: " + "; ".join(
                      f"{kind} {defaults[kind]['resolved']} of "
                      f"{defaults[kind]['resolved_expected']} RESOLVED at their time, "
                      f"{defaults[kind]['resolved_wrong']} wrong" for kind in exact) + "."]
    plt = pyplot()
    figure, axes = plt.subplots(1, len(DETECTORS), figsize=(14, 3))
    for ax, detector in zip(axes, DETECTORS, strict=True):
        ax.hist(defaults[detector]["delays_hours"] or [0], bins=20)
        ax.set(title=detector, xlabel="detection delay (h)")
    figure.tight_layout()
    save(figure, out_dir / "delays.png", dpi=100)
    lines += ["", "WEATHER_DELAY_CLUSTER's false alarms are clusters that match no injected "
              "storm. The scenario's background delays (stalls, failed deliveries retried the "
              "next day) can make them: five or more delayed parcels within the radius and the "
              "window are a cluster by the contract's definition, so they are not detector "
              "errors but what the thresholds let through. ROUTE_DAMAGE_RATE counts a flagged "
              "route as found when its true damage rate is above the threshold.", "",
              "![detection delay at the defaults](delays.png)", ""]
    return lines


def _sweep_section(sweep: str, detector: str, points: list[dict], pick: dict | None,
                   out_dir: Path) -> list[str]:
    """A sweep's table, its two plots and the settings to pick."""
    slug = sweep.split(" ")[0]
    lines = [f"## Sweep: {sweep} ({detector})", "", SWEEP_NOTES[sweep], "",
             "| setting | precision | recall | F1 | median delay (h) | p90 delay (h) |",
             "|---|---|---|---|---|---|"]
    for r in points:
        f = r["detectors"][detector]
        lines.append(f"| {_label(r['setting'])} | {f['precision']} | {f['recall']} | "
                     f"{f['f1']} | {f['delay_hours_median']} | {f['delay_hours_p90']} |")
    _plot_precision_recall(sweep, detector, points, out_dir / f"sweep-{slug}.png")
    _plot_delays(sweep, detector, points, out_dir / f"delays-{slug}.png")
    lines += ["", f"![precision against recall](sweep-{slug}.png)", "",
              f"Detection delay by setting: {detector}'s delay in hours for each case found, "
              "one row per setting (box: median and quartiles, whiskers to 1.5 × IQR; n: cases "
              f"found, each drawn as a dot when at most {FEW_CASES}).",
              "", f"![detection delay by setting](delays-{slug}.png)", ""]
    if pick is not None:
        for group, choice in pick.get("within", {"": pick}).items():
            lines += [f"Pick{f' within {group}' if group else ''}: best F1 at "
                      f"{choice['best_f1']}; for the most cases found with precision ≥ 0.8: "
                      f"{choice['best_recall_at_precision_0_8']} (between equals, the one "
                      "that alerts sooner).", ""]
    return lines


def _plot_precision_recall(sweep: str, detector: str, points: list[dict], path: Path) -> None:
    """One marker per distinct (recall, precision), with the settings that give it listed in
    the legend: several settings often land on the same point, where labels would overlap."""
    shared: dict[tuple[float, float], list[str]] = {}
    for r in points:
        f = r["detectors"][detector]
        if f["precision"] is not None and f["recall"] is not None:
            shared.setdefault((f["recall"], f["precision"]), []).append(_label(r["setting"]))
    legend_lines = len(shared) + sum(len(labels) for labels in shared.values())
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(9, max(4.5, 1 + 0.2 * legend_lines)),
                              layout="constrained")
    for n, ((recall, precision), labels) in enumerate(shared.items()):
        ax.scatter(recall, precision, s=60, marker=MARKERS[n % len(MARKERS)], color=f"C{n % 10}",
                   label="\n".join([f"precision {precision:g}, recall {recall:g}:", *labels]))
    ax.set(xlabel="recall", ylabel="precision", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
    figure.suptitle(f"Precision against recall: {detector}, {sweep}")
    if shared:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=9, frameon=False,
                  labelspacing=0.9)
    save(figure, path, dpi=100)


def _plot_delays(sweep: str, detector: str, points: list[dict], path: Path) -> None:
    """A box of the swept detector's detection delays per setting: how long each setting
    takes to report the cases it finds, beyond the single median in the table."""
    delays = [r["detectors"][detector]["delays_hours"] for r in points]
    labels = [f"{_label(r['setting'])} (n={len(d)})"
              for r, d in zip(points, delays, strict=True)]
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * len(points)), layout="constrained")
    ax.boxplot(delays, orientation="horizontal", tick_labels=labels)
    for row, hours in enumerate(delays, 1):  # a box of a few cases says little: show them
        if len(hours) <= FEW_CASES:
            ax.scatter(hours, [row] * len(hours), s=12, color="grey", alpha=0.6, zorder=3)
    ax.invert_yaxis()  # the first setting on top, in the table's order
    ax.tick_params(axis="y", labelsize=9)
    ax.set(xlabel="detection delay (h)")
    figure.suptitle(f"Detection delay by setting: {detector}, {sweep}")
    save(figure, path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="two points per sweep")
    parser.add_argument("--kafka", action="store_true",
                        help="run each setting through Kafka (`run`) on the embedded broker")
    parser.add_argument("--outage", action="store_true",
                        help="the scenario with a carrier's 4-day outage and its backfill; "
                             "the defaults only, no sweeps")
    parser.add_argument("--backfill", action="store_true",
                        help="a second scenario (a tenth as many parcels more) read days "
                             "behind the watermark, claims with it; the defaults only")
    parser.add_argument("--without-merchant-side", action="store_true",
                        help="scans, claims and weather only (no shipments or merchant "
                             "actions): the scenario of the figures before 0.5")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--report", type=Path, help="write accuracy.md and plots here")
    args = parser.parse_args()
    command = (f"python -m benchmarks.accuracy --parcels {args.parcels} --days {args.days:g} "
               f"--seed {args.seed}{' --quick' if args.quick else ''}"
               f"{' --kafka' if args.kafka else ''}{' --outage' if args.outage else ''}"
               f"{' --backfill' if args.backfill else ''}"
               f"{' --without-merchant-side' if args.without_merchant_side else ''}")
    untidy = args.outage or args.backfill
    sweeps = {} if untidy else QUICK_SWEEPS if args.quick else SWEEPS
    results = measure(args.parcels, args.days, args.seed, sweeps, kafka=args.kafka,
                      outage=DEFAULT_OUTAGE if args.outage else None,
                      backfill=DEFAULT_BACKFILL if args.backfill else None,
                      merchant=None if args.without_merchant_side else DEFAULT_MERCHANT)
    results["recommended"] = recommend(results)
    if args.report:
        write_report(results, args.report, command)
    report("accuracy", command, results, args.json)


if __name__ == "__main__":
    main()
