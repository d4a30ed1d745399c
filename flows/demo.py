"""`parcelwatch demo`: the whole path on one machine, from an empty broker to a summary."""

from __future__ import annotations

import json
import threading
from collections import Counter

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alerts.metrics import Metrics
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import produce, progress_bar
from connectors.broker import EmbeddedBroker
from connectors.kafka import client_config, read_topic
from flows.config import Settings
from flows.runner import kafka_partitions, run

console = Console()


def _events_read(metrics: Metrics) -> float:
    total = 0.0
    for family in metrics.events.collect():
        total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def _run_with_progress(settings: Settings, metrics: Metrics, total: int) -> None:
    """Run the job to the end of its inputs while a bar follows the records it has read."""
    done = threading.Event()
    with progress_bar() as bar:
        task = bar.add_task("detecting", total=total)

        def follow() -> None:
            while not done.wait(0.2):
                bar.update(task, completed=min(total, _events_read(metrics)))

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        try:
            run(settings, metrics, from_beginning=True, exit_at_end=True)
        finally:
            done.set()
            watcher.join()
        bar.update(task, completed=min(total, _events_read(metrics)))


def run_demo(settings: Settings, metrics: Metrics, parcels: int, days: float, seed: int) -> None:
    with EmbeddedBroker() as broker:
        console.print(f"embedded broker on {broker.bootstrap} (memory only)")
        settings = msgspec.structs.replace(settings, brokers=broker.bootstrap)
        kafka = client_config(settings.brokers, settings.kafka)
        kafka_partitions(settings)  # creates the topics
        scenario = Scenario(ScenarioConfig(
            parcels=parcels, days=days, seed=seed,
            no_movement_hours=settings.thresholds.no_movement_hours,
            allowed_lateness_minutes=settings.thresholds.allowed_lateness_minutes))
        produced = produce(scenario, kafka, settings.topics.inputs())
        console.print(f"{produced} records produced to scans, disputes and weather")
        _run_with_progress(settings, metrics, produced)
        alerts = [json.loads(v) for _, v, _ in read_topic(kafka, settings.topics.alerts)]
        notes = [json.loads(v) for _, v, _ in
                 read_topic(kafka, settings.topics.merchant_notifications)]
        dead = read_topic(kafka, settings.topics.dead_letter)
    _summary(alerts, notes, len(dead), scenario, settings)


def _summary(alerts: list[dict], notes: list[dict], dead: int, scenario: Scenario,
             settings: Settings) -> None:
    table = Table(title="alerts by type")
    for column in ("type", "FIRING", "RESOLVED"):
        table.add_column(column, justify="left" if column == "type" else "right")
    counts = Counter((a["type"], a["status"]) for a in alerts)
    for kind in sorted({k for k, _ in counts}):
        table.add_row(kind, str(counts[kind, "FIRING"]), str(counts[kind, "RESOLVED"]))
    console.print(table)
    for kind in ("NO_MOVEMENT", "SIGNED_DISPUTED"):
        expected = {(a["waybill"], a["status"], a["event_ts"]) for a in scenario.truth.alerts
                    if a["type"] == kind}
        found = {(a["waybill"], a["status"], a["event_ts"]) for a in alerts
                 if a["type"] == kind}
        console.print(f"ground truth: {len(expected)} {kind} records expected, "
                      f"{len(expected & found)} found with the exact event_ts, "
                      f"{len(found - expected)} unexpected")
    flagged = sorted({a["details"]["route_id"] for a in alerts
                      if a["type"] == "ROUTE_DAMAGE_RATE" and a["status"] == "FIRING"})
    console.print(f"routes flagged for damage: {', '.join(flagged) or 'none'} "
                  f"(injected: {', '.join(scenario.truth.bad_routes)})")
    _clusters(alerts, scenario)
    console.print(f"dead-letter: {dead} records (injected junk: "
                  f"{scenario.truth.counts['junk']})")
    samples = {note["type"]: note for note in notes}  # one of each kind
    for note in samples.values():
        console.print(f"\n[bold]{escape(note['title'])}[/bold]\n{escape(note['body'])}")
        for action in note["suggested_actions"]:
            console.print(escape(f"  • [{action['code']}] {action['text']}"))
    console.print(f"\nmetrics were served on http://{settings.metrics.host}:"
                  f"{settings.metrics.port}/metrics")


def _clusters(alerts: list[dict], scenario: Scenario) -> None:
    """Each delay cluster's last record, next to the storms the scenario injected."""
    last = {a["alert_id"]: a for a in alerts if a["type"] == "WEATHER_DELAY_CLUSTER"}
    table = Table(title="delay clusters (last record of each)")
    for column in ("city", "status", "parcels", "cause", "weather warning", "radius km"):
        table.add_column(column)
    for alert in last.values():
        d = alert["details"]
        table.add_row(d["city"] or "-", alert["status"], str(d["parcel_count"]), d["cause"],
                      d["weather_event_id"] or "-", f"{d['radius_km']:g}")
    console.print(table)
    injected = ", ".join(f"{c['city']} ({len(c['waybills'])} parcels held, {c['cause']})"
                         for c in scenario.truth.clusters)
    console.print(f"storms injected: {injected or 'none'}")
