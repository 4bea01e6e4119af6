"""Getis-Ord Gi* hot spot statistic for point clouds, with FDR and confidence bins (pure).

This module turns PS/CT points in a metric CRS and their velocities (mm/yr) into local
Gi* z-scores with binary weights inside a distance band, the star form (each point is its
own neighbour), as in the hot-spot step of the U-Net delineation paper (its eq. 1, with
``d = 150 m``). It is written for *signed* line-of-sight velocities: a positive z is
always a cluster of high values (motion towards the satellite), a negative z a cluster of
low values (e.g. subsidence), whatever the sign of the mean. PySAL's ``esda.G_Local``
writes G as a ratio to ``sum(y)`` and so flips the sign of every z when the mean is
negative (pysal/esda#112); the form used here never divides by the mean.

Neighbour sums come from :class:`scipy.spatial.cKDTree`, target points are processed in
spatially compact chunks so memory stays bounded (a few hundred MB for 1M points), and the
global mean and standard deviation can be passed in, which is what makes tile-by-tile
computation (:mod:`pipelines.hotspots.tiled`) exact.

References
----------
Ord, J. K. and Getis, A. (1995). Local spatial autocorrelation statistics: distributional
issues and an application. *Geographical Analysis* 27(4), 286-306.
https://doi.org/10.1111/j.1538-4632.1995.tb00912.x

Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate: a practical and
powerful approach to multiple testing. *J. R. Stat. Soc. B* 57(1), 289-300.
https://doi.org/10.1111/j.2517-6161.1995.tb02031.x
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtr

DEFAULT_DISTANCE_M = 150.0
"""Distance band of the paper, metres (scale of its historical landslides)."""

DEFAULT_CHUNK_SIZE = 200_000
"""Target points per chunk: ~3M neighbour pairs at paper densities, ~50 MB of indices."""

# A chunk whose targets are at least this share of the points in its search box is done by
# enumerating all pairs in the box (each pair once); sparser chunks ask the whole-set tree
# for the targets' neighbours only, which does not pay for pairs among non-targets.
_DENSE_SHARE = 0.5

# The search box around a chunk is widened by this relative margin so that no point exactly
# at the band's edge is lost to rounding; the tree applies the exact d <= distance test.
_BOX_MARGIN = 1e-9


@dataclass(frozen=True)
class GlobalStats:
    """Mean and standard deviation of all values that Gi* compares each neighbourhood with.

    Attributes
    ----------
    n : int
        Number of points in the whole set (the ``n`` of the Gi* formula).
    mean : float
        Mean of the values, in their unit (e.g. mm/yr).
    std : float
        Population standard deviation (divisor ``n``), same unit as ``mean``.
    """

    n: int
    mean: float
    std: float

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"GlobalStats needs n >= 1, got {self.n}")
        if not (np.isfinite(self.mean) and np.isfinite(self.std)) or self.std < 0:
            raise ValueError(f"GlobalStats needs a finite mean and std >= 0, got {self}")

    @classmethod
    def of(cls, values: np.ndarray) -> GlobalStats:
        """Statistics of ``values`` (1-D, finite).

        The standard deviation is computed in two passes (``numpy.std``), which equals the
        paper's ``sqrt(sum(x**2) / n - mean**2)`` without its cancellation for values far
        from zero.
        """
        v = _as_values(values)
        if v.size == 0:
            raise ValueError("GlobalStats.of needs at least one value")
        # Equal values have S = 0 exactly; numpy's mean of them may be off by an ulp, which
        # would leave S ~ 1e-16 and turn rounding noise into z-scores.
        std = 0.0 if v.min() == v.max() else float(v.std())
        return cls(n=int(v.size), mean=float(v.mean()), std=std)


@dataclass(frozen=True)
class GiStarResult:
    """Gi* of a set of target points.

    Attributes
    ----------
    index : ndarray of int64, shape (m,)
        Index of each row's point in the input arrays.
    z : ndarray of float64, shape (m,)
        Gi* z-score; positive = cluster of high values, negative = cluster of low values.
    p : ndarray of float64, shape (m,)
        Two-sided p-value of ``z`` under the normal approximation, ``2 * Phi(-|z|)``.
    n_neighbours : ndarray of int64, shape (m,)
        ``W_i``: points within the distance band, the point itself included.
    """

    index: np.ndarray
    z: np.ndarray
    p: np.ndarray
    n_neighbours: np.ndarray

    def __len__(self) -> int:
        return int(self.z.size)


def gi_star(
    xy: np.ndarray,
    values: np.ndarray,
    distance: float = DEFAULT_DISTANCE_M,
    *,
    targets: np.ndarray | None = None,
    global_stats: GlobalStats | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> GiStarResult:
    r"""Getis-Ord Gi* with binary distance-band weights (star form), analytical inference.

    For each target point ``i``, with ``w_ij = 1`` when ``|x_i - x_j| <= distance`` (the point
    itself included, ``w_ii = 1``) and 0 otherwise (Ord & Getis 1995, eq. 1 of the paper):

    .. math::

        z_i = \frac{\sum_j w_{ij} x_j - \bar{x} W_i}
                   {S \sqrt{(n S_{1i} - W_i^2) / (n - 1)}},
        \qquad W_i = \sum_j w_{ij},\quad S_{1i} = \sum_j w_{ij}^2 = W_i,

    where ``n``, ``xbar`` and ``S = sqrt(sum(x**2)/n - xbar**2)`` are taken over all points
    (or from ``global_stats``). The numerator is evaluated as ``sum_j w_ij (x_j - xbar)``,
    which is the same number with less cancellation. Nothing is divided by the mean, so
    the sign of z is right for signed data (unlike ``esda.G_Local``, pysal/esda#112), and z
    is unchanged by adding a constant to, or multiplying by a positive constant, all values.

    The paper's text says ``w_ij`` is 0 "for other CTs including the CT i itself"; that is
    the Gi (not Gi*) convention. ArcGIS's tool, which the paper used, and this function
    include the point itself.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Point coordinates in a metric CRS, metres (see :mod:`pipelines.hotspots.projection`).
    values : ndarray, shape (n,)
        Value per point, e.g. LOS velocity in mm/yr (any sign). NaN or inf is rejected:
        filter the points first.
    distance : float, default 150.0
        Distance band, metres; neighbours satisfy ``distance_ij <= distance``. Coincident
        points are neighbours of each other (libpysal's ``DistanceBand`` drops them).
    targets : ndarray of int, shape (m,), optional
        Indices of the points to compute z for (any order, repeats allowed); neighbours are
        still taken among all ``n`` points. Default: every point, in input order.
    global_stats : GlobalStats, optional
        ``n``, mean and standard deviation to use instead of those of ``values``. Passing the
        statistics of a larger set makes the z of a tile (computed with its halo) equal to
        the z of the whole-area computation.
    chunk_size : int, default 200_000
        Target points handled at once; bounds the memory of the neighbour pairs.

    Returns
    -------
    GiStarResult
        ``index``, ``z``, two-sided ``p`` and ``n_neighbours`` (``W_i``) per target.
        Where the denominator is 0 (``S == 0``, or ``W_i == n``: every point is a
        neighbour, so the neighbourhood cannot differ from the whole), ``z = 0`` and
        ``p = 1``.

    Raises
    ------
    ValueError
        On shapes that do not match, non-finite coordinates or values, a non-positive
        distance or chunk size, or target indices out of range.

    References
    ----------
    Ord, J. K. and Getis, A. (1995), *Geographical Analysis* 27(4), 286-306,
    https://doi.org/10.1111/j.1538-4632.1995.tb00912.x

    Examples
    --------
    >>> xy = np.array([[0.0, 0.0], [100.0, 0.0], [1000.0, 0.0], [1100.0, 0.0], [5000.0, 0.0]])
    >>> r = gi_star(xy, np.array([-30.0, -25.0, 1.0, 2.0, 0.5]), 150.0)
    >>> np.round(r.z, 3)
    array([-1.986, -1.986,  1.363,  1.363,  0.764])
    >>> r.n_neighbours
    array([2, 2, 2, 2, 1])
    """
    xy, v = _checked_inputs(xy, values, distance)
    n = xy.shape[0]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    stats = GlobalStats.of(v) if global_stats is None else global_stats
    if targets is None:
        wanted = np.arange(n, dtype=np.int64)
    else:
        wanted = np.asarray(targets)
        if wanted.ndim != 1 or not (wanted.size == 0 or np.issubdtype(wanted.dtype, np.integer)):
            raise ValueError("targets must be a 1-D array of integer point indices")
        wanted = wanted.astype(np.int64, copy=False)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= n):
            raise ValueError(f"targets must lie in [0, {n}), got [{wanted.min()}, {wanted.max()}]")

    unique, inverse = np.unique(wanted, return_inverse=True)
    sums, counts = _neighbour_sums(xy, v - stats.mean, unique, float(distance), chunk_size)
    z, p = _z_and_p(sums, counts, stats)
    return GiStarResult(
        index=wanted.copy(), z=z[inverse], p=p[inverse], n_neighbours=counts[inverse]
    )


def _z_and_p(
    sums: np.ndarray, counts: np.ndarray, stats: GlobalStats
) -> tuple[np.ndarray, np.ndarray]:
    """z and two-sided p from centred neighbour sums and neighbour counts W_i."""
    n = float(stats.n)
    w = counts.astype(np.float64)
    # n*S1 - W^2 with S1 = W (binary weights) is W*(n - W) >= 0; it is 0 when W == n.
    spread = np.divide(w * (n - w), n - 1.0, out=np.zeros_like(w), where=n > 1.0)
    denominator = stats.std * np.sqrt(spread)
    ok = denominator > 0
    z = np.zeros_like(w)
    np.divide(sums, denominator, out=z, where=ok)
    p = 2.0 * ndtr(-np.abs(z))
    p[~ok] = 1.0
    return z, p


def _neighbour_sums(
    xy: np.ndarray, centred: np.ndarray, targets: np.ndarray, distance: float, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_j w_ij centred_j`` and ``W_i`` for sorted unique ``targets``.

    Targets are ordered by x and cut into chunks of ``chunk_size``: each chunk is then a
    strip, and only the points in its bounding box widened by ``distance`` can be its
    neighbours. Those are found by binary search in the x-sorted points plus a y test.
    """
    n = xy.shape[0]
    m = targets.size
    sums = np.zeros(m)
    counts = np.zeros(m, dtype=np.int64)
    if m == 0:
        return sums, counts
    by_x = np.argsort(xy[:, 0], kind="stable")
    xs = xy[by_x, 0]
    rank = np.empty(n, dtype=np.int64)
    rank[by_x] = np.arange(n)
    # Slots of the targets in x order: results are written back through these.
    slots = np.argsort(xy[targets, 0], kind="stable")
    pad = distance * (1.0 + _BOX_MARGIN)
    whole_tree: cKDTree | None = None
    for start in range(0, m, chunk_size):
        chunk_slots = slots[start : start + chunk_size]
        chunk = targets[chunk_slots]
        cx, cy = xy[chunk, 0], xy[chunk, 1]
        lo = int(np.searchsorted(xs, cx.min() - pad, side="left"))
        hi = int(np.searchsorted(xs, cx.max() + pad, side="right"))
        strip = by_x[lo:hi]
        strip_y = xy[strip, 1]
        in_box = (strip_y >= cy.min() - pad) & (strip_y <= cy.max() + pad)
        n_box = int(in_box.sum())
        if chunk.size >= _DENSE_SHARE * n_box:
            box = strip[in_box]
            # Position of each target among the box's points (targets are always in it).
            position = (np.cumsum(in_box) - 1)[rank[chunk] - lo]
            s, c = _pair_sums(xy[box], centred[box], distance)
            sums[chunk_slots] = s[position]
            counts[chunk_slots] = c[position]
        else:
            if whole_tree is None:
                whole_tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
            s, c = _query_sums(xy[chunk], whole_tree, centred, distance)
            sums[chunk_slots] = s
            counts[chunk_slots] = c
    return sums, counts


def _pair_sums(
    xy: np.ndarray, centred: np.ndarray, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour sums and counts of every point of a small set, from its pairs (each once)."""
    k = xy.shape[0]
    # An unbalanced tree without node shrinking builds ~2x faster and queries as fast here.
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(distance, output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    sums = centred.copy()  # w_ii = 1
    # (bincount of no pairs returns int zeros; adding into a float array keeps float64.)
    sums += np.bincount(a, weights=centred[b], minlength=k)
    sums += np.bincount(b, weights=centred[a], minlength=k)
    counts = np.bincount(a, minlength=k) + np.bincount(b, minlength=k) + 1
    return sums, counts.astype(np.int64)


def _query_sums(
    target_xy: np.ndarray, whole_tree: cKDTree, centred: np.ndarray, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour sums and counts of a few targets, from the tree of all points."""
    k = target_xy.shape[0]
    tree = cKDTree(target_xy, balanced_tree=False, compact_nodes=False)
    # Zero distances are kept, so each target meets itself (w_ii = 1).
    hits = tree.sparse_distance_matrix(whole_tree, distance, output_type="ndarray")
    i, j = hits["i"], hits["j"]
    sums = np.zeros(k)
    sums += np.bincount(i, weights=centred[j], minlength=k)
    counts = np.bincount(i, minlength=k).astype(np.int64)
    return sums, counts


def fdr_adjusted_p(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), same shape as ``p``.

    ``q_(k) = min_{j >= k} min(1, m p_(j) / j)`` for the p-values sorted ascending,
    ``m = p.size``. A test is significant at FDR level ``alpha`` exactly when its
    ``q <= alpha``.

    Parameters
    ----------
    p : ndarray
        p-values in [0, 1], any shape; NaN is rejected.

    Returns
    -------
    ndarray of float64
        q-values, same shape as ``p``; monotone in ``p``.

    References
    ----------
    Benjamini & Hochberg (1995), https://doi.org/10.1111/j.2517-6161.1995.tb02031.x

    Examples
    --------
    >>> fdr_adjusted_p(np.array([0.03, 0.01, 0.02, 0.2]))
    array([0.04, 0.04, 0.04, 0.2 ])
    """
    flat = _as_p(p)
    m = flat.size
    if m == 0:
        return flat.reshape(np.shape(p))
    order = np.argsort(flat, kind="stable")
    scaled = flat[order] * m / np.arange(1, m + 1)
    # Step-up: each q is the smallest scaled p at its rank or above.
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q.reshape(np.shape(p))


def benjamini_hochberg(p: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Which tests are significant with the false discovery rate controlled at ``alpha``.

    The step-up procedure: sort the ``m`` p-values ascending, find the largest ``k`` with
    ``p_(k) <= k * alpha / m`` and reject the hypotheses of ``p_(1) ... p_(k)`` (also those
    whose own ``p_(j)`` exceeds ``j * alpha / m`` for some ``j < k``).

    Parameters
    ----------
    p : ndarray
        p-values in [0, 1], any shape; NaN is rejected.
    alpha : float, default 0.05
        FDR level in (0, 1).

    Returns
    -------
    ndarray of bool
        True where significant, same shape as ``p``; monotone: every p-value smaller than a
        significant one is significant.

    References
    ----------
    Benjamini & Hochberg (1995), https://doi.org/10.1111/j.2517-6161.1995.tb02031.x

    Examples
    --------
    >>> benjamini_hochberg(np.array([0.001, 0.012, 0.014, 0.035, 0.9, 0.041]))
    array([ True,  True,  True,  True, False,  True])
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    flat = _as_p(p)
    m = flat.size
    significant = np.zeros(m, dtype=bool)
    if m:
        order = np.argsort(flat, kind="stable")
        below = flat[order] <= np.arange(1, m + 1) * (alpha / m)
        if below.any():
            k = int(np.flatnonzero(below)[-1]) + 1
            significant[order[:k]] = True
    return significant.reshape(np.shape(p))


def classify_hotspots(
    z: np.ndarray,
    p: np.ndarray,
    *,
    fdr: bool = True,
    alpha_levels: Sequence[float] = (0.01, 0.05, 0.10),
) -> np.ndarray:
    """ArcGIS-style Gi* confidence bins: +3/+2/+1 hot, -3/-2/-1 cold, 0 not significant.

    A point is in bin ``sign(z) * 3`` if its p-value is ``<= alpha_levels[0]`` (99 %
    confidence by default), ``sign(z) * 2`` if ``<= alpha_levels[1]`` (95 %), ``sign(z) * 1``
    if ``<= alpha_levels[2]`` (90 %), else 0. With ``fdr=True`` the p-values are first
    replaced by Benjamini-Hochberg q-values over all points passed in; comparing q with
    each level is the same as running the BH procedure at that level, which is what
    ArcGIS's "Apply False Discovery Rate Correction" option does for its bins.

    Parameters
    ----------
    z : ndarray, shape (m,)
        Gi* z-scores.
    p : ndarray, shape (m,)
        Their two-sided p-values.
    fdr : bool, default True
        Judge significance on BH-adjusted p-values. Pass all points of an analysis at once:
        the correction depends on how many tests there are.
    alpha_levels : sequence of 3 floats, default (0.01, 0.05, 0.10)
        Significance levels of bins 3, 2 and 1, increasing, in (0, 1).

    Returns
    -------
    ndarray of int8, shape (m,)
        Bin per point.

    Examples
    --------
    >>> classify_hotspots(np.array([3.0, -2.0, 1.7, 0.5, -5.0]),
    ...                   np.array([0.0027, 0.0455, 0.089, 0.62, 6e-7]), fdr=False)
    array([ 3, -2,  1,  0, -3], dtype=int8)
    """
    z = np.asarray(z, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    if z.shape != p_arr.shape:
        raise ValueError(f"z {z.shape} and p {p_arr.shape} must have the same shape")
    if not np.isfinite(z).all():
        raise ValueError("z contains NaN or inf")
    levels = np.asarray(alpha_levels, dtype=np.float64)
    if levels.shape != (3,) or not (
        np.all(np.diff(levels) > 0) and levels[0] > 0 and levels[-1] < 1
    ):
        raise ValueError(f"alpha_levels must be 3 increasing values in (0, 1), got {alpha_levels}")
    judged = fdr_adjusted_p(p_arr) if fdr else _as_p(p_arr).reshape(p_arr.shape)
    strength = np.zeros(z.shape, dtype=np.int8)
    # Widest level first, so each stricter level overwrites it.
    for level, alpha in zip((1, 2, 3), levels[::-1], strict=True):
        strength[judged <= alpha] = level
    return (np.sign(z).astype(np.int8) * strength).astype(np.int8)


def _checked_inputs(
    xy: np.ndarray, values: np.ndarray, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and values as finite float arrays of matching length; a valid band."""
    points = _as_xy(xy)
    v = _as_values(values)
    if v.size != points.shape[0]:
        raise ValueError(f"values has {v.size} entries for {points.shape[0]} points")
    if not (np.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a positive number of metres, got {distance}")
    return points, v


def _as_xy(xy: np.ndarray) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("xy contains NaN or inf coordinates")
    return arr


def _as_values(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("values contain NaN or inf: drop those points before Gi*")
    return arr


def _as_p(p: np.ndarray) -> np.ndarray:
    flat = np.asarray(p, dtype=np.float64).ravel()
    if np.isnan(flat).any():
        raise ValueError("p-values contain NaN")
    if flat.size and (flat.min() < 0.0 or flat.max() > 1.0):
        raise ValueError("p-values must lie in [0, 1]")
    return flat
