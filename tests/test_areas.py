"""Active deformation areas: clustering, outlines, tracking across windows, GeoJSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, Polygon, shape

from pipelines.hotspots.areas import (
    Area,
    TrackedArea,
    areas_to_geojson,
    cluster_areas,
    track_areas,
)

SPACING = 50.0  # m between neighbouring points of a synthetic cluster


def block(x0: float, y0: float, nx: int, ny: int) -> np.ndarray:
    """Grid of points, SPACING apart, lower-left corner at (x0, y0); shape (nx * ny, 2)."""
    gx, gy = np.meshgrid(x0 + SPACING * np.arange(nx), y0 + SPACING * np.arange(ny))
    return np.column_stack([gx.ravel(), gy.ravel()])


def scene(*blocks: tuple[np.ndarray, float, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate (points, velocity mm/yr, hotspot class) blocks into point arrays."""
    xy = np.vstack([b[0] for b in blocks])
    vel = np.concatenate([np.full(len(b[0]), b[1]) for b in blocks])
    cls = np.concatenate([np.full(len(b[0]), b[2], dtype=np.int8) for b in blocks])
    return xy, vel, cls


def areas_of(*blocks: tuple[np.ndarray, float, int], **kwargs) -> list[Area]:
    xy, vel, cls = scene(*blocks)
    return cluster_areas(xy, vel, cls, **kwargs)


# --- clustering -----------------------------------------------------------------------------


def test_two_separated_clusters_give_two_areas_with_their_attributes():
    hot = block(0, 0, 5, 5)
    cold = block(3000, 1000, 4, 3)
    xy, vel, cls = scene((hot, 20.0, 3), (cold, -30.0, -2))
    vel[:25] += np.linspace(0.0, 10.0, 25)  # hot speeds 20..30 mm/yr
    trend = np.r_[np.full(20, 1), np.full(5, 2), np.full(12, 3)].astype(np.int8)
    pid = np.array([f"P{i:03d}" for i in range(len(xy))])

    areas = cluster_areas(xy, vel, cls, trend_class=trend, pid=pid)

    assert [a.sign for a in areas] == ["hot", "cold"]
    a_hot, a_cold = areas
    assert a_hot.n_points == 25 and a_cold.n_points == 12
    np.testing.assert_array_equal(a_hot.point_index, np.arange(25))
    np.testing.assert_array_equal(a_cold.point_index, np.arange(25, 37))
    np.testing.assert_array_equal(a_cold.pid, pid[25:])
    assert a_hot.mean_abs_velocity == pytest.approx(25.0)
    assert a_hot.max_abs_velocity == pytest.approx(30.0)
    assert a_cold.mean_abs_velocity == pytest.approx(30.0)
    assert a_hot.dominant_trend == "linear" and a_cold.dominant_trend == "bilinear"
    assert a_hot.centroid == pytest.approx((100.0, 100.0))
    assert a_cold.centroid == pytest.approx((3075.0, 1050.0))
    for area, pts in ((a_hot, hot), (a_cold, cold)):
        assert isinstance(area.polygon, Polygon) and area.polygon.is_valid
        assert area.area_m2 == pytest.approx(area.polygon.area)
        assert all(area.polygon.contains(Point(p)) for p in pts)
    # 200 m x 200 m grid plus a 75 m margin: about (200 + 150)^2 minus rounded corners.
    assert 0.9 * 350**2 < a_hot.area_m2 < 350**2
    assert not a_hot.polygon.intersects(a_cold.polygon)


def test_touching_hot_and_cold_clusters_stay_separate_areas():
    # 50 m apart across the boundary: linked if clustered together.
    areas = areas_of((block(0, 0, 4, 4), 25.0, 3), (block(200, 0, 4, 4), -25.0, -3))
    assert sorted((a.sign, a.n_points) for a in areas) == [("cold", 16), ("hot", 16)]


def test_points_below_the_stability_threshold_are_left_out_even_if_significant():
    slow = block(0, 0, 5, 5)
    xy, vel, cls = scene((slow, 9.9, 3))
    assert cluster_areas(xy, vel, cls) == []
    assert len(cluster_areas(xy, vel, cls, stability_threshold=5.0)) == 1

    vel_mixed = vel.copy()
    vel_mixed[:10] = 12.0  # two rows of the grid exceed 10 mm/yr
    (area,) = cluster_areas(xy, vel_mixed, cls)
    np.testing.assert_array_equal(area.point_index, np.arange(10))


def test_velocity_against_the_spot_sign_is_left_out():
    xy, vel, cls = scene((block(0, 0, 5, 5), 20.0, 2))
    vel[12] = -40.0  # a fast point moving away inside a hot spot
    (area,) = cluster_areas(xy, vel, cls)
    assert area.n_points == 24 and 12 not in area.point_index
    assert area.max_abs_velocity == pytest.approx(20.0)


def test_not_significant_points_are_left_out_however_fast():
    xy, vel, cls = scene((block(0, 0, 5, 5), 50.0, 0))
    assert cluster_areas(xy, vel, cls) == []


@pytest.mark.parametrize(("min_points", "expected"), [(4, [4, 6]), (5, [6]), (7, [])])
def test_components_with_fewer_than_min_points_are_dropped(min_points, expected):
    areas = areas_of(
        (block(0, 0, 2, 2), 15.0, 1), (block(1000, 0, 3, 2), 15.0, 1), min_points=min_points
    )
    assert sorted(a.n_points for a in areas) == expected


def test_points_exactly_distance_apart_are_linked_into_one_polygon():
    xy = np.column_stack([150.0 * np.arange(6), np.zeros(6)])
    (area,) = cluster_areas(xy, np.full(6, 20.0), np.full(6, 1, np.int8), distance=150.0)
    assert area.n_points == 6
    assert isinstance(area.polygon, Polygon)
    # Slightly further apart: two components of three.
    xy_far = xy.copy()
    xy_far[3:, 0] += 1.0
    areas = cluster_areas(xy_far, np.full(6, 20.0), np.full(6, 1, np.int8), min_points=3)
    assert [a.n_points for a in areas] == [3, 3]


def test_nan_velocities_and_coordinates_are_ignored():
    xy, vel, cls = scene((block(0, 0, 5, 5), 20.0, 3))
    vel[0] = np.nan
    xy[1] = np.nan
    (area,) = cluster_areas(xy, vel, cls)
    assert area.n_points == 23 and not {0, 1} & set(area.point_index.tolist())


def test_small_gaps_are_filled_but_a_wide_empty_core_stays_a_hole():
    (grid,) = areas_of((block(0, 0, 6, 6), 20.0, 3))
    assert len(grid.polygon.interiors) == 0
    # A ring of points, radius 600 m: the empty core (~525 m radius) is real stable ground.
    angles = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    ring = np.column_stack([600 * np.cos(angles), 600 * np.sin(angles)])
    (area,) = cluster_areas(ring, np.full(80, -20.0), np.full(80, -3, np.int8))
    assert len(area.polygon.interiors) == 1
    assert not area.polygon.contains(Point(0, 0))


def test_dominant_trend_ignores_unclassified_points_and_breaks_ties_low():
    xy, vel, cls = scene((block(0, 0, 3, 2), 20.0, 3))
    (a,) = cluster_areas(xy, vel, cls, trend_class=np.array([-1, -1, -1, -1, 4, 2], np.int8))
    assert a.dominant_trend == "quadratic"
    (b,) = cluster_areas(xy, vel, cls, trend_class=np.full(6, -1, np.int8))
    assert b.dominant_trend is None
    (c,) = cluster_areas(xy, vel, cls)
    assert c.dominant_trend is None and c.pid is None


def test_no_points_give_no_areas():
    assert cluster_areas(np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int8)) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"distance": 0.0}, "distance"),
        ({"min_points": 0}, "min_points"),
        ({"stability_threshold": -1.0}, "stability_threshold"),
        ({"trend_class": np.zeros(3, np.int8)}, "trend_class"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    xy, vel, cls = scene((block(0, 0, 2, 2), 20.0, 3))
    with pytest.raises(ValueError, match=match):
        cluster_areas(xy, vel, cls, **kwargs)


def test_float_hotspot_classes_are_rejected():
    with pytest.raises(ValueError, match="integer"):
        cluster_areas(np.zeros((2, 2)), np.zeros(2), np.zeros(2))


# --- tracking -------------------------------------------------------------------------------


def one_area(x0: float, y0: float, nx: int, ny: int, sign: str = "hot") -> Area:
    v, c = (20.0, 3) if sign == "hot" else (-20.0, -3)
    (area,) = areas_of((block(x0, y0, nx, ny), v, c))
    return area


def first_window(*areas: Area) -> tuple[TrackedArea, ...]:
    return track_areas([], list(areas), window_end="2024-01-01").active


def test_first_window_areas_are_new_with_ids_in_centroid_order():
    active = first_window(one_area(5000, 0, 3, 3), one_area(0, 0, 3, 3, "cold"))
    assert [(t.id, t.status, t.area.sign) for t in active] == [
        ("ada-2024-01-01-0", "new", "cold"),
        ("ada-2024-01-01-1", "new", "hot"),
    ]
    assert all(t.first_seen == t.last_seen == "2024-01-01" for t in active)


def test_same_area_in_the_next_window_keeps_its_id_and_is_stable():
    (before,) = first_window(one_area(0, 0, 5, 5))
    result = track_areas([before], [one_area(0, 0, 5, 5)], window_end="2024-02-01")
    (after,) = result.active
    assert (after.id, after.status) == (before.id, "stable")
    assert (after.first_seen, after.last_seen) == ("2024-01-01", "2024-02-01")
    assert result.gone == ()


@pytest.mark.parametrize(("ny", "status"), [(8, "growing"), (4, "shrinking"), (5, "stable")])
def test_area_change_beyond_ten_percent_is_growing_or_shrinking(ny, status):
    (before,) = first_window(one_area(0, 0, 5, 5))
    (after,) = track_areas([before], [one_area(0, 0, 5, ny)], window_end="2024-02-01").active
    assert (after.id, after.status) == (before.id, status)


def test_change_threshold_is_a_parameter():
    (before,) = first_window(one_area(0, 0, 5, 5))
    # One more row of points: roughly +15 % area.
    now = [one_area(0, 0, 5, 6)]
    assert track_areas([before], now, window_end="w2").active[0].status == "growing"
    loose = track_areas([before], now, window_end="w2", change_threshold=0.5)
    assert loose.active[0].status == "stable"


def test_two_areas_merging_keep_the_larger_id_and_list_both():
    big, small = first_window(one_area(0, 0, 6, 6), one_area(500, 0, 3, 3))
    assert big.area.area_m2 > small.area.area_m2
    # One area spanning both (and the gap between them).
    (merged,) = track_areas([big, small], [one_area(0, 0, 14, 6)], window_end="w2").active
    assert merged.status == "merged"
    assert merged.id == big.id
    assert merged.merged_from == tuple(sorted([big.id, small.id]))
    assert merged.split_from is None


def test_one_area_splitting_keeps_the_id_on_the_largest_piece():
    (whole,) = first_window(one_area(0, 0, 14, 6))
    result = track_areas([whole], [one_area(0, 0, 3, 3), one_area(400, 0, 6, 6)], window_end="w2")
    small, large = result.active  # centroid order
    assert large.area.area_m2 > small.area.area_m2
    assert (large.id, large.status, large.split_from) == (whole.id, "split", whole.id)
    assert (small.id, small.status, small.split_from) == ("ada-w2-0", "split", whole.id)
    assert small.first_seen == whole.first_seen == "2024-01-01"
    assert result.gone == ()


def test_disappearing_area_is_reported_gone_once():
    kept, lost = first_window(one_area(0, 0, 4, 4), one_area(5000, 0, 4, 4))
    second = track_areas([kept, lost], [one_area(0, 0, 4, 4)], window_end="w2")
    assert [t.id for t in second.active] == [kept.id]
    (gone,) = second.gone
    assert (gone.id, gone.status, gone.last_seen) == (lost.id, "gone", "2024-01-01")
    third = track_areas(second.active, [one_area(0, 0, 4, 4)], window_end="w3")
    assert third.gone == ()
    # Gone entries handed back by mistake are ignored, not resurrected.
    again = track_areas([*second.active, *second.gone], [one_area(0, 0, 4, 4)], window_end="w3")
    assert again.gone == () and [t.id for t in again.active] == [kept.id]


def test_area_appearing_elsewhere_is_new():
    (old,) = first_window(one_area(0, 0, 4, 4))
    result = track_areas([old], [one_area(0, 0, 4, 4), one_area(9000, 0, 4, 4)], window_end="w2")
    assert [(t.id, t.status) for t in result.active] == [
        (old.id, "stable"),
        ("ada-w2-0", "new"),
    ]
    assert result.active[1].first_seen == "w2"


def test_overlapping_area_of_the_other_sign_is_not_the_same_area():
    (hot,) = first_window(one_area(0, 0, 4, 4, "hot"))
    result = track_areas([hot], [one_area(0, 0, 4, 4, "cold")], window_end="w2")
    assert [(t.status, t.area.sign) for t in result.active] == [("new", "cold")]
    assert [t.id for t in result.gone] == [hot.id]


def test_areas_sharing_points_are_matched_even_without_polygon_overlap():
    def area(x: float, pids: list[str]) -> Area:
        poly = shapely.box(x, 0, x + 10, 10)
        return Area(
            poly,
            "cold",
            len(pids),
            poly.area,
            15.0,
            20.0,
            None,
            np.arange(len(pids)),
            (x + 5, 5.0),
            np.array(pids),
        )

    (before,) = first_window(area(0, ["a", "b", "c"]))
    (after,) = track_areas([before], [area(100, ["c", "d"])], window_end="w2").active
    assert (after.id, after.status) == (before.id, "stable")


def test_new_ids_are_deterministic_whatever_the_input_order():
    (old,) = first_window(one_area(0, 0, 4, 4))
    current = [one_area(x, y, 3, 3) for x, y in ((9000, 0), (3000, 500), (6000, -200))]
    current.append(one_area(0, 0, 4, 4))
    runs = [
        track_areas([old], [current[i] for i in order], window_end="w2").active
        for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2])
    ]
    ids = [[(t.id, t.status, t.area.centroid) for t in run] for run in runs]
    assert ids[0] == ids[1] == ids[2]
    new = {t.area.centroid[0]: t.id for t in runs[0] if t.status == "new"}
    assert [new[x] for x in sorted(new)] == ["ada-w2-0", "ada-w2-1", "ada-w2-2"]


def test_new_ids_skip_ids_already_in_use():
    (old,) = track_areas([], [one_area(0, 0, 4, 4)], window_end="w1", id_prefix="x").active
    assert old.id == "x-w1-0"
    # Same window label again (e.g. a re-run over the tracking output).
    result = track_areas(
        [old], [one_area(0, 0, 4, 4), one_area(900, 0, 4, 4)], window_end="w1", id_prefix="x"
    )
    assert [t.id for t in result.active] == ["x-w1-0", "x-w1-1"]


def test_duplicate_previous_ids_are_rejected():
    (t,) = first_window(one_area(0, 0, 4, 4))
    with pytest.raises(ValueError, match="duplicate"):
        track_areas([t, t], [], window_end="w2")
    with pytest.raises(ValueError, match="window_end"):
        track_areas([], [], window_end="")


# --- GeoJSON --------------------------------------------------------------------------------

UTM33N = "EPSG:32633"
X0, Y0 = 500_000.0, 4_540_000.0  # near 15 E, 41 N


def tracked_pair() -> list[TrackedArea]:
    first = track_areas(
        [], [one_area(X0, Y0, 5, 5), one_area(X0 + 3000, Y0, 4, 4, "cold")], window_end="2024-01-01"
    )
    second = track_areas(first.active, [one_area(X0, Y0, 5, 7)], window_end="2024-02-01")
    return [*second.active, *second.gone]


PROPERTIES = {
    "id",
    "status",
    "sign",
    "n_points",
    "area_m2",
    "mean_abs_velocity_mm_yr",
    "max_abs_velocity_mm_yr",
    "dominant_trend",
    "first_seen",
    "last_seen",
    "merged_from",
    "split_from",
}


def test_geojson_in_lonlat_round_trips_through_shapely():
    transformer = Transformer.from_crs(UTM33N, "EPSG:4326", always_xy=True)
    back = Transformer.from_crs("EPSG:4326", UTM33N, always_xy=True)

    def to_lonlat(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return transformer.transform(xy[:, 0], xy[:, 1])

    tracked = tracked_pair()
    collection = json.loads(json.dumps(areas_to_geojson(tracked, to_lonlat)))
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    assert len(collection["features"]) == 2
    for feature, t in zip(collection["features"], tracked, strict=True):
        assert feature["type"] == "Feature" and feature["id"] == t.id
        assert set(feature["properties"]) == PROPERTIES
        geom = shape(feature["geometry"])
        assert geom.is_valid and geom.geom_type == "Polygon"
        lon, lat = geom.centroid.x, geom.centroid.y
        assert 14.9 < lon < 15.1 and 40.9 < lat < 41.1
        coords = np.asarray(geom.exterior.coords)
        np.testing.assert_array_equal(coords, np.round(coords, 7))
        # Back to metres: the same area within projection error.
        metric = shapely.transform(geom, lambda c: np.column_stack(back.transform(*c.T)))
        assert metric.area == pytest.approx(t.area.area_m2, rel=1e-4)
    props = [f["properties"] for f in collection["features"]]
    assert [(p["status"], p["sign"]) for p in props] == [("growing", "hot"), ("gone", "cold")]
    assert props[0]["merged_from"] == [] and props[0]["split_from"] is None
    assert props[0]["first_seen"] == "2024-01-01" and props[0]["last_seen"] == "2024-02-01"
    assert props[1]["last_seen"] == "2024-01-01"
    assert props[0]["n_points"] == 35
    assert props[0]["mean_abs_velocity_mm_yr"] == pytest.approx(20.0)


def test_geojson_without_transform_keeps_metres_and_says_so():
    tracked = tracked_pair()
    collection = areas_to_geojson(tracked, None, crs_name=UTM33N)
    assert collection["crs"]["properties"]["name"] == UTM33N
    geom = shape(collection["features"][0]["geometry"])
    assert geom.area == pytest.approx(tracked[0].area.area_m2, rel=1e-4)  # cm rounding
    assert math.isclose(geom.centroid.x, X0 + 100, abs_tol=5)
    json.dumps(collection)  # serialisable as is


def test_merge_and_split_competing_for_one_id_give_unique_ids():
    # p1 breaks into a large piece and a small piece; the small piece also absorbs p2.
    p1, p2 = first_window(one_area(0, 0, 10, 4), one_area(700, 0, 4, 4))
    result = track_areas([p1, p2], [one_area(0, 0, 7, 4), one_area(500, 0, 6, 4)], window_end="w2")
    large, joined = result.active
    assert (large.id, large.status, large.split_from) == (p1.id, "split", p1.id)
    assert joined.status == "merged"
    assert joined.merged_from == tuple(sorted([p1.id, p2.id]))
    # p1's id went to its largest piece, so the merged area keeps p2's.
    assert joined.id == p2.id
    assert result.gone == ()
