"""WEATHER_DELAY_CLUSTER in the global step: clusters, identity, resolution, causes."""

from __future__ import annotations

import math
import random

from models.aggregate import Aggregate
from models.clusters import WEATHER_DELAY_CLUSTER
from models.detection import Detection
from models.events import WeatherWarning
from models.messages import DelayEnd, DelayOnset, ShardTick
from models.settings import HOUR_MS, MINUTE_MS, Thresholds

T0 = 1_789_948_800_000  # a midnight (UTC): cadences fall on round hours from it
H = HOUR_MS
HANGZHOU = (30.27, 120.15)
BEIJING = (39.90, 116.41)


def onset(waybill: str, ts: int, where: tuple[float, float] | None = HANGZHOU,
          weather: bool = False, km_east: float = 0, merchant: str | None = "M1") -> DelayOnset:
    lat, lon = where if where else (None, None)
    if where and km_east:
        lon = lon + km_east / (111.32 * math.cos(math.radians(lat)))
    return DelayOnset(waybill=waybill, onset_ts=ts, since_ts=ts - 24 * H, weather=weather,
                      lat=lat, lon=lon, hub_id="HZ01", city="杭州", carrier="SF",
                      merchant_id=merchant, order_id=f"O-{waybill}")


class Step:
    """One shard and the aggregate, driven the way the dataflow drives them."""

    def __init__(self, **thresholds):
        self.aggregate = Aggregate(Thresholds(**thresholds), shards=1)
        self.found: list[Detection] = []

    def __call__(self, items: list, watermark: int) -> list[Detection]:
        out = self.aggregate.apply([*items, ShardTick(0, watermark, False)])
        found = [d for d in out if type(d) is Detection and d.type == WEATHER_DELAY_CLUSTER]
        self.found += found
        return found


def storm(n: int, start: int, spread_hours: float = 6, seed: int = 1,
          where: tuple[float, float] = HANGZHOU, prefix: str = "S") -> list[DelayOnset]:
    rng = random.Random(seed)
    return [onset(f"{prefix}{i:03d}", start + round(i * spread_hours * H / n), where,
                  km_east=rng.uniform(-10, 10)) for i in range(n)]


def test_a_storm_is_found_once_and_keeps_its_id_as_it_grows():
    step, delays = Step(), storm(40, T0)
    for hour in range(1, 9):  # the onsets arrive as event time passes
        due = [d for d in delays if (hour - 1) * H <= d.onset_ts - T0 < hour * H]
        step(due, T0 + hour * H)
    assert step.found and {d.status for d in step.found} == {"FIRING"}
    assert len({d.alert_id for d in step.found}) == 1
    assert len({d.details["cluster_id"] for d in step.found}) == 1
    counts = [d.details["parcel_count"] for d in step.found]
    assert counts == sorted(set(counts)) and counts[-1] == 40  # re-emitted only as it grows
    first = step.found[0]
    assert first.event_ts == delays[4].onset_ts  # true once the fifth parcel was delayed
    assert first.details["cause"] == "UNKNOWN" and first.details["weather_event_id"] is None
    assert math.dist((first.details["centroid_lat"], first.details["centroid_lon"]),
                     HANGZHOU) < 0.1
    # One notification per affected parcel, over all emissions.
    notified = [waybill for d in step.found for _, waybill, _ in d.parcels]
    assert sorted(notified) == sorted(d.waybill for d in delays)


def test_a_cluster_resolves_when_its_parcels_move_on():
    step, delays = Step(), storm(10, T0, spread_hours=2)
    fired = step(delays, T0 + 3 * H)[-1]
    assert fired.details["parcel_count"] == 10
    moved = [DelayEnd(d.waybill, d.onset_ts, T0 + 5 * H + i * MINUTE_MS)
             for i, d in enumerate(delays)]
    assert step(moved[:5], T0 + 6 * H) == []  # five of ten still delayed: still a cluster
    [resolved] = step(moved[5:], T0 + 7 * H)
    assert resolved.status == "RESOLVED" and resolved.alert_id == fired.alert_id
    # It stopped being a cluster when the sixth moved on: fewer than five were left.
    assert resolved.event_ts == moved[5].end_ts
    assert resolved.details["delayed_now"] == 0 and resolved.details["parcel_count"] == 10
    assert step([], T0 + 20 * H) == []


def test_a_jam_that_falls_below_the_minimum_and_fills_again_fires_again_under_its_id():
    step, delays = Step(), storm(6, T0, spread_hours=1)
    fired = step(delays, T0 + 2 * H)[-1]
    moved = [DelayEnd(d.waybill, d.onset_ts, T0 + 3 * H) for d in delays[:2]]
    [resolved] = step(moved, T0 + 4 * H)  # four left: resolved
    later = storm(3, T0 + 5 * H, spread_hours=1, prefix="L", seed=2)
    again = step(later, T0 + 7 * H)  # five, then six and seven delayed in the same place
    assert {(d.status, d.alert_id, d.details["cluster_id"]) for d in again} == {
        ("FIRING", fired.alert_id, fired.details["cluster_id"])}
    assert resolved.event_ts <= again[0].event_ts == later[0].onset_ts
    assert [d.details["delayed_now"] for d in again] == [5, 6, 7]
    # The parcels it held before are not counted or notified twice.
    assert [d.details["parcel_count"] for d in again] == [7, 8, 9]
    assert [w for d in again for _, w, _ in d.parcels] == ["L000", "L001", "L002"]
    # Beyond the window a new jam at the same place is a new incident.
    gone = [DelayEnd(d.waybill, d.onset_ts, T0 + 8 * H) for d in delays[2:] + later]
    assert [d.status for d in step(gone, T0 + 9 * H)] == ["RESOLVED"]
    fresh = storm(5, T0 + 30 * H, spread_hours=1, prefix="N", seed=3)
    [new] = step(fresh, T0 + 32 * H)
    assert new.alert_id != fired.alert_id


def test_scattered_delays_form_no_cluster():
    cities = [(22.5 + 1.0 * i, 100.0 + 1.5 * (i % 7)) for i in range(60)]  # > 100 km apart
    delays = [onset(f"W{c}-{k}", T0 + k * H, where=city)
              for c, city in enumerate(cities) for k in range(4)]  # four per place
    assert Step()(delays, T0 + 24 * H) == []


def test_five_delays_in_one_place_that_began_too_far_apart_are_no_cluster():
    delays = [onset(f"W{k}", T0 + k * 4 * H) for k in range(5)]  # 16 h from first to last
    assert Step()(delays, T0 + 24 * H) == []
    assert Step(cluster_window_hours=17)(delays, T0 + 24 * H) != []


def test_delays_farther_apart_than_the_radius_are_no_cluster():
    delays = [onset(f"W{k}", T0 + k * H, km_east=30 * k) for k in range(6)]
    assert Step()(delays, T0 + 12 * H) == []


def test_delays_without_a_known_position_are_never_clustered():
    assert Step()([onset(f"W{k}", T0 + k * H, where=None) for k in range(10)], T0 + 12 * H) == []


def test_two_storms_far_apart_are_two_clusters():
    delays = storm(8, T0, prefix="HZ") + storm(8, T0, where=BEIJING, prefix="BJ")
    found = Step()(delays, T0 + 8 * H)
    assert len({d.subject for d in found}) == 2
    assert {d.details["waybills"][0][:2] for d in found} == {"HZ", "BJ"}


def test_a_drifting_cluster_keeps_its_id():
    # A squall line moving east 8 km an hour: each hour's delays lie further on.
    step = Step()
    for hour in range(12):
        step([onset(f"W{hour}-{k}", T0 + hour * H + k * MINUTE_MS, km_east=8 * hour)
              for k in range(3)], T0 + (hour + 1) * H)
    assert len({d.subject for d in step.found}) == 1
    assert step.found[-1].details["parcel_count"] == 36
    assert step.found[-1].details["centroid_lon"] > step.found[0].details["centroid_lon"]


def warning(**fields) -> WeatherWarning:
    base = {"event_id": "wx-1", "kind": "TYPHOON", "lat": HANGZHOU[0], "lon": HANGZHOU[1] + 0.3,
            "radius_km": 50, "start_ts": T0 - 30 * H, "end_ts": T0 + 12 * H, "severity": 3}
    return WeatherWarning(**base | fields)


def test_an_overlapping_weather_warning_names_the_cause():
    found = Step()([warning(), *storm(6, T0)], T0 + 8 * H)
    assert {(d.details["cause"], d.details["weather_event_id"], d.details["weather_kind"])
            for d in found} == {("WEATHER", "wx-1", "TYPHOON")}


def test_a_warning_elsewhere_or_at_another_time_is_no_cause():
    far = warning(event_id="far", lat=BEIJING[0], lon=BEIJING[1])
    # Its parcels stopped 24 h before their onsets: a warning that ended before that is old.
    earlier = warning(event_id="earlier", start_ts=T0 - 60 * H, end_ts=T0 - 25 * H)
    found = Step()([far, earlier, *storm(6, T0)], T0 + 8 * H)
    assert found and {d.details["cause"] for d in found} == {"UNKNOWN"}


def test_the_most_severe_overlapping_warning_is_named():
    mild = warning(event_id="mild", kind="RAINSTORM", severity=2)
    found = Step()([mild, warning(event_id="red", severity=4), *storm(6, T0)], T0 + 8 * H)
    assert {d.details["weather_event_id"] for d in found} == {"red"}


def test_a_warning_read_after_the_cluster_fired_re_emits_it_with_the_cause():
    step = Step()
    fired = step(storm(6, T0), T0 + 8 * H)[-1]
    [again] = step([warning()], T0 + 9 * H)
    assert (fired.details["cause"], again.details["cause"]) == ("UNKNOWN", "WEATHER")
    assert again.alert_id == fired.alert_id and again.parcels == []  # nobody told twice


def test_most_members_with_weather_exception_codes_make_the_cause_weather():
    coded = [d._replace(weather=i % 2 == 0) for i, d in enumerate(storm(7, T0))]
    last = Step()(coded, T0 + 8 * H)[-1].details
    assert (last["parcel_count"], last["weather_coded"]) == (7, 4)
    assert (last["cause"], last["weather_event_id"]) == ("WEATHER", None)
    few = [d._replace(weather=i % 2 == 1) for i, d in enumerate(storm(7, T0))]
    assert Step()(few, T0 + 8 * H)[-1].details["cause"] == "UNKNOWN"


def test_clusters_are_looked_for_on_the_event_time_cadence_only():
    step = Step(cluster_interval_minutes=60)
    delays = storm(5, T0 + 10 * MINUTE_MS, spread_hours=0.5)
    assert step(delays, T0 + 59 * MINUTE_MS) == []  # all five delayed, not yet looked at
    [found] = step([], T0 + 60 * MINUTE_MS)
    assert found.event_ts == delays[-1].onset_ts  # the condition's time, not the look's


def test_the_result_does_not_depend_on_the_order_items_arrive_in():
    delays = storm(30, T0, seed=3) + storm(6, T0 + 2 * H, where=BEIJING, prefix="BJ")
    ends = [DelayEnd(d.waybill, d.onset_ts, d.onset_ts + 20 * H) for d in delays[::3]]
    shuffled = delays + ends
    random.Random(5).shuffle(shuffled)
    first, second = Step(), Step()
    for hour in range(0, 40, 4):
        first([i for i in delays + ends if hour * H <= _due(i) - T0 < (hour + 4) * H],
              T0 + (hour + 4) * H)
    second(shuffled, T0 + 40 * H)
    assert [(d.alert_id, d.status, d.event_ts, d.details["parcel_count"])
            for d in first.found] != []
    assert _final(first.found) == _final(second.found)


def _due(item) -> int:
    return item.onset_ts if type(item) is DelayOnset else item.end_ts


def _final(found: list[Detection]) -> dict:
    """The last record per alert, and who was notified."""
    last = {d.alert_id: (d.status, d.event_ts, d.details["parcel_count"]) for d in found}
    return {"last": last, "notified": sorted(p for d in found for p in d.parcels)}


def test_large_clusters_are_critical():
    found = Step(cluster_critical_parcels=20)(storm(25, T0), T0 + 8 * H)
    assert [d.severity for d in found][0::len(found) - 1] == ["WARNING", "CRITICAL"]


def test_thousands_of_parcels_at_a_few_hubs_cluster_by_hub():
    hubs = [HANGZHOU, (30.40, 120.30), BEIJING]
    delays = [onset(f"W{i:05d}", T0 + (i % 360) * MINUTE_MS, where=hubs[i % 3])
              for i in range(6000)]
    found = Step()(delays, T0 + 7 * H)
    last = {d.subject: d.details for d in found}
    counts = sorted(details["parcel_count"] for details in last.values())
    assert counts == [2000, 4000]  # the two Hangzhou hubs are 20 km apart: one cluster
    assert all(len(details["waybills"]) == 100 for details in last.values())


def test_delays_everywhere_split_into_clusters_no_wider_than_the_extent():
    # A peak week: delays all over a region 600 km across, dense enough for DBSCAN to chain
    # them into one group.
    rng = random.Random(2)
    delays = [onset(f"W{i:05d}", T0 + i * 10_000, where=(rng.uniform(27, 33),
                                                          rng.uniform(115, 121)))
              for i in range(3000)]
    found = Step()(delays, T0 + 9 * H)
    last = {d.subject: d.details for d in found}
    assert len(last) > 10
    # A group reaches at most 100 km from its centre, and joins a cluster centred within
    # 25 km of that.
    assert max(details["radius_km"] for details in last.values()) <= 100 + 25


def test_a_parcel_delayed_twice_in_one_cluster_counts_once_and_breaks_nothing():
    step = Step()
    delays = storm(5, T0, spread_hours=0.1)
    step(delays, T0 + H)
    again = onset("S000", T0 + 90 * MINUTE_MS)
    step([DelayEnd("S000", delays[0].onset_ts, T0 + 80 * MINUTE_MS), again], T0 + 2 * H)
    step([DelayEnd(d.waybill, d.onset_ts, T0 + 3 * H) for d in delays[1:3]], T0 + 4 * H)
    step([onset("LATE", T0 + 5 * H)], T0 + 6 * H)  # evaluated after the cluster closed
    assert [d.status for d in step.found] == ["FIRING", "FIRING", "RESOLVED"]
    assert step.found[1].details["parcel_count"] == 5  # S000 once, though delayed twice


def test_moved_on_parcels_can_link_a_group_but_not_make_a_cluster():
    # Four still delayed at each end, 60 km apart, linked by parcels that already moved on.
    ends = [onset(f"A{k}", T0 + k * MINUTE_MS) for k in range(4)]
    ends += [onset(f"B{k}", T0 + k * MINUTE_MS, km_east=60) for k in range(4)]
    links = [onset(f"L{k}", T0 + k * MINUTE_MS, km_east=12 * (k % 5 + 0.5)) for k in range(20)]
    moved = [DelayEnd(d.waybill, d.onset_ts, d.onset_ts + MINUTE_MS) for d in links]
    assert Step()(ends + links + moved, T0 + 2 * H) == []


def test_a_reopened_cluster_counts_only_its_old_parcels_still_followed():
    step, delays = Step(), storm(6, T0, spread_hours=1)
    step(delays, T0 + 2 * H)
    [resolved] = step([DelayEnd(d.waybill, d.onset_ts, T0 + 10 * H) for d in delays[:2]],
                      T0 + 11 * H)
    # The four still delayed leave the window, then move on: nobody follows them any more.
    step([DelayEnd(d.waybill, d.onset_ts, T0 + 13 * H + H // 2) for d in delays[2:]],
         T0 + 14 * H)
    later = storm(5, T0 + 14 * H, spread_hours=1, prefix="L", seed=2)
    again = step(later, T0 + 16 * H)
    assert [(d.status, d.alert_id) for d in again] == [("FIRING", resolved.alert_id)]
    assert again[0].details["delayed_now"] == 5
    moved = [DelayEnd(d.waybill, d.onset_ts, T0 + 17 * H) for d in later[:1]]
    [resolved_again] = step(moved, T0 + 18 * H)  # four of the new five left: resolved
    assert resolved_again.details["delayed_now"] == 4
