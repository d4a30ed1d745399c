"""`run` through the real embedded broker: same alerts as `replay`, restarts, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from benchmarks.scenario import Scenario
from benchmarks.writers import produce
from connectors.broker import free_port
from connectors.kafka import client_config, ensure_topics, read_topic
from flows.config import load_settings

from conftest import CLI, SESSION_SCENARIO, cli, cli_env, poison_record, topic_settings


def alert_keys(records) -> set[tuple]:
    return {(a["alert_id"], a["status"], a["event_ts"])
            for a in (json.loads(value) for _, value, _ in records)}


def prepare(broker, prefix: str, partitions: int = 3) -> tuple[dict, dict[str, str]]:
    """Topics of this test on the shared broker, created with several partitions."""
    env_settings = topic_settings(prefix)
    settings = load_settings(environ={f"PARCELWATCH_{k.upper()}": v
                                      for k, v in env_settings.items()},
                             brokers=broker.bootstrap)
    config = client_config(broker.bootstrap)
    names = [*settings.topics.inputs().values(), *settings.topics.outputs().values()]
    ensure_topics(config, names, partitions, 10)
    return env_settings, {"inputs": settings.topics.inputs(), **settings.topics.outputs()}


def produce_records(config: dict, topics: dict[str, str], records) -> None:
    from confluent_kafka import Producer

    producer = Producer({**config, "linger.ms": 5})
    for topic, key, value in records:
        producer.produce(topics[topic], value, key)
        producer.poll(0)
    assert producer.flush(30) == 0


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll a condition whose own check blocks briefly (a consume or an HTTP request)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")


def test_run_exit_at_end_gives_the_same_alerts_as_replay(broker, scenario, replayed):
    generated, _paths = scenario
    env_settings, topics = prepare(broker, "same")
    config = client_config(broker.bootstrap)
    again = Scenario(SESSION_SCENARIO)  # the same records
    produce(again, config, topics["inputs"], show_progress=False)

    result = cli("run", "--brokers", broker.bootstrap, "--from-beginning", "--exit-at-end",
                 env=cli_env(**env_settings, recovery="false"), timeout=300)
    assert result.returncode == 0, result.stderr

    expected = {(a["alert_id"], a["status"], a["event_ts"]) for a in replayed["alerts"]}
    assert alert_keys(read_topic(config, topics["alerts"])) == expected
    notes = read_topic(config, topics["merchant-notifications"])
    assert len(notes) == len(replayed["merchant-notifications"])
    dead = read_topic(config, topics["dead-letter"])
    assert len(dead) == generated.truth.counts["junk"]
    def canonical(records) -> list[str]:
        return sorted(json.dumps(record, sort_keys=True) for record in records)

    scores = canonical(json.loads(v) for _, v, _ in read_topic(config, topics["route-scores"]))
    assert scores and scores == canonical(replayed["route-scores"])
    check_cloudevents(config, topics)


# Each output's CloudEvents type, and the record's own id as the contract forms it.
CLOUDEVENTS = {
    "alerts": ("parcelwatch.alert.v1", lambda r: f"{r['alert_id']}:{r['status']}"),
    "merchant-notifications": ("parcelwatch.notification.v1", lambda r: r["notification_id"]),
    "route-scores": ("parcelwatch.route_score.v1",
                     lambda r: f"{r['route_id']}@{r['window_end_ts']}"),
    "dead-letter": ("parcelwatch.dead_letter.v1",
                    lambda r: f"{r['source_topic']}/{r['partition']}/{r['offset']}"),
}


def check_cloudevents(config: dict, topics: dict) -> None:
    """Every output record carries the CloudEvents 1.0 binary-mode headers, its value the
    event's data."""
    from datetime import datetime

    for output, (event_type, own_id) in CLOUDEVENTS.items():
        records = read_topic(config, topics[output], headers=True)
        assert records, output
        for _key, value, _partition, headers in records:
            record = json.loads(value)
            assert headers["ce_specversion"] == b"1.0" and headers["ce_source"] == b"parcelwatch"
            assert headers["ce_type"] == event_type.encode(), output
            assert headers["ce_id"] == own_id(record).encode(), output
            assert headers["content-type"] == b"application/json"
            when = datetime.fromisoformat(headers["ce_time"].decode())
            if "emitted_at" in record:
                assert round(when.timestamp() * 1000) == record["emitted_at"]


def score_records(scores) -> list[str]:
    return sorted(json.dumps(score, sort_keys=True) for score in scores)


def start_processes(broker, count: int, env: dict[str, str], state, logs, *flags: str,
                    ) -> list[subprocess.Popen]:
    """`parcelwatch run` as `count` processes of one job (one alone is a plain run)."""
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(count))
    jobs = []
    for n, log in enumerate(logs[:count]):
        group = ["--process-id", str(n), "--addresses", addresses] if count > 1 else []
        with log.open("a") as stderr:
            jobs.append(subprocess.Popen(
                [CLI, "run", "--brokers", broker.bootstrap, "--state-dir", str(state), *flags,
                 *group], env=env, stdout=subprocess.DEVNULL, stderr=stderr))
    return jobs


def test_two_processes_give_the_same_outputs_as_replay(broker, replayed, tmp_path):
    env_settings, topics = prepare(broker, "two")
    config = client_config(broker.bootstrap)
    produce(Scenario(SESSION_SCENARIO), config, topics["inputs"], show_progress=False)
    state = tmp_path / "state"  # one store for both, created once though they start together
    logs = [tmp_path / f"process-{n}.log" for n in (0, 1)]  # files: pipes could fill and block
    jobs = start_processes(broker, 2, cli_env(**env_settings), state, logs,
                           "--from-beginning", "--exit-at-end")
    for job, log in zip(jobs, logs, strict=True):
        assert job.wait(timeout=300) == 0, log.read_text()

    expected = {(a["alert_id"], a["status"], a["event_ts"]) for a in replayed["alerts"]}
    assert alert_keys(read_topic(config, topics["alerts"])) == expected
    # Route scores are split by lane over both processes: every record once, as replay's.
    scores = [json.loads(value) for _, value, _ in read_topic(config, topics["route-scores"])]
    assert score_records(scores) == score_records(replayed["route-scores"])


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2)])
def test_a_job_resumed_as_another_number_of_processes_loses_no_alert(
        broker, replayed, tmp_path, before, after):
    """Killed mid-stream as `before` processes, resumed from its state as `after`: the
    keyed state (parcel shards, route shards, the global step) moves to its new owners."""
    env_settings, topics = prepare(broker, f"rescale-{before}-{after}")
    config = client_config(broker.bootstrap)
    records = list(Scenario(SESSION_SCENARIO).records())
    half = len(records) // 2
    produce_records(config, topics["inputs"], records[:half])
    env = cli_env(**env_settings, idle_advance="false", snapshot_interval_seconds="0.2",
                  batch_size="300")
    state = tmp_path / "state"
    logs = [tmp_path / f"process-{n}.log" for n in (0, 1)]
    jobs = start_processes(broker, before, env, state, logs, "--from-beginning")
    try:
        wait_for(lambda: len(read_topic(config, topics["alerts"])) >= 5, 120,
                 "the first alerts of the first run")
    finally:
        for job in jobs:
            os.kill(job.pid, signal.SIGKILL)
            job.wait(timeout=30)

    produce_records(config, topics["inputs"], records[half:])
    jobs = start_processes(broker, after, env, state, logs, "--exit-at-end")
    for job, log in zip(jobs, logs, strict=False):
        assert job.wait(timeout=300) == 0, log.read_text()

    expected = {(a["alert_id"], a["status"], a["event_ts"]) for a in replayed["alerts"]}
    assert alert_keys(read_topic(config, topics["alerts"])) == expected


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_stopped_mid_stream_and_restarted_loses_no_alert(broker, scenario, replayed,
                                                                 tmp_path, stop):
    """Killed, or stopped cleanly (its inputs end at the next poll, its state kept)."""
    env_settings, topics = prepare(broker, f"stop-{stop.name.lower()}")
    config = client_config(broker.bootstrap)
    records = list(Scenario(SESSION_SCENARIO).records())
    half = len(records) // 2
    produce_records(config, topics["inputs"], records[:half])

    port = free_port()
    env = cli_env(**env_settings, idle_advance="false", snapshot_interval_seconds="0.2",
                  batch_size="300")
    env["PARCELWATCH_METRICS__PORT"] = str(port)
    state = tmp_path / "state"
    job = subprocess.Popen([CLI, "run", "--brokers", broker.bootstrap, "--from-beginning",
                            "--state-dir", str(state)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(read_topic(config, topics["alerts"])) >= 5, 120,
                 "the first alerts of the first run")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
        assert "parcelwatch_parcels_tracked" in text
        assert 'parcelwatch_events_total{outcome="accepted",topic="scans"}' in text
    finally:
        os.kill(job.pid, stop)
        _, stderr = job.communicate(timeout=60)
    assert job.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 0), stderr

    produce_records(config, topics["inputs"], records[half:])
    result = cli("run", "--brokers", broker.bootstrap, "--exit-at-end", "--state-dir", state,
                 env=env, timeout=300)
    assert result.returncode == 0, result.stderr

    emitted = read_topic(config, topics["alerts"])
    expected = {(a["alert_id"], a["status"], a["event_ts"]) for a in replayed["alerts"]}
    assert alert_keys(emitted) == expected  # nothing lost, nothing new
    # Repeats after the restart are re-emissions of the same detection, never new ids.
    assert len(emitted) >= len(expected)


def test_a_record_too_deep_to_decode_is_dead_lettered_and_the_job_goes_on(broker):
    env_settings, topics = prepare(broker, "poison", partitions=1)
    config = client_config(broker.bootstrap)
    t0, day = 1_793_462_400_000, 86_400_000

    def pickup(waybill: str, ts: int) -> bytes:
        return json.dumps({"event_id": f"{waybill}-p", "waybill": waybill, "carrier": "SF",
                           "scan_type": "PICKUP", "ts": ts}).encode()

    poison = poison_record(10_000)
    produce_records(config, topics["inputs"], [
        ("scans", b"W1", pickup("W1", t0)), ("scans", b"X", poison),
        ("disputes", b"X", poison), ("scans", b"W2", pickup("W2", t0 + 4 * day))])
    result = cli("run", "--brokers", broker.bootstrap, "--from-beginning", "--exit-at-end",
                 env=cli_env(**env_settings, recovery="false"), timeout=120)
    assert result.returncode == 0, result.stderr

    dead = [json.loads(value) for _, value, _ in read_topic(config, topics["dead-letter"])]
    assert sorted(d["source_topic"] for d in dead) == sorted(
        [topics["inputs"]["scans"], topics["inputs"]["disputes"]])
    assert all("nested too deeply" in d["error"] for d in dead)
    alerts = [json.loads(value) for _, value, _ in read_topic(config, topics["alerts"])]
    assert [(a["type"], a["waybill"]) for a in alerts] == [("NO_MOVEMENT", "W1")]


def test_sigterm_stops_a_running_job_cleanly(broker, tmp_path):
    env_settings, _topics = prepare(broker, "term", partitions=1)
    job = subprocess.Popen([CLI, "run", "--brokers", broker.bootstrap, "--state-dir",
                            str(tmp_path / "state")], env=cli_env(**env_settings),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "running against" in job.stderr.readline()  # blocks until the dataflow starts
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 0, stderr
    assert "panicked" not in stderr and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].endswith("stopped on SIGTERM"), stderr


def test_an_unreachable_broker_is_a_clear_error_not_a_hang():
    nobody = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = cli("run", "--brokers", nobody, env=cli_env(connect_timeout_seconds="2"),
                 timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and "no Kafka broker answered at" in lines[0]
    assert nobody in lines[0]


def test_readiness_turns_200_once_every_input_has_reported(broker, tmp_path):
    env_settings, topics = prepare(broker, "ready", partitions=1)
    config = client_config(broker.bootstrap)
    port = free_port()
    env = cli_env(**env_settings, recovery="false")
    env["PARCELWATCH_METRICS__PORT"] = str(port)

    def answer(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as page:
                return page.status, page.read().decode().strip()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode().strip()
        except (urllib.error.URLError, ConnectionError):
            return 0, "not listening"

    job = subprocess.Popen([CLI, "run", "--brokers", broker.bootstrap, "--from-beginning"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: answer("/healthz")[0] == 200, 60, "the dataflow to run")
        assert answer("/readyz") == (503, "waiting for every input partition to report")
        pickup = json.dumps({"event_id": "r1", "waybill": "R1", "carrier": "SF",
                             "scan_type": "PICKUP", "ts": 1_793_462_400_000}).encode()
        produce_records(config, topics["inputs"], [("scans", b"R1", pickup)])
        wait_for(lambda: answer("/readyz")[0] == 200, 60, "readiness")
        assert answer("/readyz") == (200, "ready")
        assert "parcelwatch_events_total" in answer("/metrics")[1]
    finally:
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
    assert job.returncode == 0, stderr


def test_json_logs_are_one_object_a_line_and_a_stop_adds_no_trace(broker, tmp_path):
    env_settings, _topics = prepare(broker, "jsonlog", partitions=1)
    job = subprocess.Popen([CLI, "--log-format", "json", "run", "--brokers", broker.bootstrap,
                            "--state-dir", str(tmp_path / "state")], env=cli_env(**env_settings),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(job.stderr.readline())  # blocks until the dataflow starts
    assert first["level"] == "INFO" and first["event"].startswith("running against")
    assert first["logger"].startswith("parcelwatch") and "T" in first["ts"]
    job.send_signal(signal.SIGTERM)
    _, rest = job.communicate(timeout=60)
    assert job.returncode == 0, rest
    lines = [json.loads(line) for line in rest.splitlines()]
    assert lines and lines[-1]["event"] == "stopped on SIGTERM"


@pytest.mark.parametrize("recovery", ["true", "false"])
def test_processed_offsets_are_committed_for_lag_tools(broker, tmp_path, recovery):
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    env_settings, topics = prepare(broker, f"offsets-{recovery}", partitions=2)
    config = client_config(broker.bootstrap)
    records = [("scans", f"O{i}".encode(), json.dumps({
        "event_id": f"o{i}", "waybill": f"O{i}", "carrier": "SF", "scan_type": "PICKUP",
        "ts": 1_793_462_400_000 + i * 60_000}).encode()) for i in range(40)]
    produce_records(config, topics["inputs"], records)
    group = f"lag-{recovery}"
    result = cli("run", "--brokers", broker.bootstrap, "--from-beginning", "--exit-at-end",
                 "--state-dir", tmp_path / "state",
                 env=cli_env(**env_settings, recovery=recovery, group_id=group), timeout=120)
    assert result.returncode == 0, result.stderr
    admin = AdminClient(config)
    (future,) = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)]).values()
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in future.result(timeout=30).topic_partitions}
    scans = topics["inputs"]["scans"]
    assert sum(committed.get((scans, p), 0) for p in (0, 1)) == 40
