"""``insar-monitor hotspots`` on an EGMS-style CSV (both velocity sources) and a NetCDF grid."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from monitor.cli.main import main


def _points(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    lon = 14.0 + rng.uniform(0, 0.04, n)
    lat = 41.0 + rng.uniform(0, 0.04, n)
    vel = rng.normal(0, 2, n)
    bowl = (lon - 14.02) ** 2 + ((lat - 41.02) * 1.3) ** 2 < 0.004**2
    vel[bowl] = 30 + rng.normal(0, 3, bowl.sum())  # uplift: a hot area
    return lon, lat, vel, bowl


def _check_outputs(out, summary):
    for name in ("points.csv", "areas.geojson", "kde.nc", "kde.tif", "map.png", "summary.json"):
        assert (out / name).is_file(), name
    areas = json.loads((out / "areas.geojson").read_text())["features"]
    assert len(areas) == summary["n_areas"] == 1
    assert areas[0]["properties"]["sign"] == "hot"
    table = pd.read_csv(out / "points.csv")
    assert {"pid", "velocity_mm_yr", "z", "p", "hotspot_class"} <= set(table.columns)


def test_hotspots_from_mean_velocity_column(tmp_path, capsys):
    lon, lat, vel, bowl = _points()
    csv = tmp_path / "egms.csv"
    pd.DataFrame({"pid": [f"P{i}" for i in range(len(lon))], "latitude": lat, "longitude": lon,
                  "mean_velocity": vel}).to_csv(csv, index=False)
    assert main(["hotspots", str(csv), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_hot"] >= 0.8 * bowl.sum() and summary["crs"] == "EPSG:32633"
    _check_outputs(tmp_path / "out", summary)
    hot = pd.read_csv(tmp_path / "out" / "points.csv").set_index("pid")["hotspot_class"] > 0
    assert hot[[f"P{i}" for i in np.flatnonzero(bowl)]].mean() > 0.8


def test_hotspots_fits_velocity_from_date_columns_when_there_is_none(tmp_path, capsys):
    from pipelines.egms_csv import write_egms_csv

    lon, lat, vel, _ = _points(seed=1)
    dates = [date(2023, 1, 1) + timedelta(days=12 * k) for k in range(40)]
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    disp = vel[:, None] * t[None, :] + np.random.default_rng(1).normal(0, 1, (len(vel), 40))
    csv = write_egms_csv(tmp_path / "ts.csv", np.array([f"P{i}" for i in range(len(vel))]),
                         lon, lat, dates, disp)
    assert main(["hotspots", str(csv), "--out", str(tmp_path / "out"), "--distance", "200"]) == 0
    summary = json.loads(capsys.readouterr().out)
    _check_outputs(tmp_path / "out", summary)


def test_hotspots_on_a_netcdf_velocity_grid_in_a_metric_crs(tmp_path, capsys):
    import rioxarray  # noqa: F401
    import xarray as xr

    # A 100 m grid in EPSG:3035 (like EGMS L3) with an uplifting patch in the middle.
    x = 4_500_000 + 100.0 * np.arange(60)
    y = 2_000_000 + 100.0 * np.arange(60)[::-1]
    rng = np.random.default_rng(3)
    v = rng.normal(0, 2, (60, 60))
    v[25:33, 25:33] = 30 + rng.normal(0, 2, (8, 8))
    v[:3, :3] = np.nan
    da = xr.DataArray(v, coords={"y": y, "x": x}, dims=("y", "x"), name="velocity")
    da = da.rio.write_crs("EPSG:3035")
    path = tmp_path / "grid.nc"
    da.to_dataset().to_netcdf(path, engine="h5netcdf")
    assert main(["hotspots", str(path), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_points"] == 60 * 60 - 9
    _check_outputs(tmp_path / "out", summary)


@pytest.mark.parametrize("content", ["", "pid,longitude\nP1,14.0\n"])
def test_hotspots_refuses_unusable_input_with_a_reason(tmp_path, capsys, content):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["hotspots", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "insar-monitor:" in capsys.readouterr().err
