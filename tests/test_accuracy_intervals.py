"""The 95% bootstrap intervals on precision and recall: around the figure, narrower with
more cases, the same on every run, and none where one case says nothing."""

from __future__ import annotations

import math

from benchmarks.scoring import _figures, interval


def test_the_interval_brackets_the_figure_and_narrows_with_more_cases():
    few, many = interval(18, 2), interval(1800, 200)
    assert few[0] < 0.9 < few[1] and many[0] < 0.9 < many[1]
    assert few[0] >= 0 and few[1] <= 1
    assert many[1] - many[0] < (few[1] - few[0]) / 5
    # Close to the normal approximation of a proportion of 2,000 cases: ±1.96·√(pq/n).
    half = 1.96 * math.sqrt(0.9 * 0.1 / 2000)
    assert abs((many[1] - many[0]) / 2 - half) < 0.2 * half


def test_the_interval_is_the_same_on_every_run():
    assert interval(37, 11) == interval(37, 11)


def test_no_interval_under_two_cases_and_none_of_spread_when_all_agree():
    assert interval(1, 0) is None and interval(0, 1) is None and interval(0, 0) is None
    assert interval(2, 0) == [1.0, 1.0] and interval(0, 5) == [0.0, 0.0]


def test_each_figure_has_the_interval_of_its_own_denominator():
    figures = _figures(found=30, false_alarms=10, missed=1, delays_ms=[])
    assert figures["precision_ci"] == interval(30, 10)  # over the 40 alerts
    assert figures["recall_ci"] == interval(30, 1)      # over the 31 true cases
    assert figures["precision_ci"][0] < figures["precision"] == 0.75 < figures["precision_ci"][1]
    nothing = _figures(found=0, false_alarms=0, missed=0, delays_ms=[])
    assert (nothing["precision_ci"], nothing["recall_ci"]) == (None, None)
