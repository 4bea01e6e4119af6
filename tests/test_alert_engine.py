"""The alert rule engine (monitor.alerts.engine): persistence, hysteresis, lifecycle, ids.

Observations are built directly (no messages), one per Sentinel-1 acquisition 12 days
apart from 2024-01-01, so the event dates of the examples are easy to check by hand.
Every transition is turned into an ``alert.v1`` revision and validated against the
contract, so the engine's output is always something the stage can publish.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from monitor.alerts.engine import Transition, alert_id, evaluate, expire, held_level, raise_level
from monitor.alerts.observations import Observation
from monitor.alerts.payload import build_alert_event
from monitor.alerts.rule_config import Level, Persistence, PSTrendRule, UnrestRule
from pipelines.messages import validate

START = date(2024, 1, 1)
STEP_DAYS = 12  # Sentinel-1 repeat cycle
SENT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PLACE = "volcano:etna"
SUMMIT = {
    "description": "Etna summit",
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[14.9, 37.7], [15.1, 37.7], [15.1, 37.8], [14.9, 37.8], [14.9, 37.7]]],
    },
}


def acquisition(n: int) -> date:
    return START + timedelta(days=STEP_DAYS * n)


def obs(n: int, value: float, *, when: date | None = None, rule: str = "unrest") -> Observation:
    """Observation number ``n`` (id ``det-n``), by default on acquisition date ``n``."""
    return Observation(
        rule, PLACE, "Etna", f"det-{n}", acquisition(n) if when is None else when, value,
        {"volcano_id": "etna", "scope": "volcano"}, SUMMIT, {},
    )


def unrest_rule(**overrides: Any) -> UnrestRule:
    """One Severe level raised at 0.8 and cleared below 0.5; no persistence by default."""
    fields: dict[str, Any] = {
        "name": "unrest",
        "kind": "unrest",
        "levels": [Level(severity="Severe", raise_at=0.8, clear_at=0.5)],
        "persistence": Persistence(n=1, m=1),
        "clear_after": 1,
    }
    return UnrestRule(**{**fields, **overrides})


def two_level_rule(**overrides: Any) -> UnrestRule:
    """The default unrest levels (Moderate 0.5/0.3, Severe 0.8/0.6), no persistence."""
    fields: dict[str, Any] = {
        "name": "unrest", "kind": "unrest", "persistence": Persistence(n=1, m=1),
        "clear_after": 1,
    }
    return UnrestRule(**{**fields, **overrides})


def published(t: Transition) -> dict[str, Any]:
    event = build_alert_event(t, sent_at=SENT)
    validate("alert.v1", event)
    return event


def fold(
    rule: Any, values: Sequence[float], state: dict[str, Any] | None = None, first: int = 0
) -> tuple[dict[str, Any], list[Transition | None]]:
    """Feed one value per acquisition (numbered from ``first``); every step is published."""
    steps: list[Transition | None] = []
    for n, value in enumerate(values, start=first):
        state, t = evaluate(rule, state, obs(n, value))
        if t is not None:
            published(t)
        steps.append(t)
    assert state is not None
    return state, steps


def kinds(steps: Sequence[Transition | None]) -> list[str | None]:
    return [None if t is None else t.kind for t in steps]


# ------------------------------------------------------------------------ persistence
def test_single_atmospheric_false_positive_does_not_raise() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    state, steps = fold(rule, [0.1, 0.95, 0.1, 0.2])
    assert kinds(steps) == [None, None, None, None]
    assert state["active"] is False
    assert state["episode"] == 0


def test_two_hits_within_three_observations_raise_on_the_second_hit() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    _, steps = fold(rule, [0.9, 0.1, 0.85])
    assert kinds(steps) == [None, None, "raised"]
    assert steps[2] is not None
    assert steps[2].reason == "2 of the last 3 observations reached 0.8"


def test_hits_farther_apart_than_the_window_do_not_raise() -> None:
    # The hits at acquisitions 0 and 3 are never both among the last three.
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    _, steps = fold(rule, [0.9, 0.1, 0.1, 0.9])
    assert kinds(steps) == [None, None, None, None]


def test_raise_level_counts_hits_among_the_last_m_only() -> None:
    rule = two_level_rule(persistence=Persistence(n=2, m=3))
    window = [{"id": str(i), "t": "2024-01-01", "v": v} for i, v in enumerate([0.9, 0.9, 0.6, 0.1])]
    # last three: 0.9, 0.6, 0.1 -> Severe (0.8) once, Moderate (0.5) twice
    assert raise_level(rule, window) == 0
    assert raise_level(rule, window[:3]) == 1
    assert raise_level(rule, window[2:]) is None


# ------------------------------------------------------------------------- hysteresis
def test_value_between_clear_and_raise_thresholds_keeps_the_alert() -> None:
    state, steps = fold(unrest_rule(), [0.9, 0.6, 0.51])
    assert kinds(steps) == ["raised", None, None]
    assert state["active"] is True
    assert state["level"] == 0


def test_value_between_thresholds_does_not_raise_an_inactive_place() -> None:
    state, steps = fold(unrest_rule(), [0.6, 0.7, 0.79])
    assert kinds(steps) == [None, None, None]
    assert state["active"] is False


def test_resolution_after_one_low_observation_with_clear_after_one() -> None:
    state, steps = fold(unrest_rule(), [0.9, 0.49])
    assert kinds(steps) == ["raised", "resolved"]
    assert steps[1] is not None
    assert steps[1].reason == "the last 1 observation(s) stayed below 0.5"
    assert state["active"] is False
    assert state["level"] is None
    assert state["resolved_at"] == acquisition(1).isoformat()


def test_clear_after_two_needs_two_consecutive_low_observations() -> None:
    # 0.6 in between interrupts the run of lows; the alert resolves on the 2nd of 0.4, 0.3.
    _, steps = fold(unrest_rule(clear_after=2), [0.9, 0.4, 0.6, 0.4, 0.3])
    assert kinds(steps) == ["raised", None, None, None, "resolved"]
    assert steps[4] is not None
    assert steps[4].reason == "the last 2 observation(s) stayed below 0.5"


def test_held_level_steps_down_only_as_far_as_the_lows_allow() -> None:
    rule = two_level_rule(clear_after=2)
    lows = [{"id": str(i), "t": "2024-01-01", "v": v} for i, v in enumerate([0.55, 0.4])]
    # Both below Severe's 0.6, neither below Moderate's 0.3: hold Moderate.
    assert held_level(rule, lows, 1) == 0
    assert held_level(rule, lows[:1], 1) == 1  # one observation cannot satisfy clear_after=2
    assert held_level(rule, lows, None) is None


# ------------------------------------------------------------- escalation and lowering
def test_severity_escalation_and_de_escalation_are_updates() -> None:
    rule = two_level_rule()
    state, steps = fold(rule, [0.6, 0.9, 0.65, 0.55, 0.2])
    assert kinds(steps) == ["raised", "updated", None, "updated", "resolved"]
    raised, up, down, resolved = steps[0], steps[1], steps[3], steps[4]
    assert raised is not None and up is not None and down is not None and resolved is not None
    assert up.reason == "severity raised from Moderate to Severe"
    assert down.reason == "severity lowered from Severe to Moderate"
    assert [published(t)["severity"] for t in (raised, up, down, resolved)] == [
        "Moderate", "Severe", "Moderate", "Moderate"
    ]
    assert state["active"] is False


# --------------------------------------------------------------------------- stable ids
def test_alert_id_is_rule_place_and_episode() -> None:
    assert alert_id("unrest", "volcano:etna", 3) == "unrest.volcano:etna.e3"


def test_revisions_count_up_and_reference_only_earlier_revisions() -> None:
    _, steps = fold(two_level_rule(), [0.6, 0.9, 0.55, 0.2])
    done = [t for t in steps if t is not None]
    assert [t.state["alert_id"] for t in done] == ["unrest.volcano:etna.e1"] * 4
    assert [t.state["revision"] for t in done] == [1, 2, 3, 4]
    assert [t.state["references"] for t in done] == [
        [],
        ["unrest.volcano:etna.e1#1"],
        ["unrest.volcano:etna.e1#1", "unrest.volcano:etna.e1#2"],
        ["unrest.volcano:etna.e1#1", "unrest.volcano:etna.e1#2", "unrest.volcano:etna.e1#3"],
    ]
    events = [published(t) for t in done]
    assert [e["alert_event_id"] for e in events] == [
        f"unrest.volcano:etna.e1#{k}" for k in (1, 2, 3, 4)
    ]
    assert events[3]["references"] == done[3].state["references"]


def test_a_raise_after_resolution_starts_a_new_episode() -> None:
    state, steps = fold(unrest_rule(), [0.9, 0.1, 0.1, 0.9])
    assert kinds(steps) == ["raised", "resolved", None, "raised"]
    second = steps[3]
    assert second is not None
    assert second.state["alert_id"] == "unrest.volcano:etna.e2"
    assert second.state["revision"] == 1
    assert second.state["references"] == []
    assert second.state["started"] == acquisition(3).isoformat()
    assert state["episode"] == 2


def test_evaluate_does_not_modify_the_state_it_is_given() -> None:
    state, _ = fold(unrest_rule(), [0.9, 0.6])
    before = copy.deepcopy(state)
    evaluate(unrest_rule(), state, obs(2, 0.1))
    assert state == before


# ------------------------------------------------------------------- dedup and restarts
@pytest.mark.parametrize("through_json", [False, True], ids=["in_memory", "json_round_trip"])
def test_replaying_the_same_observations_after_a_restart_changes_nothing(
    through_json: bool,
) -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    values = [0.9, 0.1, 0.85, 0.95, 0.2]
    saved, _ = fold(rule, values)
    if through_json:  # what the alert store does with it
        saved = json.loads(json.dumps(saved))
    reference = copy.deepcopy(saved)
    state = saved
    for n, value in enumerate(values):
        state, t = evaluate(rule, state, obs(n, value))
        assert t is None
    assert state == reference
    assert [e["id"] for e in state["window"]] == ["det-2", "det-3", "det-4"]


def test_a_state_read_back_from_json_goes_on_as_before() -> None:
    rule = unrest_rule(clear_after=2)
    saved, _ = fold(rule, [0.9, 0.3])
    state = json.loads(json.dumps(saved))
    state, t = evaluate(rule, state, obs(2, 0.2))
    assert t is not None
    assert t.kind == "resolved"
    assert t.state["alert_id"] == "unrest.volcano:etna.e1"
    assert t.state["revision"] == 2
    assert t.state["references"] == ["unrest.volcano:etna.e1#1"]


# ------------------------------------------------------------------------ event time
def test_late_observation_is_placed_by_event_time_in_the_window() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    state, _ = fold(rule, [0.9])
    state, _ = evaluate(rule, state, obs(2, 0.1))  # 2024-01-25
    state, t = evaluate(rule, state, obs(1, 0.9))  # 2024-01-13, arrives last
    assert [(e["id"], e["t"]) for e in state["window"]] == [
        ("det-0", "2024-01-01"), ("det-1", "2024-01-13"), ("det-2", "2024-01-25"),
    ]
    # The late hit completes 2 of 3: raised, though it was not the newest acquisition.
    assert t is not None and t.kind == "raised"
    assert state["last_obs"] == "2024-01-25"


def test_observation_older_than_a_full_window_falls_out_of_it() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2)
    state, _ = fold(rule, [0.1, 0.1, 0.1], first=5)
    state, t = evaluate(rule, state, obs(0, 0.9))
    assert t is None
    assert [e["id"] for e in state["window"]] == ["det-5", "det-6", "det-7"]
    assert state["last_obs"] == acquisition(7).isoformat()


# ---------------------------------------------------------------------------- cooldown
def test_re_raise_within_cooldown_reopens_the_same_alert() -> None:
    rule = unrest_rule(cooldown_days=30)
    # resolved on 2024-01-13, raised again on 2024-01-25: 12 days later
    state, steps = fold(rule, [0.9, 0.1, 0.9])
    assert kinds(steps) == ["raised", "resolved", "updated"]
    reopened = steps[2]
    assert reopened is not None
    assert reopened.reason == "raised again within the 30-day cooldown: episode reopened"
    assert reopened.state["alert_id"] == "unrest.volcano:etna.e1"
    assert reopened.state["revision"] == 3
    assert reopened.state["references"] == ["unrest.volcano:etna.e1#1", "unrest.volcano:etna.e1#2"]
    assert reopened.state["started"] == "2024-01-01"
    event = published(reopened)
    assert (event["msg_type"], event["state"]) == ("Update", "firing")
    assert state["episode"] == 1


@pytest.mark.parametrize(
    ("days_after_resolution", "kind", "expected_id"),
    [
        (30, "updated", "unrest.volcano:etna.e1"),  # "within this many days": inclusive
        (31, "raised", "unrest.volcano:etna.e2"),
    ],
)
def test_cooldown_ends_after_cooldown_days(
    days_after_resolution: int, kind: str, expected_id: str
) -> None:
    rule = unrest_rule(cooldown_days=30)
    state, _ = fold(rule, [0.9, 0.1])
    late = acquisition(1) + timedelta(days=days_after_resolution)
    _, t = evaluate(rule, state, obs(2, 0.9, when=late))
    assert t is not None
    assert (t.kind, t.state["alert_id"]) == (kind, expected_id)


# --------------------------------------------------------------------- repeat, growth
def test_still_firing_alert_is_repeated_every_repeat_interval() -> None:
    rule = unrest_rule(repeat_interval_days=30)
    # Notified on day 0; day 12, 24 too soon; day 36 >= 30 repeats; then counted from 36.
    _, steps = fold(rule, [0.9] * 7)
    assert kinds(steps) == ["raised", None, None, "updated", None, None, "updated"]
    assert steps[3] is not None
    assert steps[3].reason == "still firing after 30 days (repeat)"
    assert steps[3].state["notified"]["t"] == acquisition(3).isoformat()


@pytest.mark.parametrize(("days", "kind"), [(29, None), (30, "updated")])
def test_repeat_is_due_once_repeat_interval_days_have_passed(days: int, kind: str | None) -> None:
    rule = unrest_rule(repeat_interval_days=30)
    state, _ = fold(rule, [0.9])
    _, t = evaluate(rule, state, obs(1, 0.9, when=START + timedelta(days=days)))
    assert (None if t is None else t.kind) == kind


def test_growth_by_the_growth_ratio_sends_an_update() -> None:
    rule = PSTrendRule(
        name="ps", kind="ps_trend", levels=[Level(severity="Moderate", raise_at=10)],
        growth_ratio=0.5,
    )
    # 10 notified -> needs 15; 15 notified -> needs 22.5
    _, steps = fold(rule, [10, 14, 15, 22, 23])
    assert kinds(steps) == ["raised", None, "updated", None, "updated"]
    assert steps[2] is not None and steps[4] is not None
    assert steps[2].reason == "value grew from 10 to 15"
    assert steps[4].reason == "value grew from 15 to 23"


def test_no_growth_update_without_a_growth_ratio() -> None:
    rule = PSTrendRule(name="ps", kind="ps_trend", levels=[Level(severity="Moderate", raise_at=10)])
    _, steps = fold(rule, [10, 100, 1000])
    assert kinds(steps) == ["raised", None, None]


# ------------------------------------------------------------------------------ expiry
def test_firing_alert_idle_longer_than_expire_after_days_expires() -> None:
    rule = unrest_rule(expire_after_days=60)
    state, _ = fold(rule, [0.9])  # last observation 2024-01-01
    now = date(2024, 3, 2)  # 61 days later
    new, t = expire(rule, PLACE, state, now)
    assert t is not None
    assert t.kind == "expired"
    assert t.reason == "no observation for 61 days (expires after 60)"
    assert t.state["revision"] == 2
    assert t.state["references"] == ["unrest.volcano:etna.e1#1"]
    assert new["active"] is False
    assert new["resolved_at"] == "2024-03-02"
    event = published(t)
    assert event["transition"] == "expired"
    assert event["state"] == "expired"
    assert event["msg_type"] == "Cancel"
    assert event["urgency"] == "Past"
    assert event["event_time"] == "2024-03-02"
    assert "expires" not in event


def test_firing_alert_within_expire_after_days_does_not_expire() -> None:
    rule = unrest_rule(expire_after_days=60)
    state, _ = fold(rule, [0.9])
    new, t = expire(rule, PLACE, state, date(2024, 3, 1))  # exactly 60 days
    assert t is None
    assert new == state


def test_inactive_state_never_expires() -> None:
    rule = unrest_rule(expire_after_days=1)
    never_raised, _ = fold(rule, [0.1])
    resolved, _ = fold(rule, [0.9, 0.1])
    for state in (never_raised, resolved):
        new, t = expire(rule, PLACE, state, date(2030, 1, 1))
        assert t is None
        assert new == state


def test_low_observation_after_expiry_does_not_raise_a_new_alert() -> None:
    # The expired episode's hits must not count for the next one: a low value
    # after a long silence is no evidence of unrest.
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2, expire_after_days=60)
    state, _ = fold(rule, [0.9, 0.9, 0.9])
    state, t = expire(rule, PLACE, state, date(2024, 5, 1))
    assert t is not None and t.kind == "expired"
    state, t = evaluate(rule, state, obs(20, 0.1))
    assert t is None
    assert state["active"] is False


def test_expired_revision_keeps_its_evidence() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2, expire_after_days=60)
    state, _ = fold(rule, [0.9, 0.9])
    _, t = expire(rule, PLACE, state, date(2024, 5, 1))
    assert t is not None
    assert [e["id"] for e in published(t)["evidence"]] == ["det-0", "det-1"]


def test_new_episode_after_expiry_needs_persistence_again() -> None:
    rule = unrest_rule(persistence=Persistence(n=2, m=3), clear_after=2, expire_after_days=60)
    state, _ = fold(rule, [0.9, 0.9])
    state, _ = expire(rule, PLACE, state, date(2024, 5, 1))
    state, steps = fold(rule, [0.9, 0.9], state=state, first=20)
    assert kinds(steps) == [None, "raised"]
    assert steps[1] is not None
    assert steps[1].state["alert_id"] == "unrest.volcano:etna.e2"


def test_late_observation_counts_in_the_window_but_does_not_repaint_the_alert() -> None:
    rule = unrest_rule(growth_ratio=0.1)
    state, step = evaluate(rule, None, obs(5, 0.85))
    assert step is not None and step.kind == "raised"
    # An older acquisition processed later, with a higher value: no "value grew" update,
    # and the alert keeps describing the newest acquisition.
    state, step = evaluate(rule, state, obs(2, 0.99))
    assert step is None
    assert state["value"] == 0.85
    assert [e["id"] for e in state["window"]][-1] == "det-5"
