"""Where a generated scenario goes: JSON Lines files or Kafka topics, with a progress bar."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.scenario import Scenario

INPUT_TOPICS = ("scans", "disputes", "weather", "shipments", "merchant-actions")


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=transient)


def _with_progress(scenario: Scenario, show: bool) -> Iterable[tuple[str, str | None, bytes]]:
    """The scenario's records, with a bar that counts parcels picked up."""
    if not show:
        yield from scenario.records()
        return
    with progress_bar() as bar:
        task = bar.add_task("generating parcels", total=scenario.config.parcels)
        for count, record in enumerate(scenario.records(), 1):
            yield record
            if count % 5000 == 0:
                bar.update(task, completed=scenario.parcels_started)
        bar.update(task, completed=scenario.config.parcels)


def write_truth(scenario: Scenario, out_dir: Path) -> None:
    with (out_dir / "truth.jsonl").open("w", encoding="utf-8") as truth:
        stalls = [{"type": "STALL", **stall} for stall in scenario.truth.stalls]
        for alert in scenario.truth.alerts + scenario.truth.clusters + stalls:
            truth.write(json.dumps(alert, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(
        json.dumps(scenario.summary(), indent=2, ensure_ascii=False), encoding="utf-8")


def write_files(scenario: Scenario, out_dir: Path, show_progress: bool = True) -> dict[str, Path]:
    """A JSON Lines file per input (scans.jsonl, ..., merchant-actions.jsonl), truth.jsonl and
    summary.json in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {topic: out_dir / f"{topic}.jsonl" for topic in INPUT_TOPICS}
    files = {topic: path.open("wb") for topic, path in paths.items()}
    try:
        for topic, _key, value in _with_progress(scenario, show_progress):
            files[topic].write(value + b"\n")
    finally:
        for handle in files.values():
            handle.close()
    write_truth(scenario, out_dir)
    return paths


def produce(scenario: Scenario, config: dict, topics: dict[str, str],
            show_progress: bool = True) -> int:
    """Produce the scenario to Kafka (keyed by waybill); returns the number of records."""
    producer = Producer({**config, "linger.ms": 20, "enable.idempotence": False,
                         "queue.buffering.max.messages": 500_000})
    errors: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            errors.append(error.str())

    count = 0
    for topic, key, value in _with_progress(scenario, show_progress):
        while True:
            try:
                producer.produce(topics[topic], value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(f"{left} records not delivered; errors: {errors[:3]}")
    return count
