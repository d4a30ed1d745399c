"""The embedded broker: starts, serves Kafka clients, and never outlives its owner."""

from __future__ import annotations

import subprocess
import sys

from connectors.broker import EmbeddedBroker, port_accepts, tansu_binary
from connectors.kafka import check_connection, client_config, ensure_topics

from conftest import wait_for_exit

OWNER = """
import os
from connectors.broker import EmbeddedBroker
broker = EmbeddedBroker().start()
print(broker.process.pid, broker.port, flush=True)
os.kill(os.getpid(), 9)
"""


def test_the_binary_ships_in_the_installed_package():
    assert tansu_binary().is_file()


def test_topics_are_created_with_their_partitions(broker):
    config = client_config(broker.bootstrap)
    ensure_topics(config, ["broker-test-a", "broker-test-b"], 3, 10)
    ensure_topics(config, ["broker-test-a"], 3, 10)  # existing topics are left alone
    topics = check_connection(config, 10)
    assert topics["broker-test-a"] == 3 and topics["broker-test-b"] == 3


def test_a_killed_owner_takes_its_broker_with_it():
    owner = subprocess.run([sys.executable, "-c", OWNER], capture_output=True, text=True,
                           timeout=60, check=False)
    pid, port = map(int, owner.stdout.split())
    assert wait_for_exit(pid, 10), "the broker outlived its owner"
    assert not port_accepts(port)


def test_stop_frees_the_port():
    with EmbeddedBroker() as running:
        assert port_accepts(running.port)
    assert not port_accepts(running.port)
