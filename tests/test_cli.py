"""Each command of the contract, end to end, and its errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from connectors.broker import free_port, port_accepts

from conftest import CLI, cli, cli_env, wait_for_exit


def test_demo_runs_everything_and_finds_the_ground_truth():
    result = cli("demo", "--parcels", "1500", "--days", "20", timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "NO_MOVEMENT" in out
    for kind in ("NO_MOVEMENT", "SIGNED_DISPUTED"):
        found = re.search(rf"(\d+) {kind} records expected, (\d+) found with the exact "
                          r"event_ts, (\d+) unexpected", " ".join(out.split()))
        assert found, out
        expected, matched, unexpected = map(int, found.groups())
        assert expected > 0 and matched == expected and unexpected == 0
    assert "[URGE_CARRIER]" in out and "[OFFER_COUPON]" in out


def test_generate_writes_a_scenario_with_ground_truth(tmp_path):
    result = cli("generate", "--out", tmp_path, "--parcels", "300", "--days", "10",
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    for name in ("scans.jsonl", "disputes.jsonl", "weather.jsonl", "truth.jsonl",
                 "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "scans.jsonl").stat().st_size > 0


def test_broker_command_serves_until_sigterm():
    port = free_port()
    job = subprocess.Popen([CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert f"127.0.0.1:{port}" in job.stdout.readline()  # printed once it accepts
    assert port_accepts(port)
    job.send_signal(signal.SIGTERM)
    job.communicate(timeout=30)
    assert job.returncode == 0
    assert not port_accepts(port)


def broker_in_a_script(port: int) -> tuple[subprocess.Popen, int]:
    """`parcelwatch broker &` in a shell script (so it starts with SIGINT ignored); returns
    the script and the broker's pid, once the broker accepts."""
    script = subprocess.Popen(["sh", "-c", f'"{CLI}" broker --port {port} & echo $!; wait'],
                              stdout=subprocess.PIPE, text=True)
    pid = int(script.stdout.readline())
    assert f"127.0.0.1:{port}" in script.stdout.readline()
    return script, pid


def test_a_broker_started_from_a_script_stops_on_sigterm():
    port = free_port()
    script, pid = broker_in_a_script(port)
    os.kill(pid, signal.SIGTERM)
    assert wait_for_exit(pid, 30)
    assert script.wait(timeout=30) == 0
    assert not port_accepts(port)


def test_a_broker_never_outlives_its_parent():
    port = free_port()
    script, pid = broker_in_a_script(port)
    script.kill()  # SIGKILL: the script cannot pass anything on
    script.wait(timeout=30)
    assert wait_for_exit(pid, 30)
    assert not port_accepts(port)


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_config_file_stops_the_start_with_one_line(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[thresholds]\nno_movement_hourz = 48\n")
    line = one_line_error(cli("run", "--brokers", "127.0.0.1:1", "--config", config))
    assert "no_movement_hourz" in line


@pytest.mark.parametrize(("brokers", "said"), [
    ("127.0.0.1:99999", "outside 1-65535"),
    ("", "brokers is empty"),
    ("127.0.0.1:9092,,b2:9092", "is not HOST:PORT"),
    ("host name:9092", "is not HOST:PORT"),
])
@pytest.mark.parametrize("command", [["run"], ["push", "--endpoints", "none.toml"]])
def test_a_malformed_broker_list_stops_the_start_with_one_line(command, brokers, said):
    line = one_line_error(cli(*command, "--brokers", brokers, timeout=30))
    assert said in line


def test_bad_environment_value_stops_the_start_with_one_line():
    env = cli_env(thresholds__no_movement_hours="-3")
    line = one_line_error(cli("run", "--brokers", "127.0.0.1:1", env=env))
    assert "no_movement_hours" in line


def test_a_webhook_secret_in_the_environment_does_not_stop_the_start(tmp_path):
    scans = tmp_path / "scans.jsonl"
    scans.write_text('{"event_id": "e1", "waybill": "W1", "carrier": "SF", '
                     '"scan_type": "PICKUP", "ts": 1793462400000}\n', encoding="utf-8")
    env = cli_env()
    env["PARCELWATCH_WEBHOOK_SECRET_M00001"] = "whsec_c2VjcmV0"
    result = cli("replay", "--scans", scans, "--out", tmp_path / "out", env=env)
    assert result.returncode == 0, result.stderr
    env["PARCELWATCH_THRESHOLDS__NO_MOVMENT_HOURS"] = "48"
    line = one_line_error(cli("replay", "--scans", scans, "--out", tmp_path / "out", env=env))
    assert "PARCELWATCH_THRESHOLDS__NO_MOVEMENT_HOURS" in line


@pytest.mark.parametrize(("name", "value", "said"), [
    ("kafka__no_such_thing", "1", 'No such configuration property: "no.such.thing"'),
    ("kafka__acks", "sometimes", "Invalid value"),
])
@pytest.mark.parametrize("command", [["run"], ["push", "--endpoints", "none.toml"]])
def test_a_bad_kafka_property_stops_the_start_with_one_line(command, name, value, said):
    line = one_line_error(cli(*command, "--brokers", "127.0.0.1:1", env=cli_env(**{name: value}),
                              timeout=30))
    assert said in line and "[kafka]" in line


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = cli("--version", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"parcelwatch {version('parcelwatch')}"


def test_bad_arguments_give_one_line_and_exit_2(tmp_path):
    assert "--parcels" in one_line_error(cli("demo", "--parcels", "many"))
    assert "--scans" in one_line_error(cli("replay", "--out", tmp_path))
    assert "no such file" in one_line_error(
        cli("replay", "--scans", tmp_path / "missing.jsonl", "--out", tmp_path))
    assert "exactly one of" in one_line_error(cli("generate"))
    assert "go together" in one_line_error(cli("run", "--process-id", "1"))
    assert "0 to 1" in one_line_error(
        cli("run", "--process-id", "2", "--addresses", "127.0.0.1:2101;127.0.0.1:2102"))
    assert "HOST:PORT" in one_line_error(
        cli("run", "--process-id", "0", "--addresses", "127.0.0.1"))
