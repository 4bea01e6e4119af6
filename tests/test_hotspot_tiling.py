"""Tile-by-tile Gi* equals the whole-area Gi* (pipelines.hotspots.tiled)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipelines.hotspots import tiled
from pipelines.hotspots.gistar import GlobalStats, gi_star
from pipelines.hotspots.tiled import (
    gi_star_tiled,
    halo_indices,
    tile_bounds,
    tile_ids,
    tile_index,
)

DISTANCE = 150.0


def scene(seed: int, n: int = 2500, side: float = 2500.0) -> tuple[np.ndarray, np.ndarray]:
    """Random points (UTM-like offsets, so tiles are not aligned with the data) and signed
    velocities with a clustered component."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.0, side, size=(n, 2)) + np.array([431_077.0, 4_020_311.0])
    values = rng.normal(-2.0, 3.0, n)
    centre = xy[rng.integers(n)]
    values[np.hypot(*(xy - centre).T) < 200.0] -= 25.0
    return xy, values


def assert_same_result(part, whole, index):
    np.testing.assert_array_equal(part.index, index)
    np.testing.assert_allclose(part.z, whole.z[index], rtol=0, atol=1e-12)
    np.testing.assert_allclose(part.p, whole.p[index], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(part.n_neighbours, whole.n_neighbours[index])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tile_size", [60.0, 149.0, 150.0, 400.0, 1000.0, 1e5])
def test_tiled_gistar_equals_whole_area_gistar(seed, tile_size):
    xy, values = scene(seed)
    whole = gi_star(xy, values, DISTANCE)
    result = gi_star_tiled(xy, values, DISTANCE, tile_size=tile_size)
    assert_same_result(result, whole, np.arange(values.size))


def test_recomputing_touched_tiles_equals_the_same_rows_of_the_whole_area():
    xy, values = scene(2)
    whole = gi_star(xy, values, DISTANCE)
    ids = tile_ids(xy, 500.0)
    touched = sorted(set(ids[[5, 900, 2000]].tolist()))
    part = gi_star_tiled(xy, values, DISTANCE, tile_size=500.0, tiles=touched)
    expected_index = np.flatnonzero(np.isin(ids, touched))
    assert 0 < expected_index.size < values.size
    assert_same_result(part, whole, expected_index)


def test_touched_tiles_after_an_update_with_global_stats():
    # An update changes the values of one tile's points. The tiles within the band of the
    # change, recomputed with the new global statistics, equal the whole-area computation
    # on the new values. (Other points' z move only through the global mean and S.)
    xy, values = scene(3)
    ids = tile_ids(xy, 500.0)
    changed_tile = ids[100]
    updated = values.copy()
    updated[ids == changed_tile] += 30.0
    whole = gi_star(xy, updated, DISTANCE)
    changed = np.flatnonzero(ids == changed_tile)
    affected = np.union1d(changed, halo_indices(xy, ids == changed_tile, DISTANCE))
    tiles = np.unique(ids[affected])
    part = gi_star_tiled(
        xy, updated, DISTANCE, tile_size=500.0, tiles=tiles, global_stats=GlobalStats.of(updated)
    )
    assert_same_result(part, whole, np.flatnonzero(np.isin(ids, tiles)))


def test_tiles_without_points_and_an_empty_selection():
    xy, values = scene(4, n=300)
    empty = gi_star_tiled(xy, values, DISTANCE, tile_size=500.0, tiles=[])
    assert len(empty) == 0
    far = tile_ids(np.array([[-1e6, -1e6]]), 500.0)
    assert len(gi_star_tiled(xy, values, DISTANCE, tile_size=500.0, tiles=far)) == 0


def test_halo_holds_every_neighbour_of_the_tile_and_no_tile_point():
    xy, _ = scene(5, n=1500)
    ids = tile_ids(xy, 400.0)
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))
    tree = cKDTree(xy)
    for tile in np.unique(ids)[:12]:
        mask = ids == tile
        halo = halo_indices(xy, mask, DISTANCE)
        np.testing.assert_array_equal(halo, halo_indices(xy, mask, DISTANCE, tree=tree))
        assert not mask[halo].any() and np.all(np.diff(halo) > 0)
        neighbours = np.flatnonzero((d[mask] <= DISTANCE).any(axis=0) & ~mask)
        assert np.isin(neighbours, halo).all()
        # And nothing farther than the band from the tile's bounding box.
        lo, hi = xy[mask].min(axis=0), xy[mask].max(axis=0)
        gap = np.maximum(np.maximum(lo - xy[halo], xy[halo] - hi), 0.0)
        assert np.all(np.hypot(gap[:, 0], gap[:, 1]) <= DISTANCE * (1 + 1e-6))


def test_tile_ids_pack_a_regular_grid_anchored_at_the_origin():
    xy = np.array([[0.0, 0.0], [499.9, 499.9], [500.0, 0.0], [-0.1, -1200.0], [3e6, 7e6]])
    ids = tile_ids(xy, 500.0)
    assert ids.dtype == np.int64
    assert [tile_index(i) for i in ids] == [(0, 0), (0, 0), (1, 0), (-1, -3), (6000, 14000)]
    assert ids[0] == ids[1] != ids[2]
    assert tile_bounds(ids[3], 500.0) == (-500.0, -1500.0, 0.0, -1000.0)
    for point, tile in zip(xy, ids, strict=True):
        xmin, ymin, xmax, ymax = tile_bounds(tile, 500.0)
        assert xmin <= point[0] < xmax and ymin <= point[1] < ymax


@pytest.mark.parametrize("tile_size", [0.0, -5.0, np.nan])
def test_tile_ids_reject_bad_tile_size(tile_size):
    with pytest.raises(ValueError):
        tile_ids(np.zeros((2, 2)), tile_size)


def test_tiled_rejects_nan_values():
    xy, values = scene(6, n=50)
    values[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gi_star_tiled(xy, values, DISTANCE, tile_size=500.0)


def test_tiled_docstring_examples_run():
    result = doctest.testmod(tiled, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
