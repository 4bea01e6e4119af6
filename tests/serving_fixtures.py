"""Tiny stand-in models that satisfy serving/signatures.py, for client and server tests.

Each builder makes a small Keras model plus a serving function with the contract's
input and output names, NaN handling inside the graph like the real exports, and
writes it with :func:`serving.export.export_saved_model`. ``bias`` changes the
outputs so that two exported versions are told apart. Also usable from a shell to
give ``bench/bench_inference.py`` something to run on::

    .venv/bin/python -m tests.serving_fixtures /tmp/tiny_models
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from serving.export import export_saved_model
from serving.signatures import (
    PATCH_SIZE,
    TREND_CLASSES,
    TREND_SIGNATURE,
    UNREST_SIGNATURE,
    ModelSignature,
)

logger = logging.getLogger(__name__)


def export_tiny_unrest(
    base_dir: Path, version: int = 1, *, bias: float = 0.0, signature: ModelSignature | None = None
) -> Path:
    """Export a ~200-parameter unrest detector: NaN->0, sin/cos, 16x16 pooling, dense."""
    import keras
    import tensorflow as tf

    signature = signature or UNREST_SIGNATURE
    keras.utils.set_random_seed(7)
    inp = keras.Input((PATCH_SIZE, PATCH_SIZE, 2))
    x = keras.layers.AveragePooling2D(32)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(bias))(x)
    model = keras.Model(inp, out)

    def serve(phase: Any) -> dict[str, Any]:
        valid = tf.math.is_finite(phase)
        clean = tf.where(valid, phase, tf.zeros_like(phase))
        # No-data pixels give (0, 0) instead of (sin 0, cos 0) = (0, 1).
        feats = tf.stack([tf.sin(clean), tf.where(valid, tf.cos(clean), 0.0)], axis=-1)
        logit = tf.squeeze(model(feats), axis=-1)
        return {signature.output_names()[0]: tf.sigmoid(logit)}

    return export_saved_model(model, serve, signature, base_dir, version)


def export_tiny_trend(base_dir: Path, version: int = 1, *, bias: float = 0.0) -> Path:
    """Export a tiny trend classifier: NaN-aware mean/slope/spread features -> softmax."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(11)
    inp = keras.Input((4,))
    out = keras.layers.Dense(
        len(TREND_CLASSES), bias_initializer=keras.initializers.Constant(bias)
    )(inp)
    model = keras.Model(inp, out)

    def serve(displacement_mm: Any, time_days: Any) -> dict[str, Any]:
        valid = tf.math.is_finite(displacement_mm) & tf.math.is_finite(time_days)
        w = tf.cast(valid, tf.float32)
        d = tf.where(valid, displacement_mm, 0.0)
        t = tf.where(valid, time_days, 0.0)
        n = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)
        d_mean = tf.reduce_sum(d, axis=1) / n
        t_mean = tf.reduce_sum(t, axis=1) / n
        dt = (t - t_mean[:, None]) * w
        dd = (d - d_mean[:, None]) * w
        slope = tf.reduce_sum(dt * dd, axis=1) / tf.maximum(tf.reduce_sum(dt * dt, axis=1), 1e-6)
        spread = tf.sqrt(tf.reduce_sum(dd * dd, axis=1) / n)
        feats = tf.stack([d_mean / 10.0, slope * 365.25 / 10.0, spread / 10.0, n / 100.0], 1)
        probs = tf.nn.softmax(model(feats), axis=-1)
        return {"probabilities": probs, "class_id": tf.argmax(probs, axis=-1, output_type=tf.int64)}

    return export_saved_model(model, serve, TREND_SIGNATURE, base_dir, version)


def ragged_series(rows: int, max_len: int, seed: int) -> dict[str, np.ndarray]:
    """Random NaN right-padded ``displacement_mm`` / ``time_days``, shape (rows, max_len)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, max_len // 4), max_len + 1, size=rows)
    t = np.cumsum(rng.uniform(6, 12, size=(rows, max_len)), axis=1).astype(np.float32)
    d = rng.normal(0, 3, size=(rows, max_len)) + rng.normal(0, 0.05, (rows, 1)) * t
    d = d.astype(np.float32)
    pad = np.arange(max_len)[None, :] >= lengths[:, None]
    t[pad] = np.nan
    d[pad] = np.nan
    return {"displacement_mm": d, "time_days": t}


def random_patches(rows: int, seed: int, nan_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Wrapped phase patches (rows, 224, 224) float32 in [-pi, pi) with NaN holes."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(-np.pi, np.pi, size=(rows, PATCH_SIZE, PATCH_SIZE)).astype(np.float32)
    phase[rng.random(phase.shape) < nan_fraction] = np.nan
    return {"phase": phase}


def main(argv: list[str]) -> int:
    """Export both tiny models (version 1) under ``argv[0]``."""
    logging.basicConfig(level=logging.INFO)
    if len(argv) != 1:
        logger.error("usage: python -m tests.serving_fixtures <model_base>")
        return 2
    base = Path(argv[0])
    for path in (export_tiny_unrest(base), export_tiny_trend(base)):
        logger.info("exported %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
