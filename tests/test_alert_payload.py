"""``alert.v1`` revisions built from engine transitions (monitor.alerts.payload).

Every built event is validated against ``pipelines/schemas/alert.v1.json``. Expected CAP
codes are the CAP 1.2 (OASIS 2010) mapping documented in ``monitor/alerts/levels.py``,
written out here so that a change of that table shows up as a failing test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from monitor.alerts.engine import Transition, evaluate, expire
from monitor.alerts.observations import Observation, observe
from monitor.alerts.payload import build_alert_event
from monitor.alerts.rule_config import (
    HotspotRule,
    Level,
    Persistence,
    PSTrendRule,
    UnrestRule,
)
from pipelines.messages import validate

SENT = datetime(2024, 2, 1, 9, 30, tzinfo=UTC)
START = date(2024, 1, 1)
CIRCLE_AREA = {"name": "Etna 10 km",
               "circle": {"longitude": 15.0, "latitude": 37.75, "radius_km": 10}}
BOX = {
    "description": "Etna summit",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[14.9, 37.7], [15.1, 37.7], [15.1, 37.8], [14.9, 37.8], [14.9, 37.7]]],
    },
}


def obs(
    n: int,
    value: float,
    *,
    place_name: str = "Etna",
    labels: dict[str, str] | None = None,
    area: dict[str, Any] | None = BOX,
    details: dict[str, Any] | None = None,
) -> Observation:
    return Observation(
        "unrest", "volcano:etna", place_name, f"det-{n}", START + timedelta(days=12 * n),
        value, {"volcano_id": "etna", "scope": "volcano"} if labels is None else labels,
        area, details or {},
    )


def rule_with(**overrides: Any) -> UnrestRule:
    fields: dict[str, Any] = {
        "name": "unrest", "kind": "unrest", "persistence": Persistence(n=1, m=1),
        "clear_after": 1,
    }
    return UnrestRule(**{**fields, **overrides})


def run(rule: Any, values: list[float], **obs_fields: Any) -> list[Transition]:
    state = None
    steps = []
    for n, value in enumerate(values):
        state, t = evaluate(rule, state, obs(n, value, **obs_fields))
        if t is not None:
            steps.append(t)
    return steps


def built(t: Transition) -> dict[str, Any]:
    event = build_alert_event(t, sent_at=SENT)
    validate("alert.v1", event)
    return event


def bounds_of(geometry: dict[str, Any]) -> list[float]:
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else [
        ring for polygon in geometry["coordinates"] for ring in polygon
    ]
    points = [p for ring in rings for p in ring]
    return [min(p[0] for p in points), min(p[1] for p in points),
            max(p[0] for p in points), max(p[1] for p in points)]


def unrest_detection(probabilities: list[float]) -> dict[str, Any]:
    """A valid unrest detection of Etna with one fired tile per probability."""
    tiles = [
        {"row": 0, "col": k, "row0": 0, "col0": 64 * k, "probability": p,
         "valid_fraction": 1.0, "bounds": [14.95 + 0.1 * k, 37.7, 15.05 + 0.1 * k, 37.8]}
        for k, p in enumerate(probabilities)
    ]
    det = {
        "schema": "detection.v1", "detection_id": "unrest:p1:m@v1",
        "kind": "interferogram_unrest", "model": {"name": "m", "version": 1},
        "source": {"topic": "insar.interferograms", "partition": 0, "offset": 0},
        "event_time": "2024-01-13", "produced_at": "2024-01-14T00:00:00Z",
        "product_id": "p1", "frame_id": "F1", "primary_date": "2024-01-01",
        "secondary_date": "2024-01-13", "volcano_id": "etna",
        "frame": {"unrest": bool(tiles), "unrest_probability": max(probabilities, default=0.1),
                  "threshold": 0.5, "n_tiles": 4, "min_firing_tiles": 1, "tiles": tiles},
    }
    validate("detection.v1", det)
    return det


# ----------------------------------------------------------------- transitions, CAP
def test_every_transition_kind_builds_a_valid_revision_with_its_cap_msg_type() -> None:
    # default levels: Moderate 0.5/0.3, Severe 0.8/0.6
    rule = rule_with(expire_after_days=30)
    steps = run(rule, [0.6, 0.9, 0.2])
    state, _ = evaluate(rule, None, obs(0, 0.6))  # then silence: 60 days > 30
    _, expired = expire(rule, "volcano:etna", state, date(2024, 3, 1))
    assert expired is not None
    events = [built(t) for t in [*steps, expired]]
    assert [(e["transition"], e["msg_type"], e["state"]) for e in events] == [
        ("raised", "Alert", "firing"),
        ("updated", "Update", "firing"),
        ("resolved", "Cancel", "resolved"),
        ("expired", "Cancel", "expired"),
    ]
    assert [e["urgency"] for e in events] == ["Expected", "Expected", "Past", "Past"]


def test_revision_carries_ids_times_and_references() -> None:
    steps = run(rule_with(expire_after_days=60), [0.6, 0.9])
    event = built(steps[1])
    assert event["schema"] == "alert.v1"
    assert event["alert_id"] == "unrest.volcano:etna.e1"
    assert event["alert_event_id"] == "unrest.volcano:etna.e1#2"
    assert event["revision"] == 2
    assert event["references"] == ["unrest.volcano:etna.e1#1"]
    assert event["event_time"] == "2024-01-13"
    assert event["episode_start"] == "2024-01-01"
    assert event["expires"] == "2024-03-13"  # 2024-01-13 + 60 days
    assert event["sent_at"] == "2024-02-01T09:30:00Z"
    assert event["reason"] == "severity raised from Moderate to Severe"
    assert event["rule"] == {"name": "unrest", "kind": "unrest"}
    assert event["place"] == {"key": "volcano:etna", "name": "Etna"}
    assert event["metric"] == {
        "name": "unrest_probability", "value": 0.9, "unit": "1", "raise_at": 0.8, "clear_at": 0.6
    }
    assert event["suppressed"] == {"silenced_by": [], "inhibited_by": []}
    assert event["instruction"].startswith("Review the interferograms")


def test_resolved_revision_has_no_expiry_and_keeps_the_last_severity() -> None:
    steps = run(rule_with(), [0.9, 0.1])
    event = built(steps[1])
    assert event["severity"] == "Severe"
    assert event["certainty"] == "Likely"
    assert event["urgency"] == "Past"
    assert "expires" not in event
    assert event["headline"] == "Volcanic unrest at Etna: ended"


@pytest.mark.parametrize(
    ("severity", "urgency", "certainty"),
    [
        ("Minor", "Future", "Possible"),
        ("Moderate", "Expected", "Possible"),
        ("Severe", "Expected", "Likely"),
        ("Extreme", "Immediate", "Likely"),
    ],
)
def test_urgency_and_certainty_default_from_the_severity(
    severity: str, urgency: str, certainty: str
) -> None:
    rule = rule_with(levels=[Level(severity=severity, raise_at=0.7)])
    event = built(run(rule, [0.9])[0])
    assert (event["severity"], event["urgency"], event["certainty"]) == (
        severity, urgency, certainty
    )


def test_level_overrides_urgency_and_certainty() -> None:
    rule = rule_with(
        levels=[Level(severity="Severe", raise_at=0.7, urgency="Immediate", certainty="Observed")]
    )
    raised, resolved = run(rule, [0.9, 0.1])
    assert (built(raised)["urgency"], built(raised)["certainty"]) == ("Immediate", "Observed")
    # An ended alert is in the past whatever the level says.
    assert (built(resolved)["urgency"], built(resolved)["certainty"]) == ("Past", "Observed")


# ---------------------------------------------------------------------------- labels
def test_labels_hold_rule_kind_hazard_severity_scope_place_and_rule_labels() -> None:
    rule = rule_with(labels={"team": "etna-observatory"})
    labels = {"volcano_id": "etna", "frame_id": "F1", "scope": "volcano",
              "place_name": "Etna"}  # place_name comes with open places: not a label
    event = built(run(rule, [0.9], labels=labels)[0])
    assert event["labels"] == {
        "volcano_id": "etna",
        "frame_id": "F1",
        "scope": "volcano",
        "team": "etna-observatory",
        "rule": "unrest",
        "kind": "unrest",
        "hazard": "volcanic_unrest",
        "severity": "Severe",
    }


def test_labels_cannot_override_the_rule_and_severity_labels() -> None:
    rule = rule_with(labels={"rule": "spoof", "severity": "Minor"})
    event = built(run(rule, [0.6])[0])
    assert (event["labels"]["rule"], event["labels"]["severity"]) == ("unrest", "Moderate")


# --------------------------------------------------------------------------- text
def test_headline_is_cut_to_160_characters() -> None:
    event = built(run(rule_with(), [0.9], place_name="Monte " + "x" * 300)[0])
    assert len(event["headline"]) == 160
    assert event["headline"].startswith("Volcanic unrest at Monte xxx")


def test_unrest_headline_and_description_show_probability_and_window() -> None:
    steps = run(rule_with(persistence=Persistence(n=2, m=3), clear_after=2), [0.85, 0.3, 0.9])
    event = built(steps[0])
    assert event["headline"] == "Volcanic unrest at Etna: unrest probability 0.90"
    assert (
        "Persistence window (event date: probability): "
        "2024-01-01: 0.85, 2024-01-13: 0.30, 2024-01-25: 0.90"
    ) in event["description"]


# ------------------------------------------------------------------------- area, evidence
def test_bbox_matches_the_geometry_bounds() -> None:
    rule = rule_with(area=CIRCLE_AREA)
    [o] = observe(rule, unrest_detection([0.9]), {})
    _, t = evaluate(rule, None, o)
    assert t is not None
    event = built(t)
    assert event["area"]["bbox"] == bounds_of(event["area"]["geometry"])
    # a 10 km geodesic circle: about 0.0900 degree of latitude either way of 37.75
    assert event["area"]["bbox"][1] == pytest.approx(37.75 - 0.0901, abs=2e-4)
    assert event["area"]["bbox"][3] == pytest.approx(37.75 + 0.0901, abs=2e-4)
    assert event["area"]["circle"] == {"longitude": 15.0, "latitude": 37.75, "radius_km": 10}
    assert event["tiles"] == [
        {"row": 0, "col": 0, "probability": 0.9, "bounds": [14.95, 37.7, 15.05, 37.8]}
    ]


def test_evidence_flags_the_observations_that_reached_the_level() -> None:
    rule = rule_with(levels=[Level(severity="Severe", raise_at=0.8, clear_at=0.5)],
                     persistence=Persistence(n=2, m=3), clear_after=2)
    [raised] = run(rule, [0.9, 0.3, 0.8])
    event = built(raised)
    assert [(e["id"], e["event_time"], e["value"], e["hit"]) for e in event["evidence"]] == [
        ("det-0", "2024-01-01", 0.9, True),
        ("det-1", "2024-01-13", 0.3, False),
        ("det-2", "2024-01-25", 0.8, True),  # raise_at is reached by equality
    ]


def test_alert_without_any_known_area_is_refused_with_a_clear_error() -> None:
    [raised] = run(rule_with(), [0.9], area=None)
    with pytest.raises(ValueError, match="no area known for 'Etna'; give the rule an area"):
        build_alert_event(raised, sent_at=SENT)


# --------------------------------------------------------------------- the other kinds
def test_ps_trend_revision_names_its_hazard_metric_and_points() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", levels=[Level(severity="Minor", raise_at=2)])
    changes = [
        {"pid": f"p{i}", "longitude": 15.0 + 0.001 * i, "latitude": 37.75,
         "previous_class": "stable", "new_class": "quadratic", "probability": 0.9}
        for i in range(3)
    ]
    det = {
        "schema": "detection.v1", "detection_id": "ps1", "kind": "ps_trend_change",
        "model": {"name": "trend", "version": 1},
        "source": {"topic": "t", "partition": 0, "offset": 0},
        "event_time": "2024-02-01", "produced_at": "2024-02-02T00:00:00Z",
        "dataset_id": "egms-it", "tile_id": "t1", "update_id": "u1",
        "n_points_classified": 10, "n_points_skipped": 0, "class_counts": {"quadratic": 3},
        "changes": changes,
    }
    validate("detection.v1", det)
    [o] = observe(rule, det, {})
    _, t = evaluate(rule, None, o)
    assert t is not None
    event = built(t)
    assert event["hazard"] == "ground_deformation"
    assert event["metric"]["name"] == "changed_points"
    assert event["metric"]["unit"] == "points"
    assert event["headline"] == "3 PS points started accelerating in PS tile t1 of egms-it"
    assert "Class changes: stable->quadratic x3" in event["description"]
    assert event["labels"]["scope"] == "ps_tile"
    assert "tiles" not in event


def test_hotspot_revision_names_its_hazard_metric_and_size() -> None:
    rule = HotspotRule(name="ada", kind="hotspot")
    details = {"status": "new", "area_m2": 2_500_000.0, "n_points": 40,
               "mean_abs_velocity_mm_yr": 12.34, "max_abs_velocity_mm_yr": 20.0,
               "dominant_trend": "linear", "hotspot_id": "hs"}
    o = Observation("ada", "ada:egms-it/a1", "ADA a1 (cold) in egms-it", "hs/a1",
                    date(2024, 3, 1), 12.34, {"scope": "ada", "ada_id": "a1"}, BOX, details)
    _, t = evaluate(rule, None, o)
    assert t is not None
    event = built(t)
    assert event["hazard"] == "active_deformation_area"
    assert event["severity"] == "Minor"
    assert event["metric"]["name"] == "mean_abs_velocity_mm_yr"
    assert event["metric"]["unit"] == "mm/yr"
    assert event["headline"] == (
        "Active deformation area in ADA a1 (cold) in egms-it: 12.3 mm/yr over 2.50 km2"
    )
    assert event["expires"] == "2024-06-29"  # 2024-03-01 + 120 days (hotspot default)
