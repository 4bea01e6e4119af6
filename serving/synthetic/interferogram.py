"""Synthetic Sentinel-1 wrapped-phase interferograms for training and testing the unrest detector.

A patch (224 x 224 pixels of ~100 m, as LiCSAR's geocoded products) is the sum of:

* deformation (positives only): a Mogi source or an Okada dyke / sill / fault, scaled to a
  chosen peak LOS amplitude between barely visible (half a fringe) and many fringes, footprint
  1-30 km, centred anywhere in the patch or just outside it;
* turbulent atmosphere: power-law (fractal) FFT noise with a random exponent, roll-off
  (correlation) length and strength;
* stratified delay: proportional to a synthetic DEM made of fractal relief plus volcano-like
  cones and calderas (concentric fringes over cones are the known false-alarm source);
* an orbital ramp, occasional burst / subswath phase steps;
* decorrelation: large smooth regions (vegetation, steep slopes, water) of pure noise or NaN,
  low noise where coherent; then a Goldstein-like adaptive filter (patch FFT, |S|^alpha) as
  LiCSAR applies, and wrapping to (-pi, pi].

Sign convention: ``phase = -4 pi / lambda * LOS`` with LOS positive towards the satellite
(:func:`serving.synthetic.deformation.los_vector`), so uplift gives negative phase.
Wrapped phase is never resized: every field is computed on the output grid itself.

Every range lives in :class:`InterferogramParams`; ``docs/synthetic-data.md``
tabulates them with the label rule and the hard-negative recipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import fft as sfft

from serving.synthetic.deformation import MogiSource, OkadaSource, source_los

KINDS: tuple[str, ...] = ("mogi", "okada", "hard_negative", "negative")
"""Patch kinds: two positive (deformation source type) and two negative."""


@dataclass(frozen=True)
class InterferogramParams:
    """Every parameter range of the generator; tuples are (low, high) sampled uniformly
    unless the name says ``log`` (log-uniform).

    Attributes
    ----------
    size : int
        Patch side in pixels (the served model's 224).
    pixel_m : float
        Pixel size in metres (LiCSAR ~0.001 deg ~ 100 m).
    wavelength_m : float
        Sentinel-1 C-band radar wavelength in metres; one fringe = wavelength / 2 of LOS.
    incidence_deg : tuple
        Incidence angle range, degrees (Sentinel-1 IW swaths).
    heading_asc_deg, heading_desc_deg : tuple
        Flight heading ranges, degrees clockwise from north; each patch is ascending or
        descending with equal probability.
    peak_fringes_log : tuple
        Peak |LOS| of the deformation over the coherent pixels of a positive patch, in fringes
        (log-uniform). This is the label rule's quantity.
    label_min_fringes : float
        Label rule: a patch is positive iff it holds deformation of at least this peak.
    min_peak_to_turbulence : float
        Label rule, second part: the peak (fringes) is also at least this many times the
        patch's turbulence standard deviation (fringes); the peak is drawn log-uniformly from
        ``(max(peak_fringes_log[0], ratio * turbulence), peak_fringes_log[1])``.
    small_fringes : float
        Positives below this peak count as "small" in evaluation breakdowns.
    mogi_fraction : float
        Share of positives from a Mogi source; the rest are Okada sources.
    mogi_depth_m_log : tuple
        Mogi depth, metres (log-uniform); footprint diameter is ~2-3 depths.
    okada_types : tuple
        Okada source types drawn uniformly: dyke (dip 70-90, opening), sill (dip 0-15,
        opening), fault (dip 30-90, slip with random rake).
    okada_length_m_log, okada_width_m_log : tuple
        Okada length and down-dip width, metres (log-uniform).
    okada_top_depth_m_log : tuple
        Depth of the Okada top edge, metres (log-uniform).
    inflation_fraction : float
        Share of Mogi / opening sources that inflate (the rest deflate).
    centre_inside_fraction : float
        Share of sources centred in the inner 80 % of the patch; the rest are centred
        anywhere within ``centre_outside_px`` of the patch, possibly outside it.
    centre_outside_px : int
        How far outside the patch edge a source centre may lie, pixels.
    source_on_cone_fraction : float
        Share of positives whose source sits under a volcanic cone of the DEM.
    turbulence_mm_log : tuple
        Standard deviation of the turbulent delay over the patch, mm (log-uniform).
    turbulence_beta : tuple
        Power-spectrum exponent of the turbulence (8/3 is Kolmogorov), dimensionless.
    turbulence_rolloff_km_log : tuple
        Outer scale (roll-off wavelength) of the turbulence, km (log-uniform).
    relief_m_log : tuple
        Standard deviation of the fractal relief, metres (log-uniform).
    cone_probability : float
        Probability that a patch has volcanic cones (one or two).
    cone_height_m, cone_radius_km : tuple
        Cone height above the surroundings (m) and base radius (km).
    caldera_probability : float
        Probability that a cone has a summit caldera (depression of 10-40 % of its height).
    stratified_mm_per_km : tuple
        Stratified-delay coefficient, mm of LOS delay per km of height, symmetric range.
    ramp_fringes : tuple
        Orbital ramp amplitude across the patch, fringes.
    decorrelation_probability : float
        Probability that a patch has decorrelated regions.
    decorrelated_fraction : tuple
        Area share of the decorrelated regions when present.
    water_probability : float
        Probability of a water body (a smooth coastline) among the decorrelated regions.
    nan_decorrelated_probability : float
        Probability that decorrelated pixels are NaN (masked) rather than noise.
    coherent_noise_rad : tuple
        Phase noise standard deviation where coherent, radians (before filtering).
    step_probability : float
        Probability of a burst / subswath phase step.
    step_rad : tuple
        Size of a phase step, radians (random sign).
    goldstein_probability, goldstein_alpha : float, tuple
        Probability of the Goldstein-like filter and its exponent range.
    hard_turbulence_mm_log : tuple
        Hard negatives of the "strong atmosphere" kind: turbulence std, mm (log-uniform).
    hard_stratified_mm_per_km : tuple
        Hard negatives of the "cone" kind: |stratified coefficient|, mm/km.
    hard_cone_height_m : tuple
        Hard negatives of the "cone" kind: cone height, metres.
    hard_cone_share : float
        Share of hard negatives that are of the "cone" kind (the rest "strong atmosphere").
    """

    size: int = 224
    pixel_m: float = 100.0
    wavelength_m: float = 0.055465
    incidence_deg: tuple[float, float] = (29.0, 46.0)
    heading_asc_deg: tuple[float, float] = (-14.0, -8.0)
    heading_desc_deg: tuple[float, float] = (188.0, 194.0)
    peak_fringes_log: tuple[float, float] = (0.5, 10.0)
    label_min_fringes: float = 0.5
    min_peak_to_turbulence: float = 2.5
    small_fringes: float = 1.0
    mogi_fraction: float = 0.5
    mogi_depth_m_log: tuple[float, float] = (500.0, 10000.0)
    okada_types: tuple[str, ...] = ("dyke", "sill", "fault")
    okada_length_m_log: tuple[float, float] = (1000.0, 15000.0)
    okada_width_m_log: tuple[float, float] = (500.0, 8000.0)
    okada_top_depth_m_log: tuple[float, float] = (200.0, 5000.0)
    inflation_fraction: float = 0.7
    centre_inside_fraction: float = 0.8
    centre_outside_px: int = 22
    source_on_cone_fraction: float = 0.5
    turbulence_mm_log: tuple[float, float] = (1.0, 10.0)
    turbulence_beta: tuple[float, float] = (3.0, 4.0)
    turbulence_rolloff_km_log: tuple[float, float] = (3.0, 50.0)
    relief_m_log: tuple[float, float] = (20.0, 400.0)
    cone_probability: float = 0.5
    cone_height_m: tuple[float, float] = (300.0, 2500.0)
    cone_radius_km: tuple[float, float] = (2.0, 10.0)
    caldera_probability: float = 0.4
    stratified_mm_per_km: tuple[float, float] = (-12.0, 12.0)
    ramp_fringes: tuple[float, float] = (0.0, 1.5)
    decorrelation_probability: float = 0.7
    decorrelated_fraction: tuple[float, float] = (0.02, 0.5)
    water_probability: float = 0.2
    nan_decorrelated_probability: float = 0.5
    coherent_noise_rad: tuple[float, float] = (0.1, 0.7)
    step_probability: float = 0.1
    step_rad: tuple[float, float] = (0.5, 2.5)
    goldstein_probability: float = 0.9
    goldstein_alpha: tuple[float, float] = (0.3, 0.9)
    hard_turbulence_mm_log: tuple[float, float] = (6.0, 15.0)
    hard_stratified_mm_per_km: tuple[float, float] = (12.0, 35.0)
    hard_cone_height_m: tuple[float, float] = (1000.0, 3000.0)
    hard_cone_share: float = 0.7

    @property
    def fringe_m(self) -> float:
        """LOS displacement of one fringe (2 pi of phase), metres."""
        return self.wavelength_m / 2.0

    def rad_per_m(self) -> float:
        """Phase per metre of LOS displacement: ``-4 pi / lambda`` (rad / m)."""
        return -4.0 * np.pi / self.wavelength_m


DEFAULT_PARAMS = InterferogramParams()


class SyntheticSet(NamedTuple):
    """A generated data set.

    Attributes
    ----------
    phase : ndarray, shape (n, size, size), float32
        Wrapped phase in radians, NaN = masked.
    labels : ndarray, shape (n,), bool
        True = deformation (unrest) present.
    kinds : ndarray, shape (n,), str
        One of :data:`KINDS`.
    peak_fringes : ndarray, shape (n,), float32
        Peak |LOS| of the deformation in fringes (0 for negatives).
    """

    phase: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    peak_fringes: np.ndarray


# --- building blocks (shape-generic, pure) ------------------------------------------------------


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _fft_shape(shape: tuple[int, int]) -> tuple[int, int]:
    # Pad so the periodic FFT field does not wrap visibly across the output grid.
    return tuple(sfft.next_fast_len(int(s * 1.15) + 8) for s in shape)  # type: ignore[return-value]


def power_law_field(
    rng: np.random.Generator, shape: tuple[int, int], beta: float, rolloff_px: float
) -> np.ndarray:
    """Zero-mean, unit-std isotropic random field with a power-law spectrum.

    Power spectral density ``P(k) ~ (k^2 + k0^2)^(-beta / 2)`` with ``k0 = 1 / rolloff_px``:
    fractal (self-similar) below the roll-off length, flat above it.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (rows, cols)
        Output shape in pixels.
    beta : float
        Spectral exponent (8/3 for Kolmogorov turbulence, 3-4 for topography).
    rolloff_px : float
        Roll-off (outer-scale) wavelength in pixels.

    Returns
    -------
    ndarray, shape ``shape``, float64
    """
    fr, fc = _fft_shape(shape)
    ky = sfft.fftfreq(fr)[:, None]
    kx = sfft.rfftfreq(fc)[None, :]
    k2 = kx * kx + ky * ky + (1.0 / max(rolloff_px, 1.0)) ** 2
    amp = k2 ** (-beta / 4.0)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    f = sfft.irfft2(spec, s=(fr, fc))[: shape[0], : shape[1]]
    f -= f.mean()
    std = f.std()
    return f / std if std > 0 else f


def _cone(
    rr: np.ndarray,
    cc: np.ndarray,
    r0: float,
    c0: float,
    height: float,
    radius_px: float,
    caldera: float,
) -> np.ndarray:
    """Height of a volcano-like cone (concave flanks) with an optional summit caldera, metres."""
    r = np.hypot(rr - r0, cc - c0) / radius_px
    h = height * np.clip(1.0 - r, 0.0, None) ** 1.6
    if caldera > 0:
        rc = 0.25
        # A flat-floored depression of depth `caldera * height` inside the summit ring.
        h = h - caldera * height * np.clip(1.0 - (r / rc) ** 4, 0.0, None)
    return h


def synthetic_dem(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: InterferogramParams,
    cones: Sequence[tuple[float, float, float, float, float]] = (),
) -> np.ndarray:
    """Synthetic topography: fractal relief plus volcanic cones.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (rows, cols)
    params : InterferogramParams
        Relief and cone ranges.
    cones : sequence of (row, col, height_m, radius_px, caldera_fraction)
        Cones to add (caldera_fraction 0 = none).

    Returns
    -------
    ndarray, shape ``shape``, metres above the lowest point.
    """
    relief = _log_uniform(rng, params.relief_m_log)
    dem = relief * power_law_field(rng, shape, _uniform(rng, (3.2, 4.0)), max(shape) * 0.7)
    if cones:
        rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        for r0, c0, h, rad, cal in cones:
            dem += _cone(rr, cc, r0, c0, h, rad, cal)
    return dem - dem.min()


def random_cones(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: InterferogramParams,
    n: int,
    height_m: tuple[float, float] | None = None,
    at: tuple[float, float] | None = None,
) -> list[tuple[float, float, float, float, float]]:
    """Draw ``n`` cones (row, col, height_m, radius_px, caldera_fraction) for :func:`synthetic_dem`.

    ``at`` pins the first cone's centre (row, col), e.g. above a deformation source.
    """
    cones = []
    for i in range(n):
        if at is not None and i == 0:
            r0, c0 = at
        else:
            r0 = rng.uniform(-0.1, 1.1) * shape[0]
            c0 = rng.uniform(-0.1, 1.1) * shape[1]
        h = _uniform(rng, height_m or params.cone_height_m)
        rad = _uniform(rng, params.cone_radius_km) * 1000.0 / params.pixel_m
        cal = rng.uniform(0.1, 0.4) if rng.random() < params.caldera_probability else 0.0
        cones.append((float(r0), float(c0), h, rad, float(cal)))
    return cones


def orbital_ramp(
    rng: np.random.Generator, shape: tuple[int, int], amplitude_rad: float
) -> np.ndarray:
    """A planar (sometimes slightly quadratic) ramp of ``amplitude_rad`` (rad) across the grid."""
    rows, cols = shape
    y = (np.arange(rows)[:, None] - rows / 2) / max(rows, cols)
    x = (np.arange(cols)[None, :] - cols / 2) / max(rows, cols)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(ang) * x + np.sin(ang) * y
    if rng.random() < 0.2:
        ramp = ramp + rng.uniform(-0.5, 0.5) * (x * x + y * y)
    return amplitude_rad * ramp


def decorrelation(
    rng: np.random.Generator, shape: tuple[int, int], params: InterferogramParams
) -> tuple[np.ndarray, np.ndarray]:
    """Large smooth decorrelated regions and a coherence-like weight.

    Returns
    -------
    coherence : ndarray, shape ``shape``, float in [0, 1]
        1 well inside coherent areas, falling to 0 across a band at region edges.
    decorrelated : ndarray, shape ``shape``, bool
        Pixels with no usable phase (pure noise or NaN in the product).
    """
    coh = np.ones(shape)
    bad = np.zeros(shape, dtype=bool)
    if rng.random() < params.decorrelation_probability:
        frac = _uniform(rng, params.decorrelated_fraction)
        f = power_law_field(
            rng, shape, _uniform(rng, (3.5, 4.5)), max(shape) * rng.uniform(0.3, 1.0)
        )
        thr = np.quantile(f, frac)
        # A soft band of width ~0.15 std above the threshold: noise grows towards the edges.
        coh = np.clip((f - thr) / 0.15, 0.0, 1.0)
        bad = f < thr
    if rng.random() < params.water_probability:
        rows, cols = shape
        ang = rng.uniform(0, 2 * np.pi)
        y = np.arange(rows)[:, None] - rows / 2
        x = np.arange(cols)[None, :] - cols / 2
        # A smooth, wiggly coastline: a tilted plane plus low-frequency noise.
        d = np.cos(ang) * x + np.sin(ang) * y + 15.0 * power_law_field(rng, shape, 4.0, max(shape))
        water = d > rng.uniform(0.2, 0.6) * max(shape) / 2
        bad |= water
        coh = np.where(water, 0.0, coh)
    return coh, bad


def phase_step(
    rng: np.random.Generator, shape: tuple[int, int], params: InterferogramParams
) -> np.ndarray:
    """A burst (along-track) or subswath (across-track) boundary phase step, radians.

    The boundary is a straight line tilted by up to 12 degrees (frames are geocoded, so
    radar-geometry boundaries are not grid-aligned); one side gets a constant offset.
    """
    rows, cols = shape
    y = np.arange(rows)[:, None].astype(float)
    x = np.arange(cols)[None, :].astype(float)
    tilt = np.tan(np.deg2rad(rng.uniform(-12, 12)))
    step = _uniform(rng, params.step_rad) * rng.choice([-1.0, 1.0])
    if rng.random() < 0.5:  # burst boundary: a near-horizontal line
        side = y > rng.uniform(0.15, 0.85) * rows + tilt * (x - cols / 2)
    else:  # subswath boundary: a near-vertical line
        side = x > rng.uniform(0.15, 0.85) * cols + tilt * (y - rows / 2)
    return np.where(side, step, 0.0)


def goldstein_filter(z: np.ndarray, alpha: float, window: int = 32, smooth: int = 3) -> np.ndarray:
    """Goldstein-like adaptive filter of a complex interferogram.

    Overlapping ``window``-pixel patches (half-window step) are FFT'd, each spectrum ``S``
    is multiplied by ``|smooth(S)|^alpha`` (normalised to a peak of 1), inverse FFT'd and
    blended back with triangular weights, as in Goldstein & Werner (1998),
    https://doi.org/10.1029/1998GL900033.

    Parameters
    ----------
    z : ndarray, shape (rows, cols), complex
        Complex interferogram (unit amplitude or coherence-weighted); no NaN.
    alpha : float
        Filter exponent in [0, 1]; 0 leaves the phase unchanged.
    window : int
        Patch size in pixels (even).
    smooth : int
        Side of the box smoothing of ``|S|``, frequency bins.

    Returns
    -------
    ndarray, shape (rows, cols), complex
        Filtered interferogram (take ``np.angle`` for the phase).
    """
    rows, cols = z.shape
    step = window // 2
    pr = (-(rows - window) % step) + step if rows > window else window - rows + step
    pc = (-(cols - window) % step) + step if cols > window else window - cols + step
    zp = np.pad(z, ((step // 2, pr - step // 2 + step), (step // 2, pc - step // 2 + step)))
    nr = (zp.shape[0] - window) // step + 1
    nc = (zp.shape[1] - window) // step + 1
    idx_r = (np.arange(nr) * step)[:, None] + np.arange(window)[None, :]
    idx_c = (np.arange(nc) * step)[:, None] + np.arange(window)[None, :]
    patches = zp[idx_r[:, None, :, None], idx_c[None, :, None, :]]  # (nr, nc, w, w)
    spec = sfft.fft2(patches.astype(np.complex64), axes=(-2, -1))
    mag = np.abs(spec)
    if smooth > 1:  # separable box smoothing of |S| (circular, like the spectrum itself)
        h = smooth // 2
        mag = sum(np.roll(mag, d, axis=-2) for d in range(-h, h + 1))
        mag = sum(np.roll(mag, d, axis=-1) for d in range(-h, h + 1))
    weight = mag**alpha
    weight /= np.maximum(weight.max(axis=(-2, -1), keepdims=True), 1e-12)
    tri = 1.0 - np.abs(np.arange(window) - (window - 1) / 2) / (window / 2)
    w2 = (tri[:, None] * tri[None, :]).astype(np.float32)
    filt = sfft.ifft2(spec * weight, axes=(-2, -1)) * w2
    out = _overlap_add(filt, step)
    wsum = _overlap_add(np.broadcast_to(w2, filt.shape), step)
    res = out / np.maximum(wsum, 1e-12)
    r_off = c_off = step // 2
    return res[r_off : r_off + rows, c_off : c_off + cols]


def _overlap_add(tiles: np.ndarray, step: int) -> np.ndarray:
    """Overlap-add (nr, nc, 2 step, 2 step) tiles laid every ``step`` pixels (half overlap).

    Each tile's four ``step x step`` quadrants land in four neighbouring cells of a
    (nr + 1, nc + 1) cell grid, so the sum is four shifted array additions.
    """
    nr, nc = tiles.shape[:2]
    q = tiles.reshape(nr, nc, 2, step, 2, step)
    cells = np.zeros((nr + 1, nc + 1, step, step), dtype=tiles.dtype)
    for a in (0, 1):
        for b in (0, 1):
            cells[a : a + nr, b : b + nc] += q[:, :, a, :, b, :]
    return cells.transpose(0, 2, 1, 3).reshape((nr + 1) * step, (nc + 1) * step)


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap phase to (-pi, pi] radians (NaN stays NaN)."""
    return np.angle(np.exp(1j * phase))


# --- sources -------------------------------------------------------------------------------------


def random_source(
    rng: np.random.Generator,
    params: InterferogramParams,
    kind: str,
    centre_en: tuple[float, float],
) -> MogiSource | OkadaSource:
    """Draw a Mogi or Okada source of unit-ish strength centred at ``centre_en`` (metres).

    The strength is arbitrary: callers rescale the LOS field to a target peak.
    """
    e, n = centre_en
    sign = 1.0 if rng.random() < params.inflation_fraction else -1.0
    if kind == "mogi":
        return MogiSource(e, n, _log_uniform(rng, params.mogi_depth_m_log), sign * 1e6)
    okada_type = params.okada_types[int(rng.integers(len(params.okada_types)))]
    length = _log_uniform(rng, params.okada_length_m_log)
    width = _log_uniform(rng, params.okada_width_m_log)
    top = _log_uniform(rng, params.okada_top_depth_m_log)
    strike = rng.uniform(0, 360)
    if okada_type == "dyke":
        dip, slip, rake, opening = rng.uniform(70, 90), 0.0, 0.0, sign * 1.0
    elif okada_type == "sill":
        dip, slip, rake, opening = rng.uniform(0, 15), 0.0, 0.0, sign * 1.0
        width = min(width * 2.0, 15000.0)  # sills are wider than tall dykes
    else:
        dip, slip, rake, opening = rng.uniform(30, 90), 1.0, rng.uniform(-180, 180), 0.0
    depth = top + width / 2.0 * np.sin(np.deg2rad(dip))
    return OkadaSource(e, n, depth, strike, dip, length, width, rake, slip, opening)


def grid_en(shape: tuple[int, int], pixel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """East and north (metres) of pixel centres; origin at pixel (0, 0), rows go south."""
    rows, cols = shape
    east = np.arange(cols, dtype=float)[None, :] * pixel_m
    north = -np.arange(rows, dtype=float)[:, None] * pixel_m
    return np.broadcast_to(east, shape), np.broadcast_to(north, shape)


# --- composition ---------------------------------------------------------------------------------


@dataclass
class _Nuisance:
    """Nuisance settings of one interferogram (drawn once, applied by :func:`_compose`)."""

    turbulence_mm: float
    stratified_mm_per_km: float
    cones: list[tuple[float, float, float, float, float]] = field(default_factory=list)


def _compose(
    rng: np.random.Generator,
    shape: tuple[int, int],
    params: InterferogramParams,
    los_m: np.ndarray | None,
    nuis: _Nuisance,
    coh_bad: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Add nuisance terms to a deformation LOS field, filter, mask and wrap (radians)."""
    k = params.rad_per_m()
    phi = np.zeros(shape) if los_m is None else k * los_m
    beta = _uniform(rng, params.turbulence_beta)
    rolloff = _log_uniform(rng, params.turbulence_rolloff_km_log) * 1000.0 / params.pixel_m
    phi = phi + k * 1e-3 * nuis.turbulence_mm * power_law_field(rng, shape, beta, rolloff)
    dem = synthetic_dem(rng, shape, params, nuis.cones)
    phi = phi + k * 1e-3 * nuis.stratified_mm_per_km * (dem - dem.mean()) / 1000.0
    phi = phi + orbital_ramp(rng, shape, 2 * np.pi * _uniform(rng, params.ramp_fringes))
    if rng.random() < params.step_probability:
        phi = phi + phase_step(rng, shape, params)
    coh, bad = coh_bad if coh_bad is not None else decorrelation(rng, shape, params)
    sigma = _uniform(rng, params.coherent_noise_rad) + 1.5 * (1.0 - coh)
    phi = phi + sigma * rng.standard_normal(shape)
    z = np.exp(1j * phi)
    z = np.where(bad, np.exp(1j * rng.uniform(-np.pi, np.pi, shape)), z)
    if rng.random() < params.goldstein_probability:
        z = goldstein_filter(z, _uniform(rng, params.goldstein_alpha))
    out = np.angle(z)
    if rng.random() < params.nan_decorrelated_probability:
        out = np.where(bad, np.nan, out)
    return out.astype(np.float32)


def _draw_patch(
    rng: np.random.Generator, kind: str, params: InterferogramParams
) -> tuple[np.ndarray, float]:
    """One patch of ``kind`` (see :data:`KINDS`) and its deformation peak in fringes."""
    size = params.size
    shape = (size, size)
    nuis = _Nuisance(
        turbulence_mm=_log_uniform(rng, params.turbulence_mm_log),
        stratified_mm_per_km=_uniform(rng, params.stratified_mm_per_km),
    )
    if kind == "hard_negative":
        if rng.random() < params.hard_cone_share:
            # Concentric stratified fringes over a tall cone (or two): looks like inflation.
            n_cones = 1 if rng.random() < 0.7 else 2
            at = (rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size)
            nuis.cones = random_cones(rng, shape, params, n_cones, params.hard_cone_height_m, at)
            nuis.stratified_mm_per_km = _uniform(
                rng, params.hard_stratified_mm_per_km
            ) * rng.choice([-1.0, 1.0])
        else:
            # Strong, long-wavelength turbulence: blob-shaped fringes.
            nuis.turbulence_mm = _log_uniform(rng, params.hard_turbulence_mm_log)
        return _compose(rng, shape, params, None, nuis), 0.0

    if rng.random() < params.cone_probability:
        nuis.cones = random_cones(rng, shape, params, 1 if rng.random() < 0.7 else 2)
    if kind == "negative":
        return _compose(rng, shape, params, None, nuis), 0.0

    if rng.random() < params.centre_inside_fraction:
        r0, c0 = rng.uniform(0.1, 0.9, 2) * size
    else:
        m = params.centre_outside_px
        r0, c0 = rng.uniform(-m, size + m, 2)
    if nuis.cones and rng.random() < params.source_on_cone_fraction:
        # A volcano: the source sits under the cone.
        c = nuis.cones[0]
        nuis.cones[0] = (float(r0), float(c0), c[2], c[3], c[4])
    east, north = grid_en(shape, params.pixel_m)
    src = random_source(rng, params, kind, (c0 * params.pixel_m, -r0 * params.pixel_m))
    inc = _uniform(rng, params.incidence_deg)
    head = _uniform(rng, params.heading_asc_deg if rng.random() < 0.5 else params.heading_desc_deg)
    los = source_los(east, north, src, inc, head)
    coh, bad = decorrelation(rng, shape, params)
    if bad.mean() > 0.95:  # nothing left to see: keep the label rule meaningful
        coh, bad = np.ones(shape), np.zeros(shape, dtype=bool)
    los = los - np.median(los[~bad])  # a LOS offset is invisible; keep the far field near 0
    peak_now = float(np.max(np.abs(los[~bad])))
    # Label rule: the peak must also stand out of the patch's own turbulence (an expert
    # would not label a bullseye weaker than the atmosphere around it as deformation).
    turb_fringes = nuis.turbulence_mm * 1e-3 / params.fringe_m
    low = max(params.peak_fringes_log[0], params.min_peak_to_turbulence * turb_fringes)
    peak = _log_uniform(rng, (low, params.peak_fringes_log[1]))
    los = los * (peak * params.fringe_m / max(peak_now, 1e-12))
    return _compose(rng, shape, params, los, nuis, (coh, bad)), peak


def generate_patch(
    rng: np.random.Generator,
    label: bool,
    params: InterferogramParams = DEFAULT_PARAMS,
    hard_negative: bool = False,
) -> np.ndarray:
    """One synthetic wrapped-phase patch.

    Parameters
    ----------
    rng : numpy.random.Generator
    label : bool
        True: a deformation source (Mogi or Okada, by ``params.mogi_fraction``).
    params : InterferogramParams
    hard_negative : bool
        With ``label=False``: a hard negative (cone stratification or strong atmosphere).

    Returns
    -------
    ndarray, shape (size, size), float32
        Wrapped phase in radians in (-pi, pi], NaN where masked.
    """
    if label and hard_negative:
        raise ValueError("a patch cannot be both positive and a hard negative")
    if label:
        kind = "mogi" if rng.random() < params.mogi_fraction else "okada"
    else:
        kind = "hard_negative" if hard_negative else "negative"
    return _draw_patch(rng, kind, params)[0]


def _draw_kinds(
    rng: np.random.Generator,
    n: int,
    positive_fraction: float,
    hard_negative_fraction: float,
    mogi_fraction: float,
) -> np.ndarray:
    """Kinds with exact proportions (rounded), shuffled."""
    n_pos = round(n * positive_fraction)
    n_hard = min(round(n * hard_negative_fraction), n - n_pos)
    n_mogi = round(n_pos * mogi_fraction)
    kinds = np.array(
        ["mogi"] * n_mogi
        + ["okada"] * (n_pos - n_mogi)
        + ["hard_negative"] * n_hard
        + ["negative"] * (n - n_pos - n_hard)
    )
    return kinds[rng.permutation(n)]


def _chunk(
    args: tuple[np.random.SeedSequence, list[str], InterferogramParams],
) -> tuple[np.ndarray, np.ndarray]:
    seed, kinds, params = args
    rng = np.random.default_rng(seed)
    out = np.empty((len(kinds), params.size, params.size), dtype=np.float32)
    peaks = np.zeros(len(kinds), dtype=np.float32)
    for i, kind in enumerate(kinds):
        out[i], peaks[i] = _draw_patch(rng, kind, params)
    return out, peaks


def generate_dataset(
    n: int,
    rng: np.random.Generator,
    params: InterferogramParams = DEFAULT_PARAMS,
    positive_fraction: float = 0.5,
    hard_negative_fraction: float = 0.3,
    *,
    workers: int = 1,
    chunk: int = 128,
    progress: bool = False,
) -> SyntheticSet:
    """A labelled set of ``n`` patches.

    The result depends only on ``rng``'s state, ``n``, ``params``, the fractions and
    ``chunk`` — not on ``workers`` (each chunk has its own child seed).

    Parameters
    ----------
    n : int
        Number of patches.
    rng : numpy.random.Generator
    params : InterferogramParams
    positive_fraction : float
        Share of positives (exact after rounding).
    hard_negative_fraction : float
        Share of the *whole set* that is hard negatives (exact after rounding).
    workers : int
        Processes to generate with (1 = in this process).
    chunk : int
        Patches per seed chunk.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    SyntheticSet
        ``phase`` (n, size, size) float32, ``labels`` (n,) bool, ``kinds`` (n,) str,
        ``peak_fringes`` (n,) float32.
    """
    if not 0 <= positive_fraction <= 1 or not 0 <= hard_negative_fraction <= 1:
        raise ValueError("fractions must be in [0, 1]")
    kinds = _draw_kinds(rng, n, positive_fraction, hard_negative_fraction, params.mogi_fraction)
    n_chunks = max(1, math.ceil(n / chunk))
    seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(n_chunks)
    jobs = [(seeds[i], list(kinds[i * chunk : (i + 1) * chunk]), params) for i in range(n_chunks)]
    phase = np.empty((n, params.size, params.size), dtype=np.float32)
    peaks = np.zeros(n, dtype=np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="synthetic patches", unit="patch")
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_chunk, jobs)
            for i, (ph, pk) in enumerate(results):
                phase[i * chunk : i * chunk + len(ph)] = ph
                peaks[i * chunk : i * chunk + len(pk)] = pk
                if bar is not None:
                    bar.update(len(ph))
    else:
        for i, job in enumerate(jobs):
            ph, pk = _chunk(job)
            phase[i * chunk : i * chunk + len(ph)] = ph
            peaks[i * chunk : i * chunk + len(pk)] = pk
            if bar is not None:
                bar.update(len(ph))
    if bar is not None:
        bar.close()
    labels = np.isin(kinds, ("mogi", "okada"))
    return SyntheticSet(phase, labels, kinds, peaks)


# --- frames --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticFrame:
    """A larger synthetic interferogram frame with a geotransform.

    Attributes
    ----------
    phase : ndarray, shape (rows, cols), float32
        Wrapped phase in radians, NaN = masked.
    transform : affine.Affine
        Pixel (col, row) -> (lon, lat) of the pixel's upper-left corner, EPSG:4326.
    deformation_fringes : ndarray, shape (rows, cols), float32
        |LOS| of the deformation alone in fringes (0 where none), the truth for scoring tests.
    sources : tuple
        The sources (metres, frame grid of :func:`grid_en`).
    """

    phase: np.ndarray
    transform: object
    deformation_fringes: np.ndarray
    sources: tuple[MogiSource | OkadaSource, ...]


def generate_frame(
    rng: np.random.Generator,
    shape: tuple[int, int] = (600, 700),
    sources: Sequence[MogiSource | OkadaSource] = (),
    params: InterferogramParams = DEFAULT_PARAMS,
    *,
    origin_lonlat: tuple[float, float] = (14.0, 41.0),
    pixel_deg: float = 0.001,
    incidence_deg: float = 38.0,
    heading_deg: float = -10.0,
    nuisance_scale: float = 1.0,
) -> SyntheticFrame:
    """A frame (e.g. 600 x 700 px) with given deformation sources and random nuisance.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (rows, cols)
        Frame size in pixels.
    sources : sequence of MogiSource or OkadaSource
        Sources in metres on the frame grid (east = col * pixel_m, north = -row * pixel_m).
        Their strengths are used as given (no rescaling).
    params : InterferogramParams
        Nuisance ranges and pixel size.
    origin_lonlat : (lon, lat)
        Upper-left corner of the frame, degrees.
    pixel_deg : float
        Pixel size in degrees (~100 m, like LiCSAR).
    incidence_deg, heading_deg : float
        Acquisition geometry.
    nuisance_scale : float
        Multiplies turbulence and stratification strength (0 = deformation, ramp and noise only).

    Returns
    -------
    SyntheticFrame
    """
    from affine import Affine

    east, north = grid_en(shape, params.pixel_m)
    los = np.zeros(shape)
    for src in sources:
        los = los + source_los(east, north, src, incidence_deg, heading_deg)
    nuis = _Nuisance(
        turbulence_mm=nuisance_scale * _log_uniform(rng, params.turbulence_mm_log),
        stratified_mm_per_km=nuisance_scale * _uniform(rng, params.stratified_mm_per_km),
    )
    if rng.random() < params.cone_probability:
        nuis.cones = random_cones(rng, shape, params, 2)
    phase = _compose(rng, shape, params, los, nuis)
    transform = Affine(pixel_deg, 0.0, origin_lonlat[0], 0.0, -pixel_deg, origin_lonlat[1])
    return SyntheticFrame(
        phase, transform, (np.abs(los) / params.fringe_m).astype(np.float32), tuple(sources)
    )
