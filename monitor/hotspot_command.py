"""``insar-monitor hotspots``: hot spots and active deformation areas of one velocity product.

The input is either an EGMS-style CSV (velocity from its ``mean_velocity`` column, or fitted
over the last ``window_days`` of its date columns when it has none) or a NetCDF velocity
grid (every finite cell is a point; a grid in a metric CRS such as EGMS L3's EPSG:3035 is
converted to longitude/latitude first, then projected like any other input). The output
directory gets the per-point table (velocity, z, p, confidence bin), the areas as GeoJSON,
the z-weighted density surface as NetCDF and GeoTIFF, and a PNG map. With delineation
settings (``--delineate``) the ADA delineation U-Net also runs on the density surface
(:mod:`pipelines.delineation_stage`), adding ``delineated_areas.geojson`` and
``ada_probability.tif``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.raster_io import ProductError

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


def points_from_csv(path: Path, window_days: int, min_epochs: int) -> pd.DataFrame:
    """pid, longitude, latitude, velocity_mm_yr from an EGMS-style CSV."""
    from pipelines.egms_csv import read_egms_csv

    head = pd.read_csv(path, nrows=0).columns
    if "mean_velocity" in head:
        cols = [c for c in ("pid", "longitude", "latitude", "mean_velocity") if c in head]
        table = pd.read_csv(path, usecols=cols, dtype={"pid": str})
        missing = {"pid", "longitude", "latitude"} - set(table.columns)
        if missing:
            raise ProductError("schema_error", f"{path}: missing columns {sorted(missing)}")
        return table.rename(columns={"mean_velocity": "velocity_mm_yr"})
    from pipelines.hotspots.velocity import rolling_velocity

    ps = read_egms_csv(path, min_epochs=1)
    dates = np.array(ps.dates, dtype="datetime64[D]")
    vel = rolling_velocity(dates, ps.displacement_mm, window_days=window_days,
                           min_epochs=min_epochs)
    return pd.DataFrame({"pid": ps.pid.astype(str), "longitude": ps.longitude,
                         "latitude": ps.latitude, "velocity_mm_yr": vel.velocity_mm_yr})


def points_from_netcdf(path: Path) -> pd.DataFrame:
    """Every finite cell of a velocity grid as a point (cell centres)."""
    import rioxarray  # noqa: F401
    import xarray as xr

    ds = xr.open_dataset(path, engine="h5netcdf", decode_coords="all")
    names = [n for n in ("velocity", "mean_velocity", "vel", "Band1", "band_data")
             if n in ds.data_vars] or [n for n, v in ds.data_vars.items() if v.ndim == 2]
    if not names:
        raise ProductError("no_velocity_variable", f"{path}: no 2-D velocity variable")
    da = ds[names[0]].squeeze()
    crs = da.rio.crs
    if crs is None:
        raise ProductError("no_crs", f"{path}: the velocity grid has no CRS")
    xdim, ydim = da.rio.x_dim, da.rio.y_dim
    xx, yy = np.meshgrid(da[xdim].values, da[ydim].values)
    values = np.asarray(da.values, dtype=float)
    ok = np.isfinite(values)
    x, y = xx[ok], yy[ok]
    if crs.is_geographic:
        lon, lat = x, y
    else:
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return pd.DataFrame({"pid": [f"cell_{i}" for i in range(ok.sum())], "longitude": lon,
                         "latitude": lat, "velocity_mm_yr": values[ok]})


def run_hotspots(
    path: Path, out: Path, params: Any, *, delineation: Any = None
) -> dict[str, Any]:
    """Analyse ``path``, write the products into ``out``; return a summary dict.

    Parameters
    ----------
    path : Path
        EGMS-style CSV or NetCDF velocity grid.
    out : Path
        Output directory (created).
    params : pipelines.hotspots.engine.HotspotParams
    delineation : pipelines.delineation_stage.DelineationSettings, optional
        Also run the delineation U-Net (a fresh client of ``delineation.endpoint``,
        closed afterwards). The summary then has ``n_delineated_areas`` and
        ``delineation`` (the ``hotspot.v1`` block plus ``used``, in words).

    Raises
    ------
    ProductError
        The input cannot be read.
    ValueError
        Too few points, or a DEM that cannot be read (``TerrainError``).
    serving.clients.InferenceError
        The model is missing, does not match its contract, or the server is down.
    """
    from pipelines.hotspots.engine import analyse_snapshot, write_products

    path = Path(path)
    if not path.is_file():
        raise ProductError("not_found", f"{path}: file not found")
    if delineation is not None and delineation.dem_path is not None:
        from pipelines.delineation_stage import check_dem

        check_dem(delineation.dem_path)  # before any work: a bad DEM is the caller's error
    if path.suffix.lower() in NETCDF_SUFFIXES:
        points = points_from_netcdf(path)
    else:
        points = points_from_csv(path, params.window_days, params.min_window_epochs)
    client = None
    try:
        delineator = None
        if delineation is not None:
            from pipelines.delineation_stage import Delineator

            client = delineation.endpoint.build_client()
            version = int(client.check_signature()["version"])
            delineator = Delineator(delineation, client=client, model_version=version)
        result = analyse_snapshot(points, params, label=path.stem, delineator=delineator)
    finally:
        if client is not None:
            client.close()
    products = write_products(result, Path(out))
    summary = {**result.payload["summary"], "n_areas": len(result.payload["areas"]),
               "crs": result.crs, "products": products}
    if "delineation" in result.payload:
        info = result.payload["delineation"]
        summary["n_delineated_areas"] = len(result.payload["delineated_areas"])
        summary["delineation"] = {**info, "used": describe_inputs(info["inputs"])}
    elif delineation is not None:
        summary["n_delineated_areas"] = 0
        summary["delineation"] = {"used": None, "note": "no density surface: nothing to delineate"}
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def describe_inputs(inputs: list[str]) -> str:
    """What the U-Net looked at, in words, from the inputs that carried data.

    >>> describe_inputs(["hotspot_density"])
    'the hot spot map alone'
    >>> describe_inputs(["hotspot_density", "aspect_deg"])
    'the hot spot map + terrain aspect'
    """
    terrain = [name for key, name in (("aspect_deg", "aspect"), ("slope_deg", "slope"))
               if key in inputs]
    if not terrain:
        return "the hot spot map alone"
    return "the hot spot map + terrain " + " + ".join(terrain)
