"""End to end: products on Kafka -> detections -> alert on the alerts topic, a valid CAP file,
a signed webhook delivery, a row in PostgreSQL — and exactly one of each across crashes.

The daemon runs as a real process (``insar-monitor run``) on the session's Kafka broker, with
the alert store on the session's PostgreSQL server. It is killed twice at the worst moments:
after the detections are committed but before any alert exists, and after the alert is
durable but before the input offsets are committed. A final replay of the whole detection
topic must still leave one alert revision, one CAP file and one delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from monitor.alerts.cap import validate_cap
from monitor.alerts.receiver import webhook_receiver
from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
from monitor.alerts.stage import FAULT_EXIT_AFTER_ALERTS
from monitor.alerts.subscriptions import SubscriptionSpec
from monitor.config import load_config
from monitor.daemon import FAULT_EXIT_BEFORE_ALERTS
from monitor.publishing import interferogram_message, outgoing, publish
from monitor.storage.alert_store import AlertStore
from pipelines.context import PipelineContext
from pipelines.kafka_io import PartitionRange, commit_offsets, consume_all, topic_partitions
from pipelines.messages import validate
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401
from tests.postgres_fixtures import pg_store_url, postgres_server  # noqa: F401
from tests.reliability.helpers import write_frame

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(400)

ALERT_SECTIONS = {
    "alerts": {
        "rules": [
            {
                "name": "unrest-testvolcano",
                "kind": "unrest",
                "volcano_id": "testvolcano",
                "place_name": "Test volcano",
                # Default persistence 2 of 3: the alert needs both inflating interferograms.
                "levels": [{"severity": "Moderate", "raise_at": 0.5, "clear_at": 0.3}],
            }
        ],
        "cap": {"sender": "insar-monitor@test.example", "status": "Test"},
    },
    "webhooks": {"poll_interval_s": 0.2, "timeout_s": 5},
}


def _run_daemon(config_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli.main", "run", "--config", str(config_path),
         "--until-idle", "--log-level", "INFO"],
        cwd=REPO, env={**os.environ, **env_extra}, capture_output=True, text=True, timeout=300,
    )


def _read(settings, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in consume_all(settings, topic)]


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_products_become_one_alert_one_cap_and_one_signed_delivery_across_crashes(
    tmp_path, kafka_broker, pg_store_url  # noqa: F811
):
    sections = {**ALERT_SECTIONS, "database": {"url": pg_store_url}}
    config_path = isolated_config_file(tmp_path, kafka_broker.bootstrap, sections=sections)
    config = load_config(config_path, environ={})
    kafka = PipelineContext.from_config(config).kafka

    with webhook_receiver() as receiver:
        store = AlertStore(config.database_url())
        area = {"type": "Polygon", "coordinates": [[[13, 40], [15, 40], [15, 42], [13, 42],
                                                     [13, 40]]]}
        subscriber, secret = store.add_subscription(
            SubscriptionSpec("observatory", f"{receiver.url}/hook", area=area,
                             hazards=("volcanic_unrest",), min_severity="Moderate")
        )
        elsewhere, _ = store.add_subscription(
            SubscriptionSpec("far away", f"{receiver.url}/far",
                             area={"type": "Point", "coordinates": [-70.0, -30.0]})
        )

        items = [
            outgoing(interferogram_message(
                write_frame(tmp_path / "products", k, seed=1 + 3 * k, start=date(2024, 3, 1)),
                frame_id="124D_T", volcano_id="testvolcano",
            ))
            for k in range(2)
        ]
        list(publish(items, kafka, {"interferogram": config.topics.interferograms}))

        # 1. Killed after the detections are committed, before the alert stage.
        crashed = _run_daemon(config_path, {FAULT_EXIT_BEFORE_ALERTS: "1"})
        assert crashed.returncode == 72, crashed.stderr[-3000:]
        detections = _read(kafka, config.topics.detections)
        assert [d["frame"]["unrest"] for d in detections] == [True, True]
        assert _read(kafka, config.topics.alerts) == []
        assert receiver.received() == []

        # 2. Killed after the alert is in the database and on the broker, before the
        #    alert stage commits its input offsets.
        crashed = _run_daemon(config_path, {FAULT_EXIT_AFTER_ALERTS: "1"})
        assert crashed.returncode == 71, crashed.stderr[-3000:]

        # 3. A clean run: replays the uncommitted detections, delivers what is queued.
        clean = _run_daemon(config_path, {})
        assert clean.returncode == 0, clean.stderr[-3000:]
        _wait_for(lambda: len(receiver.received()) >= 1)

        # 4. Replay everything: rewind the alert stage's offsets to the start of the
        #    detections topic and run again. Nothing new may come out.
        alerts_group = type(kafka)(**{**kafka.__dict__, "group_id": f"{kafka.group_id}-alerts"})
        commit_offsets(
            alerts_group,
            [PartitionRange(config.topics.detections, p, 0, 0)
             for p in topic_partitions(kafka, config.topics.detections)],
        )
        again = _run_daemon(config_path, {})
        assert again.returncode == 0, again.stderr[-3000:]
        time.sleep(0.5)

        revisions = _read(kafka, config.topics.alerts)
        assert len(revisions) == 1, [r["alert_event_id"] for r in revisions]
        (alert,) = revisions
        validate("alert.v1", alert)
        assert alert["alert_id"] == "unrest-testvolcano.volcano:testvolcano.e1"
        assert alert["transition"] == "raised" and alert["msg_type"] == "Alert"
        assert alert["severity"] == "Moderate" and alert["labels"]["volcano_id"] == "testvolcano"
        by_time = sorted(detections, key=lambda d: d["event_time"])
        assert [e["id"] for e in alert["evidence"]] == [d["detection_id"] for d in by_time]

        # Exactly one delivery, to the subscriber whose area covers the frame, signed.
        posts = receiver.received()
        assert [p.path for p in posts] == ["/hook"]
        post = posts[0]
        assert verify_signature(secret, post.body, post.headers[SIGNATURE_HEADER],
                                now=time.time())
        assert not verify_signature("not-the-secret", post.body,
                                    post.headers[SIGNATURE_HEADER], now=time.time())
        assert json.loads(post.body)["alert_event_id"] == alert["alert_event_id"]
        (delivery,) = store.list_deliveries()
        assert delivery["status"] == "delivered"
        assert delivery["subscription_id"] == subscriber.subscription_id != elsewhere

        # The database row and the CAP 1.2 file.
        row = store.get_alert(alert["alert_id"])
        assert row is not None and row["state"] == "firing"
        assert store.count_events() == 1
        cap_files = list(config.storage.cap_path().glob("*.xml"))
        assert len(cap_files) == 1
        xml = cap_files[0].read_bytes()
        validate_cap(xml)
        assert b"<msgType>Alert</msgType>" in xml and b"<status>Test</status>" in xml
        store.close()
