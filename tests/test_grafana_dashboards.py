"""The Grafana provisioning and dashboards in deploy/grafana agree with the code.

Grafana is not run here; these checks catch what would otherwise only show as an empty
panel in production: a renamed metric, a data source uid that is not provisioned, a
duplicate panel id, the map's API route gone, a provider pointing elsewhere than the
folder compose mounts the dashboards at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.api import create_app
from monitor.config import MonitorConfig
from monitor.metrics import METRIC_NAMES
from monitor.storage.alert_store import AlertStore

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
# Where compose mounts deploy/grafana/dashboards in the Grafana container.
CONTAINER_DASHBOARDS = "/var/lib/grafana/dashboards"
INFINITY = "yesoreyeram-infinity-datasource"
EXPECTED_DASHBOARDS = {"pipeline-health.json", "model-behaviour.json", "alerts.json"}

METRIC = re.compile(r"insar_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Top-level panels and those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_uids() -> dict[str, str]:
    """uid -> type of every provisioned data source."""
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {ds["uid"]: ds["type"] for ds in provisioned["datasources"]}


def promql(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL text: query ``expr`` (panels, annotations) and Prometheus variables."""
    prometheus = {uid for uid, kind in datasource_uids().items() if kind == "prometheus"}
    for obj in walk(dashboard):
        if isinstance(obj.get("expr"), str):
            yield obj["expr"]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query" or (var.get("datasource") or {}).get("uid") not in (
            prometheus
        ):
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        for text in (query, var.get("definition")):
            if isinstance(text, str):
                yield text


def family(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
            return name.removesuffix(suffix)
    return name


def infinity_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict]]:
    """(panel, target) of every query sent to an Infinity data source."""
    infinity = {uid for uid, kind in datasource_uids().items() if kind == INFINITY}
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("uid") in infinity:
                yield panel, target


def flat_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, route) of the app's routes, through included routers (FastAPI >= 0.165 keeps
    them nested instead of copying their routes into the app)."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield prefix + path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from flat_routes(inner.routes, prefix + getattr(context, "prefix", ""))


@pytest.fixture(scope="module")
def api_routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """path -> route of the API that compose runs as http://insar-monitor:8088."""
    db = tmp_path_factory.mktemp("grafana") / "alerts.sqlite"
    store = AlertStore(f"sqlite:///{db}")
    app = create_app(store, MonitorConfig.model_validate({}))
    yield dict(flat_routes(app.routes))
    store.close()


# ------------------------------------------------------------------------- files, parsing
def test_the_dashboards_are_there() -> None:
    assert {p.name for p in DASHBOARD_FILES} >= EXPECTED_DASHBOARDS


@pytest.mark.parametrize(
    "path", sorted(GRAFANA.rglob("*.json")), ids=lambda p: str(p.relative_to(GRAFANA))
)
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize(
    "path",
    sorted([*GRAFANA.rglob("*.yml"), *GRAFANA.rglob("*.yaml")]),
    ids=lambda p: str(p.relative_to(GRAFANA)),
)
def test_every_yaml_file_parses(path: Path) -> None:
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["apiVersion"] == 1


# ------------------------------------------------------------------------------ provisioning
def test_datasources_prometheus_default_and_infinity_for_the_api() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    by_uid = {ds["uid"]: ds for ds in provisioned}
    assert len(by_uid) == len(provisioned), "data source uids must be unique"
    assert [ds["uid"] for ds in provisioned if ds.get("isDefault")] == ["prometheus"]
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["insar-api"]["type"] == INFINITY
    assert by_uid["insar-api"]["url"] == "http://insar-monitor:8088"


def test_the_plugin_install_is_documented_for_compose() -> None:
    assert f"GF_INSTALL_PLUGINS: {INFINITY}" in DATASOURCES.read_text(encoding="utf-8")


def test_dashboard_provider_loads_the_mounted_folder() -> None:
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    assert provider["folder"] == "insar-monitor"
    assert provider["options"]["path"] == CONTAINER_DASHBOARDS


# ------------------------------------------------------------------------------ dashboards
def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [load(p) for p in DASHBOARD_FILES]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_model(path: Path) -> None:
    dashboard = load(path)
    for key in ("uid", "title", "tags", "time", "refresh", "templating", "panels"):
        assert dashboard.get(key), f"{path.name}: {key} missing or empty"
    assert dashboard["schemaVersion"] >= 39
    assert "insar-monitor" in dashboard["tags"]
    assert dashboard.get("id") is None  # provisioned: Grafana assigns the database id
    panels = list(all_panels(dashboard))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == len(ids), f"{path.name}: duplicate panel ids"
    for panel in panels:
        grid = panel.get("gridPos")
        assert grid and {"h", "w", "x", "y"} <= set(grid), panel.get("title")
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel.get("title")
        assert panel.get("title"), f"{path.name}: panel {panel['id']} has no title"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panels_do_not_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in load(path)["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_datasource_reference_is_provisioned(path: Path) -> None:
    provisioned = datasource_uids()
    references = [
        obj["datasource"]
        for obj in walk(load(path))
        if "datasource" in obj and obj["datasource"] is not None
    ]
    assert references
    for ref in references:
        assert isinstance(ref, dict), f"{path.name}: datasource by name, not uid: {ref!r}"
        assert ref.get("uid") in provisioned, f"{path.name}: unknown data source {ref}"
        if "type" in ref:
            assert ref["type"] == provisioned[ref["uid"]], ref


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_promql_uses_only_exported_metrics(path: Path) -> None:
    expressions = list(promql(load(path)))
    assert expressions
    for expr in expressions:
        names = METRIC.findall(expr)
        assert names, f"{path.name}: no insar_ metric in {expr!r}"
        unknown = sorted({n for n in names if family(n) not in METRIC_NAMES})
        assert not unknown, f"{path.name}: {unknown} not in monitor.metrics.METRIC_NAMES"


def test_histograms_are_read_through_their_buckets() -> None:
    # histogram_quantile needs the _bucket series; a bare histogram name matches nothing.
    for path in DASHBOARD_FILES:
        for expr in promql(load(path)):
            if "histogram_quantile" in expr:
                assert "_bucket" in expr, expr


def test_every_metric_family_is_on_some_dashboard() -> None:
    used = {family(n) for p in DASHBOARD_FILES for e in promql(load(p)) for n in METRIC.findall(e)}
    assert set(METRIC_NAMES) - used == set()


# -------------------------------------------------------------------------- the alerts map
def test_alerts_geomap_reads_alert_points_from_the_api(api_routes: dict[str, Any]) -> None:
    dashboard = load(DASHBOARD_DIR / "alerts.json")
    geomaps = [p for p in all_panels(dashboard) if p["type"] == "geomap"]
    assert len(geomaps) == 1
    geomap = geomaps[0]
    targets = [t for panel, t in infinity_targets(dashboard) if panel is geomap]
    assert len(targets) == 1
    target = targets[0]
    assert target["type"] == "json" and target["source"] == "url"
    assert urlsplit(target["url"]).path == "/alerts/points"
    assert "/alerts/points" in api_routes
    columns = {c["selector"]: c["type"] for c in target["columns"]}
    assert columns["latitude"] == columns["longitude"] == columns["severity_rank"] == "number"
    assert "headline" in columns
    layer = geomap["options"]["layers"][0]
    assert layer["type"] == "markers"
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    assert layer["config"]["style"]["color"]["field"] == "severity_rank"
    assert layer["tooltip"] is True


def test_alerts_table_shows_the_same_rows() -> None:
    dashboard = load(DASHBOARD_DIR / "alerts.json")
    tables = [target for panel, target in infinity_targets(dashboard) if panel["type"] == "table"]
    assert [urlsplit(t["url"]).path for t in tables] == ["/alerts/points"]


def test_every_infinity_url_is_an_api_route(api_routes: dict[str, Any]) -> None:
    for path in DASHBOARD_FILES:
        for _, target in infinity_targets(load(path)):
            url = urlsplit(target["url"])
            assert not url.netloc, "use the data source's base URL, not a host in the query"
            assert url.path in api_routes, f"{path.name}: no API route {url.path}"


def test_infinity_query_parameters_are_ones_the_route_accepts(api_routes: dict[str, Any]) -> None:
    route = api_routes["/alerts/points"]
    accepted = {p.name for p in route.dependant.query_params}
    dashboard = load(DASHBOARD_DIR / "alerts.json")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for _, target in infinity_targets(dashboard):
        for param in target["url_options"].get("params", []):
            assert param["key"] in accepted
            for var in re.findall(r"\$\{?(\w+)", param["value"]):
                assert var in variables, f"undefined dashboard variable ${var}"
