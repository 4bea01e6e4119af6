"""Training of the PS trend classifier on synthetic series, exported as a TF-Serving model.

What this module is for: one reproducible function, :func:`train`, that draws a training
and a validation set from :mod:`serving.synthetic.ps_series` (independent seed streams),
pre-processes them with the *served* pre-processing (:func:`serving.models.trend.preprocess_tf`),
fits the paper CNN or the improved model with early stopping on the validation loss and
writes ``<out_base>/ps_trend_classifier/<version>/`` with :func:`serving.export.export_saved_model`.
The command line (``insar-monitor train trend``) lives in the CLI package and calls it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from serving.synthetic.ps_series import PSSeriesParams, generate_ps_dataset

log = logging.getLogger(__name__)

# Seed-stream tags: training, validation and evaluation sets never share a stream.
TRAIN_STREAM, VAL_STREAM = 1, 2


def _dataset(n: int, seed: int, stream: int, params: PSSeriesParams) -> tuple[np.ndarray, ...]:
    from serving.models.trend import preprocess_batched

    rng = np.random.default_rng([seed, stream])
    ds = generate_ps_dataset(n, rng, params)
    disp, time = ds.padded()
    grid, feats = preprocess_batched(disp, time)
    return grid, feats, ds.labels


def train(
    out_base: Path,
    *,
    n_train: int = 20000,
    n_val: int = 4000,
    epochs: int = 15,
    seed: int = 0,
    architecture: Literal["paper", "improved"] = "improved",
    version: int = 1,
    progress: bool = True,
    batch_size: int = 128,
    params: PSSeriesParams | None = None,
) -> Path:
    """Train a trend classifier on synthetic series and export it as a SavedModel.

    Parameters
    ----------
    out_base : Path
        Model base directory; the model goes to ``out_base/ps_trend_classifier/version``.
    n_train, n_val : int
        Number of synthetic training and validation series (class-balanced).
    epochs : int
        Maximum epochs; early stopping (patience 4 on validation loss) restores the best.
    seed : int
        Seed for data (streams ``[seed, 1]`` train, ``[seed, 2]`` validation) and weights.
    architecture : {"paper", "improved"}
        :func:`~serving.models.trend.build_paper_cnn` or
        :func:`~serving.models.trend.build_improved_model`.
    version : int
        Model version directory (must not exist yet).
    progress : bool
        Show tqdm / Keras progress bars.
    batch_size : int
        Training batch size.
    params : PSSeriesParams, optional
        Generator ranges (defaults).

    Returns
    -------
    Path
        The exported version directory.
    """
    import keras
    from tqdm import tqdm

    from serving.export import export_saved_model
    from serving.models.trend import (
        build_improved_model,
        build_paper_cnn,
        make_serve_fn,
        model_inputs,
    )
    from serving.signatures import TREND_SIGNATURE

    if architecture not in ("paper", "improved"):
        raise ValueError(f"architecture must be 'paper' or 'improved', got {architecture!r}")
    params = params or PSSeriesParams()
    steps = tqdm(total=2, desc="synthetic data", disable=not progress)
    g_tr, f_tr, y_tr = _dataset(n_train, seed, TRAIN_STREAM, params)
    steps.update()
    g_va, f_va, y_va = _dataset(n_val, seed, VAL_STREAM, params)
    steps.update()
    steps.close()

    build = build_paper_cnn if architecture == "paper" else build_improved_model
    model = build(seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, min_lr=1e-5),
    ]
    model.fit(
        model_inputs(model, g_tr, f_tr),
        y_tr,
        validation_data=(model_inputs(model, g_va, f_va), y_va),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=1 if progress else 0,
    )
    _, val_acc = model.evaluate(model_inputs(model, g_va, f_va), y_va, verbose=0)
    log.info("%s model: validation accuracy %.4f", architecture, val_acc)
    return export_saved_model(model, make_serve_fn(model), TREND_SIGNATURE, Path(out_base), version)
