"""Tile-by-tile Getis-Ord Gi* that equals the whole-area computation (pure).

A PS dataset is updated a few store tiles at a time; recomputing Gi* for every point after
each update wastes most of the work. Gi* of a point depends only on (a) the values of the
points within the distance band and (b) the dataset-wide ``n``, mean and standard
deviation. So for a tile of a regular metric grid, Gi* of its points computed from the
tile's points plus a *halo* (every other point within the band of the tile's bounding box)
with the *global* statistics is the whole-area Gi* of those points, up to the order of
floating-point additions. This module cuts points into such tiles, finds halos, and runs
:func:`pipelines.hotspots.gistar.gi_star` per tile.

Tile ids are integers that pack the grid's column and row (see :func:`tile_ids`); the grid
is anchored at the CRS origin, so a point keeps its tile id from one computation to the
next as long as the CRS and tile size stay the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.spatial import cKDTree

from pipelines.hotspots.gistar import (
    DEFAULT_CHUNK_SIZE,
    GiStarResult,
    GlobalStats,
    _as_xy,
    _checked_inputs,
    gi_star,
)

# Column and row indices are offset by this and packed as ``col << 31 | row`` into an
# int64, which holds any index in [-2**30, 2**30): 1e9 tiles either way of the origin.
_INDEX_OFFSET = 1 << 30
_ROW_BITS = 31

# Halo boxes are widened by this relative margin so rounding never loses a point exactly at
# the band's edge; extra halo points are harmless (gi_star applies the exact test).
_HALO_MARGIN = 1e-9


def tile_ids(xy: np.ndarray, tile_size: float) -> np.ndarray:
    """Id of the ``tile_size`` x ``tile_size`` grid cell holding each point.

    Cell ``(col, row) = (floor(x / tile_size), floor(y / tile_size))`` of a grid anchored at
    the CRS origin; the id is ``(col + 2**30) << 31 | (row + 2**30)``
    (decode with :func:`tile_index`).

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Metric coordinates, metres.
    tile_size : float
        Side of a tile, metres (> 0).

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> ids = tile_ids(np.array([[10.0, 10.0], [990.0, 20.0], [1010.0, -5.0]]), 1000.0)
    >>> [tile_index(i) for i in ids]
    [(0, 0), (0, 0), (1, -1)]
    """
    points = _as_xy(xy)
    if not (np.isfinite(tile_size) and tile_size > 0):
        raise ValueError(f"tile_size must be a positive number of metres, got {tile_size}")
    cells = np.floor(points / tile_size)
    if cells.size and np.abs(cells).max() >= _INDEX_OFFSET:
        raise ValueError(f"coordinates too far from the origin for tile_size {tile_size}")
    packed = cells.astype(np.int64) + _INDEX_OFFSET
    return (packed[:, 0] << _ROW_BITS) | packed[:, 1]


def tile_index(tile_id: int) -> tuple[int, int]:
    """``(col, row)`` of a tile id made by :func:`tile_ids`."""
    tile_id = int(tile_id)
    col = (tile_id >> _ROW_BITS) - _INDEX_OFFSET
    row = (tile_id & ((1 << _ROW_BITS) - 1)) - _INDEX_OFFSET
    return col, row


def tile_bounds(tile_id: int, tile_size: float) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a tile, metres."""
    col, row = tile_index(tile_id)
    return col * tile_size, row * tile_size, (col + 1) * tile_size, (row + 1) * tile_size


def halo_indices(
    xy: np.ndarray,
    tile_mask: np.ndarray,
    distance: float,
    *,
    tree: cKDTree | None = None,
) -> np.ndarray:
    """Points outside a tile within ``distance`` of the bounding box of the tile's points.

    Every point within ``distance`` of any point of the tile is in the halo (the box
    contains the tile's points), so the tile plus its halo hold every neighbour of every
    tile point in a distance band of ``distance``.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Metric coordinates of all points, metres.
    tile_mask : ndarray of bool, shape (n,)
        True for the points of the tile.
    distance : float
        Halo width, metres (>= the Gi* distance band).
    tree : cKDTree, optional
        A tree of ``xy`` to reuse across tiles; without it all points are scanned.

    Returns
    -------
    ndarray of int64
        Indices of the halo points, ascending; empty for an empty tile.
    """
    points = _as_xy(xy)
    mask = np.asarray(tile_mask, dtype=bool)
    if mask.shape != (points.shape[0],):
        raise ValueError(f"tile_mask must have shape ({points.shape[0]},), got {mask.shape}")
    if not (np.isfinite(distance) and distance >= 0):
        raise ValueError(f"distance must be >= 0 metres, got {distance}")
    return _halo(points, np.flatnonzero(mask), mask, float(distance), tree)


def _halo(
    points: np.ndarray,
    members: np.ndarray,
    member_mask: np.ndarray,
    distance: float,
    tree: cKDTree | None,
) -> np.ndarray:
    if members.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo = points[members].min(axis=0)
    hi = points[members].max(axis=0)
    reach = distance * (1.0 + _HALO_MARGIN) + _HALO_MARGIN
    if tree is None:
        candidates = np.arange(points.shape[0])
    else:
        # A disc around the box centre that contains box + halo; then the exact box test.
        centre = (lo + hi) / 2.0
        radius = float(np.hypot(*(hi - lo)) / 2.0 + reach)
        candidates = np.asarray(tree.query_ball_point(centre, radius), dtype=np.int64)
    gap = np.maximum(np.maximum(lo - points[candidates], points[candidates] - hi), 0.0)
    near = np.hypot(gap[:, 0], gap[:, 1]) <= reach
    halo = candidates[near & ~member_mask[candidates]]
    return np.sort(halo).astype(np.int64, copy=False)


def gi_star_tiled(
    xy: np.ndarray,
    values: np.ndarray,
    distance: float,
    *,
    tile_size: float,
    tiles: Iterable[int] | None = None,
    global_stats: GlobalStats | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> GiStarResult:
    """Gi* computed tile by tile, equal to :func:`~pipelines.hotspots.gistar.gi_star`.

    For each tile of the ``tile_size`` grid (:func:`tile_ids`), Gi* of its points is
    computed with neighbours from the tile and its halo (:func:`halo_indices`, width
    ``distance``) and the statistics of *all* points (or ``global_stats``). The result
    equals the whole-area ``gi_star(xy, values, distance)`` to rounding (~1e-15), for any
    tile size, including tiles smaller than the band (then the halo spans several tiles;
    correct, but per-tile overhead makes tiles of several times the band faster).

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Metric coordinates of all points, metres.
    values : ndarray, shape (n,)
        Value per point (e.g. mm/yr), finite.
    distance : float
        Gi* distance band, metres.
    tile_size : float
        Side of a tile, metres.
    tiles : iterable of int, optional
        Only compute the points of these tile ids (e.g. the tiles an update touched).
        Ids without points are ignored. Default: all tiles.
    global_stats : GlobalStats, optional
        Statistics to compare with; default ``GlobalStats.of(values)``.
    chunk_size : int
        Passed to ``gi_star`` for each tile.

    Returns
    -------
    GiStarResult
        For all points in input order, or with ``tiles``, for the points of those tiles in
        ascending index order (``index`` says which).
    """
    points, v = _checked_inputs(xy, values, distance)
    n = points.shape[0]
    stats = GlobalStats.of(v) if global_stats is None else global_stats
    ids = tile_ids(points, tile_size)

    if tiles is None:
        wanted = np.ones(n, dtype=bool)
    else:
        wanted = np.isin(ids, np.fromiter((int(t) for t in tiles), dtype=np.int64))
    index = np.flatnonzero(wanted).astype(np.int64)
    # Scatter each tile's result to its points' rows of the output (rows follow ``index``).
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[index] = np.arange(index.size)
    z = np.zeros(index.size)
    p = np.ones(index.size)
    counts = np.zeros(index.size, dtype=np.int64)
    if index.size == 0:
        return GiStarResult(index=index, z=z, p=p, n_neighbours=counts)

    by_tile = index[np.argsort(ids[index], kind="stable")]
    starts = np.flatnonzero(np.r_[True, ids[by_tile][1:] != ids[by_tile][:-1]])
    ends = np.r_[starts[1:], by_tile.size]
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    member_mask = np.zeros(n, dtype=bool)
    for start, end in zip(starts, ends, strict=True):
        members = by_tile[start:end]
        member_mask[members] = True
        halo = _halo(points, members, member_mask, float(distance), tree)
        member_mask[members] = False
        local = np.concatenate([members, halo])
        part = gi_star(
            points[local], v[local], distance,
            targets=np.arange(members.size), global_stats=stats, chunk_size=chunk_size,
        )
        rows = row_of[members]
        z[rows] = part.z
        p[rows] = part.p
        counts[rows] = part.n_neighbours
    return GiStarResult(index=index, z=z, p=p, n_neighbours=counts)
