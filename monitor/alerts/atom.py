"""Atom 1.0 feed of CAP alerts, the index public alert hubs poll.

Alert aggregators (the WMO / Google alert hubs, national CAP hubs) do not subscribe to a
broker: they poll an Atom feed (RFC 4287) whose entries each link to one CAP document with
``type="application/cap+xml"``, and fetch the CAP files they have not seen. This module
writes that feed from alert revisions and the URLs their CAP files are served at
(see :mod:`monitor.alerts.cap`).

An entry's ``<id>`` is derived from the revision's ``alert_event_id``, so a revision keeps
its entry id across feed rebuilds and a poller never sees it twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from lxml import etree

from monitor.alerts.cap import hazard_name, parse_timestamp

__all__ = ["ATOM_NS", "CAP_MIME_TYPE", "atom_datetime", "atom_entry_id", "atom_feed"]

ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME_TYPE = "application/cap+xml"
ENTRY_ID_PREFIX = "urn:insar-monitor:alert-event:"


def atom_datetime(value: str | datetime) -> str:
    """Format a timestamp as an RFC 3339 UTC date-time, ``YYYY-MM-DDThh:mm:ssZ``.

    Parameters
    ----------
    value
        An RFC 3339 string with ``Z`` or an offset, or an aware datetime.

    Returns
    -------
    str
        The instant in UTC, whole seconds.

    Raises
    ------
    ValueError
        A naive datetime or a malformed string.
    """
    return parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_entry_id(alert_event_id: str) -> str:
    """The permanent Atom entry id of a revision, ``urn:insar-monitor:alert-event:<id>``.

    Characters outside the URI-unreserved set are percent-encoded: ``#`` in particular
    would start a fragment and is not allowed in a URN.

    Parameters
    ----------
    alert_event_id
        ``alert_id#revision``.

    Returns
    -------
    str
        The URN.
    """
    return ENTRY_ID_PREFIX + quote(alert_event_id, safe="")


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _author(parent: etree._Element, name: str) -> None:
    author = _sub(parent, "author")
    _sub(author, "name", name)


def atom_feed(
    entries: Sequence[tuple[Mapping[str, Any], str]],
    *,
    feed_id: str,
    title: str,
    self_url: str,
    updated: datetime | str | None = None,
    author: str = "insar-monitor",
) -> bytes:
    """Build an Atom 1.0 feed with one entry per alert revision, each linking its CAP file.

    Parameters
    ----------
    entries
        ``(alert revision, cap_url)`` pairs; ``cap_url`` is where the revision's CAP 1.2
        document is served. Any order: the feed lists them newest first by ``sent_at``.
    feed_id
        The feed's permanent ``<id>`` (an IRI that never changes for this feed).
    title
        The feed's ``<title>``.
    self_url
        The URL the feed itself is served at (``<link rel="self">``).
    updated
        The feed's ``<updated>``; by default the newest entry's ``sent_at``, or now (UTC)
        for an empty feed.
    author
        ``<author><name>`` of the feed and of every entry.

    Returns
    -------
    bytes
        The feed, UTF-8 with an XML declaration.

    Raises
    ------
    ValueError
        A timestamp is naive or malformed, or two entries are the same revision (RFC 4287
        forbids two entries with the same id and updated time in one feed).
    """
    dated = [(parse_timestamp(event["sent_at"]), event, url) for event, url in entries]
    seen: set[str] = set()
    for _, event, _url in dated:
        event_id = str(event["alert_event_id"])
        if event_id in seen:
            raise ValueError(f"revision {event_id} appears twice in the feed")
        seen.add(event_id)
    # Newest first is what pollers and people expect; the id breaks ties so a rebuild
    # lists same-second revisions in the same order.
    dated.sort(key=lambda item: (item[0], str(item[1]["alert_event_id"])), reverse=True)

    if updated is not None:
        feed_updated = atom_datetime(updated)
    elif dated:
        feed_updated = atom_datetime(dated[0][0])
    else:
        feed_updated = atom_datetime(datetime.now(UTC))

    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    _sub(feed, "id", feed_id)
    _sub(feed, "title", title)
    _sub(feed, "updated", feed_updated)
    _sub(feed, "link", rel="self", href=self_url, type="application/atom+xml")
    _author(feed, author)
    _sub(feed, "generator", "insar-monitor")

    for sent_at, event, cap_url in dated:
        entry = _sub(feed, "entry")
        _sub(entry, "id", atom_entry_id(str(event["alert_event_id"])))
        _sub(entry, "title", str(event["headline"]))
        # A revision is never edited after it is sent (a change is a new revision), so it
        # was published and last updated at the same instant.
        stamp = atom_datetime(sent_at)
        _sub(entry, "updated", stamp)
        _sub(entry, "published", stamp)
        _author(entry, author)
        severity = str(event["severity"])
        place = str(event["place"]["name"])
        _sub(entry, "summary", f"{severity} {hazard_name(str(event['hazard']))}: {place}")
        _sub(entry, "link", rel="alternate", type=CAP_MIME_TYPE, href=cap_url)
        _sub(entry, "category", term=severity)

    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
