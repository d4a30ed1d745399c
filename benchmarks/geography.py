"""Cities, hubs and carriers of the synthetic scenarios (coordinates WGS84)."""

from __future__ import annotations

import random
from functools import cache

CITIES: dict[str, tuple[float, float]] = {
    "上海": (31.2304, 121.4737),
    "北京": (39.9042, 116.4074),
    "广州": (23.1291, 113.2644),
    "深圳": (22.5431, 114.0579),
    "杭州": (30.2741, 120.1551),
    "成都": (30.5728, 104.0668),
    "武汉": (30.5928, 114.3055),
    "西安": (34.3416, 108.9398),
    "南京": (32.0603, 118.7969),
    "重庆": (29.5630, 106.5516),
    "郑州": (34.7466, 113.6254),
    "长沙": (28.2282, 112.9388),
    "沈阳": (41.8057, 123.4315),
    "昆明": (25.0389, 102.7183),
    "厦门": (24.4798, 118.0894),
    "青岛": (36.0671, 120.3826),
}

# Carrier code -> share of parcels.
CARRIERS: dict[str, float] = {
    "ZTO": 0.22, "YTO": 0.18, "YUNDA": 0.15, "STO": 0.12, "JT": 0.12, "SF": 0.1, "JD": 0.07,
    "EMS": 0.04,
}

HUBS_PER_CITY = 3
# Far-off cities with few line-hauls a week: at their hubs a parcel usually waits about two
# days after it arrives, so their legs are slow by nature, not delayed.
REMOTE_CITIES = frozenset({"昆明", "沈阳"})
# A carrier's hubs and stations, and the buyers, are spread over a metro area about 40 km
# across, so a cluster radius decides whether one storm is one cluster or one per hub.
METRO_SPREAD_DEGREES = 0.2


def hub_id(carrier: str, city_index: int, hub: int) -> str:
    return f"{carrier}-{city_index:02d}{hub}"


@cache
def hub_position(carrier: str, city_index: int, hub: int) -> tuple[float, float]:
    """Where a hub lies: fixed for the hub, anywhere in its city's metro area."""
    rng = random.Random(hub_id(carrier, city_index, hub))
    lat, lon = list(CITIES.values())[city_index]
    return (lat + rng.uniform(-METRO_SPREAD_DEGREES, METRO_SPREAD_DEGREES),
            lon + rng.uniform(-METRO_SPREAD_DEGREES, METRO_SPREAD_DEGREES))

# Share of parcels damaged, by carrier: SF < 0.1%, JD < 0.2%, small couriers > 1%.
DAMAGE_RATES: dict[str, float] = {
    "SF": 0.0008, "JD": 0.0015, "EMS": 0.004, "ZTO": 0.005, "YTO": 0.006, "YUNDA": 0.007,
    "STO": 0.012, "JT": 0.014,
}

# Share of signed parcels whose buyer says they never arrived, by carrier: the same seed
# table as damage (SF < 0.1%, JD < 0.2%, small couriers > 1%). Riskier signings (no proof,
# a proxy, far from the door) are claimed several times as often.
NOT_RECEIVED_RATES: dict[str, float] = {
    "SF": 0.0008, "JD": 0.0015, "EMS": 0.003, "ZTO": 0.005, "YTO": 0.005, "YUNDA": 0.006,
    "STO": 0.011, "JT": 0.012,
}

# Share of parcels that stop moving at some point (lost, stuck at a hub, mis-sorted), by
# carrier: direct-network carriers lose sight of fewer parcels than franchise networks.
STALL_RATES: dict[str, float] = {
    "SF": 0.002, "JD": 0.002, "EMS": 0.005, "ZTO": 0.004, "YTO": 0.004, "YUNDA": 0.005,
    "STO": 0.007, "JT": 0.008,
}

# Pickup volume by calendar day (month, day) relative to an ordinary day: the Double-11
# sale (orders placed at midnight on 11 November ship over the next days) and 12.12.
PEAK_DAYS: dict[tuple[int, int], float] = {
    (11, 11): 3.0, (11, 12): 3.5, (11, 13): 2.5, (11, 14): 1.8, (11, 15): 1.3,
    (12, 12): 1.8, (12, 13): 1.5,
}

# One busy lane, and on it one carrier that breaks far more goods than the rest.
HOT_LANE = ("广州", "上海")
HOT_LANE_SHARE = 0.08
BAD_ROUTE = ("JT", "广州", "上海")
BAD_ROUTE_DAMAGE_RATE = 0.08


def damage_rate(carrier: str, origin: str, destination: str) -> float:
    """The true share of a route's parcels that arrive damaged."""
    if (carrier, origin, destination) == BAD_ROUTE:
        return BAD_ROUTE_DAMAGE_RATE
    return DAMAGE_RATES[carrier]
