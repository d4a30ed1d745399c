"""`parcelwatch push`: signed webhooks to a real local HTTP server, through the real broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.endpoints import load_endpoints
from alerts.push import OffsetBook, retry_after_seconds
from alerts.webhooks import secret_key, signature
from connectors.broker import free_port
from connectors.kafka import client_config, ensure_topics, read_topic
from flows.config import ConfigError

from conftest import CLI, cli, cli_env, poison_record, topic_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signatures_match_the_standard_webhooks_test_vector():
    key = secret_key(SECRET)
    assert signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_retry_after_takes_seconds_or_an_http_date():
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 50 < retry_after_seconds(later) <= 60


def test_offsets_are_committed_only_up_to_the_first_record_without_an_outcome():
    book = OffsetBook()
    for offset in (5, 6, 7):
        book.started(0, offset)
    assert book.finished(0, 6) is None  # 5 is still in flight
    assert book.finished(0, 5) == 7
    assert book.finished(0, 7) == 8 and book.in_flight == 0


def test_outcomes_of_an_earlier_assignment_commit_nothing():
    book = OffsetBook()
    book.started(0, 10)
    old = book.generation(0)
    book.reset(0)  # revoked, then assigned again: read again from the committed offset
    book.started(0, 10)
    assert book.finished(0, 10, old) is None and book.in_flight == 1
    assert book.finished(0, 10, book.generation(0)) == 11


class Receiver:
    """A webhook receiver on a local port: checks every signature independently, answers
    from a script, records what came."""

    def __init__(self, port: int, answer=None):
        self.port = port
        self.answer = answer or (lambda request, attempt: (200, {}))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets a deliberately slow answer finish
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = {name: self.headers[name] for name in
                           ("webhook-id", "webhook-timestamp", "webhook-signature")}
                request.update(body=json.loads(body), at=time.monotonic(),
                               valid=_valid(request, body))
                with receiver.lock:
                    attempt = sum(r["webhook-id"] == request["webhook-id"]
                                  for r in receiver.requests) + 1
                    receiver.requests.append(request)
                status, extra = receiver.answer(request, attempt)
                if status == "hold":
                    receiver.release.wait(timeout=30)
                    status = 200
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def delivered_ids(self) -> list[str]:
        return [r["webhook-id"] for r in self.requests]


def _valid(request: dict, body: bytes) -> bool:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{request['webhook-id']}.{request['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(request["webhook-timestamp"])) < 60
    return fresh and hmac.compare_digest(expected, request["webhook-signature"])


def notification(n: int, merchant: str = "M1", digest_key: str | None = None) -> dict:
    return {"notification_id": f"n-{merchant}-{n}", "merchant_id": merchant,
            "alert_id": f"a-{n}", "type": "NO_MOVEMENT", "waybill": f"W{n}", "order_id": None,
            "locale": "en", "title": "t", "body": "b", "suggested_actions": [],
            "event_ts": 1_790_000_000_000 + n,
            "digest_key": digest_key or f"{merchant}:NO_MOVEMENT"}


class PushSetup:
    """Topics of one test, notifications in them, an endpoints file, the command's env."""

    def __init__(self, broker, tmp_path, prefix: str, port: int, **policy):
        self.settings = topic_settings(prefix)
        self.topic = self.settings["topics__merchant_notifications"]
        self.dead_topic = f"{prefix}-notifications-dead-letter"
        self.settings["topics__notifications_dead_letter"] = self.dead_topic
        self.config = client_config(broker.bootstrap)
        ensure_topics(self.config, [self.topic, self.dead_topic], 2, 10)
        self.broker = broker
        policy = {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2,
                  "timeout_seconds": 2, **policy}
        lines = ["[defaults]", *(f"{k} = {v}" for k, v in policy.items()),
                 "[merchants.M1]", f'url = "http://127.0.0.1:{port}/hook"',
                 'secret_env = "TEST_WEBHOOK_SECRET"',
                 "[merchants.M2]", f'url = "http://127.0.0.1:{port}/other"',
                 'secret_env = "TEST_WEBHOOK_SECRET"']
        self.endpoints = tmp_path / "endpoints.toml"
        self.endpoints.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # The embedded broker lets a consumer group settle in about half the session timeout.
        self.env = cli_env(**self.settings, kafka__session_timeout_ms="4000",
                           kafka__heartbeat_interval_ms="1000")
        self.env["TEST_WEBHOOK_SECRET"] = SECRET

    def produce(self, notes: list[dict | bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer(self.config)
        for note in notes:
            if type(note) is bytes:  # a raw record, as it is
                producer.produce(self.topic, note, b"M1")
            else:
                producer.produce(self.topic, json.dumps(note).encode(),
                                 note["merchant_id"].encode())
        assert producer.flush(10) == 0

    def args(self) -> list[str]:
        return ["push", "--brokers", self.broker.bootstrap, "--endpoints", self.endpoints,
                "--group", f"{self.topic}-push", "--exit-at-end"]

    def push(self) -> subprocess.CompletedProcess:
        result = cli(*self.args(), env=self.env, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    def dead_letters(self) -> list[dict]:
        return [json.loads(value) for _, value, _ in read_topic(self.config, self.dead_topic)]


def test_each_notification_is_pushed_once_signed_with_its_id_and_committed(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-ok", port)
    notes = [notification(n) for n in range(4)] + [notification(9, merchant="M9")]
    setup.produce(notes)
    with Receiver(port) as receiver:
        setup.push()
        assert sorted(receiver.delivered_ids()) == [f"n-M1-{n}" for n in range(4)]
        assert all(r["valid"] for r in receiver.requests)
        assert {r["body"]["notification_id"] for r in receiver.requests} == {
            f"n-M1-{n}" for n in range(4)}
        setup.push()  # committed: a second run has nothing left to send
        assert len(receiver.requests) == 4
    assert setup.dead_letters() == []  # M9 has no endpoint: skipped, not an error


def test_500s_are_retried_with_the_same_id_until_delivered(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-500", port)
    setup.produce([notification(n) for n in range(3)])
    with Receiver(port, lambda r, attempt: (500 if attempt <= 2 else 200, {})) as receiver:
        setup.push()
    ids = receiver.delivered_ids()
    assert sorted(set(ids)) == ["n-M1-0", "n-M1-1", "n-M1-2"]
    assert all(ids.count(i) == 3 for i in set(ids))
    timestamps = [r["webhook-timestamp"] for r in receiver.requests]
    assert all(r["valid"] for r in receiver.requests) and timestamps


def test_a_429_is_retried_after_its_retry_after(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-429", port, backoff_max_seconds=5)
    setup.produce([notification(1)])
    with Receiver(port, lambda r, attempt: (429, {"Retry-After": "1"}) if attempt == 1
                  else (200, {})) as receiver:
        setup.push()
    first, second = receiver.requests
    assert first["webhook-id"] == second["webhook-id"]
    assert second["at"] - first["at"] >= 0.95  # the first backoff alone is under 0.05 s


def test_410_disables_the_endpoint_and_dead_letters_its_notifications(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-410", port, concurrency=1, rate_per_second=1000)
    setup.produce([notification(n) for n in range(3)] + [notification(7, merchant="M2")])
    gone = lambda request, attempt: (410 if request["body"]["merchant_id"] == "M1"  # noqa: E731
                                     else 200, {})
    with Receiver(port, gone) as receiver:
        setup.push()
    assert [r["webhook-id"] for r in receiver.requests].count("n-M2-7") == 1
    m1_requests = [r for r in receiver.requests if r["body"]["merchant_id"] == "M1"]
    assert len(m1_requests) == 1  # after the 410 nothing more is sent to it
    dead = setup.dead_letters()
    assert sorted(d["notification_id"] for d in dead) == ["n-M1-0", "n-M1-1", "n-M1-2"]
    assert all("410" in d["reason"] and json.loads(d["value"])["merchant_id"] == "M1"
               for d in dead)


@pytest.mark.parametrize(("status", "policy", "attempts", "reason"), [
    (400, {}, 1, "HTTP 400 (not retried)"),  # other client errors: dead-lettered at once
    (503, {"max_attempts": 3}, 3, "gave up after 3 attempts: HTTP 503"),  # retries run out
], ids=["client-error", "retries-exhausted"])
def test_failures_end_in_the_dead_letter_topic_with_the_reason(broker, tmp_path, status,
                                                               policy, attempts, reason):
    port = free_port()
    setup = PushSetup(broker, tmp_path, f"push-{status}", port, **policy)
    setup.produce([notification(1)])
    with Receiver(port, lambda r, attempt: (status, {})) as receiver:
        setup.push()
    assert len(receiver.requests) == attempts
    [dead] = setup.dead_letters()
    assert dead["reason"] == reason and dead["attempts"] == attempts
    [(_, _, _, headers)] = read_topic(setup.config, setup.dead_topic, headers=True)
    assert headers["ce_type"] == b"parcelwatch.dead_letter.v1"
    assert headers["ce_id"] == f"{dead['notification_id']}:{attempts}".encode()
    assert headers["ce_specversion"] == b"1.0" and headers["ce_source"] == b"parcelwatch"


def test_a_response_slower_than_the_timeout_is_retried(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-slow", port, timeout_seconds=0.3)
    setup.produce([notification(1)])
    with Receiver(port, lambda r, attempt: ("hold", {}) if attempt == 1 else (200, {})
                  ) as receiver:
        setup.push()
    assert [r["webhook-id"] for r in receiver.requests] == ["n-M1-1", "n-M1-1"]
    assert setup.dead_letters() == []


def test_a_receiver_down_then_up_gets_everything_once(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-down", port, max_attempts=50,
                      backoff_max_seconds=0.5)
    setup.produce([notification(n) for n in range(5)])
    metrics_port = free_port()
    env = dict(setup.env, PARCELWATCH_METRICS__PORT=str(metrics_port))
    job = subprocess.Popen([CLI, *map(str, setup.args())], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_retries(metrics_port, job)
        with Receiver(port) as receiver:
            _, stderr = job.communicate(timeout=120)
            assert job.returncode == 0, stderr
    finally:
        if job.poll() is None:
            job.kill()
    ids = receiver.delivered_ids()
    assert sorted(ids) == [f"n-M1-{n}" for n in range(5)]  # each once
    assert setup.dead_letters() == []


def test_a_digest_window_groups_a_merchants_notifications_into_one_push(broker, tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-digest", port, digest_window_seconds=1)
    setup.produce([notification(n, digest_key="M1:storm") for n in range(6)])
    with Receiver(port) as receiver:
        setup.push()
    [request] = receiver.requests
    assert request["valid"] and request["webhook-id"].startswith("digest-")
    assert request["body"]["digest_key"] == "M1:storm"
    assert sorted(n["notification_id"] for n in request["body"]["notifications"]) == [
        f"n-M1-{n}" for n in range(6)]


def _wait_for_retries(metrics_port: int, job: subprocess.Popen) -> None:
    """Until the job reports a failed attempt it will retry (the receiver is down)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert job.poll() is None, job.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                        timeout=2) as page:
                text = page.read().decode()
        except OSError:
            continue
        if 'parcelwatch_webhook_deliveries_total{outcome="retry"}' in text:
            return
    pytest.fail("the job never retried")


def test_a_bad_endpoints_file_is_one_line_and_exit_code_2(tmp_path):
    endpoints = tmp_path / "endpoints.toml"
    endpoints.write_text('[merchants.M1]\nurl = "http://127.0.0.1:1/hook"\n'
                         'secret_env = "NOT_SET_ANYWHERE"\n', encoding="utf-8")
    result = cli("push", "--brokers", "127.0.0.1:1", "--endpoints", endpoints)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "NOT_SET_ANYWHERE is not set" in result.stderr
    endpoints.write_text('[merchants.M1]\nurl = "ftp://x"\nsecret_file = "/nope"\n',
                         encoding="utf-8")
    result = cli("push", "--brokers", "127.0.0.1:1", "--endpoints", endpoints)
    assert result.returncode == 2 and "url" in result.stderr
    endpoints.write_text('[merchants.M1]\nurl = "http://[::1/h"\nsecret_env = "S"\n',
                         encoding="utf-8")
    result = cli("push", "--brokers", "127.0.0.1:1", "--endpoints", endpoints,
                 env={**cli_env(), "S": SECRET})
    assert result.returncode == 2 and "is invalid" in result.stderr


def test_records_that_are_not_notifications_are_dead_lettered_and_block_nothing(broker,
                                                                                 tmp_path):
    port = free_port()
    setup = PushSetup(broker, tmp_path, "push-bad", port)
    setup.produce([{"notification_id": 5, "merchant_id": "M1"},           # id not a string
                   {"notification_id": "n-é", "merchant_id": "M1"},       # not a header value
                   poison_record(10_000),                                  # too deep to decode
                   notification(1)])
    with Receiver(port) as receiver:
        setup.push()
        assert receiver.delivered_ids() == ["n-M1-1"]
        setup.push()  # everything had an outcome and was committed
        assert len(receiver.requests) == 1
    dead = setup.dead_letters()
    assert len(dead) == 3
    assert all(d["reason"].startswith("not a merchant notification") for d in dead)
    assert any("nested too deeply" in d["reason"] for d in dead)


def test_a_merchant_overrides_the_defaults_and_reads_its_secret_from_a_file(tmp_path):
    secret = tmp_path / "m2.secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    path = tmp_path / "endpoints.toml"
    path.write_text(
        "[defaults]\nmax_attempts = 3\nconcurrency = 2\n"
        '[merchants.M1]\nurl = "https://a.example/hook"\nsecret_env = "S1"\n'
        f'[merchants.M2]\nurl = "https://b.example/hook"\nsecret_file = "{secret}"\n'
        "concurrency = 8\ndigest_window_seconds = 30\n", encoding="utf-8")
    endpoints = load_endpoints(path, environ={"S1": SECRET})
    assert (endpoints["M1"].policy.max_attempts, endpoints["M1"].policy.concurrency) == (3, 2)
    m2 = endpoints["M2"].policy
    assert (m2.max_attempts, m2.concurrency, m2.digest_window_seconds) == (3, 8, 30)
    assert endpoints["M2"].key == endpoints["M1"].key == secret_key(SECRET)
    path.write_text('[merchants.M1]\nurl = "https://a.example/hook"\nsecret_env = "S1"\n'
                    "concurrency = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"merchant M1.*concurrency"):
        load_endpoints(path, environ={"S1": SECRET})
    path.write_text('[merchants.M1]\nurl = "https://a.example/hook"\nsecret_env = "S1"\n'
                    "colour = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"merchant M1.*colour"):
        load_endpoints(path, environ={"S1": SECRET})
