"""Route damage rates through the whole dataflow: scores, the injected bad route, the scorecard."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import write_files

from conftest import cli, cli_env, read_jsonl

HOUR = 3_600_000


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """15,000 parcels: enough deliveries on the hot lane for the bad route to stand out."""
    base = tmp_path_factory.mktemp("busy")
    scenario = Scenario(ScenarioConfig(parcels=15_000, days=30, seed=5))
    paths = write_files(scenario, base / "in", show_progress=False)
    result = cli("replay", "--scans", paths["scans"], "--disputes", paths["disputes"],
                 "--out", base / "out")
    assert result.returncode == 0, result.stderr
    return scenario, base / "out"


def test_the_injected_bad_route_fires_and_merchants_are_told_to_switch(busy):
    scenario, out = busy
    alerts = [a for a in read_jsonl(out / "alerts.jsonl") if a["type"] == "ROUTE_DAMAGE_RATE"]
    firing = {a["details"]["route_id"] for a in alerts if a["status"] == "FIRING"}
    assert firing == set(scenario.truth.bad_routes)
    alert = next(a for a in alerts if a["status"] == "FIRING")
    details = alert["details"]
    assert details["deliveries"] >= 50 and details["rate_low"] > details["threshold"] == 0.01
    assert details["better_carrier"] not in (None, "JT")
    notes = [n for n in read_jsonl(out / "merchant-notifications.jsonl")
             if n["alert_id"] == alert["alert_id"]]
    assert len(notes) > 1 and len({n["merchant_id"] for n in notes}) == len(notes)
    codes = [a["code"] for a in notes[0]["suggested_actions"]]
    assert codes[0] == "SWITCH_CARRIER"
    assert details["better_carrier"] in notes[0]["suggested_actions"][0]["text"]


def test_route_scores_come_every_interval_for_routes_with_deliveries(busy):
    _, out = busy
    scores = read_jsonl(out / "route-scores.jsonl")
    ends = sorted({s["window_end_ts"] for s in scores})
    assert all(end % (24 * HOUR) == 0 for end in ends)  # the tests' daily interval
    assert all(b - a == 24 * HOUR for a, b in itertools.pairwise(ends))
    for score in scores:
        assert score["deliveries"] > 0
        assert 0 <= score["rate_low"] <= score["rate"] <= score["rate_high"] <= 1


def test_the_default_interval_is_hourly(tmp_path):
    scenario = Scenario(ScenarioConfig(parcels=300, days=8, seed=2))
    paths = write_files(scenario, tmp_path / "in", show_progress=False)
    env = cli_env()
    del env["PARCELWATCH_THRESHOLDS__SCORE_INTERVAL_HOURS"]
    result = cli("replay", "--scans", paths["scans"], "--out", tmp_path / "out", env=env)
    assert result.returncode == 0, result.stderr
    ends = sorted({s["window_end_ts"] for s in read_jsonl(tmp_path / "out/route-scores.jsonl")})
    assert len(ends) > 24 * 3
    assert all(b - a == HOUR for a, b in itertools.pairwise(ends))


def test_the_scorecard_lists_the_worst_route_first(busy):
    scenario, out = busy
    result = cli("scores", "--from", out / "route-scores.jsonl", "--top", "5")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "→" in line]
    assert len(lines) == 5
    carrier, origin, destination = scenario.truth.bad_routes[0].replace(":", " ").replace(
        ">", " ").split()
    assert f"{carrier} {origin} → {destination}" in lines[0]
    assert "above threshold" in lines[0]
