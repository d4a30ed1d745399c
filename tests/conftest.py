"""Shared fixtures: the real embedded broker, a small generated scenario, the CLI."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import write_files
from connectors.broker import EmbeddedBroker, free_port
from models.detection import Detection

CLI = str(Path(sys.executable).with_name("parcelwatch"))
# 3,000 parcels over 30 days, with stalls and claims six and two times as frequent as the
# generator's realistic rates, so a small scenario still gives every detector work.
# Uniform waits (`legs=False`): at 3000 parcels no leg has the history for a norm, so slow
# remote legs would be delays by the fixed dwell; the legs' norms are tested on scenarios of
# their own (test_dwell_anomaly.py, test_dwell_end_to_end.py, test_scenario_legs.py).
SESSION_SCENARIO = ScenarioConfig(parcels=3000, days=30, seed=11, stall_scale=6,
                                  not_received_scale=2, legs=False)


@pytest.fixture(scope="session")
def broker():
    """One Tansu broker for the session, started on a free port and stopped by its PID."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def scenario(tmp_path_factory):
    """SESSION_SCENARIO as files, with its ground truth."""
    out = tmp_path_factory.mktemp("scenario")
    generated = Scenario(SESSION_SCENARIO)
    paths = write_files(generated, out, show_progress=False)
    return generated, paths


@pytest.fixture(scope="session")
def replayed(scenario, tmp_path_factory):
    """The `replay` command's outputs on the session scenario."""
    _, paths = scenario
    out = tmp_path_factory.mktemp("replayed")
    result = cli("replay", *replay_inputs(paths), "--out", out)
    assert result.returncode == 0, result.stderr
    return {name: read_jsonl(out / f"{name}.jsonl") for name in
            ("alerts", "merchant-notifications", "dead-letter", "route-scores")}


def replay_inputs(paths: dict[str, Path]) -> list:
    """`replay`'s input options for a scenario written by `write_files`."""
    return [arg for role, path in paths.items() for arg in (f"--{role}", path)]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def cli_env(**settings: str) -> dict[str, str]:
    """The environment for a CLI run: metrics on a free port, settings as PARCELWATCH_* vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELWATCH_")}
    env["PARCELWATCH_METRICS__PORT"] = str(free_port())
    # Daily route scores keep the outputs of a 30-day scenario small; the hourly default
    # is exercised on a short scenario in test_signed_and_routes.py.
    env["PARCELWATCH_THRESHOLDS__SCORE_INTERVAL_HOURS"] = "24"
    for key, value in settings.items():
        env[f"PARCELWATCH_{key.upper()}"] = str(value)
    return env


def cli(*args, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the installed `parcelwatch` command."""
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout, check=False)


def topic_settings(prefix: str) -> dict[str, str]:
    """Topic names of their own for one test, so tests sharing the broker never mix."""
    names = ("scans", "disputes", "weather", "shipments", "merchant_actions", "alerts",
             "merchant_notifications", "route_scores", "dead_letter")
    return {f"topics__{name}": f"{prefix}-{name}" for name in names}


def poison_record(depth: int) -> bytes:
    """A small JSON object with an ignored field nested `depth` levels deep: msgspec gives up
    on it with a RecursionError rather than a DecodeError."""
    return b'{"event_id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"


class Detections(list):
    """An output list that keeps only alerts (not the delay onsets and ends that the
    per-parcel detectors also emit for the global step)."""

    def append(self, item) -> None:
        if type(item) is Detection:
            super().append(item)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once the process has exited: a pidfd turns readable then (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)
