"""pipelines.kafka_io against a real Kafka 0.9.0.1 broker (the session's embedded one).

The daemon's contract is exercised end to end: a pass covers exactly what lies between the
group's committed offsets and the end offsets at planning time, reading has no side effects,
and only a commit moves the next pass forward.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace

import pytest

from monitor.embedded_kafka import EmbeddedKafka
from pipelines.kafka_io import (
    KafkaIOError,
    KafkaPublisher,
    KafkaRecord,
    KafkaSettings,
    PartitionRange,
    commit_offsets,
    committed_offsets,
    consume_all,
    end_offsets,
    plan_pass,
    read_range,
    tail,
    topic_partitions,
)
from tests.kafka_fixtures import unique_topic


def _publish_keyed(
    settings: KafkaSettings, topic: str, n: int, *, first: int = 0
) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """Publish ``n`` keyed records; return ``{(partition, offset): (key, value)}``."""
    items = [(f"key-{i % 17}".encode(), f"value-{i}".encode()) for i in range(first, first + n)]
    with KafkaPublisher(settings) as publisher:
        positions = publisher.publish_many(topic, items)
    return dict(zip(positions, items, strict=True))


@contextlib.contextmanager
def _silent_port() -> Iterator[int]:
    """A listening loopback port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def _read_pass(settings: KafkaSettings, ranges: list[PartitionRange]) -> list[KafkaRecord]:
    return [record for rng in ranges for record in read_range(settings, rng)]


# ------------------------------------------------------------------------- pure data classes
def test_partition_range_len_and_order() -> None:
    ranges = [
        PartitionRange("b", 0, 0, 3),
        PartitionRange("a", 2, 5, 5),
        PartitionRange("a", 1, 7, 9),
    ]
    assert [len(r) for r in ranges] == [3, 0, 2]
    assert sorted(ranges)[0] == PartitionRange("a", 1, 7, 9)


def test_kafka_record_pickles() -> None:
    record = KafkaRecord("t", 1, 42, b"k", b"\x00" * 10)
    assert pickle.loads(pickle.dumps(record)) == record


# ------------------------------------------------------------------------- passes
def test_pass_reads_everything_once_then_only_new_records(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    published = _publish_keyed(kafka_settings, topic, 300)
    assert {partition for partition, _ in published} == {0, 1, 2}

    ranges = plan_pass(kafka_settings, [topic])
    assert ranges == sorted(ranges)
    assert [r.partition for r in ranges] == [0, 1, 2]
    assert all(r.start == 0 for r in ranges)
    assert sum(len(r) for r in ranges) == 300

    records = _read_pass(kafka_settings, ranges)
    assert {(r.partition, r.offset): (r.key, r.value) for r in records} == published
    for rng in ranges:
        offsets = [r.offset for r in records if r.partition == rng.partition]
        assert offsets == list(range(rng.start, rng.end))  # in order, no gaps, no extras

    # Reading has no side effect: the same pass can be planned again until it is committed.
    assert plan_pass(kafka_settings, [topic]) == ranges
    commit_offsets(kafka_settings, ranges)
    assert plan_pass(kafka_settings, [topic]) == []

    newer = _publish_keyed(kafka_settings, topic, 30, first=300)
    next_ranges = plan_pass(kafka_settings, [topic])
    previous_end = {rng.partition: rng.end for rng in ranges}
    assert all(r.start == previous_end[r.partition] for r in next_ranges)
    next_records = _read_pass(kafka_settings, next_ranges)
    assert {(r.partition, r.offset): (r.key, r.value) for r in next_records} == newer


def test_pass_is_bounded_by_end_offsets_at_planning(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    _publish_keyed(kafka_settings, topic, 30)
    ranges = plan_pass(kafka_settings, [topic])
    late = _publish_keyed(kafka_settings, topic, 30, first=30)  # arrives during the pass
    records = _read_pass(kafka_settings, ranges)
    assert len(records) == 30
    assert not {(r.partition, r.offset) for r in records} & set(late)


def test_max_records_per_partition_caps_each_range(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    published = _publish_keyed(kafka_settings, topic, 90)
    per_partition = Counter(partition for partition, _ in published)

    seen: list[KafkaRecord] = []
    for _ in range(20):
        ranges = plan_pass(kafka_settings, [topic], max_records_per_partition=10)
        if not ranges:
            break
        assert all(len(r) <= 10 for r in ranges)
        seen += _read_pass(kafka_settings, ranges)
        commit_offsets(kafka_settings, ranges)
    assert Counter(r.partition for r in seen) == per_partition
    assert {(r.partition, r.offset) for r in seen} == set(published)
    with pytest.raises(ValueError):
        plan_pass(kafka_settings, [topic], max_records_per_partition=0)


def test_commit_of_a_subset_moves_only_those_partitions(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    _publish_keyed(kafka_settings, topic, 60)
    ranges = plan_pass(kafka_settings, [topic])
    ends = end_offsets(kafka_settings, [topic])
    assert committed_offsets(kafka_settings, [topic]) == dict.fromkeys(ends)

    first, *others = ranges
    partial = replace(others[0], end=others[0].start + 2)  # part of a range only
    commit_offsets(kafka_settings, [first, partial])

    committed = committed_offsets(kafka_settings, [topic])
    assert committed[(topic, first.partition)] == first.end
    assert committed[(topic, partial.partition)] == partial.end
    assert committed[(topic, others[1].partition)] is None

    replanned = plan_pass(kafka_settings, [topic])
    assert [r.partition for r in replanned] == [partial.partition, others[1].partition]
    assert replanned[0] == replace(others[0], start=partial.end)
    assert replanned[1] == others[1]


def test_commit_takes_the_highest_end_per_partition(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    _publish_keyed(kafka_settings, topic, 30)
    rng = plan_pass(kafka_settings, [topic])[0]
    commit_offsets(kafka_settings, [rng, replace(rng, end=rng.start + 1)])
    assert committed_offsets(kafka_settings, [topic])[(topic, rng.partition)] == rng.end


def test_read_range_reads_exactly_a_sub_range(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    with KafkaPublisher(kafka_settings) as publisher:
        positions = publisher.publish_many(topic, [("same-key", b"%d" % i) for i in range(40)])
    partition = positions[0][0]
    records = list(read_range(kafka_settings, PartitionRange(topic, partition, 5, 15)))
    assert [r.offset for r in records] == list(range(5, 15))
    assert [r.value for r in records] == [b"%d" % i for i in range(5, 15)]
    assert list(read_range(kafka_settings, PartitionRange(topic, partition, 7, 7))) == []


def test_read_range_beyond_the_end_is_an_error(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    with KafkaPublisher(kafka_settings) as publisher:
        partition, offset = publisher.publish(topic, b"only", key="k")
    with pytest.raises(KafkaIOError, match="beyond the end"):
        list(read_range(kafka_settings, PartitionRange(topic, partition, 0, offset + 5)))


# ------------------------------------------------------------------------- missing topics
def test_missing_topics_are_skipped_and_not_created(kafka_settings: KafkaSettings) -> None:
    missing = unique_topic("missing")
    present = unique_topic()
    _publish_keyed(kafka_settings, present, 5)

    assert [r.topic for r in plan_pass(kafka_settings, [missing, present])] == [present] * len(
        plan_pass(kafka_settings, [present])
    )
    assert plan_pass(kafka_settings, [missing]) == []
    assert tail(kafka_settings, missing, 3) == []
    assert consume_all(kafka_settings, missing) == []
    assert committed_offsets(kafka_settings, [missing]) == {}
    assert end_offsets(kafka_settings, [missing]) == {}
    # A 0.9 broker auto-creates any topic a client asks metadata for by name: make sure none
    # of the calls above did.
    time.sleep(0.5)
    assert missing not in topic_partitions(kafka_settings, [missing, present])


# ------------------------------------------------------------------------- tail / consume_all
def test_tail_returns_the_last_records_of_each_partition(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    published = _publish_keyed(kafka_settings, topic, 60)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, offset in sorted(published):
        by_partition[partition].append(offset)

    last = tail(kafka_settings, topic, 4)
    expected = [(p, o) for p in sorted(by_partition) for o in by_partition[p][-4:]]
    assert [(r.partition, r.offset) for r in last] == expected
    assert all((r.key, r.value) == published[(r.partition, r.offset)] for r in last)

    everything = tail(kafka_settings, topic, 1000)
    assert len(everything) == 60
    assert consume_all(kafka_settings, topic) == everything
    assert tail(kafka_settings, topic, 0) == []


# ------------------------------------------------------------------------- producing
def test_large_message_round_trips(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic("large")
    payload = os.urandom(2 * 1024 * 1024)
    with KafkaPublisher(kafka_settings) as publisher:
        partition, offset = publisher.publish(topic, payload, key=b"big")
    records = list(read_range(kafka_settings, PartitionRange(topic, partition, offset, offset + 1)))
    assert len(records) == 1
    assert records[0].value == payload
    assert records[0].key == b"big"


def test_oversized_message_is_rejected_clearly(kafka_settings: KafkaSettings) -> None:
    small = replace(kafka_settings, max_message_bytes=64 * 1024)
    with KafkaPublisher(small) as publisher, pytest.raises(KafkaIOError, match="publishing"):
        publisher.publish(unique_topic(), os.urandom(128 * 1024))


def test_same_key_always_lands_in_the_same_partition(kafka_settings: KafkaSettings) -> None:
    topic = unique_topic()
    keys = [f"124D_05291_0814{i:02d}" for i in range(12)]
    with KafkaPublisher(kafka_settings) as publisher:
        first = {key: publisher.publish(topic, b"a", key=key)[0] for key in keys}
        batch = publisher.publish_many(topic, [(key.encode(), b"b") for key in keys])
    with KafkaPublisher(kafka_settings) as publisher:  # a fresh producer hashes the same way
        again = {key: publisher.publish(topic, b"c", key=key)[0] for key in keys}
    assert first == again
    assert [partition for partition, _ in batch] == [first[key] for key in keys]
    assert len(set(first.values())) > 1  # the keys do spread over partitions


def test_unreachable_broker_fails_fast() -> None:
    with _silent_port() as port:
        settings = KafkaSettings(f"127.0.0.1:{port}", api_version=(0, 9), request_timeout_ms=2000)
        started = time.monotonic()
        with pytest.raises(KafkaIOError, match="planning a pass"):
            plan_pass(settings, ["anything"])
        assert time.monotonic() - started < 10


# ------------------------------------------------------------------------- retention
@pytest.mark.slow
def test_range_deleted_by_retention_is_reported(
    kafka_broker: EmbeddedKafka, kafka_settings: KafkaSettings
) -> None:
    # Kafka 0.9 runs its first retention check 30 s after the broker started: slow.
    topic = unique_topic("retention")
    kafka_broker.create_topics([topic], 1, configs={"retention.ms": 500, "segment.ms": 100})
    with KafkaPublisher(kafka_settings) as publisher:
        for i in range(4):
            publisher.publish(topic, b"%d" % i)
            time.sleep(0.15)  # each record in its own segment
    (rng,) = plan_pass(kafka_settings, [topic])
    # A group that never committed starts at the log start: its pass is empty once all is gone.
    fresh_group = replace(kafka_settings, group_id=unique_topic("fresh-group"))
    deadline = time.monotonic() + 90
    while plan_pass(fresh_group, [topic]) and time.monotonic() < deadline:
        time.sleep(1)
    with pytest.raises(KafkaIOError, match="retention deleted"):
        list(read_range(kafka_settings, rng))
    # A group whose committed offset fell below the log start skips the lost records (with
    # an error in the log) instead of stalling on them forever.
    commit_offsets(kafka_settings, [PartitionRange(topic, 0, 0, 1)])
    assert plan_pass(kafka_settings, [topic]) == []
