"""The `push` job: wires the Kafka consumer and producer to `alerts.push.Pusher`."""

from __future__ import annotations

import asyncio
import logging
import signal

from confluent_kafka import Consumer, Producer

from alerts.endpoints import Endpoint
from alerts.metrics import Metrics
from alerts.push import Pusher
from connectors.kafka import client_config, ensure_topics
from flows.config import Settings

log = logging.getLogger("parcelwatch")


def push(settings: Settings, endpoints: dict[str, Endpoint], group: str, metrics: Metrics,
         exit_at_end: bool) -> None:
    config = client_config(settings.brokers, settings.kafka)
    topics = settings.topics
    if settings.create_topics:
        ensure_topics(config, [topics.merchant_notifications, topics.notifications_dead_letter],
                      settings.topic_partitions, settings.connect_timeout_seconds)
    consumer = Consumer({
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": 10,
        **config,                           # the user's librdkafka settings, then ours:
        "group.id": group,
        "enable.auto.commit": False,        # committed only after each record's outcome
        "enable.partition.eof": True,       # how --exit-at-end knows it has read everything
    })
    producer = Producer({"enable.idempotence": True, "linger.ms": 5, **config})
    pusher = Pusher(consumer, producer, topics.merchant_notifications,
                    topics.notifications_dead_letter, endpoints, metrics, exit_at_end,
                    settings.cloudevents_source)
    consumer.subscribe([topics.merchant_notifications], on_assign=pusher.assigned,
                       on_revoke=pusher.revoked, on_lost=pusher.revoked)
    log.info("pushing %s to %d merchant endpoints", topics.merchant_notifications,
             len(endpoints))
    health = metrics.health
    health.needs_watermark = False  # no event time here: ready once connected
    health.running = health.connected = True
    try:
        asyncio.run(_until_signal(pusher))
    finally:
        health.running = False
        consumer.close()  # commits nothing more: offsets are committed per outcome


async def _until_signal(pusher: Pusher) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pusher.stop)
    await pusher.run()
