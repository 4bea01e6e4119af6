"""The FastAPI application: :func:`create_app` assembles the API's routers and error replies.

Reading is open to anyone who can reach the API: the alert list and history (``alert.v1``),
each revision as CAP 1.2 XML, the Atom feed public alert hubs poll, the map page and the
health check (:mod:`monitor.api.routes_alerts`). Managing what the daemon *does* — webhook
subscriptions, silences, the delivery log and its replay (:mod:`monitor.api.routes_manage`)
— needs a bearer token from ``api.tokens`` (:mod:`monitor.api.auth`); with no token
configured those endpoints refuse every request, so a fresh install never exposes them.
Request and response bodies are the models of :mod:`monitor.api.models`.

Swagger UI and ReDoc are switched off because both load their JavaScript from a CDN and the
daemon runs in observatories without internet access; the OpenAPI document itself is served
at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from monitor.api.routes_alerts import alerts_router
from monitor.api.routes_manage import manage_router
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertStore

__all__ = ["create_app"]


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


# ---------------------------------------------------------------------------- error replies
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
    app.include_router(alerts_router(store, config))
    app.include_router(manage_router(store, config))
    return app
