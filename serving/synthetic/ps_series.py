"""Synthetic Persistent-Scatterer displacement time series with decidable trend labels.

This module exists to train and test the PS trend classifier (:mod:`serving.models.trend`)
and the PS-Time baseline (:mod:`serving.baselines.ps_time`) without hand-labelled data.
It draws Sentinel-1-like acquisition dates and LOS displacement series (mm) for the five
classes of :data:`serving.signatures.TREND_CLASSES` (Berti et al. 2013; Mirmazloumi et
al. 2022): ``stable``, ``linear``, ``quadratic``, ``bilinear`` and ``pue`` (phase-unwrapping
error: persistent jumps of k x 27.7 mm, half the C-band wavelength).

Labels are made *decidable*: a series is only given a class when the class's trend is
distinguishable from its competitors by a margin relative to the noise. The margins are
stated on the noise-free trend ``g(t)`` sampled at the series' own epochs, as the RMS of
the residual ``R_M(g)`` left by the least-squares fit of a model ``M`` (each model includes
an annual sinusoid, so seasonal terms never decide a class):

============  ==========================================================================
class         rule (sigma = noise standard deviation of the series, mm)
============  ==========================================================================
stable        ``R_const(g) <= stable_max_rms * sigma`` and ``|v| <= stable_max_velocity``
linear        ``R_const(g) >= linear_min_rms * sigma`` and ``|v| >= linear_min_velocity``
quadratic     ``R_lin(g) >= nonlinear_min_rms * sigma`` and
              ``R_bilin(g) >= shape_min_rms * sigma`` (not explained by a breakpoint)
bilinear      ``R_lin(g) >= nonlinear_min_rms * sigma`` and
              ``R_quad(g) >= shape_min_rms * sigma`` (not explained by a parabola)
pue           any of the four trends above plus 1-3 steps of +-k x 27.7 mm (k = 1 or 2),
              each at least ``pue_min_segment`` epochs from the ends and from each other
============  ==========================================================================

Because every ``R_M`` is linear in the amplitude of the trend, the generator draws a
trend *shape*, computes the smallest amplitude meeting the margins, and multiplies it by
a random factor >= 1; a draw whose amplitude would exceed the physical caps is redrawn.
All ranges live in :class:`PSSeriesParams` and are mirrored in ``docs/synthetic-data.md``.

References
----------
Berti, M., Corsini, A., Franceschini, S., Iannacone, J.P. (2013). Automated classification
of Persistent Scatterers Interferometry time series. NHESS 13, 1945-1958.
https://doi.org/10.5194/nhess-13-1945-2013
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from serving.signatures import TREND_CLASSES

PUE_JUMP_MM = 27.7
"""LOS displacement of one Sentinel-1 C-band phase cycle (lambda/2 = 55.465 mm / 2), mm."""

DAYS_PER_YEAR = 365.25

STABLE, LINEAR, QUADRATIC, BILINEAR, PUE = range(5)
if TREND_CLASSES != ("stable", "linear", "quadratic", "bilinear", "pue"):  # pragma: no cover
    raise ImportError("class order in serving.signatures changed; update the indices above")


@dataclass(frozen=True)
class PSSeriesParams:
    """Every range the PS series generator draws from (uniform unless noted).

    ==========================  ================  =================================================
    field                       default           meaning (unit)
    ==========================  ================  =================================================
    n_epochs                    (60, 300)         epochs per series, inclusive
    revisit_days                (6, 12)           revisit choices (days), equally likely
    p_revisit_switch            0.3               P(6-day revisit turns 12-day mid-series)
    start_day                   (0, 3000)         first epoch, days since an arbitrary origin
    drop_fraction               (0.0, 0.2)        fraction of epochs randomly missing
    p_winter_gap                0.35              P(series has a winter gap every year)
    winter_gap_days             (30, 120)         winter gap length (days), from DOY 320-360
    noise_std_mm                (1.0, 6.0)        marginal noise std sigma (mm)
    noise_model_probs           (0.5, 0.3, 0.2)   P(white, AR(1), atmospheric-like)
    ar1_phi                     (0.2, 0.7)        AR(1) lag-1 correlation between epochs
    atmo_log_std                (0.2, 0.6)        log-std of per-epoch std factor (atmospheric)
    p_outliers                  0.2               P(series has outliers)
    outlier_fraction            (0.01, 0.03)      fraction of epochs that are outliers
    outlier_sigmas              (3.0, 5.0)        outlier size in units of sigma
    p_seasonal                  0.6               P(annual sinusoid present), any class
    seasonal_amp_mm             (0.5, 6.0)        annual amplitude (mm), phase uniform
    stable_max_velocity         1.5               stable: max abs velocity (mm/yr)
    stable_max_rms              0.25              stable: max R_const / sigma
    linear_min_velocity         2.0               linear: min abs velocity (mm/yr)
    linear_min_rms              1.2               linear: min R_const / sigma
    nonlinear_min_rms           1.0               quadratic, bilinear: min R_lin / sigma
    shape_min_rms               0.5               quadratic: min R_bilin/sigma; bilinear R_quad
    amplitude_factor            (1.0, 4.0)        log-uniform factor above the minimum amplitude
    base_velocity_mm_yr         (-30.0, 30.0)     linear part of quadratic/bilinear (mm/yr)
    max_velocity_mm_yr          80.0              cap on any velocity (mm/yr)
    max_trend_ptp_mm            300.0             cap on peak-to-peak trend (mm)
    bilinear_break_fraction     (0.2, 0.8)        breakpoint position within the span
    p_bilinear_onset            0.3               P(bilinear starts from rest: v1 = 0)
    pue_n_jumps_probs           (0.7, 0.25, 0.05) P(1, 2, 3 jumps)
    pue_p_double                0.15              P(jump of 2 x 27.7 mm instead of 1 x)
    pue_p_revert                0.25              P(one jump is undone later: a temporary step)
    pue_min_segment             5                 min epochs between jumps and to either end
    ==========================  ================  =================================================
    """

    n_epochs: tuple[int, int] = (60, 300)
    revisit_days: tuple[int, ...] = (6, 12)
    p_revisit_switch: float = 0.3
    start_day: tuple[float, float] = (0.0, 3000.0)
    drop_fraction: tuple[float, float] = (0.0, 0.2)
    p_winter_gap: float = 0.35
    winter_gap_days: tuple[float, float] = (30.0, 120.0)
    max_span_days: float = 4000.0
    noise_std_mm: tuple[float, float] = (1.0, 6.0)
    noise_model_probs: tuple[float, float, float] = (0.5, 0.3, 0.2)
    ar1_phi: tuple[float, float] = (0.2, 0.7)
    atmo_log_std: tuple[float, float] = (0.2, 0.6)
    p_outliers: float = 0.2
    outlier_fraction: tuple[float, float] = (0.01, 0.03)
    outlier_sigmas: tuple[float, float] = (3.0, 5.0)
    p_seasonal: float = 0.6
    seasonal_amp_mm: tuple[float, float] = (0.5, 6.0)
    stable_max_velocity: float = 1.5
    stable_max_rms: float = 0.25
    linear_min_velocity: float = 2.0
    linear_min_rms: float = 1.2
    nonlinear_min_rms: float = 1.0
    shape_min_rms: float = 0.5
    amplitude_factor: tuple[float, float] = (1.0, 4.0)
    base_velocity_mm_yr: tuple[float, float] = (-30.0, 30.0)
    max_velocity_mm_yr: float = 80.0
    max_trend_ptp_mm: float = 300.0
    bilinear_break_fraction: tuple[float, float] = (0.2, 0.8)
    p_bilinear_onset: float = 0.3
    pue_n_jumps_probs: tuple[float, float, float] = (0.7, 0.25, 0.05)
    pue_p_double: float = 0.15
    pue_p_revert: float = 0.25
    pue_min_segment: int = 5


@dataclass
class PSDataset:
    """A ragged set of PS series with labels.

    Attributes
    ----------
    time_days : list of ndarray, each shape (n_i,)
        Acquisition times, days since an arbitrary origin, strictly increasing.
    displacement_mm : list of ndarray, each shape (n_i,)
        LOS displacement (mm), same length as the matching ``time_days``.
    labels : ndarray of int64, shape (n,)
        Index into ``TREND_CLASSES``.
    noise_std_mm : ndarray of float, shape (n,)
        The noise std sigma each series was drawn with (mm).
    base_class : ndarray of int64, shape (n,)
        The trend under the jumps for ``pue`` series; equal to ``labels`` otherwise.
    """

    time_days: list[np.ndarray]
    displacement_mm: list[np.ndarray]
    labels: np.ndarray
    noise_std_mm: np.ndarray
    base_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """NaN right-padded ``(displacement_mm, time_days)`` float32 arrays (:func:`pad_series`)."""
        return pad_series(list(zip(self.time_days, self.displacement_mm, strict=True)))


def pad_series(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged ``(time_days, displacement_mm)`` pairs into NaN right-padded arrays.

    Parameters
    ----------
    series : sequence of (ndarray, ndarray)
        One ``(time_days, displacement_mm)`` pair per series, each shape (n_i,).

    Returns
    -------
    disp : ndarray of float32, shape (n, max n_i)
        Displacement (mm), NaN after each series' last epoch.
    time : ndarray of float32, shape (n, max n_i)
        Times (days), NaN exactly where ``disp`` is padded; the order of the serving
        signature's inputs is ``(displacement_mm, time_days)``.

    Examples
    --------
    >>> d, t = pad_series([(np.array([0.0, 6.0]), np.array([1.0, 2.0])),
    ...                    (np.array([0.0]), np.array([5.0]))])
    >>> d.shape, bool(np.isnan(t[1, 1]))
    ((2, 2), True)
    """
    width = max((len(t) for t, _ in series), default=0)
    disp = np.full((len(series), width), np.nan, dtype=np.float32)
    time = np.full((len(series), width), np.nan, dtype=np.float32)
    for i, (t, d) in enumerate(series):
        if len(t) != len(d):
            raise ValueError(f"series {i}: {len(t)} times but {len(d)} displacements")
        time[i, : len(t)] = t
        disp[i, : len(d)] = d
    return disp, time


# --- residual RMS of the candidate models (used for the label margins) ------------------------


def _seasonal_columns(time_days: np.ndarray) -> np.ndarray:
    w = 2.0 * np.pi * time_days / DAYS_PER_YEAR
    return np.stack([np.cos(w), np.sin(w)], axis=-1)


def _rms_residual(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RMS residual of least squares ``y ~ design`` for a batch of designs (..., n, p)."""
    xtx = np.einsum("...np,...nq->...pq", design, design)
    xty = np.einsum("...np,n->...p", design, y)
    # A tiny ridge keeps near-collinear designs (short spans vs the annual term) solvable.
    ridge = 1e-9 * np.trace(xtx, axis1=-2, axis2=-1)[..., None, None] * np.eye(design.shape[-1])
    beta = np.linalg.solve(xtx + ridge, xty[..., None])[..., 0]
    res = y - np.einsum("...np,...p->...n", design, beta)
    return np.sqrt(np.mean(res**2, axis=-1))


def model_residual_rms(
    time_days: np.ndarray, y: np.ndarray, n_breaks: int = 25
) -> dict[str, float]:
    """RMS residual (mm) of y after the constant, linear, quadratic and best bilinear fits.

    Each model includes an annual sinusoid. The bilinear breakpoint is searched on
    ``n_breaks`` positions between 10 % and 90 % of the span.

    Parameters
    ----------
    time_days : ndarray, shape (n,)
        Epochs (days).
    y : ndarray, shape (n,)
        Series (mm).
    n_breaks : int
        Number of candidate breakpoints.

    Returns
    -------
    dict
        ``const``, ``lin``, ``quad``, ``bilin``: residual RMS (mm).
    """
    tn = (time_days - time_days[0]) / max(time_days[-1] - time_days[0], 1e-9)
    ones = np.ones_like(tn)
    seas = _seasonal_columns(time_days)
    base = {
        "const": np.column_stack([ones, seas]),
        "lin": np.column_stack([ones, tn, seas]),
        "quad": np.column_stack([ones, tn, tn**2, seas]),
    }
    out = {k: float(_rms_residual(x, y)) for k, x in base.items()}
    breaks = np.linspace(0.1, 0.9, n_breaks)
    hinge = np.maximum(tn[None, :] - breaks[:, None], 0.0)
    lin = np.broadcast_to(base["lin"], (n_breaks, *base["lin"].shape))
    designs = np.concatenate([lin, hinge[..., None]], axis=-1)
    out["bilin"] = float(np.min(_rms_residual(designs, y)))
    return out


# --- sampling -------------------------------------------------------------------------------


def sample_epochs(rng: np.random.Generator, params: PSSeriesParams) -> np.ndarray:
    """Draw Sentinel-1-like acquisition times.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    params : PSSeriesParams
        Ranges.

    Returns
    -------
    ndarray of float64, shape (n,)
        Strictly increasing times (days since an arbitrary origin), ``n`` within
        ``params.n_epochs`` (fewer only when ``max_span_days`` cuts a long series).
    """
    n = int(rng.integers(params.n_epochs[0], params.n_epochs[1] + 1))
    revisit = float(rng.choice(params.revisit_days))
    drop = rng.uniform(*params.drop_fraction)
    # Enough regular slots that n survive the drops and winter gaps.
    n_slots = int(n / max(1e-3, 1.0 - drop) * 2.2) + 20
    steps = np.full(n_slots, revisit)
    if revisit < max(params.revisit_days) and rng.random() < params.p_revisit_switch:
        # Mimic the loss of Sentinel-1B (Dec 2021): 6-day revisit becomes 12-day.
        steps[int(rng.integers(n // 4, n)) :] = max(params.revisit_days)
    t = rng.uniform(*params.start_day) + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    keep = rng.random(n_slots) >= drop
    keep[0] = True
    if rng.random() < params.p_winter_gap:
        # Snow cover decorrelates every winter: drop a window starting DOY 320-360 each year.
        gap_len = rng.uniform(*params.winter_gap_days)
        gap_start = rng.uniform(320.0, 360.0)
        doy = np.mod(t - t[0] + rng.uniform(0.0, DAYS_PER_YEAR), DAYS_PER_YEAR)
        in_gap = np.mod(doy - gap_start, DAYS_PER_YEAR) < gap_len
        keep &= ~in_gap
        keep[0] = True
    t = t[keep]
    if len(t) < n:  # pragma: no cover - n_slots is generous; guard against pathological draws
        extra = t[-1] + revisit * np.arange(1, n - len(t) + 1)
        t = np.concatenate([t, extra])
    t = t[:n]
    return t[t - t[0] <= params.max_span_days]


def sample_noise(
    n: int, sigma: float, time_days: np.ndarray, rng: np.random.Generator, params: PSSeriesParams
) -> np.ndarray:
    """Draw one of the noise models with marginal std ``sigma`` (mm), plus optional outliers.

    Models: white Gaussian; AR(1) between consecutive epochs (phi in ``params.ar1_phi``,
    scaled to marginal std sigma); atmospheric-like heteroscedastic noise whose per-epoch
    std varies log-normally and with season (turbulent summer troposphere), rescaled so
    its RMS std is sigma. Outliers (``params.p_outliers``) add +-3-5 sigma at a few epochs.
    """
    kind = rng.choice(3, p=np.asarray(params.noise_model_probs))
    e = rng.standard_normal(n)
    if kind == 1:
        phi = rng.uniform(*params.ar1_phi)
        x = np.empty(n)
        x[0] = e[0]
        innov = np.sqrt(1.0 - phi**2)
        for i in range(1, n):
            x[i] = phi * x[i - 1] + innov * e[i]
        noise = sigma * x
    elif kind == 2:
        factor = np.exp(rng.uniform(*params.atmo_log_std) * rng.standard_normal(n))
        factor *= 1.0 + 0.4 * np.cos(2 * np.pi * time_days / DAYS_PER_YEAR + rng.uniform(0, 6.3))
        factor /= np.sqrt(np.mean(factor**2))
        noise = sigma * factor * e
    else:
        noise = sigma * e
    if rng.random() < params.p_outliers:
        k = max(1, round(n * rng.uniform(*params.outlier_fraction)))
        idx = rng.choice(n, size=k, replace=False)
        size = rng.uniform(*params.outlier_sigmas, size=k) * sigma
        noise[idx] += rng.choice([-1.0, 1.0], size=k) * size
    return noise


def _scale_for_margins(
    t: np.ndarray,
    shape: np.ndarray,
    mins: dict[str, float],
    rng: np.random.Generator,
    params: PSSeriesParams,
) -> float | None:
    """Amplitude c >= the smallest one meeting ``R_M(c * shape) >= mins[M]`` (mm), or None."""
    rms = model_residual_rms(t, shape)
    need = max(mins[k] / max(rms[k], 1e-12) for k in mins)
    lo, hi = params.amplitude_factor
    return need * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_trend(
    cls: int, t: np.ndarray, sigma: float, rng: np.random.Generator, params: PSSeriesParams
) -> np.ndarray | None:
    """Noise-free trend (mm) of class ``cls`` at epochs ``t`` meeting its margins, or None.

    ``None`` means the draw hit a physical cap (velocity, peak-to-peak) and must be redrawn.
    """
    ty = (t - t[0]) / DAYS_PER_YEAR
    span = max(ty[-1], 1e-6)
    sign = rng.choice([-1.0, 1.0])
    if cls == STABLE:
        v = rng.uniform(-params.stable_max_velocity, params.stable_max_velocity)
        # Shrink v so the motion stays below the stable margin for this noise level.
        limit = params.stable_max_rms * sigma / model_residual_rms(t, ty)["const"]
        v = float(np.clip(v, -limit, limit))
        return v * ty
    if cls == LINEAR:
        c = _scale_for_margins(t, ty, {"const": params.linear_min_rms * sigma}, rng, params)
        v = max(c, params.linear_min_velocity)
        if v > params.max_velocity_mm_yr:
            return None
        return sign * v * ty
    v0 = rng.uniform(*params.base_velocity_mm_yr)
    if cls == QUADRATIC:
        shape = 0.5 * ty**2  # amplitude = acceleration (mm/yr^2)
        mins = {"lin": params.nonlinear_min_rms * sigma, "bilin": params.shape_min_rms * sigma}
        a = sign * _scale_for_margins(t, shape, mins, rng, params)
        g = v0 * ty + a * shape
        v_end = v0 + a * span
        if max(abs(v0), abs(v_end)) > params.max_velocity_mm_yr:
            return None
    elif cls == BILINEAR:
        tb = rng.uniform(*params.bilinear_break_fraction) * span
        shape = np.maximum(ty - tb, 0.0)  # amplitude = change of velocity (mm/yr)
        mins = {"lin": params.nonlinear_min_rms * sigma, "quad": params.shape_min_rms * sigma}
        dv = sign * _scale_for_margins(t, shape, mins, rng, params)
        if rng.random() < params.p_bilinear_onset:
            v0 = 0.0  # activation of a dormant slope
        g = v0 * ty + dv * shape
        if max(abs(v0), abs(v0 + dv)) > params.max_velocity_mm_yr:
            return None
    else:
        raise ValueError(f"no trend for class {cls}")
    if np.ptp(g) > params.max_trend_ptp_mm:
        return None
    return g


def sample_pue_steps(n: int, rng: np.random.Generator, params: PSSeriesParams) -> np.ndarray:
    """Persistent unwrapping jumps (mm) at ``n`` epochs: +-k x 27.7 mm steps, some reverting."""
    m = params.pue_min_segment
    n_jumps = 1 + int(rng.choice(3, p=np.asarray(params.pue_n_jumps_probs)))
    revert = rng.random() < params.pue_p_revert
    n_events = n_jumps + int(revert)
    # Event positions at least m apart and m from both ends (a "step" shorter than that
    # would be an outlier burst, not a persistent error).
    room = n - 2 * m - (n_events - 1) * m
    if room < n_events:
        n_events, revert = 1, False
        room = n - 2 * m
    cuts = np.sort(rng.choice(room, size=n_events, replace=False))
    pos = m + cuts + m * np.arange(n_events)
    sizes = (
        PUE_JUMP_MM
        * np.where(rng.random(n_events) < params.pue_p_double, 2.0, 1.0)
        * rng.choice([-1.0, 1.0], size=n_events)
    )
    if revert:
        j = int(rng.integers(0, n_events - 1))
        sizes[j + 1] = -sizes[j]  # the next event undoes this jump: a temporary step
    steps = np.zeros(n)
    for p, s in zip(pos, sizes, strict=True):
        steps[p:] += s
    return steps


MAX_TREND_DRAWS = 1000
"""Redraws of a trend that breaks a cap before giving up (random epochs never need many)."""


def generate_ps_series(
    cls: int,
    rng: np.random.Generator,
    params: PSSeriesParams = PSSeriesParams(),
    time_days: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One series of class ``cls``, on its own random epochs or on ``time_days`` if given.

    A fixed ``time_days`` (strictly increasing, days) puts many points on the same
    acquisitions, as in an EGMS file where every point shares the date columns.

    Returns
    -------
    time_days : ndarray, shape (n,)
        Epochs (days).
    displacement_mm : ndarray, shape (n,)
        LOS displacement (mm), referenced to an arbitrary offset.
    sigma : float
        Noise std used (mm).
    base_class : int
        Trend class under the jumps (== ``cls`` unless ``cls`` is ``pue``).
    """
    base = int(rng.integers(0, 4)) if cls == PUE else cls
    for _ in range(MAX_TREND_DRAWS):
        t = sample_epochs(rng, params) if time_days is None else np.asarray(time_days, float)
        sigma = rng.uniform(*params.noise_std_mm)
        g = sample_trend(base, t, sigma, rng, params)
        if g is not None:
            break
    else:
        # Only reachable with a fixed, too short time_days: the class margins then need
        # velocities beyond the physical caps.
        raise ValueError(
            f"no {TREND_CLASSES[base]} trend within the caps fits these {len(t)} epochs "
            f"spanning {np.ptp(t):.0f} days; use a longer series"
        )
    d = g + sample_noise(len(t), sigma, t, rng, params) + rng.uniform(-5.0, 5.0)
    if rng.random() < params.p_seasonal:
        amp = rng.uniform(*params.seasonal_amp_mm)
        d += amp * np.sin(2 * np.pi * t / DAYS_PER_YEAR + rng.uniform(0, 2 * np.pi))
    if cls == PUE:
        d += sample_pue_steps(len(t), rng, params)
    return t, d, float(sigma), base


def generate_ps_dataset(
    n: int, rng: np.random.Generator, params: PSSeriesParams = PSSeriesParams()
) -> PSDataset:
    """A class-balanced, shuffled set of ``n`` labelled PS series.

    Parameters
    ----------
    n : int
        Number of series; classes get ``n // 5`` each and the remainder goes to the
        first classes.
    rng : numpy.random.Generator
        Random source (pass a seeded generator for reproducible sets).
    params : PSSeriesParams
        Ranges and margins.

    Returns
    -------
    PSDataset
        Ragged series with labels.

    Examples
    --------
    >>> ds = generate_ps_dataset(10, np.random.default_rng(0))
    >>> sorted(np.bincount(ds.labels).tolist())
    [2, 2, 2, 2, 2]
    """
    k = len(TREND_CLASSES)
    labels = np.concatenate([np.full(n // k + (i < n % k), i) for i in range(k)]).astype(np.int64)
    labels = labels[rng.permutation(n)]
    times, disps, sigmas, bases = [], [], [], []
    for cls in labels:
        t, d, s, b = generate_ps_series(int(cls), rng, params)
        times.append(t)
        disps.append(d)
        sigmas.append(s)
        bases.append(b)
    return PSDataset(
        time_days=times,
        displacement_mm=disps,
        labels=labels,
        noise_std_mm=np.asarray(sigmas),
        base_class=np.asarray(bases, dtype=np.int64),
    )
