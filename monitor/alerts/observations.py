"""What each rule sees in a detection or hot-spot message: one value per place.

An :class:`Observation` is the input of the rule engine: for a rule and a place (a
volcano, a tile, a PS store tile, an ADA) the value of the rule's metric at one event
time, with the place's labels and area. Pure functions of the message and the rule, so
the engine can be tested without Kafka.

Unrest values come from the detection's fired tiles (probability >= the model
threshold). Tiles below that threshold are not listed, so for a watched area where no
tile fired the value is an *upper bound*: the frame's highest probability if no tile
fired anywhere, otherwise just below the model threshold. A rule with an area therefore
clears while tiles elsewhere in the frame fire only if its clear threshold is at or above
the model threshold (docs/alerts.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from monitor.alerts.geometry import (
    area_of_spec,
    boxes_area,
    buffered_hull,
    contains_point,
    geometry_area,
    intersects,
)
from monitor.alerts.rule_config import HotspotRule, PSTrendRule, UnrestRule

HAZARD_OF_KIND = {
    "unrest": "volcanic_unrest",
    "ps_trend": "ground_deformation",
    "hotspot": "active_deformation_area",
}
METRIC_UNITS = {
    "unrest_probability": "1",
    "changed_points": "points",
    "mean_abs_velocity_mm_yr": "mm/yr",
    "max_abs_velocity_mm_yr": "mm/yr",
    "area_m2": "m2",
    "n_points": "points",
}


@dataclass(frozen=True)
class Observation:
    """The value of one rule's metric at one place and event time.

    Attributes
    ----------
    rule : str
    place_key : str
        Stable key of the place within the rule (part of the alert id).
    place_name : str
        For people (CAP headline, map).
    obs_id : str
        Id of the evidence (detection id, or hotspot id + ADA id): seen twice, counted once.
    event_time : date
    value : float
        The metric (probability, points, mm/yr, m2).
    labels : mapping
        Place labels (volcano_id, frame_id, dataset_id, tile_id, ada_id, scope ...).
    area : mapping or None
        ``{"description", "geometry"[, "circle"]}``; None keeps the place's last known area.
    details : mapping
        Kind-specific facts for the alert text (fired tiles, changed points, ADA size).
    """

    rule: str
    place_key: str
    place_name: str
    obs_id: str
    event_time: date
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    area: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def metric_name(rule: Any) -> str:
    if isinstance(rule, UnrestRule):
        return "unrest_probability"
    if isinstance(rule, PSTrendRule):
        return "changed_points"
    return str(rule.metric)


def observe(
    rule: Any, message: Mapping[str, Any], open_places: Mapping[str, Mapping[str, Any]]
) -> list[Observation]:
    """The observations ``rule`` makes in one ``detection.v1`` or ``hotspot.v1`` message.

    Parameters
    ----------
    rule : UnrestRule, PSTrendRule or HotspotRule
    message : mapping
        A decoded output message of the pipeline.
    open_places : mapping
        ``place_key -> labels`` of this rule's places that have state: a message that
        covers such a place without firing there still counts (as a low value), so
        persistence and clearing see it.
    """
    if not rule.enabled:
        return []
    schema = message.get("schema")
    if isinstance(rule, UnrestRule) and schema == "detection.v1":
        if message.get("kind") == "interferogram_unrest":
            return _observe_unrest(rule, message, open_places)
    elif isinstance(rule, PSTrendRule) and schema == "detection.v1":
        if message.get("kind") == "ps_trend_change":
            return _observe_ps(rule, message)
    elif isinstance(rule, HotspotRule) and schema == "hotspot.v1":
        return _observe_hotspots(rule, message, open_places)
    return []


def safe_key(text: str) -> str:
    """Place keys go into alert ids (and CAP identifiers): no spaces, commas, < & #."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "_", text)


def _rule_area(rule: Any) -> dict[str, Any] | None:
    return None if rule.area is None else _area_of_json(rule.area.model_dump_json())


@lru_cache(maxsize=256)
def _area_of_json(spec_json: str) -> dict[str, Any]:
    # Rules hold lists, so they are not hashable; their JSON is, and is cheap to make.
    from monitor.alerts.rule_config import AreaSpec

    return area_of_spec(AreaSpec.model_validate_json(spec_json))


# ------------------------------------------------------------------------------- unrest
def _unrest_place(rule: UnrestRule, det: Mapping[str, Any]) -> tuple[str, str, dict[str, str]]:
    labels = {
        k: str(det[k]) for k in ("volcano_id", "region_id", "frame_id") if det.get(k) is not None
    }
    if rule.volcano_id is not None:
        key, name = f"volcano:{rule.volcano_id}", rule.volcano_id
        labels["volcano_id"] = rule.volcano_id
    elif rule.region_id is not None:
        key, name = f"region:{rule.region_id}", rule.region_id
        labels["region_id"] = rule.region_id
    elif rule.frames:
        key, name = f"rule:{rule.name}", rule.name
    elif det.get("volcano_id"):
        key, name = f"volcano:{det['volcano_id']}", str(det["volcano_id"])
    elif det.get("region_id"):
        key, name = f"region:{det['region_id']}", str(det["region_id"])
    else:
        key, name = f"frame:{det['frame_id']}", str(det["frame_id"])
    return safe_key(key), rule.place_name or name, labels


def _matches_unrest(rule: UnrestRule, det: Mapping[str, Any]) -> bool:
    if rule.volcano_id is not None and det.get("volcano_id") != rule.volcano_id:
        return False
    if rule.region_id is not None and det.get("region_id") != rule.region_id:
        return False
    return not (rule.frames and det.get("frame_id") not in rule.frames)


def _below_threshold_bound(frame: Mapping[str, Any]) -> float:
    # No listed tile inside: their probabilities are below the model threshold.
    if frame["tiles"]:
        return math.nextafter(float(frame["threshold"]), 0.0)
    return float(frame["unrest_probability"])


def _observe_unrest(
    rule: UnrestRule, det: Mapping[str, Any], open_places: Mapping[str, Mapping[str, Any]]
) -> list[Observation]:
    if not _matches_unrest(rule, det):
        return []
    frame = det["frame"]
    area = _rule_area(rule)
    tiles = [t for t in frame["tiles"] if area is None or intersects(area, t["bounds"])]
    t = date.fromisoformat(det["event_time"])
    base_key, name, labels = _unrest_place(rule, det)
    details = {"product_id": det["product_id"], "frame_id": det["frame_id"], "tiles": tiles}
    if rule.scope == "volcano":
        if tiles:
            value = max(float(x["probability"]) for x in tiles)
        elif area is None:
            value = float(frame["unrest_probability"])
        else:
            value = _below_threshold_bound(frame)
        obs_area = area or boxes_area([x["bounds"] for x in tiles], f"{name}: fired tiles")
        if obs_area is None and frame.get("bounds") is not None:
            obs_area = boxes_area([frame["bounds"]], f"{name}: frame {det['frame_id']}")
        return [
            Observation(
                rule.name, base_key, name, det["detection_id"], t, value,
                {**labels, "scope": "volcano"}, obs_area, details,
            )
        ]
    out = []
    fired_keys = set()
    for tile in tiles:
        tile_name = f"r{tile['row']}c{tile['col']}"
        key = safe_key(f"{base_key}/{det['frame_id']}/{tile_name}")
        fired_keys.add(key)
        out.append(
            Observation(
                rule.name, key, f"{name} tile {tile_name} of {det['frame_id']}",
                det["detection_id"], t, float(tile["probability"]),
                {**labels, "scope": "tile", "tile": tile_name},
                boxes_area([tile["bounds"]], f"{name}: tile {tile_name} of {det['frame_id']}"),
                {**details, "tiles": [tile]},
            )
        )
    bound = _below_threshold_bound(frame)
    for key, place_labels in open_places.items():
        if key not in fired_keys and place_labels.get("frame_id") == det["frame_id"]:
            out.append(
                Observation(
                    rule.name, key, str(place_labels.get("place_name", key)),
                    det["detection_id"], t, bound, dict(place_labels), None,
                    {**details, "tiles": []},
                )
            )
    return out


# ------------------------------------------------------------------------------- PS trend
def _observe_ps(rule: PSTrendRule, det: Mapping[str, Any]) -> list[Observation]:
    if rule.datasets and det["dataset_id"] not in rule.datasets:
        return []
    area = _rule_area(rule)
    if area is not None and not any(
        contains_point(area, c["longitude"], c["latitude"]) for c in det["changes"]
    ):
        # Detections carry no tile footprint: an update with no changed point inside the
        # area says nothing about it (not even "quiet"), so it is no observation. Area
        # alerts therefore end by expiry unless later updates inside the area clear them.
        return []
    changed = [
        c for c in det["changes"]
        if c["previous_class"] in rule.from_classes
        and c["new_class"] in rule.to_classes
        and float(c["probability"]) >= rule.min_probability
        and (area is None or contains_point(area, c["longitude"], c["latitude"]))
    ]
    if area is None:
        key = safe_key(f"ps:{det['dataset_id']}/{det['tile_id']}")
        name = f"PS tile {det['tile_id']} of {det['dataset_id']}"
        obs_area = buffered_hull(
            [(c["longitude"], c["latitude"]) for c in changed], rule.buffer_m,
            f"{name}: points that changed class",
        )
    else:
        key, name, obs_area = safe_key(f"area:{rule.area.name}"), rule.area.name, area
    transitions: dict[str, int] = {}
    for c in changed:
        k = f"{c['previous_class']}->{c['new_class']}"
        transitions[k] = transitions.get(k, 0) + 1
    labels = {"scope": "ps_tile" if area is None else "area", "dataset_id": det["dataset_id"],
              "tile_id": det["tile_id"]}
    details = {
        "update_id": det["update_id"],
        "transitions": transitions,
        "points": [c["pid"] for c in changed[:50]],
        "n_points_classified": det["n_points_classified"],
    }
    return [
        Observation(
            rule.name, key, name, det["detection_id"], date.fromisoformat(det["event_time"]),
            float(len(changed)), labels, obs_area, details,
        )
    ]


# ------------------------------------------------------------------------------- hot spots
def _observe_hotspots(
    rule: HotspotRule, msg: Mapping[str, Any], open_places: Mapping[str, Mapping[str, Any]]
) -> list[Observation]:
    if rule.datasets and msg["dataset_id"] not in rule.datasets:
        return []
    t = date.fromisoformat(msg["window"]["end"])
    # Clustered ids are ada-..., delineated ids dada-...: the place keys never collide.
    sources = {
        "clustered": [("ada", "ADA", msg["areas"])],
        "delineated": [("delineated_ada", "delineated ADA", msg.get("delineated_areas", []))],
    }
    chosen = sources["clustered"] + sources["delineated"] if rule.areas == "both" else (
        sources[rule.areas]
    )
    out = []
    for scope, what, adas in chosen:
        out.extend(_observe_adas(rule, msg, adas, scope, what, t, open_places))
    return out


def _observe_adas(
    rule: HotspotRule,
    msg: Mapping[str, Any],
    adas: list[Mapping[str, Any]],
    scope: str,
    what: str,
    t: date,
    open_places: Mapping[str, Mapping[str, Any]],
) -> list[Observation]:
    """Observations of one list of areas (``areas`` or ``delineated_areas``)."""
    out = []
    for ada in adas:
        if ada["sign"] not in rule.signs:
            continue
        key = safe_key(f"ada:{msg['dataset_id']}/{ada['id']}")
        qualifies = (
            ada["status"] != "gone"
            and ada["area_m2"] >= rule.min_area_m2
            and ada["n_points"] >= rule.min_points
        )
        if not qualifies and key not in open_places:
            continue  # no state to update: an ADA too small to watch stays out of the store
        value = float(ada[rule.metric]) if qualifies else 0.0
        name = f"{what} {ada['id']} ({ada['sign']}) in {msg['dataset_id']}"
        out.append(
            Observation(
                rule.name, key, name, f"{msg['hotspot_id']}/{ada['id']}", t, value,
                {"scope": scope, "dataset_id": msg["dataset_id"], "ada_id": ada["id"],
                 "sign": ada["sign"]},
                geometry_area(ada["geometry"], name) if ada["status"] != "gone" else None,
                {
                    "status": ada["status"],
                    "area_m2": float(ada["area_m2"]),
                    "n_points": int(ada["n_points"]),
                    "mean_abs_velocity_mm_yr": float(ada["mean_abs_velocity_mm_yr"]),
                    "max_abs_velocity_mm_yr": float(ada["max_abs_velocity_mm_yr"]),
                    "dominant_trend": ada.get("dominant_trend"),
                    "hotspot_id": msg["hotspot_id"],
                },
            )
        )
    return out
