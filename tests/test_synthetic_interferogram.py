"""Synthetic interferograms: shapes, wrapping, determinism, proportions, texture, frames."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from serving.synthetic.deformation import MogiSource
from serving.synthetic.interferogram import (
    DEFAULT_PARAMS,
    KINDS,
    InterferogramParams,
    _draw_patch,
    decorrelation,
    generate_dataset,
    generate_frame,
    generate_patch,
    goldstein_filter,
    power_law_field,
    wrap,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "synthetic-data.md"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_patch_is_wrapped_float32_of_patch_size(kind):
    phase, peak = _draw_patch(np.random.default_rng(3), kind, DEFAULT_PARAMS)
    assert phase.shape == (224, 224) and phase.dtype == np.float32
    finite = phase[np.isfinite(phase)]
    assert finite.size > 0.04 * phase.size
    assert finite.min() >= -np.pi - 1e-6 and finite.max() <= np.pi + 1e-6
    if kind in ("mogi", "okada"):
        assert DEFAULT_PARAMS.label_min_fringes <= peak <= DEFAULT_PARAMS.peak_fringes_log[1]
    else:
        assert peak == 0.0


@pytest.mark.parametrize(("label", "hard"), [(True, False), (False, True), (False, False)])
def test_generate_patch_is_deterministic_for_a_seed(label, hard):
    a = generate_patch(np.random.default_rng(11), label, DEFAULT_PARAMS, hard)
    b = generate_patch(np.random.default_rng(11), label, DEFAULT_PARAMS, hard)
    np.testing.assert_array_equal(a, b)


def test_a_positive_hard_negative_is_refused():
    with pytest.raises(ValueError, match="both"):
        generate_patch(np.random.default_rng(0), True, DEFAULT_PARAMS, hard_negative=True)


def test_dataset_has_the_requested_proportions_and_labels_follow_kinds():
    data = generate_dataset(20, np.random.default_rng(5), DEFAULT_PARAMS, 0.5, 0.3, chunk=8)
    assert data.phase.shape == (20, 224, 224) and data.phase.dtype == np.float32
    assert data.labels.sum() == 10
    assert (data.kinds == "hard_negative").sum() == 6
    np.testing.assert_array_equal(data.labels, np.isin(data.kinds, ("mogi", "okada")))
    assert np.all(data.peak_fringes[data.labels] >= DEFAULT_PARAMS.label_min_fringes)
    assert np.all(data.peak_fringes[~data.labels] == 0)


def test_dataset_does_not_depend_on_the_number_of_workers():
    one = generate_dataset(8, np.random.default_rng(9), chunk=4, workers=1)
    two = generate_dataset(8, np.random.default_rng(9), chunk=4, workers=2)
    np.testing.assert_array_equal(one.phase, two.phase)
    np.testing.assert_array_equal(one.kinds, two.kinds)


def test_a_patch_is_generated_in_tens_of_milliseconds():
    rng = np.random.default_rng(1)
    _draw_patch(rng, "negative", DEFAULT_PARAMS)
    # CPU time of this process, so other jobs on the shared cores do not make it flaky.
    t0 = time.process_time()
    for kind in KINDS * 2:
        _draw_patch(rng, kind, DEFAULT_PARAMS)
    assert (time.process_time() - t0) / 8 < 0.15


def test_power_law_field_is_standardised_and_higher_exponents_are_smoother():
    rng = np.random.default_rng(2)
    rough = power_law_field(rng, (224, 224), 2.0, 500.0)
    smooth = power_law_field(rng, (224, 224), 4.0, 500.0)
    for f in (rough, smooth):
        assert abs(f.mean()) < 1e-9 and f.std() == pytest.approx(1.0)
    assert np.abs(np.diff(smooth, axis=1)).mean() < 0.3 * np.abs(np.diff(rough, axis=1)).mean()


def test_decorrelated_areas_are_large_smooth_regions_not_salt_and_pepper():
    params = dataclasses.replace(
        DEFAULT_PARAMS,
        decorrelation_probability=1.0,
        decorrelated_fraction=(0.3, 0.3),
        water_probability=0.0,
    )
    _, bad = decorrelation(np.random.default_rng(7), (224, 224), params)
    assert bad.mean() == pytest.approx(0.3, abs=0.01)
    _, n_regions = ndimage.label(bad)
    assert bad.sum() / n_regions > 200  # mean region area, pixels


def test_goldstein_filter_with_zero_alpha_and_no_smoothing_is_the_identity():
    z = np.exp(1j * np.random.default_rng(0).uniform(-np.pi, np.pi, (100, 130)))
    np.testing.assert_allclose(goldstein_filter(z, 0.0, smooth=1), z, atol=1e-4)


def test_goldstein_filter_reduces_phase_noise_of_a_smooth_signal():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:224, 0:224]
    truth = 0.08 * xx + 0.03 * yy
    noisy = truth + 0.8 * rng.standard_normal(truth.shape)
    filt = np.angle(goldstein_filter(np.exp(1j * noisy), 0.8))
    err_before = np.abs(wrap(noisy - truth)).mean()
    err_after = np.abs(wrap(filt - truth)).mean()
    assert err_after < 0.6 * err_before


def test_wrap_maps_to_minus_pi_pi_and_keeps_nan():
    out = wrap(np.array([0.0, 3 * np.pi / 2, -7.0, np.nan]))
    np.testing.assert_allclose(out[:3], [0.0, -np.pi / 2, -7.0 + 2 * np.pi], atol=1e-12)
    assert np.isnan(out[3])


def test_a_frame_keeps_its_shape_and_carries_a_geotransform_and_truth():
    p = DEFAULT_PARAMS
    src = MogiSource(300 * p.pixel_m, -200 * p.pixel_m, 3000.0, 5e6)
    frame = generate_frame(np.random.default_rng(0), (300, 400), [src], p)
    assert frame.phase.shape == (300, 400) and frame.phase.dtype == np.float32
    assert frame.transform.a == pytest.approx(0.001) and frame.transform.e == pytest.approx(-0.001)
    r, c = np.unravel_index(np.argmax(frame.deformation_fringes), frame.deformation_fringes.shape)
    assert abs(r - 200) <= 25 and abs(c - 300) <= 25  # LOS peak near the source (oblique LOS)


def test_the_params_document_lists_every_range():
    text = DOC.read_text()
    for f in dataclasses.fields(InterferogramParams):
        assert f"`{f.name}`" in text, f"{f.name} missing from {DOC.name}"
