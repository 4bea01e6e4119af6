"""Webhook delivery of alert revisions: signed HTTP POSTs, retried with backoff, dead-lettered.

The alert store queues one delivery per (revision, subscriber) in the same transaction that
records the revision. :class:`WebhookDispatcher` is the worker that drains that queue: each
round it fetches the due deliveries, POSTs each one to its subscriber's URL and records the
outcome in the store.

* **Signed.** Every request carries ``X-Insar-Signature: t=<unix time>,v1=<hex>``, an
  HMAC-SHA256 with the subscription's secret over ``"<t>." + body`` (the scheme Stripe
  uses). The timestamp is inside the MAC so a captured request cannot be replayed later;
  subscribers check it with :func:`monitor.alerts.signing.verify_signature`.
* **At least once, in order.** A delivery is marked delivered only after a 2xx answer; a
  receiver de-duplicates by ``X-Insar-Delivery``. One subscriber's deliveries are sent one
  after the other in queue order; once one fails, the rest wait until it has gone through
  (or has been dead-lettered), so revisions of an alert never overtake each other.
* **Retried, then dead-lettered.** Network errors, timeouts, 408, 429 and 5xx are retried
  with exponential backoff and full jitter (a ``Retry-After`` on 429/503 is honoured) until
  ``max_attempts``; other 4xx answers are dead-lettered at once, and 410 Gone also
  deactivates the subscription. Dead deliveries can be replayed from the store.
* **Isolated.** Subscribers are served concurrently (``concurrency`` at a time) and every
  request has a deadline, so a slow or dead endpoint never holds up the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from monitor.alerts.cap import CapSettings, cap_xml
from monitor.alerts.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    backoff_delay,
    sign,
)
from monitor.config import WebhooksConfig
from monitor.storage.alert_store import DeliveryTask, utcnow

__all__ = [
    "USER_AGENT",
    "DispatchReport",
    "WebhookDispatcher",
    "render_body",
]

log = logging.getLogger(__name__)

USER_AGENT = "insar-monitor/0.1 (+webhooks)"

JSON_CONTENT_TYPE = "application/json"
CAP_CONTENT_TYPE = "application/cap+xml"

# Answers worth trying again: the request was fine, the receiver was not (yet) able to take it.
_RETRY_STATUSES = frozenset({408, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_ERROR_TEXT_CHARS = 200
# Only the start of an error answer is stored; a receiver that streams megabytes of HTML
# back must not cost us the memory.
_MAX_EXCERPT_BYTES = 1024
# How many due deliveries one round takes from the store.
_BATCH_LIMIT = 200
# Frozen, so one shared default is safe.
_DEFAULT_CAP_SETTINGS = CapSettings()


# ---------------------------------------------------------------------------- bodies
def render_body(
    task: DeliveryTask,
    *,
    cap_settings: CapSettings,
    sent_times: Callable[[list[str]], dict[str, str]],
) -> tuple[bytes, str]:
    """The request body of a delivery and its content type.

    Parameters
    ----------
    task : DeliveryTask
        The delivery; ``task.format`` picks the body.
    cap_settings : CapSettings
        Sender and labels of CAP documents.
    sent_times : callable
        ``alert_event_ids -> {alert_event_id: sent_at}`` (e.g.
        :meth:`monitor.storage.alert_store.AlertStore.sent_times`), for the CAP
        ``<references>`` of a revision that refers to earlier ones.

    Returns
    -------
    body : bytes
        ``json``: the ``alert.v1`` revision as compact JSON with sorted keys (stable bytes
        for the same revision); ``cap``: its CAP 1.2 document.
    content_type : str
        ``application/json`` or ``application/cap+xml``.

    Raises
    ------
    ValueError
        Unknown format, a referenced revision whose sent time is unknown, or a revision
        that cannot be expressed as CAP.
    """
    if task.format == "json":
        body = json.dumps(task.event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return body.encode("utf-8"), JSON_CONTENT_TYPE
    if task.format == "cap":
        wanted = [str(ref) for ref in task.event.get("references") or []]
        known = sent_times(wanted) if wanted else {}
        missing = [ref for ref in wanted if ref not in known]
        if missing:
            raise ValueError(
                f"{task.alert_event_id} refers to {missing}, whose sent time is unknown"
            )
        references = [(ref, known[ref]) for ref in wanted]
        xml = cap_xml(task.event, settings=cap_settings, references=references)
        return xml, CAP_CONTENT_TYPE
    raise ValueError(f"unknown delivery format {task.format!r}")


# ---------------------------------------------------------------------------- dispatcher
@dataclass
class DispatchReport:
    """What one delivery round did.

    Attributes
    ----------
    delivered : int
        Deliveries answered with a 2xx.
    retried : int
        Failed deliveries scheduled for another attempt.
    dead : int
        Deliveries dead-lettered (permanent failure or attempts exhausted).
    skipped : int
        Due deliveries left for a later round because an earlier delivery to the same
        subscriber failed in this round (or the worker was stopping).
    seconds : float
        Wall-clock duration of the round.
    """

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    seconds: float = 0.0


class DeliveryStore(Protocol):
    """The part of :class:`monitor.storage.alert_store.AlertStore` the dispatcher uses."""

    def due_deliveries_in_order(
        self, *, now: datetime | None = ..., limit: int = ...
    ) -> list[DeliveryTask]: ...

    def mark_delivered(
        self, delivery_id: str, *, status_code: int, at: datetime | None = ...
    ) -> None: ...

    def mark_failed(
        self,
        delivery_id: str,
        *,
        error: str,
        status_code: int | None,
        next_attempt_at: datetime | None,
    ) -> None: ...

    def deactivate_subscription(self, subscription_id: str) -> bool: ...

    def sent_times(self, event_ids: Sequence[str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class _Outcome:
    """The answer to one POST, reduced to what decides the delivery's fate."""

    status_code: int | None  # None: no HTTP answer (network error, timeout)
    error: str | None  # None on success
    retry_after_s: float | None = None


class WebhookDispatcher:
    """Sends due deliveries to subscribers' webhooks and records the outcomes.

    Parameters
    ----------
    store : AlertStore
        Where deliveries are queued and their outcomes written.
    config : WebhooksConfig
        Timeout, attempts, backoff, concurrency and polling interval.
    cap_settings : CapSettings, optional
        Sender and labels of CAP bodies.
    clock : callable, optional
        Current time (aware UTC datetime); decides what is due, the signed timestamp and
        the retry times. Tests pass a fake one.
    rng : random.Random, optional
        Jitter source of the backoff; a fresh unseeded one by default.
    transport : httpx.AsyncBaseTransport, optional
        HTTP transport of the client (tests, proxies); httpx's default when None.

    Notes
    -----
    :meth:`deliver_due` runs its own event loop (``asyncio.run``); call it from a plain
    thread, not from inside a running loop. The constructor opens no connection.
    """

    def __init__(
        self,
        store: DeliveryStore,
        config: WebhooksConfig,
        *,
        cap_settings: CapSettings = _DEFAULT_CAP_SETTINGS,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_report: Callable[[DispatchReport], None] | None = None,
    ) -> None:
        self.store = store
        # Called with every round's report (the daemon counts deliveries for Prometheus).
        self.on_report = on_report
        self.config = config
        self.cap_settings = cap_settings
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.transport = transport
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        # The stop event of the running loop, looked at between deliveries so that stopping
        # does not wait for a subscriber's whole backlog.
        self._halt: threading.Event | None = None

    # ------------------------------------------------------------------ one round
    def deliver_due(self) -> DispatchReport:
        """Send every due delivery once (one round) and record the outcomes.

        Returns
        -------
        DispatchReport
            Counts of the round.

        Raises
        ------
        Exception
            Whatever the store raised (e.g. the database is unavailable); outcomes already
            written stay written, and a delivery sent but not recorded is sent again later
            (receivers de-duplicate by ``X-Insar-Delivery``).
        """
        started = time.monotonic()
        report = asyncio.run(self._deliver_due())
        report.seconds = time.monotonic() - started
        if self.on_report is not None:
            self.on_report(report)
        if report.delivered or report.retried or report.dead:
            log.info(
                "webhook round done",
                extra={
                    "delivered": report.delivered,
                    "retried": report.retried,
                    "dead": report.dead,
                    "skipped": report.skipped,
                    "seconds": round(report.seconds, 3),
                },
            )
        return report

    async def _deliver_due(self) -> DispatchReport:
        report = DispatchReport()
        tasks = await asyncio.to_thread(
            self.store.due_deliveries_in_order, now=self.clock(), limit=_BATCH_LIMIT
        )
        if not tasks:
            return report
        by_subscriber: dict[str, list[DeliveryTask]] = {}
        for task in tasks:  # dicts keep insertion order: queue order within each subscriber
            by_subscriber.setdefault(task.subscription_id, []).append(task)
        semaphore = asyncio.Semaphore(self.config.concurrency)
        # No redirects: a signed alert must not be forwarded to wherever a 3xx points.
        async with httpx.AsyncClient(
            timeout=self.config.timeout_s,
            transport=self.transport,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            results = await asyncio.gather(
                *(
                    self._serve_subscriber(client, semaphore, queue, report)
                    for queue in by_subscriber.values()
                ),
                return_exceptions=True,
            )
        # Every subscriber's worker has finished (and recorded what it could) before a
        # failure of one of them is passed on.
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return report

    async def _serve_subscriber(
        self,
        client: httpx.AsyncClient,
        semaphore: asyncio.Semaphore,
        queue: list[DeliveryTask],
        report: DispatchReport,
    ) -> None:
        async with semaphore:
            for position, task in enumerate(queue):
                if self._halt is not None and self._halt.is_set():
                    report.skipped += len(queue) - position
                    return
                if not await self._deliver_one(client, task, report):
                    # Keep the order and leave a failing endpoint alone until a later round.
                    report.skipped += len(queue) - position - 1
                    return

    async def _deliver_one(
        self, client: httpx.AsyncClient, task: DeliveryTask, report: DispatchReport
    ) -> bool:
        """Send one delivery and record the outcome; True when it was delivered."""
        attempt = task.attempts + 1
        try:
            body, content_type = await asyncio.to_thread(
                render_body, task, cap_settings=self.cap_settings, sent_times=self._sent_times
            )
        except (ValueError, KeyError, TypeError) as e:
            # The revision itself cannot be rendered: no retry will change that.
            await self._dead(task, attempt, _Outcome(None, _short(f"cannot render: {e}")))
            report.dead += 1
            return False

        sent_at = self.clock()
        headers = {
            "Content-Type": content_type,
            SIGNATURE_HEADER: sign(task.secret, body, int(sent_at.timestamp())),
            DELIVERY_HEADER: task.delivery_id,
            EVENT_HEADER: task.alert_event_id,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            outcome = await self._post(client, task.url, body, headers)
        except httpx.InvalidURL as e:
            await self._dead(task, attempt, _Outcome(None, _short(_describe(e))))
            report.dead += 1
            return False

        status = outcome.status_code
        if status is not None and 200 <= status < 300:
            await asyncio.to_thread(
                self.store.mark_delivered, task.delivery_id, status_code=status, at=self.clock()
            )
            report.delivered += 1
            log.info(
                "webhook delivered",
                extra={**_ids(task), "attempt": attempt, "status_code": status},
            )
            return True
        if status is None or status in _RETRY_STATUSES or status >= 500:
            if attempt >= self.config.max_attempts:
                await self._dead(task, attempt, outcome)
                report.dead += 1
            else:
                await self._retry(task, attempt, outcome)
                report.retried += 1
            return False
        if status == 410:
            await self._dead(task, attempt, outcome)
            report.dead += 1
            await asyncio.to_thread(self.store.deactivate_subscription, task.subscription_id)
            log.warning(
                "webhook subscriber answered 410 Gone: subscription deactivated",
                extra={**_ids(task), "host": _host(task.url)},
            )
            return False
        # Any other answer (4xx, an unfollowed 3xx) says the request itself is unwanted:
        # sending the same bytes again cannot succeed.
        await self._dead(task, attempt, outcome)
        report.dead += 1
        return False

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> _Outcome:
        # httpx's timeout bounds each phase (connect, each read); this bounds the whole
        # exchange, so a receiver trickling bytes cannot hold a slot for longer.
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with client.stream("POST", url, content=body, headers=headers) as response:
                    excerpt = await _read_excerpt(response)
                    status = response.status_code
                    if 200 <= status < 300:
                        return _Outcome(status, None)
                    retry_after = (
                        _retry_after_s(response.headers.get("Retry-After"), self.clock())
                        if status in _RETRY_AFTER_STATUSES
                        else None
                    )
                    text = excerpt.decode("utf-8", errors="replace").strip()
                    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
                    return _Outcome(status, _short(error), retry_after)
        except TimeoutError:
            return _Outcome(None, f"TimeoutError: no answer within {self.config.timeout_s:g} s")
        except httpx.TimeoutException as e:
            return _Outcome(None, _short(f"{type(e).__name__}: no answer in time ({e})"))
        except (httpx.TransportError, OSError) as e:
            return _Outcome(None, _short(_describe(e)))

    async def _retry(self, task: DeliveryTask, attempt: int, outcome: _Outcome) -> None:
        delay = backoff_delay(
            attempt,
            initial_s=self.config.backoff_initial_s,
            max_s=self.config.backoff_max_s,
            rng=self.rng,
        )
        if outcome.retry_after_s is not None:
            delay = min(max(delay, outcome.retry_after_s), self.config.backoff_max_s)
        next_attempt_at = self.clock() + timedelta(seconds=delay)
        await asyncio.to_thread(
            self.store.mark_failed,
            task.delivery_id,
            error=outcome.error or "failed",
            status_code=outcome.status_code,
            next_attempt_at=next_attempt_at,
        )
        log.info(
            "webhook delivery failed; will retry",
            extra={
                **_ids(task),
                "attempt": attempt,
                "status_code": outcome.status_code,
                "error": outcome.error,
                "retry_in_s": round(delay, 3),
            },
        )

    async def _dead(self, task: DeliveryTask, attempt: int, outcome: _Outcome) -> None:
        await asyncio.to_thread(
            self.store.mark_failed,
            task.delivery_id,
            error=outcome.error or "failed",
            status_code=outcome.status_code,
            next_attempt_at=None,
        )
        log.warning(
            "webhook delivery dead-lettered",
            extra={
                **_ids(task),
                "attempt": attempt,
                "status_code": outcome.status_code,
                "error": outcome.error,
            },
        )

    def _sent_times(self, event_ids: list[str]) -> dict[str, str]:
        return self.store.sent_times(event_ids)

    # ------------------------------------------------------------------ the worker loop
    def run(self, stop: threading.Event) -> None:
        """Deliver rounds until ``stop`` is set; a failing round is logged and retried.

        Parameters
        ----------
        stop : threading.Event
            Set it to end the loop; the round under way finishes its current requests and
            leaves the rest for next time.
        """
        self._halt = stop
        log.info(
            "webhook dispatcher started",
            extra={
                "concurrency": self.config.concurrency,
                "poll_interval_s": self.config.poll_interval_s,
            },
        )
        try:
            while not stop.is_set():
                try:
                    self.deliver_due()
                except Exception as e:
                    # Typically the database is briefly unavailable. Nothing is lost: what
                    # was not recorded is still due. The worker must outlive the outage.
                    log.error(
                        "webhook round failed; retrying next round",
                        extra={
                            "error": _describe(e),
                            "retry_in_s": self.config.poll_interval_s,
                        },
                    )
                stop.wait(self.config.poll_interval_s)
        finally:
            self._halt = None
            log.info("webhook dispatcher stopped")

    def start(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread named ``webhook-dispatcher``.

        Returns
        -------
        threading.Thread
            The started thread.

        Raises
        ------
        RuntimeError
            The dispatcher is already running.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the webhook dispatcher is already running")
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop_event,), name="webhook-dispatcher", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10) -> None:
        """Ask the thread started by :meth:`start` to end and wait up to ``timeout`` s.

        Parameters
        ----------
        timeout : float, default 10
            Seconds to wait for the thread; requests in flight end within the HTTP timeout.
        """
        if self._stop_event is None or self._thread is None:
            return
        self._stop_event.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("webhook dispatcher did not stop in time", extra={"timeout_s": timeout})
            return
        self._thread = None
        self._stop_event = None


# ---------------------------------------------------------------------------- helpers
async def _read_excerpt(response: httpx.Response) -> bytes:
    """The first bytes of an answer's body, without reading the rest."""
    excerpt = b""
    async for chunk in response.aiter_bytes():
        excerpt += chunk
        if len(excerpt) >= _MAX_EXCERPT_BYTES:
            break
    return excerpt[:_MAX_EXCERPT_BYTES]


def _retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _short(text: str) -> str:
    return text[:_ERROR_TEXT_CHARS]


def _describe(exc: BaseException) -> str:
    """``Class: message`` of an exception, short, without SQL or its parameters."""
    # SQLAlchemy's messages append the statement and its bound parameters; the driver's
    # own error (``orig``) says what went wrong without them.
    original = getattr(exc, "orig", None)
    shown = original if isinstance(original, BaseException) else exc
    message = str(shown).strip().splitlines()[0] if str(shown).strip() else ""
    return _short(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def _ids(task: DeliveryTask) -> dict[str, Any]:
    return {
        "delivery_id": task.delivery_id,
        "subscription_id": task.subscription_id,
        "alert_event_id": task.alert_event_id,
    }


def _host(url: str) -> str:
    # Only the host: a webhook URL's path or query often embeds the receiver's own token.
    return urlsplit(url).hostname or "?"
