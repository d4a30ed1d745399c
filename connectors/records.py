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


def partition_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"
