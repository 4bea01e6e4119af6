"""The HTTP API (monitor.api): alerts, CAP, the Atom feed, token-guarded management, server.

Every test runs the real application over a real SQLite alert store in ``tmp_path``; alerts
are written the way the daemon writes them, with ``AlertStore.apply``.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from lxml import etree
from sqlalchemy import create_engine

from monitor.alerts.atom import ATOM_NS
from monitor.alerts.cap import CAP_NS, validate_cap
from monitor.api import ApiServer, create_app
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertBatch, AlertStore

# Starlette warns at import that its TestClient wants the httpx2 package instead of the
# pinned httpx; it works with httpx, and the warning says nothing about this project.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).parent / "data" / "alert_event_example.json"
TOKEN = "tok-7d1f0c2a-very-secret"
PUBLIC_URL = "https://alerts.example.org/insar"

ETNA = "unrest-etna.volcano-etna.e1"
FLEGREI = "deformation-flegrei.region-flegrei.e1"
ADA = "ada-nap.ada-17.e1"


def make_alert(
    *,
    rule: str = "unrest-etna",
    kind: str = "unrest",
    place_key: str = "volcano-etna",
    place_name: str = "Etna",
    revision: int = 1,
    state: str = "firing",
    severity: str = "Severe",
    hazard: str = "volcanic_unrest",
    bbox: tuple[float, float, float, float] = (14.85, 37.65, 15.15, 37.85),
    sent_at: str = "2026-11-21T10:15:00Z",
    event_time: str = "2024-03-12",
    headline: str | None = None,
    silenced_by: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alert.v1 revision, built from the contract's example with the fields changed."""
    event = copy.deepcopy(json.loads(EXAMPLE.read_text()))
    alert_id = f"{rule}.{place_key}.e1"
    west, south, east, north = bbox
    closed = state != "firing"
    event.update(
        alert_event_id=f"{alert_id}#{revision}",
        alert_id=alert_id,
        revision=revision,
        transition="raised" if revision == 1 else (state if closed else "updated"),
        state=state,
        msg_type="Alert" if revision == 1 else ("Cancel" if closed else "Update"),
        rule={"name": rule, "kind": kind},
        hazard=hazard,
        severity=severity,
        place={"key": place_key, "name": place_name},
        area={
            "description": f"{place_name} area",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[west, south], [east, south], [east, north], [west, north], [west, south]]
                ],
            },
            "bbox": [west, south, east, north],
        },
        headline=headline or f"{severity} {hazard.replace('_', ' ')} at {place_name}",
        event_time=event_time,
        episode_start=event_time,
        sent_at=sent_at,
        references=[f"{alert_id}#{r}" for r in range(1, revision)],
        labels=labels or {"rule": rule, "kind": kind, "hazard": hazard, "severity": severity},
        suppressed={"silenced_by": list(silenced_by), "inhibited_by": []},
    )
    return event


def sample_alerts() -> list[dict[str, Any]]:
    """Etna (2 revisions, Severe, firing), Campi Flegrei (Moderate, firing, silenced) and an
    active deformation area near Naples (Minor, resolved), in the order they were sent."""
    etna1 = make_alert(severity="Moderate", sent_at="2026-11-20T09:00:00Z")
    etna2 = make_alert(
        revision=2,
        sent_at="2026-11-21T10:15:00Z",
        labels={"rule": "unrest-etna", "volcano_id": "etna", "severity": "Severe"},
    )
    flegrei = make_alert(
        rule="deformation-flegrei",
        kind="ps_trend",
        place_key="region-flegrei",
        place_name="Campi Flegrei",
        hazard="ground_deformation",
        severity="Moderate",
        bbox=(14.05, 40.78, 14.2, 40.87),
        sent_at="2026-11-19T08:00:00Z",
        silenced_by=("silence-1",),
    )
    ada1 = make_alert(
        rule="ada-nap",
        kind="hotspot",
        place_key="ada-17",
        place_name="ADA 17 Naples",
        hazard="active_deformation_area",
        severity="Minor",
        bbox=(14.22, 40.83, 14.26, 40.86),
        sent_at="2026-11-10T07:00:00Z",
    )
    ada2 = make_alert(
        rule="ada-nap",
        kind="hotspot",
        place_key="ada-17",
        place_name="ADA 17 Naples",
        hazard="active_deformation_area",
        severity="Minor",
        bbox=(14.22, 40.83, 14.26, 40.86),
        revision=2,
        state="resolved",
        sent_at="2026-11-18T07:00:00Z",
    )
    return [ada1, ada2, flegrei, etna1, etna2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    alert_store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    alert_store.apply(AlertBatch(states=[], events=sample_alerts()))
    yield alert_store
    alert_store.close()


def config_with(tokens: list[str] | None = None) -> MonitorConfig:
    return MonitorConfig.model_validate(
        {
            "api": {"tokens": tokens or [], "public_url": PUBLIC_URL},
            "alerts": {"cap": {"sender": "insar@example.org", "sender_name": "INSAR Test"}},
        }
    )


@pytest.fixture
def client(store: AlertStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, config_with([TOKEN, "second-token"]))) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["alerts"])
    return [a["alert_id"] for a in body["alerts"]]


# ----------------------------------------------------------------------------- health, docs
def test_healthz_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_reports_unreachable_database(store: AlertStore, tmp_path: Path) -> None:
    # A real failure: SQLite cannot open a file in a directory that does not exist.
    store.engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.sqlite'}")
    response = TestClient(create_app(store, config_with())).get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"].startswith("unreachable")


def test_openapi_lists_the_paths_and_docs_are_off(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "insar-monitor API"
    assert spec["info"]["version"] == "0.1.0"
    for path in (
        "/healthz", "/alerts", "/alerts/{alert_id}", "/alerts/{alert_id}/cap",
        "/alert-events/{alert_event_id}/cap", "/feed/cap.atom", "/map", "/subscriptions",
        "/subscriptions/{subscription_id}", "/silences", "/silences/{silence_id}",
        "/deliveries", "/deliveries/replay",
    ):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    # Swagger UI and ReDoc load their scripts from a CDN: not served.
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


# ------------------------------------------------------------------------------------ alerts
def test_list_alerts_latest_revision_newest_first(client: TestClient) -> None:
    body = client.get("/alerts").json()
    assert [a["alert_id"] for a in body["alerts"]] == [ETNA, FLEGREI, ADA]
    assert body["count"] == 3
    etna = body["alerts"][0]
    assert etna["revision"] == 2 and etna["schema"] == "alert.v1"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=firing", [ETNA, FLEGREI]),
        ("state=resolved", [ADA]),
        ("state=expired", []),
        ("hazard=ground_deformation", [FLEGREI]),
        ("min_severity=Moderate", [ETNA, FLEGREI]),
        ("min_severity=Severe", [ETNA]),
        ("min_severity=Extreme", []),
        ("rule=ada-nap", [ADA]),
        ("since=2026-11-19T08:00:00Z", [ETNA, FLEGREI]),
        ("since=2026-11-19T09:00:00%2B01:00", [ETNA, FLEGREI]),  # same instant, offset given
        ("until=2026-11-19T08:00:00Z", [ADA]),
        ("since=2026-11-19&until=2026-11-21", [FLEGREI]),
        ("bbox=14.0,40.7,14.21,40.9", [FLEGREI]),  # west of the ADA
        ("bbox=14.0,40.7,14.3,40.9", [FLEGREI, ADA]),
        ("bbox=15.1,37.8,16,38", [ETNA]),  # touches the Etna box's north-east corner
        ("bbox=-10,-10,0,0", []),
        ("include_suppressed=false", [ETNA, ADA]),
        ("state=firing&include_suppressed=false", [ETNA]),
        ("limit=1", [ETNA]),
        ("limit=2&offset=1", [FLEGREI, ADA]),
    ],
)
def test_list_alerts_filters(client: TestClient, query: str, expected: list[str]) -> None:
    assert ids(client.get(f"/alerts?{query}")) == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=open", "'firing', 'resolved' or 'expired'"),
        ("hazard=flood", "'volcanic_unrest'"),
        ("min_severity=High", "'Minor', 'Moderate', 'Severe' or 'Extreme'"),
        ("limit=0", "greater than or equal to 1"),
        ("limit=1001", "less than or equal to 1000"),
        ("offset=-1", "greater than or equal to 0"),
        ("since=yesterday", "RFC 3339"),
        ("until=2026-11-21T10:15:00", "RFC 3339"),  # no time zone
        ("bbox=1,2,3", "west,south,east,north"),
        ("bbox=a,b,c,d", "not a number"),
        ("bbox=14,41,15,40", "south"),
        ("bbox=179,0,-179,1", "antimeridian"),
        ("bbox=0,0,0,95", "[-90, 90]"),
        ("include_suppressed=maybe", "boolean"),
    ],
)
def test_bad_alert_parameters_say_what_is_allowed(
    client: TestClient, query: str, says: str
) -> None:
    response = client.get(f"/alerts?{query}")
    assert response.status_code == 422
    assert says in response.json()["detail"]


def test_get_alert_with_history(client: TestClient) -> None:
    body = client.get(f"/alerts/{ETNA}").json()
    assert body["alert"]["alert_event_id"] == f"{ETNA}#2"
    assert [r["revision"] for r in body["history"]] == [1, 2]
    assert body["history"][0]["severity"] == "Moderate"


def test_unknown_alert_is_404(client: TestClient) -> None:
    for path in ("/alerts/no-such-alert", "/alerts/no-such-alert/cap"):
        response = client.get(path)
        assert response.status_code == 404
        assert "no alert with id 'no-such-alert'" in response.json()["detail"]
    response = client.get(f"/alert-events/{quote(ETNA + '#9', safe='')}/cap")
    assert response.status_code == 404
    assert "%23" in response.json()["detail"]


# --------------------------------------------------------------------------------------- CAP
def test_latest_revision_as_cap(client: TestClient) -> None:
    response = client.get(f"/alerts/{ETNA}/cap")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/cap+xml"
    validate_cap(response.content)
    doc = etree.fromstring(response.content)
    ns = {"c": CAP_NS}
    assert doc.findtext("c:identifier", namespaces=ns) == f"{ETNA}#2"
    assert doc.findtext("c:sender", namespaces=ns) == "insar@example.org"
    assert doc.findtext("c:msgType", namespaces=ns) == "Update"
    # The sent time of revision 1 comes from the store.
    assert doc.findtext("c:references", namespaces=ns) == (
        f"insar@example.org,{ETNA}#1,2026-11-20T09:00:00+00:00"
    )
    assert doc.findtext("c:info/c:web", namespaces=ns) == f"{PUBLIC_URL}/alerts/{ETNA}"


def test_given_revision_as_cap(client: TestClient) -> None:
    first = client.get(f"/alert-events/{quote(ETNA + '#1', safe='')}/cap")
    assert first.status_code == 200
    validate_cap(first.content)
    doc = etree.fromstring(first.content)
    assert doc.findtext(f"{{{CAP_NS}}}msgType") == "Alert"
    assert doc.find(f"{{{CAP_NS}}}references") is None
    resolved = client.get(f"/alert-events/{quote(ADA + '#2', safe='')}/cap")
    validate_cap(resolved.content)
    assert etree.fromstring(resolved.content).findtext(f"{{{CAP_NS}}}msgType") == "Cancel"


def test_atom_feed_lists_only_firing_unsuppressed_alerts(client: TestClient) -> None:
    response = client.get("/feed/cap.atom")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml"
    feed = etree.fromstring(response.content)
    ns = {"a": ATOM_NS}
    assert feed.find("a:link[@rel='self']", ns).get("href") == f"{PUBLIC_URL}/feed/cap.atom"
    entries = feed.findall("a:entry", ns)
    # Flegrei is silenced and the ADA resolved: only Etna's latest revision is listed.
    assert len(entries) == 1
    link = entries[0].find("a:link", ns)
    assert link.get("type") == "application/cap+xml"
    href = link.get("href")
    assert href == f"{PUBLIC_URL}/alert-events/{quote(ETNA + '#2', safe='')}/cap"
    # The feed's update time is the newest revision of any alert (the feed changes when an
    # alert ends, too).
    assert feed.findtext("a:updated", namespaces=ns) == "2026-11-21T10:15:00Z"
    # The link works against this API (public_url is where a proxy mounts it).
    cap = client.get(urlsplit(href).path.removeprefix("/insar"))
    assert cap.status_code == 200
    validate_cap(cap.content)


# ---------------------------------------------------------------------------------- auth
SUBSCRIPTION = {
    "name": "Civil protection Sicily",
    "url": "https://hooks.example.org/insar",
    "area": {
        "type": "Polygon",
        "coordinates": [[[14.0, 37.0], [16.0, 37.0], [16.0, 38.5], [14.0, 38.5], [14.0, 37.0]]],
    },
    "hazards": ["volcanic_unrest"],
    "min_severity": "Moderate",
    "format": "cap",
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/subscriptions", None),
        ("POST", "/subscriptions", SUBSCRIPTION),
        ("GET", "/subscriptions/abc", None),
        ("DELETE", "/subscriptions/abc", None),
        ("GET", "/silences", None),
        ("POST", "/silences", {"matchers": ["a=b"], "duration_hours": 1, "created_by": "x"}),
        ("DELETE", "/silences/abc", None),
        ("GET", "/deliveries", None),
        ("POST", "/deliveries/replay", {}),
    ],
)
def test_management_needs_a_valid_token(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_management_is_off_without_tokens(store: AlertStore) -> None:
    # An empty token must not count as configured: "Bearer " would otherwise match it.
    for tokens in ([], [""]):
        client = TestClient(create_app(store, config_with(tokens)))
        for headers in ({}, {"Authorization": "Bearer "}, AUTH):
            response = client.get("/subscriptions", headers=headers)
            assert response.status_code == 403
            assert response.json()["detail"] == (
                "set api.tokens (INSAR_MONITOR__API__TOKENS) to enable management"
            )
    # Reading stays open.
    assert client.get("/alerts").status_code == 200


def test_every_configured_token_works(client: TestClient) -> None:
    for token in (TOKEN, "second-token"):
        response = client.get("/subscriptions", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


# -------------------------------------------------------------------------- subscriptions
def test_subscription_lifecycle_secret_shown_once(client: TestClient) -> None:
    created = client.post("/subscriptions", json=SUBSCRIPTION, headers=AUTH)
    assert created.status_code == 201, created.text
    sub = created.json()
    secret = sub["secret"]
    assert len(secret) >= 32
    assert sub["active"] is True and sub["hazards"] == ["volcanic_unrest"]
    sub_id = sub["subscription_id"]

    listed = client.get("/subscriptions", headers=AUTH)
    one = client.get(f"/subscriptions/{sub_id}", headers=AUTH)
    for response in (listed, one):
        assert response.status_code == 200
        assert secret not in response.text and "secret" not in response.text
    assert listed.json()["count"] == 1
    assert one.json()["name"] == SUBSCRIPTION["name"]

    deleted = client.delete(f"/subscriptions/{sub_id}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["active"] is False
    assert secret not in deleted.text
    active = client.get("/subscriptions?active_only=true", headers=AUTH).json()
    assert active["count"] == 0
    assert client.get("/subscriptions/nope", headers=AUTH).status_code == 404
    assert client.delete("/subscriptions/nope", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"url": "ftp://example.org/x"}, "webhook url must be http(s)://"),
        ({"hazards": ["flood"]}, "unknown hazards ['flood']"),
        ({"min_severity": "High"}, "min_severity 'High' is not one of Minor"),
        ({"format": "xml"}, "format must be json or cap"),
        ({"name": "  "}, "subscription name is empty"),
        ({"area": {"type": "Polygon", "coordinates": "nope"}}, "area is not valid GeoJSON"),
        ({"secret": "mine"}, "body field secret: Extra inputs are not permitted"),
    ],
)
def test_subscription_validation_errors(
    client: TestClient, change: dict[str, Any], says: str
) -> None:
    response = client.post("/subscriptions", json={**SUBSCRIPTION, **change}, headers=AUTH)
    assert response.status_code == 422
    assert says in response.json()["detail"]
    assert client.get("/subscriptions", headers=AUTH).json()["count"] == 0


# ------------------------------------------------------------------------------- silences
def test_silence_create_list_expire(client: TestClient) -> None:
    created = client.post(
        "/silences",
        json={
            "matchers": ["volcano_id=etna", "severity=~Minor|Moderate"],
            "duration_hours": 2,
            "created_by": "duty officer",
            "comment": "field campaign",
        },
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["matchers"] == ["volcano_id=etna", "severity=~Minor|Moderate"]
    assert silence["active"] is True
    starts = datetime.fromisoformat(silence["starts_at"])
    ends = datetime.fromisoformat(silence["ends_at"])
    assert ends - starts == timedelta(hours=2)
    assert abs(starts - datetime.now(UTC)) < timedelta(minutes=1)

    later = client.post(
        "/silences",
        json={
            "matchers": ["scope=tile"],
            "starts_at": "2030-01-01T00:00:00+01:00",
            "ends_at": "2030-01-02T00:00:00Z",
            "created_by": "planner",
        },
        headers=AUTH,
    ).json()
    assert later["starts_at"] == "2029-12-31T23:00:00+00:00" and later["active"] is False

    listed = client.get("/silences", headers=AUTH).json()
    assert listed["count"] == 2
    active = client.get("/silences?active=true", headers=AUTH).json()
    assert [s["silence_id"] for s in active["silences"]] == [silence["silence_id"]]

    expired = client.delete(f"/silences/{silence['silence_id']}", headers=AUTH)
    assert expired.status_code == 200
    assert expired.json()["active"] is False
    assert client.get("/silences?active=true", headers=AUTH).json()["count"] == 0
    again = client.delete(f"/silences/{silence['silence_id']}", headers=AUTH)
    assert again.status_code == 409
    assert client.delete("/silences/nope", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"matchers": ["volcano_id~etna"], "duration_hours": 1}, "is not 'label op value'"),
        ({"matchers": ["a=~("], "duration_hours": 1}, "bad regular expression"),
        ({"matchers": [], "duration_hours": 1}, "at least 1 item"),
        ({"matchers": ["a=b"]}, "exactly one of ends_at"),
        (
            {"matchers": ["a=b"], "duration_hours": 1, "ends_at": "2030-01-01T00:00:00Z"},
            "exactly one of ends_at",
        ),
        ({"matchers": ["a=b"], "ends_at": "2030-01-01T00:00:00"}, "RFC 3339"),
        (
            {
                "matchers": ["a=b"],
                "starts_at": "2030-01-02T00:00:00Z",
                "ends_at": "2030-01-01T00:00:00Z",
            },
            "before it starts",
        ),
        ({"matchers": ["a=b"], "duration_hours": -1}, "greater than 0"),
        ({"matchers": ["a=b"], "ends_at": "2020-01-01T00:00:00Z"}, "would already be over"),
    ],
)
def test_silence_validation_errors(client: TestClient, body: dict[str, Any], says: str) -> None:
    response = client.post("/silences", json={"created_by": "x", **body}, headers=AUTH)
    assert response.status_code == 422
    assert says in response.json()["detail"]


# ----------------------------------------------------------------------------- deliveries
def test_deliveries_list_and_replay(client: TestClient, store: AlertStore) -> None:
    sub = client.post("/subscriptions", json=SUBSCRIPTION, headers=AUTH).json()
    # A new Etna revision after the subscription: the store queues a delivery for it.
    etna3 = make_alert(revision=3, severity="Extreme", sent_at="2026-11-22T10:00:00Z")
    store.apply(AlertBatch(events=[etna3]))

    listed = client.get("/deliveries", headers=AUTH).json()
    assert listed["count"] == 1
    delivery = listed["deliveries"][0]
    assert delivery["alert_event_id"] == f"{ETNA}#3"
    assert delivery["subscription_id"] == sub["subscription_id"]
    assert delivery["status"] == "pending"

    store.mark_failed(
        delivery["delivery_id"], error="HTTP 500", status_code=500, next_attempt_at=None
    )
    dead = client.get("/deliveries?status=dead", headers=AUTH).json()
    assert [d["delivery_id"] for d in dead["deliveries"]] == [delivery["delivery_id"]]
    assert dead["deliveries"][0]["last_status"] == 500
    assert client.get("/deliveries?status=pending", headers=AUTH).json()["count"] == 0
    by_sub = client.get(f"/deliveries?subscription_id={sub['subscription_id']}", headers=AUTH)
    assert by_sub.json()["count"] == 1
    assert client.get("/deliveries?status=lost", headers=AUTH).status_code == 422

    other = client.post(
        "/deliveries/replay", json={"subscription_id": "someone-else"}, headers=AUTH
    )
    assert other.json() == {"requeued": 0}
    replayed = client.post("/deliveries/replay", json={}, headers=AUTH)
    assert replayed.status_code == 200 and replayed.json() == {"requeued": 1}
    pending = client.get("/deliveries?status=pending", headers=AUTH).json()
    assert pending["deliveries"][0]["attempts"] == 0
    # Nothing dead is left; a body-less request replays "dead" by default.
    assert client.post("/deliveries/replay", headers=AUTH).json() == {"requeued": 0}
    bad = client.post("/deliveries/replay", json={"status": "pending"}, headers=AUTH)
    assert bad.status_code == 422 and "'dead' or 'delivered'" in bad.json()["detail"]


# ------------------------------------------------------------------------------- no leaks
def test_creating_a_subscription_with_info_logging(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The daemon logs at INFO: a log call with an extra named like a LogRecord attribute
    # ("name") raises there, and only there.
    caplog.set_level(logging.INFO)
    response = client.post("/subscriptions", json=SUBSCRIPTION, headers=AUTH)
    assert response.status_code == 201
    assert response.json()["secret"] not in caplog.text


def test_token_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client.post("/subscriptions", json=SUBSCRIPTION, headers=AUTH)
    client.get("/subscriptions", headers=AUTH)
    client.delete("/subscriptions/nope", headers=AUTH)
    client.post(
        "/silences",
        json={"matchers": ["a=b"], "duration_hours": 1, "created_by": "x"},
        headers=AUTH,
    )
    client.post("/deliveries/replay", json={}, headers=AUTH)
    near_miss = TOKEN + "x"
    client.get("/deliveries", headers={"Authorization": f"Bearer {near_miss}"})
    assert caplog.records, "the requests above log something; the check must see it"
    assert any("invalid bearer token" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        everything = repr(vars(record)) + record.getMessage()
        assert TOKEN not in everything
        assert "second-token" not in everything


# --------------------------------------------------------------------------------- server
def test_api_server_on_port_zero(store: AlertStore) -> None:
    server = ApiServer(create_app(store, config_with()), "127.0.0.1", 0)
    server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        response = httpx.get(f"{server.url}/healthz", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}
        assert ids(httpx.get(f"{server.url}/alerts?state=firing", timeout=5)) == [ETNA, FLEGREI]
        port = server.port
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_api_server_start_fails_on_a_taken_port(store: AlertStore) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ApiServer(create_app(store, config_with()), "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="did not start"):
            server.start()
