"""Configuration: flows.config.load_settings (defaults < TOML file < environment < kwargs)."""

from __future__ import annotations

import pytest

from flows.config import ConfigError, load_settings


def write(tmp_path, text: str, name: str = "parcelwatch.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_contracts():
    s = load_settings(environ={})
    t = s.thresholds
    assert t.no_movement_hours == 72
    assert t.allowed_lateness_minutes == 10
    assert t.dispute_window_days == 15
    assert t.delay_dwell_hours == 24
    assert t.cluster_min_parcels == 5
    assert t.cluster_radius_km == 25
    assert t.cluster_window_hours == 12
    assert t.damage_window_days == 30
    assert t.damage_min_deliveries == 50
    assert t.damage_rate_threshold == 0.01
    assert t.score_interval_hours == 1
    assert (t.pickup_timeout_hours, t.merchant_response_hours) == (24, 24)
    assert t.sla_alert_types == ("SIGNED_DISPUTED",)
    assert t.no_movement_ms == 72 * 3_600_000
    assert t.lateness_ms == 600_000
    assert s.zone == "Asia/Shanghai"
    assert s.locale == "zh-CN"
    assert (s.metrics.host, s.metrics.port) == ("127.0.0.1", 9464)
    assert s.topics.outputs() == {
        "alerts": "alerts", "merchant-notifications": "merchant-notifications",
        "route-scores": "route-scores", "dead-letter": "dead-letter"}
    assert s.topics.inputs() == {"scans": "scans", "disputes": "disputes",
                                 "weather": "weather", "shipments": "shipments",
                                 "merchant-actions": "merchant-actions"}
    assert s.kafka == {}


def test_file_values(tmp_path):
    path = write(tmp_path, """
brokers = "kafka-1:9092,kafka-2:9092"
locale = "en"
zone = "UTC"

[thresholds]
no_movement_hours = 48
allowed_lateness_minutes = 0

[topics]
scans = "prod.scans"

[kafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
""")
    s = load_settings(path, environ={})
    assert s.brokers == "kafka-1:9092,kafka-2:9092"
    assert (s.locale, s.zone) == ("en", "UTC")
    assert s.thresholds.no_movement_hours == 48
    assert s.thresholds.allowed_lateness_minutes == 0
    assert s.thresholds.dispute_window_days == 15  # untouched keys keep their defaults
    assert s.topics.scans == "prod.scans" and s.topics.disputes == "disputes"
    assert s.kafka == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    assert load_settings(str(path), environ={}) == s  # str or Path


def test_env_over_file_and_kwargs_over_env(tmp_path):
    path = write(tmp_path, """
brokers = "file:9092"
shards = 8

[thresholds]
no_movement_hours = 48
cluster_min_parcels = 7
""")
    env = {
        "PARCELWATCH_BROKERS": "env:9092",
        "PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS": "36",
        "PARCELWATCH_TOPICS__MERCHANT_NOTIFICATIONS": "prod.notes",
        "PARCELWATCH_IDLE_ADVANCE": "false",
        "OTHER_VARIABLE": "ignored",
    }
    s = load_settings(path, environ=env)
    assert s.brokers == "env:9092"
    assert s.thresholds.no_movement_hours == 36
    assert s.thresholds.cluster_min_parcels == 7  # from the file, env did not touch it
    assert s.shards == 8
    assert s.topics.merchant_notifications == "prod.notes"
    assert s.idle_advance is False

    s = load_settings(path, environ=env, brokers="cli:9092", state_dir=None)
    assert s.brokers == "cli:9092"
    assert s.state_dir == ".parcelwatch/state"  # None means "not given"
    assert s.thresholds.no_movement_hours == 36

    s = load_settings(path, environ=env, thresholds={"no_movement_hours": 24})
    assert s.thresholds.no_movement_hours == 24
    assert s.thresholds.cluster_min_parcels == 7


def test_env_without_a_file():
    s = load_settings(environ={"PARCELWATCH_THRESHOLDS__ALLOWED_LATENESS_MINUTES": "2.5",
                               "PARCELWATCH_SHARDS": "16"})
    assert s.thresholds.allowed_lateness_minutes == 2.5
    assert s.thresholds.lateness_ms == 150_000
    assert s.shards == 16


def test_kafka_env_variable_maps_to_a_dotted_property(tmp_path):
    path = write(tmp_path, '[kafka]\n"sasl.password" = "from-file"\n"sasl.username" = "u"\n')
    env = {"PARCELWATCH_KAFKA__SASL_PASSWORD": "s3cr3t",
           "PARCELWATCH_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}
    s = load_settings(path, environ=env)
    assert s.kafka == {"sasl.password": "s3cr3t", "sasl.username": "u",
                       "security.protocol": "SASL_SSL"}


def test_the_process_environment_is_used_by_default(monkeypatch):
    monkeypatch.setenv("PARCELWATCH_BROKERS", "from-env:9092")
    assert load_settings().brokers == "from-env:9092"


def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    message = str(info.value)
    assert message.strip()
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("text", "mentions"), [
    ("color = 'blue'\n", "color"),
    ("[thresholds]\nno_movement_hourz = 72\n", "no_movement_hourz"),
    ("[topics]\nscanz = 'x'\n", "scanz"),
])
def test_unknown_keys_in_the_file(tmp_path, text, mentions):
    assert mentions in one_line_error(write(tmp_path, text), environ={})


def test_unknown_key_in_the_environment():
    message = one_line_error(environ={"PARCELWATCH_THRESHOLDS__NOPE": "1"})
    assert "PARCELWATCH_THRESHOLDS__NOPE" in message


@pytest.mark.parametrize(("name", "meant"), [
    ("PARCELWATCH_THRESHOLDS__NO_MOVMENT_HOURS", "PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS"),
    ("PARCELWATCH_BROKRES", "PARCELWATCH_BROKERS"),
    ("PARCELWATCH_TOPIC__SCANS", "PARCELWATCH_TOPICS"),
    ("PARCELWATCH_BROKERS__HOST", "PARCELWATCH_BROKERS"),
])
def test_a_misspelt_variable_is_named_with_the_one_meant(name, meant):
    message = one_line_error(environ={name: "1"})
    assert name in message and meant in message


def test_other_variables_of_the_prefix_are_not_settings():
    # The documented name for a merchant's webhook secret (docs/push.md), next to real settings.
    env = {"PARCELWATCH_WEBHOOK_SECRET_M00001": "whsec_c2VjcmV0",
           "PARCELWATCH_METRICS_TOKEN": "t", "PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS": "48"}
    assert load_settings(environ=env).thresholds.no_movement_hours == 48


@pytest.mark.parametrize(("text", "mentions"), [
    ("shards = 'many'\n", "shards"),
    ("[thresholds]\nno_movement_hours = 'soon'\n", "no_movement_hours"),
    ("metrics = 5\n", "metrics"),
    ("locale = 'fr'\n", "locale"),
    ("[metrics]\nport = 70000\n", "port"),
])
def test_wrong_types_and_values(tmp_path, text, mentions):
    assert mentions in one_line_error(write(tmp_path, text), environ={})


def test_wrong_type_in_the_environment():
    assert "shards" in one_line_error(environ={"PARCELWATCH_SHARDS": "lots"})


@pytest.mark.parametrize("key", [
    "no_movement_hours", "allowed_lateness_minutes", "dispute_window_days",
    "cluster_min_parcels", "cluster_radius_km", "damage_min_deliveries",
    "damage_rate_threshold", "finished_retention_hours",
])
def test_negative_thresholds(tmp_path, key):
    assert key in one_line_error(write(tmp_path, f"[thresholds]\n{key} = -1\n"), environ={})
    assert key in one_line_error(environ={f"PARCELWATCH_THRESHOLDS__{key.upper()}": "-1"})


def test_zero_threshold_where_it_must_be_positive():
    assert "no_movement_hours" in one_line_error(
        environ={"PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS": "0"})


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_unknown_time_zone(zone):
    message = one_line_error(environ={"PARCELWATCH_ZONE": zone})
    assert "time zone" in message


def test_known_time_zones():
    assert load_settings(environ={}, zone="Europe/Berlin").zone == "Europe/Berlin"


def test_missing_file(tmp_path):
    message = one_line_error(tmp_path / "nope.toml", environ={})
    assert "nope.toml" in message


@pytest.mark.parametrize("text", [
    "brokers = \n",
    "[thresholds\nno_movement_hours = 1\n",
    "a = 1\na = 2\n",
    'brokers = "unterminated\n',
])
def test_invalid_toml(tmp_path, text):
    message = one_line_error(write(tmp_path, text), environ={})
    assert "TOML" in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('zone = "Zürich"\n'.encode("latin-1"))
    one_line_error(path, environ={})


def test_config_path_that_is_a_directory(tmp_path):
    # Contract section 4: bad configuration gives a one-line reason (ConfigError, exit 2),
    # not a traceback.
    one_line_error(tmp_path, environ={})
