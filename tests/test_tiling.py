"""Tiling of interferogram frames: coverage, padding, skipping, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from pipelines.tiling import Tile, pixel_bounds, stack_tiles, tile_frame, tile_starts

TRANSFORM = Affine(0.001, 0.0, 14.0, 0.0, -0.001, 41.0)


@pytest.mark.parametrize("shape", [(64, 64), (224, 224), (225, 300), (600, 700), (1000, 230)])
@pytest.mark.parametrize("overlap", [0, 56])
def test_tiles_cover_every_pixel_of_the_frame(shape, overlap):
    frame = np.random.default_rng(0).uniform(-np.pi, np.pi, shape).astype(np.float32)
    covered = np.zeros(shape, dtype=bool)
    for t in tile_frame(frame, overlap=overlap, min_valid_fraction=0.0):
        covered[t.row0 : t.row0 + 224, t.col0 : t.col0 + 224] = True
        h, w = min(224, shape[0] - t.row0), min(224, shape[1] - t.col0)
        np.testing.assert_array_equal(
            t.data[:h, :w], frame[t.row0 : t.row0 + h, t.col0 : t.col0 + w]
        )
    assert covered.all()


def test_edge_tiles_are_aligned_to_the_frame_edge_not_padded():
    tiles = tile_frame(np.zeros((600, 700), np.float32), overlap=56)
    assert sorted({t.row0 for t in tiles}) == [0, 168, 336, 376]
    assert sorted({t.col0 for t in tiles}) == [0, 168, 336, 476]
    assert all(t.valid_fraction == 1.0 for t in tiles)
    assert all(t.data.shape == (224, 224) for t in tiles)


def test_tile_starts_step_by_the_stride():
    assert tile_starts(600, 224, 168) == [0, 168, 336, 376]
    assert tile_starts(224, 224, 168) == [0]
    assert tile_starts(100, 224, 168) == [0]


def test_frames_smaller_than_a_tile_are_nan_padded():
    frame = np.ones((100, 150), np.float32)
    (tile,) = tile_frame(frame)
    assert tile.data.shape == (224, 224)
    assert np.all(tile.data[:100, :150] == 1.0)
    assert np.isnan(tile.data[100:, :]).all() and np.isnan(tile.data[:, 150:]).all()
    assert tile.valid_fraction == pytest.approx(100 * 150 / 224**2)


@pytest.mark.parametrize("shape", [(63, 300), (300, 10), (0, 0)])
def test_frames_below_64_pixels_are_rejected_with_a_clear_message(shape):
    with pytest.raises(ValueError, match="at least 64 pixels"):
        tile_frame(np.zeros(shape, np.float32))


def test_non_2d_input_is_rejected():
    with pytest.raises(ValueError, match="2D"):
        tile_frame(np.zeros((2, 224, 224), np.float32))


@pytest.mark.parametrize("overlap", [-1, 224, 300])
def test_invalid_overlap_is_rejected(overlap):
    with pytest.raises(ValueError, match="overlap"):
        tile_frame(np.zeros((300, 300), np.float32), overlap=overlap)


def test_tiles_below_the_valid_fraction_are_skipped():
    frame = np.zeros((224, 700), np.float32)
    frame[:, :400] = np.nan  # left part is no data
    tiles = tile_frame(frame, overlap=56, min_valid_fraction=0.1)
    assert [t.col0 for t in tiles] == [336, 476]  # col0 0 and 168 hold no valid pixel
    assert tiles[0].valid_fraction == pytest.approx((560 - 400) / 224)
    assert tile_frame(frame, overlap=56, min_valid_fraction=0.8)[0].col0 == 476


def test_all_nan_frame_gives_no_tiles():
    assert tile_frame(np.full((300, 300), np.nan, np.float32), min_valid_fraction=0.0) == []


def test_tile_bounds_follow_the_affine_transform():
    tiles = tile_frame(np.zeros((600, 700), np.float32), overlap=56, transform=TRANSFORM)
    t = next(t for t in tiles if t.row0 == 168 and t.col0 == 0)
    left, bottom, right, top = t.bounds
    assert left == pytest.approx(14.0)
    assert right == pytest.approx(14.224)
    assert top == pytest.approx(41.0 - 0.168)
    assert bottom == pytest.approx(41.0 - 0.392)
    assert (t.row, t.col) == (1, 0)


def test_a_six_tuple_transform_gives_the_same_bounds_as_affine():
    assert pixel_bounds(TRANSFORM, 10, 20, 224, 224) == pixel_bounds(
        tuple(TRANSFORM)[:6], 10, 20, 224, 224
    )


def test_tiles_without_transform_have_no_bounds():
    assert tile_frame(np.zeros((300, 300), np.float32))[0].bounds is None


def test_stack_tiles_returns_a_float32_batch():
    tiles = tile_frame(np.zeros((600, 700), np.float64))
    batch = stack_tiles(tiles)
    assert batch.shape == (len(tiles), 224, 224) and batch.dtype == np.float32
    assert stack_tiles([]).shape == (0, 224, 224)


def test_tiles_are_copies_so_editing_them_leaves_the_frame_alone():
    frame = np.zeros((300, 300), np.float32)
    tile: Tile = tile_frame(frame)[0]
    tile.data[:] = 5.0
    assert np.all(frame == 0.0)
