"""Configuration: a TOML file, then `PARCELWATCH_*` environment variables on top.

`PARCELWATCH_BROKERS=host:9092` sets a top-level key; a double underscore enters a table:
`PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS=48`, `PARCELWATCH_TOPICS__SCANS=prod.scans`.
In the `kafka` table (librdkafka properties, passed through as they are) underscores in the
variable name become dots: `PARCELWATCH_KAFKA__SASL_PASSWORD` sets `sasl.password`.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from models.settings import ConfigError, Thresholds

ENV_PREFIX = "PARCELWATCH_"


class Topics(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    scans: str = "scans"
    disputes: str = "disputes"
    weather: str = "weather"
    shipments: str = "shipments"
    merchant_actions: str = "merchant-actions"
    alerts: str = "alerts"
    merchant_notifications: str = "merchant-notifications"
    route_scores: str = "route-scores"
    dead_letter: str = "dead-letter"
    notifications_dead_letter: str = "notifications-dead-letter"   # written by `push`

    def outputs(self) -> dict[str, str]:
        """Contract name of each output -> the configured topic name."""
        return {
            "alerts": self.alerts,
            "merchant-notifications": self.merchant_notifications,
            "route-scores": self.route_scores,
            "dead-letter": self.dead_letter,
        }

    def inputs(self) -> dict[str, str]:
        return {"scans": self.scans, "disputes": self.disputes, "weather": self.weather,
                "shipments": self.shipments, "merchant-actions": self.merchant_actions}


class MetricsConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    brokers: str = "127.0.0.1:9092"
    zone: str = "Asia/Shanghai"
    locale: Literal["zh-CN", "en"] = "zh-CN"
    coupon_amount_yuan: Annotated[float, msgspec.Meta(ge=0)] = 5
    shards: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    # Route scoring is keyed by lane (origin, destination) into this many shards.
    route_shards: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    # Event time a partition must advance before its progress is sent to every shard.
    progress_tick_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60
    state_dir: str = ".parcelwatch/state"
    recovery: bool = True
    snapshot_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10
    # With every input caught up, let event time follow the wall clock (run only).
    idle_advance: bool = True
    idle_check_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5
    topic_partitions: Annotated[int, msgspec.Meta(ge=1)] = 4
    create_topics: bool = True
    group_id: str = "parcelwatch"  # the consumer group `run` commits its read offsets to
    cloudevents_source: str = "parcelwatch"  # `ce_source` of every output record
    topics: Topics = msgspec.field(default_factory=Topics)
    thresholds: Thresholds = msgspec.field(default_factory=Thresholds)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    kafka: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)


def _setting_names() -> dict[str, set[str] | None]:
    """Each top-level key: the keys of its table (None for a plain value; the `kafka` table
    takes any librdkafka property)."""
    names: dict[str, set[str] | None] = {}
    for field in msgspec.structs.fields(Settings):
        table = field.type if isinstance(field.type, type) else None
        if table is not None and issubclass(table, msgspec.Struct):
            names[field.name] = {f.name for f in msgspec.structs.fields(table)}
        else:
            names[field.name] = None
    names["kafka"] = set()
    return names


def _env_overrides(environ: dict[str, str]) -> dict:
    """The `PARCELWATCH_*` variables that name a setting. Others of that prefix (a webhook
    secret, say) are not settings and are left alone, unless one reads like a misspelt
    setting: then the start stops naming it."""
    names = _setting_names()
    tree: dict = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        keys = names.get(path[0], ...)
        if keys is ...:
            _unless_misspelt(name, path[0], names)
            continue
        if path[0] == "kafka" and len(path) == 2:
            path = ["kafka", path[1].replace("_", ".")]
        elif not (len(path) == 1 if keys is None else len(path) == 2 and path[1] in keys):
            wanted = (f"{ENV_PREFIX}{path[0].upper()}" if keys is None else
                      f"{ENV_PREFIX}{path[0].upper()}__<KEY>")
            hint = _close(path[-1], keys or ()) if len(path) == 2 else None
            if hint is not None:
                wanted = f"{ENV_PREFIX}{path[0].upper()}__{hint.upper()}"
            raise ConfigError(f"invalid configuration: environment variable {name} names no "
                              f"setting (did you mean {wanted}?)")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _unless_misspelt(name: str, key: str, names: dict) -> None:
    hint = _close(key, names)
    if hint is not None:
        raise ConfigError(f"invalid configuration: environment variable {name} names no "
                          f"setting (did you mean {ENV_PREFIX}{hint.upper()}?)")


def _close(word: str, choices) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.85)
    return found[0] if found else None


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None,
                  **overrides) -> Settings:
    """Defaults < TOML file < environment < explicit overrides (command-line options)."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    thresholds = settings.thresholds
    if thresholds.daytime_start_hour >= thresholds.daytime_end_hour:
        raise ConfigError("invalid configuration: daytime_start_hour must be before "
                          "daytime_end_hour")
    try:
        ZoneInfo(settings.zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"invalid configuration: unknown time zone {settings.zone!r}") from None
    check_brokers(settings.brokers)
    return settings


# The clients made only to judge the properties say nothing.
_QUIET = logging.getLogger("parcelwatch.kafka.check")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def check_kafka_properties(properties: dict) -> None:
    """librdkafka judges the `[kafka]` table of a job about to start, before any topic is
    touched: an unknown property or a bad value stops the start with its one-line reason."""
    if not properties:
        return
    from confluent_kafka import Consumer, KafkaException, Producer

    base = {"bootstrap.servers": "127.0.0.1:9", "logger": _QUIET, "log_level": 0, **properties}
    for make, extra in ((Producer, {}), (Consumer, {"group.id": "parcelwatch-check"})):
        try:
            client = make({**base, **extra})
        except KafkaException as exc:
            raise ConfigError(f"invalid configuration: [kafka] {exc.args[0].str()}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid configuration: [kafka] {exc}") from None
        if make is Consumer:
            client.close()


# One bootstrap server, as librdkafka takes it: [PROTOCOL://]HOST[:PORT], HOST a name, an
# IPv4 address or a bracketed IPv6 one.
_BROKER = re.compile(r"(?:[A-Za-z_]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?")


def check_brokers(brokers: str) -> None:
    """A malformed broker list stops the start with the reason, not after a connect timeout."""
    entries = [entry.strip() for entry in brokers.split(",")]
    if not brokers.strip():
        raise ConfigError("invalid configuration: brokers is empty (expected HOST:PORT[,...])")
    for entry in entries:
        match = _BROKER.fullmatch(entry)
        if match is None:
            raise ConfigError(f"invalid configuration: broker {entry!r} in brokers "
                              f"{brokers!r} is not HOST:PORT")
        if match.group(1) is not None and not 1 <= int(match.group(1)) <= 65535:
            raise ConfigError(f"invalid configuration: broker {entry!r} has port "
                              f"{match.group(1)}, outside 1-65535")
