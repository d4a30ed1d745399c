"""The accuracy benchmark's sweep grid file: the shipped one, and the mistakes a file of
one's own is refused for before any run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import accuracy
from benchmarks.sweep_grid import SWEEPS_FILE, load_sweeps
from models.settings import ConfigError

GOOD = """
[[sweep]]
name = "no_movement_hours"
detector = "NO_MOVEMENT"
grid = { no_movement_hours = [24, 72] }
"""


def test_the_shipped_grid_sweeps_each_detector_over_the_cartesian_product():
    sweeps = {sweep.name: sweep for sweep in load_sweeps(SWEEPS_FILE)}
    assert {name: len(sweep.points()) for name, sweep in sweeps.items()} == {
        "no_movement_hours": 4, "delay_dwell_hours": 3,
        "cluster_radius_km x cluster_min_parcels": 9,
        "damage_rate_threshold x damage_min_deliveries": 9,
        "lane_quantile x lane_factor": 6, "cluster_min_share": 4}
    assert {sweep.detector for sweep in sweeps.values()} == {
        "NO_MOVEMENT", "WEATHER_DELAY_CLUSTER", "ROUTE_DAMAGE_RATE", accuracy.DWELL_VS_STALLS}
    clusters = sweeps["cluster_radius_km x cluster_min_parcels"].points()
    assert clusters[:4] == [  # the first key outermost, each list in the order written
        {"cluster_radius_km": 10, "cluster_min_parcels": 3},
        {"cluster_radius_km": 10, "cluster_min_parcels": 5},
        {"cluster_radius_km": 10, "cluster_min_parcels": 10},
        {"cluster_radius_km": 25, "cluster_min_parcels": 3}]
    damage = sweeps["damage_rate_threshold x damage_min_deliveries"]
    assert damage.compared_within == "damage_rate_threshold"
    assert all(sweep.note for sweep in sweeps.values())
    assert sweeps["lane_quantile x lane_factor"].grid["lane_factor"] == [1.25, 1.5, 2]


def test_a_grid_file_of_ones_own_is_read(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD + """
[[sweep]]
name = "damage_rate_threshold x damage_min_deliveries"
detector = "ROUTE_DAMAGE_RATE"
note = "Compared within one threshold."
grid = { damage_rate_threshold = [0.01], damage_min_deliveries = [20, 50] }
compared_within = "damage_rate_threshold"
""", encoding="utf-8")
    first, second = load_sweeps(path)
    assert first.points() == [{"no_movement_hours": 24}, {"no_movement_hours": 72}]
    assert first.note == "" and first.compared_within is None
    assert second.points() == [{"damage_rate_threshold": 0.01, "damage_min_deliveries": 20},
                               {"damage_rate_threshold": 0.01, "damage_min_deliveries": 50}]


@pytest.mark.parametrize(("text", "reason"), [
    (GOOD.replace('grid =', 'colour = "red"\ngrid ='), "unknown field `colour`"),
    (GOOD.replace("no_movement_hours = [", "no_movement_hour = ["),
     "no_movement_hour is not a threshold"),
    (GOOD.replace('"NO_MOVEMENT"', '"NO_MOVMENT"'), "detector 'NO_MOVMENT' is not scored"),
    (GOOD.replace("[24, 72]", "[24, -1]"), "the point {'no_movement_hours': -1}"),
    (GOOD.replace("[24, 72]", "[]"), "length >= 1"),
    (GOOD.replace("[24, 72]", '["a day"]'), "Expected `int | float`, got `str`"),
    (GOOD + 'compared_within = "damage_rate_threshold"\n',
     "compared_within 'damage_rate_threshold' is not a key of its grid"),
    (GOOD + GOOD.replace('name = "no_movement_hours"', 'name = "again"'),
     "no_movement_hours is swept by 'no_movement_hours' too"),
    (GOOD + GOOD.replace('name = "no_movement_hours"', 'name = "no_movement_hours x lane"')
     .replace("no_movement_hours = [", "lane_factor = ["), "its name begins like"),
    (GOOD.replace('detector = "NO_MOVEMENT"\n', ""), "missing required field `detector`"),
    ("[[sweep]\n", "sweeps file"),
    ("", "missing required field `sweep`"),
])
def test_a_bad_grid_file_is_refused_with_its_reason(tmp_path, text, reason):
    path = tmp_path / "sweeps.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_sweeps(path)
    message = str(refused.value)
    assert reason in message and "\n" not in message and str(path) in message


def test_a_missing_grid_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        load_sweeps(tmp_path / "none.toml")


def test_defaults_only_runs_the_default_thresholds_and_no_sweep(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.accuracy", "--parcels", "300",
                           "--days", "5", "--defaults-only", "--json", out],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert [run["sweep"] for run in results["runs"]] == ["defaults"]
    assert results["command"].endswith("--defaults-only")
