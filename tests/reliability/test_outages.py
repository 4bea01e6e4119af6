"""Outages of what the daemon depends on: the broker, a webhook subscriber, disk space.

Each test breaks one real dependency while the daemon runs, then repairs it, and checks
that the daemon stayed alive, said what was wrong, and lost nothing. They take minutes
(the outages are real time), so they are marked slow: ``make reliability`` runs them.
``INSAR_RELIABILITY_OUTAGE_S`` shortens the outages for a quick look (default 30 s).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.embedded_kafka import EmbeddedKafka
from monitor.publishing import publish
from pipelines.context import PipelineContext
from pipelines.kafka_io import plan_pass
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401
from tests.reliability.helpers import frame_product, ps_product, read_json, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
OUTAGE_S = float(os.environ.get("INSAR_RELIABILITY_OUTAGE_S", "30"))


def _start(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    thread.start()
    assert wait_until(lambda: daemon.health is not None, 120), "daemon never served /readyz"
    return thread


def _stop(daemon: Daemon, thread: threading.Thread) -> None:
    daemon.request_stop()
    thread.join(timeout=180)
    assert not thread.is_alive(), "the daemon did not stop within 180 s of SIGTERM-equivalent"


def test_broker_outage_the_daemon_waits_reconnects_and_catches_up(tmp_path: Path) -> None:
    with EmbeddedKafka(tmp_path / "kafka", num_partitions=2) as broker:
        config = load_config(isolated_config_file(tmp_path, broker.bootstrap), environ={})
        ctx = PipelineContext.from_config(config)
        topics = {"interferogram": config.topics.interferograms,
                  "ps_update": config.topics.ps_updates}
        list(publish([frame_product(tmp_path / "p", k) for k in range(2)], ctx.kafka, topics))
        daemon = Daemon(config)
        thread = _start(daemon)
        try:
            assert wait_until(lambda: len(read_json(ctx.kafka, ctx.detection_topic)) == 2, 180)

            broker.stop_broker()
            outage_start = time.monotonic()
            # While the broker is gone the daemon stays up, reports not ready, and says why.
            assert wait_until(lambda: daemon.stats.failed_passes >= 1, OUTAGE_S + 60)
            ready = httpx.get(f"{daemon.health.url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["checks"]["broker"].startswith("broker unreachable")
            assert thread.is_alive()
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_start)))
            broker.start_broker()

            # Work published after the outage is processed, and nothing before it is redone.
            list(publish([frame_product(tmp_path / "p", k) for k in range(2, 4)],
                         ctx.kafka, topics))
            assert wait_until(
                lambda: len(read_json(ctx.kafka, ctx.detection_topic)) >= 4, 300, every_s=2
            ), "the daemon did not catch up within 5 min of the broker's return"
            assert wait_until(
                lambda: httpx.get(f"{daemon.health.url}/readyz", timeout=30).status_code == 200,
                120,
            )
        finally:
            _stop(daemon, thread)
        detections = read_json(ctx.kafka, ctx.detection_topic)
        ids = Counter(d["detection_id"] for d in detections)
        assert len(ids) == 4 and max(ids.values()) == 1, ids
        assert plan_pass(ctx.kafka, ctx.input_topics) == []
        assert read_json(ctx.kafka, ctx.dlq_topic) == []


def test_webhook_subscriber_down_for_minutes_loses_nothing_and_slows_no_one(
    tmp_path: Path,
) -> None:
    from monitor.alerts.receiver import WebhookReceiver
    from monitor.alerts.subscriptions import SubscriptionSpec
    from monitor.alerts.webhooks import WebhookDispatcher
    from monitor.config import WebhooksConfig
    from monitor.storage.alert_store import AlertBatch, AlertStore

    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    healthy = WebhookReceiver()
    healthy.start()
    flaky = WebhookReceiver()
    flaky_port = int(flaky.url.rsplit(":", 1)[1])
    flaky.stop()  # the subscriber is down: its port refuses connections
    store.add_subscription(SubscriptionSpec("healthy", f"{healthy.url}/a"))
    store.add_subscription(SubscriptionSpec("flaky", f"http://127.0.0.1:{flaky_port}/b"))
    config = WebhooksConfig(timeout_s=2, max_attempts=50, backoff_initial_s=0.5,
                            backoff_max_s=5, poll_interval_s=0.2)
    dispatcher = WebhookDispatcher(store, config)
    dispatcher.start()
    revisions = [_revision(r) for r in range(1, 6)]
    try:
        for r in revisions:
            store.apply(AlertBatch(states=[], events=[r]))
            time.sleep(0.5)
        # The healthy subscriber gets everything while the other one is down.
        assert wait_until(lambda: len(healthy.received()) == 5, 15, every_s=0.2)
        time.sleep(max(0.0, OUTAGE_S - 2.5))
        assert store.delivery_counts().get("dead", 0) == 0
        restarted = WebhookReceiver(port=flaky_port)
        restarted.start()
        try:
            assert wait_until(lambda: len(restarted.received()) == 5, 60, every_s=0.2), (
                store.list_deliveries(subscription_id=None)
            )
            order = [json.loads(p.body)["revision"] for p in restarted.received()]
            assert order == [1, 2, 3, 4, 5]
        finally:
            restarted.stop()
    finally:
        dispatcher.stop()
        healthy.stop()
    assert store.delivery_counts() == {"delivered": 10}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 kB tmpfs for the PS store (needs root and mount rights; else the test skips)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_for_the_ps_store_is_a_clear_error_and_no_corruption(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture,
    kafka_broker,  # noqa: F811
) -> None:
    config = load_config(isolated_config_file(tmp_path, kafka_broker.bootstrap), environ={})
    config.storage.ps_store = small_disk / "ps-store"
    config.hotspots.enabled = False  # only the PS store fills the disk
    ctx = PipelineContext.from_config(config)
    topics = {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}
    # Each update adds 60 epochs of 2000 points (~480 kB raw): more than the 256 kB disk.
    updates = [ps_product(tmp_path / "p", k, n_points=2000, n_epochs=60) for k in range(3)]
    list(publish(updates, ctx.kafka, topics))

    daemon = Daemon(config)
    with caplog.at_level(logging.ERROR):
        thread = _start(daemon)
        try:
            assert wait_until(lambda: daemon.stats.failed_passes >= 1, 240), (
                "the disk never filled: enlarge the updates"
            )
        finally:
            _stop(daemon, thread)
    errors = [r.getMessage() + " " + str(getattr(r, "error", "")) for r in caplog.records]
    assert any("No space left on device" in e for e in errors), errors
    assert any("disk full" in e for e in errors), errors
    assert plan_pass(ctx.kafka, ctx.input_topics), "a failed pass must not commit its offsets"

    # More space, a restart: every update is processed, the store reads back whole.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    stats = Daemon(config).run(until_idle=True)
    assert stats.failed_passes == 0
    assert plan_pass(ctx.kafka, ctx.input_topics) == []
    from pipelines.ps_store import PSStore

    series = PSStore(config.storage.ps_store_path()).read_series("egms-rel", "T1")
    assert series is not None and series.displacement_mm.shape == (2000, 180)
    assert np.isfinite(series.displacement_mm).mean() > 0.99
    detections = read_json(ctx.kafka, ctx.detection_topic)
    assert sorted(d["update_id"] for d in detections) == [f"u{k}" for k in range(3)]



def _revision(n: int) -> dict:
    """Revision ``n`` of one alert, from the contract's example."""
    import copy

    example = json.loads((Path(__file__).parents[1] / "data" / "alert_event_example.json")
                         .read_text())
    event = copy.deepcopy(example)
    alert_id = "unrest.volcano:etna.e1"
    event.update(
        alert_event_id=f"{alert_id}#{n}", alert_id=alert_id, revision=n,
        transition="raised" if n == 1 else "updated", state="firing",
        msg_type="Alert" if n == 1 else "Update",
        references=[f"{alert_id}#{k}" for k in range(1, n)],
        sent_at=f"2026-11-21T10:{n:02d}:00Z",
    )
    return event
