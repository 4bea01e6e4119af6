"""Rolling line-of-sight velocity of PS points over a trailing time window (pure, no I/O).

The hot spot analysis (Getis-Ord Gi*, kernel density, active deformation areas) works on a
velocity map. A monitoring service must see *current* motion, not the mean rate over the
whole archive, so the velocity is re-estimated over a trailing window — by default the last
year of acquisitions — every time new epochs arrive.

For each point the velocity is the ordinary least-squares slope of displacement against time
over the finite epochs of the window, with its standard error and the number of epochs used.
The computation is vectorised over points with masked sums (chunks of rows bound the
temporaries), so a million points of a 30-epoch window take a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_YEAR = 365.25
"""Days in a (Julian) year: converts mm/day slopes to mm/yr."""

DEFAULT_MIN_SPAN_FRACTION = 0.25
"""Smallest time span of a point's finite epochs, as a share of the window, for a velocity."""

_CHUNK_ROWS = 1 << 14
"""Points per block: keeps the (rows, epochs) float64 temporaries cache-sized (~4 MB)."""


@dataclass(frozen=True, eq=False)
class VelocityResult:
    """Per-point linear velocity over one time window.

    Attributes
    ----------
    velocity_mm_yr : ndarray of float64, shape (n,)
        Least-squares slope of displacement against time, mm/yr, in the sign convention of
        the displacement (for LOS products: positive = towards the satellite). NaN where the
        point has fewer than ``min_epochs`` finite epochs in the window or its finite epochs
        span less than ``min_span_fraction`` of the window.
    stderr_mm_yr : ndarray of float64, shape (n,)
        Standard error of the slope, mm/yr: ``sqrt(SSR / (k - 2) / Sxx)`` with ``k`` the
        epochs used, ``SSR`` the residual sum of squares and ``Sxx`` the centred sum of
        squared times (years²). NaN where the velocity is NaN or ``k < 3``.
    n_epochs : ndarray of int32, shape (n,)
        Finite epochs of the point inside the window (reported even where the velocity is
        NaN, so a caller can tell "too few epochs" from "too short a span").
    window_start, window_end : numpy.datetime64[D]
        The window is ``(window_start, window_end]``: the start date itself is excluded.
    epochs_in_window : int
        Acquisition dates inside the window, whatever their values.
    """

    velocity_mm_yr: np.ndarray
    stderr_mm_yr: np.ndarray
    n_epochs: np.ndarray
    window_start: np.datetime64
    window_end: np.datetime64
    epochs_in_window: int


def rolling_velocity(
    dates: np.ndarray,
    displacement_mm: np.ndarray,
    *,
    window_days: int = 365,
    end: np.datetime64 | None = None,
    min_epochs: int = 5,
    min_span_fraction: float = DEFAULT_MIN_SPAN_FRACTION,
) -> VelocityResult:
    """Least-squares velocity of every point over the window ``(end - window_days, end]``.

    Parameters
    ----------
    dates : ndarray of datetime64, shape (T,)
        Acquisition dates (any datetime64 unit; truncated to days). Need not be sorted.
    displacement_mm : ndarray of float, shape (n, T)
        Displacement of each point at each date, mm; NaN = no value. Values outside the
        window are ignored.
    window_days : int, default 365
        Length of the trailing window, days (> 0).
    end : numpy.datetime64, optional
        Last day of the window (inclusive). Defaults to the last date in ``dates``.
    min_epochs : int, default 5
        Fewest finite epochs in the window for a velocity (>= 2; the standard error needs
        at least 3).
    min_span_fraction : float, default 0.25
        Fewest days between a point's first and last finite epoch in the window, as a share
        of ``window_days``, in (0, 1]. A slope fitted to a few weeks of data inside a
        one-year window says more about noise and seasonal motion than about the rate over
        the window, so such points get NaN.

    Returns
    -------
    VelocityResult
        Velocity, its standard error (both mm/yr) and the epochs used, each shape (n,).

    Raises
    ------
    ValueError
        On shapes that do not match, non-datetime ``dates``, or parameters out of range.

    Notes
    -----
    Time is measured in years of 365.25 days from the window's end. Each point is fitted
    over its own finite epochs only; the fit is done in two passes (means, then centred
    sums) so that the slope of an exactly linear series is recovered to rounding error even
    for large displacement offsets.

    Examples
    --------
    >>> dates = np.arange("2024-01-01", "2025-01-01", 12, dtype="datetime64[D]")
    >>> t_yr = (dates - dates[0]).astype(float) / 365.25
    >>> res = rolling_velocity(dates, (-12.0 * t_yr + 3.0)[None, :])
    >>> round(float(res.velocity_mm_yr[0]), 6), int(res.n_epochs[0])
    (-12.0, 31)
    """
    dates = np.asarray(dates)
    if dates.ndim != 1 or not np.issubdtype(dates.dtype, np.datetime64):
        raise ValueError(f"dates must be a 1-D datetime64 array, got {dates.dtype} {dates.shape}")
    days = dates.astype("datetime64[D]")
    disp = np.asarray(displacement_mm)
    if disp.ndim != 2 or disp.shape[1] != days.shape[0]:
        raise ValueError(f"displacement_mm must have shape (n, {days.shape[0]}), got {disp.shape}")
    if not np.issubdtype(disp.dtype, np.floating):
        disp = disp.astype(np.float64)
    if window_days <= 0:
        raise ValueError(f"window_days must be > 0, got {window_days}")
    if min_epochs < 2:
        raise ValueError(f"min_epochs must be >= 2 (a slope needs two epochs), got {min_epochs}")
    if not 0.0 < min_span_fraction <= 1.0:
        raise ValueError(f"min_span_fraction must be in (0, 1], got {min_span_fraction}")
    if end is None:
        if days.size == 0:
            raise ValueError("no dates and no window end given")
        window_end = days.max()
    else:
        window_end = np.datetime64(end, "D")
    window_start = window_end - np.timedelta64(int(window_days), "D")

    in_window = (days > window_start) & (days <= window_end)
    cols = np.flatnonzero(in_window)
    # Sorted by date so that a point's first and last finite epochs are found with argmax.
    cols = cols[np.argsort(days[cols], kind="stable")]
    # A slice (a view) when the window's columns are contiguous and in order, the usual case.
    contiguous = cols.size > 0 and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size))
    col_sel: slice | np.ndarray = slice(cols[0], cols[0] + cols.size) if contiguous else cols
    # Years before the window end (<= 0): small numbers keep the sums well conditioned.
    t = (days[cols] - window_end).astype(np.float64) / DAYS_PER_YEAR
    min_span_yr = min_span_fraction * window_days / DAYS_PER_YEAR

    n = disp.shape[0]
    velocity = np.full(n, np.nan)
    stderr = np.full(n, np.nan)
    n_epochs = np.zeros(n, dtype=np.int32)
    if cols.size == 0 or n == 0:
        return VelocityResult(velocity, stderr, n_epochs, window_start, window_end, 0)

    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n)
        v, se, k = _fit_block(disp[lo:hi, col_sel], t, min_epochs, min_span_yr)
        velocity[lo:hi] = v
        stderr[lo:hi] = se
        n_epochs[lo:hi] = k
    return VelocityResult(velocity, stderr, n_epochs, window_start, window_end, int(cols.size))


def _fit_block(
    y: np.ndarray, t: np.ndarray, min_epochs: int, min_span_yr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masked least-squares slope of each row of ``y`` (rows, k) against sorted ``t`` (k,), yr."""
    mask = np.isfinite(y)
    m = mask.astype(np.float64)
    y0 = np.where(mask, y, 0.0)  # input dtype; the sums below are float64 (ones, t are)
    ones = np.ones(t.size)
    # Row sums as matrix-vector products: several times faster than .sum(axis=1) on
    # short rows.
    k = (m @ ones).astype(np.int64)
    safe_k = np.maximum(k, 1)

    # t is sorted, so the span is between the first and the last finite column.
    first = np.argmax(mask, axis=1)
    last = t.size - 1 - np.argmax(mask[:, ::-1], axis=1)
    span = np.where(k > 0, t[last] - t[first], 0.0)

    t_mean = (m @ t) / safe_k
    y_mean = (y0 @ ones) / safe_k
    tc = (t[None, :] - t_mean[:, None]) * m
    yc = (y0 - y_mean[:, None]) * m
    sxx = np.einsum("ij,ij->i", tc, tc)
    sxy = np.einsum("ij,ij->i", tc, yc)

    ok = (k >= min_epochs) & (span >= min_span_yr) & (sxx > 0.0)
    slope = np.full(y.shape[0], np.nan)
    slope[ok] = sxy[ok] / sxx[ok]

    # Residuals of the centred fit; masked epochs are zero in tc and yc and so contribute 0.
    resid = yc - np.where(np.isfinite(slope), slope, 0.0)[:, None] * tc
    ssr = np.einsum("ij,ij->i", resid, resid)
    has_se = ok & (k >= 3)
    se = np.full(y.shape[0], np.nan)
    se[has_se] = np.sqrt(ssr[has_se] / (k[has_se] - 2) / sxx[has_se])
    return slope, se, k.astype(np.int32)
