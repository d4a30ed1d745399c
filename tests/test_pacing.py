"""Reads sized so that an epoch (and so a snapshot) lasts about one interval during catch-up."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from connectors.kafka import _PartitionReader, client_config, ensure_topics
from connectors.pacing import ReadPacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_snapshots_every_read_asks_for_the_whole_batch():
    pacer = ReadPacer(None, 10_000)
    assert pacer.size() == 10_000
    pacer.read(10_000, 10_000)
    assert pacer.size() == 10_000


def test_reads_are_sized_from_the_time_the_work_of_the_last_full_read_took():
    clock = FakeClock()
    pacer = ReadPacer(10.0, 50_000, clock)
    assert pacer.size() == ReadPacer.LEAST        # nothing measured yet: a small first read
    pacer.read(100, 100)
    clock.now = 0.1                               # 1 ms a record
    assert pacer.size() == 9900                   # what the 9.9 s left of the epoch hold
    pacer.read(9900, 40)                          # a few records time nothing
    clock.now = 5.0
    assert pacer.size() == 5000


def test_the_last_read_of_an_epoch_fits_before_its_end_and_none_follows_it():
    clock = FakeClock()
    pacer = ReadPacer(10.0, 50_000, clock)
    pacer.seconds_per_record = 0.001              # as measured earlier in the epoch
    clock.now = 9.5
    assert pacer.size() == 500                    # what 0.5 s left holds
    pacer.read(500, 30)                           # a few: read, but time nothing
    clock.now = 9.95
    assert pacer.size() == 0                      # 50 records fit: not worth a read
    assert pacer.seconds_left() == pytest.approx(0.05)
    clock.now = 10.0
    pacer.epoch_ended()
    clock.now = 12.0                              # writing the snapshot took 2 s: not work
    assert pacer.size() == 8000                   # the new epoch's 8 s left, at 1 ms


def test_however_slow_the_work_every_epoch_reads():
    clock = FakeClock()
    pacer = ReadPacer(0.2, 300, clock)
    pacer.read(100, 100)
    clock.now = 1.0                               # 10 ms a record: 20 fit in an epoch
    assert pacer.size() == 0
    pacer.epoch_ended()
    assert pacer.size() == ReadPacer.LEAST
    pacer.read(100, 100)
    assert pacer.size() == 0


def test_a_backlog_read_through_a_real_broker_closes_each_epoch_on_time(broker):
    """The runtime's loop, with the work per record simulated on a fake clock: unpaced, the
    first read takes 2000 records (20 s of work, two intervals); paced, no epoch's reads
    take more than one interval to work off."""
    config = client_config(broker.bootstrap)
    ensure_topics(config, ["paced-backlog"], 1, 10)
    producer = Producer(config)
    for i in range(5000):
        producer.produce("paced-backlog", b"{}", str(i).encode())
    assert producer.flush(10) == 0

    clock, interval, cost = FakeClock(), 10.0, 0.01
    reader = _PartitionReader(config, "scans", "paced-backlog", 0, 0, 2000, True,
                              snapshot_interval_s=interval)
    reader.pacer = ReadPacer(interval, 2000, clock)
    epochs, epoch_started, records = [], 0.0, 0
    while not reader.finished:
        for batch in reader.next_batch():
            clock.now += len(batch.records) * cost
            records += len(batch.records)
        if clock.now - epoch_started >= interval:
            reader.snapshot()
            epochs.append(records)
            epoch_started, records = clock.now, 0
        clock.now += 0.001 if reader.awake_at is None else 0.1  # the runtime's own turn
    reader.close()
    epochs.append(records)
    assert sum(epochs) == 5000
    assert len(epochs) >= 5
    assert max(epochs) * cost <= interval
