"""Scoring a run's alerts against a ground truth: the generator's, or an analyst's labels
read from a truth file (`benchmarks.truth_file`). One code for both, so their figures
compare.

Each detector is scored only when the truth has the kind of case it is judged on
(`Context.scored`): a kind left out gives no figures, not zeros.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import bootstrap

from benchmarks.geography import damage_rate
from benchmarks.scenario import Scenario, Truth
from models.settings import Thresholds

DEFAULTS = Thresholds()
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DETECTORS = ("NO_MOVEMENT", "SIGNED_DISPUTED", "ROUTE_DAMAGE_RATE", "WEATHER_DELAY_CLUSTER")
# Scored exactly against the truth (FIRING and RESOLVED at their event times).
MERCHANT_SIDE = ("PICKUP_OVERDUE", "PROMISE_MISSED", "DISPUTE_UNANSWERED")
FEED_SILENT = "FEED_SILENT"
DWELL = "DWELL_ANOMALY"
DWELL_VS_STALLS = "DWELL_ANOMALY vs stalls"
SCORED = (FEED_SILENT, *MERCHANT_SIDE, *DETECTORS, DWELL, DWELL_VS_STALLS)
CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 20261111  # fixed: a rerun gives the same intervals


@dataclass(frozen=True)
class Context:
    """What scoring reads besides the truth: the detectors the truth can judge, where route
    delays are counted from, and each route's true damage rate (which decides, per
    threshold, whether a flagged route is right)."""

    scored: frozenset[str]
    start_ts: int | None = None
    damage_rates: Mapping[str, float] = field(default_factory=dict)


def context_of(scenario: Scenario) -> Context:
    """The generator's context; its truth must be complete (the scenario written out)."""
    config, truth = scenario.config, scenario.truth
    scored = set(DETECTORS)
    if any(a["type"] == FEED_SILENT for a in truth.alerts):
        scored.add(FEED_SILENT)
    if config.merchant is not None:
        scored.update(MERCHANT_SIDE)
    if config.dwell_truth:
        scored.update((DWELL, DWELL_VS_STALLS))
    rates = {route: _true_damage_rate(route) for route in truth.route_deliveries}
    return Context(frozenset(scored), config.start_ts, rates)


def _true_damage_rate(route_id: str) -> float:
    carrier, _, lane = route_id.partition(":")
    origin, _, destination = lane.partition(">")
    return damage_rate(carrier, origin, destination)


def score(alerts: list[dict], scenario: Scenario, thresholds: dict) -> dict:
    """`score_against` the generator's truth."""
    return score_against(alerts, scenario.truth, context_of(scenario), thresholds)


def score_against(alerts: list[dict], truth: Truth, context: Context,
                  thresholds: dict) -> dict:
    """Per detector the truth can judge: true/false positives, misses, precision and recall
    (with 95% intervals), F1, delays (hours)."""
    firing = [a for a in alerts if a["status"] == "FIRING"]

    def of(kind: str) -> list[dict]:
        return [a for a in firing if a["type"] == kind]

    scorers = {
        FEED_SILENT: lambda: _feeds(of(FEED_SILENT), truth),
        **{kind: (lambda kind=kind: _exact(alerts, truth, kind)) for kind in MERCHANT_SIDE},
        "NO_MOVEMENT": lambda: _stalls(of("NO_MOVEMENT"), truth, thresholds),
        "SIGNED_DISPUTED": lambda: _disputes(of("SIGNED_DISPUTED"), truth),
        "ROUTE_DAMAGE_RATE": lambda: _routes(of("ROUTE_DAMAGE_RATE"), truth, context,
                                             thresholds),
        "WEATHER_DELAY_CLUSTER": lambda: _storms(of("WEATHER_DELAY_CLUSTER"), truth),
        DWELL: lambda: _dwell_by_definition(alerts, truth),
        DWELL_VS_STALLS: lambda: _dwell_vs_stalls(alerts, truth, thresholds),
    }
    return {kind: scorer() for kind, scorer in scorers.items() if kind in context.scored}


def _figures(found: int, false_alarms: int, missed: int, delays_ms: list[int]) -> dict:
    precision = found / (found + false_alarms) if found + false_alarms else None
    recall = found / (found + missed) if found + missed else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision and recall else 0.0 if precision is not None else None)
    delays = sorted(d / HOUR_MS for d in delays_ms)
    return {
        "found": found, "false_alarms": false_alarms, "missed": missed,
        "precision": _round(precision), "precision_ci": interval(found, false_alarms),
        "recall": _round(recall), "recall_ci": interval(found, missed), "f1": _round(f1),
        "delay_hours_median": _round(statistics.median(delays)) if delays else None,
        "delay_hours_p90": _round(delays[math.ceil(0.9 * len(delays)) - 1]) if delays else None,
        "delays_hours": [round(d, 2) for d in delays],
    }


def interval(hits: int, misses: int) -> list[float] | None:
    """The 95% percentile-bootstrap interval of hits / (hits + misses), each case one unit
    resampled: precision over the alerts (found and false alarms), recall over the true
    cases (found and missed). None under two cases: one case says nothing of the spread."""
    if hits + misses < 2:
        return None
    cases = np.repeat(np.array([1.0, 0.0]), [hits, misses])
    result = bootstrap((cases,), np.mean, n_resamples=RESAMPLES, method="percentile",
                       confidence_level=CONFIDENCE, rng=np.random.default_rng(BOOTSTRAP_SEED),
                       batch=max(1, min(RESAMPLES, 5_000_000 // cases.size)))
    ci = result.confidence_interval
    return [_round(float(ci.low)), _round(float(ci.high))]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _dwell_by_definition(alerts: list[dict], truth: Truth) -> dict:
    """DWELL_ANOMALY against its definition (meaningful at the truth's own settings, the
    generator's being the defaults): each silence by waybill and last scan, ambiguous ones
    left out; delay: the alert minus the truth's `event_ts`."""
    firing = _dwell_firings(alerts)
    expected = {(a["waybill"], a["last_scan_ts"]): a for a in truth.alerts
                if a["type"] == DWELL and a["status"] == "FIRING"}
    clear = {key for key, a in expected.items() if not a["ambiguous"]}
    found = clear & firing.keys()
    wrong = firing.keys() - expected.keys()
    figures = _figures(len(found), len(wrong), len(clear - found),
                       [firing[key] - expected[key]["event_ts"] for key in found])
    figures["ambiguous"] = len(expected) - len(clear)
    resolved = {(a["waybill"], a["last_scan_ts"], a["event_ts"]) for a in truth.alerts
                if a["type"] == DWELL and a["status"] == "RESOLVED"
                and (a["waybill"], a["last_scan_ts"]) in clear}
    resolved_got = {(a["waybill"], a["details"]["last_scan_ts"], a["event_ts"]) for a in alerts
                    if a["type"] == DWELL and a["status"] == "RESOLVED"}
    figures["resolved"] = len(resolved & resolved_got)
    figures["resolved_expected"] = len(resolved)
    return figures


def _dwell_vs_stalls(alerts: list[dict], truth: Truth, thresholds: dict) -> dict:
    """DWELL_ANOMALY for what a merchant gains (any setting): against every silence of
    `no_movement_hours` or more, with its lead over NO_MOVEMENT."""
    firing = _dwell_firings(alerts)
    limit = round(thresholds.get("no_movement_hours", DEFAULTS.no_movement_hours) * HOUR_MS)
    stalls = {(s["waybill"], s["last_scan_ts"]): s for s in truth.dwell_stalls}
    warned = stalls.keys() & firing.keys()
    figures = _figures(len(warned), len(firing.keys() - stalls.keys()),
                       len(stalls) - len(warned), [firing[key] - key[1] for key in warned])
    leads = sorted((key[1] + limit - firing[key]) / HOUR_MS for key in warned)
    figures["lead_hours_median"] = _round(statistics.median(leads)) if leads else None
    figures["stalls"] = len(stalls)
    figures["warnable_share"] = _round(
        sum(s["warnable"] for s in stalls.values()) / len(stalls)) if stalls else None
    return figures


def _dwell_firings(alerts: list[dict]) -> dict[tuple[str, int], int]:
    return {(a["waybill"], a["details"]["last_scan_ts"]): a["event_ts"] for a in alerts
            if a["type"] == DWELL and a["status"] == "FIRING"}


def _stalls(alerts: list[dict], truth: Truth, thresholds: dict) -> dict:
    """A stall is found when a FIRING names its parcel at or after the stall began; stalls
    too close to the end of input to be judged at this threshold are left out."""
    limit = round(thresholds.get("no_movement_hours", DEFAULTS.no_movement_hours) * HOUR_MS)
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


def _exact(alerts: list[dict], truth: Truth, kind: str) -> dict:
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


def _feeds(alerts: list[dict], truth: Truth) -> dict:
    """One FEED_SILENT per silence, by carrier at its exact `event_ts` (for the generator's
    outage: the carrier's last scan before it + 120 min)."""
    expected = {(a["carrier"], a["event_ts"]) for a in truth.alerts
                if a["type"] == FEED_SILENT and a["status"] == "FIRING"}
    got = {(a["carrier"], a["event_ts"]) for a in alerts}
    found = expected & got
    return _figures(len(found), len(got - expected), len(expected - found), [0] * len(found))


def _disputes(alerts: list[dict], truth: Truth) -> dict:
    expected = {(a["waybill"], a["event_ts"]) for a in truth.alerts
                if a["type"] == "SIGNED_DISPUTED" and a["status"] == "FIRING"}
    got = {(a["waybill"], a["event_ts"]): a for a in alerts}
    found = expected & got.keys()
    return _figures(len(found), len(got.keys() - expected), len(expected - found),
                    [got[key]["event_ts"] - got[key]["details"]["dispute_ts"] for key in found])


def _routes(alerts: list[dict], truth: Truth, context: Context, thresholds: dict) -> dict:
    """A flagged route is right when its true damage rate is above the threshold; a route
    above it is missed when it had the default minimum of deliveries but was never flagged."""
    threshold = thresholds.get("damage_rate_threshold", DEFAULTS.damage_rate_threshold)
    first: dict[str, int] = {}
    for alert in alerts:
        first.setdefault(alert["details"]["route_id"], alert["event_ts"])
    above = {route for route in truth.route_deliveries
             if context.damage_rates[route] > threshold}
    found = above & first.keys()
    # One floor for every setting, so recall compares settings on the same routes.
    missed = {route for route in above - found
              if truth.route_deliveries[route] >= DEFAULTS.damage_min_deliveries}
    return _figures(len(found), len(first.keys() - above), len(missed),
                    [first[route] - context.start_ts for route in found])


def _storms(alerts: list[dict], truth: Truth) -> dict:
    """A cluster matches a storm in its city whose first FIRING falls between the storm's
    start and two days after its end; precision counts clusters, recall storms."""
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


def truth_summary(truth: Truth, context: Context) -> dict:
    """How many cases of each kind the truth holds (None: a kind it leaves out)."""
    def counted(detector: str, cases: list) -> int | None:
        return len(cases) if detector in context.scored else None

    return {"stalls": counted("NO_MOVEMENT", truth.stalls),
            "signed_disputed": counted("SIGNED_DISPUTED", [
                a for a in truth.alerts if a["type"] == "SIGNED_DISPUTED"]),
            "bad_routes": counted("ROUTE_DAMAGE_RATE", truth.bad_routes),
            "storms": counted("WEATHER_DELAY_CLUSTER", truth.clusters),
            "feed_outages": sum(a["type"] == FEED_SILENT for a in truth.alerts),
            "backfilled_parcels": truth.counts.get("backfilled_parcels", 0)}
