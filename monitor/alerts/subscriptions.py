"""Who wants which alert: the subscription record and the pure matching rule.

A subscriber registers a webhook URL, an area of interest (GeoJSON geometry in
longitude/latitude; none means everywhere), the hazards it cares about (none means all)
and a minimum severity. A revision is delivered when its area intersects the subscriber's
area, its hazard is wanted and its severity reaches the minimum. Updates and the final
Cancel of an alert also go to every subscriber that received an earlier revision of it,
even if the alert has since dropped below their minimum severity: whoever was told about
an alert must be told when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shapely import make_valid
from shapely.errors import GeometryTypeError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from monitor.alerts.levels import HAZARDS, SEVERITIES, severity_rank

DeliveryFormat = Literal["json", "cap"]


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a subscriber asks for (validated by :meth:`check`)."""

    name: str
    url: str
    area: Mapping[str, Any] | None = None
    hazards: Sequence[str] = ()
    min_severity: str = "Minor"
    format: DeliveryFormat = "json"

    def check(self) -> None:
        """Raise ValueError with a readable reason when the spec is unusable."""
        if not self.name.strip():
            raise ValueError("subscription name is empty")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s)://, got {self.url!r}")
        unknown = sorted(set(self.hazards) - set(HAZARDS))
        if unknown:
            raise ValueError(f"unknown hazards {unknown}; known: {', '.join(HAZARDS)}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(
                f"min_severity {self.min_severity!r} is not one of {', '.join(SEVERITIES)}"
            )
        if self.format not in ("json", "cap"):
            raise ValueError(f"format must be json or cap, got {self.format!r}")
        if self.area is not None:
            geometry_of(self.area)


@dataclass(frozen=True)
class Subscription:
    """A stored subscription (the secret stays in the store)."""

    subscription_id: str
    name: str
    url: str
    area: Mapping[str, Any] | None
    hazards: tuple[str, ...]
    min_severity: str
    format: DeliveryFormat
    active: bool
    created_at: datetime
    _geometry: BaseGeometry | None = field(default=None, compare=False, repr=False)

    def geometry(self) -> BaseGeometry | None:
        if self.area is None:
            return None
        if self._geometry is None:
            object.__setattr__(self, "_geometry", geometry_of(self.area))
        return self._geometry

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "name": self.name,
            "url": self.url,
            "area": self.area,
            "hazards": list(self.hazards),
            "min_severity": self.min_severity,
            "format": self.format,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
        }


def geometry_of(area: Mapping[str, Any]) -> BaseGeometry:
    """A shapely geometry from GeoJSON (a geometry, a Feature or a FeatureCollection).

    Raises ValueError for anything that is not usable GeoJSON, including an empty
    geometry (a subscription to nowhere would silently receive nothing).
    """
    try:
        kind = area.get("type")
        if kind == "Feature":
            return geometry_of(area["geometry"])
        if kind == "FeatureCollection":
            from shapely.ops import unary_union

            geom = unary_union([geometry_of(f) for f in area["features"]])
        else:
            geom = shape(area)
    except (KeyError, TypeError, AttributeError, ValueError, GeometryTypeError) as e:
        raise ValueError(f"area is not valid GeoJSON: {e}") from e
    if geom.is_empty:
        raise ValueError("area is an empty geometry")
    if not geom.is_valid:
        # Self-crossing rings drawn by hand: repair rather than refuse, keeping every part.
        geom = make_valid(geom)
    return geom


def matches(subscription: Subscription, event: Mapping[str, Any], *, received_before: bool) -> bool:
    """Whether one alert revision (``alert.v1``) goes to ``subscription``.

    Parameters
    ----------
    subscription : Subscription
    event : mapping
        The ``alert.v1`` revision.
    received_before : bool
        The subscriber got an earlier revision of the same alert: it then gets every later
        one (updates and the end), whatever their severity.
    """
    if not subscription.active:
        return False
    if received_before:
        return True
    if event["state"] != "firing":
        return False  # an alert that ends before anyone was told of it is not news
    if subscription.hazards and event["hazard"] not in subscription.hazards:
        return False
    if severity_rank(event["severity"]) < severity_rank(subscription.min_severity):
        return False
    wanted = subscription.geometry()
    if wanted is None:
        return True
    return bool(wanted.intersects(geometry_of(event["area"]["geometry"])))
