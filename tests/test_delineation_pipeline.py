"""The delineation U-Net in the hot spot stage: config, model call, payload, state, outages.

The model is a stand-in with a known answer (``tests/delineation_fixtures.py``: probability
rises with |density|), exported once per module into a temporary model base, so these tests
check the plumbing (endpoint, tiling round trip, ids, tracking, replay, products, schema,
outage handling) and not what a trained U-Net would find.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.config import ConfigError, load_config
from pipelines.hotspots.engine import (
    DatasetState,
    HotspotParams,
    HotspotStateStore,
    compute_hotspots,
    write_products,
)
from pipelines.messages import validate
from pipelines.ps_store import PSStore
from tests.delineation_fixtures import export_density_delineator
from tests.test_hotspot_engine import _tile, _trigger


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models")
    export_density_delineator(base)
    return base


def _config(model_base: Path, tmp_path: Path, **env: str) -> Any:
    environ = {
        "INSAR_MONITOR__MODELS__MODEL_BASE": str(model_base),
        "INSAR_MONITOR__STORAGE__STATE_DIR": str(tmp_path / "state"),
        **{f"INSAR_MONITOR__DELINEATION__{k.upper()}": v for k, v in env.items()},
    }
    return load_config(environ=environ)


def _delineator(config: Any) -> Any:
    from pipelines.delineation_stage import DelineationSettings, Delineator

    return Delineator(DelineationSettings.from_config(config))


def _dem(path: Path, crs_of: str, bounds: tuple[float, float, float, float]) -> Path:
    """A DEM GeoTIFF over ``bounds`` (metric, ``crs_of``): a plane rising to the north."""
    import rioxarray  # noqa: F401
    import xarray as xr

    x = np.arange(bounds[0], bounds[2], 30.0) + 15.0
    y = np.arange(bounds[3], bounds[1], -30.0) - 15.0
    elevation = np.tile(0.2 * (y - y.min())[:, None], (1, len(x)))  # ~11 degrees, facing south
    da = xr.DataArray(elevation.astype("f4"), coords={"y": y, "x": x}, dims=("y", "x"))
    da.rio.write_crs(crs_of).rio.to_raster(path)
    return path


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[PSStore, HotspotStateStore]:
    store = PSStore(tmp_path / "store")
    _tile(store, "T1", 14.0, np.random.default_rng(0))  # one subsiding patch
    return store, HotspotStateStore(tmp_path / "store")


# ------------------------------------------------------------------------------ config
def test_delineation_config_defaults_and_environment_overrides(tmp_path: Path):
    config = load_config(environ={})
    d = config.delineation
    assert (d.enabled, d.dem_path, d.use_slope, d.threshold, d.overlap, d.min_area_m2) == (
        True, None, False, 0.5, 32, 20000.0
    )
    assert config.models.delineation_version is None
    dem = tmp_path / "dem.tif"
    dem.write_bytes(b"not checked at load")
    config = load_config(environ={
        "INSAR_MONITOR__DELINEATION__DEM_PATH": str(dem),
        "INSAR_MONITOR__DELINEATION__USE_SLOPE": "true",
        "INSAR_MONITOR__DELINEATION__THRESHOLD": "0.7",
        "INSAR_MONITOR__MODELS__DELINEATION_VERSION": "3",
    })
    assert config.delineation.dem_path == dem and config.delineation.use_slope
    assert config.delineation.threshold == 0.7 and config.models.delineation_version == 3


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("DEM_PATH", "/no/such/dem.tif", "delineation.dem_path.*does not exist.*GeoTIFF"),
        ("USE_SLOPE", "true", "use_slope needs a DEM"),
        ("THRESHOLD", "1.0", "delineation.threshold"),
        ("THRESHOLD", "0", "delineation.threshold"),
        ("OVERLAP", "200", "delineation.overlap"),
        ("MIN_AREA_M2", "-1", "delineation.min_area_m2"),
        ("TRESHOLD", "0.5", "delineation.treshold"),
    ],
)
def test_invalid_delineation_config_names_the_key(key: str, value: str, fragment: str):
    with pytest.raises(ConfigError, match=fragment):
        load_config(environ={f"INSAR_MONITOR__DELINEATION__{key}": value})


def test_the_delineation_endpoint_follows_the_models_section(tmp_path: Path):
    from pipelines.context import PipelineContext
    from pipelines.model_endpoint import ModelEndpoint

    config = load_config(environ={
        "INSAR_MONITOR__MODELS__BACKEND": "grpc",
        "INSAR_MONITOR__MODELS__DELINEATION_VERSION": "2",
        "INSAR_MONITOR__MODELS__MAX_BATCH": "8",
        "INSAR_MONITOR__STORAGE__STATE_DIR": str(tmp_path),
    })
    endpoint = ModelEndpoint.from_config(config, "ada_delineator")
    assert (endpoint.backend, endpoint.version, endpoint.max_batch) == ("grpc", 2, 8)
    ctx = PipelineContext.from_config(config)
    assert ctx.delineation.endpoint == endpoint and ctx.delineation.batch == 8
    assert pickle.loads(pickle.dumps(ctx)) == ctx  # travels to Beam workers
    for off in ("DELINEATION__ENABLED", "HOTSPOTS__ENABLED"):
        off_config = load_config(environ={f"INSAR_MONITOR__{off}": "false"})
        assert PipelineContext.from_config(off_config).delineation is None


# ---------------------------------------------------------------------------- engine
def test_delineated_areas_make_a_valid_payload_and_their_products(
    model_base: Path, tmp_path: Path, dataset: Any
):
    store, states = dataset
    config = _config(model_base, tmp_path)
    result, state = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams(),
        delineator=_delineator(config),
    )
    payload = result.payload
    assert payload["delineation"] == {
        "model": "ada_delineator", "model_version": 1, "inputs": ["hotspot_density"],
        "terrain": "none", "note": payload["delineation"]["note"], "threshold": 0.5,
    }
    assert "no DEM" in payload["delineation"]["note"]
    (area,) = payload["delineated_areas"]  # the stand-in outlines the one strong patch
    assert area["id"].startswith("dada-") and area["status"] == "new"
    assert set(area) == set(payload["areas"][0])  # the same item shape as the clustered ones
    assert area["n_points"] > 0 and area["sign"] == "cold"
    assert [a.id for a in state.delineated] == [area["id"]]
    assert result.delineation.probability.shape == result.kde.shape

    payload["products"] = write_products(result, tmp_path / "out")
    validate("hotspot.v1", payload)
    for name in ("delineated_areas.geojson", "ada_probability.tif", "map.png", "areas.geojson"):
        assert (tmp_path / "out" / name).is_file(), name
    import rioxarray

    tif = rioxarray.open_rasterio(tmp_path / "out" / "ada_probability.tif")
    assert tif.shape[1:] == result.kde.shape and tif.rio.crs == result.kde.rio.crs


def test_a_payload_without_delineation_still_validates_and_has_no_delineated_fields(
    tmp_path: Path, dataset: Any
):
    store, states = dataset
    result, state = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams()
    )
    assert "delineated_areas" not in result.payload and "delineation" not in result.payload
    validate("hotspot.v1", result.payload)
    assert state.delineated == [] and result.delineation is None


def test_a_replayed_computation_reports_the_same_delineated_statuses(
    model_base: Path, tmp_path: Path, dataset: Any
):
    store, states = dataset
    delineator = _delineator(_config(model_base, tmp_path))
    triggers = [_trigger("T1", 0)]
    first, state = compute_hotspots(
        states.read("ds"), store, ["T1"], triggers, HotspotParams(), delineator=delineator
    )
    states.write(state)  # died after storing the state, before publishing: replayed
    again, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], triggers, HotspotParams(), delineator=delineator
    )

    def statuses(r: Any) -> list[tuple[str, str]]:
        return [(a["id"], a["status"]) for a in r.payload["delineated_areas"]]

    assert statuses(again) == statuses(first) and statuses(first)[0][1] == "new"
    later, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 1)], HotspotParams(),
        delineator=delineator,
    )
    assert [i for i, _ in statuses(later)] == [i for i, _ in statuses(first)]
    assert all(s != "new" for _, s in statuses(later))


def test_a_state_pickled_before_delineation_loads_with_empty_delineated_areas(tmp_path: Path):
    old = DatasetState("ds", crs="EPSG:32633", last_hotspot_id="hotspots:ds:1")
    for name in ("delineated", "delineated_before_last"):
        del old.__dict__[name]  # what an older DatasetState pickled
    store = HotspotStateStore(tmp_path)
    store.write(old)
    loaded = store.read("ds")
    assert loaded.delineated == [] and loaded.delineated_before_last == []
    assert loaded.crs == "EPSG:32633" and loaded.last_hotspot_id == "hotspots:ds:1"


def test_a_dem_gives_the_unet_terrain_aspect_and_one_that_misses_the_grid_is_said(
    model_base: Path, tmp_path: Path, dataset: Any
):
    store, states = dataset
    plain, _ = compute_hotspots(states.read("ds"), store, ["T1"], [_trigger("T1", 0)],
                                HotspotParams())
    kde = plain.kde
    left, bottom, right, top = kde.rio.bounds()
    covering = _dem(tmp_path / "dem.tif", str(kde.rio.crs),
                    (left - 500, bottom - 500, right + 500, top + 500))
    elsewhere = _dem(tmp_path / "far.tif", str(kde.rio.crs),
                     (left + 50_000, bottom, right + 50_000, top))
    with_dem, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams(),
        delineator=_delineator(_config(model_base, tmp_path, dem_path=str(covering))),
    )
    info = with_dem.payload["delineation"]
    assert info["terrain"] == "dem" and info["inputs"] == ["hotspot_density", "aspect_deg"]
    validate("hotspot.v1", with_dem.payload)
    missed, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams(),
        delineator=_delineator(_config(model_base, tmp_path, dem_path=str(elsewhere))),
    )
    info = missed.payload["delineation"]
    assert info["terrain"] == "none" and info["inputs"] == ["hotspot_density"]
    assert "DEM not used" in info["note"] and "does not cover" in info["note"]


def test_a_grid_off_the_trained_cell_size_is_said_in_the_note(
    model_base: Path, tmp_path: Path, dataset: Any
):
    store, states = dataset
    config = _config(model_base, tmp_path)
    on_scale, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams(),
        delineator=_delineator(config),
    )
    assert "trained on" not in (on_scale.payload["delineation"]["note"] or "")
    coarse, _ = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)],
        dataclasses.replace(HotspotParams(), kde_cell_m=100.0),
        delineator=_delineator(config),
    )
    note = coarse.payload["delineation"]["note"]
    assert "hot spot cells of 100 m, the U-Net was trained on 50 m" in note
    assert note.startswith("no DEM configured")  # the terrain reason is kept


def test_the_hotspot_stage_publishes_delineated_areas_and_stores_them(
    model_base: Path, tmp_path: Path, dataset: Any
):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipelines.context import PipelineContext
    from pipelines.transforms import ComputeHotspots

    store, states = dataset
    ctx = dataclasses.replace(
        PipelineContext.from_config(_config(model_base, tmp_path)),
        ps_store=str(store.root), archive_dir=str(tmp_path / "archive"),
    )

    def summary(payload: dict[str, Any]) -> tuple[Any, ...]:
        validate("hotspot.v1", payload)
        return (
            payload["delineation"]["model"],
            [a["id"][:5] for a in payload["delineated_areas"]],
            Path(payload["products"]["ada_probability_geotiff"].removeprefix("file://")).is_file(),
        )

    with TestPipeline() as p:
        out = p | beam.Create([("ds", _trigger("T1", 0))]) | ComputeHotspots(ctx)
        assert_that(out | beam.Map(summary), equal_to([("ada_delineator", ["dada-"], True)]))
    assert [a.id[:5] for a in states.read("ds").delineated] == ["dada-"]


# --------------------------------------------------------------------------- outages
def test_an_unavailable_model_fails_the_hotspot_stage_and_stores_nothing(
    tmp_path: Path, dataset: Any
):
    from pipelines.context import PipelineContext
    from pipelines.transforms import _HotspotFn
    from serving.clients import InferenceError

    store, states = dataset
    empty_base = tmp_path / "no-models"
    empty_base.mkdir()
    config = _config(empty_base, tmp_path)
    ctx = dataclasses.replace(PipelineContext.from_config(config), ps_store=str(store.root))
    fn = _HotspotFn(ctx)
    fn.setup()
    with pytest.raises(InferenceError) as info:
        list(fn.process(("ds", [_trigger("T1", 0)])))
    assert info.value.retryable  # the daemon retries the pass; nothing was committed
    assert not (store.root / "ds" / "_hotspots.pkl").exists()
    assert states.read("ds").last_hotspot_id is None


def test_an_open_circuit_fails_the_delineation_instead_of_dropping_it(
    model_base: Path, tmp_path: Path, dataset: Any
):
    from pipelines.delineation_stage import DelineationSettings, Delineator
    from serving.clients import CircuitOpenError, ModelUnavailableError

    store, states = dataset
    settings = DelineationSettings.from_config(_config(model_base, tmp_path))
    breaker = settings.endpoint.breaker()  # the one the endpoint's client goes through

    def server_down() -> None:
        raise ModelUnavailableError("connection refused")

    for _ in range(settings.endpoint.circuit_failure_threshold):
        with pytest.raises(ModelUnavailableError):
            breaker.call(server_down)
    try:
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            compute_hotspots(
                states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams(),
                delineator=Delineator(settings),
            )
    finally:
        breaker.reset()


def test_an_unreadable_dem_is_a_configuration_error_at_start_up(tmp_path: Path):
    from monitor.daemon import Daemon

    dem = tmp_path / "dem.tif"
    dem.write_text("this is not a raster")
    config = load_config(environ={"INSAR_MONITOR__DELINEATION__DEM_PATH": str(dem),
                                  "INSAR_MONITOR__STORAGE__STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"delineation\.dem_path: cannot read DEM"):
        Daemon(config)._check_delineation()


# --------------------------------------------------------------------------- metrics
def test_the_delineated_areas_gauge_counts_active_delineated_areas_per_sign():
    from monitor import metrics
    from tests.test_alert_observations import ada, hotspot_message

    message = hotspot_message([ada("ada-1")])
    message["delineated_areas"] = [ada("dada-1", sign="hot"), ada("dada-2", status="gone")]
    metrics.record_output(message)

    def value(sign: str) -> float | None:
        labels = {"dataset": "egms-it", "sign": sign}
        return metrics.REGISTRY.get_sample_value("insar_delineated_areas", labels)

    assert (value("hot"), value("cold")) == (1.0, 0.0)
