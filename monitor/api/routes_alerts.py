"""The open, read-only endpoints of the API: alerts, CAP 1.2, the Atom feed, the map, health.

Anyone who can reach the API may read these: the alert list and history (``alert.v1``), each
revision as a CAP 1.2 document, the Atom feed of firing alerts that public alert hubs poll,
the map page for the duty officer and the health check. :func:`alerts_router` builds them
over an alert store; :func:`monitor.api.app.create_app` mounts them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from shapely.errors import GEOSException
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.atom import atom_feed
from monitor.alerts.cap import cap_xml, settings_from_config
from monitor.alerts.levels import Hazard, Severity, severity_rank
from monitor.api.map_page import render_map_html
from monitor.api.models import (
    INVALID,
    NOT_FOUND,
    AlertDetail,
    AlertList,
    AlertPoint,
    Health,
    Rfc3339,
)
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertStore

__all__ = ["ATOM_MEDIA_TYPE", "CAP_MEDIA_TYPE", "alerts_router"]

log = logging.getLogger(__name__)

CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
# The store's list query is paged; the feed and the map read this many alerts per page.
_PAGE = 1000


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


def _area_point(area: dict[str, Any]) -> tuple[float, float] | None:
    """``(longitude, latitude)`` of the centroid of an alert's area geometry.

    A concave or multi-part area can have its centroid outside itself (a ring of uplift
    around a caldera, two separate patches); a marker there would point at ground the alert
    is not about, so such areas get shapely's representative point, which always lies
    inside. Without a usable geometry the centre of ``bbox`` is used; None when neither is.
    """
    try:
        geom = shape(area["geometry"])
        if not geom.is_empty:
            point = geom.centroid
            if not geom.covers(point):
                point = geom.representative_point()
            return float(point.x), float(point.y)
    except (KeyError, TypeError, ValueError, AttributeError, GEOSException):
        pass
    bbox = area.get("bbox")
    if isinstance(bbox, list | tuple) and len(bbox) == 4:
        west, south, east, north = (float(v) for v in bbox)
        return (west + east) / 2, (south + north) / 2
    return None


def _alert_point(alert: dict[str, Any]) -> dict[str, Any] | None:
    """An alert.v1 revision as one flat map row (:class:`AlertPoint`), or None without area."""
    where = _area_point(alert.get("area") or {})
    if where is None:
        return None
    longitude, latitude = where
    return {
        "alert_id": alert["alert_id"],
        "rule": alert["rule"]["name"],
        "hazard": alert["hazard"],
        "severity": alert["severity"],
        "severity_rank": severity_rank(alert["severity"]),
        "state": alert["state"],
        "place": alert["place"]["name"],
        "headline": alert["headline"],
        "event_time": str(alert["event_time"]),
        "latitude": latitude,
        "longitude": longitude,
    }


def alerts_router(store: AlertStore, config: MonitorConfig) -> APIRouter:
    """The open endpoints over ``store``.

    Parameters
    ----------
    store
        The alert store the daemon writes; these endpoints only read it.
    config
        The effective configuration: ``api`` (the public URL the feed links to) and
        ``alerts.cap`` (the CAP sender) are used.
    """
    router = APIRouter()
    base_url = config.api.base_url()
    cap_settings = settings_from_config(config, serving_api=True)

    # ------------------------------------------------------------------ health
    @router.get(
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
    @router.get(
        "/alerts",
        tags=["alerts"],
        response_model=AlertList,
        responses=INVALID,
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

    # Registered before /alerts/{alert_id}, which would otherwise take "points" for an id.
    @router.get(
        "/alerts/points",
        tags=["alerts"],
        response_model=list[AlertPoint],
        responses=INVALID,
        summary="Alerts as map points",
    )
    def alert_points(
        state: Annotated[
            Literal["firing", "resolved", "expired"],
            Query(description="Only alerts in this state."),
        ] = "firing",
        include_suppressed: Annotated[
            bool, Query(description="Include silenced or inhibited alerts.")
        ] = False,
        limit: Annotated[
            int, Query(ge=1, le=5000, description="Most alerts returned, newest first.")
        ] = 1000,
    ) -> Any:
        """One flat row per alert, located at the centroid of its area.

        Made for map panels such as Grafana's Geomap fed by the Infinity data source: a
        JSON array with no nesting, ``latitude``/``longitude`` in degrees and a numeric
        ``severity_rank`` (0 Minor .. 3 Extreme) to colour markers by.
        """
        alerts = store.list_alerts(state=state, include_suppressed=include_suppressed, limit=limit)
        points = []
        for alert in alerts:
            point = _alert_point(alert)
            if point is None:
                log.warning(
                    "alert has no usable area; left off the map points",
                    extra={"alert_id": alert.get("alert_id")},
                )
                continue
            points.append(point)
        return points

    @router.get(
        "/alerts/{alert_id}",
        tags=["alerts"],
        response_model=AlertDetail,
        responses=NOT_FOUND,
        summary="One alert with its history",
    )
    def get_alert(alert_id: Annotated[str, Path(description="The alert (episode) id.")]) -> Any:
        """The latest revision of one alert and every revision, oldest first."""
        alert = store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}; list them at /alerts")
        return {"alert": alert, "history": store.alert_history(alert_id)}

    # ------------------------------------------------------------------ CAP
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

    @router.get(
        "/alerts/{alert_id}/cap",
        tags=["cap"],
        response_class=Response,
        responses={**cap_doc, **NOT_FOUND},
        summary="Latest revision as CAP 1.2",
    )
    def alert_cap(alert_id: Annotated[str, Path(description="The alert (episode) id.")]) -> Any:
        """The latest revision of an alert as a CAP 1.2 ``<alert>``."""
        alert = store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}; list them at /alerts")
        return cap_response(alert)

    @router.get(
        "/alert-events/{alert_event_id}/cap",
        tags=["cap"],
        response_class=Response,
        responses={**cap_doc, **NOT_FOUND},
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

    @router.get(
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
    @router.get(
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

    return router
