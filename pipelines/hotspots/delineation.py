"""Anomalous deformation areas outlined by the U-Net on the hot spot map (+ terrain).

The clustered areas of :mod:`pipelines.hotspots.areas` come from points; the hot spot
paper's best model instead segments the map: its U-Net reads the z-weighted kernel density
of Gi* z-scores (:func:`pipelines.hotspots.kde.z_weighted_kde`) and terrain aspect, and
says per cell whether it belongs to an anomalous deformation area (ADA). This module is the
pure part around that model (no TensorFlow here; the model is a ``predict`` callable):

1. :func:`tile_windows` cuts the grid into overlapping 256-cell tiles
   (:data:`serving.signatures.DELINEATION_TILE`), :func:`model_inputs` fills the
   signature's inputs from them (NaN = unknown, also for padding and missing terrain);
2. :func:`stitch` blends the per-tile probabilities back into one grid with weights that
   fall towards the tile edges, where the U-Net sees least context, so seams do not show;
3. :func:`mask_to_polygons` outlines the cells above the threshold as polygons in the grid's
   CRS, and :func:`delineate` turns them into :class:`pipelines.hotspots.areas.Area`
   records, so the tracking and payload code of the clustered areas serves them unchanged.

The model was trained on 50 m cells (``hotspots.kde_cell_m``); a grid of another cell size
is not resampled, but its cell size is in the output's attrs so callers can warn.

References
----------
Ronneberger, O., Fischer, P. and Brox, T. (2015), U-Net: Convolutional networks for
biomedical image segmentation, MICCAI 2015, 234-241, doi:10.1007/978-3-319-24574-4_28.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import affine
import numpy as np
import rasterio.features
import rioxarray  # noqa: F401  (registers the .rio accessor used below)
import shapely
import xarray as xr
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape

from pipelines.hotspots.areas import Area, Sign, _order_key
from pipelines.hotspots.terrain import TerrainGrids
from serving.signatures import DELINEATION_SIGNATURE, DELINEATION_TILE, TREND_CLASSES

PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]
"""The model: ``{"hotspot_density", "aspect_deg", "slope_deg"}``, each float32 (n, 256, 256)
with NaN = unknown, to probabilities float32 (n, 256, 256) in [0, 1]."""

INPUT_NAMES: tuple[str, ...] = tuple(DELINEATION_SIGNATURE.input_names())
"""``("hotspot_density", "aspect_deg", "slope_deg")``, the signature's order."""

_WEIGHT_FLOOR = 1e-3
"""Smallest blending weight: a cell covered by one tile edge only still gets its value."""

NO_DEM_NOTE = "no DEM configured: delineated from the hot spot map alone"


@dataclass(frozen=True)
class DelineationParams:
    """Settings of the delineation (config section ``delineation``).

    Attributes
    ----------
    threshold : float, default 0.5
        Probability from which a cell belongs to an area, in (0, 1]; the paper reads its
        sigmoid at 0.5.
    overlap : int, default 32
        Cells shared by neighbouring tiles, 0 <= overlap < 256.
    min_area_m2 : float, default 20000.0
        Polygons (and holes in them) smaller than this are dropped (filled) as noise, m²
        (>= 0); 8 cells of 50 m.
    use_slope : bool, default False
        Send terrain slope to the model; else ``slope_deg`` is NaN (the paper's best model
        uses aspect only).
    simplify_cells : float, default 0.5
        Tolerance of the polygon simplification in cells (>= 0; 0 keeps the cell
        staircase).
    """

    threshold: float = 0.5
    overlap: int = 32
    min_area_m2: float = 20000.0
    use_slope: bool = False
    simplify_cells: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 <= self.overlap < DELINEATION_TILE:
            raise ValueError(
                f"overlap must be in [0, {DELINEATION_TILE}) cells, got {self.overlap}"
            )
        if not (math.isfinite(self.min_area_m2) and self.min_area_m2 >= 0):
            raise ValueError(f"min_area_m2 must be a finite number >= 0, got {self.min_area_m2}")
        if not (math.isfinite(self.simplify_cells) and self.simplify_cells >= 0):
            raise ValueError(f"simplify_cells must be >= 0, got {self.simplify_cells}")

    @classmethod
    def from_config(cls, section: Any) -> DelineationParams:
        """Fields read by name from a config section; a field it lacks keeps its default."""
        return cls(
            **{
                name: getattr(section, name, f.default)
                for name, f in cls.__dataclass_fields__.items()
            }
        )


@dataclass(frozen=True)
class Delineation:
    """What the U-Net found on one hot spot map.

    Attributes
    ----------
    probability : xarray.DataArray, float32, dims (y, x)
        Per-cell probability of belonging to an ADA, [0, 1], NaN where the density is NaN;
        same coords, CRS and transform as the density. Named ``ada_probability``; attrs
        ``long_name``, ``units``, ``threshold``, ``cell_size_m``, ``tile``, ``overlap``,
        ``inputs`` (comma-separated) and ``description``.
    mask : ndarray of bool, shape (ny, nx)
        ``probability >= threshold`` where the density is finite.
    areas : list of Area
        One per polygon kept, ordered like tracked areas (centroid, sign, size).
    inputs : tuple of str
        The signature inputs that carried data: ``("hotspot_density",)``, plus
        ``"aspect_deg"`` and ``"slope_deg"`` when they had any finite cell.
    note : str or None
        Why the terrain inputs are missing or incomplete; None when all requested terrain
        was there.
    """

    probability: xr.DataArray
    mask: np.ndarray
    areas: list[Area]
    inputs: tuple[str, ...]
    note: str | None


def tile_windows(
    shape: tuple[int, int], tile: int = DELINEATION_TILE, overlap: int = 32
) -> list[tuple[int, int]]:
    """Upper-left corners of the tiles that cover a grid.

    Along each axis the tiles start every ``tile - overlap`` cells and the last one is
    moved back to end at the far edge, so no tile runs off a grid of at least ``tile``
    cells and every cell is covered. An axis shorter than ``tile`` gets one tile at 0,
    which :func:`model_inputs` pads.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the grid, each >= 1.
    tile : int, default 256
        Tile side, cells (>= 1).
    overlap : int, default 32
        Cells shared by neighbouring tiles, ``0 <= overlap < tile``; at the far edge the
        overlap is larger.

    Returns
    -------
    list of (row, col)
        Row-major order.

    Examples
    --------
    >>> tile_windows((300, 200), tile=256, overlap=32)
    [(0, 0), (44, 0)]
    """
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile}, {overlap}")

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        return [*range(0, n - tile, tile - overlap), n - tile]

    return [(r, c) for r in starts(ny) for c in starts(nx)]


def model_inputs(
    density: np.ndarray,
    terrain: TerrainGrids | None,
    windows: Sequence[tuple[int, int]],
    *,
    tile: int = DELINEATION_TILE,
    use_slope: bool = False,
) -> dict[str, np.ndarray]:
    """The signature's input tensors for some tiles of the grid.

    Parameters
    ----------
    density : ndarray, shape (ny, nx)
        Hot spot density, 1/km², NaN = outside the data.
    terrain : TerrainGrids or None
        Aspect and slope on the same grid; None: both inputs NaN.
    windows : sequence of (row, col)
        Upper-left corners, e.g. from :func:`tile_windows`.
    tile : int, default 256
        Tile side, cells.
    use_slope : bool, default False
        Fill ``slope_deg`` from ``terrain``; else it is NaN.

    Returns
    -------
    dict of str to ndarray of float32, shape (len(windows), tile, tile)
        Keys ``hotspot_density``, ``aspect_deg``, ``slope_deg``; cells beyond the grid
        (a grid smaller than a tile) are NaN.

    Examples
    --------
    >>> x = model_inputs(np.ones((2, 3)), None, [(0, 0)], tile=4)
    >>> x["hotspot_density"][0]
    array([[ 1.,  1.,  1., nan],
           [ 1.,  1.,  1., nan],
           [nan, nan, nan, nan],
           [nan, nan, nan, nan]], dtype=float32)
    >>> bool(np.isnan(x["aspect_deg"]).all())
    True
    """
    density = np.asarray(density)
    if density.ndim != 2:
        raise ValueError(f"density must be 2-D, got shape {density.shape}")
    grids: dict[str, np.ndarray | None] = {
        "hotspot_density": density,
        "aspect_deg": None,
        "slope_deg": None,
    }
    if terrain is not None:
        for name, grid in (("aspect_deg", terrain.aspect_deg), ("slope_deg", terrain.slope_deg)):
            if np.shape(grid) != density.shape:
                raise ValueError(
                    f"terrain {name} has shape {np.shape(grid)}, the density {density.shape}"
                )
        grids["aspect_deg"] = np.asarray(terrain.aspect_deg)
        if use_slope:
            grids["slope_deg"] = np.asarray(terrain.slope_deg)

    out = {}
    for name in INPUT_NAMES:
        batch = np.full((len(windows), tile, tile), np.nan, dtype=np.float32)
        grid = grids[name]
        if grid is not None:
            for k, (r, c) in enumerate(windows):
                block = grid[r : r + tile, c : c + tile]
                batch[k, : block.shape[0], : block.shape[1]] = block
        out[name] = batch
    return out


def stitch(
    prob_tiles: np.ndarray,
    windows: Sequence[tuple[int, int]],
    shape: tuple[int, int],
    *,
    tile: int = DELINEATION_TILE,
) -> np.ndarray:
    """Blend overlapping tile probabilities into one grid.

    Each cell is the weighted mean of the tiles covering it. The weight is a separable
    tent, largest at the tile centre and falling to ``1/tile`` at its edge (floored at
    1e-3): across an overlap the tiles cross-fade linearly, and a cell's value comes
    mostly from the tile that sees most context around it. Tile values are clipped to
    [0, 1] first; non-finite ones get no weight.

    Parameters
    ----------
    prob_tiles : ndarray, shape (len(windows), tile, tile)
        Model output per window, [0, 1].
    windows : sequence of (row, col)
        The upper-left corners the tiles were cut at.
    shape : tuple of int
        ``(ny, nx)`` of the grid.
    tile : int, default 256
        Tile side, cells.

    Returns
    -------
    ndarray of float32, shape ``shape``
        Probabilities in [0, 1]; NaN where no tile gave a finite value.

    Examples
    --------
    >>> w = tile_windows((5, 7), tile=4, overlap=2)
    >>> p = stitch(np.full((len(w), 4, 4), 0.25), w, (5, 7), tile=4)
    >>> p.shape, bool(np.allclose(p, 0.25))
    ((5, 7), True)
    """
    acc = np.zeros(shape, dtype=np.float64)
    wsum = np.zeros(shape, dtype=np.float64)
    _accumulate(acc, wsum, np.asarray(prob_tiles), windows, tile)
    return _blend(acc, wsum)


def mask_to_polygons(
    mask: np.ndarray,
    transform: affine.Affine,
    *,
    min_area_m2: float,
    simplify: float,
) -> list[Polygon]:
    """Outlines of the connected groups of true cells, in the grid's CRS.

    Cells are grouped by 4-connectivity (edge neighbours): two groups touching at a corner
    only stay apart, as in ``scipy.ndimage.label``'s default; 8-connectivity would join
    them into polygons whose ring touches itself at that corner (invalid for shapely) and
    would merge areas across a one-cell diagonal gap. Holes smaller than ``min_area_m2``
    are filled, polygons smaller than it dropped (both measured before simplification,
    so on whole cells), then each is simplified with ``preserve_topology=True``.

    Parameters
    ----------
    mask : ndarray of bool, shape (ny, nx)
        Cells inside areas.
    transform : affine.Affine
        Grid transform (e.g. ``da.rio.transform()``): cell (row, col) has its upper-left
        corner at ``transform * (col, row)``.
    min_area_m2 : float
        Smallest polygon (and largest hole filled), in squared CRS units (m²).
    simplify : float
        Simplification tolerance in CRS units (m); 0 keeps the cell outlines.

    Returns
    -------
    list of shapely Polygon
        In raster scan order of their first cell.

    Examples
    --------
    >>> m = np.zeros((4, 4), dtype=bool); m[1:3, 1:3] = True
    >>> [p.bounds for p in mask_to_polygons(m, affine.Affine(10, 0, 0, 0, -10, 40),
    ...                                      min_area_m2=0, simplify=0)]
    [(10.0, 10.0, 30.0, 30.0)]
    """
    return [p for p, _ in _labelled_polygons(mask, transform, min_area_m2, simplify)[0]]


def delineate(
    kde: xr.DataArray,
    predict: PredictFn,
    *,
    params: DelineationParams,
    terrain: TerrainGrids | None = None,
    xy: np.ndarray | None = None,
    velocity: np.ndarray | None = None,
    trend_class: np.ndarray | None = None,
    pid: np.ndarray | None = None,
    batch: int = 16,
) -> Delineation:
    """Outline anomalous deformation areas on a hot spot map with the U-Net.

    Tiles the density (:func:`tile_windows`), runs ``predict`` on ``batch`` tiles at a
    time, blends the probabilities (:func:`stitch`), thresholds them and outlines the
    areas (:func:`mask_to_polygons`). Each polygon becomes an :class:`Area`:

    - ``sign``: ``hot`` when the mean density of its cells is >= 0, else ``cold``;
    - the points (``xy``) strictly inside the polygon give ``point_index``, ``n_points``,
      ``pid``, ``centroid`` (their mean position) and, from their finite ``velocity``,
      ``mean_abs_velocity`` / ``max_abs_velocity``, and ``dominant_trend`` (most common
      class in ``TREND_CLASSES``, ties to the lower id);
    - with no point inside (or no ``xy``): ``n_points`` 0, the polygon's centroid;
      velocities are 0.0 when no point inside has a finite ``velocity``.

    Parameters
    ----------
    kde : xarray.DataArray, dims (y, x)
        The hot spot density (:func:`pipelines.hotspots.kde.z_weighted_kde`), 1/km², north
        up, metric CRS and transform written with rioxarray, NaN = outside the data.
    predict : PredictFn
        The model (e.g. a TF-Serving client), see :data:`PredictFn`.
    params : DelineationParams
        Threshold, overlap, minimum area, slope use and simplification.
    terrain : TerrainGrids, optional
        Aspect and slope on the same grid (:func:`pipelines.hotspots.terrain.
        terrain_on_grid`); None: the model sees the hot spot map alone.
    xy : ndarray of float, shape (n, 2), optional
        Point coordinates in the CRS of ``kde``, m.
    velocity : ndarray of float, shape (n,), optional
        LOS velocity per point, mm/yr; NaN ignored.
    trend_class : ndarray of int, shape (n,), optional
        Trend class id per point (negative = unclassified).
    pid : ndarray, shape (n,), optional
        Point ids, copied into each area.
    batch : int, default 16
        Tiles per ``predict`` call (>= 1).

    Returns
    -------
    Delineation
        Probability grid, mask, areas, the inputs that carried data and a note.

    Raises
    ------
    ValueError
        On a density that is not 2-D, not north up or all NaN, terrain or point arrays of
        the wrong shape, a model answer of the wrong shape, or ``batch < 1``.
    """
    if kde.ndim != 2:
        raise ValueError(f"kde must be 2-D (y, x), got dims {kde.dims}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    density = np.asarray(kde.values, dtype=np.float64)
    finite = np.isfinite(density)
    if not finite.any():
        raise ValueError("the hot spot density is NaN everywhere: nothing to delineate")
    transform = kde.rio.transform()
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ValueError(f"kde must be north up without rotation, got {transform!r}")
    cell = abs(transform.a)
    points = _points(xy, velocity, trend_class, pid)

    tile = DELINEATION_TILE
    windows = tile_windows(density.shape, tile, params.overlap)
    acc = np.zeros(density.shape, dtype=np.float64)
    wsum = np.zeros(density.shape, dtype=np.float64)
    carried = dict.fromkeys(INPUT_NAMES, False)
    for start in range(0, len(windows), batch):
        part = windows[start : start + batch]
        inputs = model_inputs(density, terrain, part, tile=tile, use_slope=params.use_slope)
        for name, arr in inputs.items():
            carried[name] = carried[name] or bool(np.isfinite(arr).any())
        out = np.asarray(predict(inputs), dtype=np.float64)
        if out.shape != (len(part), tile, tile):
            raise ValueError(
                f"the model returned shape {out.shape}, expected {(len(part), tile, tile)}"
            )
        _accumulate(acc, wsum, out, part, tile)
    prob = _blend(acc, wsum)
    prob[~finite] = np.nan
    mask = finite & (np.nan_to_num(prob, nan=-1.0) >= params.threshold)

    labelled, labels = _labelled_polygons(
        mask, transform, params.min_area_m2, params.simplify_cells * cell
    )
    # Mean density of each group's cells gives the sign.
    sums = np.bincount(labels.ravel(), weights=np.where(mask, density, 0.0).ravel())
    counts = np.bincount(labels.ravel())
    areas = [
        _area(polygon, "hot" if sums[lab] / counts[lab] >= 0 else "cold", points)
        for polygon, lab in labelled
    ]
    areas.sort(key=_order_key)

    inputs_used = tuple(name for name in INPUT_NAMES if carried[name])
    probability = _probability_array(kde, prob, transform, params, inputs_used)
    return Delineation(probability, mask, areas, inputs_used, _note(terrain, finite))


# --- helpers ------------------------------------------------------------------------------


def _weights(tile: int) -> np.ndarray:
    """Separable tent over a tile, shape (tile, tile): 1 at the centre, 1/tile at an edge."""
    i = np.arange(tile) + 0.5
    tent = np.maximum(np.minimum(i, tile - i) / (0.5 * tile), _WEIGHT_FLOOR)
    return np.outer(tent, tent)


def _accumulate(
    acc: np.ndarray,
    wsum: np.ndarray,
    tiles: np.ndarray,
    windows: Sequence[tuple[int, int]],
    tile: int,
) -> None:
    """Add weighted tiles into the running sums ``acc`` and ``wsum`` (in place)."""
    if tiles.shape != (len(windows), tile, tile):
        raise ValueError(
            f"prob_tiles must have shape {(len(windows), tile, tile)}, got {tiles.shape}"
        )
    weights = _weights(tile)
    ny, nx = acc.shape
    for k, (r, c) in enumerate(windows):
        h, w = min(tile, ny - r), min(tile, nx - c)
        if r < 0 or c < 0 or h < 1 or w < 1:
            raise ValueError(f"window ({r}, {c}) lies outside the grid {acc.shape}")
        p = np.clip(tiles[k, :h, :w], 0.0, 1.0)  # NaN stays NaN
        ok = np.isfinite(p)
        wk = np.where(ok, weights[:h, :w], 0.0)
        acc[r : r + h, c : c + w] += wk * np.where(ok, p, 0.0)
        wsum[r : r + h, c : c + w] += wk


def _blend(acc: np.ndarray, wsum: np.ndarray) -> np.ndarray:
    """Weighted mean, clipped to [0, 1], NaN where nothing was added; float32."""
    out = np.full(acc.shape, np.nan, dtype=np.float64)
    np.divide(acc, wsum, out=out, where=wsum > 0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _labelled_polygons(
    mask: np.ndarray, transform: affine.Affine, min_area_m2: float, simplify: float
) -> tuple[list[tuple[Polygon, int]], np.ndarray]:
    """Polygons of the 4-connected groups of ``mask`` with their label, and the label grid."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not (math.isfinite(min_area_m2) and min_area_m2 >= 0):
        raise ValueError(f"min_area_m2 must be >= 0, got {min_area_m2}")
    if not (math.isfinite(simplify) and simplify >= 0):
        raise ValueError(f"simplify must be >= 0, got {simplify}")
    labels, n = ndimage.label(mask)  # default structure: 4-connectivity
    if n == 0:
        return [], labels
    pieces: dict[int, list[Polygon]] = {}
    for geom, value in rasterio.features.shapes(
        labels.astype(np.int32), mask=mask, connectivity=4, transform=transform
    ):
        pieces.setdefault(int(value), []).append(shape(geom))
    out = []
    for lab in sorted(pieces):
        merged = shapely.union_all(pieces[lab])  # one piece per label with 4-connectivity
        parts = [
            Polygon(p.exterior, [h for h in p.interiors if Polygon(h).area >= min_area_m2])
            for p in getattr(merged, "geoms", [merged])
            if p.area >= min_area_m2
        ]
        for part in parts:
            simple = shapely.simplify(part, simplify, preserve_topology=True) if simplify else part
            out.append((simple, lab))
    return out, labels


@dataclass(frozen=True)
class _Points:
    """Validated point arrays for :func:`_area`."""

    xy: np.ndarray
    velocity: np.ndarray | None
    trend_class: np.ndarray | None
    pid: np.ndarray | None


def _points(
    xy: np.ndarray | None,
    velocity: np.ndarray | None,
    trend_class: np.ndarray | None,
    pid: np.ndarray | None,
) -> _Points | None:
    """The point arrays, checked for matching shapes; None without ``xy``."""
    if xy is None:
        return None
    coords = np.asarray(xy, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {coords.shape}")
    n = coords.shape[0]

    def per_point(values: np.ndarray | None, name: str) -> np.ndarray | None:
        if values is None:
            return None
        arr = np.asarray(values)
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
        return arr

    vel = per_point(velocity, "velocity")
    trend = per_point(trend_class, "trend_class")
    return _Points(
        xy=coords,
        velocity=None if vel is None else vel.astype(np.float64),
        trend_class=None if trend is None else trend.astype(np.int64),
        pid=per_point(pid, "pid"),
    )


def _area(polygon: Polygon | MultiPolygon, sign: Sign, points: _Points | None) -> Area:
    """The Area record of one polygon from the points strictly inside it."""
    if points is None:
        members = np.empty(0, dtype=np.int64)
    else:
        x, y = points.xy[:, 0], points.xy[:, 1]
        xmin, ymin, xmax, ymax = polygon.bounds
        near = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
        shapely.prepare(polygon)
        members = near[shapely.contains_xy(polygon, x[near], y[near])].astype(np.int64)

    mean_v = max_v = 0.0
    dominant = None
    if members.size and points is not None:
        if points.velocity is not None:
            speed = np.abs(points.velocity[members])
            speed = speed[np.isfinite(speed)]
            if speed.size:
                mean_v, max_v = float(speed.mean()), float(speed.max())
        if points.trend_class is not None:
            classes = points.trend_class[members]
            classes = classes[(classes >= 0) & (classes < len(TREND_CLASSES))]
            if classes.size:
                dominant = TREND_CLASSES[int(np.bincount(classes).argmax())]
        pts = points.xy[members]
        centroid = (float(pts[:, 0].mean()), float(pts[:, 1].mean()))
    else:
        c = polygon.centroid
        centroid = (float(c.x), float(c.y))
    return Area(
        polygon=polygon,
        sign=sign,
        n_points=int(members.size),
        area_m2=float(polygon.area),
        mean_abs_velocity=mean_v,
        max_abs_velocity=max_v,
        dominant_trend=dominant,
        point_index=members,
        centroid=centroid,
        pid=None if points is None or points.pid is None else points.pid[members],
    )


def _probability_array(
    kde: xr.DataArray,
    prob: np.ndarray,
    transform: affine.Affine,
    params: DelineationParams,
    inputs: tuple[str, ...],
) -> xr.DataArray:
    """The probability grid on the density's coords, CRS and transform, with its attrs."""
    cell = float(kde.attrs.get("cell_size_m", abs(transform.a)))
    da = xr.DataArray(
        prob,
        dims=kde.dims,
        coords={d: kde.coords[d] for d in kde.dims if d in kde.coords},
        name="ada_probability",
        attrs={
            "long_name": "probability of belonging to an anomalous deformation area",
            "units": "1",
            "threshold": float(params.threshold),
            "cell_size_m": cell,
            "tile": DELINEATION_TILE,
            "overlap": int(params.overlap),
            "inputs": ",".join(inputs),
            "description": (
                "U-Net on the z-weighted kernel density of Gi* z-scores"
                + (" and terrain" if len(inputs) > 1 else "")
                + "; overlapping tiles blended with tent weights; NaN outside the data"
            ),
        },
    )
    return da.rio.write_crs(kde.rio.crs).rio.write_transform(transform)


def _note(terrain: TerrainGrids | None, finite: np.ndarray) -> str | None:
    """Why the terrain inputs are missing or partial, or None.

    Coverage is judged on the slope, which is NaN only outside the DEM (aspect is also NaN
    on flat ground, which is information, not a gap).
    """
    if terrain is None:
        return NO_DEM_NOTE
    covered = np.isfinite(terrain.slope_deg) & finite
    share = covered.sum() / max(int(finite.sum()), 1)
    if share == 0:
        return (
            f"DEM {terrain.source} does not cover the grid: delineated from the hot spot map alone"
        )
    if not np.isfinite(terrain.aspect_deg[covered]).any():
        return f"terrain of DEM {terrain.source} is flat everywhere: no aspect for the model"
    if share < 1:
        return (
            f"DEM {terrain.source} covers {share:.0%} of the grid: terrain unknown (NaN) elsewhere"
        )
    return None
