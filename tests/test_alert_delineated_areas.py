"""Hot spot alert rules over the U-Net's delineated areas (``areas: delineated``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from monitor.alerts.engine import evaluate
from monitor.alerts.observations import observe
from monitor.alerts.rule_config import HotspotRule, Level, Persistence
from pipelines.messages import validate
from tests.test_alert_observations import ada, hotspot_message


def _message() -> dict[str, Any]:
    """One clustered and one delineated ADA over the same ground, both fast enough to alert."""
    message = hotspot_message([ada("ada-2024-03-01-0", mean_v=25.0)])
    message["delineated_areas"] = [ada("dada-2024-03-01-0", mean_v=25.0)]
    message["delineation"] = {
        "model": "ada_delineator", "model_version": 1, "inputs": ["hotspot_density"],
        "terrain": "none", "note": "no DEM configured", "threshold": 0.5,
    }
    validate("hotspot.v1", message)
    return message


def _rule(areas: str) -> HotspotRule:
    return HotspotRule(
        name=f"ada-{areas}", kind="hotspot", areas=areas,
        levels=[Level(severity="Minor", raise_at=10)], persistence=Persistence(n=1, m=1),
    )


def _raised(rule: HotspotRule, message: dict[str, Any]) -> list[str]:
    """Ids of the ADAs whose first observation raises an alert."""
    out = []
    for o in observe(rule, message, {}):
        _, step = evaluate(rule, None, o)
        if step is not None and step.kind == "raised":
            out.append(o.labels["ada_id"])
    return out


def test_a_delineated_rule_raises_on_the_delineated_area_and_not_the_clustered_one():
    assert _raised(_rule("delineated"), _message()) == ["dada-2024-03-01-0"]


def test_the_default_rule_watches_clustered_areas_only():
    assert HotspotRule(name="h", kind="hotspot").areas == "clustered"
    assert _raised(_rule("clustered"), _message()) == ["ada-2024-03-01-0"]


def test_both_gives_each_area_its_own_place_and_scope():
    observations = observe(_rule("both"), _message(), {})
    keys = {o.place_key for o in observations}
    assert len(keys) == 2  # the id prefixes keep the places apart
    scopes = {o.labels["ada_id"]: o.labels["scope"] for o in observations}
    assert scopes == {"ada-2024-03-01-0": "ada", "dada-2024-03-01-0": "delineated_ada"}
    assert [o.place_name for o in observations if o.labels["scope"] == "delineated_ada"] == [
        "delineated ADA dada-2024-03-01-0 (cold) in egms-it"
    ]


def test_a_message_without_delineated_areas_gives_a_delineated_rule_nothing():
    assert observe(_rule("delineated"), hotspot_message([ada("ada-1", mean_v=25.0)]), {}) == []


def test_an_unknown_areas_choice_is_refused():
    with pytest.raises(ValidationError, match="areas"):
        HotspotRule(name="h", kind="hotspot", areas="outlined")
