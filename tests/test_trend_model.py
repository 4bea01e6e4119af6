"""Behaviour of the PS trend model: served pre-processing, signature, training and export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from serving.export import check_saved_model  # noqa: E402
from serving.models import trend  # noqa: E402
from serving.signatures import SIGNATURE_NAME, TREND_SIGNATURE  # noqa: E402
from serving.synthetic.ps_series import generate_ps_dataset, pad_series  # noqa: E402

COMMITTED = Path(__file__).resolve().parents[1] / "serving/models/ps_trend_classifier/1"


@pytest.fixture(scope="module")
def padded():
    ds = generate_ps_dataset(40, np.random.default_rng(21))
    return ds.padded()


def test_tf_and_numpy_resampling_agree(padded):
    disp, time = padded
    g_np, span_np = trend.resample_numpy(disp, time)
    g_tf, span_tf, n = trend.resample_tf(tf.constant(disp), tf.constant(time))
    np.testing.assert_allclose(g_tf.numpy(), g_np, atol=5e-3)
    np.testing.assert_allclose(span_tf.numpy(), span_np, rtol=1e-6)
    assert n.numpy().tolist() == np.isfinite(time).sum(axis=1).tolist()


def test_resampling_hits_first_and_last_epoch_exactly():
    t = np.array([[10.0, 16.0, 40.0, np.nan]], dtype=np.float32)
    d = np.array([[1.0, 2.0, -3.0, np.nan]], dtype=np.float32)
    g, _, _ = trend.resample_tf(tf.constant(d), tf.constant(t), n_points=5)
    np.testing.assert_allclose(
        g.numpy()[0], np.interp(np.linspace(10, 40, 5), t[0, :3], d[0, :3]), atol=1e-5
    )


def test_preprocessing_is_finite_and_shaped(padded):
    disp, time = padded
    grid, feats = trend.preprocess_tf(tf.constant(disp), tf.constant(time))
    assert grid.shape == (len(disp), trend.GRID_POINTS, trend.N_GRID_CHANNELS)
    assert feats.shape == (len(disp), trend.N_FEATURES)
    assert np.isfinite(grid.numpy()).all() and np.isfinite(feats.numpy()).all()


def test_amplitude_is_not_normalised_away():
    t = np.arange(100, dtype=np.float32)[None] * 12.0
    small, _ = trend.preprocess_tf(tf.constant(0.01 * t), tf.constant(t))
    big, _ = trend.preprocess_tf(tf.constant(0.1 * t), tf.constant(t))
    np.testing.assert_allclose(big.numpy()[..., 0], 10 * small.numpy()[..., 0], rtol=1e-4)


@pytest.mark.parametrize("builder", [trend.build_paper_cnn, trend.build_improved_model])
def test_serve_fn_accepts_ragged_nan_padded_input(builder):
    model = builder()
    serve = tf.function(trend.make_serve_fn(model))
    rng = np.random.default_rng(0)
    series = [(np.sort(rng.uniform(0, 2000, n)), rng.normal(0, 3, n)) for n in (60, 150, 300)]
    disp, time = pad_series(series)
    out = serve(tf.constant(disp), tf.constant(time))
    probs = out["probabilities"].numpy()
    assert probs.shape == (3, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert out["class_id"].dtype == tf.int64
    assert out["class_id"].numpy().tolist() == probs.argmax(axis=1).tolist()


def test_tiny_training_run_exports_a_valid_saved_model(tmp_path):
    from serving.training.trend import train

    out = train(tmp_path, n_train=300, n_val=100, epochs=1, seed=1, progress=False)
    assert out == tmp_path / "ps_trend_classifier" / "1"
    check_saved_model(out, TREND_SIGNATURE)
    fn = tf.saved_model.load(str(out)).signatures[SIGNATURE_NAME]
    disp, time = pad_series(
        [(np.arange(70.0) * 6, np.zeros(70)), (np.arange(90.0) * 12, np.ones(90))]
    )
    res = fn(displacement_mm=tf.constant(disp), time_days=tf.constant(time))
    np.testing.assert_allclose(res["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)


def test_training_rejects_unknown_architecture(tmp_path):
    from serving.training.trend import train

    with pytest.raises(ValueError, match="architecture"):
        train(tmp_path, n_train=10, n_val=5, epochs=1, architecture="resnet", progress=False)


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed trend model")
def test_committed_model_classifies_fresh_series_accurately():
    check_saved_model(COMMITTED, TREND_SIGNATURE)
    ds = generate_ps_dataset(300, np.random.default_rng([99, 17]))
    disp, time = ds.padded()
    fn = tf.saved_model.load(str(COMMITTED)).signatures[SIGNATURE_NAME]
    pred = fn(displacement_mm=tf.constant(disp), time_days=tf.constant(time))["class_id"].numpy()
    assert np.mean(pred == ds.labels) > 0.9
