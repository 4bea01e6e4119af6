"""The alert store: alert history, rule state, subscriptions, deliveries and silences in SQL.

One class, :class:`AlertStore`, over SQLAlchemy Core so the same code runs on SQLite (the
embedded default, one file in the state directory) and PostgreSQL (production). The
alert stage writes a whole batch — new rule states, alert revisions and the deliveries
they cause — in **one transaction** (:meth:`AlertStore.apply`): a crash leaves either all
of a batch or none of it, and a replayed batch finds its revisions already there
(primary keys are the stable ids) and adds nothing.

Time columns are stored in UTC; values read back are always timezone-aware.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

from monitor.alerts.levels import severity_rank
from monitor.alerts.matchers import Silence, parse_matchers
from monitor.alerts.subscriptions import Subscription, SubscriptionSpec, matches
from monitor.storage import tables as t

log = logging.getLogger(__name__)

DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_DEAD = "dead"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we write is UTC.
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return value.astimezone(UTC)


@dataclass
class StateChange:
    """The new evaluation state of one (rule, place)."""

    rule: str
    place_key: str
    active: bool
    state: dict[str, Any]


@dataclass
class AlertBatch:
    """What one evaluation of the alert stage decided, written atomically by :meth:`apply`."""

    states: list[StateChange] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # alert.v1 revisions, in order


@dataclass(frozen=True)
class DeliveryTask:
    """A delivery that is due, with everything needed to send it."""

    delivery_id: str
    alert_event_id: str
    subscription_id: str
    url: str
    secret: str
    format: str
    attempts: int
    event: dict[str, Any]


class AlertStore:
    """Alert history, rule state, subscriptions, deliveries and silences.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path/alerts.sqlite`` or
        ``postgresql+psycopg://user:password@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {"future": True}
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        t.create_all(self.engine)

    @property
    def url_for_logs(self) -> str:
        """The URL with any password masked (safe to log)."""
        return self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ evaluation state
    def load_states(self, rule: str | None = None, *, active_only: bool = False) -> dict[
        tuple[str, str], dict[str, Any]
    ]:
        """Rule states keyed by (rule, place_key), optionally of one rule / active ones only."""
        q = select(t.rule_state.c.rule, t.rule_state.c.place_key, t.rule_state.c.state)
        if rule is not None:
            q = q.where(t.rule_state.c.rule == rule)
        if active_only:
            q = q.where(t.rule_state.c.active.is_(True))
        with self.engine.connect() as conn:
            return {(r.rule, r.place_key): dict(r.state) for r in conn.execute(q)}

    def firing_labels(self) -> list[tuple[str, dict[str, str]]]:
        """``(alert_id, labels)`` of every firing alert (for inhibition)."""
        q = select(t.alerts.c.alert_id, t.alerts.c.latest).where(t.alerts.c.state == "firing")
        with self.engine.connect() as conn:
            return [(r.alert_id, dict(r.latest.get("labels", {}))) for r in conn.execute(q)]

    def apply(self, batch: AlertBatch, *, now: datetime | None = None) -> list[str]:
        """Write a batch in one transaction; returns the ids of the revisions that were new.

        Deliveries are queued in the same transaction for every active subscription the
        revision matches (:func:`monitor.alerts.subscriptions.matches`), unless the revision
        is suppressed (silenced or inhibited).
        """
        now = now or utcnow()
        new_ids: list[str] = []
        with self.engine.begin() as conn:
            for change in batch.states:
                self._upsert_state(conn, change, now)
            subs = self._subscriptions(conn, active_only=True)
            for payload in batch.events:
                if self._insert_event(conn, payload, now):
                    new_ids.append(payload["alert_event_id"])
                    self._queue_deliveries(conn, payload, subs, now)
        return new_ids

    def _upsert_state(self, conn: Connection, change: StateChange, now: datetime) -> None:
        key = and_(
            t.rule_state.c.rule == change.rule, t.rule_state.c.place_key == change.place_key
        )
        values = {"active": change.active, "state": change.state, "updated_at": now}
        done = conn.execute(update(t.rule_state).where(key).values(**values))
        if done.rowcount == 0:
            conn.execute(
                insert(t.rule_state).values(rule=change.rule, place_key=change.place_key, **values)
            )

    def _insert_event(self, conn: Connection, payload: Mapping[str, Any], now: datetime) -> bool:
        exists = conn.execute(
            select(t.alert_events.c.alert_event_id).where(
                t.alert_events.c.alert_event_id == payload["alert_event_id"]
            )
        ).first()
        if exists is not None:
            return False
        sent_at = _parse_time(payload["sent_at"])
        west, south, east, north = payload["area"]["bbox"]
        row = {
            "rule": payload["rule"]["name"],
            "place_key": payload["place"]["key"],
            "episode": int(payload["alert_id"].rsplit(".e", 1)[-1])
            if ".e" in payload["alert_id"]
            else 0,
            "hazard": payload["hazard"],
            "state": payload["state"],
            "severity": payload["severity"],
            "severity_rank": severity_rank(payload["severity"]),
            "revision": payload["revision"],
            "headline": payload["headline"],
            "west": west, "south": south, "east": east, "north": north,
            "episode_start": payload["episode_start"],
            "event_time": payload["event_time"],
            "updated_at": sent_at,
            "suppressed": bool(
                payload["suppressed"]["silenced_by"] or payload["suppressed"]["inhibited_by"]
            ),
            "latest": dict(payload),
        }
        current = conn.execute(
            select(t.alerts.c.revision).where(t.alerts.c.alert_id == payload["alert_id"])
        ).first()
        if current is None:
            conn.execute(
                insert(t.alerts).values(
                    alert_id=payload["alert_id"], first_sent_at=sent_at, **row
                )
            )
        elif current.revision < payload["revision"]:
            conn.execute(
                update(t.alerts).where(t.alerts.c.alert_id == payload["alert_id"]).values(**row)
            )
        conn.execute(
            insert(t.alert_events).values(
                alert_event_id=payload["alert_event_id"],
                alert_id=payload["alert_id"],
                revision=payload["revision"],
                transition=payload["transition"],
                sent_at=sent_at,
                payload=dict(payload),
            )
        )
        return True

    def _queue_deliveries(
        self,
        conn: Connection,
        payload: Mapping[str, Any],
        subs: Sequence[tuple[Subscription, str]],
        now: datetime,
    ) -> None:
        suppressed = payload["suppressed"]
        if suppressed["silenced_by"] or suppressed["inhibited_by"]:
            return
        earlier = set(
            conn.execute(
                select(t.deliveries.c.subscription_id)
                .join(
                    t.alert_events,
                    t.alert_events.c.alert_event_id == t.deliveries.c.alert_event_id,
                )
                .where(t.alert_events.c.alert_id == payload["alert_id"])
            ).scalars()
        )
        for sub, _ in subs:
            if not matches(sub, payload, received_before=sub.subscription_id in earlier):
                continue
            conn.execute(
                insert(t.deliveries).values(
                    delivery_id=f"{payload['alert_event_id']}>{sub.subscription_id}",
                    alert_event_id=payload["alert_event_id"],
                    subscription_id=sub.subscription_id,
                    status=DELIVERY_PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )

    # ------------------------------------------------------------------ outbox and CAP files
    def unpublished_events(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Revisions not yet acknowledged by the broker, oldest first."""
        q = (
            select(t.alert_events.c.payload)
            .where(t.alert_events.c.published_at.is_(None))
            .order_by(
                t.alert_events.c.sent_at, t.alert_events.c.alert_id, t.alert_events.c.revision
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r.payload) for r in conn.execute(q)]

    def mark_published(self, event_ids: Iterable[str], *, at: datetime | None = None) -> None:
        ids = list(event_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(t.alert_events)
                .where(t.alert_events.c.alert_event_id.in_(ids))
                .values(published_at=at or utcnow())
            )

    def events_without_cap(self, limit: int = 1000) -> list[dict[str, Any]]:
        q = (
            select(t.alert_events.c.payload)
            .where(t.alert_events.c.cap_path.is_(None))
            .order_by(t.alert_events.c.sent_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r.payload) for r in conn.execute(q)]

    def set_cap_path(self, event_id: str, path: str | Path) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.alert_events)
                .where(t.alert_events.c.alert_event_id == event_id)
                .values(cap_path=str(path))
            )

    def sent_times(self, event_ids: Iterable[str]) -> dict[str, str]:
        """``alert_event_id -> sent_at`` (RFC 3339, as in the payload) for CAP references."""
        ids = list(event_ids)
        if not ids:
            return {}
        q = select(t.alert_events.c.alert_event_id, t.alert_events.c.payload).where(
            t.alert_events.c.alert_event_id.in_(ids)
        )
        with self.engine.connect() as conn:
            return {r.alert_event_id: r.payload["sent_at"] for r in conn.execute(q)}

    # ------------------------------------------------------------------ queries
    def list_alerts(
        self,
        *,
        state: str | None = None,
        hazard: str | None = None,
        min_severity: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bbox: Sequence[float] | None = None,
        include_suppressed: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Latest revision of each alert matching the filters, most recently updated first.

        ``since``/``until`` bound the wall-clock time of the latest revision; ``bbox`` is
        ``west, south, east, north`` in degrees and keeps alerts whose area's bounding box
        intersects it.
        """
        q = select(t.alerts.c.latest)
        conds = []
        if state is not None:
            conds.append(t.alerts.c.state == state)
        if hazard is not None:
            conds.append(t.alerts.c.hazard == hazard)
        if min_severity is not None:
            conds.append(t.alerts.c.severity_rank >= severity_rank(min_severity))
        if rule is not None:
            conds.append(t.alerts.c.rule == rule)
        if since is not None:
            conds.append(t.alerts.c.updated_at >= since)
        if until is not None:
            conds.append(t.alerts.c.updated_at < until)
        if bbox is not None:
            west, south, east, north = bbox
            conds += [
                t.alerts.c.west <= east, t.alerts.c.east >= west,
                t.alerts.c.south <= north, t.alerts.c.north >= south,
            ]
        if not include_suppressed:
            conds.append(t.alerts.c.suppressed.is_(False))
        if conds:
            q = q.where(and_(*conds))
        q = q.order_by(t.alerts.c.updated_at.desc(), t.alerts.c.alert_id)
        q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [dict(r.latest) for r in conn.execute(q)]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        """The latest revision of one alert, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.alerts.c.latest).where(t.alerts.c.alert_id == alert_id)
            ).first()
        return None if row is None else dict(row.latest)

    def alert_history(self, alert_id: str) -> list[dict[str, Any]]:
        """Every revision of one alert, oldest first."""
        q = (
            select(t.alert_events.c.payload)
            .where(t.alert_events.c.alert_id == alert_id)
            .order_by(t.alert_events.c.revision)
        )
        with self.engine.connect() as conn:
            return [dict(r.payload) for r in conn.execute(q)]

    def get_event(self, alert_event_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.alert_events.c.payload).where(
                    t.alert_events.c.alert_event_id == alert_event_id
                )
            ).first()
        return None if row is None else dict(row.payload)

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.alert_events)).scalar_one())

    # ------------------------------------------------------------------ subscriptions
    def add_subscription(
        self, spec: SubscriptionSpec, *, now: datetime | None = None
    ) -> tuple[Subscription, str]:
        """Store a subscription; returns it and its newly generated HMAC secret.

        The secret is returned once, here: the subscriber needs it to verify signatures.
        """
        spec.check()
        secret = secrets.token_urlsafe(32)
        sub_id = uuid.uuid4().hex
        created = now or utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.subscriptions).values(
                    subscription_id=sub_id,
                    name=spec.name,
                    url=spec.url,
                    secret=secret,
                    area=dict(spec.area) if spec.area is not None else None,
                    hazards=list(spec.hazards),
                    min_severity=spec.min_severity,
                    format=spec.format,
                    active=True,
                    created_at=created,
                )
            )
        sub = self.get_subscription(sub_id)
        assert sub is not None  # just inserted in a committed transaction
        log.info(
            "subscription added", extra={"subscription_id": sub_id, "subscription_name": spec.name}
        )
        return sub, secret

    def _subscriptions(
        self, conn: Connection, *, active_only: bool
    ) -> list[tuple[Subscription, str]]:
        q = select(t.subscriptions).order_by(t.subscriptions.c.created_at)
        if active_only:
            q = q.where(t.subscriptions.c.active.is_(True))
        return [(_subscription(r), r.secret) for r in conn.execute(q)]

    def list_subscriptions(self, *, active_only: bool = False) -> list[Subscription]:
        with self.engine.connect() as conn:
            return [s for s, _ in self._subscriptions(conn, active_only=active_only)]

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.subscriptions).where(t.subscriptions.c.subscription_id == subscription_id)
            ).first()
        return None if row is None else _subscription(row)

    def deactivate_subscription(self, subscription_id: str) -> bool:
        """Stop delivering to a subscriber (its delivery log is kept); False if unknown."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.subscriptions)
                .where(t.subscriptions.c.subscription_id == subscription_id)
                .values(active=False)
            )
        return done.rowcount > 0

    # ------------------------------------------------------------------ deliveries
    def due_deliveries(
        self, *, now: datetime | None = None, limit: int = 200
    ) -> list[DeliveryTask]:
        """Pending deliveries whose next attempt is due, oldest first."""
        return self._due(now or utcnow(), limit, in_order=False)

    def due_deliveries_in_order(
        self, *, now: datetime | None = None, limit: int = 200
    ) -> list[DeliveryTask]:
        """Due deliveries, leaving out those queued behind a delivery waiting for its retry.

        A delivery is held back while an earlier pending delivery to the same subscriber is
        not due yet (it failed and waits out its backoff). Each subscriber then receives its
        revisions in the order they were queued, across retries and restarts, and the
        backlog of a failing subscriber does not take the places of other subscribers'
        deliveries in the batch. Dead deliveries hold nothing back.
        """
        return self._due(now or utcnow(), limit, in_order=True)

    def _due(self, now: datetime, limit: int, *, in_order: bool) -> list[DeliveryTask]:
        d = t.deliveries
        q = (
            select(
                d.c.delivery_id,
                d.c.alert_event_id,
                d.c.subscription_id,
                d.c.attempts,
                t.subscriptions.c.url,
                t.subscriptions.c.secret,
                t.subscriptions.c.format,
                t.alert_events.c.payload,
            )
            .join(
                t.subscriptions,
                t.subscriptions.c.subscription_id == d.c.subscription_id,
            )
            .join(
                t.alert_events,
                t.alert_events.c.alert_event_id == d.c.alert_event_id,
            )
            .where(
                d.c.status == DELIVERY_PENDING,
                d.c.next_attempt_at <= now,
                t.subscriptions.c.active.is_(True),
            )
            .order_by(d.c.created_at, d.c.delivery_id)
            .limit(limit)
        )
        if in_order:
            waiting = d.alias("waiting")
            queued_before = or_(
                waiting.c.created_at < d.c.created_at,
                and_(
                    waiting.c.created_at == d.c.created_at,
                    waiting.c.delivery_id < d.c.delivery_id,
                ),
            )
            q = q.where(
                ~exists().where(
                    waiting.c.subscription_id == d.c.subscription_id,
                    waiting.c.status == DELIVERY_PENDING,
                    waiting.c.next_attempt_at > now,
                    queued_before,
                )
            )
        with self.engine.connect() as conn:
            return [
                DeliveryTask(
                    delivery_id=r.delivery_id,
                    alert_event_id=r.alert_event_id,
                    subscription_id=r.subscription_id,
                    url=r.url,
                    secret=r.secret,
                    format=r.format,
                    attempts=r.attempts,
                    event=dict(r.payload),
                )
                for r in conn.execute(q)
            ]

    def mark_delivered(
        self, delivery_id: str, *, status_code: int, at: datetime | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.deliveries)
                .where(t.deliveries.c.delivery_id == delivery_id)
                .values(
                    status=DELIVERY_DELIVERED,
                    attempts=t.deliveries.c.attempts + 1,
                    last_status=status_code,
                    last_error=None,
                    delivered_at=at or utcnow(),
                    next_attempt_at=None,
                )
            )

    def mark_failed(
        self,
        delivery_id: str,
        *,
        error: str,
        status_code: int | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record a failed attempt; ``next_attempt_at=None`` dead-letters the delivery."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t.deliveries)
                .where(t.deliveries.c.delivery_id == delivery_id)
                .values(
                    status=DELIVERY_PENDING if next_attempt_at is not None else DELIVERY_DEAD,
                    attempts=t.deliveries.c.attempts + 1,
                    last_status=status_code,
                    last_error=error[:2000],
                    next_attempt_at=next_attempt_at,
                )
            )

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscription_id: str | None = None,
        alert_event_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        q = select(
            t.deliveries.c.delivery_id,
            t.deliveries.c.alert_event_id,
            t.deliveries.c.subscription_id,
            t.deliveries.c.status,
            t.deliveries.c.attempts,
            t.deliveries.c.next_attempt_at,
            t.deliveries.c.last_error,
            t.deliveries.c.last_status,
            t.deliveries.c.created_at,
            t.deliveries.c.delivered_at,
        )
        conds = []
        if status is not None:
            conds.append(t.deliveries.c.status == status)
        if subscription_id is not None:
            conds.append(t.deliveries.c.subscription_id == subscription_id)
        if alert_event_id is not None:
            conds.append(t.deliveries.c.alert_event_id == alert_event_id)
        if conds:
            q = q.where(and_(*conds))
        q = q.order_by(t.deliveries.c.created_at.desc(), t.deliveries.c.delivery_id).limit(limit)
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(q):
                row = dict(r._mapping)
                for k in ("next_attempt_at", "created_at", "delivered_at"):
                    value = _aware(row[k])
                    row[k] = value.isoformat() if value is not None else None
                out.append(row)
            return out

    def replay_deliveries(
        self,
        *,
        delivery_ids: Sequence[str] | None = None,
        subscription_id: str | None = None,
        status: str = DELIVERY_DEAD,
        now: datetime | None = None,
    ) -> int:
        """Queue deliveries again (dead ones by default); returns how many were re-queued.

        With ``status="delivered"`` a subscriber that lost its data can be sent everything
        again; receivers de-duplicate by the ``X-Insar-Delivery`` header.
        """
        conds = [t.deliveries.c.status == status]
        if delivery_ids is not None:
            conds.append(t.deliveries.c.delivery_id.in_(list(delivery_ids)))
        if subscription_id is not None:
            conds.append(t.deliveries.c.subscription_id == subscription_id)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.deliveries)
                .where(and_(*conds))
                .values(status=DELIVERY_PENDING, attempts=0, next_attempt_at=now or utcnow())
            )
        return int(done.rowcount)

    def alert_counts(self) -> dict[tuple[str, str, str], int]:
        """Alerts per (rule, severity, state), for the metrics."""
        a = t.alerts
        q = select(a.c.rule, a.c.severity, a.c.state, func.count()).group_by(
            a.c.rule, a.c.severity, a.c.state
        )
        with self.engine.connect() as conn:
            return {(r, sev, st): int(n) for r, sev, st, n in conn.execute(q)}

    def check_writable(self) -> str | None:
        """None when a write transaction commits (readiness); else the reason it did not."""
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(t.heartbeat).where(t.heartbeat.c.id == 1).values(at=utcnow())
                )
                if done.rowcount == 0:
                    conn.execute(insert(t.heartbeat).values(id=1, at=utcnow()))
        except Exception as e:  # any driver error means "not ready", with its class
            return f"alert store not writable ({type(e).__name__})"
        return None

    def delivery_counts(self) -> dict[str, int]:
        """Deliveries per status (for metrics and health)."""
        q = select(t.deliveries.c.status, func.count()).group_by(t.deliveries.c.status)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(q)}

    # ------------------------------------------------------------------ silences
    def add_silence(
        self,
        matchers: Sequence[str | Mapping[str, Any]],
        *,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
        now: datetime | None = None,
    ) -> Silence:
        """Store a silence (matchers are validated; the window must be non-empty)."""
        parsed = parse_matchers(matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher (it would silence everything)")
        starts_at, ends_at = _aware(starts_at), _aware(ends_at)
        assert starts_at is not None and ends_at is not None
        if ends_at <= starts_at:
            raise ValueError(f"silence ends ({ends_at}) before it starts ({starts_at})")
        silence = Silence(uuid.uuid4().hex, parsed, starts_at, ends_at, created_by, comment)
        with self.engine.begin() as conn:
            conn.execute(
                insert(t.silences).values(
                    silence_id=silence.silence_id,
                    matchers=[m.to_json_dict() for m in parsed],
                    starts_at=starts_at,
                    ends_at=ends_at,
                    created_by=created_by,
                    comment=comment,
                    created_at=now or utcnow(),
                )
            )
        return silence

    def silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """All silences, or those active at ``active_at``."""
        q = select(t.silences).order_by(t.silences.c.starts_at)
        if active_at is not None:
            q = q.where(t.silences.c.starts_at <= active_at, t.silences.c.ends_at > active_at)
        with self.engine.connect() as conn:
            return [
                Silence(
                    r.silence_id,
                    parse_matchers(r.matchers),
                    _aware(r.starts_at),  # type: ignore[arg-type]
                    _aware(r.ends_at),  # type: ignore[arg-type]
                    r.created_by,
                    r.comment,
                )
                for r in conn.execute(q)
            ]

    def expire_silence(self, silence_id: str, *, now: datetime | None = None) -> bool:
        """End a silence now (kept for the record); False if unknown."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.silences)
                .where(t.silences.c.silence_id == silence_id, t.silences.c.ends_at > now)
                .values(ends_at=now)
            )
        return done.rowcount > 0

    # ------------------------------------------------------------------ maintenance
    def drop_everything(self) -> None:
        """Delete every row (tests and ``--reset`` only)."""
        with self.engine.begin() as conn:
            for table in reversed(t.metadata.sorted_tables):
                conn.execute(delete(table))


def _subscription(row: Any) -> Subscription:
    return Subscription(
        subscription_id=row.subscription_id,
        name=row.name,
        url=row.url,
        area=row.area,
        hazards=tuple(row.hazards or ()),
        min_severity=row.min_severity,
        format=row.format,
        active=bool(row.active),
        created_at=_aware(row.created_at),  # type: ignore[arg-type]
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the API) never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

