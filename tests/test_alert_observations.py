"""What each alert rule observes in a message (monitor.alerts.observations, .geometry).

The factories below build ``detection.v1`` and ``hotspot.v1`` messages and validate them
against the contracts, so every case is a message the pipeline could really send. Places
are around Etna (summit about 15.00 E, 37.75 N); a 10 km circle around it holds the
"inside" tile and not the "outside" one, about 60 km to the north-east.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pyproj import Geod

from monitor.alerts.engine import evaluate
from monitor.alerts.observations import Observation, observe
from monitor.alerts.payload import build_alert_event
from monitor.alerts.rule_config import HotspotRule, Level, PSTrendRule, UnrestRule
from pipelines.messages import validate

GEOD = Geod(ellps="WGS84")
ETNA = (15.0, 37.75)
ETNA_AREA = {
    "name": "Etna 10 km", "circle": {"longitude": 15.0, "latitude": 37.75, "radius_km": 10}
}
INSIDE = (14.95, 37.70, 15.05, 37.80)  # contains the summit
OUTSIDE = (15.50, 38.20, 15.60, 38.30)
FRAME = (14.0, 37.0, 16.0, 39.0)
MODEL_THRESHOLD = 0.5


# ------------------------------------------------------------------------- factories
def tile(row: int, col: int, probability: float, bounds: tuple[float, ...]) -> dict[str, Any]:
    return {
        "row": row, "col": col, "row0": 64 * row, "col0": 64 * col,
        "probability": probability, "valid_fraction": 1.0, "bounds": list(bounds),
    }


def unrest_detection(
    product: str,
    tiles: list[dict[str, Any]],
    *,
    event_time: str = "2024-01-13",
    volcano_id: str | None = "etna",
    region_id: str | None = None,
    frame_id: str = "124D_05291_131313",
    frame_probability: float | None = None,
    frame_bounds: tuple[float, ...] | None = FRAME,
) -> dict[str, Any]:
    """A valid unrest detection; ``tiles`` are the fired ones (>= the model threshold)."""
    best = max((t["probability"] for t in tiles), default=0.1)
    frame: dict[str, Any] = {
        "unrest": bool(tiles),
        "unrest_probability": best if frame_probability is None else frame_probability,
        "threshold": MODEL_THRESHOLD,
        "n_tiles": 16,
        "min_firing_tiles": 1,
        "tiles": tiles,
    }
    if frame_bounds is not None:
        frame["bounds"] = list(frame_bounds)
    message: dict[str, Any] = {
        "schema": "detection.v1",
        "detection_id": f"unrest:{product}:unrest-cnn@v1",
        "kind": "interferogram_unrest",
        "model": {"name": "unrest-cnn", "version": 1},
        "source": {"topic": "insar.interferograms", "partition": 0, "offset": 7},
        "event_time": event_time,
        "produced_at": "2024-02-01T08:00:00Z",
        "product_id": product,
        "frame_id": frame_id,
        "primary_date": "2024-01-01",
        "secondary_date": event_time,
        "frame": frame,
    }
    if volcano_id is not None:
        message["volcano_id"] = volcano_id
    if region_id is not None:
        message["region_id"] = region_id
    validate("detection.v1", message)
    return message


def change(
    pid: str,
    lon: float,
    lat: float,
    previous: str | None = "stable",
    new: str = "quadratic",
    probability: float = 0.9,
) -> dict[str, Any]:
    return {
        "pid": pid, "longitude": lon, "latitude": lat, "previous_class": previous,
        "new_class": new, "probability": probability,
    }


def ps_detection(
    changes: list[dict[str, Any]],
    *,
    update: str = "upd-1",
    dataset: str = "egms-it",
    tile_id: str = "t0042",
    event_time: str = "2024-02-01",
) -> dict[str, Any]:
    message = {
        "schema": "detection.v1",
        "detection_id": f"ps:{dataset}/{tile_id}/{update}:trend@v1",
        "kind": "ps_trend_change",
        "model": {"name": "trend", "version": 1},
        "source": {"topic": "insar.ps_updates", "partition": 0, "offset": 3},
        "event_time": event_time,
        "produced_at": "2024-02-02T08:00:00Z",
        "dataset_id": dataset,
        "tile_id": tile_id,
        "update_id": update,
        "n_points_classified": 500,
        "n_points_skipped": 0,
        "class_counts": {"stable": 480, "quadratic": 20},
        "changes": changes,
    }
    validate("detection.v1", message)
    return message


def square(lon: float, lat: float, half: float = 0.01) -> dict[str, Any]:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


def ada(
    ada_id: str,
    *,
    status: str = "new",
    sign: str = "cold",
    area_m2: float = 40000.0,
    n_points: int = 25,
    mean_v: float = 12.0,
    max_v: float = 18.0,
) -> dict[str, Any]:
    return {
        "id": ada_id, "status": status, "sign": sign, "n_points": n_points, "area_m2": area_m2,
        "mean_abs_velocity_mm_yr": mean_v, "max_abs_velocity_mm_yr": max_v,
        "dominant_trend": "linear", "centroid": [15.0, 37.75], "geometry": square(15.0, 37.75),
    }


def hotspot_message(
    areas: list[dict[str, Any]], *, hotspot: str = "hs-1", end: str = "2024-03-01",
    dataset: str = "egms-it",
) -> dict[str, Any]:
    message = {
        "schema": "hotspot.v1",
        "hotspot_id": hotspot,
        "dataset_id": dataset,
        "window": {"start": "2023-03-01", "end": end},
        "produced_at": "2024-03-02T00:00:00Z",
        "triggered_by": [{"update_id": "upd-1", "tile_id": "t0042", "topic": "insar.ps_updates",
                          "partition": 0, "offset": 3}],
        "method": {"statistic": "getis_ord_gi_star", "distance_m": 200.0, "fdr": True,
                   "alpha": 0.05, "stability_threshold_mm_yr": 2.0, "crs": "EPSG:32633"},
        "summary": {"n_points": 1000, "n_hot": 10, "n_cold": 30, "mean_velocity_mm_yr": -1.0,
                    "std_velocity_mm_yr": 3.0},
        "areas": areas,
    }
    validate("hotspot.v1", message)
    return message


def bounds_of(area: Any) -> tuple[float, float, float, float]:
    """west, south, east, north of an area's Polygon/MultiPolygon, from its coordinates."""
    geometry = area["geometry"]
    polygons = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [polygons]
    points = [p for polygon in polygons for ring in polygon for p in ring]
    return (min(p[0] for p in points), min(p[1] for p in points),
            max(p[0] for p in points), max(p[1] for p in points))


def open_places_of(observations: list[Observation]) -> dict[str, dict[str, Any]]:
    """What the stage passes as ``open_places``: labels plus the place name."""
    return {o.place_key: {**o.labels, "place_name": o.place_name} for o in observations}


# ------------------------------------------------------------------------ unrest: match
@pytest.mark.parametrize(
    ("rule_fields", "detection_fields", "key"),
    [
        ({"volcano_id": "etna"}, {}, "volcano:etna"),
        ({"region_id": "sicily"}, {"region_id": "sicily"}, "region:sicily"),
        ({"frames": ["124D_05291_131313"]}, {}, "rule:watch"),
    ],
    ids=["volcano_id", "region_id", "frames"],
)
def test_unrest_rule_matches_its_volcano_region_or_frames(
    rule_fields: dict[str, Any], detection_fields: dict[str, Any], key: str
) -> None:
    rule = UnrestRule(name="watch", kind="unrest", **rule_fields)
    det = unrest_detection("p1", [tile(0, 0, 0.7, INSIDE)], **detection_fields)
    [o] = observe(rule, det, {})
    assert o.place_key == key
    assert o.value == 0.7
    assert o.obs_id == "unrest:p1:unrest-cnn@v1"
    assert o.event_time == date(2024, 1, 13)


@pytest.mark.parametrize(
    ("rule_fields", "detection_fields"),
    [
        ({"volcano_id": "stromboli"}, {}),
        ({"region_id": "aeolian"}, {"region_id": "sicily"}),
        ({"region_id": "aeolian"}, {}),
        ({"frames": ["044A_05118_131313"]}, {}),
    ],
    ids=["other_volcano", "other_region", "no_region", "other_frame"],
)
def test_detection_the_unrest_rule_does_not_watch_gives_no_observation(
    rule_fields: dict[str, Any], detection_fields: dict[str, Any]
) -> None:
    rule = UnrestRule(name="watch", kind="unrest", **rule_fields)
    det = unrest_detection("p1", [tile(0, 0, 0.9, INSIDE)], **detection_fields)
    assert observe(rule, det, {}) == []


def test_wildcard_unrest_rule_keeps_one_place_per_volcano() -> None:
    rule = UnrestRule(name="unrest", kind="unrest")
    etna = observe(rule, unrest_detection("p1", [tile(0, 0, 0.7, INSIDE)]), {})
    stromboli = observe(
        rule, unrest_detection("p2", [tile(0, 0, 0.6, INSIDE)], volcano_id="stromboli"), {}
    )
    unnamed = observe(rule, unrest_detection("p3", [], volcano_id=None, frame_id="F9"), {})
    assert [o.place_key for o in etna + stromboli + unnamed] == [
        "volcano:etna", "volcano:stromboli", "frame:F9"
    ]
    assert etna[0].labels == {
        "volcano_id": "etna", "frame_id": "124D_05291_131313", "scope": "volcano"
    }


def test_unrest_rule_ignores_other_kinds_and_schemas_and_a_disabled_rule_sees_nothing() -> None:
    det = unrest_detection("p1", [tile(0, 0, 0.9, INSIDE)])
    assert observe(UnrestRule(name="u", kind="unrest", enabled=False), det, {}) == []
    assert observe(UnrestRule(name="u", kind="unrest"), ps_detection([]), {}) == []
    assert observe(UnrestRule(name="u", kind="unrest"), hotspot_message([ada("a1")]), {}) == []
    assert observe(PSTrendRule(name="p", kind="ps_trend"), det, {}) == []
    assert observe(HotspotRule(name="h", kind="hotspot"), det, {}) == []


# ------------------------------------------------------------------ unrest: rule area
def test_only_tiles_intersecting_the_rule_area_count() -> None:
    rule = UnrestRule(name="etna", kind="unrest", volcano_id="etna", area=ETNA_AREA)
    det = unrest_detection("p1", [tile(1, 1, 0.95, OUTSIDE), tile(0, 0, 0.7, INSIDE)])
    [o] = observe(rule, det, {})
    assert o.value == 0.7
    assert [(t["row"], t["col"]) for t in o.details["tiles"]] == [(0, 0)]
    assert o.area is not None
    assert o.area["description"] == "Etna 10 km"
    assert o.area["circle"] == {"longitude": 15.0, "latitude": 37.75, "radius_km": 10}


def test_area_with_no_tile_inside_while_tiles_fired_elsewhere_is_just_below_the_threshold() -> None:
    rule = UnrestRule(name="etna", kind="unrest", volcano_id="etna", area=ETNA_AREA)
    [o] = observe(rule, unrest_detection("p1", [tile(1, 1, 0.95, OUTSIDE)]), {})
    # Unlisted tiles scored below the model threshold: the tightest bound is the float
    # immediately below it.
    assert o.value == math.nextafter(MODEL_THRESHOLD, 0.0)
    assert o.value < MODEL_THRESHOLD
    assert o.details["tiles"] == []


def test_clear_at_the_model_threshold_clears_when_only_tiles_outside_the_area_fire() -> None:
    rule = UnrestRule(
        name="etna", kind="unrest", volcano_id="etna", area=ETNA_AREA,
        levels=[Level(severity="Moderate", raise_at=0.7, clear_at=MODEL_THRESHOLD)],
        persistence={"n": 1, "m": 1}, clear_after=1,
    )
    [o] = observe(rule, unrest_detection("p1", [tile(0, 0, 0.8, INSIDE)]), {})
    state, raised = evaluate(rule, None, o)
    [o] = observe(rule, unrest_detection("p2", [tile(1, 1, 0.99, OUTSIDE)],
                                         event_time="2024-01-25"), {})
    state, resolved = evaluate(rule, state, o)
    assert raised is not None and raised.kind == "raised"
    assert resolved is not None and resolved.kind == "resolved"


def test_area_when_no_tile_fired_anywhere_gets_the_frame_maximum() -> None:
    rule = UnrestRule(name="etna", kind="unrest", volcano_id="etna", area=ETNA_AREA)
    [o] = observe(rule, unrest_detection("p1", [], frame_probability=0.31), {})
    assert o.value == 0.31


def test_circle_area_vertices_lie_on_the_geodesic_circle() -> None:
    rule = UnrestRule(name="etna", kind="unrest", volcano_id="etna", area=ETNA_AREA)
    [o] = observe(rule, unrest_detection("p1", [tile(0, 0, 0.7, INSIDE)]), {})
    assert o.area is not None
    ring = o.area["geometry"]["coordinates"][0]
    assert len(ring) == 65 and ring[0] == ring[-1]
    for lon, lat in ring:
        _, _, metres = GEOD.inv(ETNA[0], ETNA[1], lon, lat)
        assert metres == pytest.approx(10_000, abs=0.2)  # 1e-6 degree rounding


def test_without_a_rule_area_the_alert_area_is_the_fired_tiles_extent() -> None:
    rule = UnrestRule(name="unrest", kind="unrest")
    det = unrest_detection("p1", [tile(0, 0, 0.7, INSIDE), tile(1, 1, 0.6, OUTSIDE)])
    [o] = observe(rule, det, {})
    assert o.value == 0.7
    assert o.area is not None
    assert o.area["geometry"]["type"] == "MultiPolygon"  # two disjoint tiles
    assert bounds_of(o.area) == (14.95, 37.70, 15.60, 38.30)
    assert o.area["description"] == "etna: fired tiles"


def test_without_a_rule_area_and_no_fired_tile_the_area_is_the_frame() -> None:
    rule = UnrestRule(name="unrest", kind="unrest")
    [o] = observe(rule, unrest_detection("p1", [], frame_probability=0.2), {})
    assert o.value == 0.2
    assert o.area is not None
    assert bounds_of(o.area) == FRAME
    assert o.area["description"] == "etna: frame 124D_05291_131313"


def test_without_any_bounds_an_unfired_frame_has_no_area() -> None:
    rule = UnrestRule(name="unrest", kind="unrest")
    [o] = observe(rule, unrest_detection("p1", [], frame_bounds=None), {})
    assert o.area is None


def test_rule_area_given_as_a_feature_collection_is_used() -> None:
    # AreaSpec accepts a FeatureCollection of polygons; observing must not fail on it.
    polygon = square(15.0, 37.75, 0.1)
    area = {
        "name": "Etna box",
        "geometry": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": polygon},
        ]},
    }
    rule = UnrestRule(name="etna", kind="unrest", volcano_id="etna", area=area)
    det = unrest_detection("p1", [tile(1, 1, 0.95, OUTSIDE), tile(0, 0, 0.7, INSIDE)])
    [o] = observe(rule, det, {})
    assert o.value == 0.7
    assert o.area is not None
    assert bounds_of(o.area) == pytest.approx((14.9, 37.65, 15.1, 37.85))


# ---------------------------------------------------------------------- unrest: tiles
def test_tile_scope_makes_one_place_per_fired_tile() -> None:
    rule = UnrestRule(name="tiles", kind="unrest", scope="tile")
    det = unrest_detection("p1", [tile(0, 0, 0.9, INSIDE), tile(2, 3, 0.6, OUTSIDE)])
    observed = observe(rule, det, {})
    assert [(o.place_key, o.value) for o in observed] == [
        ("volcano:etna/124D_05291_131313/r0c0", 0.9),
        ("volcano:etna/124D_05291_131313/r2c3", 0.6),
    ]
    assert observed[1].labels == {
        "volcano_id": "etna", "frame_id": "124D_05291_131313", "scope": "tile", "tile": "r2c3",
    }
    assert observed[1].area is not None
    assert bounds_of(observed[1].area) == OUTSIDE
    assert observed[1].place_name == "etna tile r2c3 of 124D_05291_131313"


def test_tile_scope_gives_open_tiles_of_the_same_frame_a_low_observation() -> None:
    rule = UnrestRule(name="tiles", kind="unrest", scope="tile")
    first = observe(rule, unrest_detection("p1", [tile(0, 0, 0.9, INSIDE),
                                                  tile(2, 3, 0.6, OUTSIDE)]), {})
    other_frame = observe(
        rule, unrest_detection("p0", [tile(5, 5, 0.8, OUTSIDE)], frame_id="044A_05118_131313"), {}
    )
    open_places = open_places_of(first + other_frame)
    observed = observe(rule, unrest_detection("p2", [tile(0, 0, 0.8, INSIDE)]), open_places)
    by_key = {o.place_key: o for o in observed}
    assert sorted(by_key) == [
        "volcano:etna/124D_05291_131313/r0c0", "volcano:etna/124D_05291_131313/r2c3"
    ]
    quiet = by_key["volcano:etna/124D_05291_131313/r2c3"]
    assert quiet.value == math.nextafter(MODEL_THRESHOLD, 0.0)
    assert quiet.area is None  # keeps the place's last known area
    assert quiet.place_name == "etna tile r2c3 of 124D_05291_131313"
    assert quiet.obs_id == "unrest:p2:unrest-cnn@v1"
    assert by_key["volcano:etna/124D_05291_131313/r0c0"].value == 0.8


# ------------------------------------------------------------------------------ PS trend
def test_ps_only_changes_from_watched_to_watched_classes_with_enough_probability_count() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", min_probability=0.5)
    det = ps_detection([
        change("a", 15.0, 37.75, "stable", "quadratic", 0.9),  # counts
        change("b", 15.0, 37.75, "linear", "bilinear", 0.5),  # counts: probability == minimum
        change("c", 15.0, 37.75, "stable", "quadratic", 0.49),  # model not sure enough
        change("d", 15.0, 37.75, "quadratic", "bilinear", 0.9),  # from a class not watched
        change("e", 15.0, 37.75, "stable", "linear", 0.9),  # to a class not watched
        change("f", 15.0, 37.75, None, "quadratic", 0.9),  # new point: no change of class
    ])
    [o] = observe(rule, det, {})
    assert o.value == 2.0
    assert o.details["points"] == ["a", "b"]
    assert o.details["transitions"] == {"stable->quadratic": 1, "linear->bilinear": 1}
    assert o.place_key == "ps:egms-it/t0042"
    assert o.labels == {"scope": "ps_tile", "dataset_id": "egms-it", "tile_id": "t0042"}
    assert o.obs_id == "ps:egms-it/t0042/upd-1:trend@v1"
    assert o.event_time == date(2024, 2, 1)


def test_ps_update_without_qualifying_changes_is_a_zero_observation_without_area() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend")
    [o] = observe(rule, ps_detection([change("f", 15.0, 37.75, None, "quadratic")]), {})
    assert o.value == 0.0
    assert o.area is None


def test_ps_points_outside_the_rule_area_do_not_count() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", area=ETNA_AREA)
    det = ps_detection([
        change("in1", 15.0, 37.75), change("in2", 15.05, 37.78),
        change("out", 15.55, 38.25),
    ])
    [o] = observe(rule, det, {})
    assert o.value == 2.0
    assert o.details["points"] == ["in1", "in2"]
    assert o.place_key == "area:Etna_10_km"
    assert o.labels["scope"] == "area"
    assert o.area is not None and o.area["description"] == "Etna 10 km"


def test_ps_alert_area_is_the_changed_points_hull_buffered_by_buffer_m() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", buffer_m=100.0)
    [o] = observe(rule, ps_detection([change("a", *ETNA)]), {})
    assert o.area is not None
    ring = o.area["geometry"]["coordinates"][0]
    for lon, lat in ring:
        _, _, metres = GEOD.inv(ETNA[0], ETNA[1], lon, lat)
        assert metres == pytest.approx(100.0, abs=0.2)


def test_ps_hull_of_two_points_spans_both_plus_the_buffer() -> None:
    # Two points 0.01 degree of longitude apart: a capsule reaching buffer_m past each.
    rule = PSTrendRule(name="ps", kind="ps_trend", buffer_m=100.0)
    [o] = observe(rule, ps_detection([change("a", 15.0, 37.75), change("b", 15.01, 37.75)]), {})
    west, _, east, _ = bounds_of(o.area)
    _, _, to_west = GEOD.inv(15.0, 37.75, west, 37.75)
    _, _, to_east = GEOD.inv(15.01, 37.75, east, 37.75)
    assert to_west == pytest.approx(100.0, abs=0.5)
    assert to_east == pytest.approx(100.0, abs=0.5)


def test_ps_rule_watches_only_its_datasets() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", datasets=["egms-it"])
    assert observe(rule, ps_detection([change("a", *ETNA)], dataset="egms-fr"), {}) == []
    assert len(observe(rule, ps_detection([change("a", *ETNA)]), {})) == 1


# ------------------------------------------------------------------------------ hot spots
def test_hotspot_observes_each_ada_with_the_rule_metric() -> None:
    rule = HotspotRule(name="ada", kind="hotspot")
    [o] = observe(rule, hotspot_message([ada("a1")]), {})
    assert o.place_key == "ada:egms-it/a1"
    assert o.value == 12.0
    assert o.obs_id == "hs-1/a1"
    assert o.event_time == date(2024, 3, 1)  # the window end
    assert o.labels == {"scope": "ada", "dataset_id": "egms-it", "ada_id": "a1", "sign": "cold"}
    assert o.area is not None and bounds_of(o.area) == (14.99, 37.74, 15.01, 37.76)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("mean_abs_velocity_mm_yr", 12.0),
        ("max_abs_velocity_mm_yr", 18.0),
        ("area_m2", 40000.0),
        ("n_points", 25.0),
    ],
)
def test_hotspot_metric_selects_the_ada_quantity(metric: str, expected: float) -> None:
    rule = HotspotRule(name="ada", kind="hotspot", metric=metric)
    [o] = observe(rule, hotspot_message([ada("a1")]), {})
    assert o.value == expected


@pytest.mark.parametrize(
    "small",
    [{"area_m2": 999.0}, {"n_points": 4}],
    ids=["below_min_area", "below_min_points"],
)
def test_small_ada_is_ignored_unless_its_place_is_open(small: dict[str, Any]) -> None:
    rule = HotspotRule(name="ada", kind="hotspot", min_area_m2=1000.0, min_points=5)
    message = hotspot_message([ada("a1", **small)])
    assert observe(rule, message, {}) == []
    [o] = observe(rule, message, {"ada:egms-it/a1": {"scope": "ada"}})
    assert o.value == 0.0
    assert o.area is not None  # still there, so its outline is known


def test_gone_ada_gives_an_open_place_the_value_zero_and_no_area() -> None:
    rule = HotspotRule(name="ada", kind="hotspot")
    message = hotspot_message([ada("a1", status="gone")], hotspot="hs-2")
    assert observe(rule, message, {}) == []
    [o] = observe(rule, message, {"ada:egms-it/a1": {"scope": "ada"}})
    assert o.value == 0.0
    assert o.area is None
    assert o.details["status"] == "gone"


def test_hotspot_rule_filters_by_sign_and_dataset() -> None:
    rule = HotspotRule(name="ada", kind="hotspot", signs=["hot"], datasets=["egms-it"])
    message = hotspot_message([ada("a1", sign="cold"), ada("a2", sign="hot")])
    assert [o.place_key for o in observe(rule, message, {})] == ["ada:egms-it/a2"]
    assert observe(rule, hotspot_message([ada("a2", sign="hot")], dataset="egms-fr"), {}) == []


def test_ada_growing_by_area_growth_ratio_sends_an_update() -> None:
    # Minor at 10 mm/yr; the velocity stays at 12 while the area grows.
    rule = HotspotRule(name="ada", kind="hotspot", area_growth_ratio=0.5)
    state = None
    outcome = []
    for k, area in enumerate([10_000.0, 14_000.0, 15_000.0, 22_000.0, 22_500.0]):
        message = hotspot_message([ada("a1", area_m2=area)], hotspot=f"hs-{k}",
                                  end=f"2024-03-{k + 1:02d}")
        [o] = observe(rule, message, {})
        state, t = evaluate(rule, state, o)
        if t is not None:
            validate("alert.v1", build_alert_event(t, sent_at=datetime(2024, 4, 1, tzinfo=UTC)))
        outcome.append(None if t is None else (t.kind, t.reason))
    assert outcome == [
        ("raised", "1 of the last 1 observations reached 10"),
        None,
        ("updated", "area grew from 10000 m2 to 15000 m2"),  # 10000 * 1.5
        None,  # below 15000 * 1.5
        ("updated", "area grew from 15000 m2 to 22500 m2"),
    ]


def test_no_area_growth_update_when_area_growth_ratio_is_off() -> None:
    rule = HotspotRule(name="ada", kind="hotspot", area_growth_ratio=None,
                       levels=[Level(severity="Minor", raise_at=10)])
    state = None
    kinds = []
    for k, area in enumerate([10_000.0, 50_000.0]):
        [o] = observe(rule, hotspot_message([ada("a1", area_m2=area)], hotspot=f"hs-{k}"), {})
        state, t = evaluate(rule, state, o)
        kinds.append(None if t is None else t.kind)
    assert kinds == ["raised", None]


def test_gone_ada_resolves_its_alert() -> None:
    rule = HotspotRule(name="ada", kind="hotspot")
    [o] = observe(rule, hotspot_message([ada("a1")], hotspot="hs-1"), {})
    state, _ = evaluate(rule, None, o)
    gone = hotspot_message([ada("a1", status="gone")], hotspot="hs-2", end="2024-03-13")
    [o] = observe(rule, gone, {"ada:egms-it/a1": state["labels"]})
    state, t = evaluate(rule, state, o)
    assert t is not None and t.kind == "resolved"
    event = build_alert_event(t, sent_at=datetime(2024, 4, 1, tzinfo=UTC))
    validate("alert.v1", event)
    assert bounds_of(event["area"]) == (14.99, 37.74, 15.01, 37.76)  # the last known outline


def test_ps_update_with_no_changed_point_inside_the_rule_area_is_no_observation() -> None:
    # The detection has no tile footprint: an update elsewhere says nothing about the area,
    # so it must not count as a quiet observation that clears the area's alert.
    rule = PSTrendRule(name="ps", kind="ps_trend", area=ETNA_AREA)
    assert observe(rule, ps_detection([change("out", 15.55, 38.25)]), {}) == []
    assert observe(rule, ps_detection([]), {}) == []
