"""A stand-in ``ada_delineator`` whose answer is known, for the delineation plumbing tests.

The trained U-Net's output on test data is whatever it learned; the plumbing tests need an
answer they can predict. This model keeps the contract of
:data:`serving.signatures.DELINEATION_SIGNATURE` (three raw grids with NaN in, one
probability grid out) and says "ADA" where the hot spot density is strong:
``probability = sigmoid((|density| - level) / width)``, 0 where the density is NaN. The
terrain inputs are read (so the signature is the real one) but do not change the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.signatures import DELINEATION_SIGNATURE, DELINEATION_TILE


def export_density_delineator(
    base_dir: Path, version: int = 1, *, level: float = 400.0, width: float = 50.0
) -> Path:
    """Export the stand-in to ``base_dir/ada_delineator/<version>``; returns that directory.

    Parameters
    ----------
    level : float
        |density| (1/km2) at which the probability is 0.5.
    width : float
        |density| change (1/km2) from probability 0.5 to 0.73.
    """
    import keras
    import tensorflow as tf

    from serving.export import export_saved_model

    # A 1x1 convolution holds the affine map, so the SavedModel has variables like a real one.
    inp = keras.Input((DELINEATION_TILE, DELINEATION_TILE, 1))
    out = keras.layers.Conv2D(
        1, 1,
        kernel_initializer=keras.initializers.Constant(1.0 / width),
        bias_initializer=keras.initializers.Constant(-level / width),
    )(inp)
    model = keras.Model(inp, out)

    def serve(hotspot_density: Any, aspect_deg: Any, slope_deg: Any) -> dict[str, Any]:
        ok = tf.math.is_finite(hotspot_density)
        magnitude = tf.where(ok, tf.abs(hotspot_density), tf.zeros_like(hotspot_density))
        logit = model(magnitude[..., None])[..., 0]
        # Terrain is part of the contract; touch it so both inputs stay in the graph.
        unused = 0.0 * tf.reduce_sum(tf.where(tf.math.is_finite(aspect_deg), 1.0, 0.0))
        unused += 0.0 * tf.reduce_sum(tf.where(tf.math.is_finite(slope_deg), 1.0, 0.0))
        prob = tf.where(ok, tf.sigmoid(logit), tf.zeros_like(logit)) + unused
        return {"probability": tf.cast(prob, tf.float32)}

    return export_saved_model(model, serve, DELINEATION_SIGNATURE, base_dir, version)
