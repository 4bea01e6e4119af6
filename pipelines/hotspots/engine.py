"""Rolling hot spots of one PS dataset, recomputed after its store tiles were updated.

What one computation does, for the dataset's points:

1. refresh the rolling-window velocity (and the last trend class) of every point of the store
   tiles the updates touched;
2. Getis-Ord Gi* over all points with a velocity, in a metric CRS fixed at the first
   computation. Only the metric tiles holding touched points (plus a halo of the distance
   band, :func:`pipelines.hotspots.tiled.gi_star_tiled`) are recomputed, with the
   dataset-wide mean and standard deviation; when those have drifted by more than
   ``full_recompute_drift`` standard deviations since the last whole computation, every
   point is recomputed (z-scores of untouched tiles depend on them);
3. Benjamini-Hochberg FDR over all p-values, ArcGIS-style confidence bins;
4. active deformation areas (hot and cold separately, above the stability threshold),
   tracked against the previous computation's areas (stable ids);
5. the z-weighted quartic kernel density surface;
6. optionally (a ``delineator``, see :mod:`pipelines.delineation_stage`), the areas the
   delineation U-Net outlines on that surface, tracked apart from the clustered ones with
   ids ``dada-...``.

The per-dataset state (points table, tracked areas, the statistics of the last whole
computation) lives next to the PS store. It remembers which computation produced it and the
areas before it (clustered and delineated), so replaying the same triggering updates after a
crash reproduces the same area statuses ("new" stays "new") instead of comparing the areas
with themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.signatures import TREND_CLASSES

STATE_FORMAT = 1

DELINEATED_ID_PREFIX = "dada"
"""Id prefix of delineated areas: ``dada-<window end>-<k>``, never equal to a clustered
``ada-...`` id, so alert places and products keep the two apart."""

Delineator = Callable[..., tuple[Any, dict[str, Any]]]
"""``delineator(kde, *, xy, velocity, trend_class, pid) -> (Delineation, payload block)``:
runs the delineation U-Net on one density surface (:class:`pipelines.delineation_stage.
Delineator`). Any error propagates: the computation fails and nothing is stored."""


@dataclass(frozen=True)
class HotspotParams:
    """The method's parameters (see the ``hotspots`` section of the configuration)."""

    distance_m: float = 150.0
    window_days: int = 365
    min_window_epochs: int = 5
    fdr: bool = True
    alpha: float = 0.05
    stability_threshold_mm_yr: float = 10.0
    min_area_points: int = 5
    tile_size_m: float = 5000.0
    kde_cell_m: float = 50.0
    kde_radius_m: float = 300.0
    crs: str | None = None
    full_recompute_drift: float = 0.01

    @classmethod
    def from_config(cls, section: Any) -> HotspotParams:
        return cls(**{f: getattr(section, f) for f in cls.__dataclass_fields__})


@dataclass
class DatasetState:
    """Everything a dataset's next computation needs from the previous one."""

    dataset_id: str
    crs: str | None = None
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    window_end: str | None = None
    full_stats: tuple[float, float] | None = None  # (mean, std) of the last whole computation
    tracked: list[Any] = field(default_factory=list)  # TrackedArea of the last computation
    last_hotspot_id: str | None = None
    tracked_before_last: list[Any] = field(default_factory=list)
    # Delineated areas (U-Net), tracked like ``tracked`` / ``tracked_before_last``.
    delineated: list[Any] = field(default_factory=list)
    delineated_before_last: list[Any] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # States pickled before a field existed load with that field's default.
        for f in fields(self):
            if f.name not in state:
                state[f.name] = f.default_factory() if f.default_factory is not MISSING else (
                    f.default
                )
        self.__dict__.update(state)


def hotspot_id(dataset_id: str, triggers: Sequence[dict[str, Any]]) -> str:
    """Deterministic id of the computation triggered by ``triggers`` (their source offsets)."""
    keys = sorted(f"{t['topic']}/{t['partition']}/{t['offset']}" for t in triggers)
    digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:12]
    return f"hotspots:{dataset_id}:{digest}"


# --- state on disk -------------------------------------------------------------------------
class HotspotStateStore:
    """One pickle per dataset under ``<root>/<dataset>/_hotspots.pkl``, replaced atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, dataset_id: str) -> Path:
        from pipelines.ps_store import encode_id

        return self.root / encode_id(dataset_id) / "_hotspots.pkl"

    def read(self, dataset_id: str) -> DatasetState:
        path = self._path(dataset_id)
        if not path.is_file():
            return DatasetState(dataset_id)
        with path.open("rb") as f:
            version, state = pickle.load(f)
        if version != STATE_FORMAT:
            raise ValueError(f"{path}: hot-spot state format {version}, expected {STATE_FORMAT}")
        return state

    def write(self, state: DatasetState) -> None:
        path = self._path(state.dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hotspots-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump((STATE_FORMAT, state), f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


# --- the computation -------------------------------------------------------------------------
@dataclass
class HotspotResult:
    """One computation: the payload of ``hotspot.v1`` and the arrays behind the products."""

    payload: dict[str, Any]
    points: pd.DataFrame
    tracked: list[Any]
    kde: Any  # xarray.DataArray or None
    crs: str
    delineation: Any = None  # pipelines.hotspots.delineation.Delineation, when it ran
    delineated: list[Any] = field(default_factory=list)  # its TrackedArea (gone included)


def _refresh_points(
    state: DatasetState, store: Any, tiles: Sequence[str], params: HotspotParams
) -> tuple[pd.DataFrame, str]:
    """Velocity and trend class of the points of ``tiles``, upserted into the points table."""
    from pipelines.hotspots.velocity import rolling_velocity

    frames = []
    loaded = [
        s for s in (store.read_series(state.dataset_id, t) for t in tiles) if s is not None
    ]
    ends = [state.window_end] if state.window_end else []
    ends += [str(series.dates[-1]) for series in loaded]
    window_end = max(ends) if ends else None
    for series in loaded:  # window_end is set whenever a series was loaded
        tile_id = series.tile_id
        vel = rolling_velocity(
            series.dates,
            series.displacement_mm,
            window_days=params.window_days,
            end=np.datetime64(window_end, "D"),
            min_epochs=params.min_window_epochs,
        )
        classes = store.read_classes(state.dataset_id, tile_id)
        trend = (
            classes.lookup(series.pid)[0]
            if classes is not None
            else np.full(len(series.pid), -1, np.int8)
        )
        frames.append(
            pd.DataFrame(
                {
                    "store_tile": tile_id,
                    "pid": series.pid.astype(str),
                    "longitude": series.longitude,
                    "latitude": series.latitude,
                    "velocity_mm_yr": vel.velocity_mm_yr,
                    "trend_class": trend.astype(np.int8),
                }
            )
        )
    points = state.points
    if frames:
        fresh = pd.concat(frames, ignore_index=True)
        if len(points):
            stale = points.set_index(["store_tile", "pid"]).index.isin(
                fresh.set_index(["store_tile", "pid"]).index
            )
            points = pd.concat([points[~stale], fresh], ignore_index=True)
        else:
            points = fresh
    return points.reset_index(drop=True), window_end or ""


def compute_hotspots(
    state: DatasetState,
    store: Any,
    touched_tiles: Sequence[str],
    triggers: Sequence[dict[str, Any]],
    params: HotspotParams,
    *,
    delineator: Delineator | None = None,
) -> tuple[HotspotResult, DatasetState]:
    """Recompute the dataset's hot spots after ``touched_tiles`` were updated.

    With ``delineator``, the U-Net's areas of the density surface are tracked too and the
    payload gets ``delineated_areas`` and ``delineation``. Returns the result and the state
    to store *after* its outputs are durable.
    """
    from pipelines.hotspots.gistar import GlobalStats
    from pipelines.hotspots.gistar import gi_star as whole_gi_star
    from pipelines.hotspots.projection import to_metric
    from pipelines.hotspots.tiled import gi_star_tiled, tile_ids

    this_id = hotspot_id(state.dataset_id, triggers)
    # A replay of the computation that produced the stored state starts from what it saw.
    replay = state.last_hotspot_id == this_id
    previous_tracked = state.tracked_before_last if replay else state.tracked
    previous_delineated = state.delineated_before_last if replay else state.delineated
    points, window_end = _refresh_points(state, store, touched_tiles, params)
    valid = np.isfinite(points["velocity_mm_yr"].to_numpy()) if len(points) else np.zeros(0, bool)
    usable = points[valid].reset_index(drop=True)
    n = len(usable)

    crs = state.crs
    if n:
        xy, crs = to_metric(
            usable["longitude"].to_numpy(), usable["latitude"].to_numpy(), crs or params.crs
        )
    else:
        xy = np.zeros((0, 2))
    values = usable["velocity_mm_yr"].to_numpy(dtype=float)
    stats = GlobalStats.of(values) if n >= 3 else None
    z = np.zeros(n)
    p = np.ones(n)
    recomputed = "whole_dataset"
    full_stats = state.full_stats
    n_recomputed = 0
    if stats is not None and stats.std > 0:
        drift_ok = full_stats is not None and (
            abs(stats.mean - full_stats[0]) <= params.full_recompute_drift * full_stats[1]
            and abs(stats.std - full_stats[1]) <= params.full_recompute_drift * full_stats[1]
        )
        grid = tile_ids(xy, params.tile_size_m)
        touched = usable["store_tile"].isin(list(touched_tiles)).to_numpy()
        tiles = sorted(set(grid[touched].tolist()))
        outside = ~np.isin(grid, tiles)
        old_z = usable["z"].to_numpy(dtype=float) if "z" in usable else None
        # Points outside the recomputed tiles keep their z: only valid if they all have one.
        have_old = old_z is not None and bool(np.isfinite(old_z[outside]).all())
        if drift_ok and have_old:
            recomputed = "touched_tiles"
            part = gi_star_tiled(
                xy, values, params.distance_m, tile_size=params.tile_size_m, tiles=tiles,
                global_stats=stats,
            )
            z = np.where(outside, old_z, np.nan)
            p = np.where(outside, usable["p"].to_numpy(dtype=float), np.nan)
            z[part.index] = part.z
            p[part.index] = part.p
            n_recomputed = len(part.index)
        else:
            result = whole_gi_star(xy, values, params.distance_m, global_stats=stats)
            z, p = result.z, result.p
            full_stats = (stats.mean, stats.std)
            n_recomputed = n
    bins = _significant_bins(z, p, params)
    usable = usable.assign(z=z, p=p, hotspot_class=bins)
    points = points.drop(columns=[c for c in ("z", "p", "hotspot_class") if c in points])
    points = points.merge(
        usable[["store_tile", "pid", "z", "p", "hotspot_class"]], on=["store_tile", "pid"],
        how="left",
    )

    tracking, kde = _areas_and_density(
        xy, values, z, bins, usable, params, crs, previous_tracked, window_end or "none"
    )
    tracked = list(tracking.active) + list(tracking.gone)
    delineated = _delineate(
        delineator, kde, xy, values, usable, previous_delineated, window_end or "none"
    )

    window_start = (
        str(np.datetime64(window_end, "D") - np.timedelta64(params.window_days, "D"))
        if window_end
        else None
    )
    payload = {
        "schema": "hotspot.v1",
        "hotspot_id": this_id,
        "dataset_id": state.dataset_id,
        "window": {"start": window_start or "1970-01-01", "end": window_end or "1970-01-01"},
        "produced_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "triggered_by": [dict(t) for t in triggers],
        "method": {
            "statistic": "getis_ord_gi_star",
            "distance_m": params.distance_m,
            "fdr": params.fdr,
            "alpha": params.alpha,
            "stability_threshold_mm_yr": params.stability_threshold_mm_yr,
            "window_days": params.window_days,
            "crs": crs or "none",
            "recomputed": recomputed,
        },
        "summary": {
            "n_points": n,
            "n_recomputed": n_recomputed,
            "n_hot": int((bins > 0).sum()),
            "n_cold": int((bins < 0).sum()),
            "mean_velocity_mm_yr": float(stats.mean) if stats else 0.0,
            "std_velocity_mm_yr": float(stats.std) if stats else 0.0,
        },
        "areas": _areas_payload(tracked, crs),
    }
    if delineated is not None:
        payload["delineated_areas"] = _areas_payload(delineated.tracked, crs)
        payload["delineation"] = delineated.info
    new_state = replace(
        state,
        crs=crs,
        points=points,
        window_end=window_end or state.window_end,
        full_stats=full_stats,
        tracked=list(tracking.active),
        last_hotspot_id=this_id,
        tracked_before_last=list(previous_tracked),
        # Without a delineation this time, the areas of the last one stay the reference.
        delineated=list(delineated.active) if delineated else list(previous_delineated),
        delineated_before_last=list(previous_delineated),
    )
    result = HotspotResult(
        payload, points, tracked, kde, crs or "",
        delineation=delineated.delineation if delineated else None,
        delineated=delineated.tracked if delineated else [],
    )
    return result, new_state


@dataclass(frozen=True)
class _Delineated:
    """The delineation of one computation, its areas tracked."""

    delineation: Any
    info: dict[str, Any]
    active: list[Any]
    tracked: list[Any]  # active, then gone


def _delineate(
    delineator: Delineator | None,
    kde: Any,
    xy: np.ndarray,
    values: np.ndarray,
    usable: pd.DataFrame,
    previous: Sequence[Any],
    window_end: str,
) -> _Delineated | None:
    """Run ``delineator`` on the density surface and track its areas against ``previous``
    (None without a delineator or a surface with a finite cell)."""
    from pipelines.hotspots.areas import track_areas

    if delineator is None or kde is None or not np.isfinite(kde.values).any():
        return None
    delineation, info = delineator(
        kde,
        xy=xy,
        velocity=values,
        trend_class=usable["trend_class"].to_numpy(dtype=np.int8),
        pid=usable["pid"].to_numpy(),
    )
    tracking = track_areas(
        previous, delineation.areas, window_end=window_end, id_prefix=DELINEATED_ID_PREFIX
    )
    active = list(tracking.active)
    return _Delineated(delineation, info, active, active + list(tracking.gone))


def _areas_payload(tracked: Sequence[Any], crs: str | None) -> list[dict[str, Any]]:
    from pipelines.hotspots.areas import areas_to_geojson
    from pipelines.hotspots.projection import from_metric

    if not tracked or not crs:
        return []

    def to_lonlat(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return from_metric(np.asarray(xy, dtype=float), crs)

    collection = areas_to_geojson(tracked, to_lonlat)
    out = []
    for feature in collection["features"]:
        props = dict(feature["properties"])
        geometry = feature["geometry"]
        from shapely.geometry import shape

        centroid = shape(geometry).centroid
        out.append(
            {
                "id": props["id"],
                "status": props["status"],
                "sign": props["sign"],
                "n_points": int(props["n_points"]),
                "area_m2": float(props["area_m2"]),
                "mean_abs_velocity_mm_yr": float(props["mean_abs_velocity_mm_yr"]),
                "max_abs_velocity_mm_yr": float(props["max_abs_velocity_mm_yr"]),
                "dominant_trend": props.get("dominant_trend"),
                "first_seen": props.get("first_seen"),
                "last_seen": props.get("last_seen"),
                "merged_from": list(props.get("merged_from") or []),
                "split_from": props.get("split_from"),
                "centroid": [round(centroid.x, 7), round(centroid.y, 7)],
                "geometry": geometry,
            }
        )
    return out


def trend_name(class_id: int) -> str | None:
    return TREND_CLASSES[class_id] if 0 <= class_id < len(TREND_CLASSES) else None


def write_products(result: HotspotResult, directory: Path) -> dict[str, str]:
    """Points CSV, areas GeoJSON, KDE NetCDF + GeoTIFF and a PNG map; returns their URIs."""
    from pipelines.hotspots.kde import write_geotiff, write_netcdf

    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    points = result.points.copy()
    if "trend_class" in points:
        points["trend"] = [trend_name(int(c)) for c in points["trend_class"].fillna(-1)]
    points.to_csv(directory / "points.csv", index=False)
    out["points_csv"] = (directory / "points.csv").resolve().as_uri()
    geojson = _feature_collection(result.payload["areas"])
    (directory / "areas.geojson").write_text(json.dumps(geojson))
    out["areas_geojson"] = (directory / "areas.geojson").resolve().as_uri()
    if result.delineation is not None:
        delineated = _feature_collection(result.payload.get("delineated_areas", []))
        (directory / "delineated_areas.geojson").write_text(json.dumps(delineated))
        out["delineated_areas_geojson"] = (
            (directory / "delineated_areas.geojson").resolve().as_uri()
        )
        write_geotiff(result.delineation.probability, directory / "ada_probability.tif")
        out["ada_probability_geotiff"] = (directory / "ada_probability.tif").resolve().as_uri()
    if result.kde is not None:
        write_netcdf(result.kde, directory / "kde.nc")
        write_geotiff(result.kde, directory / "kde.tif")
        out["kde_netcdf"] = (directory / "kde.nc").resolve().as_uri()
        out["kde_geotiff"] = (directory / "kde.tif").resolve().as_uri()
    from pipelines.hotspots.maps import plot_hotspot_map

    plot_hotspot_map(result, directory / "map.png")
    out["map_png"] = (directory / "map.png").resolve().as_uri()
    return out


def _feature_collection(areas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Payload area items as a GeoJSON FeatureCollection (lon/lat)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": a["geometry"],
             "properties": {k: v for k, v in a.items() if k != "geometry"}}
            for a in areas
        ],
    }


def analyse_snapshot(
    points: pd.DataFrame,
    params: HotspotParams,
    *,
    label: str = "snapshot",
    delineator: Delineator | None = None,
) -> HotspotResult:
    """Whole-area hot spots of one table of points (no state, no tracking history).

    ``points`` has ``pid``, ``longitude``, ``latitude``, ``velocity_mm_yr`` and optionally
    ``trend_class``. Every area comes out as "new". With ``delineator`` the U-Net's areas
    are added as in :func:`compute_hotspots`. Used by ``insar-monitor hotspots``.
    """
    from pipelines.hotspots.gistar import GlobalStats, gi_star
    from pipelines.hotspots.projection import to_metric

    table = points.copy()
    if "trend_class" not in table:
        table["trend_class"] = np.int8(-1)
    table["store_tile"] = label
    usable = table[np.isfinite(table["velocity_mm_yr"].to_numpy(dtype=float))]
    usable = usable.reset_index(drop=True)
    if len(usable) < 3:
        raise ValueError(f"{len(usable)} points with a velocity: Gi* needs at least 3")
    xy, crs = to_metric(usable["longitude"].to_numpy(), usable["latitude"].to_numpy(), params.crs)
    values = usable["velocity_mm_yr"].to_numpy(dtype=float)
    stats = GlobalStats.of(values)
    result = gi_star(xy, values, params.distance_m, global_stats=stats)
    bins = _significant_bins(result.z, result.p, params)
    usable = usable.assign(z=result.z, p=result.p, hotspot_class=bins)
    tracking, kde = _areas_and_density(
        xy, values, result.z, bins, usable, params, crs, [], label
    )
    tracked = list(tracking.active)
    delineated = _delineate(delineator, kde, xy, values, usable, [], label)
    table = table.merge(usable[["pid", "z", "p", "hotspot_class"]], on="pid", how="left")
    payload = {
        "hotspot_id": f"hotspots:{label}",
        "summary": {
            "n_points": len(usable),
            "n_hot": int((bins > 0).sum()),
            "n_cold": int((bins < 0).sum()),
            "mean_velocity_mm_yr": stats.mean,
            "std_velocity_mm_yr": stats.std,
        },
        "areas": _areas_payload(tracked, crs),
    }
    if delineated is not None:
        payload["delineated_areas"] = _areas_payload(delineated.tracked, crs)
        payload["delineation"] = delineated.info
    return HotspotResult(
        payload, table, tracked, kde, crs,
        delineation=delineated.delineation if delineated else None,
        delineated=delineated.tracked if delineated else [],
    )


def _areas_and_density(
    xy: np.ndarray,
    values: np.ndarray,
    z: np.ndarray,
    bins: np.ndarray,
    usable: pd.DataFrame,
    params: HotspotParams,
    crs: str | None,
    previous: Sequence[Any],
    window_end: str,
) -> tuple[Any, Any]:
    """Areas of the significant points tracked against ``previous``, and the density
    surface (None without points or CRS)."""
    from pipelines.hotspots.areas import cluster_areas, track_areas
    from pipelines.hotspots.kde import z_weighted_kde

    n = len(usable)
    areas = cluster_areas(
        xy, values, bins,
        distance=params.distance_m,
        min_points=params.min_area_points,
        stability_threshold=params.stability_threshold_mm_yr,
        trend_class=usable["trend_class"].to_numpy(dtype=np.int8) if n else None,
        pid=usable["pid"].to_numpy() if n else None,
    )
    tracking = track_areas(previous, areas, window_end=window_end)
    kde = None
    if n and crs:
        kde = z_weighted_kde(
            xy, z, radius=params.kde_radius_m, cell_size=params.kde_cell_m, crs=crs
        )
    return tracking, kde


def _significant_bins(z: np.ndarray, p: np.ndarray, params: HotspotParams) -> np.ndarray:
    """ArcGIS-style bins (+-1/2/3 = 90/95/99 %), kept only where significant at ``alpha``."""
    from pipelines.hotspots.gistar import classify_hotspots

    bins = classify_hotspots(z, p, fdr=params.fdr)
    level = 3 if params.alpha <= 0.01 else 2 if params.alpha <= 0.05 else 1
    return np.where(np.abs(bins) >= level, bins, 0).astype(np.int8)
