"""The rule engine: persistence, hysteresis, lifecycle and stable alert ids. Pure.

For every (rule, place) the engine keeps a small JSON state: a window of the latest
observations (sorted by event time), the active level, the episode counter and the ids
already seen. :func:`evaluate` folds one observation into the state and says whether the
alert is raised, updated, resolved — or nothing; :func:`expire` ends alerts that have not
been observed for ``expire_after_days``.

Decision on the window after inserting the observation (levels ascending):

- **raise** level i when at least ``persistence.n`` of the last ``persistence.m``
  observations reach ``levels[i].raise_at`` (LiCSAlert-style persistence);
- **hold** the active level i (or a lower one) unless the last ``clear_after``
  observations are all below its ``clear_at`` (hysteresis);
- the new level is the higher of the two; none means the alert resolves.

An episode starts when an inactive place is raised; its alert id is
``<rule>.<place>.e<episode>``, so re-evaluating the same observations (a replay, a
restart) yields the same id and, because seen ids are skipped, no new revision. A re-raise
within ``cooldown_days`` of the end of an episode reopens it (an update) instead of
starting a new one, so a flapping signal cannot page people again and again.

Everything is event time: dates of acquisitions, not the wall clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from monitor.alerts.observations import Observation

TransitionKind = Literal["raised", "updated", "resolved", "expired"]
SEEN_IDS_KEPT = 512


@dataclass(frozen=True)
class Transition:
    """A lifecycle step of one alert, to be published as a revision.

    ``state`` is the place's state *after* the step (its ``revision`` is this revision).
    """

    rule: Any
    place_key: str
    kind: TransitionKind
    reason: str
    state: dict[str, Any]
    observation: Observation | None


def alert_id(rule_name: str, place_key: str, episode: int) -> str:
    """Stable id of an episode: rule + place + episode number.

    >>> alert_id("unrest", "volcano:etna", 2)
    'unrest.volcano:etna.e2'
    """
    return f"{rule_name}.{place_key}.e{episode}"


def new_state() -> dict[str, Any]:
    return {
        "episode": 0,
        "active": False,
        "level": None,
        "last_level": None,
        "revision": 0,
        "alert_id": None,
        "window": [],
        "seen": [],
        "started": None,
        "last_obs": None,
        "resolved_at": None,
        "notified": None,
        "references": [],
        "labels": {},
        "place_name": "",
        "area": None,
        "details": {},
        "value": None,
    }


def _window_size(rule: Any) -> int:
    return max(rule.persistence.m, rule.clear_after, 1)


def raise_level(rule: Any, window: Sequence[dict[str, Any]]) -> int | None:
    """Highest level reached by ``n`` of the last ``m`` observations (None: none)."""
    recent = window[-rule.persistence.m:]
    for i in range(len(rule.levels) - 1, -1, -1):
        hits = sum(1 for e in recent if e["v"] >= rule.levels[i].raise_at)
        if hits >= rule.persistence.n:
            return i
    return None


def held_level(rule: Any, window: Sequence[dict[str, Any]], current: int | None) -> int | None:
    """Highest level <= ``current`` not cleared by the last ``clear_after`` observations."""
    if current is None:
        return None
    recent = window[-rule.clear_after:]
    for i in range(current, -1, -1):
        cleared = len(recent) >= rule.clear_after and all(
            e["v"] < rule.levels[i].clear_threshold for e in recent
        )
        if not cleared:
            return i
    return None


def _days(a: date, b: date) -> int:
    return (a - b).days


def evaluate(
    rule: Any, state: dict[str, Any] | None, obs: Observation
) -> tuple[dict[str, Any], Transition | None]:
    """Fold one observation into a place's state.

    Parameters
    ----------
    rule : a rule of :mod:`monitor.alerts.rule_config`
    state : dict or None
        The place's state (None for a place never seen).
    obs : Observation

    Returns
    -------
    (dict, Transition or None)
        The new state, and the lifecycle step it caused (None: nothing to tell anyone).
        An observation already seen returns the state unchanged and no step.
    """
    s = dict(state) if state is not None else new_state()
    if obs.obs_id in s["seen"]:
        return s, None
    s["seen"] = [*s["seen"], obs.obs_id][-SEEN_IDS_KEPT:]
    t = obs.event_time.isoformat()
    window = sorted([*s["window"], {"id": obs.obs_id, "t": t, "v": obs.value}],
                    key=lambda e: (e["t"], e["id"]))
    s["window"] = window[-_window_size(rule):]
    latest = s["last_obs"] is None or t >= s["last_obs"]
    s["last_obs"] = max(filter(None, [s["last_obs"], t]))
    if latest:
        _take_latest(s, obs)

    current = s["level"] if s["active"] else None
    raised = raise_level(rule, s["window"])
    held = held_level(rule, s["window"], current)
    candidates = [x for x in (raised, held) if x is not None]
    level = max(candidates) if candidates else None

    kind: TransitionKind | None = None
    reason = ""
    if current is None and level is not None:
        within_cooldown = (
            s["resolved_at"] is not None
            and rule.cooldown_days > 0
            and s["episode"] > 0
            and 0 <= _days(obs.event_time, date.fromisoformat(s["resolved_at"]))
            <= rule.cooldown_days
        )
        if within_cooldown:
            kind, reason = "updated", (
                f"raised again within the {rule.cooldown_days}-day cooldown: episode reopened"
            )
        else:
            s["episode"] += 1
            s["revision"] = 0
            s["references"] = []
            s["started"] = t
            s["alert_id"] = alert_id(rule.name, obs.place_key, s["episode"])
            kind = "raised"
            lv = rule.levels[level]
            reason = (
                f"{_hits(s['window'], rule, lv.raise_at)} of the last "
                f"{min(rule.persistence.m, len(s['window']))} observations reached "
                f"{lv.raise_at:g}"
            )
        s["active"] = True
    elif current is not None and level is None:
        lv = rule.levels[current]
        kind = "resolved"
        reason = (
            f"the last {rule.clear_after} observation(s) stayed below {lv.clear_threshold:g}"
        )
        s["active"] = False
        s["resolved_at"] = t
    elif current is not None and level is not None and level != current:
        kind = "updated"
        verb = "raised" if level > current else "lowered"
        reason = (
            f"severity {verb} from {rule.levels[current].severity} to "
            f"{rule.levels[level].severity}"
        )
    elif current is not None and level is not None and latest:
        kind, reason = _update_while_firing(rule, s, obs)

    if s["active"]:
        s["level"] = level
        s["last_level"] = level
    else:
        s["level"] = None
    if kind is None:
        return s, None
    return _step(rule, s, obs.place_key, kind, reason, obs)


def _take_latest(s: dict[str, Any], obs: Observation) -> None:
    # Only the newest observation describes the place now; a late one (an older acquisition
    # processed after newer ones) still counts in the window but must not repaint the alert.
    s["labels"] = {**s["labels"], **obs.labels}
    s["place_name"] = obs.place_name
    if obs.area is not None:
        s["area"] = dict(obs.area)
    s["details"] = dict(obs.details)
    s["value"] = obs.value


def _hits(window: Sequence[dict[str, Any]], rule: Any, threshold: float) -> int:
    return sum(1 for e in window[-rule.persistence.m:] if e["v"] >= threshold)


def _update_while_firing(
    rule: Any, s: dict[str, Any], obs: Observation
) -> tuple[TransitionKind | None, str]:
    notified = s["notified"] or {}
    last_value = notified.get("value")
    if (
        rule.growth_ratio is not None
        and last_value
        and last_value > 0
        and obs.value >= last_value * (1 + rule.growth_ratio)
    ):
        return "updated", f"value grew from {last_value:g} to {obs.value:g}"
    ratio = getattr(rule, "area_growth_ratio", None)
    last_area = notified.get("area_m2")
    area_now = obs.details.get("area_m2")
    if ratio is not None and last_area and area_now is not None and (
        area_now >= last_area * (1 + ratio)
    ):
        return "updated", f"area grew from {last_area:.0f} m2 to {area_now:.0f} m2"
    repeat = rule.repeat_interval_days
    if (
        repeat is not None
        and notified.get("t")
        and _days(obs.event_time, date.fromisoformat(notified["t"])) >= repeat
    ):
        return "updated", f"still firing after {repeat} days (repeat)"
    return None, ""


def _step(
    rule: Any,
    s: dict[str, Any],
    place_key: str,
    kind: TransitionKind,
    reason: str,
    obs: Observation | None,
) -> tuple[dict[str, Any], Transition]:
    s["revision"] += 1
    event_time = obs.event_time.isoformat() if obs is not None else s["last_obs"]
    s["notified"] = {
        "t": event_time,
        "value": s["value"],
        "level": s["last_level"],
        "area_m2": (obs.details.get("area_m2") if obs is not None else None),
    }
    state = {**s, "references": list(s["references"])}
    transition = Transition(rule, place_key, kind, reason, state, obs)
    s["references"] = [*s["references"], f"{s['alert_id']}#{s['revision']}"]
    return s, transition


def expire(
    rule: Any, place_key: str, state: dict[str, Any], now: date
) -> tuple[dict[str, Any], Transition | None]:
    """End a firing alert whose place was not observed for ``expire_after_days`` (event time)."""
    if not state.get("active") or not state.get("last_obs"):
        return state, None
    idle = _days(now, date.fromisoformat(state["last_obs"]))
    if idle <= rule.expire_after_days:
        return state, None
    s = dict(state)
    s["active"] = False
    s["level"] = None
    s["resolved_at"] = now.isoformat()
    reason = f"no observation for {idle} days (expires after {rule.expire_after_days})"
    s, transition = _step(rule, s, place_key, "expired", reason, None)
    # An expiry happens "now", not at the last observation.
    s["notified"]["t"] = now.isoformat()
    transition.state["notified"] = dict(s["notified"])
    # The expired episode's observations are stale: they must not count towards the
    # persistence of the next one (the revision above keeps them as its evidence).
    s["window"] = []
    return s, transition


def expires_on(rule: Any, state: dict[str, Any]) -> date | None:
    """The event date after which a firing alert expires without new observations."""
    if not state.get("last_obs"):
        return None
    return date.fromisoformat(state["last_obs"]) + timedelta(days=rule.expire_after_days)
