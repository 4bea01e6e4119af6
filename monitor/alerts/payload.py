"""Turn a lifecycle step of the engine into an ``alert.v1`` revision (headline, text, CAP codes).

Pure: the wall-clock ``sent_at`` is passed in. The suppression fields are filled with
empty lists here and set by the alert stage, which knows the silences and the firing
alerts (:func:`monitor.alerts.matchers.suppression`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.alerts.engine import Transition, expires_on
from monitor.alerts.geometry import with_bbox
from monitor.alerts.levels import DEFAULT_URGENCY_CERTAINTY
from monitor.alerts.observations import HAZARD_OF_KIND, METRIC_UNITS, metric_name

MSG_TYPE = {"raised": "Alert", "updated": "Update", "resolved": "Cancel", "expired": "Cancel"}
STATE_AFTER = {
    "raised": "firing", "updated": "firing", "resolved": "resolved", "expired": "expired"
}


def _rfc3339(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _headline(rule: Any, s: dict[str, Any], kind: str, value: float) -> str:
    place = s["place_name"]
    if kind in ("resolved", "expired"):
        what = {"unrest": "Volcanic unrest", "ps_trend": "PS acceleration",
                "hotspot": "Active deformation"}[rule.kind]
        return f"{what} at {place}: {'ended' if kind == 'resolved' else 'expired'}"[:160]
    if rule.kind == "unrest":
        text = f"Volcanic unrest at {place}: unrest probability {value:.2f}"
    elif rule.kind == "ps_trend":
        text = f"{value:.0f} PS points started accelerating in {place}"
    else:
        d = s["details"]
        text = (
            f"Active deformation area in {place}: {d.get('mean_abs_velocity_mm_yr', 0):.1f} "
            f"mm/yr over {d.get('area_m2', 0) / 1e6:.2f} km2"
        )
    return text[:160]


def _description(rule: Any, s: dict[str, Any], t: Transition) -> str:
    d = s["details"]
    lines = [f"Rule {rule.name} ({rule.kind}): {t.reason}."]
    if rule.kind == "unrest":
        tiles = d.get("tiles", [])
        lines.append(
            f"Latest interferogram {d.get('product_id', '?')} (frame {d.get('frame_id', '?')}): "
            f"{len(tiles)} tile(s) fired inside the area."
        )
        lines.append(
            "Persistence window (event date: probability): "
            + ", ".join(f"{e['t']}: {e['v']:.2f}" for e in s["window"])
        )
    elif rule.kind == "ps_trend":
        transitions = d.get("transitions", {})
        if transitions:
            lines.append(
                "Class changes: "
                + ", ".join(f"{k} x{n}" for k, n in sorted(transitions.items()))
                + "."
            )
        lines.append(f"Update {d.get('update_id', '?')}.")
    else:
        lines.append(
            f"ADA status {d.get('status', '?')}, {d.get('n_points', 0)} points, "
            f"max |v| {d.get('max_abs_velocity_mm_yr', 0):.1f} mm/yr, dominant trend "
            f"{d.get('dominant_trend') or 'n/a'}."
        )
    lines.append("Evidence from InSAR models trained on synthetic data; confirm before acting.")
    return " ".join(lines)


def build_alert_event(t: Transition, *, sent_at: datetime) -> dict[str, Any]:
    """The ``alert.v1`` revision of one lifecycle step.

    Parameters
    ----------
    t : Transition
        From :func:`monitor.alerts.engine.evaluate` or :func:`~monitor.alerts.engine.expire`.
    sent_at : datetime
        Wall-clock time (tz-aware) the revision is made.
    """
    rule, s = t.rule, t.state
    level_index = s["level"] if s["active"] else s["last_level"]
    level = rule.levels[level_index if level_index is not None else 0]
    urgency, certainty = DEFAULT_URGENCY_CERTAINTY[level.severity]
    urgency = level.urgency or urgency
    certainty = level.certainty or certainty
    state = STATE_AFTER[t.kind]
    if state != "firing":
        urgency = "Past"
    hazard = HAZARD_OF_KIND[rule.kind]
    value = float(s["value"]) if s["value"] is not None else 0.0
    area = s["area"] or {"description": s["place_name"], "geometry": None}
    if area["geometry"] is None:
        raise ValueError(
            f"{s['alert_id']}: no area known for {s['place_name']!r}; give the rule an area"
        )
    labels = {
        **{k: str(v) for k, v in s["labels"].items() if k != "place_name"},
        **rule.labels,
        "rule": rule.name,
        "kind": rule.kind,
        "hazard": hazard,
        "severity": level.severity,
    }
    expires = expires_on(rule, s)
    event: dict[str, Any] = {
        "schema": "alert.v1",
        "alert_event_id": f"{s['alert_id']}#{s['revision']}",
        "alert_id": s["alert_id"],
        "revision": s["revision"],
        "transition": t.kind,
        "state": state,
        "msg_type": MSG_TYPE[t.kind],
        "reason": t.reason,
        "rule": {"name": rule.name, "kind": rule.kind},
        "hazard": hazard,
        "severity": level.severity,
        "urgency": urgency,
        "certainty": certainty,
        "place": {"key": t.place_key, "name": s["place_name"]},
        "area": with_bbox(area),
        "headline": _headline(rule, s, t.kind, value),
        "description": _description(rule, s, t),
        "metric": {
            "name": metric_name(rule),
            "value": value,
            "unit": METRIC_UNITS[metric_name(rule)],
            "raise_at": level.raise_at,
            "clear_at": level.clear_threshold,
        },
        "event_time": s["notified"]["t"],
        "episode_start": s["started"],
        "sent_at": _rfc3339(sent_at),
        "references": list(s["references"]),
        "labels": labels,
        "evidence": [
            {"id": e["id"], "event_time": e["t"], "value": e["v"], "hit": e["v"] >= level.raise_at}
            for e in s["window"]
        ],
        "suppressed": {"silenced_by": [], "inhibited_by": []},
    }
    if rule.instruction:
        event["instruction"] = rule.instruction
    if expires is not None and state == "firing":
        event["expires"] = expires.isoformat()
    if rule.kind == "unrest":
        event["tiles"] = [
            {k: tile[k] for k in ("row", "col", "probability", "bounds") if k in tile}
            for tile in s["details"].get("tiles", [])
        ]
    return event
