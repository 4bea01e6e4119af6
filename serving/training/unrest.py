"""Train the volcanic unrest detector on synthetic interferograms and export it for TF-Serving.

Steps: generate (or load from the ``.npy`` cache under ``build/``) a seeded synthetic training
and validation set (:mod:`serving.synthetic.interferogram`), fit the compact CNN of
:mod:`serving.models.unrest` with flip / 90-degree-rotation augmentation (these keep wrapped
values exact, unlike any resampling) and early stopping on the validation loss, then export
the best weights as ``<out_base>/unrest_detector/<version>/`` with
:func:`serving.export.export_saved_model`.

Usage::

    nice -n 5 .venv/bin/python -m serving.training.unrest --n-train 14000 --n-val 2000 \\
        --epochs 12 --seed 2 --version 1

(the recipe of the committed ``serving/models/unrest_detector/1``: 14,000 + 2,000 patches,
12 epochs, seed 2; ~9.5 min generation and ~26 min fitting on 2 shared cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from serving.synthetic.interferogram import (
    DEFAULT_PARAMS,
    InterferogramParams,
    SyntheticSet,
    generate_dataset,
)

log = logging.getLogger(__name__)

HARD_NEGATIVE_FRACTION = 0.3
"""Share of hard negatives in training and validation (the test set uses at least as many)."""


def _cache_key(n: int, seed: int, split: str, params: InterferogramParams) -> str:
    digest = hashlib.sha256(repr(params).encode()).hexdigest()[:10]
    return f"unrest_{split}_n{n}_s{seed}_{digest}"


def load_or_generate(
    n: int,
    seed: int,
    split: str,
    params: InterferogramParams,
    cache_dir: Path | None,
    *,
    workers: int = 2,
    progress: bool = True,
) -> SyntheticSet:
    """A seeded synthetic set, cached as ``.npy`` files (phase stored as float16) in ``cache_dir``.

    Parameters
    ----------
    n : int
        Number of patches.
    seed : int
        Seed of this split (the same seed always gives the same set).
    split : str
        Name used in the cache file names ("train", "val", "test").
    params : InterferogramParams
        Generator ranges; part of the cache key.
    cache_dir : Path or None
        Where to cache; None = no cache.
    workers : int
        Generation processes.
    progress : bool
        Show a tqdm bar while generating.

    Returns
    -------
    SyntheticSet
    """
    key = _cache_key(n, seed, split, params)
    if cache_dir is not None:
        files = {f: Path(cache_dir) / f"{key}_{f}.npy" for f in SyntheticSet._fields}
        if all(p.exists() for p in files.values()):
            log.info("loading cached %s set %s", split, key)
            return SyntheticSet(
                *(np.load(files[f], allow_pickle=False) for f in SyntheticSet._fields)
            )
    data = generate_dataset(
        n,
        np.random.default_rng(seed),
        params,
        0.5,
        HARD_NEGATIVE_FRACTION,
        workers=workers,
        progress=progress,
    )
    # float16 halves memory and disk; wrapped phase keeps ~1e-3 rad precision and NaN.
    data = data._replace(phase=data.phase.astype(np.float16))
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for f in SyntheticSet._fields:
            np.save(files[f], getattr(data, f), allow_pickle=False)
    return data


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and 90-degree rotations per patch (exact on wrapped phase, no resampling).

    Parameters
    ----------
    batch : ndarray, shape (n, H, H)
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (n, H, H), float32
    """
    out = np.empty(batch.shape, dtype=np.float32)
    ks = rng.integers(0, 4, len(batch))
    flips = rng.random(len(batch)) < 0.5
    for i in range(len(batch)):
        p = np.rot90(batch[i], int(ks[i]))
        out[i] = p[:, ::-1] if flips[i] else p
    return out


def _make_sequence(
    phase: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, train: bool
) -> Any:
    import keras

    class _Batches(keras.utils.PyDataset):
        """Shuffled, augmented batches of the float16 cache (train) or plain batches (val)."""

        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(phase)) if train else np.arange(len(phase))

        def __len__(self) -> int:
            return int(np.ceil(len(phase) / batch_size))

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            x = phase[idx]
            x = augment(x, self.rng) if train else x.astype(np.float32)
            return x, labels[idx].astype(np.float32)

        def on_epoch_end(self) -> None:
            if train:
                self.order = self.rng.permutation(len(phase))

    return _Batches()


def train(
    out_base: Path,
    *,
    n_train: int = 14000,
    n_val: int = 2000,
    epochs: int = 20,
    patience: int = 6,
    seed: int = 2,
    version: int = 1,
    cache_dir: Path | None = Path("build/unrest_cache"),
    progress: bool = True,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    params: InterferogramParams = DEFAULT_PARAMS,
    workers: int = 2,
) -> Path:
    """Generate data, train the unrest CNN and export it as a SavedModel.

    Parameters
    ----------
    out_base : Path
        Model base directory; the model goes to ``out_base/unrest_detector/<version>/``.
    n_train, n_val : int
        Training and validation patches (50 % positive, 30 % hard negatives).
    epochs : int
        Maximum epochs; the learning rate follows a cosine decay over all of them.
    patience : int
        Early stopping: epochs without a better validation loss before stopping; the
        best weights are restored either way.
    seed : int
        Seeds everything: training data (``seed``), validation data (``seed + 1000``),
        weight initialisation and augmentation. The evaluation test set uses other seeds.
    version : int
        Model version to export (must not exist yet).
    cache_dir : Path or None
        Cache of the generated sets (``.npy``); None disables it.
    progress : bool
        tqdm bars for generation and Keras progress for fitting.
    batch_size : int
        Patches per step.
    learning_rate : float
        Initial Adam learning rate (cosine-decayed over the planned steps).
    params : InterferogramParams
        Generator ranges.
    workers : int
        Generation processes.

    Returns
    -------
    Path
        The exported version directory.
    """
    import keras
    import tensorflow as tf

    from serving.export import export_saved_model
    from serving.models.unrest import build_unrest_model, make_serve_fn
    from serving.signatures import UNREST_SIGNATURE

    target = Path(out_base) / UNREST_SIGNATURE.model_name / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists: choose a new version")
    t0 = time.monotonic()
    tr = load_or_generate(
        n_train, seed, "train", params, cache_dir, workers=workers, progress=progress
    )
    va = load_or_generate(
        n_val, seed + 1000, "val", params, cache_dir, workers=workers, progress=progress
    )
    t_gen = time.monotonic() - t0

    keras.utils.set_random_seed(seed)
    model = build_unrest_model(params.size)
    steps = int(np.ceil(n_train / batch_size)) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1), alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    hist = model.fit(
        _make_sequence(tr.phase, tr.labels, batch_size, seed, train=True),
        validation_data=_make_sequence(va.phase, va.labels, 256, seed, train=False),
        epochs=epochs,
        callbacks=[stop],
        verbose=1 if progress else 0,
    )
    t_fit = time.monotonic() - t0 - t_gen
    out = export_saved_model(model, make_serve_fn(model), UNREST_SIGNATURE, Path(out_base), version)
    summary = {
        "version": version,
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "epochs_run": len(hist.history["loss"]),
        "generation_seconds": round(t_gen, 1),
        "fit_seconds": round(t_fit, 1),
        "params": repr(params),
        "n_parameters": int(model.count_params()),
        "tensorflow": tf.__version__,
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
    }
    if cache_dir is not None:
        (Path(cache_dir) / f"train_summary_v{version}.json").write_text(
            json.dumps(summary, indent=2)
        )
    log.info("exported %s (generation %.0f s, fit %.0f s)", out, t_gen, t_fit)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m serving.training.unrest --help``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-base", type=Path, default=Path("serving/models"))
    ap.add_argument("--n-train", type=int, default=14000)
    ap.add_argument("--n-val", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("build/unrest_cache"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    train(
        args.out_base,
        n_train=args.n_train,
        n_val=args.n_val,
        epochs=args.epochs,
        seed=args.seed,
        version=args.version,
        cache_dir=args.cache_dir,
        workers=args.workers,
    )


if __name__ == "__main__":
    main()
