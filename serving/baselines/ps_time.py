"""PS-Time-style statistical classifier of PS displacement series (the classical baseline).

What this module is for: a transparent, non-learned reference for the trend classifier,
in the spirit of PS-Time (Berti et al. 2013). For each series (times in days, LOS
displacement in mm):

1. **Unwrapping jumps (PUE).** Fit a quadratic + annual sinusoid, locate the largest
   4-epoch mean-before/after difference of the residual, and measure the step there with
   a local line + Heaviside fit (+-10 epochs). The step is accepted when its size is within
   ``jump_tolerance`` x 27.7 mm of +-27.7 mm or +-55.4 mm and at least ``min_step_z``
   standard errors (robust noise); it is then removed and the next one searched (up to
   three). Any accepted step labels the series ``pue``.
2. **Trend model.** Fit constant, linear, quadratic and best-breakpoint bilinear models
   (25 breakpoints between 10 % and 90 % of the span), each with an annual sinusoid.
   Nested models are compared with F-tests (one-sided p-values), with the F statistic
   deflated by ``(1 - rho) / (1 + rho)`` where ``rho`` is the lag-1 autocorrelation of the
   richest model's residual (correlated noise otherwise makes every term "significant"):

   A richer model must also reduce the RMS residual by ``min_effect`` x the noise std
   (practical, not only statistical, significance):

   - no model better than the constant at ``alpha`` -> ``stable``;
   - neither quadratic nor bilinear better than the linear at ``alpha`` -> ``linear``;
   - otherwise the lower BIC of quadratic and bilinear (non-nested) wins.

References
----------
Berti, M., Corsini, A., Franceschini, S., Iannacone, J.P. (2013). Automated classification
of Persistent Scatterers Interferometry time series. NHESS 13, 1945-1958.
https://doi.org/10.5194/nhess-13-1945-2013
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from serving.synthetic.ps_series import (
    BILINEAR,
    DAYS_PER_YEAR,
    LINEAR,
    PUE,
    PUE_JUMP_MM,
    QUADRATIC,
    STABLE,
    model_residual_rms,
)


@dataclass(frozen=True)
class PSTimeConfig:
    """Thresholds of the PS-Time baseline.

    Attributes
    ----------
    alpha : float
        Significance level of the trend F-tests (one-sided).
    jump_tolerance : float
        Accepted deviation of a step from k x 27.7 mm, as a fraction of 27.7 mm.
    step_window : int
        Epochs averaged on each side when locating a step.
    local_window : int
        Epochs on each side used to measure a step's size.
    min_step_z : float
        Minimum step size over its standard error (robust noise).
    min_effect : float
        Minimum RMS improvement of a richer trend model, in units of the residual noise
        std: significance alone calls tiny trends "moving" on long series.
    max_steps : int
        Most steps searched per series.
    """

    alpha: float = 1e-3
    jump_tolerance: float = 0.3
    step_window: int = 4
    local_window: int = 10
    min_step_z: float = 6.0
    min_effect: float = 0.6
    max_steps: int = 3


def _lstsq_rss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    res = y - x @ beta
    return float(res @ res), beta, res


def _lag1(res: np.ndarray) -> float:
    r = res - res.mean()
    den = float(r @ r)
    return float(r[1:] @ r[:-1] / den) if den > 0 else 0.0


def _deflation(res: np.ndarray) -> float:
    rho = float(np.clip(_lag1(res), 0.0, 0.9))
    return (1.0 - rho) / (1.0 + rho)


def _f_pvalue(rss0: float, rss1: float, dp: int, n: int, p1: int, deflate: float) -> float:
    """One-sided p-value of the F-test that the bigger model (p1 params) fits better."""
    dof = max(n - p1, 1)
    f = max(rss0 - rss1, 0.0) / dp / max(rss1 / dof, 1e-12) * deflate
    return float(stats.f.sf(f, dp, dof))


def _detect_steps(t: np.ndarray, y: np.ndarray, cfg: PSTimeConfig) -> list[float]:
    """Sizes (mm) of accepted unwrapping steps, in the order found.

    A candidate is the largest ``step_window``-epoch mean-before/after difference of the
    quadratic + seasonal residual. Its size is then measured *locally* (line + step fitted
    to ``2 * local_window`` epochs around it), so a kink or other steps elsewhere do not bias
    it, and tested against a robust noise level (MAD of first differences).
    """
    n = len(t)
    k = cfg.step_window
    if n < 2 * k + 8:
        return []
    y = y.copy()
    tn = (t - t[0]) / max(t[-1] - t[0], 1e-9)
    w = 2 * np.pi * t / DAYS_PER_YEAR
    x = np.column_stack([np.ones(n), tn, tn**2, np.cos(w), np.sin(w)])
    found: list[float] = []
    for _ in range(cfg.max_steps):
        _, _, res = _lstsq_rss(x, y)
        sigma = max(1.4826 * float(np.median(np.abs(np.diff(res)))) / np.sqrt(2.0), 0.3)
        c = np.concatenate([[0.0], np.cumsum(res)])
        i = np.arange(k, n - k + 1)
        stat = (c[i + k] - c[i]) / k - (c[i] - c[i - k]) / k
        j = int(i[np.argmax(np.abs(stat))])
        lo, hi = max(0, j - cfg.local_window), min(n, j + cfg.local_window)
        tl = (t[lo:hi] - t[j]) / DAYS_PER_YEAR
        xl = np.column_stack([np.ones(hi - lo), tl, (np.arange(lo, hi) >= j).astype(float)])
        _, beta, _ = _lstsq_rss(xl, y[lo:hi])
        size = float(beta[-1])
        se = sigma * np.sqrt(np.linalg.inv(xl.T @ xl)[-1, -1])
        mult = abs(size) / PUE_JUMP_MM
        near = min(abs(mult - 1.0), abs(mult - 2.0)) <= cfg.jump_tolerance
        if not (near and abs(size) / se >= cfg.min_step_z):
            break
        found.append(size)
        # Remove the step at its nearest multiple of 27.7 mm and look for the next one.
        y[j:] -= np.sign(size) * PUE_JUMP_MM * max(1.0, round(mult))
    return found


def classify_series(
    time_days: np.ndarray, disp_mm: np.ndarray, config: PSTimeConfig | None = None
) -> int:
    """Class index (into ``TREND_CLASSES``) of one series by the PS-Time rules.

    Parameters
    ----------
    time_days : ndarray, shape (n,)
        Epochs (days), increasing; NaN entries (padding) are ignored.
    disp_mm : ndarray, shape (n,)
        LOS displacement (mm).
    config : PSTimeConfig, optional
        Thresholds.

    Returns
    -------
    int
        0 stable, 1 linear, 2 quadratic, 3 bilinear, 4 pue.

    Examples
    --------
    >>> t = np.arange(100) * 12.0
    >>> int(classify_series(t, 0.05 * t))  # 18 mm/yr, noise-free
    1
    """
    cfg = config or PSTimeConfig()
    t = np.asarray(time_days, dtype=float)
    y = np.asarray(disp_mm, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    n = len(t)
    if n < 8:
        raise ValueError(f"need at least 8 valid epochs, got {n}")
    if _detect_steps(t, y, cfg):
        return PUE
    rms = model_residual_rms(t, y)
    rss = {k: v**2 * n for k, v in rms.items()}
    # Parameters: offset, cos, sin (+ slope, + curvature or + slope change and breakpoint).
    p = {"const": 3, "lin": 4, "quad": 5, "bilin": 6}
    tn = (t - t[0]) / max(t[-1] - t[0], 1e-9)
    w = 2 * np.pi * t / DAYS_PER_YEAR
    _, _, res = _lstsq_rss(np.column_stack([np.ones(n), tn, tn**2, np.cos(w), np.sin(w)]), y)
    deflate = _deflation(res)

    noise = np.sqrt(min(rss.values()) / max(n - 6, 1))

    def better(small: str, big: str) -> bool:
        pv = _f_pvalue(rss[small], rss[big], p[big] - p[small], n, p[big], deflate)
        effect = np.sqrt(max(rss[small] - rss[big], 0.0) / n)
        return pv < cfg.alpha and effect >= cfg.min_effect * noise

    if not any(better("const", m) for m in ("lin", "quad", "bilin")):
        return STABLE
    if not (better("lin", "quad") or better("lin", "bilin")):
        return LINEAR
    bic = {m: n * np.log(max(rss[m], 1e-12) / n) + p[m] * np.log(n) for m in ("quad", "bilin")}
    return QUADRATIC if bic["quad"] <= bic["bilin"] else BILINEAR


def classify_batch(
    disp_mm: np.ndarray, time_days: np.ndarray, config: PSTimeConfig | None = None
) -> np.ndarray:
    """Classify NaN right-padded series (the serving signature's layout).

    Parameters
    ----------
    disp_mm, time_days : ndarray, shape (batch, T)
        Displacement (mm) and times (days), NaN right-padded.
    config : PSTimeConfig, optional
        Thresholds.

    Returns
    -------
    ndarray of int64, shape (batch,)
        Class indices.
    """
    disp_mm = np.asarray(disp_mm)
    time_days = np.asarray(time_days)
    if disp_mm.shape != time_days.shape:
        raise ValueError(f"shapes differ: {disp_mm.shape} vs {time_days.shape}")
    return np.array(
        [classify_series(t, d, config) for d, t in zip(disp_mm, time_days, strict=True)],
        dtype=np.int64,
    )
