"""The alert map page (monitor.api.map_page), checked in a real headless Chromium.

Chromium runs the page's own script and dumps the DOM it built: the SVG polygons, the table
rows and the status line are what a duty officer would see. Both variants are checked: the
static file with embedded alerts (opened from disk) and the page served at ``/map``, which
fetches the alerts from the API over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html

from monitor.api import ApiServer, create_app, render_map_html
from monitor.config import MonitorConfig
from monitor.storage.alert_store import AlertBatch, AlertStore
from tests.test_api import make_alert

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (make system-deps installs Debian's package)",
)

HOSTILE = "Unrest at Etna </script><script>document.title='pwned'</script><!-- <b>x</b>"


def three_alerts() -> list[dict[str, Any]]:
    """Two firing alerts (one with a hostile headline) and one resolved."""
    etna = make_alert(severity="Severe", headline=HOSTILE)
    stromboli = make_alert(
        rule="unrest-stromboli",
        place_key="volcano-stromboli",
        place_name="Stromboli",
        severity="Extreme",
        bbox=(15.17, 38.77, 15.25, 38.82),
        sent_at="2026-11-21T11:00:00Z",
    )
    vulcano = make_alert(
        rule="unrest-vulcano",
        place_key="volcano-vulcano",
        place_name="Vulcano",
        severity="Minor",
        state="resolved",
        revision=2,
        bbox=(14.93, 38.36, 15.0, 38.42),
        sent_at="2026-11-20T11:00:00Z",
    )
    return [etna, stromboli, vulcano]


FIRING = {"unrest-etna.volcano-etna.e1", "unrest-stromboli.volcano-stromboli.e1"}
RESOLVED = "unrest-vulcano.volcano-vulcano.e1"


def dump_dom(url: str, profile: Path) -> lxml_html.HtmlElement:
    """The DOM of ``url`` after its scripts ran, as headless Chromium serialises it."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<html" in done.stdout, done.stderr[-2000:]
    return lxml_html.fromstring(done.stdout)


def check_rendered(dom: lxml_html.HtmlElement) -> None:
    """The firing alerts are drawn and listed, the resolved one is not, the status is right."""
    polygons = dom.xpath("//svg//polygon[contains(concat(' ', @class, ' '), ' alert-area ')]")
    assert {p.get("data-alert-id") for p in polygons} == FIRING
    classes = {p.get("data-alert-id"): p.get("class").split() for p in polygons}
    assert "severity-severe" in classes["unrest-etna.volcano-etna.e1"]
    assert "severity-extreme" in classes["unrest-stromboli.volcano-stromboli.e1"]
    for polygon in polygons:
        points = polygon.get("points").split()
        assert len(points) == 5  # the closed bbox ring, projected
    rows = dom.xpath("//table[@id='alert-table']/tbody/tr[@data-alert-id]")
    # Firing first, the more severe on top.
    assert [r.get("data-alert-id") for r in rows] == [
        "unrest-stromboli.volcano-stromboli.e1",
        "unrest-etna.volcano-etna.e1",
    ]
    assert RESOLVED not in {r.get("data-alert-id") for r in rows}
    status = dom.get_element_by_id("status").text_content()
    assert "3 alerts (2 firing)" in status
    # The hostile headline is text in a cell, nothing it tried to inject exists.
    assert HOSTILE in [td.text_content() for td in dom.xpath("//tbody//td")]
    assert dom.findtext(".//title") == "insar-monitor alerts"
    assert not dom.xpath("//b")
    # A graticule with degree labels was drawn.
    labels = [t.text_content() for t in dom.xpath("//g[@class='graticule']/text")]
    assert any(re.fullmatch(r"\d+(\.\d+)?°N", label) for label in labels), labels
    assert any(re.fullmatch(r"\d+(\.\d+)?°E", label) for label in labels), labels


# ----------------------------------------------------------------------------- pure checks
def embedded_json(page: str) -> str:
    start = page.index('<script type="application/json" id="alert-data">')
    start = page.index(">", start) + 1
    return page[start : page.index("</script>", start)]


def test_hostile_headline_cannot_leave_the_json_block() -> None:
    alerts = three_alerts()
    page = render_map_html(alerts)
    # The data block and the page's own script: no third "</script>" from the headline.
    assert page.count("</script>") == 2
    assert "<!--" not in page
    data = embedded_json(page)
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data) == alerts
    assert json.loads(data)[0]["headline"] == HOSTILE


def test_page_is_self_contained() -> None:
    page = render_map_html(three_alerts(), title="Alerts <Sicily>")
    assert "<title>Alerts &lt;Sicily&gt;</title>" in page
    # No external script, stylesheet or font: everything is inlined.
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet|https?://(?!www\.w3\.org)", page)
    assert "Content-Security-Policy" in page and "connect-src 'none'" in page.replace(
        "&#x27;", "'"
    )


def test_served_variant_fetches_and_checks_api_base() -> None:
    page = render_map_html(None, api_base="https://monitor.example.org/api/")
    assert 'id="alert-data"' not in page
    assert 'data-mode="fetch"' in page
    assert 'data-api-base="https://monitor.example.org/api/"' in page
    assert "connect-src 'self' https://monitor.example.org" in page.replace("&#x27;", "'")
    for bad in ("javascript:alert(1)", "//evil.example.org/", "https://a b/"):
        with pytest.raises(ValueError):
            render_map_html(None, api_base=bad)


# --------------------------------------------------------------------------- in a browser
@needs_chromium
def test_static_page_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "map.html"
    page.write_text(render_map_html(three_alerts()), encoding="utf-8")
    dom = dump_dom(page.as_uri(), tmp_path / "profile")
    check_rendered(dom)
    # Without an API base the static page names revisions instead of linking CAP documents.
    assert not dom.xpath("//tbody//a")


@needs_chromium
def test_static_page_links_cap_documents_under_api_base(tmp_path: Path) -> None:
    page = tmp_path / "map.html"
    html_text = render_map_html(three_alerts(), api_base="https://monitor.example.org/api")
    page.write_text(html_text, encoding="utf-8")
    dom = dump_dom(page.as_uri(), tmp_path / "profile")
    links = [a.get("href") for a in dom.xpath("//tbody//a")]
    assert "https://monitor.example.org/api/alert-events/unrest-etna.volcano-etna.e1%231/cap" in (
        links
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    alerts = three_alerts()
    # The resolved alert's first revision too, so the store holds a real history.
    first = make_alert(
        rule="unrest-vulcano",
        place_key="volcano-vulcano",
        place_name="Vulcano",
        severity="Minor",
        bbox=(14.93, 38.36, 15.0, 38.42),
        sent_at="2026-11-19T11:00:00Z",
    )
    store.apply(AlertBatch(events=[first, *alerts]))
    server = ApiServer(create_app(store, MonitorConfig()), "127.0.0.1", 0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        store.close()


@needs_chromium
def test_served_page_in_chromium(served: str, tmp_path: Path) -> None:
    dom = dump_dom(f"{served}/map", tmp_path / "profile")
    check_rendered(dom)
    # Served, the CAP links point at this API.
    links = [a.get("href") for a in dom.xpath("//tbody//a")]
    assert f"{served}/alert-events/unrest-etna.volcano-etna.e1%231/cap" in links


# A test-only script appended after the page's own: it clicks like a user would and writes
# what the page did into attributes of <body>, which --dump-dom then shows.
HARNESS = """
(function () {
  function selected(selector) {
    return Array.prototype.map.call(document.querySelectorAll(selector + ".selected"),
      function (node) { return node.getAttribute("data-alert-id"); }).join(",");
  }
  var body = document.body;
  document.querySelector('polygon[data-alert-id="unrest-etna.volcano-etna.e1"]')
    .dispatchEvent(new MouseEvent("click", { bubbles: true }));
  body.setAttribute("data-map-click-rows", selected("tr"));
  body.setAttribute("data-map-click-areas", selected("polygon"));
  document.querySelector('tr[data-alert-id="unrest-stromboli.volcano-stromboli.e1"]').click();
  body.setAttribute("data-row-click-rows", selected("tr"));
  body.setAttribute("data-row-click-areas", selected("polygon"));
  document.getElementById("show-closed").click();
  body.setAttribute("data-closed-areas", Array.prototype.map.call(
    document.querySelectorAll("polygon.alert-area.closed"),
    function (node) { return node.getAttribute("data-alert-id"); }).join(","));
  body.setAttribute("data-closed-rows", String(document.querySelectorAll("tbody tr").length));
  body.setAttribute("data-legend-closed-hidden", String(
    document.getElementById("legend-closed").hidden));
})();
"""


@needs_chromium
def test_clicks_select_polygon_and_row_together(tmp_path: Path) -> None:
    page = render_map_html(three_alerts())
    digest = base64.b64encode(hashlib.sha256(HARNESS.encode()).digest()).decode()
    # The page's Content-Security-Policy allows scripts by hash: allow the harness's too.
    page = page.replace("script-src ", f"script-src &#x27;sha256-{digest}&#x27; ", 1)
    page = page.replace("</body>", f"<script>{HARNESS}</script>\n</body>")
    path = tmp_path / "map.html"
    path.write_text(page, encoding="utf-8")
    body = dump_dom(path.as_uri(), tmp_path / "profile").find("body")
    assert body is not None
    etna, stromboli = "unrest-etna.volcano-etna.e1", "unrest-stromboli.volcano-stromboli.e1"
    assert body.get("data-map-click-rows") == etna
    assert body.get("data-map-click-areas") == etna
    assert body.get("data-row-click-rows") == stromboli
    assert body.get("data-row-click-areas") == stromboli
    # Ticking the box shows the resolved alert, drawn as closed, and its row.
    assert body.get("data-closed-areas") == RESOLVED
    assert body.get("data-closed-rows") == "3"
    assert body.get("data-legend-closed-hidden") == "false"
