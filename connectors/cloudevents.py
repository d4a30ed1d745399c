"""CloudEvents 1.0 in Kafka's binary mode: each output record's value is the event's data,
unchanged, and its attributes travel as `ce_*` headers (CloudEvents Kafka protocol binding),
so a consumer that knows nothing of them is unaffected."""

from __future__ import annotations

from datetime import UTC, datetime

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/json"
EVENT_TYPES = {
    "alerts": b"parcelwatch.alert.v1",
    "merchant-notifications": b"parcelwatch.notification.v1",
    "route-scores": b"parcelwatch.route_score.v1",
    "dead-letter": b"parcelwatch.dead_letter.v1",
    "notifications-dead-letter": b"parcelwatch.dead_letter.v1",
}


def rfc3339(ms: int) -> bytes:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z").encode()


class Headers:
    """The headers of each record, the constant ones made once."""

    def __init__(self, source: str):
        self.source = source.encode()
        self._time_ms = -1
        self._time = b""

    def of(self, topic: str, event_id: str, emitted_at: int) -> list[tuple[str, bytes]]:
        if emitted_at != self._time_ms:  # a batch's records share their time: format it once
            self._time_ms, self._time = emitted_at, rfc3339(emitted_at)
        return [("ce_specversion", SPEC_VERSION), ("ce_id", event_id.encode()),
                ("ce_source", self.source), ("ce_type", EVENT_TYPES[topic]),
                ("ce_time", self._time), ("content-type", CONTENT_TYPE)]
