"""``insar-monitor hotspots --delineate [--dem]`` on a small EGMS-style CSV.

The U-Net is the stand-in of ``tests/delineation_fixtures.py`` (probability rising with the
hot spot density), exported into a temporary model base given with ``--model-dir``: the
checks are on the plumbing (products, ids, what the summary says the U-Net used).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.cli.main import main
from tests.delineation_fixtures import export_density_delineator
from tests.test_hotspot_cli import _points


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models")
    export_density_delineator(base)
    return base


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    lon, lat, vel, _ = _points(n=800)
    path = tmp_path / "egms.csv"
    pd.DataFrame({"pid": [f"P{i}" for i in range(len(lon))], "latitude": lat, "longitude": lon,
                  "mean_velocity": vel}).to_csv(path, index=False)
    return path


def _dem_over(path: Path, csv: Path) -> Path:
    """A DEM GeoTIFF in EPSG:4326 over the CSV's points (a plane rising to the north)."""
    import rioxarray  # noqa: F401
    import xarray as xr

    table = pd.read_csv(csv)
    lon = np.arange(table.longitude.min() - 0.01, table.longitude.max() + 0.01, 0.0005)
    lat = np.arange(table.latitude.max() + 0.01, table.latitude.min() - 0.01, -0.0005)
    elevation = np.tile(2000.0 * (lat - lat.min())[:, None] * 111.0, (1, len(lon)))
    da = xr.DataArray(elevation.astype("f4"), coords={"y": lat, "x": lon}, dims=("y", "x"))
    da.rio.write_crs("EPSG:4326").rio.to_raster(path)
    return path


def test_delineate_writes_the_delineated_products_and_says_it_used_the_map_alone(
    tmp_path: Path, csv: Path, model_base: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    args = ["hotspots", str(csv), "--out", str(out), "--delineate", "--model-dir", str(model_base)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("delineated_areas.geojson", "ada_probability.tif", "areas.geojson", "map.png"):
        assert (out / name).is_file(), name
    features = json.loads((out / "delineated_areas.geojson").read_text())["features"]
    assert len(features) == summary["n_delineated_areas"] >= 1
    assert all(f["properties"]["id"].startswith("dada-") for f in features)
    info = summary["delineation"]
    assert info["used"] == "the hot spot map alone" and info["terrain"] == "none"
    assert info["inputs"] == ["hotspot_density"] and info["model"] == "ada_delineator"
    assert summary["products"]["ada_probability_geotiff"].endswith("ada_probability.tif")
    assert json.loads((out / "summary.json").read_text()) == summary


def test_delineate_with_a_dem_says_it_used_terrain_aspect(
    tmp_path: Path, csv: Path, model_base: Path, capsys: pytest.CaptureFixture[str]
):
    dem = _dem_over(tmp_path / "dem.tif", csv)
    args = ["hotspots", str(csv), "--out", str(tmp_path / "out"), "--delineate",
            "--dem", str(dem), "--model-dir", str(model_base)]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)["delineation"]
    assert info["used"] == "the hot spot map + terrain aspect" and info["terrain"] == "dem"


def test_without_delineate_nothing_of_the_unet_is_written(
    tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["hotspots", str(csv), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "delineation" not in summary
    assert not (tmp_path / "out" / "delineated_areas.geojson").exists()


@pytest.mark.parametrize(
    ("extra", "status", "fragment"),
    [
        (["--dem", "dem.tif"], 2, "--dem needs --delineate"),
        (["--delineate", "--dem", "missing.tif"], 2, "no such file"),
        (["--delineate", "--model-dir", "empty"], 1, "delineation model could not run"),
        (["--delineate", "--dem", "notraster.tif"], 1, "cannot read DEM"),
    ],
)
def test_delineate_refuses_bad_arguments_with_a_clear_message(
    tmp_path: Path, csv: Path, model_base: Path, capsys: pytest.CaptureFixture[str],
    extra: list[str], status: int, fragment: str,
):
    (tmp_path / "dem.tif").write_text("x")
    (tmp_path / "notraster.tif").write_text("not a raster")
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / a) if a.endswith((".tif", "empty")) else a for a in extra]
    if "--model-dir" not in extra:
        extra += ["--model-dir", str(model_base)]
    assert main(["hotspots", str(csv), "--out", str(tmp_path / "out"), *extra]) == status
    assert fragment in capsys.readouterr().err


def test_help_says_what_the_unet_looks_at(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["hotspots", "--help"])
    text = capsys.readouterr().out
    for words in ("--delineate", "--dem PATH", "hot spot map alone", "terrain aspect",
                  "delineated_areas.geojson", "ada_probability.tif", "delineation.threshold"):
        assert words in text, words
