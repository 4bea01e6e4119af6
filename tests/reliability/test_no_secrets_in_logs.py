"""No secret reaches the logs: the real daemon, the real API server and ``config show``.

The daemon runs as a process (``insar-monitor run --log-level DEBUG``) on the session's Kafka
broker with its alert store on the session's PostgreSQL server, every secret set the way an
operator sets it (in the environment): the database password (inside
``INSAR_MONITOR__DATABASE__URL``; the throw-away server trusts 127.0.0.1, so any password
is accepted), an API token, a Kafka SASL password (with PLAINTEXT, since the embedded broker
has no SASL: it is registered and warned about, never sent), and a webhook subscription
whose secret signs a real delivery and whose URL carries a password of its own. Two
inflating interferograms raise an alert, which is delivered. Then the API serves requests
with the right token, a near miss and a new subscription. Every secret, the delivery's
signature and its Basic credentials must be absent from everything the processes printed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from monitor.alerts.receiver import webhook_receiver
from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
from monitor.alerts.subscriptions import SubscriptionSpec
from monitor.config import load_config
from monitor.publishing import interferogram_message, outgoing, publish
from monitor.storage.alert_store import AlertStore
from pipelines.context import PipelineContext
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401
from tests.postgres_fixtures import pg_store_url, postgres_server  # noqa: F401
from tests.reliability.helpers import write_frame

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(500)

DB_PASSWORD = "db-SECRET-789"
API_TOKEN = "tok-SECRET-123-abcdefgh"
SASL_PASSWORD = "pw-SECRET-456"
HOOK_PASSWORD = "hook-SECRET-321"

SECTIONS = {
    "alerts": {
        "rules": [
            {
                "name": "unrest-leakvolcano",
                "kind": "unrest",
                "volcano_id": "leakvolcano",
                "place_name": "Leak volcano",
                # Default persistence 2 of 3: the alert needs both inflating interferograms.
                "levels": [{"severity": "Moderate", "raise_at": 0.5, "clear_at": 0.3}],
            }
        ],
        "cap": {"sender": "insar-monitor@test.example", "status": "Test"},
    },
    "webhooks": {"poll_interval_s": 0.2, "timeout_s": 5},
}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli.main", *args]


def _assert_no_secret(output: str, secrets: dict[str, str]) -> None:
    leaked = [name for name, value in secrets.items() if value in output]
    assert not leaked, f"{leaked} found in the output:\n{output[-3000:]}"


def _serve_api_and_poke(config_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run ``insar-monitor api``, send authorised, near-miss and creating requests; output."""
    proc = subprocess.Popen(
        _cli("api", "--config", str(config_path), "--port", "0", "--log-level", "DEBUG"),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first, f"the API did not start: {proc.communicate(timeout=30)[1][-3000:]}"
        url = json.loads(first)["api"]
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        assert httpx.get(f"{url}/subscriptions", headers=auth, timeout=10).status_code == 200
        near_miss = {"Authorization": f"Bearer {API_TOKEN}x"}
        assert httpx.get(f"{url}/deliveries", headers=near_miss, timeout=10).status_code == 401
        created = httpx.post(
            f"{url}/subscriptions", headers=auth, timeout=10,
            json={"name": "api-made", "url": "https://user:api-hook-pw@example.org/hook"},
        )
        assert created.status_code == 201, created.text
        new_secret = created.json()["secret"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return first + out + err, new_secret


def test_daemon_api_and_config_show_never_print_a_secret(
    tmp_path: Path, kafka_broker, pg_store_url: str  # noqa: F811
) -> None:
    assert "insar@" in pg_store_url
    db_url = pg_store_url.replace("insar@", f"insar:{DB_PASSWORD}@", 1)
    env = {
        **os.environ,
        "INSAR_MONITOR__DATABASE__URL": db_url,
        "INSAR_MONITOR__API__TOKENS": json.dumps([API_TOKEN]),
        "INSAR_MONITOR__KAFKA__SASL_PASSWORD": SASL_PASSWORD,
    }
    config_path = isolated_config_file(tmp_path, kafka_broker.bootstrap, sections=SECTIONS)
    config = load_config(config_path, environ=env)
    kafka = PipelineContext.from_config(config).kafka
    secrets = {"database password": DB_PASSWORD, "API token": API_TOKEN,
               "SASL password": SASL_PASSWORD, "webhook URL password": HOOK_PASSWORD}

    with webhook_receiver() as receiver:
        hook_url = receiver.url.replace("http://", f"http://hook:{HOOK_PASSWORD}@") + "/hook"
        store = AlertStore(config.database_url())
        try:
            _, webhook_secret = store.add_subscription(
                SubscriptionSpec("observatory", hook_url, hazards=("volcanic_unrest",))
            )
        finally:
            store.close()
        secrets["webhook secret"] = webhook_secret
        items = [
            outgoing(interferogram_message(
                write_frame(tmp_path / "products", k, seed=1 + 3 * k, start=date(2024, 3, 1)),
                frame_id="124D_L", volcano_id="leakvolcano",
            ))
            for k in range(2)
        ]
        list(publish(items, kafka, {"interferogram": config.topics.interferograms}))

        daemon = subprocess.run(
            _cli("run", "--config", str(config_path), "--until-idle", "--log-level", "DEBUG"),
            cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
        )
        assert daemon.returncode == 0, daemon.stderr[-3000:]
        deadline = time.monotonic() + 10
        while not receiver.received() and time.monotonic() < deadline:
            time.sleep(0.1)

    # The path under test really ran: one delivery, signed with the secret, Basic auth from
    # the URL's user info; and DEBUG logging really wrote plenty.
    (post,) = receiver.received()
    signature = post.headers[SIGNATURE_HEADER]
    assert verify_signature(webhook_secret, post.body, signature, now=time.time())
    basic = base64.b64encode(f"hook:{HOOK_PASSWORD}".encode()).decode()
    assert post.headers.get("Authorization") == f"Basic {basic}"
    daemon_output = daemon.stdout + daemon.stderr
    assert daemon_output.count("\n") > 50
    # httpx logs every request's URL: the hook's password is there, redacted.
    assert "hook:***@" in daemon_output
    _assert_no_secret(
        daemon_output,
        {**secrets, "delivery signature": signature.rpartition("v1=")[2],
         "Basic credentials": basic},
    )

    api_output, api_made_secret = _serve_api_and_poke(config_path, env)
    assert "invalid bearer token" in api_output
    _assert_no_secret(
        api_output,
        {**secrets, "API-made subscription secret": api_made_secret,
         "API-made URL password": "api-hook-pw"},
    )

    shown = subprocess.run(
        _cli("config", "show", "--config", str(config_path)),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    _assert_no_secret(shown.stdout + shown.stderr, secrets)
    assert "sasl_password: '**********'" in shown.stdout
    assert "url: '**********'" in shown.stdout
