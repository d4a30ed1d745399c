"""The event-time clock (contract section 2): models.watermark.Watermark."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.watermark import Watermark

LATE = 600_000  # 10 minutes, the default allowed lateness


def test_unknown_until_every_partition_has_reported():
    wm = Watermark(["scans/0", "scans/1", "disputes/0"], LATE)
    assert wm.value is None
    assert wm.observe("scans/0", 5_000_000, False) is None
    assert wm.observe("scans/1", 4_000_000, False) is None
    # The last expected partition reports: the watermark becomes known.
    assert wm.observe("disputes/0", 6_000_000, False) == 4_000_000 - LATE


def test_an_empty_caught_up_partition_counts_as_reported():
    wm = Watermark(["scans/0", "scans/1"], LATE)
    assert wm.observe("scans/0", 5_000_000, False) is None
    # scans/1 has nothing to read: it reports without a ts, caught up.
    assert wm.observe("scans/1", None, True) == 5_000_000 - LATE


def test_a_partition_that_reported_nothing_holds_it_unknown():
    wm = Watermark(["scans/0", "scans/1"], LATE)
    wm.observe("scans/0", 5_000_000, True)
    assert wm.observe("scans/1", None, False) is None
    assert wm.value is None


def test_min_over_partitions_not_caught_up_minus_lateness():
    wm = Watermark(["a", "b", "c"], LATE)
    wm.observe("a", 9_000_000, False)
    wm.observe("b", 3_000_000, False)
    assert wm.observe("c", 7_000_000, False) == 3_000_000 - LATE
    assert wm.observe("b", 8_000_000, False) == 7_000_000 - LATE


def test_caught_up_partitions_do_not_hold_it_back():
    wm = Watermark(["a", "b"], LATE)
    wm.observe("a", 9_000_000, False)
    assert wm.observe("b", 1_000_000, True) == 9_000_000 - LATE
    # A slower partition that is still behind does hold it back.
    wm2 = Watermark(["a", "b"], LATE)
    wm2.observe("a", 9_000_000, True)
    assert wm2.observe("b", 1_000_000, False) == 1_000_000 - LATE


def test_all_caught_up_gives_max_ts_minus_lateness():
    wm = Watermark(["a", "b", "c"], LATE)
    wm.observe("a", 2_000_000, True)
    wm.observe("b", 7_000_000, True)
    assert wm.observe("c", 5_000_000, True) == 7_000_000 - LATE
    assert wm.all_caught_up


def test_max_ts_per_partition_is_a_running_max():
    wm = Watermark(["a"], LATE)
    wm.observe("a", 5_000_000, False)
    wm.observe("a", 4_000_000, False)  # an older progress report does not lower it
    assert wm.max_ts["a"] == 5_000_000
    assert wm.value == 5_000_000 - LATE


def test_never_goes_backwards():
    wm = Watermark(["a", "b"], LATE)
    wm.observe("a", 9_000_000, True)
    assert wm.observe("b", 8_000_000, True) == 9_000_000 - LATE
    # New data shows up in "a": it is behind again with its (lower) max over "b" ...
    assert wm.observe("a", 9_000_000, False) == 9_000_000 - LATE
    # ... and "b" gets data too, behind at 8_000_000: still no step back.
    assert wm.observe("b", 8_000_000, False) == 9_000_000 - LATE


def test_zero_lateness():
    wm = Watermark(["a"], 0)
    assert wm.observe("a", 123, False) == 123


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                          st.one_of(st.none(), st.integers(0, 10**12)),
                          st.booleans()), max_size=30))
def test_property_monotonic_and_matches_definition(reports):
    wm = Watermark(["a", "b", "c"], LATE)
    max_ts: dict[str, int | None] = {"a": None, "b": None, "c": None}
    caught: dict[str, bool] = {"a": False, "b": False, "c": False}
    previous = None
    for partition, ts, caught_up in reports:
        if ts is not None:
            old = max_ts[partition]
            max_ts[partition] = ts if old is None else max(old, ts)
        caught[partition] = caught_up
        value = wm.observe(partition, ts, caught_up)
        behind = [p for p in max_ts if not caught[p]]
        if behind:
            base = None if any(max_ts[p] is None for p in behind) else min(
                max_ts[p] for p in behind)
        else:
            known = [t for t in max_ts.values() if t is not None]
            base = max(known) if known else None
        if previous is not None:
            assert value is not None and value >= previous
            expected = previous if base is None else max(previous, base - LATE)
        else:
            expected = None if base is None else base - LATE
        assert value == expected
        previous = value


# -- idle advance -------------------------------------------------------------------------


def test_advance_idle_moves_with_elapsed_wall_time_when_all_caught_up():
    wm = Watermark(["a", "b"], LATE)
    wm.observe("a", 5_000_000, True)
    wm.observe("b", 4_000_000, True)
    start = wm.value
    assert start == 5_000_000 - LATE
    assert wm.advance_idle(1_000_000) == start  # the first call only anchors
    assert wm.advance_idle(1_030_000) == start + 30_000
    assert wm.advance_idle(1_090_000) == start + 90_000
    # A wall clock stepping back never moves event time back.
    assert wm.advance_idle(1_000_000) == start + 90_000


def test_advance_idle_does_nothing_while_a_partition_is_behind():
    wm = Watermark(["a", "b"], LATE)
    wm.observe("a", 5_000_000, True)
    wm.observe("b", 4_000_000, False)
    value = wm.value
    assert wm.advance_idle(1_000_000) == value
    assert wm.advance_idle(9_000_000) == value
    assert wm.value == 4_000_000 - LATE


def test_advance_idle_does_nothing_while_unknown():
    wm = Watermark(["a", "b"], LATE)
    wm.observe("a", 5_000_000, True)
    assert wm.advance_idle(1_000_000) is None
    assert wm.advance_idle(9_000_000) is None


def test_new_data_restarts_the_idle_anchor():
    wm = Watermark(["a"], LATE)
    wm.observe("a", 5_000_000, True)
    wm.advance_idle(1_000_000)
    assert wm.advance_idle(1_060_000) == 5_000_000 - LATE + 60_000
    # Data arrives: partition behind, idle advance stops.
    wm.observe("a", 5_010_000, False)
    assert wm.advance_idle(2_000_000) == 5_000_000 - LATE + 60_000
    # Caught up again: the elapsed time counts from the new anchor only.
    wm.observe("a", 5_010_000, True)
    anchored = wm.value
    assert wm.advance_idle(3_000_000) == anchored
    assert wm.advance_idle(3_005_000) == anchored + 5_000
