"""The synthetic hot spot scenes behind the delineation U-Net, and its training augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.hotspots.terrain import slope_aspect
from serving.synthetic.ada_scenes import (
    DEFAULT_SCENE_PARAMS,
    LOS_ASCENDING,
    LOS_DESCENDING,
    generate_scenes,
    make_scene,
    make_terrain,
)
from serving.training.delineation import augment, drop_terrain, rotate_aspect


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(np.random.default_rng([7, i]), with_clusters=True) for i in range(6)]


def test_los_vectors_are_unit_and_look_the_right_way():
    for los in (LOS_ASCENDING, LOS_DESCENDING):
        assert np.linalg.norm(los) == pytest.approx(1.0)
        assert los[2] == pytest.approx(np.cos(np.radians(39.0)))
    # Ascending looks east, so the ground-to-satellite vector points west; descending east.
    assert LOS_ASCENDING[0] < -0.5 < 0.5 < LOS_DESCENDING[0]


def test_same_seed_same_scene_other_seed_other_scene():
    a = make_scene(np.random.default_rng([1, 2]))
    b = make_scene(np.random.default_rng([1, 2]))
    c = make_scene(np.random.default_rng([1, 3]))
    np.testing.assert_array_equal(a.density, b.density)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.density, c.density)


def test_scene_shapes_and_labels(scenes):
    n = DEFAULT_SCENE_PARAMS.size
    for s in scenes:
        assert s.density.shape == s.aspect_deg.shape == s.slope_deg.shape == (n, n)
        assert s.density.dtype == np.float32
        assert set(np.unique(s.label)) <= {0, 1}
        np.testing.assert_array_equal(s.label, s.instances > 0)
        assert s.instances.max() == len(s.kinds)
        for k in range(1, len(s.kinds) + 1):
            assert (s.instances == k).sum() >= DEFAULT_SCENE_PARAMS.min_area_cells
        assert s.clustered is not None and s.clustered.shape == (n, n)
    assert any(s.kinds for s in scenes)


def test_deformation_areas_stand_out_on_the_hot_spot_map(scenes):
    inside = np.concatenate([np.abs(s.density[s.label > 0]) for s in scenes])
    outside = np.concatenate([np.abs(s.density[s.label == 0]) for s in scenes])
    assert np.median(inside) > 3 * np.median(outside)


def test_landslides_stay_on_one_slope_face(scenes):
    checked = 0
    for s in scenes:
        for k, kind in enumerate(s.kinds, start=1):
            if kind != "landslide":
                continue
            aspect = s.aspect_deg[s.instances == k].astype(float)
            assert np.isfinite(aspect).all()
            centre = np.degrees(np.angle(np.exp(1j * np.radians(aspect)).mean()))
            spread = np.abs((aspect - centre + 180) % 360 - 180)
            # Clipped at 60 degrees from the seed cell's aspect: within 120 of the mean.
            assert spread.max() <= 120.0
            checked += 1
    assert checked


def test_terrain_has_a_realistic_slope_distribution():
    _, slope, aspect = make_terrain(np.random.default_rng(3), DEFAULT_SCENE_PARAMS)
    p90 = np.percentile(slope, 90)
    assert 8.0 < p90 < 40.0
    assert np.isnan(aspect).mean() < 0.5


def test_generate_scenes_matches_make_scene():
    data = generate_scenes(3, 5, workers=1, progress=False)
    one = make_scene(np.random.default_rng([5, 1]))
    np.testing.assert_array_equal(data.density[1], one.density)
    np.testing.assert_array_equal(data.label[1], one.label)
    assert data.clustered.size == 0


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_rotated_aspect_is_the_aspect_of_the_rotated_terrain(k, flip):
    dem, _, aspect = make_terrain(np.random.default_rng(11), DEFAULT_SCENE_PARAMS)
    turned = np.rot90(dem, k)
    turned = turned[:, ::-1] if flip else turned
    _, expected = slope_aspect(turned, 50.0, 50.0)
    got = np.rot90(rotate_aspect(aspect, k, flip), k)
    got = got[:, ::-1] if flip else got
    diff = np.abs((expected - got + 180) % 360 - 180)[1:-1, 1:-1]
    assert np.nanmax(diff) < 1e-3


def test_augment_keeps_inputs_and_labels_aligned():
    rng = np.random.default_rng(0)
    density = rng.normal(size=(8, 8)).astype(np.float32)
    label = (density > 0.5).astype(np.uint8)
    aspect = np.full((8, 8), 90.0, np.float32)
    slope = np.abs(density)
    for seed in range(8):
        d, a, s, y = augment(density, aspect, slope, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(y, (d > 0.5).astype(np.uint8))
        np.testing.assert_array_equal(s, np.abs(d))
        assert len(np.unique(a)) == 1 and float(a[0, 0]) in (0.0, 90.0, 180.0, 270.0)


def test_drop_terrain_shares():
    rng = np.random.default_rng(1)
    aspect = np.ones((2, 2), np.float32)
    slope = np.ones((2, 2), np.float32)
    outcomes = {"none": 0, "aspect": 0, "both": 0}
    for _ in range(2000):
        a, s = drop_terrain(aspect, slope, rng)
        key = "none" if np.isnan(a).all() else "aspect" if np.isnan(s).all() else "both"
        outcomes[key] += 1
    assert outcomes["none"] / 2000 == pytest.approx(0.25, abs=0.04)
    assert outcomes["aspect"] / 2000 == pytest.approx(0.5, abs=0.04)
