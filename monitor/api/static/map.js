/*
 * The insar-monitor alert map: draws alert areas (alert.v1 revisions) as SVG polygons on an
 * equirectangular projection fitted to the alerts, with a graticule, and lists the alerts in
 * a table; clicking a polygon selects its row and vice versa.
 *
 * No third-party code and no network access beyond the API itself: the page must work in an
 * observatory without internet, and as a single file opened from disk. Text from alerts is
 * only ever set with textContent, never parsed as HTML.
 *
 * Data: the JSON block with id "alert-data" (static export), or
 * GET {api base}alerts?limit=1000 (served page, refreshed every minute).
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var WIDTH = 960;
  var HEIGHT = 600;
  // Room for the graticule labels on the left and bottom edges.
  var MARGIN = { left: 64, right: 16, top: 16, bottom: 32 };
  var PAD_FRACTION = 0.1;
  var MIN_PAD_DEG = 0.01;
  var FETCH_LIMIT = 1000;
  var REFRESH_MS = 60000;
  var MIN_AREA_PX = 8;
  var MARKER_RADIUS = 7;
  var SEVERITY_RANK = { Minor: 0, Moderate: 1, Severe: 2, Extreme: 3 };
  var STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5,
    5, 10, 15, 30, 45, 90];
  var HAZARD_NAMES = {
    volcanic_unrest: "Volcanic unrest",
    ground_deformation: "Ground deformation",
    active_deformation_area: "Active deformation area"
  };

  var body = document.body;
  var mapEl = document.getElementById("map");
  var tbody = document.querySelector("#alert-table tbody");
  var statusEl = document.getElementById("status");
  var countEl = document.getElementById("status-count");
  var noteEl = document.getElementById("status-note");
  var showClosedEl = document.getElementById("show-closed");
  var legendClosedEl = document.getElementById("legend-closed");

  // Browsers restore a checkbox's state on reload: start from what it shows.
  var state = { alerts: [], selected: null, showClosed: showClosedEl.checked };

  // ------------------------------------------------------------------ small helpers
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    return node;
  }

  function isFiring(alert) {
    return alert.state === "firing";
  }

  function severityClass(alert) {
    return "severity-" + String(alert.severity || "unknown").toLowerCase();
  }

  function hazardName(hazard) {
    if (HAZARD_NAMES[hazard]) return HAZARD_NAMES[hazard];
    var words = String(hazard || "").replace(/_/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  // The API root as an absolute URL ending in "/": the data-api-base attribute when the
  // page names one, otherwise the page's own directory (the served /map page).
  function apiBase() {
    var given = body.getAttribute("data-api-base");
    if (given) return new URL(given.replace(/\/*$/, "/"), document.baseURI);
    if (body.getAttribute("data-mode") === "fetch") return new URL("./", document.baseURI);
    return null;
  }

  function capUrl(alert) {
    var base = apiBase();
    if (!base || !alert.alert_event_id) return null;
    return new URL("alert-events/" + encodeURIComponent(alert.alert_event_id) + "/cap", base)
      .href;
  }

  // ------------------------------------------------------------------ geometry
  // Outer rings only, as in CAP: the drawn area is then never smaller than the alert's.
  function outerRings(alert) {
    var geometry = alert.area && alert.area.geometry;
    if (!geometry || !geometry.coordinates) return [];
    var polygons = geometry.type === "MultiPolygon" ? geometry.coordinates
      : geometry.type === "Polygon" ? [geometry.coordinates] : [];
    return polygons.filter(function (p) { return p && p.length && p[0].length >= 3; })
      .map(function (p) { return p[0]; });
  }

  function alertBox(alert) {
    var box = alert.area && alert.area.bbox;
    if (box && box.length === 4) return box.map(Number);
    var w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    outerRings(alert).forEach(function (ring) {
      ring.forEach(function (pos) {
        w = Math.min(w, pos[0]); e = Math.max(e, pos[0]);
        s = Math.min(s, pos[1]); n = Math.max(n, pos[1]);
      });
    });
    return isFinite(w) ? [w, s, e, n] : null;
  }

  function unionBox(alerts) {
    var out = null;
    alerts.forEach(function (alert) {
      var b = alertBox(alert);
      if (!b) return;
      out = out ? [Math.min(out[0], b[0]), Math.min(out[1], b[1]), Math.max(out[2], b[2]),
        Math.max(out[3], b[3])] : b.slice();
    });
    return out;
  }

  // Equirectangular projection with its standard parallel at the middle latitude (so the
  // shapes keep their proportions there), scaled to fit the padded box into the viewport.
  function makeProjection(box) {
    var padX = Math.max((box[2] - box[0]) * PAD_FRACTION, MIN_PAD_DEG);
    var padY = Math.max((box[3] - box[1]) * PAD_FRACTION, MIN_PAD_DEG);
    var west = Math.max(box[0] - padX, -180), east = Math.min(box[2] + padX, 180);
    var south = Math.max(box[1] - padY, -90), north = Math.min(box[3] + padY, 90);
    var lon0 = (west + east) / 2, lat0 = (south + north) / 2;
    var k = Math.max(Math.cos(lat0 * Math.PI / 180), 0.05);
    var innerW = WIDTH - MARGIN.left - MARGIN.right;
    var innerH = HEIGHT - MARGIN.top - MARGIN.bottom;
    var scale = Math.min(innerW / ((east - west) * k), innerH / (north - south));
    var cx = MARGIN.left + innerW / 2, cy = MARGIN.top + innerH / 2;
    return {
      x: function (lon) { return cx + (lon - lon0) * k * scale; },
      y: function (lat) { return cy - (lat - lat0) * scale; },
      // The whole drawing area in degrees: the graticule covers it, not only the alerts.
      lonAt: function (x) { return lon0 + (x - cx) / (k * scale); },
      latAt: function (y) { return lat0 - (y - cy) / scale; }
    };
  }

  function niceStep(span) {
    for (var i = 0; i < STEPS.length; i++) {
      if (span / STEPS[i] <= 7) return STEPS[i];
    }
    return STEPS[STEPS.length - 1];
  }

  function decimals(step) {
    var text = String(step);
    return text.indexOf(".") < 0 ? 0 : text.length - text.indexOf(".") - 1;
  }

  function degreeLabel(value, step, positive, negative) {
    var fixed = Math.abs(value).toFixed(decimals(step));
    if (Number(fixed) === 0) return "0°";
    return fixed + "°" + (value > 0 ? positive : negative);
  }

  // ------------------------------------------------------------------ drawing
  function visibleAlerts() {
    return state.alerts.filter(function (a) { return state.showClosed || isFiring(a); });
  }

  function drawGraticule(group, proj) {
    var left = MARGIN.left, right = WIDTH - MARGIN.right;
    var top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
    var lonMin = proj.lonAt(left), lonMax = proj.lonAt(right);
    var latMin = proj.latAt(bottom), latMax = proj.latAt(top);
    var lonStep = niceStep(lonMax - lonMin), latStep = niceStep(latMax - latMin);
    var i, value, x, y, label;
    for (i = Math.ceil(lonMin / lonStep); i * lonStep <= lonMax; i++) {
      value = i * lonStep;
      x = proj.x(value);
      group.appendChild(svgEl("line", { x1: x, y1: top, x2: x, y2: bottom }));
      label = svgEl("text", { x: x, y: bottom + 18, "text-anchor": "middle" });
      label.textContent = degreeLabel(value, lonStep, "E", "W");
      group.appendChild(label);
    }
    for (i = Math.ceil(latMin / latStep); i * latStep <= latMax; i++) {
      value = i * latStep;
      y = proj.y(value);
      group.appendChild(svgEl("line", { x1: left, y1: y, x2: right, y2: y }));
      label = svgEl("text", { x: left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = degreeLabel(value, latStep, "N", "S");
      group.appendChild(label);
    }
    group.appendChild(svgEl("rect", {
      "class": "frame", x: left, y: top, width: right - left, height: bottom - top
    }));
  }

  function drawMap() {
    while (mapEl.firstChild) mapEl.removeChild(mapEl.firstChild);
    var shown = visibleAlerts();
    var box = unionBox(shown);
    if (!box) {
      var note = svgEl("text", { "class": "empty-note", x: WIDTH / 2, y: HEIGHT / 2 });
      note.textContent = state.alerts.length ? "No firing alerts" : "No alerts";
      mapEl.appendChild(note);
      return;
    }
    var proj = makeProjection(box);
    var graticule = svgEl("g", { "class": "graticule" });
    drawGraticule(graticule, proj);
    mapEl.appendChild(graticule);

    var areas = svgEl("g", { "class": "alert-areas" });
    // Big areas first and the most severe last, so nothing small or serious is hidden.
    var ordered = shown.slice().sort(function (a, b) {
      var ba = alertBox(a) || [0, 0, 0, 0], bb = alertBox(b) || [0, 0, 0, 0];
      var sizeA = (ba[2] - ba[0]) * (ba[3] - ba[1]), sizeB = (bb[2] - bb[0]) * (bb[3] - bb[1]);
      if (sizeA !== sizeB) return sizeB - sizeA;
      return (SEVERITY_RANK[a.severity] || 0) - (SEVERITY_RANK[b.severity] || 0);
    });
    ordered.forEach(function (alert) {
      var closedClass = isFiring(alert) ? "" : " closed";
      var label = alert.severity + " " + hazardName(alert.hazard) + ": " +
        ((alert.place && alert.place.name) || alert.alert_id);
      var b = alertBox(alert);
      if (b && Math.max(proj.x(b[2]) - proj.x(b[0]), proj.y(b[1]) - proj.y(b[3])) <
          MIN_AREA_PX) {
        var marker = svgEl("circle", {
          cx: ((proj.x(b[0]) + proj.x(b[2])) / 2).toFixed(1),
          cy: ((proj.y(b[1]) + proj.y(b[3])) / 2).toFixed(1),
          r: MARKER_RADIUS,
          "class": "alert-marker " + severityClass(alert) + closedClass,
          "data-alert-id": alert.alert_id,
          "aria-hidden": "true"
        });
        marker.addEventListener("click", function () { select(alert.alert_id, "map"); });
        areas.appendChild(marker);
      }
      outerRings(alert).forEach(function (ring) {
        var points = ring.map(function (pos) {
          return proj.x(pos[0]).toFixed(1) + "," + proj.y(pos[1]).toFixed(1);
        }).join(" ");
        var polygon = svgEl("polygon", {
          points: points,
          "class": "alert-area " + severityClass(alert) + closedClass,
          "data-alert-id": alert.alert_id,
          tabindex: 0,
          role: "button",
          "aria-label": label
        });
        var title = svgEl("title");
        title.textContent = alert.headline || alert.alert_id;
        polygon.appendChild(title);
        polygon.addEventListener("click", function () { select(alert.alert_id, "map"); });
        polygon.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            select(alert.alert_id, "map");
          }
        });
        areas.appendChild(polygon);
      });
    });
    mapEl.appendChild(areas);
  }

  function sortedForTable(alerts) {
    return alerts.slice().sort(function (a, b) {
      if (isFiring(a) !== isFiring(b)) return isFiring(a) ? -1 : 1;
      var rank = (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0);
      if (rank) return rank;
      return String(b.event_time || "").localeCompare(String(a.event_time || ""));
    });
  }

  function drawTable() {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    var shown = sortedForTable(visibleAlerts());
    if (!shown.length) {
      var empty = el("tr");
      var cell = el("td", "empty", state.alerts.length ? "No firing alerts" : "No alerts");
      cell.colSpan = 8;
      empty.appendChild(cell);
      tbody.appendChild(empty);
      return;
    }
    shown.forEach(function (alert) {
      var row = el("tr", isFiring(alert) ? "" : "closed");
      row.setAttribute("data-alert-id", alert.alert_id);
      row.tabIndex = 0;
      var severity = el("td");
      severity.appendChild(el("span", "badge " + severityClass(alert), alert.severity));
      row.appendChild(severity);
      row.appendChild(el("td", "", hazardName(alert.hazard)));
      row.appendChild(el("td", "", (alert.place && alert.place.name) || ""));
      row.appendChild(el("td", "", alert.headline || ""));
      row.appendChild(el("td", "", alert.state));
      row.appendChild(el("td", "nowrap", alert.event_time));
      row.appendChild(el("td", "", alert.revision));
      var capCell = el("td");
      var href = capUrl(alert);
      if (href) {
        var link = el("a", "", "CAP");
        link.href = href;
        link.title = alert.alert_event_id;
        // Following the link must not also toggle the row's selection.
        link.addEventListener("click", function (event) { event.stopPropagation(); });
        capCell.appendChild(link);
      } else {
        capCell.appendChild(el("span", "nowrap", alert.alert_event_id));
      }
      row.appendChild(capCell);
      row.addEventListener("click", function () { select(alert.alert_id, "table"); });
      row.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(alert.alert_id, "table");
        }
      });
      tbody.appendChild(row);
    });
  }

  function drawStatus(note) {
    var total = state.alerts.length;
    var firing = state.alerts.filter(isFiring).length;
    countEl.textContent = total + (total === 1 ? " alert" : " alerts") + " (" + firing +
      " firing)";
    noteEl.textContent = note || "";
    statusEl.classList.remove("error");
  }

  function redraw() {
    legendClosedEl.hidden = !state.showClosed;
    drawMap();
    drawTable();
    applySelection(null);
  }

  // ------------------------------------------------------------------ selection
  function applySelection(source) {
    var nodes = document.querySelectorAll("[data-alert-id]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var on = state.selected !== null && node.getAttribute("data-alert-id") === state.selected;
      node.classList.toggle("selected", on);
      if (!on) continue;
      if (node.namespaceURI === SVG_NS) {
        node.parentNode.appendChild(node); // SVG has no z-index: the last drawn is on top
      } else if (source === "map" && node.scrollIntoView) {
        node.scrollIntoView({ block: "nearest" });
      }
    }
  }

  function select(alertId, source) {
    state.selected = state.selected === alertId ? null : alertId;
    applySelection(source);
  }

  // ------------------------------------------------------------------ data
  function setAlerts(alerts, note) {
    state.alerts = Array.isArray(alerts) ? alerts : [];
    var known = state.alerts.some(function (a) { return a.alert_id === state.selected; });
    if (!known) state.selected = null;
    drawStatus(note);
    redraw();
  }

  function showError(message) {
    statusEl.classList.add("error");
    countEl.textContent = "Could not load alerts";
    noteEl.textContent = message;
  }

  function load() {
    var url = new URL("alerts?limit=" + FETCH_LIMIT, apiBase());
    return fetch(url.href, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status + " from " + url.href);
        return response.json();
      })
      .then(function (payload) {
        var alerts = payload.alerts || [];
        var note = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
        if (alerts.length >= FETCH_LIMIT) note += ", showing the " + FETCH_LIMIT + " newest";
        setAlerts(alerts, note);
      })
      .catch(function (error) { showError(String(error.message || error)); });
  }

  showClosedEl.addEventListener("change", function () {
    state.showClosed = showClosedEl.checked;
    redraw();
  });

  var embedded = document.getElementById("alert-data");
  if (embedded) {
    try {
      var data = JSON.parse(embedded.textContent);
      setAlerts(Array.isArray(data) ? data : data.alerts, "");
    } catch (error) {
      showError("the embedded alert data is not valid JSON: " + error.message);
    }
  } else {
    load();
    window.setInterval(load, REFRESH_MS);
  }
})();
