"""The accuracy benchmark's threshold sweeps, read from a TOML file (`sweeps.toml` beside
this module unless `--sweeps FILE` names another), so an analyst can sweep other settings
without touching code.

    [[sweep]]
    name = "lane_quantile x lane_factor"
    detector = "DWELL_ANOMALY vs stalls"
    note = "What the settings trade, shown above the sweep's table."
    grid = { lane_quantile = [0.95, 0.99], lane_factor = [1.25, 1.5, 2] }
    compared_within = "lane_quantile"   # optional

A sweep's points are the cartesian product of its grid, the first key outermost.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import msgspec

from benchmarks.scoring import SCORED
from flows.config import load_settings
from models.settings import ConfigError, Thresholds

SWEEPS_FILE = Path(__file__).with_name("sweeps.toml")
THRESHOLD_NAMES = frozenset(field.name for field in msgspec.structs.fields(Thresholds))


class Sweep(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One sweep: the detector it tunes, what its settings trade, and its grid.
    `compared_within` names a setting that decides what counts as a case (a damage
    threshold): settings are compared only with those that share its value."""

    name: str
    detector: str
    note: str = ""
    grid: dict[str, Annotated[list[int | float], msgspec.Meta(min_length=1)]]
    compared_within: str | None = None

    def points(self) -> list[dict]:
        names = list(self.grid)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*self.grid.values())]

    @property
    def slug(self) -> str:
        """The first word of the name: it names the sweep's plots."""
        return self.name.split(" ")[0]


class _SweepsFile(msgspec.Struct, forbid_unknown_fields=True):
    sweep: Annotated[list[Sweep], msgspec.Meta(min_length=1)]


def load_sweeps(path: Path = SWEEPS_FILE) -> list[Sweep]:
    """The sweeps of a grid file, checked before any run: a mistake found after an hour of
    runs costs the hour. Raises ConfigError with a one-line reason."""
    try:
        sweeps = msgspec.toml.decode(path.read_bytes(), type=_SweepsFile).sweep
    except OSError as exc:
        raise ConfigError(f"sweeps file {path}: {exc.strerror}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sweeps file {path}: {exc}") from None
    seen: dict[str, str] = {}
    swept: dict[str, str] = {}
    for sweep in sweeps:
        problem = _problem(sweep, seen, swept)
        if problem is not None:
            raise ConfigError(f"sweeps file {path}: sweep {sweep.name!r}: {problem}")
        seen[sweep.slug] = sweep.name
        swept.update(dict.fromkeys(sweep.grid, sweep.name))
    return sweeps


def _problem(sweep: Sweep, seen: dict[str, str], swept: dict[str, str]) -> str | None:
    """What is wrong with one sweep, given the slugs and settings of those before it."""
    if sweep.detector not in SCORED:
        return f"detector {sweep.detector!r} is not scored (one of: {', '.join(SCORED)})"
    if not sweep.name.strip():
        return "its name is empty"
    if sweep.slug in seen:
        return (f"its name begins like {seen[sweep.slug]!r}'s; the first word names the "
                "plots, so it must differ")
    unknown = sorted(set(sweep.grid) - THRESHOLD_NAMES)
    if unknown:
        return f"{', '.join(unknown)} is not a threshold (see models/settings.py Thresholds)"
    if not sweep.grid:
        return "its grid is empty"
    twice = [name for name in sweep.grid if name in swept]
    if twice:
        return (f"{twice[0]} is swept by {swept[twice[0]]!r} too; a setting belongs to one "
                "sweep, so the recommended settings do not contradict each other")
    if sweep.compared_within is not None and sweep.compared_within not in sweep.grid:
        return f"compared_within {sweep.compared_within!r} is not a key of its grid"
    for point in sweep.points():
        try:
            load_settings(environ={}, thresholds=point)
        except ConfigError as exc:
            return f"the point {point}: {exc}"
    return None

