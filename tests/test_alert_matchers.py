"""Label matchers, silences, inhibition and subscription matching (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.alerts.matchers import (
    InhibitRule,
    Matcher,
    Silence,
    all_match,
    parse_matcher,
    parse_matchers,
    suppression,
)
from monitor.alerts.subscriptions import (
    Subscription,
    SubscriptionSpec,
    geometry_of,
    matches,
)

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ETNA_LABELS = {"scope": "volcano", "volcano_id": "etna", "severity": "Severe"}


def square(west: float, south: float, size: float = 1.0) -> dict[str, Any]:
    """A GeoJSON square polygon with its south-west corner at (west, south)."""
    e, n = west + size, south + size
    ring = [[west, south], [e, south], [e, n], [west, n], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


# ---------------------------------------------------------------------- matchers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("volcano_id=etna", Matcher("volcano_id", "=", "etna")),
        ("volcano_id!=etna", Matcher("volcano_id", "!=", "etna")),
        ("severity=~Severe|Extreme", Matcher("severity", "=~", "Severe|Extreme")),
        ("severity!~Minor", Matcher("severity", "!~", "Minor")),
        ("  scope =  tile  ", Matcher("scope", "=", "tile")),
        ('scope="tile"', Matcher("scope", "=", "tile")),
        ("scope='tile'", Matcher("scope", "=", "tile")),
        ('scope="two words"', Matcher("scope", "=", "two words")),
        ("scope=\"tile'", Matcher("scope", "=", "\"tile'")),  # unbalanced quotes are kept
        ('scope=""', Matcher("scope", "=", "")),
        ("scope=", Matcher("scope", "=", "")),
        ("expr=a=b", Matcher("expr", "=", "a=b")),  # the first operator splits
        ("_x1!=~y", Matcher("_x1", "!=", "~y")),
        ("a==~", Matcher("a", "=", "=~")),  # '=' then the value '=~', not a regex
    ],
)
def test_parse_matcher_reads_every_operator_and_optional_quotes(
    text: str, expected: Matcher
) -> None:
    assert parse_matcher(text) == expected


def test_parse_matcher_round_trips_through_str_and_json() -> None:
    for text in ("volcano_id=etna", "a!=b", "severity=~Severe|Extreme", "s!~M.*"):
        matcher = parse_matcher(text)
        assert str(matcher) == text
        assert parse_matcher(matcher.to_json_dict()) == matcher


def test_parse_matcher_accepts_mappings_with_equality_by_default() -> None:
    assert parse_matcher({"label": "scope", "value": "tile"}) == Matcher("scope", "=", "tile")
    assert parse_matcher({"label": "n", "op": "!=", "value": 3}) == Matcher("n", "!=", "3")
    with pytest.raises(ValueError, match="lacks 'value'"):
        parse_matcher({"label": "scope"})
    with pytest.raises(ValueError, match="lacks 'label'"):
        parse_matcher({"value": "tile"})
    with pytest.raises(ValueError, match="regular expression"):
        parse_matcher({"label": "scope", "op": "=~", "value": "til(e"})


@pytest.mark.parametrize(
    "text", ["", "volcano_id", "=etna", "1abc=x", "volcano-id=etna", "a~b", "a<b"]
)
def test_parse_matcher_rejects_what_is_not_label_op_value(text: str) -> None:
    with pytest.raises(ValueError, match="label op value"):
        parse_matcher(text)


def test_parse_matcher_rejects_an_unknown_operator_in_a_mapping() -> None:
    with pytest.raises(ValueError):
        parse_matcher({"label": "scope", "op": "<>", "value": "tile"})


@pytest.mark.parametrize("text", ["a=~(b", "a!~[z-a]", "a=~*"])
def test_a_bad_regular_expression_is_refused_at_parse_time(text: str) -> None:
    with pytest.raises(ValueError, match="bad regular expression"):
        parse_matcher(text)


def test_parse_matchers_returns_a_tuple_and_all_match_of_none_is_true() -> None:
    parsed = parse_matchers(["a=1", {"label": "b", "value": "2"}])
    assert parsed == (Matcher("a", "=", "1"), Matcher("b", "=", "2"))
    assert parse_matchers([]) == ()
    assert all_match((), {"anything": "x"})
    assert all_match(parsed, {"a": "1", "b": "2", "c": "3"})
    assert not all_match(parsed, {"a": "1", "b": "3"})


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("volcano_id=etna", {"volcano_id": "etna"}, True),
        ("volcano_id=etna", {"volcano_id": "Etna"}, False),
        ("volcano_id!=etna", {"volcano_id": "vesuvio"}, True),
        ("volcano_id!=etna", {"volcano_id": "etna"}, False),
        # A missing label reads as "": != matches it, = "" matches it, =~ .+ does not.
        ("volcano_id!=etna", {}, True),
        ("volcano_id=etna", {}, False),
        ('volcano_id=""', {}, True),
        ("volcano_id=~.*", {}, True),
        ("volcano_id=~.+", {}, False),
        ("volcano_id!~.+", {}, True),
        # Regular expressions are anchored at both ends, as in Alertmanager.
        ("volcano_id=~et", {"volcano_id": "etna"}, False),
        ("volcano_id=~tna", {"volcano_id": "etna"}, False),
        ("volcano_id=~et.*", {"volcano_id": "etna"}, True),
        ("volcano_id=~etna", {"volcano_id": "etna\n"}, False),
        ("severity=~Severe|Extreme", {"severity": "Extreme"}, True),
        ("severity=~Severe|Extreme", {"severity": "Severe"}, True),
        ("severity=~Severe|Extreme", {"severity": "Severe2"}, False),
        ("severity=~Severe|Extreme", {"severity": "VerySevere"}, False),
        ("volcano_id!~et", {"volcano_id": "etna"}, True),
        ("volcano_id!~et.*", {"volcano_id": "etna"}, False),
    ],
)
def test_matcher_semantics(text: str, labels: Mapping[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


# ---------------------------------------------------------------------- silences


def silence(silence_id: str, *matchers: str, hours: float = 1.0) -> Silence:
    return Silence(silence_id, parse_matchers(matchers), T0, T0 + timedelta(hours=hours))


def test_a_silence_is_active_from_its_start_until_just_before_its_end() -> None:
    s = silence("s1", "volcano_id=etna")
    assert not s.active_at(T0 - timedelta(microseconds=1))
    assert s.active_at(T0)
    assert s.active_at(T0 + timedelta(minutes=59))
    assert not s.active_at(T0 + timedelta(hours=1))


def test_a_silence_silences_matching_labels_only_while_active() -> None:
    s = silence("s1", "volcano_id=etna", "severity=~Severe|Extreme")
    inside = T0 + timedelta(minutes=30)
    assert s.silences(ETNA_LABELS, inside)
    assert not s.silences({**ETNA_LABELS, "severity": "Minor"}, inside)  # all must match
    assert not s.silences({**ETNA_LABELS, "volcano_id": "stromboli"}, inside)
    assert not s.silences(ETNA_LABELS, T0 + timedelta(hours=2))


def test_silence_to_json_dict() -> None:
    s = Silence("s1", parse_matchers(["a=1", "b=~x|y"]), T0, T0 + timedelta(hours=1), "ops",
                "maintenance")
    assert s.to_json_dict() == {
        "silence_id": "s1",
        "matchers": ["a=1", "b=~x|y"],
        "starts_at": "2026-11-21T10:00:00+00:00",
        "ends_at": "2026-11-21T11:00:00+00:00",
        "created_by": "ops",
        "comment": "maintenance",
    }


# ---------------------------------------------------------------------- inhibition

VOLCANO_INHIBITS_TILES = InhibitRule(
    source=parse_matchers(["scope=volcano"]),
    target=parse_matchers(["scope=tile"]),
    equal=("volcano_id",),
)


def test_inhibition_needs_source_target_and_equal_labels() -> None:
    volcano = {"scope": "volcano", "volcano_id": "etna"}
    tile = {"scope": "tile", "volcano_id": "etna", "tile": "3-4"}
    rule = VOLCANO_INHIBITS_TILES
    assert rule.inhibits(volcano, tile)
    assert not rule.inhibits(volcano, {**tile, "volcano_id": "vesuvio"})  # other volcano
    assert not rule.inhibits(tile, volcano)  # the roles are not symmetric
    assert not rule.inhibits({**volcano, "scope": "region"}, tile)
    assert not rule.inhibits(volcano, {**tile, "scope": "volcano"})
    # A label missing on both sides reads as "" on both: equal.
    assert rule.inhibits({"scope": "volcano"}, {"scope": "tile"})
    assert not rule.inhibits({"scope": "volcano"}, tile)
    assert InhibitRule(rule.source, rule.target).inhibits(volcano, {**tile, "volcano_id": "x"})


def test_suppression_lists_active_silences_and_firing_inhibitors_sorted() -> None:
    tile = {"scope": "tile", "volcano_id": "etna"}
    firing: Sequence[tuple[str, Mapping[str, str]]] = [
        ("volcano-etna.e2", {"scope": "volcano", "volcano_id": "etna"}),
        ("volcano-vesuvio.e1", {"scope": "volcano", "volcano_id": "vesuvio"}),
        ("volcano-etna.e1", {"scope": "volcano", "volcano_id": "etna"}),
        ("tile-etna.e1", tile),
    ]
    silences = [
        silence("s-b", "volcano_id=etna"),
        silence("s-a", "scope=tile"),
        silence("s-other", "volcano_id=vesuvio"),
        Silence("s-later", parse_matchers(["scope=tile"]), T0 + timedelta(hours=5),
                T0 + timedelta(hours=6)),
    ]
    result = suppression(
        tile, "tile-etna.e1", now=T0, silences=silences,
        inhibit_rules=[VOLCANO_INHIBITS_TILES], firing=iter(firing),
    )
    assert result == {
        "silenced_by": ["s-a", "s-b"],
        "inhibited_by": ["volcano-etna.e1", "volcano-etna.e2"],
    }


def test_an_alert_never_inhibits_itself() -> None:
    # Source and target both match any alert: only *other* firing alerts may inhibit.
    everything = InhibitRule(parse_matchers(["scope=~.*"]), parse_matchers(["scope=~.*"]))
    labels = {"scope": "volcano"}
    alone = suppression(labels, "a1", now=T0, silences=[], inhibit_rules=[everything],
                        firing=[("a1", labels)])
    assert alone == {"silenced_by": [], "inhibited_by": []}
    other = suppression(labels, "a1", now=T0, silences=[], inhibit_rules=[everything],
                        firing=[("a1", labels), ("a2", labels)])
    assert other["inhibited_by"] == ["a2"]


def test_without_inhibit_rules_nothing_is_inhibited() -> None:
    result = suppression({"scope": "tile"}, "t1", now=T0, silences=[], inhibit_rules=[],
                         firing=[("v1", {"scope": "volcano"})])
    assert result == {"silenced_by": [], "inhibited_by": []}


# ---------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "  "}, "name is empty"),
        ({"url": "ftp://example.org/hook"}, "http"),
        ({"url": "example.org/hook"}, "http"),
        ({"hazards": ("volcanic_unrest", "tsunami")}, r"unknown hazards \['tsunami'\]"),
        ({"min_severity": "Critical"}, "min_severity 'Critical'"),
        ({"min_severity": "severe"}, "min_severity"),
        ({"format": "xml"}, "json or cap"),
        ({"area": {"type": "Polygon", "coordinates": "nonsense"}}, "not valid GeoJSON"),
        ({"area": {"type": "Polygon", "coordinates": []}}, "empty geometry"),
    ],
)
def test_subscription_spec_check_explains_what_is_wrong(
    changes: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"name": "civil protection", "url": "https://cp.example.org/hook"}
    fields.update(changes)
    with pytest.raises(ValueError, match=message):
        SubscriptionSpec(**fields).check()


def test_a_complete_subscription_spec_passes() -> None:
    SubscriptionSpec(
        name="cp", url="http://cp.example.org/hook", area=square(14.0, 37.0),
        hazards=("volcanic_unrest", "ground_deformation"), min_severity="Extreme",
        format="cap",
    ).check()
    SubscriptionSpec(name="everything", url="https://example.org").check()


def test_geometry_of_reads_geometries_features_and_feature_collections() -> None:
    assert geometry_of(square(0, 0)).area == pytest.approx(1.0)
    feature = {"type": "Feature", "properties": {}, "geometry": square(0, 0, 2)}
    assert geometry_of(feature).area == pytest.approx(4.0)
    collection = {"type": "FeatureCollection",
                  "features": [feature, {"type": "Feature", "geometry": square(10, 10)}]}
    assert geometry_of(collection).area == pytest.approx(5.0)


BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


def test_geometry_of_repairs_a_self_intersecting_ring_instead_of_refusing_it() -> None:
    repaired = geometry_of(BOWTIE)  # a hand-drawn bow tie
    assert repaired.is_valid and not repaired.is_empty


def test_repairing_a_bow_tie_keeps_both_lobes() -> None:
    assert geometry_of(BOWTIE).area == pytest.approx(0.5)


@pytest.mark.parametrize(
    "area",
    [
        {"type": "Feature", "properties": {}},  # no geometry
        {"type": "FeatureCollection"},  # no features
        {"coordinates": [0, 0]},
        {"type": "Point"},
        ["not", "a", "mapping"],
        pytest.param({"type": "FeatureCollection", "features": []},
                     id="empty-feature-collection"),
        pytest.param({"type": "Triangle", "coordinates": [0, 0]}, id="unknown-geometry-type"),
    ],
)
def test_geometry_of_refuses_what_is_not_an_area(area: Any) -> None:
    with pytest.raises(ValueError):
        geometry_of(area)


def subscription(
    *,
    area: Mapping[str, Any] | None = None,
    hazards: tuple[str, ...] = (),
    min_severity: str = "Minor",
    active: bool = True,
) -> Subscription:
    return Subscription("sub-1", "cp", "https://cp.example.org/hook", area, hazards,
                        min_severity, "json", active, T0)


def event(
    *,
    state: str = "firing",
    hazard: str = "volcanic_unrest",
    severity: str = "Severe",
    area: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {"state": state, "hazard": hazard, "severity": severity,
            "area": {"geometry": area or square(14.5, 37.5)}}


def test_matches_by_hazard_severity_and_area() -> None:
    assert matches(subscription(), event(), received_before=False)  # everything, everywhere
    assert matches(subscription(hazards=("volcanic_unrest",)), event(), received_before=False)
    assert not matches(subscription(hazards=("ground_deformation",)), event(),
                       received_before=False)
    assert matches(subscription(min_severity="Severe"), event(), received_before=False)
    assert not matches(subscription(min_severity="Extreme"), event(), received_before=False)
    assert matches(subscription(area=square(15.0, 38.0)), event(), received_before=False)
    assert matches(subscription(area=square(15.5, 38.5)), event(), received_before=False)  # touch
    assert not matches(subscription(area=square(20.0, 40.0)), event(), received_before=False)
    feature = {"type": "Feature", "geometry": square(15.0, 38.0)}
    assert matches(subscription(area=feature), event(), received_before=False)


def test_an_alert_that_ends_unseen_is_not_news_but_earlier_recipients_hear_everything() -> None:
    resolved = event(state="resolved", severity="Minor", hazard="ground_deformation",
                     area=square(20.0, 40.0))
    picky = subscription(area=square(14.0, 37.0), hazards=("volcanic_unrest",),
                         min_severity="Extreme")
    assert not matches(subscription(), resolved, received_before=False)
    assert matches(picky, resolved, received_before=True)
    assert matches(picky, event(severity="Minor"), received_before=True)


def test_an_inactive_subscription_matches_nothing() -> None:
    assert not matches(subscription(active=False), event(), received_before=False)
    assert not matches(subscription(active=False), event(), received_before=True)


def test_subscription_geometry_is_parsed_once() -> None:
    sub = subscription(area=square(0, 0))
    first = sub.geometry()
    assert first is not None and first is sub.geometry()
    assert subscription().geometry() is None
    assert sub.to_json_dict()["created_at"] == "2026-11-21T10:00:00+00:00"
