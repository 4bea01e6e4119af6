"""Pytest fixtures around one real, embedded Kafka 0.9 broker per test session.

``tests/conftest.py`` makes them available to every test; modules may also import them
explicitly::

    from tests.kafka_fixtures import kafka_broker, kafka_settings  # noqa: F401

Importing a fixture into a module gives pytest a second fixture definition with its own
cache, so the broker itself is a process-wide singleton: however many definitions exist, one
broker is started (lazily, by the first test that needs it) and stopped at the end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.embedded_kafka import EmbeddedKafka
from pipelines.kafka_io import KafkaSettings

_lock = threading.Lock()
_broker: EmbeddedKafka | None = None


def unique_topic(prefix: str = "test") -> str:
    """A topic name no other test uses (``[a-zA-Z0-9-]`` only, as Kafka allows)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _shared_broker(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedKafka:
    global _broker
    with _lock:
        if _broker is None or not _broker.running:
            workdir = tmp_path_factory.mktemp("embedded-kafka")
            _broker = EmbeddedKafka(workdir, num_partitions=3).start()
        return _broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    """The session's embedded broker: ZooKeeper + Kafka 0.9.0.1, 3 partitions per new topic."""
    broker = _shared_broker(tmp_path_factory)
    yield broker
    broker.stop()  # idempotent: every definition of this fixture may call it


@pytest.fixture
def kafka_settings(kafka_broker: EmbeddedKafka) -> KafkaSettings:
    """Settings for the session broker with a consumer group of this test's own."""
    return KafkaSettings(
        kafka_broker.bootstrap,
        group_id=f"test-group-{uuid.uuid4().hex[:12]}",
        client_id="insar-monitor-tests",
        api_version=(0, 9),
        request_timeout_ms=15000,
    )


def isolated_config_file(
    tmp_path: Path,
    bootstrap: str,
    *,
    sections: dict[str, object] | None = None,
    **models: object,
) -> Path:
    """A daemon config of its own on the shared broker: fresh topics, group and state dir.

    ``models`` overrides keys of the ``models`` section (e.g. ``backend="grpc"``);
    ``sections`` adds whole sections (e.g. ``alerts``, ``database``, ``webhooks``).
    """
    import yaml

    tag = uuid.uuid4().hex[:8]
    data: dict[str, object] = {
        "kafka": {"bootstrap_servers": bootstrap, "api_version": "0.9", "group_id": f"g-{tag}"},
        "topics": {
            "interferograms": f"ifg-{tag}",
            "ps_updates": f"ps-{tag}",
            "detections": f"det-{tag}",
            "dlq": f"dlq-{tag}",
            "hotspots": f"hot-{tag}",
            "alerts": f"alerts-{tag}",
        },
        "pipeline": {"poll_interval_s": 0.2},
        "metrics": {"port": 0},  # any free port: tests run beside each other and the demo
        "storage": {"state_dir": str(tmp_path / "state")},
    }
    if models:
        data["models"] = models
    data.update(sections or {})
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
