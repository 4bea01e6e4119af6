"""Synthetic hot spot scenes with known deformation areas, to train and test the delineation U-Net.

A scene is one 256 x 256 tile of 50 m cells (12.8 km a side, the default hot spot grid):

1. **Terrain.** A fractal (power-law spectrum) surface scaled to a realistic slope
   distribution, with basins filled flat (valley floors); slope and aspect by Horn's method
   (:func:`pipelines.hotspots.terrain.slope_aspect`).
2. **Deformation areas**, the labels:

   * *landslides*: an irregular ellipse elongated downslope, clipped to the slope face it
     sits on (cells whose aspect is within 60 degrees of its centre's) — which is why aspect
     tells where such an area ends. The body slides downslope; its line-of-sight (LOS)
     velocity is the projection of that motion on the radar's look vector (ascending or
     descending Sentinel-1, 39 degrees incidence). Landslides the geometry would hide
     (|projection| < 0.3) are not placed, since areas are labelled from InSAR;
   * *bowls*: elliptical subsidence (sometimes uplift) with a Gaussian profile, mostly on
     flat ground; the area is where the LOS rate exceeds the stability threshold.

   Every labelled cell moves faster than the stability threshold (10 mm/yr, the paper's).
3. **PS points**: random positions (40-250 per km2, none in decorrelated patches or on
   slopes steeper than 45 degrees), LOS velocity = deformation + white noise + a smooth
   atmospheric residual + rare unwrapping outliers.
4. **Hot spot map**: the project's own Getis-Ord Gi* (d = 150 m) over the points and the
   z-weighted quartic kernel density (r = 300 m) on the tile's grid — the same code the
   daemon runs (:mod:`pipelines.hotspots.gistar`, :mod:`pipelines.hotspots.kde`).

Everything is drawn from one ``numpy.random.Generator`` per scene, seeded from
``(seed, index)``, so any scene can be regenerated alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from pipelines.hotspots.terrain import slope_aspect

# Ground-to-satellite unit vectors (east, north, up) for Sentinel-1 at 39 degrees incidence,
# heading about -10 (ascending) / 190 (descending) degrees, right-looking.
_INCIDENCE = math.radians(39.0)


def _los(heading_deg: float) -> np.ndarray:
    look_azimuth = math.radians(heading_deg + 90.0)  # right-looking
    horizontal = math.sin(_INCIDENCE)
    # The vector points from the ground back to the satellite: against the look direction.
    return np.array(
        [-horizontal * math.sin(look_azimuth), -horizontal * math.cos(look_azimuth),
         math.cos(_INCIDENCE)]
    )


LOS_ASCENDING = _los(-10.0)
LOS_DESCENDING = _los(190.0)


@dataclass(frozen=True)
class SceneParams:
    """Ranges of the scene generator (each tuple is drawn uniformly per scene or area)."""

    size: int = 256
    cell_m: float = 50.0
    gi_distance_m: float = 150.0
    kde_radius_m: float = 300.0
    stability_threshold_mm_yr: float = 10.0
    density_per_km2: tuple[float, float] = (40.0, 250.0)
    decorrelated_fraction: tuple[float, float] = (0.05, 0.35)
    p90_slope_deg: tuple[float, float] = (12.0, 32.0)
    basin_fraction: tuple[float, float] = (0.0, 0.3)
    spectral_exponent: tuple[float, float] = (4.0, 4.8)
    landslides: tuple[int, int] = (0, 5)
    landslide_length_m: tuple[float, float] = (400.0, 2200.0)
    landslide_speed_mm_yr: tuple[float, float] = (15.0, 120.0)
    bowls: tuple[int, int] = (0, 2)
    bowl_radius_m: tuple[float, float] = (500.0, 2500.0)
    bowl_peak_mm_yr: tuple[float, float] = (20.0, 150.0)
    uplift_share: float = 0.2
    noise_mm_yr: tuple[float, float] = (1.0, 4.0)
    atmosphere_mm_yr: tuple[float, float] = (0.0, 3.0)
    outlier_share: tuple[float, float] = (0.0, 0.01)
    empty_share: float = 0.15
    min_area_cells: int = 10


DEFAULT_SCENE_PARAMS = SceneParams()


class Scene(NamedTuple):
    """One scene: model inputs, labels and what produced them."""

    density: np.ndarray  # (H, W) float32, z-weighted KDE of Gi* z, 1/km2
    aspect_deg: np.ndarray  # (H, W) float32, NaN on flat ground
    slope_deg: np.ndarray  # (H, W) float32
    label: np.ndarray  # (H, W) uint8, 1 = anomalous deformation area
    instances: np.ndarray  # (H, W) uint8, 0 = none, k = k-th area
    kinds: tuple[str, ...]  # kind of area k (index k - 1): "landslide" or "bowl"
    n_points: int
    clustered: np.ndarray | None  # (H, W) uint8 mask of the clustered ADAs (baseline)


# --- terrain ------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, size: int, exponent: float) -> np.ndarray:
    """Zero-mean, unit-std random field with a power-law spectrum k^-exponent."""
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    amplitude = k ** (-exponent / 2.0)
    noise = rng.normal(size=(size, size // 2 + 1)) + 1j * rng.normal(size=(size, size // 2 + 1))
    field = np.fft.irfft2(noise * amplitude, s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-12)


def make_terrain(
    rng: np.random.Generator, p: SceneParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dem m, slope deg, aspect deg) of a fractal landscape with flat basins."""
    field = _smooth_field(rng, p.size, rng.uniform(*p.spectral_exponent))
    gy, gx = np.gradient(field, p.cell_m)
    p90 = float(np.percentile(np.hypot(gx, gy), 90))
    dem = field * math.tan(math.radians(rng.uniform(*p.p90_slope_deg))) / p90
    basin = rng.uniform(*p.basin_fraction)
    if basin > 0:
        floor = float(np.quantile(dem, basin))
        dem = np.maximum(dem, floor)
    dem = dem + 1500.0
    slope, aspect = slope_aspect(dem, p.cell_m, p.cell_m)
    return dem, slope, aspect


# --- deformation areas ---------------------------------------------------------------------
def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def _irregular_radius(rng: np.random.Generator, theta: np.ndarray) -> np.ndarray:
    r = np.ones_like(theta)
    for k in (2, 3, 4):
        r += rng.uniform(0.0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r


def _place_landslide(
    rng: np.random.Generator,
    p: SceneParams,
    slope: np.ndarray,
    aspect: np.ndarray,
    taken: np.ndarray,
    los: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, LOS velocity field mm/yr) of one landslide, or None if no site fits."""
    rows, cols = np.nonzero((slope >= 8) & (slope <= 40) & np.isfinite(aspect) & ~taken)
    if rows.size == 0:
        return None
    for _ in range(20):
        k = rng.integers(rows.size)
        r0, c0 = int(rows[k]), int(cols[k])
        a0 = float(aspect[r0, c0])
        beta = math.radians(float(slope[r0, c0]))
        az = math.radians(a0)
        motion = np.array([math.sin(az) * math.cos(beta), math.cos(az) * math.cos(beta),
                           -math.sin(beta)])
        projection = float(motion @ los)
        if abs(projection) < 0.3:
            continue
        length = rng.uniform(*p.landslide_length_m)
        width = length * rng.uniform(0.35, 0.8)
        yy, xx = np.mgrid[0 : p.size, 0 : p.size]
        east = (xx - c0) * p.cell_m
        north = (r0 - yy) * p.cell_m
        along = east * math.sin(az) + north * math.cos(az)
        across = east * math.cos(az) - north * math.sin(az)
        rho = np.hypot(along / (length / 2), across / (width / 2))
        theta = np.arctan2(across, along)
        shape = rho < _irregular_radius(rng, theta)
        face = shape & (slope >= 4) & (_angle_diff(np.nan_to_num(aspect, nan=a0 + 180), a0) < 60)
        labels, _ = ndimage.label(face)
        if labels[r0, c0] == 0:
            continue
        mask = (labels == labels[r0, c0]) & ~taken
        if mask.sum() < p.min_area_cells:
            continue
        # Fast enough that even the slow margin (half the centre speed) beats the threshold.
        speed = max(rng.uniform(*p.landslide_speed_mm_yr),
                    2.4 * p.stability_threshold_mm_yr / abs(projection))
        taper = 1.0 - 0.5 * np.clip(rho, 0, 1) ** 2
        velocity = np.where(mask, speed * projection * taper, 0.0)
        return mask, velocity
    return None


def _place_bowl(
    rng: np.random.Generator,
    p: SceneParams,
    slope: np.ndarray,
    taken: np.ndarray,
    los: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, LOS velocity field mm/yr) of one subsidence (or uplift) bowl, or None."""
    flat = np.argwhere((slope < 10) & ~taken)
    anywhere = np.argwhere(~taken)
    for _ in range(20):
        sites = flat if flat.size and rng.random() < 0.8 else anywhere
        r0, c0 = (int(v) for v in sites[rng.integers(len(sites))])
        radius = rng.uniform(*p.bowl_radius_m)
        minor = radius * rng.uniform(0.5, 1.0)
        rot = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0 : p.size, 0 : p.size]
        east = (xx - c0) * p.cell_m
        north = (r0 - yy) * p.cell_m
        u = east * math.cos(rot) + north * math.sin(rot)
        v = -east * math.sin(rot) + north * math.cos(rot)
        rho2 = (u / radius) ** 2 + (v / minor) ** 2
        sign = 1.0 if rng.random() < p.uplift_share else -1.0
        peak = rng.uniform(*p.bowl_peak_mm_yr)
        wobble = 1.0 + 0.25 * _smooth_field(rng, p.size, 3.0)
        vertical = sign * peak * np.exp(-2.0 * rho2) * np.clip(wobble, 0.5, 1.5)
        velocity = vertical * los[2]
        mask = (np.abs(velocity) >= p.stability_threshold_mm_yr) & ~taken
        labels, _ = ndimage.label(mask)
        if labels[r0, c0] == 0:
            continue
        mask = labels == labels[r0, c0]
        if mask.sum() < p.min_area_cells:
            continue
        return mask, np.where(mask, velocity, np.where(taken, 0.0, velocity))
    return None


# --- the scene ---------------------------------------------------------------------------
def make_scene(
    rng: np.random.Generator, p: SceneParams = DEFAULT_SCENE_PARAMS, *, with_clusters: bool = False
) -> Scene:
    """Generate one scene (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    p : SceneParams
        Generator ranges.
    with_clusters : bool
        Also rasterise the project's clustered ADAs (:func:`pipelines.hotspots.areas.
        cluster_areas`) as a baseline mask (slower; for test sets).

    Returns
    -------
    Scene
    """
    from pipelines.hotspots.gistar import GlobalStats, gi_star
    from pipelines.hotspots.kde import z_weighted_kde

    n, cell = p.size, p.cell_m
    extent = n * cell
    _, slope, aspect = make_terrain(rng, p)
    los = LOS_ASCENDING if rng.random() < 0.5 else LOS_DESCENDING

    taken = np.zeros((n, n), bool)
    instances = np.zeros((n, n), np.uint8)
    velocity = np.zeros((n, n))
    kinds: list[str] = []
    if rng.random() >= p.empty_share:
        todo = ["landslide"] * int(rng.integers(p.landslides[0], p.landslides[1] + 1))
        todo += ["bowl"] * int(rng.integers(p.bowls[0], p.bowls[1] + 1))
        if not todo:
            todo = ["landslide"]
        for kind in rng.permutation(todo):
            placed = (
                _place_landslide(rng, p, slope, aspect, taken, los)
                if kind == "landslide"
                else _place_bowl(rng, p, slope, taken, los)
            )
            if placed is None:
                continue
            mask, field = placed
            velocity += field
            taken |= mask
            kinds.append(str(kind))
            instances[mask] = len(kinds)

    # PS points: none in decorrelated patches or on layover-prone steep slopes.
    area_km2 = (extent / 1000.0) ** 2
    n_points = int(rng.uniform(*p.density_per_km2) * area_km2)
    xy = rng.uniform(0.0, extent, size=(n_points, 2))
    col = np.minimum((xy[:, 0] / cell).astype(int), n - 1)
    row = np.minimum(((extent - xy[:, 1]) / cell).astype(int), n - 1)
    coherence = _smooth_field(rng, n, 3.0)
    lost = coherence > np.quantile(coherence, 1.0 - rng.uniform(*p.decorrelated_fraction))
    keep = ~lost[row, col] & (slope[row, col] <= 45)
    xy, row, col = xy[keep], row[keep], col[keep]
    atmosphere = _smooth_field(rng, n, 3.5) * rng.uniform(*p.atmosphere_mm_yr)
    values = (
        velocity[row, col]
        + atmosphere[row, col]
        + rng.normal(0.0, rng.uniform(*p.noise_mm_yr), size=len(xy))
    )
    outliers = rng.random(len(xy)) < rng.uniform(*p.outlier_share)
    values[outliers] += rng.choice([-1.0, 1.0], outliers.sum()) * rng.uniform(
        20.0, 60.0, outliers.sum()
    )

    gi = gi_star(xy, values, p.gi_distance_m, global_stats=GlobalStats.of(values))
    kde = z_weighted_kde(
        xy, gi.z, radius=p.kde_radius_m, cell_size=cell, bounds=(0.0, 0.0, extent, extent),
        crs="EPSG:32632",
    )
    clustered = _clustered_mask(xy, values, gi, p) if with_clusters else None
    return Scene(
        density=kde.values.astype(np.float32),
        aspect_deg=aspect.astype(np.float32),
        slope_deg=slope.astype(np.float32),
        label=(instances > 0).astype(np.uint8),
        instances=instances,
        kinds=tuple(kinds),
        n_points=len(xy),
        clustered=clustered,
    )


def _clustered_mask(xy: np.ndarray, values: np.ndarray, gi: object, p: SceneParams) -> np.ndarray:
    """The project's clustered ADAs (95 % hot/cold spots, FDR) rasterised on the tile grid."""
    from affine import Affine
    from rasterio.features import rasterize

    from pipelines.hotspots.areas import cluster_areas
    from pipelines.hotspots.gistar import classify_hotspots

    bins = classify_hotspots(gi.z, gi.p, fdr=True)  # type: ignore[attr-defined]
    bins = np.where(np.abs(bins) >= 2, bins, 0).astype(np.int8)
    areas = cluster_areas(
        xy, values, bins, distance=p.gi_distance_m, min_points=5,
        stability_threshold=p.stability_threshold_mm_yr,
    )
    extent = p.size * p.cell_m
    if not areas:
        return np.zeros((p.size, p.size), np.uint8)
    transform = Affine(p.cell_m, 0.0, 0.0, 0.0, -p.cell_m, extent)
    return rasterize(
        [(a.polygon, 1) for a in areas], out_shape=(p.size, p.size), transform=transform,
        fill=0, dtype="uint8",
    )


class SceneSet(NamedTuple):
    """A stack of scenes as arrays (what training and evaluation load)."""

    density: np.ndarray  # (n, H, W) float32
    aspect_deg: np.ndarray  # (n, H, W) float16 (aspect to ~0.1 degree)
    slope_deg: np.ndarray  # (n, H, W) float16
    label: np.ndarray  # (n, H, W) uint8
    instances: np.ndarray  # (n, H, W) uint8
    kinds: np.ndarray  # (n, max areas) uint8: 0 none, 1 landslide, 2 bowl
    clustered: np.ndarray  # (n, H, W) uint8, or shape (0,) without clusters


KIND_CODES = {"landslide": 1, "bowl": 2}


def _one(args: tuple[int, int, SceneParams, bool]) -> Scene:
    seed, index, p, clusters = args
    return make_scene(np.random.default_rng([seed, index]), p, with_clusters=clusters)


def generate_scenes(
    n: int,
    seed: int,
    p: SceneParams = DEFAULT_SCENE_PARAMS,
    *,
    with_clusters: bool = False,
    workers: int = 2,
    progress: bool = True,
    indices: Sequence[int] | None = None,
) -> SceneSet:
    """Generate ``n`` scenes (scene ``i`` from ``default_rng([seed, i])``) into arrays."""
    from multiprocessing import get_context

    from tqdm import tqdm

    idx = list(indices) if indices is not None else list(range(n))
    jobs = [(seed, i, p, with_clusters) for i in idx]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            scenes = list(
                tqdm(pool.imap(_one, jobs, chunksize=4), total=len(jobs), disable=not progress,
                     desc=f"scenes seed {seed}", unit="scene")
            )
    else:
        scenes = [_one(j) for j in tqdm(jobs, disable=not progress, desc=f"scenes seed {seed}")]
    max_kinds = max([len(s.kinds) for s in scenes] + [1])
    kinds = np.zeros((len(scenes), max_kinds), np.uint8)
    for i, s in enumerate(scenes):
        kinds[i, : len(s.kinds)] = [KIND_CODES[k] for k in s.kinds]
    return SceneSet(
        density=np.stack([s.density for s in scenes]),
        aspect_deg=np.stack([s.aspect_deg for s in scenes]).astype(np.float16),
        slope_deg=np.stack([s.slope_deg for s in scenes]).astype(np.float16),
        label=np.stack([s.label for s in scenes]),
        instances=np.stack([s.instances for s in scenes]),
        kinds=kinds,
        clustered=(
            np.stack([s.clustered for s in scenes]) if with_clusters else np.zeros(0, np.uint8)
        ),
    )
