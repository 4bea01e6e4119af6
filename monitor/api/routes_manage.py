"""The management endpoints of the API: webhook subscriptions, silences and the delivery log.

These change what the daemon does — whom it notifies, which alerts it mutes, which failed
deliveries it retries — so every one of them sits behind the bearer-token guard of
:mod:`monitor.api.auth`. :func:`manage_router` builds them over an alert store;
:func:`monitor.api.app.create_app` mounts them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from monitor.alerts.matchers import Silence
from monitor.alerts.subscriptions import Subscription, SubscriptionSpec
from monitor.api.auth import AUTH_ERRORS, make_token_check
from monitor.api.models import (
    INVALID,
    NOT_FOUND,
    DeliveryList,
    Problem,
    ReplayIn,
    ReplayOut,
    SilenceIn,
    SilenceList,
    SilenceOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertStore

__all__ = ["manage_router"]

log = logging.getLogger(__name__)


def _subscription_out(sub: Subscription) -> dict[str, Any]:
    return sub.to_json_dict()


def _silence_out(silence: Silence, now: datetime) -> dict[str, Any]:
    return {**silence.to_json_dict(), "active": silence.active_at(now)}


def manage_router(store: AlertStore, config: MonitorConfig) -> APIRouter:
    """The token-guarded management endpoints over ``store``.

    Parameters
    ----------
    store
        The alert store: subscriptions, silences and deliveries are read and written there.
    config
        The effective configuration: ``api.tokens`` are the bearer tokens accepted.
    """
    require_token = make_token_check(config)
    manage = APIRouter(
        dependencies=[Depends(require_token)], responses={**AUTH_ERRORS, **INVALID}
    )

    # ------------------------------------------------------------------ subscriptions
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
        responses=NOT_FOUND,
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
        responses=NOT_FOUND,
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

    # ------------------------------------------------------------------ silences
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
        responses={**NOT_FOUND, 409: {"model": Problem, "description": "Already over."}},
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

    # ------------------------------------------------------------------ deliveries
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

    return manage
