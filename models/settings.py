"""Detector thresholds: every threshold the contract names is a setting, defaults as there."""

from __future__ import annotations

from typing import Annotated

import msgspec

Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DAY_MS = 24 * HOUR_MS


class ConfigError(ValueError):
    """A configuration a person must fix; the message is one line. Here, not in `flows/`, so
    that `alerts/` (the push job's endpoints file) can raise it without the dataflow."""


class Thresholds(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    no_movement_hours: Positive = 72
    allowed_lateness_minutes: NonNegative = 10
    # FEED_SILENT: a carrier with no scan in this many minutes of event time while at
    # least `feed_min_expected_scans` were due; what it held is judged this long after the
    # feed came back, so its backfill lands first.
    feed_silence_minutes: Positive = 120
    feed_min_expected_scans: Positive = 50
    feed_resume_grace_minutes: NonNegative = 60
    dispute_window_days: Positive = 15
    delay_dwell_hours: Positive = 24
    cluster_min_parcels: PositiveInt = 5
    cluster_radius_km: Positive = 25
    cluster_window_hours: Positive = 12
    # Delay clusters are looked for on this cadence of event time, not per event.
    cluster_interval_minutes: Positive = 30
    cluster_critical_parcels: PositiveInt = 100   # a cluster this large is CRITICAL
    # A cluster reaching farther than this from its centre (delays everywhere) is split.
    cluster_max_extent_km: Positive = 100
    # A group of delayed parcels is a cluster only if they are at least this share of the
    # parcels scanned within the radius during its window (0: off).
    cluster_min_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    # DWELL_ANOMALY and the delay dwell judged against each leg's learned norm: factor x
    # the quantile of the time to the next scan on the leg (carrier, hub, scan type), over
    # the transitions of the trailing history days, for legs with enough of them.
    lane_quantile: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.99
    lane_factor: Positive = 1.5
    lane_history_days: PositiveInt = 14
    lane_min_samples: PositiveInt = 100
    lane_min_hours: NonNegative = 12
    damage_window_days: PositiveInt = 30
    damage_min_deliveries: PositiveInt = 50
    damage_rate_threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.01
    score_interval_hours: Positive = 1
    # SIGNED_DISPUTED evidence and risk.
    far_signing_km: Positive = 2
    daytime_start_hour: Annotated[int, msgspec.Meta(ge=0, le=23)] = 7
    daytime_end_hour: Annotated[int, msgspec.Meta(ge=1, le=24)] = 22
    dispute_rate_ratio: Positive = 2     # a hub or carrier "well above the rest"
    critical_risk: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.7
    reship_risk: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    # How long a finished (signed or returned) parcel is remembered, so that late or repeated
    # scans of it neither revive it nor count twice.
    finished_retention_hours: NonNegative = 24
    # After that, how long its waybill is still recognised (as a 16-byte hash), so that
    # stray scans of it are ignored instead of starting to track it again.
    forget_after_days: NonNegative = 15
    # How long a stalled parcel that already alerted is kept waiting for a scan that resolves it.
    stale_after_days: Positive = 30
    # The merchant's side (0.5): a shipment with no scan this long after it is
    # PICKUP_OVERDUE; an alert of these types with no merchant action this long after it is
    # DISPUTE_UNANSWERED (the platform steps in).
    pickup_timeout_hours: Positive = 24
    merchant_response_hours: Positive = 24
    sla_alert_types: tuple[str, ...] = ("SIGNED_DISPUTED",)

    @property
    def no_movement_ms(self) -> int:
        return round(self.no_movement_hours * HOUR_MS)

    @property
    def lateness_ms(self) -> int:
        return round(self.allowed_lateness_minutes * MINUTE_MS)

    @property
    def finished_retention_ms(self) -> int:
        return round(self.finished_retention_hours * HOUR_MS)

    @property
    def dispute_window_ms(self) -> int:
        return round(self.dispute_window_days * DAY_MS)

    @property
    def delay_dwell_ms(self) -> int:
        return round(self.delay_dwell_hours * HOUR_MS)

    @property
    def cluster_window_ms(self) -> int:
        return round(self.cluster_window_hours * HOUR_MS)

    @property
    def cluster_interval_ms(self) -> int:
        return round(self.cluster_interval_minutes * MINUTE_MS)

    @property
    def score_interval_ms(self) -> int:
        return round(self.score_interval_hours * HOUR_MS)

    @property
    def forget_after_ms(self) -> int:
        return round(self.forget_after_days * DAY_MS)

    @property
    def stale_after_ms(self) -> int:
        return round(self.stale_after_days * DAY_MS)

    @property
    def lane_min_ms(self) -> int:
        return round(self.lane_min_hours * HOUR_MS)

    @property
    def pickup_timeout_ms(self) -> int:
        return round(self.pickup_timeout_hours * HOUR_MS)

    @property
    def merchant_response_ms(self) -> int:
        return round(self.merchant_response_hours * HOUR_MS)
