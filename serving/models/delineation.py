"""The U-Net that outlines anomalous deformation areas on a hot spot map (+ terrain).

After the hot spot paper (its model XIII): the z-weighted kernel density of Gi* z-scores
plus terrain aspect go into a U-Net (Ronneberger et al. 2015) whose encoder is blocks of
two 3x3 convolutions + ReLU followed by 2x2 max pooling, whose decoder is 2x2 transposed
convolutions + the skip connection from the encoder block of the same size + two 3x3
convolutions, and whose head is a 1x1 convolution with a sigmoid, trained with binary
cross-entropy and read at 0.5. Two departures, both for a model that must train on two CPU
cores: the channels start at 8 instead of 64 (about 1/60 of the FLOPs), and each
convolution is followed by batch normalisation.

Normalisation happens inside the model (:class:`DelineationFeatures`), so TF-Serving
clients send the raw grids of :data:`serving.signatures.DELINEATION_SIGNATURE`:

* density -> ``asinh(density / DENSITY_SCALE)`` (signed, compresses the long tails of
  dense PS networks) and a validity mask;
* aspect -> ``sin``, ``cos`` (continuous across north) and a mask;
* slope -> ``slope / 45`` and a mask.

NaN in any input becomes 0 with its mask 0, which is how the model runs on the hot spot map
alone when no DEM is configured: it was trained with the terrain channels dropped on a
share of the scenes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops

from serving.signatures import DELINEATION_TILE

DENSITY_SCALE = 100.0
"""Density (1/km2) that maps to asinh(1): about a 2-sigma hot spot in a 50 points/km2 network."""

N_FEATURES = 7


@keras.saving.register_keras_serializable(package="insar_monitor")
class DelineationFeatures(layers.Layer):
    """(density, aspect, slope), each (batch, H, W) with NaN -> (batch, H, W, 7) features."""

    def call(self, density: Any, aspect: Any, slope: Any) -> Any:
        def masked(x: Any) -> tuple[Any, Any]:
            ok = ops.isfinite(x)
            return ops.where(ok, x, ops.zeros_like(x)), ops.cast(ok, "float32")

        d, d_ok = masked(density)
        a, a_ok = masked(aspect)
        s, s_ok = masked(slope)
        rad = a * (3.141592653589793 / 180.0)
        return ops.stack(
            [
                ops.arcsinh(d / DENSITY_SCALE) * d_ok,
                d_ok,
                ops.sin(rad) * a_ok,
                ops.cos(rad) * a_ok,
                a_ok,
                s / 45.0 * s_ok,
                s_ok,
            ],
            axis=-1,
        )

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return (*input_shape[0], N_FEATURES) if isinstance(input_shape, list) else (
            *input_shape, N_FEATURES
        )


def _double_conv(x: Any, filters: int) -> Any:
    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    return x


def build_unet(size: int | None = DELINEATION_TILE, base: int = 8, depth: int = 4) -> keras.Model:
    """Build the (uncompiled) delineation U-Net.

    Parameters
    ----------
    size : int or None
        Tile side in pixels (a multiple of ``2**depth``); None builds a fully convolutional
        model for any such side (training uses 128 px crops, serving 256 px tiles).
    base : int
        Channels of the first encoder block; doubled at each level (8 -> 128 at depth 4).
    depth : int
        Number of 2x2 poolings (4 as in the original U-Net).

    Returns
    -------
    keras.Model
        Inputs ``hotspot_density``, ``aspect_deg``, ``slope_deg`` (batch, size, size),
        float32, NaN allowed; output (batch, size, size, 1) probability.
    """
    shape = (size, size)
    density = keras.Input(shape, dtype="float32", name="hotspot_density")
    aspect = keras.Input(shape, dtype="float32", name="aspect_deg")
    slope = keras.Input(shape, dtype="float32", name="slope_deg")
    x = DelineationFeatures(name="features")(density, aspect, slope)
    skips = []
    for level in range(depth):
        x = _double_conv(x, base * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = _double_conv(x, base * 2**depth)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base * 2**level, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = _double_conv(x, base * 2**level)
    out = layers.Conv2D(1, 1, activation="sigmoid", name="probability")(x)
    return keras.Model([density, aspect, slope], out, name="ada_delineator")


def make_serve_fn(model: keras.Model) -> Callable[..., dict[str, Any]]:
    """The ``serving_default`` function: three raw grids -> {"probability": (batch, H, W)}."""
    import tensorflow as tf

    def serve(hotspot_density: Any, aspect_deg: Any, slope_deg: Any) -> dict[str, Any]:
        prob = model([hotspot_density, aspect_deg, slope_deg], training=False)
        return {"probability": tf.cast(prob[..., 0], tf.float32)}

    return serve
