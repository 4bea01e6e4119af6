"""Frame-level unrest decisions: aggregation rule, chunking, reported tiles, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from serving.clients.inprocess import InProcessInferenceClient
from serving.frame_scoring import FrameScore, score_frame
from serving.synthetic.deformation import MogiSource
from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

COMMITTED_MODEL = (
    Path(__file__).resolve().parents[1] / "serving" / "models" / "unrest_detector" / "1"
)


def brightest_pixel(batch: np.ndarray) -> np.ndarray:
    """A stand-in detector: probability = the tile's largest finite value, clipped to [0, 1]."""
    return np.clip(np.nan_to_num(np.nanmax(batch, axis=(1, 2)), nan=0.0), 0.0, 1.0)


def frame_with_blob(row: int, col: int, shape=(600, 700)) -> np.ndarray:
    frame = np.zeros(shape, np.float32)
    frame[row - 2 : row + 3, col - 2 : col + 3] = 0.9
    return frame


def test_a_frame_is_flagged_by_its_most_probable_tile():
    score = score_frame(frame_with_blob(100, 100), brightest_pixel, threshold=0.5)
    assert score.unrest and score.unrest_probability == pytest.approx(0.9)
    assert score.n_tiles == 16
    for t in score.tiles:  # every fired tile contains the blob
        assert t["row0"] <= 100 < t["row0"] + 224 and t["col0"] <= 100 < t["col0"] + 224


def test_a_quiet_frame_is_not_flagged_and_reports_no_tiles():
    score = score_frame(np.zeros((600, 700), np.float32), brightest_pixel)
    assert not score.unrest and score.unrest_probability == 0.0 and score.tiles == []


def test_the_robust_rule_needs_several_tiles_to_fire():
    # A blob in the middle of the first tile, away from overlaps, fires only that tile.
    frame = frame_with_blob(80, 80)
    assert score_frame(frame, brightest_pixel).unrest
    robust = score_frame(frame, brightest_pixel, min_firing_tiles=2)
    assert not robust.unrest and len(robust.tiles) == 1
    # A blob in an overlap fires four tiles and passes the robust rule.
    assert score_frame(frame_with_blob(200, 200), brightest_pixel, min_firing_tiles=2).unrest


def test_tiles_are_scored_in_chunks_of_batch_size():
    calls: list[int] = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        assert batch.dtype == np.float32 and batch.shape[1:] == (224, 224)
        return np.zeros(len(batch))

    score_frame(np.zeros((600, 700), np.float32), counting, batch_size=5)
    assert calls == [5, 5, 5, 1]


def test_reported_tiles_carry_geographic_bounds_and_serialise_to_json():
    transform = Affine(0.001, 0.0, 14.0, 0.0, -0.001, 41.0)
    score = score_frame(frame_with_blob(80, 80), brightest_pixel, transform=transform)
    d = json.loads(json.dumps(score.to_json_dict()))
    assert d["unrest"] is True and d["n_tiles"] == 16
    assert d["tiles"][0]["bounds"] == pytest.approx([14.0, 41.0 - 0.224, 14.224, 41.0])


def test_an_all_nan_frame_is_rejected():
    with pytest.raises(ValueError, match="all NaN"):
        score_frame(np.full((300, 300), np.nan, np.float32), brightest_pixel)


def test_a_frame_with_no_tile_valid_enough_scores_zero():
    frame = np.full((600, 700), np.nan, np.float32)
    frame[0, 0] = 1.0
    score = score_frame(frame, brightest_pixel, min_valid_fraction=0.5)
    assert score == FrameScore(0.0, False, 0, 0.5, [])


@pytest.mark.parametrize(
    "bad_fn",
    [
        lambda b: np.zeros(len(b) + 1),
        lambda b: np.full(len(b), 1.5),
        lambda b: np.full(len(b), np.nan),
    ],
    ids=["wrong_length", "above_one", "nan"],
)
def test_invalid_predictions_are_rejected(bad_fn):
    with pytest.raises(ValueError, match="predict_fn"):
        score_frame(np.zeros((300, 300), np.float32), bad_fn)


def test_small_frames_are_padded_and_scored():
    score = score_frame(frame_with_blob(50, 50, shape=(100, 120)), brightest_pixel)
    assert score.n_tiles == 1 and score.unrest


@pytest.mark.skipif(not COMMITTED_MODEL.exists(), reason="no committed unrest model")
def test_committed_model_flags_the_tile_over_a_strong_mogi_source_in_a_frame():
    p = DEFAULT_PARAMS
    rng = np.random.default_rng(4242)
    depth = 3000.0
    dv = 5 * p.fringe_m * np.pi * depth**2 / 0.75  # ~5 fringes of uplift
    row, col = 300.0, 350.0
    src = MogiSource(col * p.pixel_m, -row * p.pixel_m, depth, dv)
    frame = generate_frame(rng, (600, 700), [src], p, nuisance_scale=0.3)
    client = InProcessInferenceClient.from_version_dir(COMMITTED_MODEL)
    score = score_frame(
        frame.phase,
        lambda patches: client.predict({"phase": patches})["probability"],
        transform=frame.transform,
    )
    assert score.unrest
    top = score.tiles[0]
    assert top["row0"] <= row < top["row0"] + 224 and top["col0"] <= col < top["col0"] + 224
