"""Behaviour of the PS-Time statistical baseline (serving.baselines.ps_time)."""

from __future__ import annotations

import numpy as np
import pytest

from serving.baselines.ps_time import classify_batch, classify_series
from serving.synthetic.ps_series import (
    BILINEAR,
    LINEAR,
    PUE,
    PUE_JUMP_MM,
    QUADRATIC,
    STABLE,
    generate_ps_dataset,
)

T = np.arange(150) * 12.0  # ~4.9 years of 12-day revisits
TY = T / 365.25


def _noisy(signal: np.ndarray, sigma: float = 1.5, seed: int = 0) -> np.ndarray:
    return signal + np.random.default_rng(seed).normal(0.0, sigma, signal.shape)


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        (np.zeros_like(TY), STABLE),
        (3.0 * np.sin(2 * np.pi * TY), STABLE),
        (-12.0 * TY, LINEAR),
        (4.0 * TY + 6.0 * TY**2, QUADRATIC),
        (np.where(TY < 2.5, 0.0, -25.0 * (TY - 2.5)), BILINEAR),
        (5.0 * TY + PUE_JUMP_MM * (T >= 600), PUE),
        (-5.0 * TY - 2 * PUE_JUMP_MM * (T >= 900), PUE),
    ],
    ids=["flat", "seasonal", "linear", "quadratic", "bilinear", "pue", "pue-double"],
)
def test_baseline_recovers_known_clean_cases(signal, expected):
    assert classify_series(T, _noisy(signal)) == expected


def test_isolated_outlier_is_not_a_pue():
    y = _noisy(np.zeros_like(TY))
    y[70] += 30.0
    assert classify_series(T, y) != PUE


def test_batch_ignores_nan_padding_and_matches_single_calls():
    ds = generate_ps_dataset(25, np.random.default_rng(3))
    disp, time = ds.padded()
    batch = classify_batch(disp, time)
    single = [classify_series(t, d) for t, d in zip(ds.time_days, ds.displacement_mm, strict=True)]
    assert batch.tolist() == single


def test_baseline_is_accurate_on_generated_series():
    ds = generate_ps_dataset(200, np.random.default_rng(11))
    disp, time = ds.padded()
    assert np.mean(classify_batch(disp, time) == ds.labels) > 0.9


def test_too_short_series_is_rejected():
    with pytest.raises(ValueError, match="at least 8"):
        classify_series(np.arange(5.0), np.zeros(5))
