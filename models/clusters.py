"""WEATHER_DELAY_CLUSTER: many parcels delayed in one place at one time.

The shards report delay onsets and ends (`models.delays`); the global step applies them in
event-time order and calls `evaluate` every `cluster_interval_minutes` of event time. Each
evaluation clusters, with scikit-learn's DBSCAN on the haversine metric, the parcels whose
delay began in the trailing `cluster_window_hours`. A group of at least
`cluster_min_parcels` within `cluster_radius_km`, that many of them still delayed, is a
cluster.

Cost: positions are snapped to a grid of about 1 km and DBSCAN runs on the occupied cells,
weighted by how many parcels sit in each. Thousands of parcels stuck at one hub are one
point, so the work grows with the number of distinct places (at most a few thousand cells
within one radius), not with the number of delayed parcels: the occupied cells are kept as
delays come and leave the window, so an evaluation never walks every delay. An evaluation
with nothing new since the previous one is skipped.

Identity: a group that shares members with an open cluster (and is centred near it)
continues it: consecutive evaluations' windows overlap, so a storm that lasts or drifts keeps
its cluster. New members join and the alert is re-emitted under the same `alert_id` with a
larger `parcel_count`. A cluster resolves when fewer than `cluster_min_parcels` of its members
are still delayed (parcels that never move again count until they are forgotten as stale).

Cause: a weather warning overlapping it in space and time names it; otherwise most members
having `WEATHER` exception scans makes it `WEATHER`; else `UNKNOWN` (a hub jam, say).
"""

from __future__ import annotations

import bisect
from collections import Counter, deque

import numpy as np

from models.detection import Detection
from models.events import WeatherWarning
from models.geo import EARTH_RADIUS_KM, haversine_km, haversine_km_many
from models.ids import cluster_id
from models.messages import DelayEnd, DelayOnset
from models.settings import DAY_MS, Thresholds

WEATHER_DELAY_CLUSTER = "WEATHER_DELAY_CLUSTER"
GRID_DEGREES = 0.01   # about 1 km: the error this adds is small against a 25 km radius
MAX_WAYBILLS = 100


class Member:
    """One parcel's delay, as the clusters see it."""

    __slots__ = ("cell", "cluster", "end_ts", "onset", "seq")

    def __init__(self, onset: DelayOnset, seq: int):
        self.onset = onset
        self.seq = seq                  # the order delays were applied in
        self.end_ts: int | None = None
        self.cluster: str | None = None
        # The grid cell it sits in (None: no position, it cannot be clustered).
        self.cell = None if onset.lat is None else (round(onset.lat / GRID_DEGREES),
                                                    round(onset.lon / GRID_DEGREES))

    def delayed_at(self, ts: int) -> bool:
        return self.end_ts is None or self.end_ts > ts

    def order(self) -> tuple[int, str]:
        return self.onset.onset_ts, self.onset.waybill


class Cluster:
    """An open cluster: the members that can still matter (delayed, or begun in the window)
    and running figures over every parcel that ever joined, so it stays small however long
    it lasts."""

    __slots__ = ("carriers", "cause", "centre", "cities", "cluster_id", "earliest", "fired_ts",
                 "hubs", "last_event_ts", "latest_onset", "members", "parcels", "resolved_ts",
                 "share", "since", "warning", "weather_coded")

    def __init__(self, cluster_id: str, fired_ts: int, centre: tuple[float, float]):
        self.cluster_id = cluster_id
        self.centre = centre                # (lat, lon) of its delayed members, last seen
        self.fired_ts = fired_ts            # event_ts of the first FIRING: part of the alert id
        self.last_event_ts = fired_ts
        self.resolved_ts: int | None = None
        self.members: dict[str, Member] = {}
        self.cause = "UNKNOWN"
        self.warning: WeatherWarning | None = None
        self.parcels = 0
        self.weather_coded = 0
        self.earliest: list[tuple[int, str]] = []   # the first MAX_WAYBILLS (onset, waybill)
        self.latest_onset = 0
        self.since: int | None = None                # when the first member stopped
        self.cities: Counter[str] = Counter()
        self.hubs: Counter[str] = Counter()
        self.carriers: Counter[str] = Counter()
        self.share: float | None = None              # of the traffic around it, last grown

    def join(self, member: Member) -> bool:
        """Adds the member; False if it was already one (a reopened cluster's own)."""
        onset = member.onset
        previous = self.members.get(onset.waybill)
        if previous is member:
            member.cluster = self.cluster_id
            return False
        if previous is not None:
            previous.cluster = None  # its earlier delay here ended: this one takes its place
        else:
            self.parcels += 1
            key = (onset.onset_ts, onset.waybill)
            if len(self.earliest) < MAX_WAYBILLS or key < self.earliest[-1]:
                bisect.insort(self.earliest, key)
                del self.earliest[MAX_WAYBILLS:]
            self.cities[onset.city] += 1
            self.hubs[onset.hub_id] += 1
            self.carriers[onset.carrier] += 1
            self.weather_coded += onset.weather
        member.cluster = self.cluster_id
        self.members[onset.waybill] = member
        self.latest_onset = max(self.latest_onset, onset.onset_ts)
        self.since = onset.since_ts if self.since is None else min(self.since, onset.since_ts)
        return True

    def prune(self, now: int, horizon: int) -> list[Member]:
        """Members that ended and began before the window matter no more; returns them."""
        gone = [m for m in self.members.values()
                if m.end_ts is not None and m.end_ts <= now and m.onset.onset_ts <= horizon]
        for member in gone:
            del self.members[member.onset.waybill]
        return gone


def cluster_id_for(founder: Member, fired_ts: int) -> str:
    return cluster_id(founder.onset.onset_ts, founder.onset.waybill, fired_ts)


class ClusterBoard:
    def __init__(self, thresholds: Thresholds):
        self.min_parcels = thresholds.cluster_min_parcels
        self.radius_km = thresholds.cluster_radius_km
        self.eps = thresholds.cluster_radius_km / EARTH_RADIUS_KM  # in radians, for haversine
        self.max_extent_km = thresholds.cluster_max_extent_km
        self.window = thresholds.cluster_window_ms
        self.critical_parcels = thresholds.cluster_critical_parcels
        # Warnings are kept a week past their end: the weather topic may be read late.
        self.warning_horizon = 7 * DAY_MS
        self.delays: dict[str, Member] = {}        # waybill -> its latest delay still in play
        self.recent: deque[Member] = deque()        # delays begun in the window, by onset
        self.open: dict[str, Cluster] = {}
        self.resolved: dict[str, Cluster] = {}     # resolved within the window: may reopen
        self.warnings: dict[str, WeatherWarning] = {}
        self.changed = False
        self.fresh: list[Member] = []               # onsets applied since the last look
        # The placed delays of the window by grid cell, kept as they come and go, so an
        # evaluation starts from the occupied cells instead of from every delay.
        self.cells: dict[tuple[int, int], deque[Member]] = {}
        self.placed = 0
        self.seq = 0
        self.min_share = thresholds.cluster_min_share
        # Parcels that arrived somewhere, by grid cell: per interval of the window, and
        # summed over the window, the traffic a group is judged against.
        self.visits: deque[tuple[int, dict]] = deque()
        self.traffic: Counter[tuple[int, int]] = Counter()

    # -- input ---------------------------------------------------------------------------

    def on_onset(self, onset: DelayOnset) -> None:
        self.seq += 1
        member = Member(onset, self.seq)
        self.delays[onset.waybill] = member
        self.recent.append(member)  # applied in event-time order: the deque stays sorted
        if member.cell is not None:
            self.cells.setdefault(member.cell, deque()).append(member)
            self.placed += 1
        self.fresh.append(member)
        self.changed = True

    def on_late_onset(self, onset: DelayOnset, now: int) -> None:
        """A delay held back (its carrier's feed was silent) and let out at `now`: placed
        among the others by its onset, if it is still in the window."""
        if onset.onset_ts <= now - self.window:
            return  # too old to be in any cluster looked for from now on
        self.on_onset(onset)
        member = self.recent.pop()
        _insert_by_onset(self.recent, member)
        if member.cell is not None:
            _insert_by_onset(self.cells[member.cell], self.cells[member.cell].pop())

    def on_end(self, end: DelayEnd) -> None:
        member = self.delays.get(end.waybill)
        if member is not None and member.onset.onset_ts == end.onset_ts:
            member.end_ts = end.end_ts
            self.changed = True

    def on_visits(self, until: int, cells: dict) -> None:
        """Parcels that arrived in each grid cell in the interval up to `until`."""
        self.visits.append((until, cells))
        self.traffic.update(cells)

    def on_warning(self, warning: WeatherWarning) -> None:
        if warning.event_id not in self.warnings:
            self.warnings[warning.event_id] = warning
            self.changed = True

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, now: int) -> list[Detection]:
        self._forget(now)
        if not self.changed:
            return []  # nothing new: the same groups as last time
        self.changed = False
        # Only new onsets can start or grow a cluster; ends and warnings change what is open.
        fresh, self.fresh = self.fresh, []
        grown = self._assign(self._groups(fresh, now), now) if fresh else {}
        out: list[Detection] = []
        for cluster in list(self.open.values()):
            delayed = [m for m in cluster.members.values() if m.delayed_at(now)]
            if len(delayed) < self.min_parcels:
                resolved = self._resolved(cluster, now)
                out.append(resolved)
                self._close(cluster, resolved.event_ts, now)
                continue
            new = grown.get(cluster.cluster_id, [])
            details = self._details(cluster, delayed, len(delayed))
            if new or details["cause"] != cluster.cause:
                cluster.cause = details["cause"]
                out.append(self._detection(cluster, "FIRING", cluster.last_event_ts, details,
                                           new))
            self._drop(cluster.prune(now, now - self.window), now)
        return out

    def _forget(self, now: int) -> None:
        """Delays begun before the window leave it; kept only while a cluster holds them."""
        horizon = now - self.window
        recent, delays = self.recent, self.delays
        while recent and recent[0].onset.onset_ts <= horizon:
            member = recent.popleft()
            if member.cell is not None:  # it is the oldest of its cell too
                cell = self.cells[member.cell]
                cell.popleft()
                self.placed -= 1
                if not cell:
                    del self.cells[member.cell]
            if member.cluster is None and delays.get(member.onset.waybill) is member:
                del delays[member.onset.waybill]
        for gone_id in [k for k, c in self.resolved.items() if c.resolved_ts <= horizon]:
            del self.resolved[gone_id]
        for event_id in [k for k, w in self.warnings.items()
                         if w.end_ts <= now - self.warning_horizon]:
            del self.warnings[event_id]
        while self.visits and self.visits[0][0] <= horizon:
            self.traffic.subtract(self.visits.popleft()[1])
        self.traffic = +self.traffic  # drop the cells left empty

    def _groups(self, fresh: list[Member], now: int) -> list[list[Member]]:
        """DBSCAN over the occupied grid cells of the placed delays begun in the window
        (moved on since or not), each weighted by its parcels. Older members of open
        clusters stay out: parcels stuck for days would otherwise pull every later delay near
        them into their cluster."""
        if self.placed < self.min_parcels:
            return []
        cells = sorted(self.cells)
        degrees = np.array(cells, dtype=np.float64) * GRID_DEGREES
        weights = np.array([len(self.cells[cell]) for cell in cells], dtype=np.int64)
        horizon = now - self.window
        where = {cell: i for i, cell in enumerate(cells)}
        fresh_cells = np.zeros(len(cells), dtype=bool)
        fresh_cells[[where[m.cell] for m in fresh
                     if m.cell is not None and m.onset.onset_ts > horizon]] = True
        keep = self._could_cluster(degrees, weights)
        if not (keep & fresh_cells).any():
            return []  # no new onset can be in a cluster: nothing to start or grow
        # Loaded on first use: scikit-learn takes seconds to import, and most commands and
        # runs without delay clusters never need it.
        from sklearn.cluster import DBSCAN

        labels = np.full(len(degrees), -1)
        points = np.radians(degrees[keep])
        found = DBSCAN(eps=self.eps, min_samples=self.min_parcels, metric="haversine",
                       algorithm="ball_tree").fit(points, sample_weight=weights[keep]).labels_
        labels[keep] = self._split_wide(points, weights[keep], found)
        groups: dict[int, list[Member]] = {}
        for i in np.flatnonzero(labels >= 0).tolist():
            groups.setdefault(int(labels[i]), []).extend(self.cells[cells[i]])
        for group in groups.values():
            group.sort(key=lambda m: m.seq)  # in the order the delays were applied
        return sorted(groups.values(),
                      key=lambda group: min((m.onset.onset_ts, m.onset.waybill) for m in group))

    def _could_cluster(self, degrees: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Cells that can be in a DBSCAN cluster: those with `cluster_min_parcels` within
        two radii (in blocks a radius wide, 5 x 5 around their own). Every core cell has that
        many within one radius and every border cell a core within one; a cell without is
        noise and adds to no core's weight, so leaving it out changes nothing but the cost."""
        block_lat = self.radius_km / 110.0  # a degree of latitude is at least 110.57 km
        widest = np.radians(min(89.0, float(np.abs(degrees[:, 0]).max()) + 2 * block_lat))
        block_lon = block_lat / max(np.cos(widest), 0.01)
        rows = np.floor(degrees[:, 0] / block_lat).astype(np.int64)
        columns = np.floor(degrees[:, 1] / block_lon).astype(np.int64)
        span = int(columns.max() - columns.min()) + 5
        keys = rows * span + (columns - columns.min())
        blocks, at = np.unique(keys, return_inverse=True)
        block_weight = np.bincount(at.ravel(), weights=weights)
        around = np.zeros(len(degrees))
        for d_row in range(-2, 3):
            for d_column in range(-2, 3):
                wanted = keys + d_row * span + d_column
                found = np.clip(np.searchsorted(blocks, wanted), 0, len(blocks) - 1)
                around += np.where(blocks[found] == wanted, block_weight[found], 0)
        return around >= self.min_parcels

    def _split_wide(self, points: np.ndarray, weights: np.ndarray,
                    labels: np.ndarray) -> np.ndarray:
        """DBSCAN chains dense areas together: with delays everywhere (a peak week) one group
        could span the country. A group reaching farther than `cluster_max_extent_km` from its
        centre is split into discs of `cluster_radius_km`."""
        labels = labels.copy()
        next_label = int(labels.max()) + 1
        degrees = np.degrees(points)
        for label in np.unique(labels[labels >= 0]).tolist():
            index = np.flatnonzero(labels == label)
            lat, lon = np.average(degrees[index], axis=0, weights=weights[index])
            if haversine_km_many(lat, lon, *degrees[index].T).max() <= self.max_extent_km:
                continue
            labels[index] = -1
            for disc in self._discs(points[index], weights[index]):
                labels[index[disc]] = next_label
                next_label += 1
        return labels

    def _discs(self, points: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        """Densest cell first, each disc takes the cells within the radius not yet taken."""
        from sklearn.neighbors import BallTree

        neighbours = BallTree(points, metric="haversine").query_radius(points, r=self.eps)
        sizes = np.array([len(n) for n in neighbours])
        density = np.add.reduceat(weights[np.concatenate(neighbours)],
                                  np.concatenate(([0], np.cumsum(sizes)[:-1])))
        taken = np.zeros(len(points), dtype=bool)
        discs = []
        for cell in np.lexsort((np.arange(len(points)), -density)).tolist():
            if taken[cell]:
                continue
            free = neighbours[cell][~taken[neighbours[cell]]]
            if weights[free].sum() >= self.min_parcels:
                taken[free] = True
                discs.append(free)
        return discs

    def _assign(self, groups: list[list[Member]], now: int) -> dict[str, list[Member]]:
        """Each group continues the open cluster it shares most members with, or starts one
        if at least `cluster_min_parcels` of it are still delayed. Its parcels still delayed
        join. Returns the new members of each cluster."""
        grown: dict[str, list[Member]] = {}
        for group in groups:
            lat = sum(m.onset.lat for m in group) / len(group)
            lon = sum(m.onset.lon for m in group) / len(group)
            # Only a cluster whose centre is near: chained groups must not make it sprawl.
            shared = Counter(m.cluster for m in group if m.cluster in self.open and haversine_km(
                lat, lon, *self.open[m.cluster].centre) <= self.radius_km)
            latest: dict[str, Member] = {}  # a parcel delayed twice in the window: the last
            for m in sorted(group, key=Member.order):
                if m.cluster is None and m.delayed_at(now):
                    latest[m.onset.waybill] = m
            new = sorted(latest.values(), key=Member.order)
            if shared:
                cluster = self.open[min(shared, key=lambda c: (-shared[c],
                                                               self.open[c].fired_ts, c))]
                if new:  # it grew when the last of them was delayed
                    cluster.last_event_ts = max(cluster.last_event_ts, new[-1].onset.onset_ts)
            elif self._dense(new) and self._stands_out(len(new), lat, lon):
                # The condition became true when the min_parcels-th of them was delayed.
                fired_ts = new[self.min_parcels - 1].onset.onset_ts
                cluster = self._reopen(lat, lon, fired_ts) or Cluster(
                    cluster_id_for(new[0], fired_ts), fired_ts, (lat, lon))
                self.open[cluster.cluster_id] = cluster
            else:
                continue
            if new:
                cluster.share = self._share(len(new), lat, lon)
            joined = [member for member in new if cluster.join(member)]
            if joined:
                grown.setdefault(cluster.cluster_id, []).extend(joined)
        return grown

    def _reopen(self, lat: float, lon: float, fired_ts: int) -> Cluster | None:
        """The nearest cluster resolved within the window and centred within the radius:
        a jam whose parcels trickle in and out around `cluster_min_parcels` fires again
        under its own id instead of as a new cluster each time."""
        distances = [(haversine_km(lat, lon, *c.centre), c.cluster_id)
                     for c in self.resolved.values()]
        near = [d for d in distances if d[0] <= self.radius_km]
        if not near:
            return None
        cluster = self.resolved.pop(min(near)[1])
        # Its old members count again only if still followed and in no other cluster: one
        # forgotten since would never hear of its end, one taken would be counted twice.
        cluster.members = {waybill: m for waybill, m in cluster.members.items()
                           if self.delays.get(waybill) is m and m.cluster is None}
        cluster.last_event_ts = max(fired_ts, cluster.resolved_ts)
        cluster.resolved_ts = None
        return cluster

    def _dense(self, delayed: list[Member]) -> bool:
        """At least `cluster_min_parcels` of them still delayed within one radius of one of
        them: parcels that moved on may link a group, but cannot make a new cluster."""
        if len(delayed) < self.min_parcels:
            return False
        from sklearn.neighbors import BallTree

        degrees, _, weights = occupied_cells(delayed)
        if weights.max() >= self.min_parcels:
            return True
        points = np.radians(degrees)
        neighbours = BallTree(points, metric="haversine").query_radius(points, r=self.eps)
        return any(weights[n].sum() >= self.min_parcels for n in neighbours)

    def _share(self, delayed: int, lat: float, lon: float) -> float | None:
        """The delayed parcels over those that arrived within the radius of (lat, lon) in
        the window (None: none arrived there)."""
        if not self.traffic:
            return None
        cells = list(self.traffic)
        degrees = np.array(cells, dtype=np.float64) * GRID_DEGREES
        near = haversine_km_many(lat, lon, degrees[:, 0], degrees[:, 1]) <= self.radius_km
        arrived = sum(self.traffic[cell] for cell, inside in zip(cells, near.tolist(),
                                                                 strict=True) if inside)
        return round(delayed / arrived, 4) if arrived else None

    def _stands_out(self, delayed: int, lat: float, lon: float) -> bool:
        """The group is at least `cluster_min_share` of the traffic it sits in: at peak
        volume a handful of delays near a big hub is the background, not a storm."""
        if self.min_share <= 0:
            return True
        share = self._share(delayed, lat, lon)
        return share is None or share >= self.min_share

    def _close(self, cluster: Cluster, resolved_ts: int, now: int) -> None:
        del self.open[cluster.cluster_id]
        for member in cluster.members.values():
            member.cluster = None
        self._drop(list(cluster.members.values()), now)
        cluster.resolved_ts = resolved_ts
        self.resolved[cluster.cluster_id] = cluster

    def _drop(self, members: list[Member], now: int) -> None:
        """Forget members no cluster holds any more, once they are out of the window."""
        horizon = now - self.window
        for member in members:
            waybill = member.onset.waybill
            if member.onset.onset_ts <= horizon and self.delays.get(waybill) is member:
                del self.delays[waybill]

    # -- records -------------------------------------------------------------------------

    def _resolved(self, cluster: Cluster, now: int) -> Detection:
        """Resolved when the min_parcels-th last delayed member moved on."""
        ends = sorted((now if m.end_ts is None else m.end_ts
                       for m in cluster.members.values()), reverse=True)
        at = min(now, max(cluster.last_event_ts, ends[self.min_parcels - 1]))
        members = list(cluster.members.values())
        still = sum(m.delayed_at(now) for m in members)
        return self._detection(cluster, "RESOLVED", at, self._details(cluster, members, still),
                               [])

    def _details(self, cluster: Cluster, around: list[Member], delayed_now: int) -> dict:
        """The contract's details, centred on the members `around`; a warning found to
        overlap stays the cluster's cause."""
        lats = np.array([m.onset.lat for m in around])
        lons = np.array([m.onset.lon for m in around])
        lat, lon = float(lats.mean()), float(lons.mean())
        cluster.centre = (lat, lon)
        radius = float(haversine_km_many(lat, lon, lats, lons).max())
        warning = cluster.warning or self._warning_for(lat, lon, radius, cluster.since,
                                                       cluster.latest_onset)
        cluster.warning = warning
        weather = warning is not None or 2 * cluster.weather_coded > cluster.parcels
        return {
            "cluster_id": cluster.cluster_id,
            "centroid_lat": round(lat, 5),
            "centroid_lon": round(lon, 5),
            "radius_km": round(radius, 2),
            "parcel_count": cluster.parcels,
            "delayed_now": delayed_now,
            "waybills": [waybill for _, waybill in cluster.earliest],
            "window_start_ts": cluster.earliest[0][0],
            "window_end_ts": cluster.latest_onset,
            "cause": "WEATHER" if weather else "UNKNOWN",
            "weather_event_id": None if warning is None else warning.event_id,
            "weather_kind": None if warning is None else warning.kind,
            "weather_coded": cluster.weather_coded,
            "city": _most_common(cluster.cities),
            "hub_id": _most_common(cluster.hubs),
            "carriers": {k: v for k, v in sorted(cluster.carriers.items()) if k},
            "share": cluster.share,
        }

    def _warning_for(self, lat: float, lon: float, radius: float, since: int,
                     until: int) -> WeatherWarning | None:
        """The most severe, then nearest, warning whose area and time overlap the cluster's:
        from when its parcels stopped to when the last one became delayed."""
        overlapping = []
        for w in self.warnings.values():
            distance = haversine_km(lat, lon, w.lat, w.lon)
            if distance <= w.radius_km + radius and w.start_ts <= until and w.end_ts >= since:
                overlapping.append((-w.severity, distance, w.event_id, w))
        return min(overlapping)[3] if overlapping else None

    def _detection(self, cluster: Cluster, status: str, event_ts: int, details: dict,
                   new: list[Member]) -> Detection:
        critical = details["parcel_count"] >= self.critical_parcels and status == "FIRING"
        return Detection(
            type=WEATHER_DELAY_CLUSTER,
            status=status,
            severity="CRITICAL" if critical else "WARNING",
            subject=cluster.cluster_id,
            onset_ts=cluster.fired_ts,
            event_ts=event_ts,
            details=details,
            parcels=[(m.onset.merchant_id, m.onset.waybill, m.onset.order_id)
                     for m in new if m.onset.merchant_id],
        )


def occupied_cells(members: list[Member]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid cells the members sit in: (cell positions in degrees, each member's cell,
    members per cell)."""
    coords = np.array([(m.onset.lat, m.onset.lon) for m in members])
    cells, inverse, weights = np.unique(np.round(coords / GRID_DEGREES), axis=0,
                                        return_inverse=True, return_counts=True)
    return cells * GRID_DEGREES, inverse.ravel(), weights


def _insert_by_onset(members: deque[Member], member: Member) -> None:
    """Into a deque kept in onset order, after those that began no later."""
    at = len(members)
    while at and members[at - 1].onset.onset_ts > member.onset.onset_ts:
        at -= 1
    members.insert(at, member)


def _most_common(counts: Counter) -> str | None:
    named = [value for value in counts if value]
    return min(named, key=lambda v: (-counts[v], v)) if named else None
