"""The volcanic unrest detector: a compact 2D CNN on 224 x 224 wrapped-phase patches.

Input is raw wrapped phase in radians with NaN for no data (the ``phase`` tensor of
:data:`serving.signatures.UNREST_SIGNATURE`); the first layer turns it into three channels
inside the model, so every client sends the same raw tensor:

* ``sin(phase)`` and ``cos(phase)`` — continuous across the 2 pi wraps, so a fringe edge is
  not a feature;
* a validity mask (1 = finite, 0 = NaN), with sin and cos set to 0 where masked.

The network downsamples early (stride 2 twice) because it must train in minutes on two CPU
cores (PLATFORM.md: a 5-block conv net infers ~150 patches/s there); global max pooling
keeps a small, local bullseye as visible as a patch-wide one. Output: the probability that
the patch shows deformation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops

from serving.signatures import PATCH_SIZE


@keras.saving.register_keras_serializable(package="insar_monitor")
class PhaseFeatures(layers.Layer):
    """(batch, H, W) wrapped phase (rad, NaN = no data) -> (batch, H, W, 3) sin, cos, mask."""

    def call(self, phase: Any) -> Any:
        finite = ops.isfinite(phase)
        safe = ops.where(finite, phase, ops.zeros_like(phase))
        mask = ops.cast(finite, "float32")
        return ops.stack([ops.sin(safe) * mask, ops.cos(safe) * mask, mask], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape, 3)


def _conv_block(x: Any, filters: int, kernel: int = 3, strides: int = 1) -> Any:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_unrest_model(size: int = PATCH_SIZE, width: int = 1, dropout: float = 0.2) -> keras.Model:
    """Build the (uncompiled) unrest CNN.

    Parameters
    ----------
    size : int
        Patch side in pixels (224 for the served model).
    width : int
        Channel multiplier (1 = ~190k parameters).
    dropout : float
        Dropout before the dense head.

    Returns
    -------
    keras.Model
        Input ``phase`` (batch, size, size) float32 radians (NaN allowed);
        output (batch, 1) probability of deformation.
    """
    inp = keras.Input((size, size), dtype="float32", name="phase")
    x = PhaseFeatures(name="phase_features")(inp)
    x = _conv_block(x, 16 * width, kernel=5, strides=2)  # 112
    x = _conv_block(x, 32 * width, strides=2)  # 56
    x = _conv_block(x, 32 * width)
    x = layers.MaxPooling2D()(x)  # 28
    x = _conv_block(x, 48 * width)
    x = _conv_block(x, 64 * width)
    x = layers.MaxPooling2D()(x)  # 14
    x = _conv_block(x, 96 * width)
    x = layers.MaxPooling2D()(x)  # 7
    x = _conv_block(x, 128 * width)
    x = layers.Concatenate()([layers.GlobalMaxPooling2D()(x), layers.GlobalAveragePooling2D()(x)])
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu")(x)
    out = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inp, out, name="unrest_detector")


def make_serve_fn(model: keras.Model) -> Callable[[Any], dict[str, Any]]:
    """The ``serving_default`` function: raw phase (batch, 224, 224) -> {"probability": (batch,)}.

    NaN masking and the sin / cos features happen inside ``model`` (its first layer), so
    the exported signature takes the raw wrapped phase as TF-Serving clients send it.
    """
    import tensorflow as tf

    def serve(phase: Any) -> dict[str, Any]:
        prob = model(phase, training=False)
        return {"probability": tf.reshape(tf.cast(prob, tf.float32), [-1])}

    return serve
