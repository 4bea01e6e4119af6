"""The ``alerts`` configuration section (monitor.alerts.rule_config): what a user sees.

Invalid rules must be refused at start-up with a message naming what is wrong; a valid
YAML ``alerts:`` section loads through :func:`monitor.config.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.alerts.rule_config import (
    AlertsConfig,
    HotspotRule,
    Level,
    PSTrendRule,
    UnrestRule,
)
from monitor.config import ConfigError, load_config

POLYGON = {"type": "Polygon", "coordinates": [[[14.9, 37.7], [15.1, 37.7], [15.1, 37.8],
                                               [14.9, 37.7]]]}
CIRCLE = {"longitude": 15.0, "latitude": 37.75, "radius_km": 10}


def unrest(**fields: Any) -> dict[str, Any]:
    return {"name": "etna", "kind": "unrest", "volcano_id": "etna", **fields}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            unrest(levels=[{"severity": "Moderate", "raise_at": 0.8},
                           {"severity": "Severe", "raise_at": 0.6}]),
            "levels must have increasing raise_at",
        ),
        (
            unrest(levels=[{"severity": "Severe", "raise_at": 0.5},
                           {"severity": "Moderate", "raise_at": 0.8}]),
            "levels must have increasing severity",
        ),
        (
            {"name": "ps", "kind": "ps_trend",
             "levels": [{"severity": "Minor", "raise_at": 10},
                        {"severity": "Minor", "raise_at": 20}]},
            "levels must have increasing severity",
        ),
        (
            unrest(levels=[{"severity": "Moderate", "raise_at": 0.5, "clear_at": 0.6}]),
            r"clear_at \(0.6\) must not exceed raise_at \(0.5\)",
        ),
        (unrest(persistence={"n": 3, "m": 2}), r"persistence n \(3\) cannot exceed m \(2\)"),
        (
            unrest(area={"name": "etna", "circle": CIRCLE, "geometry": POLYGON}),
            "an area needs exactly one of circle or geometry",
        ),
        (unrest(area={"name": "etna"}), "an area needs exactly one of circle or geometry"),
        (
            unrest(area={"name": "etna", "geometry": {"type": "Point", "coordinates": [15, 37]}}),
            "area geometry must be a Polygon or MultiPolygon, got Point",
        ),
        (unrest(area={"name": "etna", "geometry": {"type": "Polygon"}}), "not valid GeoJSON"),
        (
            unrest(levels=[{"severity": "Severe", "raise_at": 1.5}]),
            r"unrest levels are probabilities: raise_at in \(0, 1\]",
        ),
        (unrest(levels=[]), "at least 1 item"),
        (unrest(levels=[{"severity": "Catastrophic", "raise_at": 0.5}]), "Minor"),
        (unrest(name="etna summit"), "should match pattern"),
        (unrest(treshold=0.5), "Extra inputs are not permitted"),
        (unrest(cooldown_days=-1), "greater than or equal to 0"),
        ({"name": "x", "kind": "seismic"}, "does not match any of the expected tags"),
    ],
    ids=[
        "levels_not_ascending", "severities_not_ascending", "severity_repeated",
        "clear_above_raise", "persistence_n_above_m", "area_circle_and_geometry",
        "area_without_shape", "area_point", "area_bad_geojson", "unrest_raise_above_one",
        "no_levels", "unknown_severity", "name_with_space", "misspelt_key",
        "negative_cooldown", "unknown_kind",
    ],
)
def test_invalid_rule_is_refused_with_a_readable_message(
    rule: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertsConfig(rules=[rule])


def test_duplicate_rule_names_are_refused_and_named() -> None:
    rules = [unrest(), {"name": "etna", "kind": "hotspot"}, {"name": "ps", "kind": "ps_trend"}]
    with pytest.raises(ValidationError, match=r"rule names must be unique; repeated: \['etna'\]"):
        AlertsConfig(rules=rules)


@pytest.mark.parametrize(
    ("inhibit", "message"),
    [
        ({"source": ["scope"], "target": ["scope=tile"]}, "is not 'label op value'"),
        ({"source": ["scope=volcano"], "target": ["volcano_id=~(etna"]},
         "bad regular expression"),
        ({"source": [], "target": ["scope=tile"]}, "at least 1 item"),
    ],
    ids=["no_operator", "bad_regex", "no_source"],
)
def test_bad_inhibit_rule_matcher_is_refused(inhibit: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertsConfig(inhibit_rules=[inhibit])


def test_valid_rules_of_every_kind_are_accepted() -> None:
    config = AlertsConfig(
        rules=[
            unrest(area={"name": "Etna", "circle": CIRCLE}, cooldown_days=24),
            {"name": "ps-etna", "kind": "ps_trend", "area": {"name": "box", "geometry": POLYGON},
             "to_classes": ["bilinear"]},
            {"name": "ada", "kind": "hotspot", "metric": "area_m2", "min_area_m2": 5000,
             "levels": [{"severity": "Moderate", "raise_at": 1e4, "clear_at": 8e3,
                         "urgency": "Immediate"}]},
        ],
        inhibit_rules=[{"source": ["scope=volcano"], "target": ["scope=~tile|area"],
                        "equal": ["volcano_id"]}],
    )
    unrest_rule, ps_rule, hotspot_rule = config.rules
    assert isinstance(unrest_rule, UnrestRule) and unrest_rule.cooldown_days == 24
    assert isinstance(ps_rule, PSTrendRule) and ps_rule.to_classes == ["bilinear"]
    assert isinstance(hotspot_rule, HotspotRule)
    assert hotspot_rule.levels[0].urgency == "Immediate"


def test_defaults_watch_everything_with_documented_persistence_and_inhibition() -> None:
    config = AlertsConfig()
    assert [(r.name, r.kind) for r in config.rules] == [
        ("unrest", "unrest"), ("ps-acceleration", "ps_trend"),
        ("active-deformation-area", "hotspot"),
    ]
    unrest_rule, ps_rule, hotspot_rule = config.rules
    assert (unrest_rule.persistence.n, unrest_rule.persistence.m) == (2, 3)
    assert unrest_rule.clear_after == 2
    assert [(lv.severity, lv.raise_at, lv.clear_threshold) for lv in unrest_rule.levels] == [
        ("Moderate", 0.5, 0.3), ("Severe", 0.8, 0.6)
    ]
    assert ps_rule.expire_after_days == 60
    assert hotspot_rule.expire_after_days == 120
    assert hotspot_rule.area_growth_ratio == 0.5
    [inhibit] = config.inhibit_rules
    assert (inhibit.source, inhibit.target, inhibit.equal) == (
        ["scope=volcano"], ["scope=tile"], ["volcano_id"]
    )


def test_clear_threshold_defaults_to_the_raise_threshold() -> None:
    assert Level(severity="Minor", raise_at=10).clear_threshold == 10
    assert Level(severity="Minor", raise_at=10, clear_at=7).clear_threshold == 7


def test_rules_are_immutable_once_loaded() -> None:
    rule = UnrestRule(name="u", kind="unrest")
    with pytest.raises(ValidationError, match="frozen"):
        rule.cooldown_days = 5  # type: ignore[misc]


# ------------------------------------------------------------------------- YAML loading
ALERTS_YAML = """\
alerts:
  rules:
    - name: etna-unrest
      kind: unrest
      volcano_id: etna
      area:
        name: Etna summit, 10 km
        circle: {longitude: 15.0, latitude: 37.75, radius_km: 10}
      levels:
        - {severity: Moderate, raise_at: 0.6, clear_at: 0.4}
        - {severity: Severe, raise_at: 0.85, clear_at: 0.7}
      persistence: {n: 2, m: 4}
      cooldown_days: 36
      labels: {team: ingv-ct}
    - name: ada
      kind: hotspot
      datasets: [egms-it]
  inhibit_rules: []
  cap:
    sender: alerts@example.org
    status: Exercise
"""


def test_alerts_section_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(ALERTS_YAML)
    config = load_config(path, environ={})
    first, second = config.alerts.rules
    assert isinstance(first, UnrestRule)
    assert first.area is not None and first.area.circle is not None
    assert first.area.circle.radius_km == 10
    assert (first.persistence.n, first.persistence.m) == (2, 4)
    assert [lv.raise_at for lv in first.levels] == [0.6, 0.85]
    assert first.labels == {"team": "ingv-ct"}
    assert isinstance(second, HotspotRule) and second.datasets == ["egms-it"]
    assert config.alerts.inhibit_rules == []
    assert (config.alerts.cap.sender, config.alerts.cap.status) == (
        "alerts@example.org", "Exercise"
    )


@pytest.mark.parametrize(
    ("replace", "by", "fragment"),
    [
        ("persistence: {n: 2, m: 4}", "persistence: {n: 5, m: 4}",
         r"alerts\.rules\.0\.unrest\.persistence: .*persistence n \(5\) cannot exceed m \(4\)"),
        ("kind: hotspot", "kind: hot-spot", r"alerts\.rules\.1: .*does not match"),
        ("cooldown_days: 36", "cooldown_dayz: 36",
         r"alerts\.rules\.0\.unrest\.cooldown_dayz: Extra inputs are not permitted"),
        ("inhibit_rules: []", "inhibit_rules: [{source: [scope], target: [scope=tile]}]",
         r"alerts\.inhibit_rules\.0\.source: .*not 'label op value'"),
        ("status: Exercise", "status: Drill", r"alerts\.cap\.status"),
        ("name: ada", "name: etna-unrest", r"alerts\.rules: .*repeated: \['etna-unrest'\]"),
    ],
    ids=["persistence", "kind", "misspelt_key", "inhibit_matcher", "cap_status", "duplicate"],
)
def test_bad_alerts_section_raises_config_error_naming_the_key(
    tmp_path: Path, replace: str, by: str, fragment: str
) -> None:
    assert replace in ALERTS_YAML
    path = tmp_path / "monitor.yaml"
    path.write_text(ALERTS_YAML.replace(replace, by))
    with pytest.raises(ConfigError, match=fragment):
        load_config(path, environ={})


def test_environment_can_switch_alerts_off(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(ALERTS_YAML)
    config = load_config(path, environ={"INSAR_MONITOR__ALERTS__ENABLED": "false"})
    assert config.alerts.enabled is False
    assert len(config.alerts.rules) == 2
