"""The FastAPI application: read alerts, fetch CAP documents and the Atom feed, manage delivery.

Reading is open to anyone who can reach the API: the alert list and history (``alert.v1``),
each revision as CAP 1.2 XML, the Atom feed public alert hubs poll, the map page and the
health check. Managing what the daemon *does* — webhook subscriptions, silences, the
delivery log and its replay — needs a bearer token from ``api.tokens``; with no token
configured those endpoints refuse every request, so a fresh install never exposes them.

Swagger UI and ReDoc are switched off because both load their JavaScript from a CDN and the
daemon runs in observatories without internet access; the OpenAPI document itself is served
at ``/openapi.json``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.atom import atom_feed
from monitor.alerts.cap import CapSettings, cap_xml, parse_timestamp
from monitor.alerts.levels import HAZARDS, SEVERITIES, Hazard, Severity
from monitor.alerts.matchers import Silence
from monitor.alerts.subscriptions import Subscription, SubscriptionSpec
from monitor.api.map_page import render_map_html
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)

CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
NO_TOKENS_MESSAGE = "set api.tokens (INSAR_MONITOR__API__TOKENS) to enable management"
# The store's list query is paged; the feed and the map read this many alerts per page.
_PAGE = 1000


def _package_version() -> str:
    try:
        return version("insar-monitor")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


_DESCRIPTION = """\
Alerts raised by the insar-monitor daemon from Sentinel-1 InSAR products (volcanic unrest,
ground deformation, active deformation areas).

* **Alerts** are read without authentication. Every alert is an episode with one or more
  revisions following the `alert.v1` contract (`pipelines/schemas/alert.v1.json`).
* **CAP** serves each revision as an OASIS CAP 1.2 document, and an Atom feed of the
  currently firing alerts for public alert hubs.
* **Subscriptions**, **silences** and **deliveries** need `Authorization: Bearer <token>`
  with a token from `api.tokens` (environment `INSAR_MONITOR__API__TOKENS`).

Errors are JSON objects with a `detail` message that says what is wrong and what is allowed.
"""

_TAGS = [
    {"name": "alerts", "description": "Alert history: latest revisions and every revision."},
    {"name": "cap", "description": "CAP 1.2 documents and the Atom feed alert hubs poll."},
    {
        "name": "subscriptions",
        "description": "Webhook subscribers (bearer token required). The HMAC secret that "
        "signs deliveries is returned once, when the subscription is created.",
    },
    {
        "name": "silences",
        "description": "Alertmanager-style silences: mute notifications of matching alerts "
        "for a time window (bearer token required).",
    },
    {
        "name": "deliveries",
        "description": "The webhook delivery log and replay of failed deliveries "
        "(bearer token required).",
    },
    {"name": "map", "description": "A map page of the current alerts for the duty officer."},
    {"name": "health", "description": "Liveness and database reachability."},
]


# ---------------------------------------------------------------------------------- models
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


class AlertDetail(BaseModel):
    """One alert with its history."""

    alert: dict[str, Any] = Field(description="The latest revision (alert.v1).")
    history: list[dict[str, Any]] = Field(description="Every revision, oldest first.")


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


# --------------------------------------------------------------------------------- helpers
_NOT_FOUND = {404: {"model": Problem, "description": "Unknown id."}}
_INVALID = {422: {"model": ValidationProblem, "description": "Invalid parameters or body."}}
_AUTH = {
    401: {"model": Problem, "description": "No bearer token, or not a valid one."},
    403: {"model": Problem, "description": "No tokens configured: management is disabled."},
}


_LOCATIONS = {
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
    "body": "body field",
}


def _where(loc: Sequence[Any]) -> str:
    """``("query", "limit")`` -> ``query parameter limit``; ``("body",)`` -> ``body``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        rest = ".".join(parts[1:])
        return f"{_LOCATIONS[parts[0]]} {rest}" if rest else parts[0]
    return ".".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    # The pydantic messages already name what is allowed ("Input should be 'firing',
    # 'resolved' or 'expired'"); one joined sentence is what a person reading curl output
    # needs, the list is for programs. The offending input is not echoed back.
    detail = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})


def _parse_bbox(value: str) -> tuple[float, float, float, float]:
    parts = value.split(",")
    usage = "bbox must be west,south,east,north in degrees, e.g. 14.8,37.6,15.2,37.9"
    if len(parts) != 4:
        raise HTTPException(422, f"{usage}; got {len(parts)} value(s)")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise HTTPException(422, f"{usage}; got a value that is not a number") from None
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise HTTPException(422, f"{usage}; longitudes must lie in [-180, 180]")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise HTTPException(422, f"{usage}; latitudes must lie in [-90, 90]")
    if south > north:
        raise HTTPException(422, f"{usage}; south ({south}) is north of north ({north})")
    if west > east:
        raise HTTPException(
            422, f"{usage}; west ({west}) is east of east ({east}): boxes crossing the "
            "antimeridian are not supported, query each side separately"
        )
    return west, south, east, north


def _subscription_out(sub: Subscription) -> dict[str, Any]:
    return sub.to_json_dict()


def _silence_out(silence: Silence, now: datetime) -> dict[str, Any]:
    return {**silence.to_json_dict(), "active": silence.active_at(now)}


def _cap_settings(config: MonitorConfig) -> CapSettings:
    cap = config.alerts.cap
    return CapSettings(
        sender=cap.sender,
        sender_name=cap.sender_name,
        status=cap.status,
        language=cap.language,
        contact=cap.contact,
        web_base=config.api.base_url(),
    )


# Module level: FastAPI resolves the (string) annotations of the dependency below against
# this module's globals, where a local of the factory would not be found.
# auto_error=False: the dependency answers 401 / 403 itself, with the messages it wants.
_BEARER = HTTPBearer(
    auto_error=False,
    description="A token from api.tokens (INSAR_MONITOR__API__TOKENS).",
)


def _make_token_check(config: MonitorConfig) -> Callable[..., None]:
    """The dependency that guards management endpoints with ``api.tokens``."""
    # Empty tokens are dropped: compare_digest(b"", b"") is True, so an empty entry would let
    # "Authorization: Bearer " through. Bytes, because compare_digest refuses non-ASCII str.
    tokens = [
        s.get_secret_value().encode("utf-8") for s in config.api.tokens if s.get_secret_value()
    ]

    def require_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    ) -> None:
        if not tokens:
            raise HTTPException(403, NO_TOKENS_MESSAGE)
        if credentials is None:
            raise HTTPException(
                401,
                "this endpoint needs 'Authorization: Bearer <token>' with a token from "
                "api.tokens",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = credentials.credentials.encode("utf-8")
        # Every token is compared, so the time taken does not tell which one nearly matched.
        matched = [hmac.compare_digest(given, token) for token in tokens]
        if not any(matched):
            # Who tried, never what they sent: a near-miss token is still a secret.
            client = request.client.host if request.client else "unknown"
            log.warning(
                "API request with an invalid bearer token",
                extra={"client": client, "path": request.url.path},
            )
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return require_token


# ------------------------------------------------------------------------------------ app
def create_app(store: AlertStore, config: MonitorConfig) -> FastAPI:
    """Build the API over an alert store.

    Parameters
    ----------
    store
        The alert store the daemon writes; the API only reads it, apart from the
        management endpoints (subscriptions, silences, delivery replay).
    config
        The effective configuration: ``api`` (tokens, public URL) and ``alerts.cap`` (the
        CAP sender) are used.

    Returns
    -------
    FastAPI
        The application, without Swagger UI / ReDoc (they need a CDN); the OpenAPI
        document is at ``/openapi.json``.
    """
    app = FastAPI(
        title="insar-monitor API",
        version=_package_version(),
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.config = config
    app.add_exception_handler(RequestValidationError, _validation_error)

    base_url = config.api.base_url()
    cap_settings = _cap_settings(config)
    require_token = _make_token_check(config)

    # ------------------------------------------------------------------ health
    @app.get(
        "/healthz",
        tags=["health"],
        response_model=Health,
        responses={503: {"model": Health, "description": "The database cannot be queried."}},
        summary="Health check",
    )
    def healthz() -> Any:
        """Answer ``ok`` when a trivial query on the alert database succeeds."""
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            # The driver's message can hold host and user names; the reply names only the
            # kind of failure, the log (URL masked) has the rest for the operator.
            log.warning(
                "health check: database unreachable",
                extra={"database": store.url_for_logs, "error": type(exc).__name__},
            )
            return JSONResponse(
                status_code=503,
                content={
                    "status": "error",
                    "database": f"unreachable ({type(exc).__name__})",
                },
            )
        return {"status": "ok", "database": "ok"}

    # ------------------------------------------------------------------ alerts
    @app.get(
        "/alerts",
        tags=["alerts"],
        response_model=AlertList,
        responses=_INVALID,
        summary="List alerts",
    )
    def list_alerts(
        state: Annotated[
            Literal["firing", "resolved", "expired"] | None,
            Query(description="Only alerts in this state."),
        ] = None,
        hazard: Annotated[Hazard | None, Query(description="Only this hazard.")] = None,
        min_severity: Annotated[
            Severity | None, Query(description="Only alerts at least this severe.")
        ] = None,
        rule: Annotated[str | None, Query(description="Only alerts of this rule.")] = None,
        since: Annotated[
            Rfc3339 | None,
            Query(
                description="Latest revision sent at or after this RFC 3339 time "
                "(e.g. 2026-11-21T10:15:00Z; a bare date means 00:00 UTC)."
            ),
        ] = None,
        until: Annotated[
            Rfc3339 | None,
            Query(description="Latest revision sent before this RFC 3339 time."),
        ] = None,
        bbox: Annotated[
            str | None,
            Query(
                description="west,south,east,north in degrees: alerts whose area's bounding "
                "box intersects it.",
                examples=["14.8,37.6,15.2,37.9"],
            ),
        ] = None,
        include_suppressed: Annotated[
            bool, Query(description="Include silenced or inhibited alerts.")
        ] = True,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
        offset: Annotated[int, Query(ge=0, description="Alerts to skip.")] = 0,
    ) -> Any:
        """The latest revision of each alert matching every given filter."""
        box = _parse_bbox(bbox) if bbox is not None else None
        alerts = store.list_alerts(
            state=state,
            hazard=hazard,
            min_severity=min_severity,
            rule=rule,
            since=since,
            until=until,
            bbox=box,
            include_suppressed=include_suppressed,
            limit=limit,
            offset=offset,
        )
        return {"alerts": alerts, "count": len(alerts)}

    @app.get(
        "/alerts/{alert_id}",
        tags=["alerts"],
        response_model=AlertDetail,
        responses=_NOT_FOUND,
        summary="One alert with its history",
    )
    def get_alert(alert_id: Annotated[str, Path(description="The alert (episode) id.")]) -> Any:
        """The latest revision of one alert and every revision, oldest first."""
        alert = store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}; list them at /alerts")
        return {"alert": alert, "history": store.alert_history(alert_id)}

    def cap_response(event: dict[str, Any]) -> Response:
        wanted = [str(r) for r in event.get("references") or []]
        sent = store.sent_times(wanted)
        missing = [r for r in wanted if r not in sent]
        if missing:
            log.error(
                "CAP: referenced revisions missing from the store",
                extra={"alert_event_id": event["alert_event_id"], "missing": missing},
            )
            raise HTTPException(
                500, f"revision {event['alert_event_id']} refers to {missing}, not in the store"
            )
        try:
            xml = cap_xml(event, settings=cap_settings, references=[(r, sent[r]) for r in wanted])
        except (ValueError, KeyError) as exc:
            log.exception(
                "CAP: revision cannot be expressed as CAP 1.2",
                extra={"alert_event_id": event.get("alert_event_id")},
            )
            raise HTTPException(500, f"cannot build CAP for this revision: {exc}") from exc
        return Response(content=xml, media_type=CAP_MEDIA_TYPE)

    cap_doc = {200: {"content": {CAP_MEDIA_TYPE: {}}, "description": "CAP 1.2 XML."}}

    @app.get(
        "/alerts/{alert_id}/cap",
        tags=["cap"],
        response_class=Response,
        responses={**cap_doc, **_NOT_FOUND},
        summary="Latest revision as CAP 1.2",
    )
    def alert_cap(alert_id: Annotated[str, Path(description="The alert (episode) id.")]) -> Any:
        """The latest revision of an alert as a CAP 1.2 ``<alert>``."""
        alert = store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}; list them at /alerts")
        return cap_response(alert)

    @app.get(
        "/alert-events/{alert_event_id}/cap",
        tags=["cap"],
        response_class=Response,
        responses={**cap_doc, **_NOT_FOUND},
        summary="One revision as CAP 1.2",
    )
    def event_cap(
        alert_event_id: Annotated[
            str, Path(description="alert_id#revision, with '#' sent as %23.")
        ],
    ) -> Any:
        """One revision of an alert as a CAP 1.2 ``<alert>``."""
        event = store.get_event(alert_event_id)
        if event is None:
            raise HTTPException(
                404,
                f"no alert revision with id {alert_event_id!r} (alert_id#revision, '#' "
                "URL-encoded as %23)",
            )
        return cap_response(event)

    @app.get(
        "/feed/cap.atom",
        tags=["cap"],
        response_class=Response,
        responses={200: {"content": {ATOM_MEDIA_TYPE: {}}, "description": "Atom 1.0 feed."}},
        summary="Atom feed of firing alerts",
    )
    def cap_feed() -> Any:
        """Atom feed of the latest revision of every firing, non-suppressed alert.

        Each entry links the revision's CAP document. The feed's ``updated`` is the newest
        revision of *any* alert, so a feed that shrank because an alert ended also changes.
        """
        entries: dict[str, tuple[dict[str, Any], str]] = {}
        offset = 0
        while True:
            page = store.list_alerts(
                state="firing", include_suppressed=False, limit=_PAGE, offset=offset
            )
            for event in page:
                event_id = str(event["alert_event_id"])
                url = f"{base_url}/alert-events/{quote(event_id, safe='')}/cap"
                entries.setdefault(event_id, (event, url))  # pages may overlap under writes
            if len(page) < _PAGE:
                break
            offset += _PAGE
        newest = store.list_alerts(limit=1)
        updated = newest[0]["sent_at"] if newest else datetime.now(UTC)
        xml = atom_feed(
            list(entries.values()),
            feed_id=f"urn:insar-monitor:cap-feed:{quote(cap_settings.sender, safe='@.-_')}",
            title=f"{cap_settings.sender_name}: current alerts",
            self_url=f"{base_url}/feed/cap.atom",
            updated=updated,
            author=cap_settings.sender_name,
        )
        return Response(content=xml, media_type=ATOM_MEDIA_TYPE)

    # ------------------------------------------------------------------ map
    @app.get(
        "/map",
        tags=["map"],
        response_class=HTMLResponse,
        summary="Map of the current alerts",
    )
    def map_page() -> Any:
        """An HTML page drawing the alerts (fetched from ``/alerts``) on a map, with a table."""
        # api_base=None: the page resolves "alerts" against its own URL, so it keeps working
        # behind a reverse proxy that mounts the API under a prefix.
        return HTMLResponse(render_map_html(None))

    # ------------------------------------------------------------------ management
    manage = APIRouter(dependencies=[Depends(require_token)], responses={**_AUTH, **_INVALID})

    @manage.get(
        "/subscriptions",
        tags=["subscriptions"],
        response_model=SubscriptionList,
        summary="List subscriptions",
    )
    def list_subscriptions(
        active_only: Annotated[bool, Query(description="Only active subscriptions.")] = False,
    ) -> Any:
        """Every subscription, oldest first (secrets are never returned)."""
        subs = [_subscription_out(s) for s in store.list_subscriptions(active_only=active_only)]
        return {"subscriptions": subs, "count": len(subs)}

    @manage.post(
        "/subscriptions",
        tags=["subscriptions"],
        status_code=201,
        response_model=SubscriptionCreated,
        summary="Create a subscription",
    )
    def create_subscription(body: SubscriptionIn) -> Any:
        """Register a webhook; the response holds its signing ``secret``, this once only."""
        spec = SubscriptionSpec(
            name=body.name,
            url=body.url,
            area=body.area,
            hazards=tuple(body.hazards),
            min_severity=body.min_severity,
            format=body.format,  # type: ignore[arg-type]  # checked by spec.check below
        )
        try:
            spec.check()
            sub, secret = store.add_subscription(spec)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {**_subscription_out(sub), "secret": secret}

    @manage.get(
        "/subscriptions/{subscription_id}",
        tags=["subscriptions"],
        response_model=SubscriptionOut,
        responses=_NOT_FOUND,
        summary="One subscription",
    )
    def get_subscription(subscription_id: str) -> Any:
        sub = store.get_subscription(subscription_id)
        if sub is None:
            raise HTTPException(404, f"no subscription with id {subscription_id!r}")
        return _subscription_out(sub)

    @manage.delete(
        "/subscriptions/{subscription_id}",
        tags=["subscriptions"],
        response_model=SubscriptionOut,
        responses=_NOT_FOUND,
        summary="Deactivate a subscription",
    )
    def delete_subscription(subscription_id: str) -> Any:
        """Stop delivering to a subscriber; the record and its delivery log are kept."""
        if not store.deactivate_subscription(subscription_id):
            raise HTTPException(404, f"no subscription with id {subscription_id!r}")
        sub = store.get_subscription(subscription_id)
        assert sub is not None  # just updated
        log.info("subscription deactivated", extra={"subscription_id": subscription_id})
        return _subscription_out(sub)

    @manage.get(
        "/silences", tags=["silences"], response_model=SilenceList, summary="List silences"
    )
    def list_silences(
        active: Annotated[bool, Query(description="Only silences active now.")] = False,
    ) -> Any:
        now = datetime.now(UTC)
        found = store.silences(active_at=now if active else None)
        return {"silences": [_silence_out(s, now) for s in found], "count": len(found)}

    @manage.post(
        "/silences",
        tags=["silences"],
        status_code=201,
        response_model=SilenceOut,
        summary="Create a silence",
    )
    def create_silence(body: SilenceIn) -> Any:
        """Mute notifications of alerts whose labels match every matcher, for a window.

        Revisions of silenced alerts are still recorded and published, marked
        ``suppressed.silenced_by``.
        """
        now = datetime.now(UTC)
        starts_at = body.starts_at or now
        if body.ends_at is not None:
            ends_at = body.ends_at
        else:
            assert body.duration_hours is not None  # the model insists on one of the two
            ends_at = starts_at + timedelta(hours=body.duration_hours)
        if ends_at <= now:
            # Accepted, it would mute nothing and only clutter the list.
            raise HTTPException(422, f"the silence would already be over (ends_at {ends_at})")
        try:
            silence = store.add_silence(
                body.matchers,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=body.created_by,
                comment=body.comment,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        log.info(
            "silence added",
            extra={"silence_id": silence.silence_id, "created_by": silence.created_by},
        )
        return _silence_out(silence, now)

    @manage.delete(
        "/silences/{silence_id}",
        tags=["silences"],
        response_model=SilenceOut,
        responses={**_NOT_FOUND, 409: {"model": Problem, "description": "Already over."}},
        summary="Expire a silence",
    )
    def expire_silence(silence_id: str) -> Any:
        """End a silence now; it is kept for the record."""
        now = datetime.now(UTC)
        if not store.expire_silence(silence_id, now=now):
            known = any(s.silence_id == silence_id for s in store.silences())
            if known:
                raise HTTPException(409, f"silence {silence_id!r} has already ended")
            raise HTTPException(404, f"no silence with id {silence_id!r}")
        silence = next(s for s in store.silences() if s.silence_id == silence_id)
        log.info("silence expired", extra={"silence_id": silence_id})
        return _silence_out(silence, now)

    @manage.get(
        "/deliveries",
        tags=["deliveries"],
        response_model=DeliveryList,
        summary="The delivery log",
    )
    def list_deliveries(
        status: Annotated[
            Literal["pending", "delivered", "dead"] | None,
            Query(description="Only deliveries in this status."),
        ] = None,
        subscription_id: Annotated[
            str | None, Query(description="Only this subscriber's deliveries.")
        ] = None,
        alert_event_id: Annotated[
            str | None, Query(description="Only deliveries of this revision.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 100,
    ) -> Any:
        """Deliveries, newest first."""
        rows = store.list_deliveries(
            status=status,
            subscription_id=subscription_id,
            alert_event_id=alert_event_id,
            limit=limit,
        )
        return {"deliveries": rows, "count": len(rows)}

    @manage.post(
        "/deliveries/replay",
        tags=["deliveries"],
        response_model=ReplayOut,
        summary="Queue deliveries again",
    )
    def replay_deliveries(body: ReplayIn | None = None) -> Any:
        """Re-queue deliveries (dead-lettered ones by default) for the delivery worker."""
        body = body or ReplayIn()
        count = store.replay_deliveries(
            delivery_ids=body.delivery_ids,
            subscription_id=body.subscription_id,
            status=body.status,
        )
        log.info(
            "deliveries re-queued",
            extra={"count": count, "status": body.status, "subscription_id": body.subscription_id},
        )
        return {"requeued": count}

    app.include_router(manage)
    return app
