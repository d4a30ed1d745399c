"""What the operations team runs: alerting rules (real promtool), the Grafana dashboard, and
a real Prometheus server scraping a running job."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from alerts.metrics import ALERT_SEVERITIES, Metrics
from benchmarks.scenario import Scenario, ScenarioConfig
from benchmarks.writers import produce
from connectors.broker import free_port
from connectors.kafka import client_config, ensure_topics
from flows.config import load_settings

from conftest import CLI, cli_env, topic_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\bparcelwatch_[a-z_]+")


def tool(name: str) -> str:
    """Debian's `prometheus` package provides promtool and the server; CI installs it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install prometheus")
    return path


def exported_names() -> set[str]:
    """Every sample name the job and the push job export."""
    registry = CollectorRegistry()
    Metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",)}
    return {family.name + suffix for family in registry.collect()
            for suffix in suffixes[family.type]}


def test_the_alerting_rules_and_the_scrape_config_are_valid():
    promtool = tool("promtool")
    for args in (["check", "rules", DEPLOY / "prometheus" / "rules.yml"],
                 ["check", "config", DEPLOY / "prometheus" / "prometheus.yml"]):
        result = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerting_rules_pass_their_unit_tests():
    result = subprocess.run([tool("promtool"), "test", "rules", "rules_test.yml"],
                            cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_queries_only_metrics_the_job_exports():
    rules = (DEPLOY / "prometheus" / "rules.yml").read_text(encoding="utf-8")
    used = set(METRIC.findall(rules))
    assert used and used <= exported_names()


def test_the_dashboard_is_valid_and_queries_only_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "parcelwatch.json").read_text(
        encoding="utf-8"))
    assert dashboard["uid"] == "parcelwatch-ops"
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
                  ).read_text(encoding="utf-8")
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert f"uid: {panel['datasource']['uid']}" in datasource
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used <= exported_names(), used - exported_names()
    contract = {"parcelwatch_events_total", "parcelwatch_alerts_total",
                "parcelwatch_parcels_stalled", "parcelwatch_watermark_lag_seconds",
                "parcelwatch_webhook_deliveries_total",
                "parcelwatch_webhook_request_seconds_bucket",
                "parcelwatch_kafka_consumer_lag_records"}
    assert contract <= used


def test_a_real_prometheus_scrapes_a_running_job(broker, tmp_path):
    prometheus = tool("prometheus")
    settings = topic_settings("ops")
    names = load_settings(environ={f"PARCELWATCH_{k.upper()}": v for k, v in settings.items()})
    config = client_config(broker.bootstrap)
    ensure_topics(config, [*names.topics.inputs().values(), *names.topics.outputs().values()],
                  2, 10)
    produce(Scenario(ScenarioConfig(parcels=200, days=7, seed=3)), config,
            names.topics.inputs(), show_progress=False)

    metrics_port, web_port = free_port(), free_port()
    env = cli_env(**settings, recovery="false")
    env["PARCELWATCH_METRICS__PORT"] = str(metrics_port)
    scrape = tmp_path / "prometheus.yml"
    scrape.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: parcelwatch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n", encoding="utf-8")
    job = subprocess.Popen([CLI, "run", "--brokers", broker.bootstrap, "--from-beginning"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = subprocess.Popen([prometheus, f"--config.file={scrape}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{web_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        accepted = _query_until(web_port, 'sum(parcelwatch_events_total{outcome="accepted",'
                                          'topic="scans"})', lambda v: v > 0, job, server)
        assert accepted > 0
        up = _query_until(web_port, 'up{job="parcelwatch"}', lambda v: v == 1, job, server)
        assert up == 1
        # Series a rule reads exist from the first scrape, at 0 until their first event:
        # every CRITICAL alert type in both statuses, and the notifications.
        critical = _query_until(web_port, 'count(parcelwatch_alerts_total{severity="CRITICAL"})',
                                lambda v: v > 0, job, server)
        assert critical == 2 * sum("CRITICAL" in s for s in ALERT_SEVERITIES.values())
        assert _query_until(web_port, 'count(parcelwatch_notifications_total)',
                            lambda v: v > 0, job, server) >= 1
        # Every panel's query, its job and instance variables at "All", is valid PromQL.
        dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "parcelwatch.json"
                                ).read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$job", ".*").replace("$instance", ".*")
                url = f"http://127.0.0.1:{web_port}/api/v1/query?" + urllib.parse.urlencode(
                    {"query": expr})
                with urllib.request.urlopen(url, timeout=5) as page:
                    assert json.loads(page.read())["status"] == "success", expr
    finally:
        for process in (job, server):
            process.send_signal(signal.SIGTERM)
        for process in (job, server):
            process.wait(timeout=60)


def _query_until(port: int, query: str, good, *processes, timeout: float = 90) -> float:
    """Ask the server's HTTP API until the query has a value that is `good`."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, "a process ended early"
        try:
            with urllib.request.urlopen(url, timeout=2) as page:
                answer = json.loads(page.read())
        except OSError:
            continue  # not listening yet
        results = answer["data"]["result"]
        if results and good(float(results[0]["value"][1])):
            return float(results[0]["value"][1])
    pytest.fail(f"prometheus never answered {query!r} with a good value")
