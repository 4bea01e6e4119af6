"""Getis-Ord Gi*, Benjamini-Hochberg FDR and confidence bins (pipelines.hotspots.gistar).

Oracles: PySAL's ``esda.G_Local`` (binary weights, star) on non-negative data, and a direct
O(n^2) implementation of Ord & Getis (1995) written below from the formula, which is also
the oracle on signed data, where esda's z has the wrong sign (pysal/esda#112).
"""

from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest
from scipy import stats

from pipelines.hotspots import gistar
from pipelines.hotspots.gistar import (
    GiStarResult,
    GlobalStats,
    benjamini_hochberg,
    classify_hotspots,
    fdr_adjusted_p,
    gi_star,
)

DISTANCE = 150.0


def reference_gi_star(xy: np.ndarray, x: np.ndarray, distance: float) -> np.ndarray:
    """Gi* z straight from the paper's eq. 1 / Ord & Getis (1995), dense matrices, w_ii = 1."""
    n = x.size
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))
    w = (d <= distance).astype(float)
    w_sum = w.sum(axis=1)
    s1 = (w**2).sum(axis=1)
    mean = x.sum() / n
    s = np.sqrt((x**2).sum() / n - mean**2)
    return (w @ x - mean * w_sum) / (s * np.sqrt((n * s1 - w_sum**2) / (n - 1)))


def esda_g_local_star(xy: np.ndarray, y: np.ndarray, distance: float):
    """esda's Gi*: binary DistanceBand, star, analytical inference only."""
    esda = pytest.importorskip("esda")
    libpysal = pytest.importorskip("libpysal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # islands, and libpysal's future-API notices
        w = libpysal.weights.DistanceBand(xy, threshold=distance, binary=True,
                                          silence_warnings=True)
        # transform="B" matters: with esda's default "R" its variance formula (written for
        # binary weights) no longer matches the weights and z differs by up to ~2.
        return esda.G_Local(y, w, transform="B", star=True, permutations=0)


def random_points(seed: int, n: int = 600, side: float = 1500.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, side, size=(n, 2))


def subsidence_scene(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed LOS velocities (mm/yr) with a negative mean and one subsidence bowl.

    Returns xy, values and a mask of the bowl's points.
    """
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.0, 2000.0, size=(800, 2))
    values = rng.normal(-3.0, 2.0, size=800)
    bowl = np.hypot(xy[:, 0] - 600.0, xy[:, 1] - 1400.0) < 120.0
    values[bowl] -= 40.0
    # A smaller uplift patch, so both signs of clustering are present.
    uplift = np.hypot(xy[:, 0] - 1500.0, xy[:, 1] - 500.0) < 100.0
    values[uplift] += 15.0
    return xy, values, bowl


# --- agreement with esda and with the formula ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "xy", "y"),
    [
        ("uniform gamma", random_points(1), np.random.default_rng(11).gamma(2.0, 3.0, 600)),
        ("sparse with islands", random_points(2, n=150, side=3000.0),
         np.random.default_rng(12).uniform(0.0, 50.0, 150)),
        ("abs velocities", random_points(3), np.abs(np.random.default_rng(13).normal(0, 8, 600))),
    ],
)
def test_gistar_matches_esda_g_local_star_on_nonnegative_data(kind, xy, y):
    ours = gi_star(xy, y, DISTANCE)
    theirs = esda_g_local_star(xy, y, DISTANCE)
    np.testing.assert_allclose(ours.z, theirs.Zs, rtol=0, atol=1e-9)
    # esda's p_norm is one-sided; ours is two-sided.
    np.testing.assert_allclose(ours.p, 2.0 * theirs.p_norm, rtol=0, atol=1e-12)
    # W_i of the star form is the neighbour count plus the point itself.
    cardinality = np.array([theirs.w.cardinalities[i] for i in theirs.w.id_order])
    np.testing.assert_array_equal(ours.n_neighbours, cardinality)


def test_gistar_matches_direct_formula_on_signed_data():
    xy, values, _ = subsidence_scene()
    assert values.mean() < 0
    ours = gi_star(xy, values, DISTANCE)
    np.testing.assert_allclose(ours.z, reference_gi_star(xy, values, DISTANCE), atol=1e-9)


@pytest.mark.parametrize("distance", [50.0, 150.0, 400.0])
def test_gistar_matches_direct_formula_for_several_distance_bands(distance):
    xy = random_points(4, n=500)
    values = np.random.default_rng(5).normal(1.0, 5.0, 500)
    np.testing.assert_allclose(
        gi_star(xy, values, distance).z, reference_gi_star(xy, values, distance), atol=1e-9
    )


def test_gistar_sign_is_correct_for_negative_mean_where_esda_flips_it():
    xy, values, bowl = subsidence_scene()
    ours = gi_star(xy, values, DISTANCE)
    theirs = esda_g_local_star(xy, values, DISTANCE)
    # The subsidence bowl is a cluster of low values: strongly negative z.
    assert np.all(ours.z[bowl] < -3.0)
    # esda divides G by sum(y) < 0: its z is exactly ours with the sign flipped everywhere.
    np.testing.assert_allclose(theirs.Zs, -ours.z, atol=1e-9)
    assert np.all(theirs.Zs[bowl] > 3.0)
    # With a positive mean the two agree again: the flip is the sign of the mean.
    shifted = values - values.min()
    np.testing.assert_allclose(esda_g_local_star(xy, shifted, DISTANCE).Zs, ours.z, atol=1e-9)


def test_gistar_p_value_is_two_sided_normal():
    xy, values, _ = subsidence_scene()
    r = gi_star(xy, values, DISTANCE)
    np.testing.assert_allclose(r.p, 2.0 * stats.norm.sf(np.abs(r.z)), rtol=1e-12, atol=1e-300)


# --- invariances ---------------------------------------------------------------------


@pytest.mark.parametrize("shift", [-1e3, -17.5, 0.25, 1e4])
def test_gistar_is_unchanged_by_adding_a_constant(shift):
    xy, values, _ = subsidence_scene()
    base = gi_star(xy, values, DISTANCE).z
    np.testing.assert_allclose(gi_star(xy, values + shift, DISTANCE).z, base, atol=1e-9)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 37.0, 1e4])
def test_gistar_is_unchanged_by_a_positive_scale(scale):
    xy, values, _ = subsidence_scene()
    base = gi_star(xy, values, DISTANCE).z
    np.testing.assert_allclose(gi_star(xy, values * scale, DISTANCE).z, base, atol=1e-9)


def test_gistar_negating_values_negates_z():
    xy, values, _ = subsidence_scene()
    np.testing.assert_allclose(
        gi_star(xy, -values, DISTANCE).z, -gi_star(xy, values, DISTANCE).z, atol=1e-12
    )


def test_gistar_is_unchanged_by_moving_or_reordering_points():
    xy, values, _ = subsidence_scene()
    base = gi_star(xy, values, DISTANCE).z
    perm = np.random.default_rng(0).permutation(values.size)
    moved = xy[perm] + np.array([431_000.0, 5_120_000.0])  # UTM-like magnitudes
    np.testing.assert_allclose(gi_star(moved, values[perm], DISTANCE).z, base[perm], atol=1e-9)


# --- targets, chunks, global statistics ------------------------------------------------


def test_gistar_targets_equal_the_same_rows_of_the_full_result():
    xy, values, _ = subsidence_scene()
    full = gi_star(xy, values, DISTANCE)
    targets = np.array([799, 3, 3, 512, 0, 250, 3])  # any order, repeats allowed
    part = gi_star(xy, values, DISTANCE, targets=targets)
    np.testing.assert_array_equal(part.index, targets)
    np.testing.assert_allclose(part.z, full.z[targets], atol=1e-12)
    np.testing.assert_allclose(part.p, full.p[targets], atol=1e-12)
    np.testing.assert_array_equal(part.n_neighbours, full.n_neighbours[targets])


def test_gistar_empty_targets_give_an_empty_result():
    xy, values, _ = subsidence_scene()
    r = gi_star(xy, values, DISTANCE, targets=np.array([], dtype=np.int64))
    assert len(r) == 0 and r.z.shape == r.p.shape == r.n_neighbours.shape == (0,)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 333, 10_000])
@pytest.mark.parametrize("dense_share", [0.0, 0.5, np.inf], ids=["pairs", "auto", "queries"])
def test_gistar_chunk_size_and_search_path_do_not_change_results(
    chunk_size, dense_share, monkeypatch
):
    # dense_share 0 forces the all-pairs path for every chunk, inf the per-target queries.
    monkeypatch.setattr(gistar, "_DENSE_SHARE", dense_share)
    xy, values, _ = subsidence_scene()
    expected = reference_gi_star(xy, values, DISTANCE)
    full = gi_star(xy, values, DISTANCE, chunk_size=chunk_size)
    np.testing.assert_allclose(full.z, expected, atol=1e-9)
    targets = np.arange(0, values.size, 9)
    part = gi_star(xy, values, DISTANCE, targets=targets, chunk_size=chunk_size)
    np.testing.assert_allclose(part.z, expected[targets], atol=1e-9)


def test_gistar_uses_given_global_stats():
    xy, values, _ = subsidence_scene()
    own = GlobalStats.of(values)
    assert own.n == values.size
    np.testing.assert_allclose(own.std, np.sqrt((values**2).mean() - values.mean() ** 2))
    np.testing.assert_array_equal(
        gi_star(xy, values, DISTANCE, global_stats=own).z, gi_star(xy, values, DISTANCE).z
    )
    other = GlobalStats(n=own.n, mean=own.mean + own.std, std=2.0 * own.std)
    r = gi_star(xy, values, DISTANCE, global_stats=other)
    w = r.n_neighbours.astype(float)
    # Same neighbour sums, other mean and S: z moves exactly as the formula says.
    base = gi_star(xy, values, DISTANCE)
    spread = np.sqrt((own.n * w - w**2) / (own.n - 1))
    sums = base.z * own.std * spread + own.mean * w
    np.testing.assert_allclose(r.z, (sums - other.mean * w) / (other.std * spread), atol=1e-9)


# --- counts, edge cases, input checks ----------------------------------------------------


def test_gistar_band_is_inclusive_and_counts_the_point_itself():
    xy = np.array([[0.0, 0.0], [150.0, 0.0], [300.0001, 0.0], [1000.0, 0.0], [1000.0, 0.0]])
    r = gi_star(xy, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 150.0)
    # d == 150 is inside; 150.0001 is not; coincident points are neighbours of each other.
    np.testing.assert_array_equal(r.n_neighbours, [2, 2, 1, 2, 2])


def test_gistar_zero_denominator_gives_z_zero_p_one():
    xy = random_points(8, n=50, side=100.0)  # every pair within 150 m: W_i == n
    r = gi_star(xy, np.random.default_rng(0).normal(size=50), DISTANCE)
    np.testing.assert_array_equal(r.n_neighbours, 50)
    np.testing.assert_array_equal(r.z, 0.0)
    np.testing.assert_array_equal(r.p, 1.0)
    constant = gi_star(random_points(9), np.full(600, 4.2), DISTANCE)  # S == 0
    np.testing.assert_array_equal(constant.z, 0.0)
    np.testing.assert_array_equal(constant.p, 1.0)


def test_gistar_single_point_is_not_significant():
    r = gi_star(np.zeros((1, 2)), np.array([3.0]), DISTANCE)
    assert r.z.tolist() == [0.0] and r.p.tolist() == [1.0]


@pytest.mark.parametrize(
    ("xy", "values", "kwargs", "message"),
    [
        (np.zeros((3, 2)), np.array([1.0, np.nan, 2.0]), {}, "NaN"),
        (np.array([[0.0, 0.0], [np.nan, 1.0]]), np.ones(2), {}, "NaN"),
        (np.zeros((3, 3)), np.ones(3), {}, "shape"),
        (np.zeros((3, 2)), np.ones(4), {}, "entries"),
        (np.zeros((3, 2)), np.ones(3), {"distance": 0.0}, "distance"),
        (np.zeros((3, 2)), np.ones(3), {"chunk_size": 0}, "chunk_size"),
        (np.zeros((3, 2)), np.ones(3), {"targets": np.array([0, 3])}, "targets"),
        (np.zeros((3, 2)), np.ones(3), {"targets": np.array([0.5])}, "targets"),
    ],
)
def test_gistar_rejects_bad_input(xy, values, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gi_star(xy, values, **kwargs)


def test_global_stats_rejects_bad_values():
    with pytest.raises(ValueError):
        GlobalStats(n=0, mean=0.0, std=1.0)
    with pytest.raises(ValueError):
        GlobalStats(n=3, mean=0.0, std=-1.0)
    with pytest.raises(ValueError):
        GlobalStats.of(np.array([1.0, np.nan]))


def test_gistar_result_fields_have_matching_shapes_and_types():
    xy, values, _ = subsidence_scene()
    r = gi_star(xy, values, DISTANCE)
    assert isinstance(r, GiStarResult) and len(r) == values.size
    assert r.z.dtype == r.p.dtype == np.float64
    assert r.n_neighbours.dtype == r.index.dtype == np.int64
    assert np.all((r.p >= 0) & (r.p <= 1))


# --- Benjamini-Hochberg -----------------------------------------------------------------


def reference_q_values(p: np.ndarray) -> np.ndarray:
    """BH adjusted p by its definition, O(m^2): q_(i) = min_{j >= i} min(1, m p_(j) / j)."""
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    q_sorted = np.array(
        [min(1.0, min(m * ranked[j] / (j + 1) for j in range(i, m))) for i in range(m)]
    )
    q = np.empty(m)
    q[order] = q_sorted
    return q


def test_benjamini_hochberg_hand_computed_example():
    # Sorted: 0.001 0.012 0.014 0.035 0.041 0.9 against k * 0.05 / 6 =
    # 0.0083 0.0167 0.025 0.0333 0.0417 0.05. The largest k with p_(k) <= k alpha / m is 5,
    # so 0.035 (above its own threshold 0.0333) is rejected too: the step-up property.
    p = np.array([0.001, 0.012, 0.014, 0.035, 0.9, 0.041])
    np.testing.assert_array_equal(
        benjamini_hochberg(p, alpha=0.05), [True, True, True, True, False, True]
    )
    # m p_(k) / k = 0.006 0.036 0.028 0.0525 0.0492 0.9, then the running minimum from the top.
    np.testing.assert_allclose(
        fdr_adjusted_p(p), [0.006, 0.028, 0.028, 0.0492, 0.9, 0.0492], atol=1e-12
    )
    # At alpha = 0.01 only the first passes (0.001 <= 0.00167; 0.012 > 0.0033 ...).
    np.testing.assert_array_equal(benjamini_hochberg(p, alpha=0.01), [1, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fdr_adjusted_p_matches_the_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 150), rng.uniform(0, 1e-3, 50)])
    p[::17] = p[3]  # ties
    p = rng.permutation(p)
    q = fdr_adjusted_p(p)
    np.testing.assert_allclose(q, reference_q_values(p), rtol=1e-12)
    for alpha in (0.01, 0.05, 0.1, 0.3):
        np.testing.assert_array_equal(benjamini_hochberg(p, alpha), q <= alpha)


def test_benjamini_hochberg_is_monotone_and_bounded():
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(0, 1, 500), rng.uniform(0, 0.002, 40)])
    significant = benjamini_hochberg(p, 0.05)
    assert significant.any()
    # Every p below the largest significant p is significant, none above it.
    threshold = p[significant].max()
    np.testing.assert_array_equal(significant, p <= threshold)
    q = fdr_adjusted_p(p)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0) and np.all((q >= p) & (q <= 1))
    # Never more discoveries than uncorrected testing at the same level.
    assert significant.sum() <= (p <= 0.05).sum()


def test_benjamini_hochberg_finds_nothing_in_pure_noise_of_large_p():
    p = np.linspace(0.2, 1.0, 100)
    assert not benjamini_hochberg(p, 0.1).any()


def test_benjamini_hochberg_keeps_shape_and_handles_empty_input():
    p = np.array([[0.001, 0.5], [0.02, 0.03]])
    assert benjamini_hochberg(p).shape == (2, 2) and fdr_adjusted_p(p).shape == (2, 2)
    assert benjamini_hochberg(np.array([])).shape == (0,)
    assert fdr_adjusted_p(np.array([])).shape == (0,)


@pytest.mark.parametrize("bad", [np.array([0.1, np.nan]), np.array([-0.1]), np.array([1.5])])
def test_fdr_rejects_invalid_p_values(bad):
    with pytest.raises(ValueError):
        fdr_adjusted_p(bad)
    with pytest.raises(ValueError):
        benjamini_hochberg(bad)


def test_benjamini_hochberg_rejects_invalid_alpha():
    with pytest.raises(ValueError):
        benjamini_hochberg(np.array([0.1]), alpha=0.0)


# --- confidence bins ----------------------------------------------------------------------


def test_classify_hotspots_uncorrected_bins_follow_arcgis_levels():
    z = np.array([3.0, 2.6, 2.0, 1.7, 1.0, 0.0, -1.7, -2.0, -3.0])
    p = 2.0 * stats.norm.sf(np.abs(z))
    bins = classify_hotspots(z, p, fdr=False)
    assert bins.dtype == np.int8
    # 99 % <=> |z| >= 2.576, 95 % <=> |z| >= 1.960, 90 % <=> |z| >= 1.645.
    np.testing.assert_array_equal(bins, [3, 3, 2, 1, 0, 0, -1, -2, -3])


def test_classify_hotspots_with_fdr_uses_bh_at_each_level():
    rng = np.random.default_rng(6)
    z = np.concatenate([rng.normal(0, 1, 400), rng.normal(4, 1, 30), rng.normal(-3.5, 1, 30)])
    p = 2.0 * stats.norm.sf(np.abs(z))
    bins = classify_hotspots(z, p, fdr=True)
    expected = np.sign(z) * (
        benjamini_hochberg(p, 0.01).astype(int)
        + benjamini_hochberg(p, 0.05).astype(int)
        + benjamini_hochberg(p, 0.10).astype(int)
    )
    np.testing.assert_array_equal(bins, expected)
    # FDR never adds significance, and here removes some.
    plain = classify_hotspots(z, p, fdr=False)
    assert np.all(np.abs(bins) <= np.abs(plain)) and (np.abs(bins) < np.abs(plain)).any()


def test_classify_hotspots_custom_levels_and_validation():
    z = np.array([2.0, -2.0])
    p = np.array([0.02, 0.2])
    np.testing.assert_array_equal(
        classify_hotspots(z, p, fdr=False, alpha_levels=(0.001, 0.01, 0.25)), [1, -1]
    )
    with pytest.raises(ValueError, match="alpha_levels"):
        classify_hotspots(z, p, alpha_levels=(0.05, 0.01, 0.1))
    with pytest.raises(ValueError, match="shape"):
        classify_hotspots(z, p[:1])


def test_hot_spots_of_a_subsidence_scene_are_cold_in_the_bowl():
    xy, values, bowl = subsidence_scene()
    r = gi_star(xy, values, DISTANCE)
    bins = classify_hotspots(r.z, r.p)
    assert np.all(bins[bowl] == -3)
    assert (bins > 0).any()  # the uplift patch


def test_gistar_docstring_examples_run():
    result = doctest.testmod(gistar, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
