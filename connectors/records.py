"""What sources hand to the flow and what sinks take from it: plain tuples, cheap to move."""

from __future__ import annotations

from typing import NamedTuple


class RawBatch(NamedTuple):
    """Records read from one input partition in one poll, in offset order."""

    topic: str                  # contract name of the input: scans, disputes or weather
    partition: int
    records: list[tuple[int, bytes | None, bytes | None]]  # (offset, key, value)
    caught_up: bool             # nothing more to read in the partition right now

    @property
    def partition_id(self) -> str:
        return partition_id(self.topic, self.partition)


class OutputRecord(NamedTuple):
    topic: str                  # contract name of the output: alerts, dead-letter, ...
    key: str | None
    value: bytes
    event_id: str = ""          # its own id, for its CloudEvents `ce_id`
    emitted_at: int = 0         # wall-clock ms it was made, for `ce_time`


class OutputBatch(NamedTuple):
    """Many records of one output at once (an interval's route scores): one item through
    the dataflow and the sink instead of one per record."""

    topic: str
    records: list[tuple[str | None, bytes]]   # (key, value)
    window_end_ts: int = 0      # with each key, their ids
    emitted_at: int = 0


def output_records(items: list[OutputRecord | OutputBatch]):
    """(topic, key, value, id, emitted_at) of every record in a sink's batch, in order."""
    for item in items:
        if type(item) is OutputBatch:
            topic, suffix, emitted_at = item.topic, f"@{item.window_end_ts}", item.emitted_at
            for key, value in item.records:
                yield topic, key, value, f"{key}{suffix}", emitted_at
        else:
            yield item


def partition_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"
