"""Active deformation areas (ADAs): clusters of significant, fast-moving points, tracked in time.

The hot spot map (Getis-Ord Gi*) says *which points* sit in a cluster of unusually high or low
velocity. An alert needs *areas*: a polygon, how many points, how fast, and whether it is the
same area as in the last window. This module (pure: arrays and shapely geometries in, records
out) does three things:

1. :func:`cluster_areas` groups the points that are both significant hot/cold spots and
   faster than the stability threshold (±10 mm/yr in the source paper, which takes it from
   the standard deviation of the regional velocity) into connected components of the Gi*
   distance graph, hot and cold apart, and outlines each with a polygon;
2. :func:`track_areas` gives the areas of a new window stable ids by overlap with the areas of
   the previous window (stable / growing / shrinking / merged / split / new / gone);
3. :func:`areas_to_geojson` writes tracked areas as a GeoJSON FeatureCollection.

Sign convention: velocities are line-of-sight (LOS), positive towards the satellite. Areas
are called ``hot`` (clustered motion towards the satellite) and ``cold`` (away from it), the
words of the hot spot map, not "uplift"/"subsidence": LOS motion mixes vertical and
horizontal components, so a landslide on a slope facing away from the satellite moves away
from it (cold) without subsiding.

References
----------
Getis, A. and Ord, J. K. (1992), The analysis of spatial association by use of distance
statistics, Geographical Analysis 24(3), 189-206, doi:10.1111/j.1538-4632.1992.tb00261.x.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry import MultiPolygon, Polygon

from serving.signatures import TREND_CLASSES

Sign = Literal["hot", "cold"]
Status = Literal["new", "stable", "growing", "shrinking", "merged", "split", "gone"]

_QUAD_SEGS = 8
"""Segments per quarter circle of the discs (a 32-gon): error < 0.5 % of the radius."""

_SIMPLIFY_FRACTION = 0.01
"""Simplification tolerance as a share of the clustering distance (1.5 m at 150 m)."""

_CONNECT_MARGIN = 1e-3
"""Relative enlargement of the discs so that two points exactly ``distance`` apart overlap."""


@dataclass(frozen=True, eq=False)
class Area:
    """One active deformation area of one window.

    Attributes
    ----------
    polygon : shapely Polygon (MultiPolygon only in degenerate cases)
        Outline in the metric CRS of the input coordinates (m).
    sign : {"hot", "cold"}
        ``hot``: the points move towards the satellite (LOS velocity >= +threshold);
        ``cold``: away from it (<= -threshold).
    n_points : int
        Points in the area.
    area_m2 : float
        Area of ``polygon``, m².
    mean_abs_velocity, max_abs_velocity : float
        Mean and largest absolute LOS velocity of the points, mm/yr.
    dominant_trend : str or None
        Most common trend class name (``serving.signatures.TREND_CLASSES``) among the points
        with a class; ties go to the lower class id. None without trend classes.
    point_index : ndarray of int64, shape (n_points,)
        Indices of the points in the arrays given to :func:`cluster_areas`, increasing.
    centroid : tuple of float
        ``(x, y)`` mean position of the points, m (not the polygon's centroid: it does not
        move with the outline's simplification and orders areas deterministically).
    pid : ndarray or None, shape (n_points,)
        Point ids of the points, when given; used by tracking to match areas that share
        points.
    """

    polygon: Polygon | MultiPolygon
    sign: Sign
    n_points: int
    area_m2: float
    mean_abs_velocity: float
    max_abs_velocity: float
    dominant_trend: str | None
    point_index: np.ndarray
    centroid: tuple[float, float]
    pid: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TrackedArea:
    """An area with its id and its history across windows.

    Attributes
    ----------
    id : str
        Stable id: kept while the area persists, grows, shrinks, absorbs others (merge) or
        keeps the largest piece of a split.
    status : {"new", "stable", "growing", "shrinking", "merged", "split", "gone"}
        What happened to the area between the previous window and this one.
    area : Area
        The area in this window (for ``gone``: as last seen).
    first_seen : str
        Window end at which the area, or the earliest area it descends from (by merge or
        split), was first seen.
    last_seen : str
        Last window end at which the area was seen (this window unless ``gone``).
    merged_from : tuple of str
        For ``merged``: the ids of all previous areas it overlaps, sorted; else empty.
    split_from : str or None
        For ``split``: the id of the previous area it is a piece of. Every piece carries it,
        the piece that kept the id included, so ``split_from == x`` finds all of them.
    """

    id: str
    status: Status
    area: Area
    first_seen: str
    last_seen: str
    merged_from: tuple[str, ...] = ()
    split_from: str | None = None


@dataclass(frozen=True)
class TrackingResult:
    """Areas of one window after tracking.

    Attributes
    ----------
    active : tuple of TrackedArea
        The areas of the current window, ordered by centroid; pass them as ``previous`` to
        the next call.
    gone : tuple of TrackedArea
        Previous areas that no current area overlaps, status ``gone``, ordered by id.
        They are reported once and not carried forward.
    """

    active: tuple[TrackedArea, ...]
    gone: tuple[TrackedArea, ...]


def cluster_areas(
    xy: np.ndarray,
    velocity: np.ndarray,
    hotspot_class: np.ndarray,
    *,
    distance: float = 150.0,
    min_points: int = 5,
    stability_threshold: float = 10.0,
    trend_class: np.ndarray | None = None,
    pid: np.ndarray | None = None,
) -> list[Area]:
    """Group significant, fast-moving points into active deformation areas.

    A point takes part when it is a significant hot spot (``hotspot_class > 0``) with
    ``velocity >= stability_threshold``, or a significant cold spot (``< 0``) with
    ``velocity <= -stability_threshold``. The velocity must agree in sign with the spot:
    a point moving away from the satellite inside a cluster of points moving towards it
    is an outlier of that cluster, not evidence of its motion. Hot and cold points are
    clustered apart into connected components of the graph linking points at most
    ``distance`` apart (the Gi* distance band); components with fewer than ``min_points``
    points are dropped.

    The outline of an area is the union of discs of radius ``distance / 2`` around its
    points (so points linked in the graph give touching discs and one polygon), with the
    holes smaller than a disc of radius ``distance`` filled (gaps finer than the Gi*
    neighbourhood are not resolved) and simplified by 1 % of ``distance``. Unlike a
    concave hull it never bridges an empty gap wider than ``distance`` and needs no tuning.

    Parameters
    ----------
    xy : ndarray of float, shape (n, 2)
        Point coordinates in a metric CRS, m.
    velocity : ndarray of float, shape (n,)
        LOS velocity, mm/yr, positive towards the satellite. NaN points are ignored.
    hotspot_class : ndarray of int, shape (n,)
        Gi* confidence bin: +1..+3 hot spot (90/95/99 %), -1..-3 cold spot, 0 not
        significant.
    distance : float, default 150.0
        Linking distance, m (> 0); the source paper's Gi* distance band.
    min_points : int, default 5
        Fewest points in an area (>= 1).
    stability_threshold : float, default 10.0
        Smallest absolute velocity of a point in an area, mm/yr (>= 0).
    trend_class : ndarray of int, shape (n,), optional
        Trend class 0..4 of each point (negative = unclassified, ignored).
    pid : ndarray, shape (n,), optional
        Point ids, copied into each area.

    Returns
    -------
    list of Area
        Hot areas first, then cold, each ordered by centroid (x, then y).

    Raises
    ------
    ValueError
        On shapes that do not match or parameters out of range.

    Examples
    --------
    >>> xy = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [2000.0, 0.0]])
    >>> areas = cluster_areas(xy, np.array([-15.0, -22.0, -18.0, -30.0]),
    ...                       np.array([-3, -2, -3, -3]), min_points=3)
    >>> [(a.sign, a.n_points, round(a.max_abs_velocity, 1)) for a in areas]
    [('cold', 3, 22.0)]
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {xy.shape}")
    n = xy.shape[0]
    velocity = _per_point(velocity, n, "velocity").astype(np.float64)
    hotspot_class = _per_point(hotspot_class, n, "hotspot_class")
    if not np.issubdtype(hotspot_class.dtype, np.integer):
        raise ValueError(f"hotspot_class must be integer, got {hotspot_class.dtype}")
    if trend_class is not None:
        trend_class = _per_point(trend_class, n, "trend_class").astype(np.int64)
    if pid is not None:
        pid = _per_point(pid, n, "pid")
    if not (distance > 0 and math.isfinite(distance)):
        raise ValueError(f"distance must be a finite number > 0, got {distance}")
    if min_points < 1:
        raise ValueError(f"min_points must be >= 1, got {min_points}")
    if not stability_threshold >= 0:
        raise ValueError(f"stability_threshold must be >= 0, got {stability_threshold}")

    usable = np.isfinite(velocity) & np.isfinite(xy).all(axis=1)
    selections: tuple[tuple[Sign, np.ndarray], ...] = (
        ("hot", usable & (hotspot_class > 0) & (velocity >= stability_threshold)),
        ("cold", usable & (hotspot_class < 0) & (velocity <= -stability_threshold)),
    )
    areas: list[Area] = []
    for sign, chosen in selections:
        signed: list[Area] = []
        for members in _clusters(xy, np.flatnonzero(chosen), distance, min_points):
            signed.append(_make_area(xy, velocity, members, sign, distance, trend_class, pid))
        signed.sort(key=lambda a: (a.centroid[0], a.centroid[1]))
        areas.extend(signed)
    return areas


def track_areas(
    previous: Sequence[TrackedArea],
    current: Sequence[Area],
    *,
    window_end: str,
    id_prefix: str = "ada",
    change_threshold: float = 0.10,
) -> TrackingResult:
    """Give the areas of a new window stable ids by overlap with the previous window's.

    A previous and a current area *overlap* when they have the same sign and their
    polygons intersect with positive area, or they share a point id. Then:

    - one predecessor whose only successor is this area: the id is kept; status
      ``growing`` if the area grew by more than ``change_threshold`` (relative),
      ``shrinking`` if it shrank by more, else ``stable``;
    - several predecessors: ``merged``, ``merged_from`` lists them;
    - one predecessor with several successors: ``split``, ``split_from`` names it;
    - no predecessor: ``new``;
    - a previous area without successor: ``gone`` (in :attr:`TrackingResult.gone`).

    Ids are handed out greedily over the overlapping pairs, larger previous areas first
    and, for each, its largest successor first; each previous id goes to at most one
    current area. So a merged area keeps the id of its largest predecessor and the
    largest piece of a split keeps the parent's id (when a merge and a split compete for
    one id, the larger previous area chooses first). Areas left without an id get
    ``f"{id_prefix}-{window_end}-{k}"``, ``k = 0, 1, ...`` in centroid order (skipping
    ids already used), so the same inputs give the same ids, whatever their order.

    Parameters
    ----------
    previous : sequence of TrackedArea
        The ``active`` areas of the previous window (entries with status ``gone`` are
        ignored); empty for the first window.
    current : sequence of Area
        The areas of this window (:func:`cluster_areas`).
    window_end : str
        Label of this window, normally its end date (ISO); used in new ids and in
        ``first_seen`` / ``last_seen``.
    id_prefix : str, default "ada"
        Prefix of new ids.
    change_threshold : float, default 0.10
        Relative change of ``area_m2`` beyond which a kept area is ``growing`` or
        ``shrinking`` (>= 0).

    Returns
    -------
    TrackingResult
        ``active``: one TrackedArea per current area; ``gone``: previous areas without
        successor.

    Raises
    ------
    ValueError
        On duplicate ids in ``previous``, an empty ``window_end`` or a negative
        ``change_threshold``.
    """
    if not window_end:
        raise ValueError("window_end must be a non-empty label")
    if not change_threshold >= 0:
        raise ValueError(f"change_threshold must be >= 0, got {change_threshold}")
    prev = [p for p in previous if p.status != "gone"]
    prev_ids = [p.id for p in prev]
    if len(set(prev_ids)) != len(prev_ids):
        raise ValueError("previous areas have duplicate ids")
    # A canonical order makes every decision below independent of the input order.
    cur = sorted(current, key=_order_key)

    pairs = _overlapping_pairs([p.area for p in prev], cur)
    pred: list[list[int]] = [[] for _ in cur]
    succ: list[list[int]] = [[] for _ in prev]
    for i, j in pairs:
        pred[j].append(i)
        succ[i].append(j)

    inherited: dict[int, int] = {}  # current index -> previous index whose id it keeps
    taken: set[int] = set()
    for i, j in sorted(
        pairs,
        key=lambda ij: (-prev[ij[0]].area.area_m2, prev[ij[0]].id, -cur[ij[1]].area_m2, ij[1]),
    ):
        if i not in taken and j not in inherited:
            inherited[j] = i
            taken.add(i)

    used_ids = {p.id for p in previous}
    next_k = 0
    active: list[TrackedArea] = []
    for j, area in enumerate(cur):
        preds = pred[j]
        merged_from: tuple[str, ...] = ()
        split_from: str | None = None
        status: Status
        if not preds:
            status = "new"
        elif len(preds) > 1:
            status = "merged"
            merged_from = tuple(sorted(prev[i].id for i in preds))
        elif len(succ[preds[0]]) > 1:
            status = "split"
            split_from = prev[preds[0]].id
        else:
            status = _size_change(prev[preds[0]].area.area_m2, area.area_m2, change_threshold)

        if j in inherited:
            area_id = prev[inherited[j]].id
        else:
            while f"{id_prefix}-{window_end}-{next_k}" in used_ids:
                next_k += 1
            area_id = f"{id_prefix}-{window_end}-{next_k}"
            used_ids.add(area_id)
        first_seen = min([window_end, *(prev[i].first_seen for i in preds)])
        active.append(
            TrackedArea(area_id, status, area, first_seen, window_end, merged_from, split_from)
        )

    gone = [
        TrackedArea(p.id, "gone", p.area, p.first_seen, p.last_seen)
        for i, p in enumerate(prev)
        if not succ[i]
    ]
    gone.sort(key=lambda t: t.id)
    return TrackingResult(tuple(active), tuple(gone))


def areas_to_geojson(
    tracked: Sequence[TrackedArea],
    to_lonlat: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    crs_name: str | None = None,
) -> dict[str, Any]:
    """Tracked areas as a GeoJSON FeatureCollection.

    Parameters
    ----------
    tracked : sequence of TrackedArea
        Typically ``[*result.active, *result.gone]``.
    to_lonlat : callable, optional
        Maps metric coordinates, an array of shape (m, 2), to ``(lon, lat)`` arrays in
        degrees, e.g. a wrapped ``pyproj.Transformer.transform``. Coordinates are then
        rounded to 7 decimals (~1 cm). Without it the polygons stay in the metric CRS,
        rounded to 0.01 m, and the collection gets a ``crs`` member saying so (RFC 7946
        GeoJSON is lon/lat only; the member is the 2008 GeoJSON form).
    crs_name : str, optional
        Name of the metric CRS (e.g. ``"EPSG:32633"``) for that ``crs`` member.

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}`` (plus ``crs`` when metric);
        each feature has the area id as ``id`` and properties ``id``, ``status``,
        ``sign``, ``n_points``, ``area_m2``, ``mean_abs_velocity_mm_yr``,
        ``max_abs_velocity_mm_yr``, ``dominant_trend``, ``first_seen``, ``last_seen``,
        ``merged_from`` (list) and ``split_from`` (str or null). JSON-serialisable.
    """
    features = []
    for t in tracked:
        geom = t.area.polygon
        if to_lonlat is not None:
            geom = shapely.transform(geom, lambda c: np.round(np.column_stack(to_lonlat(c)), 7))
        else:
            geom = shapely.transform(geom, lambda c: np.round(c, 2))
        features.append(
            {
                "type": "Feature",
                "id": t.id,
                "geometry": json.loads(shapely.to_geojson(geom)),
                "properties": {
                    "id": t.id,
                    "status": t.status,
                    "sign": t.area.sign,
                    "n_points": int(t.area.n_points),
                    "area_m2": round(float(t.area.area_m2), 1),
                    "mean_abs_velocity_mm_yr": round(float(t.area.mean_abs_velocity), 2),
                    "max_abs_velocity_mm_yr": round(float(t.area.max_abs_velocity), 2),
                    "dominant_trend": t.area.dominant_trend,
                    "first_seen": t.first_seen,
                    "last_seen": t.last_seen,
                    "merged_from": list(t.merged_from),
                    "split_from": t.split_from,
                },
            }
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if to_lonlat is None:
        name = crs_name or "unspecified projected CRS"
        collection["crs"] = {
            "type": "name",
            "properties": {"name": name, "units": "m", "note": "metric, not lon/lat"},
        }
    return collection


# --- helpers ------------------------------------------------------------------------------


def _per_point(values: Any, n: int, name: str) -> np.ndarray:
    """``values`` as an array of shape (n,), or ValueError."""
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _clusters(
    xy: np.ndarray, idx: np.ndarray, distance: float, min_points: int
) -> list[np.ndarray]:
    """Connected components (point indices, increasing) of ``idx`` linked within ``distance``."""
    if idx.size < min_points:
        return []
    pairs = cKDTree(xy[idx]).query_pairs(r=distance, output_type="ndarray")
    m = idx.size
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(m, m)
    )
    _, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels)
    order = np.argsort(labels, kind="stable")  # stable: members stay in increasing order
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return [
        idx[order[starts[lab] : starts[lab] + counts[lab]]]
        for lab in np.flatnonzero(counts >= min_points)
    ]


def _make_area(
    xy: np.ndarray,
    velocity: np.ndarray,
    members: np.ndarray,
    sign: Sign,
    distance: float,
    trend_class: np.ndarray | None,
    pid: np.ndarray | None,
) -> Area:
    """The Area record of one cluster."""
    pts = xy[members]
    polygon = _outline(pts, distance)
    speed = np.abs(velocity[members])
    dominant = None
    if trend_class is not None:
        classes = trend_class[members]
        classes = classes[(classes >= 0) & (classes < len(TREND_CLASSES))]
        if classes.size:
            dominant = TREND_CLASSES[int(np.bincount(classes).argmax())]
    return Area(
        polygon=polygon,
        sign=sign,
        n_points=int(members.size),
        area_m2=float(polygon.area),
        mean_abs_velocity=float(speed.mean()),
        max_abs_velocity=float(speed.max()),
        dominant_trend=dominant,
        point_index=members.astype(np.int64),
        centroid=(float(pts[:, 0].mean()), float(pts[:, 1].mean())),
        pid=None if pid is None else pid[members],
    )


def _outline(pts: np.ndarray, distance: float) -> Polygon | MultiPolygon:
    """Union of discs of radius ``distance / 2`` around ``pts``, small holes filled, simplified."""
    # The buffer polygon is inscribed in its circle; enlarge it to circumscribe the circle
    # (plus a margin) so that discs of points exactly ``distance`` apart overlap, keeping a
    # connected component in one piece.
    n_vertices = 4 * _QUAD_SEGS
    radius = 0.5 * distance / math.cos(math.pi / n_vertices) * (1.0 + _CONNECT_MARGIN)
    discs = shapely.buffer(shapely.points(np.unique(pts, axis=0)), radius, quad_segs=_QUAD_SEGS)
    union = shapely.union_all(discs)
    min_hole = math.pi * distance**2
    parts = [
        Polygon(p.exterior, [r for r in p.interiors if Polygon(r).area >= min_hole])
        for p in getattr(union, "geoms", [union])
    ]
    filled = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    return shapely.simplify(filled, _SIMPLIFY_FRACTION * distance, preserve_topology=True)


def _order_key(area: Area) -> tuple[float, float, int, int]:
    """Deterministic order of areas: centroid (to the mm), then sign, then size."""
    return (
        round(area.centroid[0], 3),
        round(area.centroid[1], 3),
        0 if area.sign == "hot" else 1,
        area.n_points,
    )


def _size_change(before_m2: float, after_m2: float, threshold: float) -> Status:
    """``growing`` / ``shrinking`` / ``stable`` from the relative change of the area."""
    if after_m2 > before_m2 * (1.0 + threshold):
        return "growing"
    if after_m2 < before_m2 * (1.0 - threshold):
        return "shrinking"
    return "stable"


def _overlapping_pairs(prev: Sequence[Area], cur: Sequence[Area]) -> list[tuple[int, int]]:
    """``(previous index, current index)`` of same-sign areas sharing area or point ids."""
    found: set[tuple[int, int]] = set()
    if prev and cur:
        tree = shapely.STRtree([a.polygon for a in prev])
        cur_idx, prev_idx = tree.query([a.polygon for a in cur], predicate="intersects")
        for j, i in zip(cur_idx.tolist(), prev_idx.tolist(), strict=True):
            if (
                prev[i].sign == cur[j].sign
                and prev[i].polygon.intersection(cur[j].polygon).area > 0
            ):
                found.add((i, j))

        with_pid = [i for i, a in enumerate(prev) if a.pid is not None and len(a.pid)]
        if with_pid:
            all_pid = np.concatenate([np.asarray(prev[i].pid).astype(str) for i in with_pid])
            owner = np.repeat(with_pid, [len(prev[i].pid) for i in with_pid])
            for j, a in enumerate(cur):
                if a.pid is None or not len(a.pid):
                    continue
                hit = np.isin(all_pid, np.asarray(a.pid).astype(str))
                for i in np.unique(owner[hit]).tolist():
                    if prev[i].sign == a.sign:
                        found.add((i, j))
    return sorted(found)
