"""Thin Kafka adapter for a daemon that processes Kafka in *bounded passes*.

A pass is planned with :func:`plan_pass`: for every partition of the input topics it spans from
the consumer group's committed offset up to the end offset seen when the pass starts. The
ranges are read with :func:`read_range` (typically inside a Beam pipeline that carries
:class:`KafkaRecord`), outputs are written (:class:`KafkaPublisher`), and only then are the
ranges committed with :func:`commit_offsets`. A crash anywhere before the commit replays the
pass, so processing is at-least-once; :func:`tail` lets the daemon rebuild a de-duplication
ledger from what it already published.

The adapter wraps kafka-python and is written against the oldest broker it must support,
Apache Kafka 0.9 (the embedded test broker, see :mod:`monitor.embedded_kafka`); pass
``api_version=(0, 9)`` for it, since kafka-python's version probe does not recognise it. Every
call opens and closes its own client: a pass makes few calls, and short-lived clients keep the
daemon free of connection state to recover after a broker restart.

Examples
--------
>>> settings = KafkaSettings("127.0.0.1:9092", group_id="unrest", api_version=(0, 9))
>>> ranges = plan_pass(settings, ["interferograms"])  # doctest: +SKIP
>>> for rng in ranges:  # doctest: +SKIP
...     for record in read_range(settings, rng):
...         handle(record)
>>> commit_offsets(settings, ranges)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import kafka
import kafka.errors
from kafka.structs import OffsetAndMetadata, TopicPartition

logger = logging.getLogger(__name__)

__all__ = [
    "KafkaIOError",
    "KafkaPublisher",
    "KafkaRecord",
    "KafkaSettings",
    "PartitionRange",
    "Secret",
    "commit_offsets",
    "committed_offsets",
    "consume_all",
    "end_offsets",
    "plan_pass",
    "read_range",
    "tail",
    "topic_partitions",
]

# Records handed out per poll: large, so that reading a range is not dominated by poll overhead.
_MAX_POLL_RECORDS = 10_000
# How long one poll waits for data before the no-progress clock is checked again.
_POLL_TIMEOUT_MS = 500


class KafkaIOError(RuntimeError):
    """A Kafka operation failed; the message says which and why."""


@dataclass(frozen=True)
class Secret:
    """A secret string that pickles (for Beam workers) but never shows in a repr or str."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def reveal(self) -> str:
        """The secret itself: hand it to the client library, never to a log line."""
        return self.value


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka, shared by every call of this module.

    Parameters
    ----------
    bootstrap_servers
        ``"host:port[,host:port]"``.
    group_id
        Consumer group whose committed offsets delimit passes.
    client_id
        Client id reported to the broker (shows up in broker logs and quotas).
    api_version
        Broker protocol version, e.g. ``(0, 9)``; ``None`` lets kafka-python probe it.
    max_message_bytes
        Largest message produced or fetched: the producer's ``max_request_size`` and the
        consumer's ``max_partition_fetch_bytes``. The broker's ``message.max.bytes`` must
        allow it too.
    request_timeout_ms
        Timeout of a single broker request.
    security_protocol
        ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    sasl_mechanism, sasl_username, sasl_password
        SASL login (``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``), used with the
        ``SASL_*`` protocols. A ``str`` password is wrapped in :class:`Secret`, so it never
        shows in a repr or a log line.
    ssl_cafile, ssl_certfile, ssl_keyfile, ssl_check_hostname
        TLS trust anchors (PEM), client certificate and key for mutual TLS, and whether the
        broker's certificate must name the host; used with ``SSL`` and ``SASL_SSL``.
    """

    bootstrap_servers: str
    group_id: str = "insar-monitor"
    client_id: str = "insar-monitor"
    api_version: tuple[int, ...] | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    request_timeout_ms: int = 30000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sasl_password, str):
            object.__setattr__(self, "sasl_password", Secret(self.sasl_password))

    @property
    def uses_sasl(self) -> bool:
        """Whether clients log in with SASL (``SASL_PLAINTEXT`` or ``SASL_SSL``)."""
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_ssl(self) -> bool:
        """Whether connections are TLS (``SSL`` or ``SASL_SSL``)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def java_security_properties(self) -> dict[str, str]:
        """The Java client's properties for these security settings (Beam's ``ReadFromKafka``).

        SASL becomes ``sasl.mechanism`` plus a ``sasl.jaas.config`` line (PLAIN or SCRAM login
        module); TLS files are PEM, which the Java client reads only from Kafka 2.7 on
        (``ssl.truststore.type=PEM``, ``ssl.keystore.type=PEM``). The Java PEM keystore wants
        the private key (PKCS#8) and the certificate in one file, so with a client certificate
        ``ssl_certfile`` and ``ssl_keyfile`` must name the same combined file.

        The properties travel inside the pipeline (the runner's job graph holds them), the
        SASL password included: see docs/security.md.

        Raises
        ------
        ValueError
            A client certificate and its key are in different files, or the SASL mechanism is
            not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
        """
        modules = {
            "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
            "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
            "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
        }

        def quoted(text: str) -> str:
            # A JAAS option value: double quotes, backslash and quote escaped.
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        props: dict[str, str] = {}
        if self.security_protocol == "PLAINTEXT":
            return props
        props["security.protocol"] = self.security_protocol
        if self.uses_sasl:
            module = modules.get(self.sasl_mechanism or "")
            if module is None:
                raise ValueError(
                    f"SASL mechanism {self.sasl_mechanism!r} is not one of {', '.join(modules)}"
                )
            password = self.sasl_password.reveal() if self.sasl_password is not None else ""
            props["sasl.mechanism"] = str(self.sasl_mechanism)
            props["sasl.jaas.config"] = (
                f"{module} required username={quoted(self.sasl_username or '')} "
                f"password={quoted(password)};"
            )
        if self.uses_ssl:
            if self.ssl_cafile:
                props["ssl.truststore.type"] = "PEM"
                props["ssl.truststore.location"] = self.ssl_cafile
            if not self.ssl_check_hostname:
                # An empty algorithm turns the Java client's host name verification off.
                props["ssl.endpoint.identification.algorithm"] = ""
            if self.ssl_certfile or self.ssl_keyfile:
                if self.ssl_certfile != self.ssl_keyfile:
                    raise ValueError(
                        "the Java Kafka client reads a PEM client certificate and its key from "
                        "one file: concatenate them (cat client.crt client.key > client.pem, "
                        "key in PKCS#8) and set kafka.ssl_certfile and kafka.ssl_keyfile to it"
                    )
                props["ssl.keystore.type"] = "PEM"
                props["ssl.keystore.location"] = str(self.ssl_certfile)
        return props


@dataclass(frozen=True)
class KafkaRecord:
    """One Kafka message, detached from kafka-python so that it pickles cheaply."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, order=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one topic partition: the unit of work of a pass."""

    topic: str
    partition: int
    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    @property
    def topic_partition(self) -> TopicPartition:
        """The kafka-python key of this range's partition."""
        return TopicPartition(self.topic, self.partition)


# ---------------------------------------------------------------------------- client helpers
def _common_config(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments every consumer and producer of this module shares.

    Holds the SASL password in clear text when SASL is on: hand it to kafka-python only.
    """
    servers = [server.strip() for server in settings.bootstrap_servers.split(",")]
    config: dict[str, Any] = {
        "bootstrap_servers": [server for server in servers if server],
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        # Short-lived clients: per-client metrics threads and sensors are pure overhead.
        "metrics_enabled": False,
    }
    # Passing api_version=None explicitly is equivalent to probing, but only set it when known
    # so that kafka-python's own default stays in charge otherwise.
    if settings.api_version is not None:
        config["api_version"] = tuple(settings.api_version)
    # PLAINTEXT is kafka-python's default: leave the dict as it always was then.
    if settings.security_protocol != "PLAINTEXT":
        config["security_protocol"] = settings.security_protocol
    if settings.uses_sasl:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        # kafka-python takes the SCRAM credentials from the sasl_plain_* keys as well.
        if settings.sasl_password is not None:
            config["sasl_plain_password"] = settings.sasl_password.reveal()
    if settings.uses_ssl:
        config["ssl_check_hostname"] = settings.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key) is not None:
                config[key] = str(getattr(settings, key))
    return config


def _consumer(settings: KafkaSettings, *, with_group: bool, **extra: Any) -> kafka.KafkaConsumer:
    """Create a consumer that never subscribes, never auto-commits and never creates topics."""
    config = _common_config(settings)
    config.update(
        group_id=settings.group_id if with_group else None,
        enable_auto_commit=False,
        # Fail loudly on a position outside the log instead of silently skipping data.
        auto_offset_reset="none",
        allow_auto_create_topics=False,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes, 50 * 1024 * 1024),
    )
    config.update(extra)
    return kafka.KafkaConsumer(**config)


@contextlib.contextmanager
def _kafka_errors(action: str) -> Iterator[None]:
    """Translate kafka-python errors into :class:`KafkaIOError` naming the failed action."""
    try:
        yield
    except KafkaIOError:
        raise
    except kafka.errors.KafkaError as exc:
        # kafka-python's messages sometimes already start with the class name.
        text = str(exc)
        name = type(exc).__name__
        detail = text if text.startswith(name) else f"{name}: {text}" if text else name
        raise KafkaIOError(f"{action}: {detail}") from exc


@contextlib.contextmanager
def _open_consumer(
    settings: KafkaSettings, action: str, *, with_group: bool, **extra: Any
) -> Iterator[kafka.KafkaConsumer]:
    with _kafka_errors(action):
        consumer = _consumer(settings, with_group=with_group, **extra)
        try:
            _bootstrap(consumer, settings.request_timeout_ms)
            yield consumer
        finally:
            consumer.close()


def _bootstrap(consumer: kafka.KafkaConsumer, timeout_ms: int) -> None:
    """Connect to the cluster, or raise ``KafkaTimeoutError`` after ``timeout_ms``."""
    # With api_version given, kafka-python connects lazily, and its metadata calls then wait
    # forever for an unreachable broker. KafkaConsumer.bootstrap(timeout_ms) does not help: it
    # joins the bootstrap already started in the background without a deadline and waits for
    # it unbounded. So wait for that bootstrap with our own deadline (kafka-python 3.0.12).
    net = getattr(consumer, "_net", None)
    manager = getattr(consumer, "_manager", None)
    if net is None or manager is None:
        consumer.bootstrap(timeout_ms=timeout_ms)
        return
    if not manager.bootstrapped:
        net.run(manager.wait_for, manager.bootstrap_async(refresh=False), timeout_ms)


def _all_topics(consumer: kafka.KafkaConsumer, timeout_ms: int) -> set[str]:
    """Refresh metadata of all topics, like ``consumer.topics()`` but with a deadline."""
    # KafkaConsumer.topics() waits without a timeout; this is its body with one, written
    # against kafka-python 3.0.12 internals (falls back to topics() if they change).
    cluster = getattr(consumer, "_cluster", None)
    net = getattr(consumer, "_net", None)
    manager = getattr(consumer, "_manager", None)
    if cluster is None or net is None or manager is None:
        return set(consumer.topics())
    stash = cluster.need_all_topic_metadata
    cluster.need_all_topic_metadata = True
    try:
        net.run(manager.wait_for, cluster.request_update(), timeout_ms)
    finally:
        cluster.need_all_topic_metadata = stash
    return set(cluster.topics())


def _existing_partitions(
    consumer: kafka.KafkaConsumer, topics: Iterable[str], *, with_leader: bool = False
) -> dict[str, list[int]]:
    # Asking the broker about one named topic makes a 0.9 broker with auto.create.topics.enable
    # create it; listing *all* topics never does. Hence list all, then read the cached metadata.
    existing = _all_topics(consumer, consumer.config["request_timeout_ms"])
    cluster = consumer._client.cluster  # no public accessor for partition leaders
    found: dict[str, list[int]] = {}
    for topic in dict.fromkeys(topics):
        if topic not in existing:
            continue
        if with_leader:
            partitions = cluster.available_partitions_for_topic(topic)
            if partitions != cluster.partitions_for_topic(topic):
                continue
        else:
            partitions = cluster.partitions_for_topic(topic)
        if partitions:
            found[topic] = sorted(partitions)
    return found


def _topic_partitions_of(
    consumer: kafka.KafkaConsumer, topics: Iterable[str]
) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition)
        for topic, partitions in _existing_partitions(consumer, topics).items()
        for partition in partitions
    ]


# ---------------------------------------------------------------------------- metadata
def topic_partitions(
    settings: KafkaSettings, topics: Iterable[str], *, with_leader: bool = False
) -> dict[str, list[int]]:
    """Partition ids of the given topics that exist; missing topics are left out (not created).

    Parameters
    ----------
    settings
        Connection settings.
    topics
        Topic names.
    with_leader
        Only report a topic once every one of its partitions has a leader (i.e. is usable).

    Returns
    -------
    dict[str, list[int]]
        Sorted partition ids per existing topic.
    """
    with _open_consumer(settings, "listing topic partitions", with_group=False) as consumer:
        return _existing_partitions(consumer, topics, with_leader=with_leader)


def end_offsets(settings: KafkaSettings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """End offset (offset of the next message) of every partition of the existing topics.

    Parameters
    ----------
    settings
        Connection settings.
    topics
        Topic names; missing topics are skipped.

    Returns
    -------
    dict[tuple[str, int], int]
        ``{(topic, partition): end_offset}``.
    """
    with _open_consumer(settings, "fetching end offsets", with_group=False) as consumer:
        tps = _topic_partitions_of(consumer, topics)
        ends = consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): int(ends[tp]) for tp in tps}


def committed_offsets(
    settings: KafkaSettings, topics: Iterable[str]
) -> dict[tuple[str, int], int | None]:
    """The group's committed offset of every partition of the existing topics.

    Parameters
    ----------
    settings
        Connection settings; ``settings.group_id`` is the group.
    topics
        Topic names; missing topics are skipped.

    Returns
    -------
    dict[tuple[str, int], int | None]
        ``{(topic, partition): offset}``, ``None`` where the group never committed.
    """
    with _open_consumer(settings, "fetching committed offsets", with_group=True) as consumer:
        tps = _topic_partitions_of(consumer, topics)
        timeout_ms = settings.request_timeout_ms
        return {
            (tp.topic, tp.partition): consumer.committed(tp, timeout_ms=timeout_ms) for tp in tps
        }


# ---------------------------------------------------------------------------- passes
def plan_pass(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    max_records_per_partition: int | None = None,
) -> list[PartitionRange]:
    """Plan one bounded pass: what each partition holds beyond the group's committed offset.

    Parameters
    ----------
    settings
        Connection settings; ``settings.group_id`` is the group.
    topics
        Input topics. Topics that do not exist yet are skipped (and not created).
    max_records_per_partition
        Cap of each range, to bound the work of one pass; the rest is left to the next pass.

    Returns
    -------
    list[PartitionRange]
        Sorted, non-empty ranges. ``start`` is the committed offset, or the beginning offset
        when the group has none; ``end`` is the end offset now (capped).

    Raises
    ------
    KafkaIOError
        If Kafka cannot be queried.
    """
    if max_records_per_partition is not None and max_records_per_partition < 1:
        raise ValueError("max_records_per_partition must be at least 1")
    with _open_consumer(settings, "planning a pass", with_group=True) as consumer:
        tps = _topic_partitions_of(consumer, topics)
        if not tps:
            return []
        beginnings = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        ranges: list[PartitionRange] = []
        for tp in tps:
            begin, end = int(beginnings[tp]), int(ends[tp])
            committed = consumer.committed(tp, timeout_ms=settings.request_timeout_ms)
            start = begin if committed is None else int(committed)
            if start < begin:
                # An unattended daemon must not stall on records nobody can read any more:
                # say loudly how many were lost and go on from the log start (what Kafka's
                # auto.offset.reset=earliest does).
                logger.error(
                    "retention deleted records before they were processed; skipping them",
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": start,
                        "log_start": begin,
                        "records_lost": begin - start,
                    },
                )
                start = begin
            elif start > end:
                logger.error(
                    "committed offset is beyond the log end (topic recreated?); "
                    "reading the partition from its start",
                    extra={
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": start,
                        "log_end": end,
                    },
                )
                start = begin
            if max_records_per_partition is not None:
                end = min(end, start + max_records_per_partition)
            if end > start:
                ranges.append(PartitionRange(tp.topic, tp.partition, start, end))
    return sorted(ranges)


def _check_readable(consumer: kafka.KafkaConsumer, ranges: Sequence[PartitionRange]) -> None:
    tps = [rng.topic_partition for rng in ranges]
    beginnings = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    for rng in ranges:
        tp = rng.topic_partition
        if rng.start < beginnings[tp]:
            raise KafkaIOError(
                f"{rng} can no longer be read: the log of {tp.topic}[{tp.partition}] now starts "
                f"at offset {beginnings[tp]} (retention deleted offsets {rng.start}.."
                f"{beginnings[tp] - 1})"
            )
        if rng.end > ends[tp]:
            raise KafkaIOError(
                f"{rng} reaches beyond the end of {tp.topic}[{tp.partition}] at offset {ends[tp]}"
                " (was the topic deleted and recreated?)"
            )


def _read_ranges(
    consumer: kafka.KafkaConsumer, ranges: Sequence[PartitionRange], timeout_s: float
) -> Iterator[KafkaRecord]:
    """Yield every record of the (non-overlapping) ranges, in offset order per partition."""
    pending = {rng.topic_partition: rng for rng in ranges if len(rng) > 0}
    if not pending:
        return
    consumer.assign(list(pending))
    _check_readable(consumer, list(pending.values()))
    for tp, rng in pending.items():
        consumer.seek(tp, rng.start)
    deadline = time.monotonic() + timeout_s
    while pending:
        try:
            batches = consumer.poll(timeout_ms=_POLL_TIMEOUT_MS, max_records=_MAX_POLL_RECORDS)
        except kafka.errors.OffsetOutOfRangeError as exc:
            raise KafkaIOError(
                f"reading {sorted(pending.values())}: offsets out of range, retention deleted "
                f"them while they were being read ({exc})"
            ) from exc
        progressed = False
        for tp, messages in batches.items():
            rng = pending.get(tp)
            if rng is None:
                continue
            for message in messages:
                if message.offset < rng.start:
                    continue
                if message.offset >= rng.end:
                    break
                progressed = True
                yield KafkaRecord(
                    tp.topic, tp.partition, message.offset, message.key, message.value or b""
                )
        # The position, not the last offset seen, decides completion: offsets can have gaps
        # (compaction), so the last offsets of a range need not exist as records.
        for tp in list(pending):
            position = consumer.position(tp)
            if position is not None and position >= pending[tp].end:
                consumer.pause(tp)
                del pending[tp]
                progressed = True
        if progressed:
            deadline = time.monotonic() + timeout_s
        elif time.monotonic() > deadline:
            raise KafkaIOError(
                f"reading {sorted(pending.values())}: no progress for {timeout_s:.0f} s"
            )


def read_range(
    settings: KafkaSettings, rng: PartitionRange, *, timeout_s: float = 30.0
) -> Iterator[KafkaRecord]:
    """Yield the records of one partition range, in offset order.

    The partition is assigned directly (no group membership, no commit): reading has no side
    effect on Kafka, so a failed pass can simply be retried.

    Parameters
    ----------
    settings
        Connection settings.
    rng
        The range to read; every record with an offset in ``[rng.start, rng.end)``.
    timeout_s
        Give up when this long passes without any progress.

    Yields
    ------
    KafkaRecord
        The records, in offset order.

    Raises
    ------
    KafkaIOError
        If part of the range was deleted by retention, lies beyond the partition's end, or no
        progress is made within ``timeout_s``.
    """
    if len(rng) == 0:
        return
    with _open_consumer(
        settings, f"reading {rng}", with_group=False, max_poll_records=_MAX_POLL_RECORDS
    ) as consumer:
        yield from _read_ranges(consumer, [rng], timeout_s)


def commit_offsets(settings: KafkaSettings, ranges: Iterable[PartitionRange]) -> None:
    """Commit, synchronously, ``offset = range.end`` of each range for the group.

    Call it only after the outputs of the ranges are durably written. When several ranges
    cover one partition, the highest end is committed.

    Parameters
    ----------
    settings
        Connection settings; ``settings.group_id`` is the group.
    ranges
        Processed ranges.

    Raises
    ------
    KafkaIOError
        If the commit is rejected or fails.
    """
    offsets: dict[TopicPartition, int] = {}
    for rng in ranges:
        tp = rng.topic_partition
        offsets[tp] = max(offsets.get(tp, rng.end), rng.end)
    if not offsets:
        return
    # A consumer with a group id but no subscription commits as a "simple consumer"
    # (generation -1), which the broker accepts while no group member is subscribed.
    with _open_consumer(settings, "committing offsets", with_group=True) as consumer:
        consumer.commit(
            {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
            timeout_ms=settings.request_timeout_ms,
        )
    logger.debug(
        "committed offsets",
        extra={
            "group_id": settings.group_id,
            "offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()},
        },
    )


def tail(settings: KafkaSettings, topic: str, n_per_partition: int) -> list[KafkaRecord]:
    """The last ``n_per_partition`` records of every partition of a topic.

    Used after a crash to rebuild a de-duplication ledger from what was already published.

    Parameters
    ----------
    settings
        Connection settings.
    topic
        Topic name; a missing topic yields ``[]`` (and is not created).
    n_per_partition
        How many records to take from the end of each partition.

    Returns
    -------
    list[KafkaRecord]
        Sorted by partition, then offset.
    """
    if n_per_partition <= 0:
        return []
    return _read_topic(
        settings,
        topic,
        f"reading the tail of {topic}",
        last_n=n_per_partition,
        timeout_s=settings.request_timeout_ms / 1000,
    )


def consume_all(
    settings: KafkaSettings, topic: str, *, timeout_s: float = 10.0
) -> list[KafkaRecord]:
    """Everything currently in a topic, from the beginning, without a consumer group.

    Meant for tests and the demo's printout, not for bulk processing.

    Parameters
    ----------
    settings
        Connection settings.
    topic
        Topic name; a missing topic yields ``[]`` (and is not created).
    timeout_s
        Give up when this long passes without any progress.

    Returns
    -------
    list[KafkaRecord]
        The records up to the end offsets seen at the call, sorted by partition, then offset.
    """
    return _read_topic(settings, topic, f"reading {topic}", last_n=None, timeout_s=timeout_s)


def _read_topic(
    settings: KafkaSettings, topic: str, action: str, *, last_n: int | None, timeout_s: float
) -> list[KafkaRecord]:
    """Every partition's records up to its end offset now: all of them, or the last ``last_n``.

    Sorted by partition, then offset; ``[]`` for a missing topic (which is not created).
    """
    with _open_consumer(
        settings, action, with_group=False, max_poll_records=_MAX_POLL_RECORDS
    ) as consumer:
        tps = _topic_partitions_of(consumer, [topic])
        if not tps:
            return []
        beginnings = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        ranges = []
        for tp in tps:
            begin, end = int(beginnings[tp]), int(ends[tp])
            start = begin if last_n is None else max(begin, end - last_n)
            ranges.append(PartitionRange(tp.topic, tp.partition, start, end))
        records = list(_read_ranges(consumer, ranges, timeout_s=timeout_s))
    return sorted(records, key=lambda r: (r.partition, r.offset))


# ---------------------------------------------------------------------------- producing
def _as_key(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return key.encode("utf-8")


class KafkaPublisher:
    """Publishes messages and waits for the broker's acknowledgement.

    Messages with the same key always land in the same partition (kafka-python's murmur2
    partitioner, the same as the Java client's), which keeps per-key order.

    Parameters
    ----------
    settings
        Connection settings.
    linger_ms
        How long the producer waits to fill a batch; small, since most callers wait for acks.
    retries
        How often a failed send is retried before it is reported.

    Examples
    --------
    >>> with KafkaPublisher(settings) as publisher:  # doctest: +SKIP
    ...     partition, offset = publisher.publish("alerts", b"{...}", key="124D_05291_081406")
    """

    def __init__(self, settings: KafkaSettings, *, linger_ms: int = 5, retries: int = 5) -> None:
        self.settings = settings
        config = _common_config(settings)
        config.update(
            acks="all",
            retries=retries,
            max_request_size=settings.max_message_bytes,
            linger_ms=linger_ms,
            # Bounds how long send() waits for metadata of an unreachable broker.
            max_block_ms=settings.request_timeout_ms,
            # One request in flight per broker: retries then cannot reorder messages, which
            # idempotence would otherwise guarantee but 0.9 brokers do not support.
            max_in_flight_requests_per_connection=1,
        )
        if settings.api_version is not None and tuple(settings.api_version) < (0, 11):
            # Opt out explicitly; kafka-python would otherwise warn on every producer.
            config["enable_idempotence"] = False
        with _kafka_errors("connecting the producer"):
            self._producer = kafka.KafkaProducer(**config)
        self._closed = False
        self._timeout_s = settings.request_timeout_ms / 1000 + 30.0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish(self, topic: str, value: bytes, key: bytes | str | None = None) -> tuple[int, int]:
        """Send one message and wait until the broker acknowledged it.

        Parameters
        ----------
        topic
            Destination topic (auto-created by brokers configured to do so).
        value
            Payload.
        key
            Partitioning key; ``str`` is encoded as UTF-8.

        Returns
        -------
        tuple[int, int]
            ``(partition, offset)`` of the stored message.

        Raises
        ------
        KafkaIOError
            If the message is rejected (e.g. too large) or not acknowledged in time.
        """
        with _kafka_errors(f"publishing to {topic}"):
            future = self._producer.send(topic, value=value, key=_as_key(key))
            metadata = future.get(timeout=self._timeout_s)
        return int(metadata.partition), int(metadata.offset)

    def publish_many(
        self, topic: str, items: Iterable[tuple[bytes | str | None, bytes]]
    ) -> list[tuple[int, int]]:
        """Send all ``(key, value)`` items, then wait for all acknowledgements.

        Parameters
        ----------
        topic
            Destination topic.
        items
            ``(key, value)`` pairs.

        Returns
        -------
        list[tuple[int, int]]
            ``(partition, offset)`` per item, in input order.

        Raises
        ------
        KafkaIOError
            If any message failed; the others may still have been stored.
        """
        with _kafka_errors(f"publishing to {topic}"):
            futures = [
                self._producer.send(topic, value=value, key=_as_key(key)) for key, value in items
            ]
            self._producer.flush(timeout=self._timeout_s)
            results = []
            for future in futures:
                metadata = future.get(timeout=self._timeout_s)
                results.append((int(metadata.partition), int(metadata.offset)))
        return results

    def flush(self) -> None:
        """Wait until every message sent so far was acknowledged or failed."""
        with _kafka_errors("flushing the producer"):
            self._producer.flush(timeout=self._timeout_s)

    def close(self) -> None:
        """Flush and close the producer; idempotent."""
        if self._closed:
            return
        self._closed = True
        with _kafka_errors("closing the producer"):
            self._producer.close(timeout=self._timeout_s)
