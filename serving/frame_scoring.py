"""Frame-level unrest decision from a patch classifier.

A frame of any size is tiled (:func:`pipelines.tiling.tile_frame`), every tile is scored in
chunks by a ``predict_fn`` (an in-process SavedModel, a TF-Serving gRPC or REST client — any
callable mapping ``(n, 224, 224)`` float32 wrapped phase to ``(n,)`` probabilities), and the
tile probabilities are aggregated.

Aggregation rule (decided here, documented for every caller): the frame's unrest
probability is the **maximum** tile probability — deformation is local, and one tile that
clearly shows it is enough; averaging would dilute a 5 km bullseye in a 250 km frame. The
frame is flagged ``unrest`` when that maximum reaches ``threshold`` *and* at least
``min_firing_tiles`` tiles reach it. The default ``min_firing_tiles=1`` keeps the patch
detector's recall; with overlapping tiles a real source usually fires two or more tiles, so
``min_firing_tiles=2`` is the robust setting that suppresses single-tile false alarms at the
cost of sources confined to one tile's corner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.tiling import stack_tiles, tile_frame

PredictFn = Callable[[np.ndarray], np.ndarray]
"""(n, 224, 224) float32 wrapped phase (rad, NaN = no data) -> (n,) probabilities in [0, 1]."""


@dataclass(frozen=True)
class FrameScore:
    """The frame-level result.

    Attributes
    ----------
    unrest_probability : float
        Maximum tile probability (0.0 when no tile had enough valid pixels).
    unrest : bool
        ``unrest_probability >= threshold`` and at least ``min_firing_tiles`` tiles fired.
    n_tiles : int
        Tiles scored.
    threshold : float
        Decision threshold used.
    tiles : list of dict
        The tiles that fired (probability >= threshold), most probable first, each with
        ``row``, ``col`` (tile grid index), ``row0``, ``col0`` (frame pixel of the upper-left
        corner), ``probability``, ``valid_fraction`` and, with a transform, ``bounds``
        (left, bottom, right, top in the transform's CRS).
    """

    unrest_probability: float
    unrest: bool
    n_tiles: int
    threshold: float
    tiles: list[dict[str, Any]] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (floats, ints, bools, lists)."""
        return {
            "unrest_probability": float(self.unrest_probability),
            "unrest": bool(self.unrest),
            "n_tiles": int(self.n_tiles),
            "threshold": float(self.threshold),
            "tiles": [dict(t) for t in self.tiles],
        }


def predict_in_chunks(batch: np.ndarray, predict_fn: PredictFn, batch_size: int) -> np.ndarray:
    """Run ``predict_fn`` over ``batch`` in chunks of ``batch_size``; validate its output.

    Returns
    -------
    ndarray, shape (n,), float64
        Probabilities in [0, 1].

    Raises
    ------
    ValueError
        If ``predict_fn`` returns the wrong shape or values outside [0, 1] (or NaN).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty(len(batch), dtype=float)
    for s in range(0, len(batch), batch_size):
        chunk = batch[s : s + batch_size]
        p = np.asarray(predict_fn(chunk), dtype=float).reshape(-1)
        if p.shape != (len(chunk),):
            raise ValueError(f"predict_fn returned {p.shape[0]} values for {len(chunk)} tiles")
        if not np.all((p >= 0.0) & (p <= 1.0)):
            raise ValueError("predict_fn returned probabilities outside [0, 1] (or NaN)")
        out[s : s + len(chunk)] = p
    return out


def score_frame(
    phase: np.ndarray,
    predict_fn: PredictFn,
    *,
    threshold: float = 0.5,
    transform: Any | None = None,
    batch_size: int = 64,
    size: int = 224,
    overlap: int = 56,
    min_valid_fraction: float = 0.1,
    min_firing_tiles: int = 1,
) -> FrameScore:
    """Decide whether a frame shows unrest, and where.

    Parameters
    ----------
    phase : ndarray, shape (rows, cols)
        Wrapped phase in radians, NaN = no data; rows, cols >= 64.
    predict_fn : callable
        ``(n, size, size) float32 -> (n,)`` probabilities (see :data:`PredictFn`).
    threshold : float
        Tile probability that counts as firing, in [0, 1].
    transform : affine.Affine or 6-sequence, optional
        Frame pixel -> map transform; adds ``bounds`` to the reported tiles.
    batch_size : int
        Tiles per ``predict_fn`` call.
    size, overlap, min_valid_fraction : int, int, float
        Tiling options of :func:`pipelines.tiling.tile_frame`.
    min_firing_tiles : int
        Tiles that must fire for ``unrest`` (1 = max rule; 2 = robust rule).

    Returns
    -------
    FrameScore

    Raises
    ------
    ValueError
        If the frame is all NaN, too small, not 2D, or an option is out of range.
    """
    phase = np.asarray(phase, dtype=np.float32)
    if phase.ndim == 2 and not np.isfinite(phase).any():
        raise ValueError("the frame is all NaN (or non-finite): nothing to score")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if min_firing_tiles < 1:
        raise ValueError(f"min_firing_tiles must be >= 1, got {min_firing_tiles}")
    tiles = tile_frame(
        phase,
        size=size,
        overlap=overlap,
        min_valid_fraction=min_valid_fraction,
        transform=transform,
    )
    if not tiles:
        return FrameScore(0.0, False, 0, threshold, [])
    probs = predict_in_chunks(stack_tiles(tiles, size), predict_fn, batch_size)
    return decide_frame(
        [tile_record(t) for t in tiles],
        probs,
        threshold=threshold,
        min_firing_tiles=min_firing_tiles,
    )


def tile_record(tile: Any) -> dict[str, Any]:
    """A tile's position as a JSON-able dict, without its pixels (what a detection reports)."""
    rec: dict[str, Any] = {
        "row": int(tile.row),
        "col": int(tile.col),
        "row0": int(tile.row0),
        "col0": int(tile.col0),
        "valid_fraction": float(tile.valid_fraction),
    }
    if tile.bounds is not None:
        rec["bounds"] = [float(v) for v in tile.bounds]
    return rec


def decide_frame(
    tiles: list[dict[str, Any]],
    probabilities: np.ndarray | list[float],
    *,
    threshold: float,
    min_firing_tiles: int = 1,
) -> FrameScore:
    """Aggregate tile probabilities into the frame decision (the rule in the module docstring).

    Pure, so a streaming pipeline that scores tiles in batches across frames reaches the same
    decision as :func:`score_frame`.

    Parameters
    ----------
    tiles : list of dict
        :func:`tile_record` of every tile scored, in any order.
    probabilities : array-like, shape (len(tiles),)
        Each tile's probability, in [0, 1].
    threshold, min_firing_tiles : float, int
        As in :func:`score_frame`.
    """
    probs = np.asarray(probabilities, dtype=float).reshape(-1)
    if probs.shape != (len(tiles),):
        raise ValueError(f"{len(tiles)} tiles but {probs.shape[0]} probabilities")
    if not tiles:
        return FrameScore(0.0, False, 0, threshold, [])
    fired = []
    # Ties broken by grid position so the report does not depend on arrival order.
    order = sorted(range(len(tiles)), key=lambda k: (-probs[k], tiles[k]["row"], tiles[k]["col"]))
    for k in order:
        if probs[k] < threshold:
            break
        fired.append({**tiles[k], "probability": float(probs[k])})
    best = float(probs.max())
    return FrameScore(
        best, best >= threshold and len(fired) >= min_firing_tiles, len(tiles), threshold, fired
    )
