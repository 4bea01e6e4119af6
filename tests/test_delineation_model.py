"""The delineation U-Net's in-model normalisation, its shape contract and the evaluation scores."""

from __future__ import annotations

import numpy as np
import pytest

from serving.evaluation.delineation import (
    area_scores,
    best_density_threshold,
    segmentation_scores,
)
from serving.synthetic.ada_scenes import SceneSet


def test_features_mask_nan_and_scale_density():
    from serving.models.delineation import DENSITY_SCALE, DelineationFeatures

    density = np.array([[[np.nan, 0.0], [DENSITY_SCALE, -DENSITY_SCALE]]], np.float32)
    aspect = np.array([[[90.0, np.nan], [0.0, 180.0]]], np.float32)
    slope = np.full((1, 2, 2), np.nan, np.float32)
    out = np.asarray(DelineationFeatures()(density, aspect, slope))
    assert out.shape == (1, 2, 2, 7)
    assert np.isfinite(out).all()
    # density channel and its mask
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 0], [np.arcsinh(1), -np.arcsinh(1)]],
                               atol=1e-6)
    np.testing.assert_array_equal(out[0, :, :, 1], [[0, 1], [1, 1]])
    # aspect: sin, cos, mask (east = sin 1, cos 0; north = cos 1; south = cos -1)
    np.testing.assert_allclose(out[0, :, :, 2], [[1, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(out[0, :, :, 3], [[0, 0], [1, -1]], atol=1e-6)
    np.testing.assert_array_equal(out[0, :, :, 4], [[1, 0], [1, 1]])
    # slope missing everywhere: zero value and zero mask
    np.testing.assert_array_equal(out[0, :, :, 5:], 0.0)


@pytest.mark.parametrize("size", [32, 64])
def test_unet_is_fully_convolutional_with_a_probability_per_cell(size):
    from serving.models.delineation import build_unet

    model = build_unet(None, base=4, depth=3)
    x = np.random.default_rng(0).normal(size=(2, size, size)).astype(np.float32) * 300
    out = np.asarray(model([x, np.full_like(x, np.nan), np.full_like(x, np.nan)]))
    assert out.shape == (2, size, size, 1)
    assert ((out >= 0) & (out <= 1)).all()


def test_serving_function_returns_the_contracted_shape():
    from serving.models.delineation import build_unet, make_serve_fn
    from serving.signatures import DELINEATION_SIGNATURE, DELINEATION_TILE

    model = build_unet(base=2, depth=2)
    serve = make_serve_fn(model)
    x = np.zeros((3, DELINEATION_TILE, DELINEATION_TILE), np.float32)
    out = serve(x, x, x)
    assert set(out) == set(DELINEATION_SIGNATURE.output_names())
    assert tuple(out["probability"].shape) == (3, DELINEATION_TILE, DELINEATION_TILE)


def test_segmentation_scores_on_known_masks():
    truth = np.zeros((2, 4, 4), bool)
    pred = np.zeros((2, 4, 4), bool)
    truth[0, :2, :2] = True  # 4 cells
    pred[0, :2, :3] = True  # 6 cells, 4 right
    truth[1, 3, 3] = True  # 1 cell missed
    s = segmentation_scores(truth, pred)
    assert (s["tp"], s["fp"], s["fn"]) == (4, 2, 1)
    assert s["precision"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["recall"] == pytest.approx(4 / 5, abs=1e-4)
    assert s["f1"] == pytest.approx(8 / 11, abs=1e-4)
    assert s["iou"] == pytest.approx(4 / 7, abs=1e-4)
    # scene 1 has no prediction: precision undefined there, so the mean is scene 0's
    assert s["scene_mean"]["precision"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["scene_mean"]["recall"] == pytest.approx((1.0 + 0.0) / 2, abs=1e-4)


def _set(label: np.ndarray, instances: np.ndarray, kinds: np.ndarray, density=None) -> SceneSet:
    z = np.zeros(label.shape, np.float32) if density is None else density
    return SceneSet(z, z.astype(np.float16), z.astype(np.float16), label, instances, kinds,
                    np.zeros(0, np.uint8))


def test_area_scores_count_found_missed_and_false_areas():
    instances = np.zeros((1, 20, 20), np.uint8)
    instances[0, 0:5, 0:5] = 1  # landslide, 25 cells (small)
    instances[0, 10:20, 10:20] = 2  # bowl, 100 cells (large)
    label = (instances > 0).astype(np.uint8)
    pred = np.zeros((1, 20, 20), bool)
    pred[0, 0:5, 0:3] = True  # 15/25 of the landslide: found
    pred[0, 10:13, 10:20] = True  # 30/100 of the bowl: missed
    pred[0, 0:2, 15:17] = True  # a false area
    out = area_scores(_set(label, instances, np.array([[1, 2]], np.uint8)), pred)
    assert out["recall_landslide"] == {"found": 1, "n": 1, "rate": 1.0}
    assert out["recall_bowl"] == {"found": 0, "n": 1, "rate": 0.0}
    assert out["recall_small"]["found"] == 1 and out["recall_large"]["found"] == 0
    assert out["false_areas_per_scene"] == 1.0


def test_best_density_threshold_separates_a_clean_signal():
    rng = np.random.default_rng(0)
    label = np.zeros((4, 32, 32), np.uint8)
    label[:, 8:16, 8:16] = 1
    density = np.where(label > 0, 500.0, 0.0) + rng.normal(0, 20, label.shape)
    threshold, f1 = best_density_threshold(
        _set(label, label, np.ones((4, 1), np.uint8), density.astype(np.float32))
    )
    assert 60.0 < threshold < 440.0
    assert f1 > 0.99


def test_the_committed_model_outlines_a_bowl_and_stays_quiet_on_stable_ground():
    """The served SavedModel, through the in-process client, on two fresh scenes."""
    from dataclasses import replace
    from pathlib import Path

    from serving.clients.inprocess import InProcessInferenceClient
    from serving.synthetic.ada_scenes import DEFAULT_SCENE_PARAMS, make_scene

    model_dir = Path(__file__).resolve().parents[1] / "serving/models/ada_delineator/1"
    client = InProcessInferenceClient.from_version_dir(model_dir)
    one_bowl = replace(DEFAULT_SCENE_PARAMS, landslides=(0, 0), bowls=(1, 1), empty_share=0.0,
                       bowl_radius_m=(1500.0, 2000.0), bowl_peak_mm_yr=(60.0, 80.0))
    quiet = replace(DEFAULT_SCENE_PARAMS, empty_share=1.0)
    scenes = [make_scene(np.random.default_rng([99, 0]), one_bowl),
              make_scene(np.random.default_rng([99, 1]), quiet)]
    out = client.predict({
        "hotspot_density": np.stack([s.density for s in scenes]),
        "aspect_deg": np.stack([s.aspect_deg for s in scenes]),
        "slope_deg": np.full((2, 256, 256), np.nan, np.float32),
    })["probability"]
    bowl = scenes[0].label.astype(bool)
    called = out[0] >= 0.5
    assert bowl.sum() > 300
    assert (bowl & called).sum() / (bowl | called).sum() > 0.5  # IoU
    assert (out[1] >= 0.5).mean() < 0.005  # under 0.5 % of stable ground called
