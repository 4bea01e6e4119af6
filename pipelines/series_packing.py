"""Pack PS time series into the trend classifier's NaN-right-padded input rows.

The ``ps_trend_classifier`` signature (serving/signatures.py) takes each series as its
valid samples first, in time order, then NaN padding; points with too few valid epochs
cannot be classified honestly and are left out. One function serves the CLI, which
reads whole EGMS files, and the pipeline, which reads a tile of the PS store.
"""

from __future__ import annotations

import numpy as np


def pack_series(
    displacement_mm: np.ndarray, time_days: np.ndarray, min_epochs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with at least ``min_epochs`` finite values, valid samples moved to the front.

    Parameters
    ----------
    displacement_mm : ndarray, shape (n, T)
        NaN where a point has no value at an epoch.
    time_days : ndarray, shape (T,)
        Epoch times, increasing (days since any origin).
    min_epochs : int
        Fewest finite values a series needs.

    Returns
    -------
    keep : ndarray of bool, shape (n,)
    displacement_mm, time_days : ndarray of float32, shape (n_keep, T)
        NaN right-padded.
    """
    rows_all = np.asarray(displacement_mm, dtype=np.float32)
    days = np.asarray(time_days, dtype=np.float32)
    if rows_all.ndim != 2 or days.shape != (rows_all.shape[1],):
        raise ValueError(
            f"displacement {rows_all.shape} and time {days.shape} do not describe (n, T) series"
        )
    finite = np.isfinite(rows_all)
    keep = finite.sum(axis=1) >= min_epochs
    rows = rows_all[keep]
    ok = finite[keep]
    disp = np.full(rows.shape, np.nan, dtype=np.float32)
    time = np.full(rows.shape, np.nan, dtype=np.float32)
    order = np.argsort(~ok, axis=1, kind="stable")
    counts = ok.sum(axis=1)
    filled = np.arange(rows.shape[1])[None, :] < counts[:, None]
    disp[filled] = np.take_along_axis(rows, order, axis=1)[filled]
    time[filled] = np.broadcast_to(days, rows.shape)[np.arange(len(rows))[:, None], order][filled]
    return keep, disp, time
