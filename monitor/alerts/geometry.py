"""Alert areas as GeoJSON in longitude/latitude: circles, tile boxes, buffered point hulls.

CAP 1.2 areas are polygons (and circles) in WGS 84 degrees; so is ``alert.v1``'s
``area.geometry``. Distances (circle radius, point buffer) are metres on the ellipsoid,
done with pyproj's geodesic and a local azimuthal-equidistant projection rather than
degree arithmetic, which would squash areas at high latitude.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import MultiPoint, box, mapping, shape
from shapely.ops import unary_union

_GEOD = Geod(ellps="WGS84")


def circle_polygon(
    longitude: float, latitude: float, radius_km: float, *, n: int = 64
) -> dict[str, Any]:
    """A GeoJSON Polygon approximating a geodesic circle (``n`` vertices, closed)."""
    azimuths = np.linspace(0.0, 360.0, n, endpoint=False)
    lons, lats, _ = _GEOD.fwd(
        np.full(n, longitude), np.full(n, latitude), azimuths, np.full(n, radius_km * 1000.0)
    )
    ring = [[round(float(x), 6), round(float(y), 6)] for x, y in zip(lons, lats, strict=True)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def area_of_spec(spec: Any) -> dict[str, Any]:
    """``alert.v1`` area (description, geometry, optional circle) of a rule's ``AreaSpec``."""
    if spec.circle is not None:
        c = spec.circle
        return {
            "description": spec.name,
            "geometry": circle_polygon(c.longitude, c.latitude, c.radius_km),
            "circle": {"longitude": c.longitude, "latitude": c.latitude, "radius_km": c.radius_km},
        }
    from monitor.alerts.subscriptions import geometry_of  # as AreaSpec validated it

    return {"description": spec.name, "geometry": _polygonal(geometry_of(spec.geometry))}


def boxes_area(bounds: Iterable[Sequence[float]], description: str) -> dict[str, Any] | None:
    """The union of ``(west, south, east, north)`` boxes as an area (None if no box)."""
    boxes = [box(*b) for b in bounds]
    if not boxes:
        return None
    return {"description": description, "geometry": _polygonal(unary_union(boxes))}


def buffered_hull(
    points: Sequence[tuple[float, float]], buffer_m: float, description: str
) -> dict[str, Any] | None:
    """Convex hull of ``(lon, lat)`` points grown by ``buffer_m`` metres (None if no point).

    One or two points give a disc or a capsule; ``buffer_m`` must then be positive.
    """
    if not points:
        return None
    lon0 = float(np.mean([p[0] for p in points]))
    lat0 = float(np.mean([p[1] for p in points]))
    local = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    fwd = _vectorised(Transformer.from_crs("EPSG:4326", local, always_xy=True))
    inv = _vectorised(Transformer.from_crs(local, "EPSG:4326", always_xy=True))
    hull = shapely.transform(MultiPoint(list(points)), fwd).convex_hull
    hull = hull.buffer(max(buffer_m, 1.0), 16)
    return {"description": description, "geometry": _polygonal(shapely.transform(hull, inv))}


def _vectorised(transformer: Transformer) -> Any:
    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return apply


def geometry_area(geometry: Mapping[str, Any], description: str) -> dict[str, Any]:
    """An area from a GeoJSON Polygon/MultiPolygon (e.g. an ADA outline)."""
    return {"description": description, "geometry": _polygonal(shape(geometry))}


def with_bbox(area: Mapping[str, Any]) -> dict[str, Any]:
    """The area with ``bbox`` (west, south, east, north) filled in from its geometry."""
    west, south, east, north = shape(area["geometry"]).bounds
    return {**area, "bbox": [round(west, 6), round(south, 6), round(east, 6), round(north, 6)]}


def intersects(area: Mapping[str, Any], bounds: Sequence[float]) -> bool:
    """Whether a ``(west, south, east, north)`` box touches the area's geometry."""
    return bool(shape(area["geometry"]).intersects(box(*bounds)))


def contains_point(area: Mapping[str, Any], lon: float, lat: float) -> bool:
    from shapely.geometry import Point

    return bool(shape(area["geometry"]).intersects(Point(lon, lat)))


def _polygonal(geom: Any) -> dict[str, Any]:
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        geom = geom.buffer(1e-6)  # a degenerate box (a line): give CAP a polygon
    if not geom.is_valid:
        geom = geom.buffer(0)
    out = mapping(geom)
    return {"type": out["type"], "coordinates": _round(out["coordinates"])}


def _round(coords: Any) -> Any:
    if isinstance(coords[0], int | float):
        return [round(float(coords[0]), 6), round(float(coords[1]), 6)]
    return [_round(c) for c in coords]
