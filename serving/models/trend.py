"""PS time-series trend classifier: served pre-processing, the paper's 1D CNN and our model.

What this module is for: turning raw, irregularly sampled Persistent-Scatterer displacement
series into class probabilities over :data:`serving.signatures.TREND_CLASSES`, with the
pre-processing inside the served graph so TF-Serving callers send raw series.

Pre-processing (:func:`preprocess_tf`, the same ops at training and serving time)
-----------------------------------------------------------------------------------
Inputs are ``displacement_mm`` and ``time_days``, shape (batch, T), NaN right-padded
(row ``i`` has ``n_i`` valid epochs, times increasing, any time origin).

1. Resampling: each row is linearly interpolated onto ``GRID_POINTS`` equally spaced
   times spanning its own first..last epoch (``tf.searchsorted``; :func:`resample_numpy`
   is the numpy twin, the tests check they agree). The grid makes every series the same
   length regardless of revisit, gaps or span.
2. Grid channels, shape (batch, GRID_POINTS, 5):

   0. displacement minus its grid mean, divided by ``DISP_SCALE_MM`` (a *fixed* 30 mm, not
      the series' std: the amplitude relative to noise is what separates stable from moving);
   1. first difference along the grid divided by ``JUMP_SCALE_MM`` (27.7 mm), so an
      unwrapping jump is a spike of about +-1 whatever the trend;
   2. the span in years / 5, constant along the grid (velocity = displacement / span);
   3. residual of the least-squares line through channel-0 (shape of non-linearity);
   4. residual of the least-squares parabola through channel-0 (kinks, steps).

   The paper CNN reads channels 0-2 only; the improved model reads all five.
3. Series statistics, shape (batch, N_FEATURES), computed on the raw valid epochs (not the
   grid) -- a differentiable-free, in-graph version of the PS-Time tests:
   ``log(R_M / sigma_hat)`` for M = constant, linear, quadratic and best bilinear
   (15 breakpoints), each with an annual sinusoid, where ``R_M`` is the RMS residual (mm)
   and ``sigma_hat`` a robust noise estimate (1.4826 x median |first difference of the
   quadratic residual| / sqrt 2, mm); ``log sigma_hat``; span (yr); ``log n``; two jump
   statistics on the quadratic residual in units of 27.7 mm: the largest single-epoch jump
   that is not undone at the next epoch (outliers are) and the largest 4-epoch
   mean-before/after difference. Only the improved model reads them.

References
----------
Mirmazloumi, S.M., Gambin, A.F., Wassie, Y., et al. (2022). InSAR deformation time series
classification using a convolutional neural network. ISPRS Archives XLIII-B3, 307-312.
Berti, M., et al. (2013). NHESS 13, 1945-1958. https://doi.org/10.5194/nhess-13-1945-2013
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from serving.signatures import TREND_CLASSES

GRID_POINTS = 128
DISP_SCALE_MM = 30.0
JUMP_SCALE_MM = 27.7
SPAN_SCALE_YEARS = 5.0
DAYS_PER_YEAR = 365.25
N_GRID_CHANNELS = 5
PAPER_CHANNELS = 3
N_BREAKS = 15
N_FEATURES = 10
STEP_WINDOW = 4


# --- numpy twin of the resampling --------------------------------------------------------------


def resample_numpy(
    disp: np.ndarray, time: np.ndarray, n_points: int = GRID_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate NaN right-padded series onto per-row uniform grids.

    Parameters
    ----------
    disp, time : ndarray, shape (batch, T)
        Displacement (mm) and times (days), NaN right-padded.
    n_points : int
        Grid size.

    Returns
    -------
    grid_disp : ndarray of float32, shape (batch, n_points)
        Interpolated displacement (mm) at ``n_points`` times from each row's first to last
        valid epoch.
    span_days : ndarray of float32, shape (batch,)
        Last minus first valid epoch (days).
    """
    disp = np.asarray(disp, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    out = np.zeros((disp.shape[0], n_points), dtype=np.float32)
    span = np.zeros(disp.shape[0], dtype=np.float32)
    for i in range(disp.shape[0]):
        ok = np.isfinite(time[i]) & np.isfinite(disp[i])
        t, d = time[i, ok], disp[i, ok]
        if len(t) == 0:
            continue
        grid = t[0] + (t[-1] - t[0]) * np.linspace(0.0, 1.0, n_points)
        out[i] = np.interp(grid, t, d)
        span[i] = t[-1] - t[0]
    return out, span


# --- TensorFlow pre-processing (inside the served graph) ----------------------------------------


def resample_tf(disp: Any, time: Any, n_points: int = GRID_POINTS) -> tuple[Any, Any, Any]:
    """TensorFlow twin of :func:`resample_numpy`.

    Returns
    -------
    grid_disp : tf.Tensor float32, shape (batch, n_points)
        Interpolated displacement (mm).
    span_days : tf.Tensor float32, shape (batch,)
        Span of each row (days).
    n_valid : tf.Tensor int32, shape (batch,)
        Number of valid epochs per row.
    """
    import tensorflow as tf

    disp = tf.cast(disp, tf.float32)
    time = tf.cast(time, tf.float32)
    valid = tf.math.is_finite(time) & tf.math.is_finite(disp)
    n = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    # Padding becomes +big so each row stays sorted for searchsorted.
    t = tf.where(valid, time, tf.fill(tf.shape(time), 3.0e38))
    d = tf.where(valid, disp, tf.zeros_like(disp))
    last = tf.maximum(n - 1, 0)
    t0 = t[:, 0]
    t1 = tf.gather(t, last[:, None], batch_dims=1)[:, 0]
    span = tf.maximum(t1 - t0, 0.0)
    frac = tf.linspace(0.0, 1.0, n_points)
    grid = t0[:, None] + span[:, None] * frac[None, :]
    idx = tf.searchsorted(t, grid, side="right") - 1
    idx = tf.clip_by_value(idx, 0, tf.maximum(n - 2, 0)[:, None])
    idx_b = tf.minimum(idx + 1, last[:, None])
    ta = tf.gather(t, idx, batch_dims=1)
    tb = tf.gather(t, idx_b, batch_dims=1)
    da = tf.gather(d, idx, batch_dims=1)
    db = tf.gather(d, idx_b, batch_dims=1)
    w = tf.where(tb > ta, (grid - ta) / tf.maximum(tb - ta, 1e-6), tf.zeros_like(grid))
    w = tf.clip_by_value(w, 0.0, 1.0)
    return da + w * (db - da), span, n


def _poly_residual_matrix(n_points: int, degree: int) -> np.ndarray:
    """I - P for the projection P onto polynomials of ``degree`` on a uniform grid."""
    x = np.linspace(-1.0, 1.0, n_points)
    v = np.vander(x, degree + 1)
    p = v @ np.linalg.pinv(v)
    return (np.eye(n_points) - p).astype(np.float32)


def _masked_fit_rms(design: Any, y: Any, mask: Any, n: Any) -> tuple[Any, Any]:
    """Masked least squares: RMS residual (mm) and residuals.

    ``design`` is (B, T, p) or (B, K, T, p) (K alternative designs per row); ``y`` and
    ``mask`` are (B, T), ``n`` (B,) valid counts. Returns RMS (B,) or (B, K) and residuals.
    """
    import tensorflow as tf

    nn = tf.cast(tf.maximum(n, 1), tf.float32)
    if len(design.shape) == 4:
        mask, y, nn = mask[:, None, :], y[:, None, :], nn[:, None]
    x = design * mask[..., None]
    yv = y * mask
    xtx = tf.linalg.matmul(x, x, transpose_a=True)
    p = design.shape[-1]
    # Relative ridge: keeps rows with very few epochs or a short span solvable.
    ridge = 1e-6 * (tf.linalg.trace(xtx)[..., None, None] + 1.0) * tf.eye(p)
    xty = tf.linalg.matvec(x, yv, transpose_a=True)
    beta = tf.linalg.solve(xtx + ridge, xty[..., None])[..., 0]
    res = (yv - tf.linalg.matvec(x, beta)) * mask
    return tf.sqrt(tf.reduce_sum(res**2, axis=-1) / nn + 1e-12), res


def series_features_tf(disp: Any, time: Any) -> Any:
    """In-graph PS-Time statistics of raw series (see module docstring), shape (B, N_FEATURES)."""
    import tensorflow as tf

    disp = tf.cast(disp, tf.float32)
    time = tf.cast(time, tf.float32)
    valid = tf.math.is_finite(time) & tf.math.is_finite(disp)
    mask = tf.cast(valid, tf.float32)
    n = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    t = tf.where(valid, time, tf.zeros_like(time))
    t0 = t[:, :1]
    span = tf.maximum(tf.reduce_max(t - t0, axis=1, keepdims=True), 1.0)
    tn = tf.where(valid, (t - t0) / span, tf.zeros_like(t))
    # Reference to the first epoch so the fits stay well conditioned in float32.
    y = tf.where(valid, disp - disp[:, :1], tf.zeros_like(disp))
    w = 2.0 * np.pi * t / DAYS_PER_YEAR
    ones = tf.ones_like(tn)
    seas = [tf.cos(w), tf.sin(w)]
    const = tf.stack([ones, *seas], axis=-1)
    lin = tf.stack([ones, tn, *seas], axis=-1)
    quad = tf.stack([ones, tn, tn**2, *seas], axis=-1)
    r_const, _ = _masked_fit_rms(const, y, mask, n)
    r_lin, _ = _masked_fit_rms(lin, y, mask, n)
    r_quad, res_quad = _masked_fit_rms(quad, y, mask, n)
    breaks = tf.constant(np.linspace(0.15, 0.85, N_BREAKS), tf.float32)
    hinge = tf.nn.relu(tn[:, None, :] - breaks[None, :, None])
    lin_b = tf.broadcast_to(lin[:, None], [tf.shape(lin)[0], N_BREAKS, tf.shape(lin)[1], 4])
    bilin = tf.concat([lin_b, hinge[..., None]], axis=-1)
    r_bilin_all, _ = _masked_fit_rms(bilin, y, mask, n)
    r_bilin = tf.reduce_min(r_bilin_all, axis=1)

    # Robust noise: median |first difference| of the quadratic residual / sqrt(2) x 1.4826.
    diff = res_quad[:, 1:] - res_quad[:, :-1]
    dvalid = valid[:, 1:] & valid[:, :-1]
    nd = tf.reduce_sum(tf.cast(dvalid, tf.int32), axis=1)
    big = tf.fill(tf.shape(diff), 3.0e38)
    sorted_abs = tf.sort(tf.where(dvalid, tf.abs(diff), big), axis=1)
    med = tf.gather(sorted_abs, tf.maximum(nd - 1, 0)[:, None] // 2, batch_dims=1)[:, 0]
    sigma = tf.maximum(1.4826 * med / np.sqrt(2.0), 0.1)

    # Jump that is not undone at the next epoch: min(|d_i|, |d_i + d_{i+1}|).
    both = dvalid[:, :-1] & dvalid[:, 1:]
    persistent = tf.minimum(tf.abs(diff[:, :-1]), tf.abs(diff[:, :-1] + diff[:, 1:]))
    jump1 = tf.reduce_max(tf.where(both, persistent, tf.zeros_like(persistent)), axis=1)
    # Mean of the next STEP_WINDOW epochs minus mean of the previous STEP_WINDOW.
    k = STEP_WINDOW
    csum = tf.pad(tf.cumsum(res_quad, axis=1), [[0, 0], [1, 0]])
    width = tf.shape(res_quad)[1]
    i = tf.range(k, tf.maximum(width - k + 1, k + 1))
    i = tf.minimum(i, width)
    after = (tf.gather(csum, tf.minimum(i + k, width), axis=1) - tf.gather(csum, i, axis=1)) / k
    before = (tf.gather(csum, i, axis=1) - tf.gather(csum, i - k, axis=1)) / k
    ok = (i[None, :] + k) <= n[:, None]
    stepk = tf.reduce_max(tf.where(ok, tf.abs(after - before), tf.zeros_like(after)), axis=1)

    def lr(r: Any) -> Any:
        return tf.math.log(r / sigma + 1e-3)

    span_years = tf.reduce_max(t - t0, axis=1) / DAYS_PER_YEAR
    feats = [
        lr(r_const),
        lr(r_lin),
        lr(r_quad),
        lr(r_bilin),
        tf.math.log(sigma),
        span_years / SPAN_SCALE_YEARS,
        tf.math.log(tf.cast(tf.maximum(n, 1), tf.float32)) - 5.0,
        jump1 / JUMP_SCALE_MM,
        stepk / JUMP_SCALE_MM,
        jump1 / (sigma * 5.0),
    ]
    return tf.stack(feats, axis=-1)


def preprocess_tf(disp: Any, time: Any) -> tuple[Any, Any]:
    """Grid channels (B, GRID_POINTS, 5) and series features (B, N_FEATURES), float32."""
    import tensorflow as tf

    grid, span, _ = resample_tf(disp, time)
    x = grid - tf.reduce_mean(grid, axis=1, keepdims=True)
    dx = tf.pad(x[:, 1:] - x[:, :-1], [[0, 0], [1, 0]]) / JUMP_SCALE_MM
    xs = x / DISP_SCALE_MM
    span_ch = tf.broadcast_to((span / DAYS_PER_YEAR / SPAN_SCALE_YEARS)[:, None], tf.shape(xs))
    r1 = tf.linalg.matvec(tf.constant(_poly_residual_matrix(GRID_POINTS, 1)), xs)
    r2 = tf.linalg.matvec(tf.constant(_poly_residual_matrix(GRID_POINTS, 2)), xs)
    channels = tf.stack([xs, dx, span_ch, r1, r2], axis=-1)
    return channels, series_features_tf(disp, time)


def preprocess_batched(
    disp: np.ndarray, time: np.ndarray, batch: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Run :func:`preprocess_tf` over padded numpy arrays in batches (training, evaluation)."""
    import tensorflow as tf

    fn = tf.function(preprocess_tf, reduce_retracing=True)
    grids, feats = [], []
    for s in range(0, len(disp), batch):
        g, f = fn(tf.constant(disp[s : s + batch]), tf.constant(time[s : s + batch]))
        grids.append(g.numpy())
        feats.append(f.numpy())
    return np.concatenate(grids), np.concatenate(feats)


# --- models -------------------------------------------------------------------------------------


def build_paper_cnn(n_classes: int = len(TREND_CLASSES), seed: int = 0) -> Any:
    """The 1D CNN of Mirmazloumi et al. (2022), on grid channels 0-2.

    Conv1D(138, 5, ReLU) + MaxPool(2), Conv1D(64, 5, ReLU) + MaxPool(2), global average
    pooling, dropout 0.4, Dense(64) with LeakyReLU, softmax over ``n_classes``.

    Returns
    -------
    keras.Model
        Input (batch, GRID_POINTS, 3); output (batch, n_classes) probabilities.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((GRID_POINTS, PAPER_CHANNELS), name="grid")
    x = layers.Conv1D(138, 5, activation="relu")(inp)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(64, 5, activation="relu")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(64)(x)
    x = layers.LeakyReLU()(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="paper_cnn")


def build_improved_model(n_classes: int = len(TREND_CLASSES), seed: int = 0) -> Any:
    """Our classifier: dilated residual 1D CNN on 5 grid channels + an MLP on series statistics.

    The dilations (1, 2, 4, 8) give a receptive field of the whole grid at full resolution
    (a kink or a step is a local event whose meaning depends on the whole series); global
    max pooling keeps isolated spikes (jumps) that average pooling dilutes; the statistics
    branch carries the noise-normalised model residuals that define the classes.

    Returns
    -------
    keras.Model
        Inputs ``grid`` (batch, GRID_POINTS, 5) and ``features`` (batch, N_FEATURES);
        output (batch, n_classes) probabilities.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    g_in = keras.Input((GRID_POINTS, N_GRID_CHANNELS), name="grid")
    f_in = keras.Input((N_FEATURES,), name="features")
    x = layers.Conv1D(48, 5, padding="same", activation="relu")(g_in)
    for dilation in (1, 2, 4, 8):
        h = layers.Conv1D(48, 3, padding="same", dilation_rate=dilation, activation="relu")(x)
        h = layers.Conv1D(48, 3, padding="same", dilation_rate=dilation)(h)
        x = layers.Activation("relu")(layers.Add()([x, h]))
    pooled = layers.Concatenate()(
        [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)]
    )
    f = layers.Dense(32, activation="relu")(f_in)
    f = layers.Dense(32, activation="relu")(f)
    z = layers.Concatenate()([pooled, f])
    z = layers.Dense(64, activation="relu")(z)
    z = layers.Dropout(0.2)(z)
    out = layers.Dense(n_classes, activation="softmax")(z)
    return keras.Model([g_in, f_in], out, name="trend_improved")


def model_inputs(model: Any, grid: Any, feats: Any) -> Any:
    """The inputs ``model`` expects, cut from the full pre-processing output."""
    n_ch = model.inputs[0].shape[-1]
    if len(model.inputs) == 2:
        return [grid[..., :n_ch], feats]
    return grid[..., :n_ch]


def make_serve_fn(model: Any) -> Callable[[Any, Any], dict[str, Any]]:
    """The ``serving_default`` function: raw padded series in, probabilities and class out.

    Returns
    -------
    callable
        ``serve(displacement_mm, time_days)`` -> ``{"probabilities": (B, 5) float32,
        "class_id": (B,) int64}``.
    """
    import tensorflow as tf

    def serve(displacement_mm: Any, time_days: Any) -> dict[str, Any]:
        grid, feats = preprocess_tf(displacement_mm, time_days)
        probs = tf.cast(model(model_inputs(model, grid, feats), training=False), tf.float32)
        class_id = tf.argmax(probs, axis=-1, output_type=tf.int64)
        return {"probabilities": probs, "class_id": class_id}

    return serve
