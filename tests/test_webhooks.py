"""Webhook delivery (monitor.alerts.webhooks) against a real local HTTP server.

The receiver is a ``ThreadingHTTPServer`` on a free local port that records every request
and answers from a per-path script (status, body, headers, delay). The store is a SQLite
``AlertStore`` in the test's directory; a fake clock drives what is due and the retry times.
"""

from __future__ import annotations

import copy
import doctest
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from monitor.alerts import signing
from monitor.alerts.cap import validate_cap
from monitor.alerts.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    backoff_delay,
    sign,
    verify_signature,
)
from monitor.alerts.subscriptions import DeliveryFormat, SubscriptionSpec
from monitor.alerts.webhooks import USER_AGENT, WebhookDispatcher
from monitor.config import WebhooksConfig
from monitor.storage.alert_store import AlertBatch, AlertStore, DeliveryTask

EXAMPLE = Path(__file__).parent / "data" / "alert_event_example.json"
ALERT_ID = "unrest-etna.volcano-etna.e1"
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------- receiver
@dataclass
class Reply:
    """One scripted answer of the test server."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server in a thread: records requests, answers from per-path scripts."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends scripted delays early at teardown
        # Called with each request's path on arrival (in the server's thread).
        self.on_request: Callable[[str], None] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if receiver.on_request is not None:
                    receiver.on_request(self.path)
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    script = receiver.scripts.get(self.path)
                    reply = script.pop(0) if script else Reply()
                if reply.delay_s:
                    receiver.release.wait(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout): nothing to answer to

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def script(self, path: str, *replies: Reply | int) -> None:
        with self.lock:
            self.scripts[path] = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    rx.thread.start()
    yield rx
    rx.release.set()
    rx.server.shutdown()
    rx.server.server_close()


# ---------------------------------------------------------------------------- fixtures
class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config(**overrides: Any) -> WebhooksConfig:
    values: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_attempts": 5,
        "backoff_initial_s": 10.0,
        "backoff_max_s": 600.0,
        "concurrency": 4,
        "poll_interval_s": 0.05,
    }
    values.update(overrides)
    return WebhooksConfig(**values)


def revision(
    n: int, *, alert_id: str = ALERT_ID, state: str = "firing", hazard: str = "volcanic_unrest"
) -> dict[str, Any]:
    """Revision ``n`` of an alert, built from the contract's example."""
    event = copy.deepcopy(json.loads(EXAMPLE.read_text()))
    event.update(
        alert_event_id=f"{alert_id}#{n}",
        hazard=hazard,
        alert_id=alert_id,
        revision=n,
        transition="raised" if n == 1 else "updated",
        state=state,
        msg_type="Alert" if n == 1 else "Update",
        references=[f"{alert_id}#{k}" for k in range(1, n)],
        sent_at=(T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return event


def subscribe(
    store: AlertStore,
    receiver: Receiver,
    path: str,
    *,
    fmt: DeliveryFormat = "json",
    hazards: tuple[str, ...] = (),
) -> tuple[str, str]:
    spec = SubscriptionSpec(
        name=path.strip("/"), url=receiver.url(path), format=fmt, hazards=hazards
    )
    sub, secret = store.add_subscription(spec, now=T0)
    return sub.subscription_id, secret


def delivery(store: AlertStore, subscription_id: str, event_id: str) -> dict[str, Any]:
    rows = store.list_deliveries(subscription_id=subscription_id, alert_event_id=event_id)
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------------------- signatures
def test_sign_matches_an_independent_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    mac = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k3y", body, 1_700_000_000) == f"t=1700000000,v1={mac}"


def test_received_signature_verifies_only_with_the_right_secret_body_and_fresh_time(
    store: AlertStore, receiver: Receiver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sub_id, secret = subscribe(store, receiver, "/sig")
    event = revision(1)
    store.apply(AlertBatch(events=[event]), now=clock())
    caplog.set_level(logging.DEBUG)

    report = WebhookDispatcher(store, config(), clock=clock).deliver_due()

    assert report.delivered == 1
    (got,) = receiver.at("/sig")
    header = got.headers[SIGNATURE_HEADER]
    sent = clock().timestamp()
    assert header.startswith(f"t={int(sent)},")
    assert verify_signature(secret, got.body, header, now=sent + 5)
    assert not verify_signature(secret + "x", got.body, header, now=sent + 5)
    assert not verify_signature(secret, got.body.replace(b"Severe", b"Minor"), header, now=sent)
    assert not verify_signature(secret, got.body, header, now=sent + 301)
    assert not verify_signature(secret, got.body, header, now=sent - 301)
    assert not verify_signature(secret, got.body, "v1=deadbeef", now=sent)
    assert not verify_signature(secret, got.body, "garbage", now=sent)
    assert not verify_signature(secret, got.body, "t=²,v1=00", now=sent)
    # The other headers, and the body is the revision itself as compact sorted JSON.
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == USER_AGENT
    assert got.headers[DELIVERY_HEADER] == f"{event['alert_event_id']}>{sub_id}"
    assert got.headers[EVENT_HEADER] == event["alert_event_id"]
    assert got.headers[ATTEMPT_HEADER] == "1"
    assert json.loads(got.body) == event
    assert got.body == json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    # Neither the secret nor the signature reaches the log.
    for record in caplog.records:
        text = json.dumps(vars(record), default=str)
        assert secret not in text
        assert header.split("v1=")[1] not in text


def test_verify_signature_doctest_runs() -> None:
    result = doctest.testmod(signing, verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0


# ---------------------------------------------------------------------------- retries
def test_backoff_delay_is_full_jitter_under_a_doubling_capped_bound() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        bound = min(60.0, 2.0 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, initial_s=2, max_s=60, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > 0.8 * bound  # spread over the whole interval, not near 0
    assert backoff_delay(10_000, initial_s=2, max_s=60, rng=rng) <= 60


def test_server_errors_are_retried_with_jittered_backoff_until_delivered(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/flaky")
    receiver.script("/flaky", 500, Reply(503, b"maintenance"), 200)
    store.apply(AlertBatch(events=[revision(1)]), now=clock())
    dispatcher = WebhookDispatcher(store, config(), clock=clock, rng=random.Random(7))
    expected = random.Random(7)  # the same draws, made independently

    next_times = []
    for attempt in (1, 2):
        report = dispatcher.deliver_due()
        assert (report.delivered, report.retried, report.dead) == (0, 1, 0)
        row = delivery(store, sub_id, f"{ALERT_ID}#1")
        assert row["status"] == "pending" and row["attempts"] == attempt
        assert row["last_status"] == (500 if attempt == 1 else 503)
        next_at = datetime.fromisoformat(row["next_attempt_at"])
        delay = (next_at - clock()).total_seconds()
        bound = 10.0 * 2 ** (attempt - 1)
        assert 0.0 <= delay <= bound
        assert delay == pytest.approx(expected.uniform(0, bound), abs=1e-5)
        next_times.append(next_at)
        # Not due before its time: a round now sends nothing.
        assert dispatcher.deliver_due().delivered == 0
        assert len(receiver.at("/flaky")) == attempt
        clock.now = next_at

    report = dispatcher.deliver_due()
    assert report.delivered == 1
    row = delivery(store, sub_id, f"{ALERT_ID}#1")
    assert row["status"] == "delivered" and row["attempts"] == 3
    assert next_times[0] < next_times[1]
    assert [r.headers[ATTEMPT_HEADER] for r in receiver.at("/flaky")] == ["1", "2", "3"]
    assert row["last_error"] is None


def test_retry_after_on_429_postpones_the_retry(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/busy")
    receiver.script("/busy", Reply(429, b"slow down", {"Retry-After": "120"}))
    store.apply(AlertBatch(events=[revision(1)]), now=clock())

    WebhookDispatcher(store, config(backoff_initial_s=1), clock=clock).deliver_due()

    row = delivery(store, sub_id, f"{ALERT_ID}#1")
    assert row["status"] == "pending" and row["last_status"] == 429
    assert datetime.fromisoformat(row["next_attempt_at"]) == clock() + timedelta(seconds=120)
    assert row["last_error"].startswith("HTTP 429") and "slow down" in row["last_error"]


def test_dead_lettered_after_max_attempts_then_replayed_to_a_fixed_server(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/down")
    receiver.script("/down", Reply(500, b"x" * 5000), 502)
    store.apply(AlertBatch(events=[revision(1)]), now=clock())
    dispatcher = WebhookDispatcher(store, config(max_attempts=2), clock=clock)

    assert dispatcher.deliver_due().retried == 1
    clock.advance(3600)
    assert dispatcher.deliver_due().dead == 1
    row = delivery(store, sub_id, f"{ALERT_ID}#1")
    assert row["status"] == "dead" and row["attempts"] == 2 and row["next_attempt_at"] is None
    assert row["last_status"] == 502
    clock.advance(3600)
    assert dispatcher.deliver_due().delivered == 0  # dead stays dead

    assert store.replay_deliveries(now=clock()) == 1  # the script is used up: 200 from now on
    assert dispatcher.deliver_due().delivered == 1
    row = delivery(store, sub_id, f"{ALERT_ID}#1")
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert len(receiver.at("/down")) == 3


def test_error_text_stored_is_short(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/verbose")
    receiver.script("/verbose", Reply(500, b"y" * 100_000))
    store.apply(AlertBatch(events=[revision(1)]), now=clock())
    WebhookDispatcher(store, config(), clock=clock).deliver_due()
    error = delivery(store, sub_id, f"{ALERT_ID}#1")["last_error"]
    assert error.startswith("HTTP 500: yyy") and len(error) <= 200


def test_bad_request_is_dead_at_once(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/strict")
    receiver.script("/strict", Reply(400, b"schema mismatch"))
    store.apply(AlertBatch(events=[revision(1)]), now=clock())

    report = WebhookDispatcher(store, config(max_attempts=5), clock=clock).deliver_due()

    assert (report.dead, report.retried) == (1, 0)
    row = delivery(store, sub_id, f"{ALERT_ID}#1")
    assert row["status"] == "dead" and row["attempts"] == 1 and row["last_status"] == 400
    assert "schema mismatch" in row["last_error"]
    subscription = store.get_subscription(sub_id)
    assert subscription is not None and subscription.active


def test_gone_is_dead_and_deactivates_the_subscription(
    store: AlertStore, receiver: Receiver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sub_id, _ = subscribe(store, receiver, "/gone")
    receiver.script("/gone", 410)
    store.apply(AlertBatch(events=[revision(1), revision(2)]), now=clock())
    caplog.set_level(logging.INFO, logger="monitor.alerts.webhooks")
    dispatcher = WebhookDispatcher(store, config(), clock=clock)

    report = dispatcher.deliver_due()

    assert (report.dead, report.skipped) == (1, 1)
    assert delivery(store, sub_id, f"{ALERT_ID}#1")["status"] == "dead"
    subscription = store.get_subscription(sub_id)
    assert subscription is not None and not subscription.active
    assert any(r.levelno == logging.WARNING and "410" in r.getMessage() for r in caplog.records)
    clock.advance(3600)
    assert dispatcher.deliver_due().delivered == 0
    assert len(receiver.at("/gone")) == 1


def test_unreachable_endpoint_is_retried(
    store: AlertStore, clock: FakeClock, receiver: Receiver
) -> None:
    # A port nobody listens on: bind one, note it, close it.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    sub, _ = store.add_subscription(
        SubscriptionSpec(name="nobody", url=f"http://127.0.0.1:{port}/hook"), now=T0
    )
    store.apply(AlertBatch(events=[revision(1)]), now=clock())

    report = WebhookDispatcher(store, config(), clock=clock).deliver_due()

    assert report.retried == 1
    row = delivery(store, sub.subscription_id, f"{ALERT_ID}#1")
    assert row["status"] == "pending" and row["last_status"] is None
    assert "Connect" in row["last_error"]


# ---------------------------------------------------------------------------- isolation
def test_slow_subscriber_does_not_block_a_fast_one(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    slow_id, _ = subscribe(store, receiver, "/slow", hazards=("volcanic_unrest",))
    fast_id, _ = subscribe(store, receiver, "/fast", hazards=("ground_deformation",))
    receiver.script("/slow", *[Reply(200, delay_s=2.0) for _ in range(3)])
    slow_events = [revision(n) for n in (1, 2, 3)]
    fast_alert = "ground-deformation.ps-cluster-7.e1"
    fast_events = [revision(n, alert_id=fast_alert, hazard="ground_deformation") for n in (1, 2, 3)]
    # The slow subscriber's deliveries are queued first, so a dispatcher that served
    # subscribers one after the other would make the fast one wait behind it.
    store.apply(AlertBatch(events=slow_events), now=clock())
    clock.advance(1)
    store.apply(AlertBatch(events=fast_events), now=clock())
    # What the fast receiver sees of the slow delivery when each of its requests arrives.
    slow_attempts_seen: list[int] = []

    def watch(path: str) -> None:
        if path == "/fast":
            row = delivery(store, slow_id, f"{ALERT_ID}#1")
            slow_attempts_seen.append(row["attempts"])

    receiver.on_request = watch
    dispatcher = WebhookDispatcher(store, config(timeout_s=0.5, concurrency=2), clock=clock)

    started = time.monotonic()
    report = dispatcher.deliver_due()
    elapsed = time.monotonic() - started

    assert elapsed < 10  # generous: sending the slow ones in turn would take 3 × 2 s
    assert (report.delivered, report.retried, report.skipped) == (3, 1, 2)
    for event in fast_events:
        assert delivery(store, fast_id, event["alert_event_id"])["status"] == "delivered"
    # Served while the slow request was still pending (its outcome not yet recorded).
    assert slow_attempts_seen == [0, 0, 0]
    first = delivery(store, slow_id, f"{ALERT_ID}#1")
    assert first["status"] == "pending" and first["attempts"] == 1
    assert "Timeout" in first["last_error"]
    assert delivery(store, slow_id, f"{ALERT_ID}#2")["attempts"] == 0
    assert len(receiver.at("/slow")) == 1  # stopped after its first failure


def test_one_subscriber_gets_revisions_in_order_even_across_a_retry(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/ordered")
    receiver.script("/ordered", 500)
    for n in (1, 2, 3):  # one batch each, as the alert stage would write them
        store.apply(AlertBatch(events=[revision(n)]), now=clock())
        clock.advance(1)
    dispatcher = WebhookDispatcher(store, config(backoff_initial_s=60), clock=clock)

    first = dispatcher.deliver_due()
    assert (first.retried, first.skipped) == (1, 2)
    # #1 waits for its retry; #2 and #3 are due but must not overtake it.
    clock.now = datetime.fromisoformat(
        delivery(store, sub_id, f"{ALERT_ID}#1")["next_attempt_at"]
    ) - timedelta(seconds=0.5)
    assert dispatcher.deliver_due().delivered == 0
    clock.advance(1)
    assert dispatcher.deliver_due().delivered == 3

    received = [r.headers[EVENT_HEADER] for r in receiver.at("/ordered")]
    assert received == [f"{ALERT_ID}#1", f"{ALERT_ID}#1", f"{ALERT_ID}#2", f"{ALERT_ID}#3"]
    assert [json.loads(r.body)["revision"] for r in receiver.at("/ordered")[1:]] == [1, 2, 3]


def test_cap_subscriber_receives_valid_cap_xml(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    _, secret = subscribe(store, receiver, "/cap", fmt="cap")
    store.apply(AlertBatch(events=[revision(1), revision(2)]), now=clock())

    report = WebhookDispatcher(store, config(), clock=clock).deliver_due()

    assert report.delivered == 2
    got = receiver.at("/cap")
    assert [r.headers["Content-Type"] for r in got] == ["application/cap+xml"] * 2
    for r in got:
        validate_cap(r.body)
        assert verify_signature(
            secret, r.body, r.headers[SIGNATURE_HEADER], now=clock().timestamp()
        )
    assert b"<identifier>unrest-etna.volcano-etna.e1#2</identifier>" in got[1].body
    assert b"unrest-etna.volcano-etna.e1#1,2026-11-21T10:01:00+00:00" in got[1].body


def test_cap_revision_whose_reference_is_unknown_is_dead_lettered(
    store: AlertStore, receiver: Receiver, clock: FakeClock
) -> None:
    sub_id, _ = subscribe(store, receiver, "/cap", fmt="cap")
    store.apply(AlertBatch(events=[revision(2)]), now=clock())  # #1 never stored

    report = WebhookDispatcher(store, config(), clock=clock).deliver_due()

    assert report.dead == 1 and receiver.at("/cap") == []
    assert "sent time is unknown" in delivery(store, sub_id, f"{ALERT_ID}#2")["last_error"]


# ---------------------------------------------------------------------------- the worker
def test_started_worker_delivers_pending_deliveries_and_stops(
    store: AlertStore, receiver: Receiver
) -> None:
    sub_id, _ = subscribe(store, receiver, "/bg")
    store.apply(AlertBatch(events=[revision(1)]))
    dispatcher = WebhookDispatcher(store, config())

    thread = dispatcher.start()
    try:
        assert thread.name == "webhook-dispatcher" and thread.daemon
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if delivery(store, sub_id, f"{ALERT_ID}#1")["status"] == "delivered":
                break
            time.sleep(0.05)
    finally:
        dispatcher.stop(timeout=5)
    assert delivery(store, sub_id, f"{ALERT_ID}#1")["status"] == "delivered"
    assert not thread.is_alive()


class FlakyStore(AlertStore):
    """A store whose database is unavailable for the first ``failures`` rounds."""

    failures = 2

    def due_deliveries_in_order(
        self, *, now: datetime | None = None, limit: int = 200
    ) -> list[DeliveryTask]:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("SELECT ... secret ...", {"p": "hidden"}, OSError("db down"))
        return super().due_deliveries_in_order(now=now, limit=limit)


def test_worker_survives_failing_rounds_and_logs_them_without_traceback(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(f"sqlite:///{tmp_path / 'flaky.sqlite'}")
    try:
        sub_id, _ = subscribe(store, receiver, "/later")
        store.apply(AlertBatch(events=[revision(1)]))
        caplog.set_level(logging.INFO, logger="monitor.alerts.webhooks")
        dispatcher = WebhookDispatcher(store, config())
        dispatcher.start()
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not receiver.at("/later"):
                time.sleep(0.05)
        finally:
            dispatcher.stop(timeout=5)
        assert delivery(store, sub_id, f"{ALERT_ID}#1")["status"] == "delivered"
        failed = [r for r in caplog.records if "round failed" in r.getMessage()]
        assert len(failed) == 2
        for record in failed:
            assert record.levelno == logging.ERROR and record.exc_info is None
            assert record.error == "OperationalError: db down"  # type: ignore[attr-defined]
    finally:
        store.close()


def test_constructor_opens_no_connection(store: AlertStore) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the constructor must not touch the network or the store")

    dispatcher = WebhookDispatcher(
        store, config(), clock=refuse, rng=random.Random(0), transport=None
    )
    assert dispatcher.store is store
