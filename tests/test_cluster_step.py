"""The delay clusters' own step finds exactly what the board finds inside the global step,
whatever order the runtime delivers the global step's batches in."""

from __future__ import annotations

import random

import pytest

from models.aggregate import Aggregate
from models.cluster_step import ClusterOutbox, ClusterStep
from models.detection import Detection
from models.events import WeatherWarning
from models.messages import ClusterBatch, DelayEnd, ShardTick
from models.settings import HOUR_MS, MINUTE_MS, Thresholds
from tests.test_clusters import BEIJING, HANGZHOU, T0, storm

H = HOUR_MS


def rounds() -> list[tuple[list, int]]:
    """Two storms, one named by a warning, whose parcels move on later; one item list and
    watermark per round, as the shards would send them."""
    hangzhou, beijing = storm(30, T0), storm(12, T0 + 3 * H, where=BEIJING, prefix="B")
    warning = WeatherWarning(event_id="W1", kind="RAINSTORM", lat=HANGZHOU[0],
                             lon=HANGZHOU[1], radius_km=50, start_ts=T0, end_ts=T0 + 12 * H,
                             severity=3)
    ends = [DelayEnd(d.waybill, d.onset_ts, T0 + 14 * H + i * MINUTE_MS)
            for i, d in enumerate(hangzhou + beijing)]
    events = [(d.onset_ts, d) for d in hangzhou + beijing] + [(e.end_ts, e) for e in ends]
    found = []
    for hour in range(1, 24):
        items = [d for ts, d in events if (hour - 1) * H <= ts - T0 < hour * H]
        if hour == 2:
            items.append(warning)
        found.append((items, T0 + hour * H))
    return found


def inline() -> list[Detection]:
    aggregate = Aggregate(Thresholds(), shards=1)
    out = []
    for items, watermark in rounds():
        out += aggregate.apply([*items, ShardTick(0, watermark, False)])
    return [d for d in out if type(d) is Detection]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_clusters_step_finds_what_the_board_finds_in_the_global_step(seed):
    aggregate = Aggregate(Thresholds(), shards=1, clusters=ClusterOutbox())
    step, batches = ClusterStep(Thresholds()), []
    for items, watermark in rounds():
        out = aggregate.apply([*items, ShardTick(0, watermark, False)])
        batches += [item for item in out if type(item) is ClusterBatch]
        assert not [d for d in out if type(d) is Detection]  # clusters come from the step
    rng = random.Random(seed)
    found = []
    while batches:  # delivered in bunches, each bunch in any order
        bunch = [batches.pop(0) for _ in range(min(len(batches), rng.randint(1, 4)))]
        rng.shuffle(bunch)
        found += step.apply(bunch)
    expected = inline()
    assert {d.status for d in expected} == {"FIRING", "RESOLVED"}
    assert len({d.alert_id for d in expected}) == 2
    assert found == expected


def test_an_unknown_call_is_refused():
    with pytest.raises(TypeError, match="unknown call: forget_everything"):
        ClusterStep(Thresholds()).apply([ClusterBatch(0, [("forget_everything", ())])])
