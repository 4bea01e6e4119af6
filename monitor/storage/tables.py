"""The relational schema of the alert store (SQLAlchemy Core; SQLite or PostgreSQL).

Tables:

- ``rule_state``: the evaluation state of every (rule, place) — persistence window, active
  level, episode counter, ids already seen (so a replayed detection changes nothing).
- ``alerts``: one row per alert (episode) with its latest revision.
- ``alert_events``: every revision (the alert history and the outbox of ``insar.alerts``:
  ``published_at`` is set once the broker acknowledged it).
- ``subscriptions``: webhook subscribers with their area, hazards and minimum severity.
- ``deliveries``: one row per (revision, subscriber): the delivery log and queue.
- ``silences``: label matchers over a time window (Alertmanager-style).

Everything is created by :func:`create_all`; there are no migrations yet (schema v1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect, Engine


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that writes and reads UTC on every backend.

    Both backends get it wrong on their own: SQLite's DATETIME drops the offset and keeps the
    wall-clock time (10:00+02:00 would be stored, and compared, as 10:00 UTC) and
    PostgreSQL's timestamptz comes back in the *session* time zone, which is the server's
    local zone unless configured otherwise. Naive values are taken as UTC, as everywhere
    in the store (PostgreSQL would otherwise read them in the session zone too).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        return _to_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return _to_utc(value)


def _to_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


metadata = MetaData()

rule_state = Table(
    "rule_state",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("place_key", String(400), primary_key=True),
    Column("active", Boolean, nullable=False, default=False),
    Column("state", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(600), primary_key=True),
    Column("rule", String(200), nullable=False, index=True),
    Column("place_key", String(400), nullable=False),
    Column("episode", Integer, nullable=False),
    Column("hazard", String(64), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("severity", String(16), nullable=False),
    Column("severity_rank", Integer, nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("headline", Text, nullable=False),
    # The area's bounding box, degrees, for area filters that need no geometry engine.
    Column("west", Float, nullable=False),
    Column("south", Float, nullable=False),
    Column("east", Float, nullable=False),
    Column("north", Float, nullable=False),
    Column("episode_start", String(10), nullable=False),
    Column("event_time", String(10), nullable=False, index=True),
    Column("first_sent_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, index=True),
    Column("suppressed", Boolean, nullable=False, default=False),
    Column("latest", JSON, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("alert_event_id", String(620), primary_key=True),
    Column("alert_id", String(600), ForeignKey("alerts.alert_id"), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("transition", String(16), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("published_at", UTCDateTime(), nullable=True),
    Column("cap_path", Text, nullable=True),
    UniqueConstraint("alert_id", "revision", name="uq_alert_revision"),
)
Index("ix_alert_events_unpublished", alert_events.c.published_at)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("url", Text, nullable=False),
    # The HMAC key must be readable to sign; it is never logged or returned after creation.
    Column("secret", Text, nullable=False),
    Column("area", JSON, nullable=True),
    Column("hazards", JSON, nullable=False),
    Column("min_severity", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(700), primary_key=True),
    Column(
        "alert_event_id",
        String(620),
        ForeignKey("alert_events.alert_event_id"),
        nullable=False,
        index=True,
    ),
    Column(
        "subscription_id",
        String(64),
        ForeignKey("subscriptions.subscription_id"),
        nullable=False,
        index=True,
    ),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    UniqueConstraint("alert_event_id", "subscription_id", name="uq_delivery"),
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)

silences = Table(
    "silences",
    metadata,
    Column("silence_id", String(64), primary_key=True),
    Column("matchers", JSON, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False, index=True),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


# One row, rewritten by the readiness probe: proves the store takes writes.
heartbeat = Table(
    "heartbeat",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
)


def create_all(engine: Engine) -> None:
    """Create the tables that do not exist yet (idempotent)."""
    metadata.create_all(engine)
