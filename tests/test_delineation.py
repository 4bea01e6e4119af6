"""U-Net delineation around the model: tiling, inputs, stitching, polygons and Area records.

The model is replaced by a pointwise function of the density (a logistic of |density|):
these tests check the code around the model, which must neither move nor blur what the
model says.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine

from pipelines.hotspots.areas import Area, _order_key, track_areas
from pipelines.hotspots.delineation import (
    NO_DEM_NOTE,
    Delineation,
    DelineationParams,
    delineate,
    mask_to_polygons,
    model_inputs,
    stitch,
    tile_windows,
)
from pipelines.hotspots.terrain import TerrainGrids
from serving.signatures import DELINEATION_SIGNATURE, DELINEATION_TILE, TREND_CLASSES

TILE = DELINEATION_TILE
CELL = 50.0
LEFT, TOP = 600_000.0, 5_000_000.0
UTM = "EPSG:32632"


def density_grid(values: np.ndarray, cell: float = CELL) -> xr.DataArray:
    """A kde-like DataArray: dims (y, x), north up, CRS and transform, ``cell_size_m``."""
    ny, nx = values.shape
    da = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={
            "y": TOP - (np.arange(ny) + 0.5) * cell,
            "x": LEFT + (np.arange(nx) + 0.5) * cell,
        },
        name="z_kernel_density",
        attrs={"cell_size_m": cell, "units": "1/km2"},
    )
    return da.rio.write_crs(UTM).rio.write_transform(Affine(cell, 0, LEFT, 0, -cell, TOP))


def bump(ny: int, nx: int, row: float, col: float, sigma: float, peak: float) -> np.ndarray:
    """A Gaussian of ``peak`` 1/km2 centred on cell (row, col), ``sigma`` in cells."""
    r, c = np.mgrid[0:ny, 0:nx]
    return peak * np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2.0 * sigma**2))


def cell_centre(row: float, col: float) -> tuple[float, float]:
    return LEFT + (col + 0.5) * CELL, TOP - (row + 0.5) * CELL


def logistic_of_density(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Fake U-Net: P = logistic((|density| - 50) / 10); NaN density -> 0."""
    d = np.nan_to_num(inputs["hotspot_density"], nan=0.0).astype(np.float64)
    return (1.0 / (1.0 + np.exp(-(np.abs(d) - 50.0) / 10.0))).astype(np.float32)


class RecordingModel:
    """The fake U-Net, keeping every request it got."""

    def __init__(self) -> None:
        self.calls: list[dict[str, np.ndarray]] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.calls.append(inputs)
        return logistic_of_density(inputs)


# --- tile_windows ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (100, 300), (256, 256), (257, 256), (600, 1000)])
@pytest.mark.parametrize("overlap", [0, 32, 200])
def test_windows_cover_every_cell_and_stay_inside_the_grid(shape, overlap):
    windows = tile_windows(shape, TILE, overlap)

    cover = np.zeros(shape, dtype=int)
    for r, c in windows:
        assert r >= 0 and c >= 0
        for start, n in ((r, shape[0]), (c, shape[1])):
            assert start + TILE <= n or start == 0  # only a grid smaller than a tile pads
        cover[r : r + TILE, c : c + TILE] += 1
    assert cover.min() >= 1
    assert len(set(windows)) == len(windows)
    # Neighbouring windows share at least ``overlap`` cells.
    for axis in (0, 1):
        starts = sorted({w[axis] for w in windows})
        assert all(b - a <= TILE - overlap for a, b in itertools.pairwise(starts))


def test_windows_without_overlap_on_a_multiple_of_the_tile_cover_each_cell_once():
    windows = tile_windows((512, 768), TILE, 0)

    cover = np.zeros((512, 768), dtype=int)
    for r, c in windows:
        cover[r : r + TILE, c : c + TILE] += 1
    assert windows == [(0, 0), (0, 256), (0, 512), (256, 0), (256, 256), (256, 512)]
    assert (cover == 1).all()


def test_last_window_is_snapped_to_the_far_edge():
    assert tile_windows((300, 600), TILE, 32) == [(r, c) for r in (0, 44) for c in (0, 224, 344)]


@pytest.mark.parametrize(("shape", "overlap"), [((0, 10), 0), ((10, 10), -1), ((10, 10), TILE)])
def test_windows_reject_bad_arguments(shape, overlap):
    with pytest.raises(ValueError):
        tile_windows(shape, TILE, overlap)


# --- model_inputs ----------------------------------------------------------------------------


def test_inputs_cut_the_windows_and_pad_small_grids_with_nan():
    density = np.arange(300 * 100, dtype=np.float64).reshape(300, 100)
    windows = tile_windows(density.shape)

    x = model_inputs(density, None, windows)

    assert list(x) == DELINEATION_SIGNATURE.input_names()
    for name in x:
        assert x[name].shape == (len(windows), TILE, TILE) and x[name].dtype == np.float32
    for k, (r, c) in enumerate(windows):
        np.testing.assert_array_equal(x["hotspot_density"][k, :, :100], density[r : r + TILE, c:])
        assert np.isnan(x["hotspot_density"][k, :, 100:]).all()
    assert np.isnan(x["aspect_deg"]).all() and np.isnan(x["slope_deg"]).all()


@pytest.mark.parametrize("use_slope", [False, True])
def test_inputs_carry_aspect_and_slope_only_when_asked(use_slope):
    density = np.zeros((20, 30))
    terrain = TerrainGrids(np.full((20, 30), 90.0), np.full((20, 30), 12.0), "dem.tif")

    x = model_inputs(density, terrain, [(0, 0)], use_slope=use_slope)

    assert (x["aspect_deg"][0, :20, :30] == 90.0).all()
    assert np.isnan(x["aspect_deg"][0, 20:]).all()
    if use_slope:
        assert (x["slope_deg"][0, :20, :30] == 12.0).all()
    else:
        assert np.isnan(x["slope_deg"]).all()


def test_inputs_reject_terrain_on_another_grid():
    terrain = TerrainGrids(np.zeros((10, 10)), np.zeros((10, 10)), "dem.tif")
    with pytest.raises(ValueError, match="aspect_deg"):
        model_inputs(np.zeros((10, 11)), terrain, [(0, 0)])


# --- stitch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 70), (300, 530)])
def test_stitch_of_a_constant_is_that_constant(shape):
    windows = tile_windows(shape)
    p = stitch(np.full((len(windows), TILE, TILE), 0.3, dtype=np.float32), windows, shape)
    assert p.shape == shape
    np.testing.assert_allclose(p, 0.3, rtol=1e-6)


def test_stitch_of_tiles_cut_from_one_field_gives_back_the_field():
    rng = np.random.default_rng(0)
    field = rng.random((400, 700))
    windows = tile_windows(field.shape)
    tiles = np.stack([field[r : r + TILE, c : c + TILE] for r, c in windows])

    np.testing.assert_allclose(stitch(tiles, windows, field.shape), field, rtol=1e-6)


def test_stitch_cross_fades_disagreeing_tiles_without_a_step():
    # Two tiles side by side sharing 64 columns; the left says 0, the right 1.
    shape = (TILE, 2 * TILE - 64)
    windows = [(0, 0), (0, TILE - 64)]
    tiles = np.stack([np.zeros((TILE, TILE)), np.ones((TILE, TILE))])

    row = stitch(tiles, windows, shape)[TILE // 2]

    assert (row[: TILE - 64] == 0).all() and (row[TILE:] == 1).all()
    seam = row[TILE - 64 : TILE]
    assert (np.diff(seam) > 0).all()  # rises steadily across the overlap
    assert np.diff(row).max() < 0.1  # no jump anywhere
    assert seam[31] < 0.5 < seam[32]  # and is even at the middle


def test_stitch_ignores_nan_and_clips_to_unit_interval():
    windows = [(0, 0), (0, 10)]
    tiles = np.stack([np.full((TILE, TILE), 1.5), np.full((TILE, TILE), np.nan)])
    tiles[1, :, :5] = 0.2  # the second tile has a value only on its first 5 columns

    p = stitch(tiles, windows, (TILE, TILE + 10))

    assert np.nanmax(p) <= 1.0 and np.nanmin(p) >= 0.0
    assert (p[:, :10] == 1.0).all()
    assert (p[:, 10:15] > 0.2).all() and (p[:, 10:15] < 1.0).all()
    assert np.isnan(p[:, TILE:]).all()  # only the NaN part of tile 2 covers these


# --- mask_to_polygons ------------------------------------------------------------------------

TRANSFORM = Affine(CELL, 0.0, LEFT, 0.0, -CELL, TOP)


def test_square_mask_gives_one_polygon_of_its_area_at_its_place():
    mask = np.zeros((50, 60), dtype=bool)
    mask[20:30, 30:40] = True  # rows 20-29 (north to south), cols 30-39

    (polygon,) = mask_to_polygons(mask, TRANSFORM, min_area_m2=0.0, simplify=0.0)

    assert polygon.is_valid
    assert polygon.area == pytest.approx(100 * CELL * CELL)
    assert polygon.bounds == pytest.approx(
        (LEFT + 30 * CELL, TOP - 30 * CELL, LEFT + 40 * CELL, TOP - 20 * CELL)
    )


def test_first_row_of_the_mask_is_the_north_edge():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, :] = True
    (polygon,) = mask_to_polygons(mask, TRANSFORM, min_area_m2=0.0, simplify=0.0)
    assert polygon.bounds[3] == TOP and polygon.bounds[1] == TOP - CELL


def test_small_blobs_are_dropped_and_small_holes_filled():
    mask = np.zeros((60, 60), dtype=bool)
    mask[5:25, 5:25] = True  # 400 cells = 1 000 000 m2
    mask[10:12, 10:12] = False  # 4-cell hole (10 000 m2): filled
    mask[15:22, 15:22] = False  # 49-cell hole (122 500 m2): kept
    mask[40:42, 40:43] = True  # 6-cell blob (15 000 m2): dropped

    polygons = mask_to_polygons(mask, TRANSFORM, min_area_m2=20_000.0, simplify=0.0)

    assert len(polygons) == 1
    (polygon,) = polygons
    assert len(polygon.interiors) == 1
    assert polygon.area == pytest.approx((400 - 49) * CELL * CELL)


def test_groups_touching_at_a_corner_only_stay_apart():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 2:5] = True
    mask[5:8, 5:8] = True
    polygons = mask_to_polygons(mask, TRANSFORM, min_area_m2=0.0, simplify=0.0)
    assert len(polygons) == 2 and all(p.is_valid for p in polygons)


@pytest.mark.parametrize("cells", [0.5, 1.0])
def test_simplification_stays_within_its_tolerance_and_drops_vertices(cells):
    r, c = np.mgrid[0:60, 0:60]
    mask = (r - 30) ** 2 + (c - 30) ** 2 <= 20**2  # a disc of radius 20 cells
    raw = mask_to_polygons(mask, TRANSFORM, min_area_m2=0.0, simplify=0.0)[0]
    simple = mask_to_polygons(mask, TRANSFORM, min_area_m2=0.0, simplify=cells * CELL)[0]

    assert simple.is_valid
    assert len(simple.exterior.coords) < len(raw.exterior.coords)
    assert shapely.hausdorff_distance(simple, raw) <= cells * CELL + 1e-6
    assert simple.area == pytest.approx(raw.area, rel=0.03)


def test_empty_mask_gives_no_polygon():
    assert mask_to_polygons(np.zeros((5, 5), bool), TRANSFORM, min_area_m2=0, simplify=0) == []


# --- delineate -------------------------------------------------------------------------------

NY, NX = 300, 400  # 15 km x 20 km at 50 m: 2 x 2 tiles


def scene() -> np.ndarray:
    """A hot bump (north-west) and a cold bump (south-east) on a quiet background."""
    return bump(NY, NX, 80, 100, 8, 200.0) + bump(NY, NX, 220, 300, 6, -150.0)


def points() -> dict[str, np.ndarray]:
    """Four points at the hot bump's centre, two at the cold one's, three in quiet ground."""
    hot = [cell_centre(80 + dr, 100 + dc) for dr, dc in ((0, 0), (2, 0), (0, 2), (-2, -2))]
    cold = [cell_centre(220, 300), cell_centre(221, 301)]
    quiet = [cell_centre(10, 10), cell_centre(150, 200), cell_centre(290, 390)]
    return {
        "xy": np.array(hot + cold + quiet),
        "velocity": np.array([12.0, -20.0, 30.0, np.nan, -8.0, -10.0, 1.0, 2.0, 3.0]),
        "trend_class": np.array([1, 2, 2, 1, 3, -1, 0, 0, 0]),
        "pid": np.array([f"P{i}" for i in range(9)]),
    }


def test_delineation_reproduces_the_model_without_seams():
    kde = density_grid(scene())
    result = delineate(kde, logistic_of_density, params=DelineationParams())

    assert isinstance(result, Delineation)
    # A pointwise model must come back exactly: tiles neither shifted nor blurred.
    expected = logistic_of_density({"hotspot_density": kde.values[None]})[0]
    np.testing.assert_allclose(result.probability.values, expected, atol=1e-6)
    np.testing.assert_array_equal(result.mask, expected >= 0.5)


def test_probability_is_on_the_density_grid_with_its_crs_and_attrs():
    kde = density_grid(scene())
    prob = delineate(kde, logistic_of_density, params=DelineationParams()).probability

    assert prob.name == "ada_probability" and prob.dtype == np.float32
    assert prob.dims == ("y", "x")
    np.testing.assert_array_equal(prob.x, kde.x)
    np.testing.assert_array_equal(prob.y, kde.y)
    assert prob.rio.crs == kde.rio.crs
    assert prob.rio.transform() == kde.rio.transform()
    assert prob.attrs["cell_size_m"] == CELL
    assert prob.attrs["threshold"] == 0.5
    assert prob.attrs["inputs"] == "hotspot_density"


def test_areas_get_their_sign_shape_and_the_points_inside():
    p = points()
    result = delineate(density_grid(scene()), logistic_of_density, params=DelineationParams(), **p)

    assert [a.sign for a in result.areas] == ["hot", "cold"]  # west-east order
    hot, cold = result.areas
    assert all(isinstance(a, Area) for a in result.areas)
    # Hot: logistic >= 0.5 where 200 exp(-r^2 / 128) >= 50, a disc of radius 13.3 cells.
    assert hot.area_m2 == pytest.approx(
        math.pi * (8 * math.sqrt(2 * math.log(4))) ** 2 * CELL**2, rel=0.05
    )
    assert hot.polygon.contains(shapely.Point(cell_centre(80, 100)))
    np.testing.assert_array_equal(hot.point_index, [0, 1, 2, 3])
    assert hot.n_points == 4
    assert hot.mean_abs_velocity == pytest.approx((12 + 20 + 30) / 3)  # NaN ignored
    assert hot.max_abs_velocity == 30.0
    assert hot.dominant_trend == TREND_CLASSES[1]  # tie 1 vs 2 (two each): lower id
    np.testing.assert_array_equal(hot.pid, ["P0", "P1", "P2", "P3"])
    assert hot.centroid == pytest.approx(tuple(p["xy"][:4].mean(axis=0)))

    np.testing.assert_array_equal(cold.point_index, [4, 5])
    assert cold.mean_abs_velocity == pytest.approx(9.0) and cold.max_abs_velocity == 10.0
    assert cold.dominant_trend == TREND_CLASSES[3]  # the unclassified point does not count
    assert cold.area_m2 == pytest.approx(cold.polygon.area)


def test_area_without_points_inside_has_zero_speed_and_the_polygon_centroid():
    result = delineate(density_grid(scene()), logistic_of_density, params=DelineationParams())

    for area in result.areas:
        assert area.n_points == 0 and area.point_index.size == 0
        assert area.mean_abs_velocity == 0.0 and area.max_abs_velocity == 0.0
        assert area.dominant_trend is None and area.pid is None
        assert area.centroid == pytest.approx((area.polygon.centroid.x, area.polygon.centroid.y))


def test_min_area_drops_small_areas():
    density = scene() + bump(NY, NX, 150, 380, 2, 60.0)  # a speck of 5 cells, 12 500 m2
    kde = density_grid(density)
    kept_all = delineate(kde, logistic_of_density, params=DelineationParams(min_area_m2=0.0))
    default = delineate(kde, logistic_of_density, params=DelineationParams())

    assert len(kept_all.areas) == 3 and len(default.areas) == 2
    assert min(a.area_m2 for a in kept_all.areas) < 20_000.0


def test_areas_are_ordered_like_tracked_areas_and_can_be_tracked():
    result = delineate(
        density_grid(scene() + bump(NY, NX, 250, 50, 8, 200.0)),
        logistic_of_density,
        params=DelineationParams(),
    )
    assert result.areas == sorted(result.areas, key=_order_key)

    tracking = track_areas([], result.areas, window_end="2024-06-01", id_prefix="unet")
    assert [t.status for t in tracking.active] == ["new"] * 3


def test_without_terrain_only_the_density_is_used_and_a_note_says_so():
    model = RecordingModel()
    result = delineate(density_grid(scene()), model, params=DelineationParams(use_slope=True))

    assert result.inputs == ("hotspot_density",)
    assert result.note == NO_DEM_NOTE
    assert all(
        np.isnan(c["aspect_deg"]).all() and np.isnan(c["slope_deg"]).all() for c in model.calls
    )


@pytest.mark.parametrize(
    ("use_slope", "inputs"),
    [
        (False, ("hotspot_density", "aspect_deg")),
        (True, ("hotspot_density", "aspect_deg", "slope_deg")),
    ],
)
def test_terrain_inputs_are_sent_and_reported(use_slope, inputs):
    terrain = TerrainGrids(np.full((NY, NX), 135.0), np.full((NY, NX), 20.0), "dem.tif")
    model = RecordingModel()

    result = delineate(
        density_grid(scene()), model, params=DelineationParams(use_slope=use_slope), terrain=terrain
    )

    assert result.inputs == inputs
    assert result.note is None
    assert all(np.nanmax(c["aspect_deg"]) == 135.0 for c in model.calls)
    assert all(np.isnan(c["slope_deg"]).all() != use_slope for c in model.calls)


def test_partial_terrain_is_noted_with_its_coverage():
    slope = np.full((NY, NX), 20.0)
    slope[:, NX // 2 :] = np.nan
    terrain = TerrainGrids(slope.copy(), slope, "/data/dem.tif")

    result = delineate(
        density_grid(scene()), logistic_of_density, params=DelineationParams(), terrain=terrain
    )

    assert result.note is not None and "/data/dem.tif covers 50%" in result.note


def test_model_is_called_in_batches():
    model = RecordingModel()
    delineate(density_grid(np.zeros((600, 700))), model, params=DelineationParams(), batch=4)

    n_windows = len(tile_windows((600, 700)))  # 3 x 3
    assert [len(c["hotspot_density"]) for c in model.calls] == [4, 4, 1]
    assert n_windows == 9


def test_grid_smaller_than_a_tile_is_padded_into_one_window():
    model = RecordingModel()
    small = bump(40, 60, 20, 30, 5, 200.0)
    result = delineate(density_grid(small), model, params=DelineationParams(min_area_m2=0.0))

    assert len(model.calls) == 1 and model.calls[0]["hotspot_density"].shape == (1, TILE, TILE)
    assert result.probability.shape == (40, 60)
    assert len(result.areas) == 1


def test_nan_density_gives_nan_probability_and_no_area():
    density = scene()
    density[:, :150] = np.nan  # the hot bump lies outside the data
    result = delineate(density_grid(density), logistic_of_density, params=DelineationParams())

    assert np.isnan(result.probability.values[:, :150]).all()
    assert not result.mask[:, :150].any()
    assert [a.sign for a in result.areas] == ["cold"]


def test_model_answer_of_the_wrong_shape_is_an_error():
    def broken(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros((1, 128, 128), dtype=np.float32)

    with pytest.raises(ValueError, match="the model returned shape"):
        delineate(density_grid(scene()), broken, params=DelineationParams())


def test_all_nan_density_is_an_error():
    with pytest.raises(ValueError, match="NaN everywhere"):
        delineate(
            density_grid(np.full((10, 10), np.nan)), logistic_of_density, params=DelineationParams()
        )


# --- DelineationParams -----------------------------------------------------------------------


def test_params_from_config_read_each_field_and_default_the_missing():
    section = SimpleNamespace(
        threshold=0.7, overlap=16, min_area_m2=5000.0, use_slope=True, dem_path="x"
    )
    assert DelineationParams.from_config(section) == DelineationParams(0.7, 16, 5000.0, True, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.2},
        {"overlap": -1},
        {"overlap": TILE},
        {"min_area_m2": -1.0},
        {"simplify_cells": math.nan},
    ],
)
def test_params_out_of_range_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DelineationParams(**kwargs)
