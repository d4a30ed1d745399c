"""The route scorecard: the latest score of every route, worst first, as a table for people."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.table import Table

from models.settings import Thresholds


def latest_scores(records: Iterable[dict]) -> list[dict]:
    """Each route's record with the latest `window_end_ts`."""
    latest: dict[str, dict] = {}
    for record in records:
        seen = latest.get(record["route_id"])
        if seen is None or record["window_end_ts"] >= seen["window_end_ts"]:
            latest[record["route_id"]] = record
    if not latest:
        return []
    newest = max(r["window_end_ts"] for r in latest.values())
    return [r for r in latest.values() if r["window_end_ts"] == newest]


def worst_first(scores: list[dict]) -> list[dict]:
    """By the lower bound of the damage rate: what the data says at least, then the estimate."""
    return sorted(scores, key=lambda r: (-r["rate_low"], -r["rate"], r["route_id"]))


def scorecard(records: Iterable[dict], thresholds: Thresholds, zone: str, top: int) -> Table:
    scores = worst_first(latest_scores(records))
    when = "-"
    if scores:
        end = datetime.fromtimestamp(scores[0]["window_end_ts"] / 1000, tz=UTC)
        when = end.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    table = Table(title=f"route damage scorecard: {thresholds.damage_window_days} days to {when}"
                        f" ({len(scores)} routes, worst {min(top, len(scores))})")
    for column in ("route", "deliveries", "damaged", "rate", "95% interval", "flag"):
        table.add_column(column, justify="left" if column in ("route", "flag") else "right",
                         no_wrap=True)
    for r in scores[:top]:
        flagged = (r["deliveries"] >= thresholds.damage_min_deliveries
                   and r["rate_low"] > thresholds.damage_rate_threshold)
        table.add_row(
            f"{r['carrier']} {r['origin'] or '?'} → {r['destination'] or '?'}",
            str(r["deliveries"]), str(r["damaged"]), f"{100 * r['rate']:.2f}%",
            f"{100 * r['rate_low']:.2f}–{100 * r['rate_high']:.2f}%",
            "above threshold" if flagged else "")
    return table
