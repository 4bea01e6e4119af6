"""The request and response bodies of the HTTP API, as pydantic models.

These models are the API's contract: FastAPI validates request bodies against them, filters
responses through them and builds the OpenAPI schemas at ``/openapi.json`` from them. Time
windows given by an operator go through :data:`Rfc3339`, which accepts only RFC 3339 (or a
UTC date) so that a time is never read in an unstated time zone. :data:`NOT_FOUND` and
:data:`INVALID` document the error replies that many endpoints share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from monitor.alerts.cap import parse_timestamp
from monitor.alerts.levels import HAZARDS, SEVERITIES

__all__ = [
    "INVALID",
    "NOT_FOUND",
    "AlertDetail",
    "AlertList",
    "AlertPoint",
    "DeliveryList",
    "DeliveryOut",
    "FieldError",
    "Health",
    "Problem",
    "ReplayIn",
    "ReplayOut",
    "Rfc3339",
    "SilenceIn",
    "SilenceList",
    "SilenceOut",
    "SubscriptionCreated",
    "SubscriptionIn",
    "SubscriptionList",
    "SubscriptionOut",
    "ValidationProblem",
]


# ---------------------------------------------------------------------------------- errors
class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str = Field(description="What is wrong and, for bad input, what is allowed.")


class FieldError(BaseModel):
    """One failed check of a request parameter or body field."""

    loc: list[str | int] = Field(description="Where: e.g. ['query', 'limit'].")
    msg: str
    type: str


class ValidationProblem(Problem):
    """A request that failed validation (HTTP 422)."""

    errors: list[FieldError] = Field([], description="Each failed check, when there are several.")


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown id."}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblem, "description": "Invalid parameters or body."}
}


# ---------------------------------------------------------------------------- health, alerts
class Health(BaseModel):
    """Whether the API and its database answer."""

    status: Literal["ok", "error"]
    database: str = Field(description="'ok', or why the database could not be queried.")


class AlertList(BaseModel):
    """A page of alerts."""

    alerts: list[dict[str, Any]] = Field(
        description="The latest revision (alert.v1) of each matching alert, most recently "
        "updated first."
    )
    count: int = Field(description="Number of alerts in this page (not the total).")


class AlertPoint(BaseModel):
    """One alert as a flat row with a point location, for map panels (Grafana Geomap)."""

    alert_id: str
    rule: str = Field(description="Name of the rule that raised the alert.")
    hazard: str
    severity: str = Field(description="CAP severity: Minor, Moderate, Severe or Extreme.")
    severity_rank: int = Field(ge=0, le=3, description="0 for Minor .. 3 for Extreme.")
    state: str = Field(description="firing, resolved or expired.")
    place: str = Field(description="Name of the place (volcano, region, deformation area).")
    headline: str
    event_time: str = Field(description="Event time (acquisition date) of the latest revision.")
    latitude: float = Field(
        description="Centroid of the alert's area in degrees (a point inside the area when "
        "the centroid falls outside it)."
    )
    longitude: float = Field(description="Longitude of the same point, in degrees.")


class AlertDetail(BaseModel):
    """One alert with its history."""

    alert: dict[str, Any] = Field(description="The latest revision (alert.v1).")
    history: list[dict[str, Any]] = Field(description="Every revision, oldest first.")


# --------------------------------------------------------------------------- subscriptions
class SubscriptionIn(BaseModel):
    """A new webhook subscription."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who subscribes, for the logs and the delivery list.")
    url: str = Field(description="Webhook URL (http:// or https://) revisions are POSTed to.")
    area: dict[str, Any] | None = Field(
        None,
        description="Area of interest as GeoJSON (geometry, Feature or FeatureCollection) in "
        "longitude/latitude; omitted means everywhere.",
    )
    hazards: list[str] = Field(
        [],
        description="Hazards wanted; empty means all.",
        json_schema_extra={"items": {"type": "string", "enum": list(HAZARDS)}},
    )
    min_severity: str = Field(
        "Minor",
        description="Lowest severity delivered.",
        json_schema_extra={"enum": list(SEVERITIES)},
    )
    format: str = Field(
        "json",
        description="json: the alert.v1 revision; cap: its CAP 1.2 document.",
        json_schema_extra={"enum": ["json", "cap"]},
    )


class SubscriptionOut(BaseModel):
    """A stored subscription (never with its secret)."""

    subscription_id: str
    name: str
    url: str
    area: dict[str, Any] | None
    hazards: list[str]
    min_severity: str
    format: str
    active: bool
    created_at: str = Field(description="RFC 3339, UTC.")


class SubscriptionCreated(SubscriptionOut):
    """A subscription just created, with the secret that signs its deliveries."""

    secret: str = Field(
        description="HMAC key that signs every delivery to this subscriber. Shown only in "
        "this response: store it now, it cannot be read back."
    )


class SubscriptionList(BaseModel):
    """Subscriptions, oldest first."""

    subscriptions: list[SubscriptionOut]
    count: int


# -------------------------------------------------------------------------------- silences
def _rfc3339(value: Any) -> Any:
    # Pydantic alone would also take naive times and Unix seconds; an operator typing a
    # window must say which time zone it is in, so only RFC 3339 (or a UTC date) passes.
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 date-time string, e.g. 2026-11-21T10:15:00Z")
    return parse_timestamp(value)


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


class SilenceIn(BaseModel):
    """A new silence: give ``ends_at`` or ``duration_hours``."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[str] = Field(
        min_length=1,
        description="Label matchers 'label op value', op one of = != =~ !~; all must match.",
        examples=[["volcano_id=etna", "severity=~Minor|Moderate"]],
    )
    starts_at: Rfc3339 | None = Field(None, description="RFC 3339; default now.")
    ends_at: Rfc3339 | None = Field(None, description="RFC 3339; or give duration_hours.")
    duration_hours: float | None = Field(
        None, gt=0, le=24 * 366, description="Length of the silence from starts_at, hours."
    )
    created_by: str = Field(min_length=1, description="Who silenced (for the record).")
    comment: str = Field("", description="Why.")

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration_hours is None):
            raise ValueError("give exactly one of ends_at (RFC 3339) or duration_hours")
        return self


class SilenceOut(BaseModel):
    """A stored silence."""

    silence_id: str
    matchers: list[str]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    active: bool = Field(description="Whether the silence mutes notifications now.")


class SilenceList(BaseModel):
    """Silences, earliest start first."""

    silences: list[SilenceOut]
    count: int


# ------------------------------------------------------------------------------ deliveries
class DeliveryOut(BaseModel):
    """One (revision, subscriber) delivery and how its attempts went."""

    delivery_id: str
    alert_event_id: str
    subscription_id: str
    status: str = Field(description="pending, delivered or dead.")
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    last_status: int | None = Field(description="HTTP status of the last attempt.")
    created_at: str | None
    delivered_at: str | None


class DeliveryList(BaseModel):
    """Deliveries, newest first."""

    deliveries: list[DeliveryOut]
    count: int


class ReplayIn(BaseModel):
    """Which deliveries to queue again; with no ids and no subscription, all of ``status``."""

    model_config = ConfigDict(extra="forbid")

    delivery_ids: list[str] | None = Field(None, description="Only these deliveries.")
    subscription_id: str | None = Field(None, description="Only this subscriber's deliveries.")
    status: Literal["dead", "delivered"] = Field(
        "dead",
        description="dead: retry dead-lettered deliveries; delivered: send again to a "
        "subscriber that lost data (receivers de-duplicate by X-Insar-Delivery).",
    )


class ReplayOut(BaseModel):
    """How many deliveries were queued again."""

    requeued: int = Field(description="Deliveries queued again.")
