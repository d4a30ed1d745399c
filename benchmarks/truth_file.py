"""The truth file: an analyst's labelled cases, or the generator's truth written out, as one
JSON object (the format is in docs/accuracy.md). It loads into the generator's own `Truth`
and a scoring `Context`, so both are scored by one code.

A kind of truth the file leaves out is not scored: no `stalls`, no NO_MOVEMENT figures; an
alert type missing from `alerts`, none for it. An empty list is a truth (no such case).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from benchmarks.scenario import Truth
from benchmarks.scoring import (
    DWELL,
    DWELL_VS_STALLS,
    FEED_SILENT,
    MERCHANT_SIDE,
    Context,
)
from models.settings import ConfigError

Ms = Annotated[int, msgspec.Meta(ge=0)]  # epoch milliseconds, as the inputs' `ts`
AlertType = Literal["FEED_SILENT", "SIGNED_DISPUTED", "PICKUP_OVERDUE", "PROMISE_MISSED",
                    "DISPUTE_UNANSWERED", "DWELL_ANOMALY"]
ALERT_TYPES = (FEED_SILENT, "SIGNED_DISPUTED", *MERCHANT_SIDE, DWELL)


class _Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class AlertCase(_Record, kw_only=True):
    """An alert the job should give: by waybill (by carrier for FEED_SILENT) at `event_ts`;
    a DWELL_ANOMALY names the parcel's last scan too, and may be ambiguous (not counted
    either way)."""

    status: Literal["FIRING", "RESOLVED"] = "FIRING"
    event_ts: Ms
    waybill: str | None = None
    carrier: str | None = None
    last_scan_ts: Ms | None = None
    ambiguous: bool = False


_ALERT_FIELDS = tuple(field.name for field in msgspec.structs.fields(AlertCase))


class Stall(_Record):
    waybill: str
    since_ts: Ms  # the parcel's last scan before it went silent


class Cluster(_Record):
    city: str
    start_ts: Ms
    end_ts: Ms
    cause: str | None = None
    weather_event_id: str | None = None
    waybills: list[str] = []


class Route(_Record):
    deliveries: Annotated[int, msgspec.Meta(ge=0)]
    damage_rate: Annotated[float, msgspec.Meta(ge=0, le=1)]


class DwellStall(_Record):
    waybill: str
    last_scan_ts: Ms
    warnable: bool  # its leg had a DWELL_ANOMALY norm to warn by
    threshold_ms: int | None = None


class TruthFile(_Record):
    start_ts: Ms | None = None                     # route delays count from it
    counts: dict[str, int] = {}                    # final_watermark: the end of input
    alerts: dict[AlertType, list[AlertCase]] | None = None
    stalls: list[Stall] | None = None
    clusters: list[Cluster] | None = None
    routes: dict[str, Route] | None = None         # route id "CARRIER:ORIGIN>DESTINATION"
    bad_routes: list[str] = []                     # the routes known bad (reported only)
    dwell_stalls: list[DwellStall] | None = None


def load_truth(path: Path) -> tuple[Truth, Context]:
    """The truth file at `path`, checked; raises ConfigError with a one-line reason."""
    try:
        data = msgspec.json.decode(path.read_bytes(), type=TruthFile)
    except OSError as exc:
        raise ConfigError(f"truth file {path}: {exc.strerror}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"truth file {path}: {exc}") from None
    problem = _problem(data)
    if problem is not None:
        raise ConfigError(f"truth file {path}: {problem}")
    return _truth(data), _context(data)


def _problem(data: TruthFile) -> str | None:
    if data.stalls is not None and "final_watermark" not in data.counts:
        return "stalls need counts.final_watermark (which stalls lasted to be judged)"
    if data.routes is not None and data.start_ts is None:
        return "routes need start_ts (route delays count from it)"
    for n, cluster in enumerate(data.clusters or []):
        if cluster.end_ts < cluster.start_ts:
            return f"clusters[{n}] ends before it starts"
    for kind, cases in (data.alerts or {}).items():
        key = "carrier" if kind == FEED_SILENT else "waybill"
        for n, case in enumerate(cases):
            if getattr(case, key) is None:
                return f"alerts.{kind}[{n}] has no {key}"
            if kind == DWELL and case.last_scan_ts is None:
                return f"alerts.{kind}[{n}] has no last_scan_ts"
    return None


def _truth(data: TruthFile) -> Truth:
    alerts = [{"type": kind, **msgspec.structs.asdict(case)}
              for kind, cases in (data.alerts or {}).items() for case in cases]
    routes = data.routes or {}
    return Truth(
        alerts=alerts, counts=Counter(data.counts), bad_routes=list(data.bad_routes),
        clusters=[msgspec.structs.asdict(c) for c in data.clusters or []],
        stalls=[msgspec.structs.asdict(s) for s in data.stalls or []],
        route_deliveries=Counter({route: r.deliveries for route, r in routes.items()}),
        dwell_stalls=[msgspec.structs.asdict(s) for s in data.dwell_stalls or []])


def _context(data: TruthFile) -> Context:
    scored = set(data.alerts or {})
    for detector, cases in (("NO_MOVEMENT", data.stalls), ("ROUTE_DAMAGE_RATE", data.routes),
                            ("WEATHER_DELAY_CLUSTER", data.clusters),
                            (DWELL_VS_STALLS, data.dwell_stalls)):
        if cases is not None:
            scored.add(detector)
    rates = {route: r.damage_rate for route, r in (data.routes or {}).items()}
    return Context(frozenset(scored), data.start_ts, rates)


def truth_file_of(truth: Truth, context: Context) -> TruthFile:
    """The truth as a truth file: the kinds the context scores, with what scoring reads."""
    scored = context.scored

    def cases(kind: str) -> list[AlertCase]:
        return [msgspec.convert({k: a[k] for k in _ALERT_FIELDS if k in a}, AlertCase)
                for a in truth.alerts if a["type"] == kind]

    def records(detector: str, items: list[dict], kind: type) -> list | None:
        if detector not in scored:
            return None
        names = {f.name for f in msgspec.structs.fields(kind)}
        return [msgspec.convert({k: v for k, v in item.items() if k in names}, kind)
                for item in items]

    routes = None if "ROUTE_DAMAGE_RATE" not in scored else {
        route: Route(deliveries=n, damage_rate=context.damage_rates[route])
        for route, n in sorted(truth.route_deliveries.items())}
    return TruthFile(
        start_ts=context.start_ts, counts=dict(truth.counts),
        alerts={kind: cases(kind) for kind in ALERT_TYPES if kind in scored},
        stalls=records("NO_MOVEMENT", truth.stalls, Stall),
        clusters=records("WEATHER_DELAY_CLUSTER", truth.clusters, Cluster),
        routes=routes, bad_routes=list(truth.bad_routes),
        dwell_stalls=records(DWELL_VS_STALLS, truth.dwell_stalls, DwellStall))


def write_truth_file(truth: Truth, context: Context, path: Path) -> None:
    """Write the truth in the truth file format (UTF-8 JSON, indented)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = msgspec.json.encode(truth_file_of(truth, context))
    path.write_bytes(msgspec.json.format(encoded, indent=2) + b"\n")
