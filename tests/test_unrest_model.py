"""Unrest CNN: input features, a tiny train-and-export run, and the committed model's behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from serving.evaluation.unrest import evaluate  # noqa: E402
from serving.export import check_saved_model  # noqa: E402
from serving.models.unrest import PhaseFeatures, build_unrest_model  # noqa: E402
from serving.signatures import UNREST_SIGNATURE  # noqa: E402
from serving.synthetic.deformation import MogiSource, source_los  # noqa: E402
from serving.synthetic.interferogram import DEFAULT_PARAMS, grid_en, wrap  # noqa: E402
from serving.training.unrest import augment, load_or_generate, train  # noqa: E402

COMMITTED_MODEL = (
    Path(__file__).resolve().parents[1] / "serving" / "models" / "unrest_detector" / "1"
)


def test_phase_features_are_sin_cos_and_a_validity_mask_with_nan_zeroed():
    phase = np.array([[[0.5, np.nan], [-3.0, 2.0]]], dtype=np.float32)
    out = np.asarray(PhaseFeatures()(phase))
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, 0, 0], [np.sin(0.5), np.cos(0.5), 1.0], rtol=1e-6)
    np.testing.assert_array_equal(out[0, 0, 1], [0.0, 0.0, 0.0])


def test_model_is_compact_and_outputs_probabilities_even_for_nan_input():
    model = build_unrest_model()
    assert model.count_params() < 500_000
    x = np.random.default_rng(0).uniform(-np.pi, np.pi, (2, 224, 224)).astype(np.float32)
    x[1, :100] = np.nan
    p = np.asarray(model(x, training=False))
    assert p.shape == (2, 1) and np.all((p >= 0) & (p <= 1))


def test_augmentation_only_permutes_pixels():
    batch = np.random.default_rng(1).uniform(-np.pi, np.pi, (6, 16, 16)).astype(np.float16)
    out = augment(batch, np.random.default_rng(2))
    assert out.dtype == np.float32
    for a, b in zip(batch, out, strict=True):
        np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))


def test_generated_sets_are_cached_and_reloaded_identically(tmp_path):
    a = load_or_generate(6, 3, "train", DEFAULT_PARAMS, tmp_path, workers=1, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 4
    b = load_or_generate(6, 3, "train", DEFAULT_PARAMS, tmp_path, workers=1, progress=False)
    np.testing.assert_array_equal(a.phase, b.phase)
    np.testing.assert_array_equal(a.kinds, b.kinds)


def test_a_tiny_training_run_exports_a_saved_model_matching_the_contract(tmp_path):
    out = train(
        tmp_path / "models",
        n_train=24,
        n_val=8,
        epochs=1,
        seed=0,
        version=1,
        cache_dir=tmp_path / "cache",
        progress=False,
        workers=1,
        batch_size=8,
    )
    assert out == tmp_path / "models" / "unrest_detector" / "1"
    check_saved_model(out, UNREST_SIGNATURE)
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    x = np.full((3, 224, 224), np.nan, np.float32)
    x[1] = 0.0
    p = fn(phase=tf.constant(x))["probability"].numpy()
    assert p.shape == (3,) and np.all(np.isfinite(p))
    # The evaluation runs end to end on the exported model and writes its three files.
    rep = evaluate(
        out, tmp_path / "report", n_test=16, seed=5, n_frames=1, workers=1, progress=False
    )
    assert {"tp", "fp", "fn", "tn", "accuracy", "roc_auc"} <= set(rep["metrics"])
    assert rep["hard_negative_fraction"] >= 0.3 and rep["metrics"]["n"] == 16
    for name in ("unrest_report.json", "unrest_report.md", "unrest_confusion.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    with pytest.raises(FileExistsError):
        train(
            tmp_path / "models",
            n_train=4,
            n_val=2,
            epochs=1,
            seed=0,
            version=1,
            cache_dir=None,
            progress=False,
            workers=1,
        )


def strong_mogi_patches(rng: np.random.Generator, n: int) -> np.ndarray:
    """Centred-ish Mogi sources with 3-8 fringes of peak LOS and mild noise."""
    p = DEFAULT_PARAMS
    east, north = grid_en((224, 224), p.pixel_m)
    out = np.empty((n, 224, 224), np.float32)
    for i in range(n):
        r, c = rng.uniform(60, 164, 2)
        src = MogiSource(c * p.pixel_m, -r * p.pixel_m, rng.uniform(1500, 4000), 1e6)
        los = source_los(east, north, src, rng.uniform(30, 45), -10.0)
        los *= rng.uniform(3, 8) * p.fringe_m / np.abs(los).max()
        out[i] = wrap(p.rad_per_m() * los + 0.3 * rng.standard_normal((224, 224)))
    return out


def flat_noise_patches(rng: np.random.Generator, n: int) -> np.ndarray:
    """No signal: a constant phase plus the same mild noise."""
    return wrap(
        rng.uniform(-np.pi, np.pi, (n, 1, 1)) + 0.3 * rng.standard_normal((n, 224, 224))
    ).astype(np.float32)


@pytest.mark.skipif(not COMMITTED_MODEL.exists(), reason="no committed unrest model")
def test_committed_model_separates_strong_mogi_patches_from_flat_noise():
    rng = np.random.default_rng(2027)
    fn = tf.saved_model.load(str(COMMITTED_MODEL)).signatures["serving_default"]
    pos = fn(phase=tf.constant(strong_mogi_patches(rng, 12)))["probability"].numpy()
    neg = fn(phase=tf.constant(flat_noise_patches(rng, 12)))["probability"].numpy()
    assert np.all(pos >= 0.5), pos
    assert np.all(neg < 0.5), neg
    assert pos.min() > neg.max()
