"""Train the ADA delineation U-Net on synthetic hot spot scenes and export it for TF-Serving.

Steps: generate (or load from the ``.npz`` cache under ``build/``) seeded training and
validation scenes (:mod:`serving.synthetic.ada_scenes`), fit the U-Net of
:mod:`serving.models.delineation` with binary cross-entropy (the paper's loss, Adam,
learning rate 1e-3, batches of 8) on 128 x 128 crops of the 256 x 256 scenes, augmented by
flips and 90-degree rotations as in the paper, keep the weights with the best validation
loss (whole 256 x 256 scenes) and export them as
``<out_base>/ada_delineator/<version>/``.

Two choices the paper does not need to make:

* Rotating or flipping a grid of *aspect* changes which way each slope faces, so the aspect
  values are rotated and mirrored with the grid (the paper's augmentation of an aspect
  channel leaves them as they were).
* The terrain inputs are dropped (set to NaN) on a share of the crops — aspect and slope
  together on 25 %, slope alone on another 50 % — so one served model runs with a DEM
  (aspect, optionally slope) or without one (hot spot map alone).

A quarter of the crops are centred on a labelled cell: deformation areas cover about 2.5 %
of a scene, and random crops alone would show the network mostly stable ground. More than
that shifts the prior the network learns and, read at the paper's 0.5, over-predicts on
whole scenes (a first run with 60 % had a validation precision near 0.3).

Usage::

    insar-monitor train delineation --version 1 --out serving/models
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

from serving.synthetic.ada_scenes import (
    DEFAULT_SCENE_PARAMS,
    SceneParams,
    SceneSet,
    generate_scenes,
)

log = logging.getLogger(__name__)

CROP = 128
TERRAIN_DROP = 0.25
SLOPE_DROP = 0.5
POSITIVE_CROPS = 0.25


def load_or_generate(
    n: int,
    seed: int,
    split: str,
    params: SceneParams,
    cache_dir: Path | None,
    *,
    with_clusters: bool = False,
    workers: int = 2,
    progress: bool = True,
) -> SceneSet:
    """A seeded set of scenes, cached as one ``.npz`` in ``cache_dir``."""
    digest = hashlib.sha256(repr(params).encode()).hexdigest()[:10]
    key = f"ada_{split}_n{n}_s{seed}_{'c' if with_clusters else 'n'}_{digest}"
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.npz"
    if path is not None and path.is_file():
        log.info("loading cached %s scenes %s", split, key)
        with np.load(path, allow_pickle=False) as f:
            return SceneSet(*(f[name] for name in SceneSet._fields))
    data = generate_scenes(
        n, seed, params, with_clusters=with_clusters, workers=workers, progress=progress
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data._asdict())
    return data


def rotate_aspect(aspect: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Aspect values after ``np.rot90(grid, k)`` and then (if ``flip``) a left-right flip.

    ``np.rot90`` turns the grid counter-clockwise, so a slope that faced east faces north:
    the azimuth drops by 90 degrees per turn. Mirroring east-west maps azimuth a to -a.
    """
    out = (aspect.astype(np.float32) - 90.0 * k) % 360.0
    if flip:
        out = (-out) % 360.0
    return out


def augment(
    density: np.ndarray,
    aspect: np.ndarray,
    slope: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One random 90-degree rotation and flip of a crop, aspect values turned with it."""
    k = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)

    def turn(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k)
        return a[:, ::-1] if flip else a

    return (
        turn(density),
        turn(rotate_aspect(aspect, k, flip)),
        turn(slope),
        turn(label),
    )


def _crop_origin(label: np.ndarray, rng: np.random.Generator, crop: int) -> tuple[int, int]:
    n = label.shape[0]
    if rng.random() < POSITIVE_CROPS and label.any():
        rows, cols = np.nonzero(label)
        k = rng.integers(rows.size)
        r = int(np.clip(rows[k] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, n - crop))
        c = int(np.clip(cols[k] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, n - crop))
        return r, c
    return int(rng.integers(0, n - crop + 1)), int(rng.integers(0, n - crop + 1))


def drop_terrain(
    aspect: np.ndarray, slope: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """NaN out aspect and slope (no DEM) or slope alone (aspect-only configuration)."""
    u = rng.random()
    if u < TERRAIN_DROP:
        return np.full_like(aspect, np.nan), np.full_like(slope, np.nan)
    if u < TERRAIN_DROP + SLOPE_DROP:
        return aspect, np.full_like(slope, np.nan)
    return aspect, slope


def _batches(data: SceneSet, batch_size: int, seed: int, train: bool) -> Any:
    import keras

    class _Batches(keras.utils.PyDataset):
        """Augmented random crops (train) or whole scenes with aspect, no slope (val)."""

        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(data.label)) if train else np.arange(
                len(data.label)
            )

        def __len__(self) -> int:
            return int(np.ceil(len(data.label) / batch_size))

        def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            parts: list[tuple[np.ndarray, ...]] = []
            for j in idx:
                d, a, s, y = data.density[j], data.aspect_deg[j], data.slope_deg[j], data.label[j]
                if train:
                    r, c = _crop_origin(y, self.rng, CROP)
                    win = np.s_[r : r + CROP, c : c + CROP]
                    d, a, s, y = augment(d[win], a[win], s[win], y[win], self.rng)
                    if self.rng.random() < 0.5:  # a hot area and a cold one delineate alike
                        d = -d
                    a, s = drop_terrain(a, s, self.rng)
                else:
                    s = np.full(s.shape, np.nan, np.float32)
                parts.append((d, a, s, y))
            x = {
                "hotspot_density": np.stack([p[0] for p in parts]).astype(np.float32),
                "aspect_deg": np.stack([p[1] for p in parts]).astype(np.float32),
                "slope_deg": np.stack([p[2] for p in parts]).astype(np.float32),
            }
            return x, np.stack([p[3] for p in parts]).astype(np.float32)[..., None]

        def on_epoch_end(self) -> None:
            if train:
                self.order = self.rng.permutation(len(data.label))

    return _Batches()


def train(
    out_base: Path,
    *,
    n_train: int = 3000,
    n_val: int = 300,
    epochs: int = 24,
    patience: int = 6,
    seed: int = 3,
    version: int = 1,
    cache_dir: Path | None = Path("build/delineation_cache"),
    progress: bool = True,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    params: SceneParams = DEFAULT_SCENE_PARAMS,
    workers: int = 2,
) -> Path:
    """Generate scenes, train the U-Net and export it as a SavedModel.

    Parameters
    ----------
    out_base : Path
        Model base directory; the model goes to ``out_base/ada_delineator/<version>/``.
    n_train, n_val : int
        Training and validation scenes (256 x 256 each).
    epochs : int
        Maximum epochs (one 128 px crop per training scene each).
    patience : int
        Early stopping on the validation loss; the best weights are restored.
    seed : int
        Training scenes use ``seed``, validation scenes ``seed + 1000``; also seeds the
        weights and the augmentation. The evaluation test set uses another seed.
    version : int
        Model version to export (must not exist yet).
    cache_dir : Path or None
        Cache of generated scenes; None disables it.
    progress : bool
        Progress bars for generation and fitting.
    batch_size : int
        Crops per step (the paper: 8).
    learning_rate : float
        Adam learning rate (the paper: 1e-3), halved when the validation loss stalls.
    params : SceneParams
        Scene generator ranges.
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
    from serving.models.delineation import build_unet, make_serve_fn
    from serving.signatures import DELINEATION_SIGNATURE

    target = Path(out_base) / DELINEATION_SIGNATURE.model_name / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists: choose a new version")
    t0 = time.monotonic()
    tr = load_or_generate(n_train, seed, "train", params, cache_dir, workers=workers,
                          progress=progress)
    va = load_or_generate(n_val, seed + 1000, "val", params, cache_dir, workers=workers,
                          progress=progress)
    t_gen = time.monotonic() - t0

    keras.utils.set_random_seed(seed)
    model = build_unet(None)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryIoU(target_class_ids=[1], name="iou"),
                 keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3,
                                          min_lr=1e-5),
    ]
    hist = model.fit(
        _batches(tr, batch_size, seed, train=True),
        validation_data=_batches(va, 8, seed, train=False),
        epochs=epochs,
        callbacks=callbacks,
        verbose=2 if progress else 0,
    )
    t_fit = time.monotonic() - t0 - t_gen
    out = export_saved_model(
        model, make_serve_fn(model), DELINEATION_SIGNATURE, Path(out_base), version
    )
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
    """Command line: ``python -m serving.training.delineation --help``."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out-base", type=Path, default=Path("serving/models"))
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("build/delineation_cache"))
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
