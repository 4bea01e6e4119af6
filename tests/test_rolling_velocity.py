"""Rolling-window LOS velocity: slope, window, NaN handling, standard error, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.hotspots.velocity import DAYS_PER_YEAR, rolling_velocity

# Two years of 12-day Sentinel-1 revisits.
DATES = np.arange("2023-01-05", "2025-01-05", 12, dtype="datetime64[D]")


def years_since(d0: np.datetime64, dates: np.ndarray = DATES) -> np.ndarray:
    return (dates - d0).astype(np.float64) / DAYS_PER_YEAR


def in_window(end: np.datetime64, window_days: int = 365) -> np.ndarray:
    """Which of DATES fall in ``(end - window_days, end]``."""
    dates = DATES
    return (dates > end - np.timedelta64(window_days, "D")) & (dates <= end)


def polyfit_reference(dates: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and its standard error from numpy.polyfit over the finite epochs, mm/yr."""
    ok = np.isfinite(y)
    t = years_since(dates[0], dates)[ok]
    coef, cov = np.polyfit(t, y[ok], 1, cov="unscaled")
    resid = y[ok] - np.polyval(coef, t)
    sigma2 = resid @ resid / (ok.sum() - 2)
    return float(coef[0]), float(np.sqrt(sigma2 * cov[0, 0]))


@pytest.mark.parametrize("slope", [-37.5, -10.0, 0.0, 4.2, 120.0])
def test_exact_linear_series_recovers_the_slope_with_zero_error(slope):
    t = years_since(DATES[0])
    y = np.vstack([slope * t + offset for offset in (0.0, -250.0, 1.0e4)])
    res = rolling_velocity(DATES, y)
    np.testing.assert_allclose(res.velocity_mm_yr, slope, atol=1e-9)
    np.testing.assert_allclose(res.stderr_mm_yr, 0.0, atol=1e-6)


def test_sign_follows_the_displacement_towards_the_satellite_positive():
    t = years_since(DATES[0])
    res = rolling_velocity(DATES, np.vstack([8.0 * t, -8.0 * t]))
    assert res.velocity_mm_yr[0] > 0 > res.velocity_mm_yr[1]


def test_only_epochs_inside_the_window_are_used():
    t = years_since(DATES[0])
    end = DATES[-1]
    start = end - np.timedelta64(365, "D")
    inside = in_window(end)
    # 50 mm/yr before the window, -5 mm/yr inside: a fit over everything would be positive.
    y = np.where(inside, -5.0 * t, 50.0 * t + 1.0e3)[None, :]
    res = rolling_velocity(DATES, y, window_days=365)
    np.testing.assert_allclose(res.velocity_mm_yr, [-5.0], atol=1e-9)
    assert res.n_epochs[0] == inside.sum() == res.epochs_in_window
    assert res.window_start == start and res.window_end == end


def test_window_excludes_its_start_day_and_includes_its_end_day():
    dates = np.array(
        ["2024-01-01", "2024-03-01", "2024-06-01", "2024-09-01", "2024-12-31"],
        dtype="datetime64[D]",
    )
    y = np.arange(5, dtype=float)[None, :]
    end = np.datetime64("2024-12-31")
    res = rolling_velocity(dates, y, window_days=365, end=end, min_epochs=2)
    # 2024 is a leap year: 2024-12-31 - 365 days = 2024-01-01, which is excluded.
    assert res.window_start == np.datetime64("2024-01-01")
    assert res.n_epochs[0] == 4


def test_explicit_end_selects_an_earlier_window():
    t = years_since(DATES[0])
    first_year = in_window(np.datetime64("2024-01-04"), 10_000)
    y = np.where(first_year, 20.0 * t, 20.0 * t[first_year][-1] - 3.0 * t)[None, :]
    res = rolling_velocity(DATES, y, end=np.datetime64("2024-01-04"))
    np.testing.assert_allclose(res.velocity_mm_yr, [20.0], atol=1e-9)


def test_unsorted_dates_give_the_same_result():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(4, DATES.size)) + 7.0 * years_since(DATES[0])
    y[rng.random(y.shape) < 0.2] = np.nan
    perm = rng.permutation(DATES.size)
    a = rolling_velocity(DATES, y)
    b = rolling_velocity(DATES[perm], y[:, perm])
    np.testing.assert_allclose(b.velocity_mm_yr, a.velocity_mm_yr, rtol=1e-12)
    np.testing.assert_allclose(b.stderr_mm_yr, a.stderr_mm_yr, rtol=1e-12)
    np.testing.assert_array_equal(b.n_epochs, a.n_epochs)


def test_nan_epochs_are_skipped_not_treated_as_zero():
    t = years_since(DATES[0])
    y = (12.0 * t + 40.0)[None, :].copy()
    y[0, ::3] = np.nan
    res = rolling_velocity(DATES, y)
    np.testing.assert_allclose(res.velocity_mm_yr, [12.0], atol=1e-9)
    assert res.n_epochs[0] == np.isfinite(y[0, in_window(DATES[-1])]).sum()


def test_all_nan_point_gets_nan_and_zero_epochs():
    y = np.full((2, DATES.size), np.nan)
    y[1] = 3.0 * years_since(DATES[0])
    res = rolling_velocity(DATES, y)
    assert np.isnan(res.velocity_mm_yr[0]) and np.isnan(res.stderr_mm_yr[0])
    assert res.n_epochs[0] == 0
    np.testing.assert_allclose(res.velocity_mm_yr[1], 3.0, atol=1e-9)


@pytest.mark.parametrize(("n_finite", "expect_velocity"), [(4, False), (5, True), (6, True)])
def test_min_epochs_is_the_fewest_finite_values_for_a_velocity(n_finite, expect_velocity):
    y = np.full((1, DATES.size), np.nan)
    # Spread the finite epochs over the last year so that the span rule is satisfied.
    cols = np.linspace(DATES.size - 30, DATES.size - 1, n_finite).astype(int)
    y[0, cols] = 2.0 * years_since(DATES[0])[cols]
    res = rolling_velocity(DATES, y, min_epochs=5)
    assert res.n_epochs[0] == n_finite
    assert np.isfinite(res.velocity_mm_yr[0]) == expect_velocity


def test_epochs_spanning_less_than_a_quarter_of_the_window_give_nan():
    t = years_since(DATES[0])
    y = np.full((2, DATES.size), np.nan)
    # Point 0: 7 epochs over 72 days (< 365 / 4 = 91.25); point 1: 9 epochs over 96 days.
    y[0, -7:] = 5.0 * t[-7:]
    y[1, -10:-1] = 5.0 * t[-10:-1]
    res = rolling_velocity(DATES, y)
    assert np.isnan(res.velocity_mm_yr[0]) and res.n_epochs[0] == 7
    np.testing.assert_allclose(res.velocity_mm_yr[1], 5.0, atol=1e-9)
    res_loose = rolling_velocity(DATES, y, min_span_fraction=0.1)
    np.testing.assert_allclose(res_loose.velocity_mm_yr, [5.0, 5.0], atol=1e-9)


def test_standard_error_matches_numpy_polyfit():
    rng = np.random.default_rng(11)
    dates = DATES[in_window(DATES[-1])]
    t = years_since(dates[0], dates)
    y = np.vstack(
        [
            -15.0 * t + rng.normal(0, 2.0, t.size),
            3.0 * t + 8.0 * np.sin(2 * np.pi * t) + rng.normal(0, 1.0, t.size),
            40.0 * t**2 + rng.normal(0, 4.0, t.size),
            rng.normal(0, 0.5, t.size) + 500.0,
        ]
    )
    y[1, [2, 5, 6, 20]] = np.nan
    y[3, :10] = np.nan
    res = rolling_velocity(dates, y)
    for row in range(y.shape[0]):
        slope, se = polyfit_reference(dates, y[row])
        assert res.velocity_mm_yr[row] == pytest.approx(slope, rel=1e-9, abs=1e-9)
        assert res.stderr_mm_yr[row] == pytest.approx(se, rel=1e-9)
        assert res.n_epochs[row] == np.isfinite(y[row]).sum()


def test_standard_error_is_nan_with_two_epochs():
    dates = np.array(["2024-01-01", "2024-12-01"], dtype="datetime64[D]")
    res = rolling_velocity(dates, np.array([[0.0, 10.0]]), min_epochs=2)
    assert res.velocity_mm_yr[0] == pytest.approx(10.0 / (335 / DAYS_PER_YEAR))
    assert np.isnan(res.stderr_mm_yr[0])


def test_float32_input_gives_the_float64_result():
    rng = np.random.default_rng(5)
    y = (rng.normal(size=(50, DATES.size)) + 9.0 * years_since(DATES[0])).astype(np.float32)
    a = rolling_velocity(DATES, y)
    b = rolling_velocity(DATES, y.astype(np.float64))
    assert a.velocity_mm_yr.dtype == np.float64
    np.testing.assert_allclose(a.velocity_mm_yr, b.velocity_mm_yr, rtol=1e-12)


def test_no_epoch_in_the_window_gives_all_nan():
    res = rolling_velocity(DATES, np.zeros((3, DATES.size)), end=np.datetime64("2020-01-01"))
    assert np.isnan(res.velocity_mm_yr).all() and (res.n_epochs == 0).all()
    assert res.epochs_in_window == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"window_days": 0}, {"min_epochs": 1}, {"min_span_fraction": 0.0}, {"min_span_fraction": 1.5}],
)
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        rolling_velocity(DATES, np.zeros((1, DATES.size)), **kwargs)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        rolling_velocity(DATES, np.zeros((1, DATES.size - 1)))
    with pytest.raises(ValueError, match="datetime64"):
        rolling_velocity(np.arange(DATES.size), np.zeros((1, DATES.size)))


def test_a_million_points_of_thirty_epochs_take_well_under_two_seconds():
    rng = np.random.default_rng(0)
    dates = np.arange("2024-01-06", "2025-01-01", 12, dtype="datetime64[D]")[:30]
    block = rng.normal(size=(1000, dates.size)).astype(np.float32)
    block[rng.random(block.shape) < 0.05] = np.nan
    y = np.tile(block, (1000, 1))  # cheaper to build than 30M fresh random numbers
    rolling_velocity(dates, y[:1000])  # warm-up (BLAS threads, page faults)
    t0 = time.perf_counter()
    res = rolling_velocity(dates, y)
    elapsed = time.perf_counter() - t0
    assert res.velocity_mm_yr.shape == (1_000_000,)
    assert np.isfinite(res.velocity_mm_yr).mean() > 0.99
    assert elapsed < 2.0, f"{elapsed:.2f} s"
