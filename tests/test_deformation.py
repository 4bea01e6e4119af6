"""Deformation sources: Okada (1985) check values, Mogi analytic values, symmetry, decay, LOS."""

from __future__ import annotations

import numpy as np
import pytest

from serving.synthetic.deformation import (
    MogiSource,
    OkadaSource,
    los_vector,
    mogi_displacement,
    okada85_fault_frame,
    okada_displacement,
    project_los,
    source_los,
)

# Okada (1985), Table 2, case 2: x=2, y=3, d=4, dip=70, L=3, W=2, lambda = mu, unit dislocation.
OKADA_TABLE2_CASE2 = {
    (1.0, 0.0, 0.0): (-8.689e-3, -4.298e-3, -2.747e-3),  # strike slip
    (0.0, 1.0, 0.0): (-4.682e-3, -3.527e-2, -3.564e-2),  # dip slip
    (0.0, 0.0, 1.0): (-2.660e-4, 1.056e-2, 3.214e-3),  # tensile
}


@pytest.mark.parametrize("dislocation", list(OKADA_TABLE2_CASE2))
def test_okada_matches_the_check_values_of_okada_1985_table_2(dislocation):
    got = okada85_fault_frame(np.array([2.0]), np.array([3.0]), 4.0, 70.0, 3.0, 2.0, *dislocation)
    want = OKADA_TABLE2_CASE2[dislocation]
    for g, w in zip(got, want, strict=True):
        assert g[0] == pytest.approx(w, rel=2e-3, abs=2e-7)


@pytest.mark.parametrize("dislocation", list(OKADA_TABLE2_CASE2))
def test_okada_vertical_fault_formulas_are_the_limit_of_steep_dips(dislocation):
    x = np.array([2.0, -1.0, 5.0])
    y = np.array([3.0, -2.0, 1.0])
    vertical = np.array(okada85_fault_frame(x, y, 4.0, 90.0, 3.0, 2.0, *dislocation))
    steep = np.array(okada85_fault_frame(x, y, 4.0, 89.999, 3.0, 2.0, *dislocation))
    np.testing.assert_allclose(vertical, steep, atol=1e-5)


def test_mogi_uplift_above_the_source_equals_the_analytic_maximum():
    src = MogiSource(1000.0, -500.0, depth=3000.0, volume_change=2e6)
    e, n = np.meshgrid(np.linspace(-9000, 11000, 201), np.linspace(-10500, 9500, 201))
    _, _, uz = mogi_displacement(e, n, src, nu=0.25)
    want = (1 - 0.25) * 2e6 / (np.pi * 3000.0**2)  # m
    assert uz.max() == pytest.approx(want, rel=1e-9)
    assert e.flat[np.argmax(uz)] == pytest.approx(1000.0) and n.flat[
        np.argmax(uz)
    ] == pytest.approx(-500.0)


def test_mogi_is_radially_symmetric_and_decays_as_inverse_cube():
    src = MogiSource(0.0, 0.0, depth=2000.0, volume_change=1e6)
    r = np.array([1000.0, 3000.0])
    ue, _, uz_e = mogi_displacement(r, np.zeros(2), src)
    _, un, uz_n = mogi_displacement(np.zeros(2), r, src)
    np.testing.assert_allclose(uz_e, uz_n)
    np.testing.assert_allclose(ue, un)
    _, _, far = mogi_displacement(np.array([1e5, 2e5]), np.zeros(2), src)
    assert far[0] / far[1] == pytest.approx(8.0, rel=1e-3)


def test_small_deep_okada_sill_tends_to_the_point_tensile_crack():
    # Okada's point source for a horizontal crack: u_z = 3 dV d^3 / (2 pi R^5), independent of nu.
    depth, side, opening = 5000.0, 200.0, 1.0
    src = OkadaSource(
        0.0, 0.0, depth, strike=0.0, dip=1e-4, length=side, width=side, opening=opening
    )
    e = np.array([0.0, 2000.0, 5000.0, 8000.0])
    _, _, uz = okada_displacement(e, np.zeros_like(e), src)
    big_r = np.sqrt(e**2 + depth**2)
    want = 3 * opening * side**2 * depth**3 / (2 * np.pi * big_r**5)
    np.testing.assert_allclose(uz, want, rtol=5e-3)


def test_vertical_dyke_uplift_is_symmetric_across_the_dyke_plane():
    src = OkadaSource(
        0.0, 0.0, depth=3000.0, strike=0.0, dip=90.0, length=6000.0, width=4000.0, opening=1.0
    )
    e = np.array([500.0, 2000.0, 6000.0])
    n = np.array([0.0, 1000.0, -2500.0])
    ue_p, _, uz_p = okada_displacement(e, n, src)
    ue_m, _, uz_m = okada_displacement(-e, n, src)
    np.testing.assert_allclose(uz_p, uz_m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ue_p, -ue_m, rtol=1e-9, atol=1e-12)
    assert np.all(ue_p > 0)  # the walls are pushed apart


def test_vertical_strike_slip_uplift_has_the_four_quadrant_pattern():
    src = OkadaSource(
        0.0,
        0.0,
        depth=3000.0,
        strike=0.0,
        dip=90.0,
        length=8000.0,
        width=4000.0,
        rake=0.0,
        slip=1.0,
    )
    e, n = np.array([1500.0]), np.array([3000.0])
    uz = [okada_displacement(se * e, sn * n, src)[2][0] for se, sn in ((1, 1), (-1, 1), (1, -1))]
    assert uz[0] == pytest.approx(-uz[1], rel=1e-9)
    assert uz[0] == pytest.approx(-uz[2], rel=1e-9)


def test_okada_displacement_decays_in_the_far_field():
    src = OkadaSource(
        0.0,
        0.0,
        depth=4000.0,
        strike=30.0,
        dip=60.0,
        length=5000.0,
        width=3000.0,
        rake=90.0,
        slip=1.0,
        opening=0.5,
    )
    near = np.linalg.norm(okada_displacement(np.array([2000.0]), np.array([0.0]), src), axis=0)
    far = np.linalg.norm(okada_displacement(np.array([200000.0]), np.array([0.0]), src), axis=0)
    assert far[0] < 1e-3 * near[0]


def test_okada_rejects_a_fault_breaking_the_surface():
    with pytest.raises(ValueError, match="below the surface"):
        okada_displacement(
            np.zeros(1),
            np.zeros(1),
            OkadaSource(0, 0, 500.0, 0.0, 90.0, 1000.0, 2000.0, opening=1.0),
        )


def test_mogi_rejects_a_source_above_ground():
    with pytest.raises(ValueError, match="depth"):
        mogi_displacement(np.zeros(1), np.zeros(1), MogiSource(0, 0, 0.0, 1e6))


@pytest.mark.parametrize("heading", [-10.0, 190.0, -170.0])
def test_los_vector_is_unit_and_uplift_moves_towards_the_satellite(heading):
    v = los_vector(38.0, heading)
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert project_los(0.0, 0.0, 1.0, 38.0, heading) == pytest.approx(np.cos(np.deg2rad(38.0)))


def test_ascending_radar_looks_east_so_eastward_motion_moves_away():
    assert los_vector(38.0, -10.0)[0] < 0  # ascending: ground-to-satellite points west
    assert los_vector(38.0, 190.0)[0] > 0  # descending: it points east


def test_source_los_combines_displacement_and_geometry():
    src = MogiSource(0.0, 0.0, 2000.0, 1e6)
    e, n = np.array([0.0, 1500.0]), np.array([0.0, -700.0])
    ue, un, uz = mogi_displacement(e, n, src)
    np.testing.assert_allclose(
        source_los(e, n, src, 35.0, -10.0), project_los(ue, un, uz, 35.0, -10.0)
    )
