"""kill -9 the daemon at random moments, 20 times, while products keep arriving.

The daemon runs as a real process on the session's Kafka broker. A producer publishes a
steady stream (interferograms of three frames, PS updates of two tiles, a few bad
messages). The test waits until each daemon is ready (its /readyz answers 200), lets it
work for a random 0-4 s — inside a pass, between passes, while it publishes — and SIGKILLs
it. After every kill it checks that the committed offsets are never ahead of the outputs:
every input below a committed offset has its detection or dead letter on the broker. At the
end a clean run drains the rest, and every input has exactly one output; no detection, dead
letter or alert revision appears twice.

``INSAR_RELIABILITY_KILLS`` sets the number of kills (default 20); ``make reliability``
runs it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import httpx
import pytest

from monitor.config import load_config
from monitor.publishing import Outgoing
from pipelines.context import PipelineContext
from pipelines.kafka_io import KafkaPublisher, committed_offsets, consume_all, plan_pass
from tests.environment import free_port
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401
from tests.reliability.helpers import frame_product, ps_product, read_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("INSAR_RELIABILITY_KILLS", "20"))


def _stream(root: Path) -> list[Outgoing]:
    """36 interferograms (3 frames, alternately inflating and quiet), 8 PS updates, 2 bad."""
    items: list[Outgoing] = []
    for k in range(12):
        for f, frame_id in enumerate(("124D_KILL_A", "124D_KILL_B", "022A_KILL_C")):
            volume = 8e6 if (k + f) % 2 == 0 else 0.0
            items.append(frame_product(root / "ifg", k, frame_id=frame_id, volume=volume,
                                       volcano_id=f"volcano-{f}"))
    for k in range(4):
        for tile in ("T1", "T2"):
            items.append(ps_product(root / "ps", k, n_points=150, n_epochs=20, tile_id=tile))
    items.insert(5, Outgoing("interferogram", "junk", b"{not json", date(2024, 1, 1), "junk"))
    items.insert(20, Outgoing("ps_update", "junk", b'{"schema": "ps_update.v1"}',
                              date(2024, 1, 1), "bad"))
    return items


def _outputs_by_source(settings, topics: list[str]) -> Counter:
    sources: Counter = Counter()
    for topic in topics:
        for payload in read_json(settings, topic):
            src = payload["source"]
            sources[(src["topic"], src["partition"], src["offset"])] += 1
    return sources


def _check_offsets_not_ahead_of_outputs(ctx: PipelineContext, kill: int) -> None:
    outputs = _outputs_by_source(ctx.kafka, [ctx.detection_topic, ctx.dlq_topic])
    for (topic, partition), committed in committed_offsets(ctx.kafka, ctx.input_topics).items():
        for offset in range(committed or 0):
            assert outputs[(topic, partition, offset)] >= 1, (
                f"after kill {kill}: {topic}[{partition}] committed at {committed} but offset "
                f"{offset} has no detection or dead letter on the broker"
            )


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_kill_nine_twenty_times_under_a_steady_stream_loses_and_duplicates_nothing(
    tmp_path: Path, kafka_broker  # noqa: F811
) -> None:
    port = free_port()
    rules = {"rules": [{"name": "unrest", "kind": "unrest",
                        "levels": [{"severity": "Moderate", "raise_at": 0.5, "clear_at": 0.3}],
                        "persistence": {"n": 1, "m": 1}, "clear_after": 1}]}
    config_path = isolated_config_file(
        tmp_path, kafka_broker.bootstrap,
        sections={"metrics": {"port": port}, "alerts": rules},
    )
    config = load_config(config_path, environ={})
    ctx = PipelineContext.from_config(config)
    topics = {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}
    stream = _stream(tmp_path / "products")
    published: list[tuple[str, int, int]] = []

    def produce() -> None:
        with KafkaPublisher(ctx.kafka) as publisher:
            for item in stream:
                topic = topics[item.topic_kind]
                partition, offset = publisher.publish(topic, item.value, key=item.key)
                published.append((topic, partition, offset))
                time.sleep(4.0)

    producer = threading.Thread(target=produce, name="steady-stream", daemon=True)
    producer.start()
    rng = random.Random(20261121)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ready_url = f"http://127.0.0.1:{port}/readyz"
    logs = tmp_path / "daemon-logs"
    logs.mkdir()
    for kill in range(1, KILLS + 1):
        with (logs / f"run-{kill:02d}.log").open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.cli.main", "run", "--config", str(config_path),
                 "--log-level", "INFO"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 180
            while not _ready(ready_url):
                assert proc.poll() is None, (
                    f"daemon died on its own before kill {kill}: "
                    f"{(logs / f'run-{kill:02d}.log').read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "daemon not ready within 180 s"
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 4.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        _check_offsets_not_ahead_of_outputs(ctx, kill)

    producer.join(timeout=600)
    assert not producer.is_alive()
    final = subprocess.run(
        [sys.executable, "-m", "monitor.cli.main", "run", "--config", str(config_path),
         "--until-idle", "--log-level", "INFO"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert final.returncode == 0, final.stderr[-3000:]

    assert plan_pass(ctx.kafka, ctx.input_topics) == [], "everything is committed at the end"
    outputs = _outputs_by_source(ctx.kafka, [ctx.detection_topic, ctx.dlq_topic])
    assert len(published) == len(stream)
    missing = [p for p in published if outputs[p] == 0]
    twice = {p: n for p, n in outputs.items() if n > 1}
    assert not missing, f"inputs without any output: {missing}"
    assert not twice, f"inputs with more than one output: {twice}"
    detection_ids = Counter(d["detection_id"] for d in read_json(ctx.kafka, ctx.detection_topic))
    assert max(detection_ids.values()) == 1
    dead = read_json(ctx.kafka, ctx.dlq_topic)
    assert sorted(d["reason"] for d in dead) == ["not_json", "schema_error"]
    revisions = Counter(
        r["alert_event_id"] for r in read_json(ctx.kafka, config.topics.alerts)
    )
    assert revisions and max(revisions.values()) == 1, revisions
    # The broker holds nothing that the daemon did not account for.
    assert len(consume_all(ctx.kafka, config.topics.interferograms)) == 37
