"""``GET /alerts/points``: one flat row per alert, located at its area's centroid, for maps.

The rows feed Grafana's Geomap through the Infinity data source
(``deploy/grafana/dashboards/alerts.json``). The application runs over a real SQLite alert
store in ``tmp_path``, written the way the daemon writes it, with ``AlertStore.apply``.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.api import create_app
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertBatch, AlertStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).parent / "data" / "alert_event_example.json"

ROW_KEYS = {
    "alert_id",
    "rule",
    "hazard",
    "severity",
    "severity_rank",
    "state",
    "place",
    "headline",
    "event_time",
    "latitude",
    "longitude",
}


def square(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def u_shape() -> dict[str, Any]:
    """A U open to the north, 3 x 3 degrees, arms 1 degree wide: its centroid, on the axis
    at latitude ~1.3, lies in the notch (x 11..12, y 1..3), not in the U."""
    ring = [[10, 0], [13, 0], [13, 3], [12, 3], [12, 1], [11, 1], [11, 3], [10, 3], [10, 0]]
    return {"type": "Polygon", "coordinates": [ring]}


def make_alert(
    key: str,
    *,
    geometry: dict[str, Any],
    state: str = "firing",
    severity: str = "Severe",
    hazard: str = "volcanic_unrest",
    sent_at: str = "2026-11-21T10:15:00Z",
    silenced_by: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A first revision (alert.v1) from the contract's example, with these fields changed."""
    event = copy.deepcopy(json.loads(EXAMPLE.read_text()))
    rule = f"rule-{key}"
    alert_id = f"{rule}.place-{key}.e1"
    xs = [x for ring in geometry["coordinates"] for x, _ in ring]
    ys = [y for ring in geometry["coordinates"] for _, y in ring]
    event.update(
        alert_event_id=f"{alert_id}#1",
        alert_id=alert_id,
        revision=1,
        transition="raised",
        state=state,
        msg_type="Alert",
        rule={"name": rule, "kind": "unrest"},
        hazard=hazard,
        severity=severity,
        place={"key": f"place-{key}", "name": f"Place {key}"},
        area={
            "description": f"area of {key}",
            "geometry": geometry,
            "bbox": [min(xs), min(ys), max(xs), max(ys)],
        },
        headline=f"{severity} {hazard} at Place {key}",
        event_time="2024-03-12",
        episode_start="2024-03-12",
        sent_at=sent_at,
        references=[],
        labels={"rule": rule, "hazard": hazard, "severity": severity},
        suppressed={"silenced_by": list(silenced_by), "inhibited_by": []},
    )
    event.pop("circle", None)
    return event


def sample_alerts() -> list[dict[str, Any]]:
    return [
        make_alert("sq", geometry=square(14.0, 37.0, 15.0, 38.0), sent_at="2026-11-21T10:00:00Z"),
        make_alert("u", geometry=u_shape(), severity="Extreme", sent_at="2026-11-21T09:00:00Z"),
        make_alert(
            "silenced",
            geometry=square(14.05, 40.78, 14.2, 40.87),
            severity="Moderate",
            hazard="ground_deformation",
            sent_at="2026-11-21T08:00:00Z",
            silenced_by=("silence-1",),
        ),
        make_alert(
            "resolved",
            geometry=square(-1.0, -1.0, 1.0, 1.0),
            state="resolved",
            severity="Minor",
            hazard="active_deformation_area",
            sent_at="2026-11-21T07:00:00Z",
        ),
    ]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    store.apply(AlertBatch(states=[], events=sample_alerts()))
    config = MonitorConfig.model_validate(
        {"alerts": {"cap": {"sender": "insar@example.org", "sender_name": "INSAR Test"}}}
    )
    with TestClient(create_app(store, config)) as test_client:
        yield test_client
    store.close()


def points(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/alerts/points{'?' + query if query else ''}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


def by_place(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["place"]: row for row in rows}


def test_area_point_of_a_square_two_patches_and_a_bbox_only_area() -> None:
    from monitor.api.routes_alerts import _area_point

    assert _area_point({"geometry": square(2, 4, 6, 8)}) == pytest.approx((4.0, 6.0))
    # Two equal patches: the centroid between them is in neither, the point is in one.
    two = {
        "type": "MultiPolygon",
        "coordinates": [square(0, 0, 1, 1)["coordinates"], square(3, 0, 4, 1)["coordinates"]],
    }
    x, y = _area_point({"geometry": two})
    assert 0 <= y <= 1 and (0 <= x <= 1 or 3 <= x <= 4)
    assert _area_point({"geometry": {"type": "Polygon"}, "bbox": [0, 0, 2, 4]}) == (1.0, 2.0)
    assert _area_point({}) is None


def test_rows_are_flat_and_located_at_the_centroid(client: TestClient) -> None:
    rows = by_place(points(client))
    row = rows["Place sq"]
    assert set(row) == ROW_KEYS
    assert all(not isinstance(v, dict | list) for v in row.values())
    assert row["latitude"] == pytest.approx(37.5)
    assert row["longitude"] == pytest.approx(14.5)
    assert row == {
        **row,
        "alert_id": "rule-sq.place-sq.e1",
        "rule": "rule-sq",
        "hazard": "volcanic_unrest",
        "severity": "Severe",
        "severity_rank": 2,
        "state": "firing",
        "headline": "Severe volcanic_unrest at Place sq",
        "event_time": "2024-03-12",
    }


def test_a_centroid_outside_the_area_is_replaced_by_a_point_inside(client: TestClient) -> None:
    from shapely.geometry import Point, shape

    area = shape(u_shape())
    assert not area.covers(area.centroid)  # the premise of the test
    row = by_place(points(client))["Place u"]
    assert area.covers(Point(row["longitude"], row["latitude"]))
    assert row["severity_rank"] == 3


def test_default_is_firing_without_suppressed_newest_first(client: TestClient) -> None:
    rows = points(client)
    assert [r["place"] for r in rows] == ["Place sq", "Place u"]
    assert {r["state"] for r in rows} == {"firing"}


def test_suppressed_alerts_on_request(client: TestClient) -> None:
    rows = by_place(points(client, "include_suppressed=true"))
    assert set(rows) == {"Place sq", "Place u", "Place silenced"}
    assert rows["Place silenced"]["severity_rank"] == 1
    assert rows["Place silenced"]["latitude"] == pytest.approx(40.825)
    assert rows["Place silenced"]["longitude"] == pytest.approx(14.125)


def test_state_filter(client: TestClient) -> None:
    rows = points(client, "state=resolved")
    assert len(rows) == 1
    assert rows[0]["place"] == "Place resolved"
    assert rows[0]["state"] == "resolved"
    assert rows[0]["severity_rank"] == 0
    assert (rows[0]["latitude"], rows[0]["longitude"]) == pytest.approx((0.0, 0.0))
    assert points(client, "state=expired") == []


def test_limit(client: TestClient) -> None:
    assert [r["place"] for r in points(client, "limit=1")] == ["Place sq"]


@pytest.mark.parametrize(
    "query",
    ["state=open", "limit=0", "limit=5001", "include_suppressed=maybe"],
)
def test_bad_parameters_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/alerts/points?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def route_paths(routes: Iterable[Any], prefix: str = "") -> Iterator[str]:
    """Paths of the app's routes in matching order, through included routers (FastAPI
    >= 0.165 keeps them nested instead of copying their routes into the app)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield prefix + path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from route_paths(inner.routes, prefix + getattr(context, "prefix", ""))


def test_points_is_not_taken_for_an_alert_id(client: TestClient) -> None:
    paths = list(route_paths(client.app.routes))  # type: ignore[attr-defined]
    assert paths.index("/alerts/points") < paths.index("/alerts/{alert_id}")
    assert "/alerts/points" in client.get("/openapi.json").json()["paths"]
