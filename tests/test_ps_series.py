"""Behaviour of the synthetic PS series generator (serving.synthetic.ps_series)."""

from __future__ import annotations

import numpy as np
import pytest

from serving.synthetic.ps_series import (
    BILINEAR,
    LINEAR,
    PUE,
    PUE_JUMP_MM,
    QUADRATIC,
    STABLE,
    PSSeriesParams,
    generate_ps_dataset,
    generate_ps_series,
    model_residual_rms,
    pad_series,
    sample_trend,
)


@pytest.fixture(scope="module")
def dataset():
    return generate_ps_dataset(500, np.random.default_rng(123))


def test_dataset_is_class_balanced(dataset):
    assert np.bincount(dataset.labels, minlength=5).tolist() == [100] * 5


def test_lengths_and_sampling_follow_the_documented_ranges(dataset):
    params = PSSeriesParams()
    for t, d in zip(dataset.time_days, dataset.displacement_mm, strict=True):
        assert params.n_epochs[0] <= len(t) <= params.n_epochs[1]
        assert len(t) == len(d)
        steps = np.diff(t)
        assert np.all(steps > 0)
        # Every gap is a whole number of 6-day revisits.
        assert np.allclose(steps / 6.0, np.round(steps / 6.0), atol=1e-6)
        assert t[-1] - t[0] <= params.max_span_days
    all_steps = np.concatenate([np.diff(t) for t in dataset.time_days])
    assert {6.0, 12.0} <= set(np.unique(all_steps).tolist())
    assert all_steps.max() >= 36.0  # some long (winter / missing) gaps exist


def test_same_seed_gives_same_dataset():
    a = generate_ps_dataset(20, np.random.default_rng(5))
    b = generate_ps_dataset(20, np.random.default_rng(5))
    assert np.array_equal(a.labels, b.labels)
    assert all(
        np.array_equal(x, y) for x, y in zip(a.displacement_mm, b.displacement_mm, strict=True)
    )


def test_pue_series_has_a_jump_near_27_7_mm():
    rng = np.random.default_rng(7)
    for _ in range(10):
        t, d, _sigma, base = generate_ps_series(PUE, rng)
        # Largest 4-epoch mean-after minus mean-before change of the quadratic residual:
        # noise (<= 6 mm, averaged over 4 epochs) cannot reach half a phase cycle.
        k = 4
        c = np.concatenate([[0.0], np.cumsum(d - np.polyval(np.polyfit(t, d, 2), t))])
        i = np.arange(k, len(d) - k + 1)
        stat = np.abs((c[i + k] - c[i]) / k - (c[i] - c[i - k]) / k)
        assert stat.max() > 0.5 * PUE_JUMP_MM
        assert 0 <= base <= 3


@pytest.mark.parametrize("cls", [STABLE, LINEAR, QUADRATIC, BILINEAR])
def test_trends_meet_their_class_margins(cls):
    params = PSSeriesParams()
    rng = np.random.default_rng(cls)
    checked = 0
    while checked < 10:
        t = np.arange(100) * 12.0 + rng.uniform(0, 1000)
        sigma = rng.uniform(*params.noise_std_mm)
        g = sample_trend(cls, t, sigma, rng, params)
        if g is None:
            continue
        rms = model_residual_rms(t, g)
        if cls == STABLE:
            assert rms["const"] <= params.stable_max_rms * sigma + 1e-9
        elif cls == LINEAR:
            assert rms["const"] >= params.linear_min_rms * sigma * 0.999
            assert rms["lin"] < 1e-6
        elif cls == QUADRATIC:
            assert rms["lin"] >= params.nonlinear_min_rms * sigma * 0.999
            assert rms["bilin"] >= params.shape_min_rms * sigma * 0.999
        else:
            assert rms["lin"] >= params.nonlinear_min_rms * sigma * 0.999
            assert rms["quad"] >= params.shape_min_rms * sigma * 0.999
        checked += 1


def test_noise_level_stays_in_range(dataset):
    lo, hi = PSSeriesParams().noise_std_mm
    assert dataset.noise_std_mm.min() >= lo
    assert dataset.noise_std_mm.max() <= hi


def test_pad_series_right_pads_with_nan_in_both_arrays():
    disp, time = pad_series([(np.arange(3.0), np.ones(3)), (np.arange(5.0), np.zeros(5))])
    assert disp.dtype == np.float32 and time.dtype == np.float32
    assert disp.shape == time.shape == (2, 5)
    assert np.array_equal(np.isnan(disp), np.isnan(time))
    assert np.isnan(disp[0, 3:]).all() and np.isfinite(disp[1]).all()


def test_pad_series_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="displacements"):
        pad_series([(np.arange(3.0), np.ones(2))])


def test_every_generator_range_is_documented_in_the_one_data_page():
    import re
    from dataclasses import fields
    from pathlib import Path

    from serving.synthetic.ps_series import PSSeriesParams

    text = (Path(__file__).resolve().parents[1] / "docs" / "synthetic-data.md").read_text()
    missing = [f.name for f in fields(PSSeriesParams) if not re.search(rf"\b{f.name}\b", text)]
    assert not missing, f"PSSeriesParams fields missing from docs/synthetic-data.md: {missing}"
