"""The alert map page: one self-contained HTML file, served at ``/map`` or written to disk.

The page (``static/map.html`` with ``map.css`` and ``map.js`` inlined) draws the alert areas
as SVG polygons with its own small script: no CDN, no third-party library, so it works on an
observatory network without internet and as a file attached to an e-mail.

Two variants come from :func:`render_map_html`:

* **static** (``alerts`` given): the alerts are embedded as JSON in a
  ``<script type="application/json" id="alert-data">`` block; the page needs no server.
* **served** (``alerts=None``): the page fetches ``alerts?limit=1000`` from the API and
  refreshes every minute.

Both carry a Content-Security-Policy that allows only the page's own script and style (by
hash) and, when served, requests to the API; a hostile string in an alert could at worst
show up as text.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

__all__ = ["render_map_html"]

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# What may follow "scheme://" in a CSP source expression: a host, maybe a port.
_ORIGIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?")


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str, str]:
    """The template, stylesheet and script shipped in ``monitor/api/static``."""
    folder = resources.files("monitor.api") / "static"
    template = (folder / "map.html").read_text(encoding="utf-8")
    style = (folder / "map.css").read_text(encoding="utf-8")
    script = (folder / "map.js").read_text(encoding="utf-8")
    # Inlined as they are, so they must not be able to end their own element early.
    if "</style" in style.lower():
        raise RuntimeError("map.css contains '</style' and cannot be inlined")
    if "</script" in script.lower() or "<!--" in script:
        raise RuntimeError("map.js contains '</script' or '<!--' and cannot be inlined")
    return template, style, script


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment inside it.

    ``<``, ``>`` and ``&`` only ever occur inside JSON strings, where ``\\u003c`` and friends
    mean the same characters to ``JSON.parse``; escaped, ``</script>`` or ``<!--`` in a
    headline stays data.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _check_api_base(api_base: str) -> str | None:
    """Validate ``api_base``; return its origin for ``connect-src`` (None when relative)."""
    parts = urlsplit(api_base)
    if not parts.scheme:
        if parts.netloc:
            raise ValueError(f"api_base {api_base!r} needs a scheme (http:// or https://)")
        return None
    # The base becomes the href of the CAP links: javascript: or data: must never get there.
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"api_base must be an http(s) URL or a relative path, got {api_base!r}")
    if not _ORIGIN_HOST.fullmatch(parts.netloc):
        raise ValueError(f"api_base {api_base!r} has no usable host")
    return f"{parts.scheme}://{parts.netloc}"


def render_map_html(
    alerts: Sequence[Mapping[str, Any]] | None,
    *,
    title: str = "insar-monitor alerts",
    api_base: str | None = None,
) -> str:
    """Render the alert map page as one self-contained HTML document.

    Parameters
    ----------
    alerts
        Alert revisions (``alert.v1``, typically the latest revision of each alert) to
        embed, giving a static page that needs no server; ``None`` for the served page,
        which fetches ``alerts?limit=1000`` from ``api_base``.
    title
        Page title and heading.
    api_base
        Root URL of the API, e.g. ``https://monitor.example.org/``. The served page fetches
        alerts from it, and both variants link each alert's CAP document under it. ``None``:
        the served page uses its own directory (right for ``/map``); the static page then
        shows revision ids instead of CAP links.

    Returns
    -------
    str
        The HTML document; style, script and (static variant) data are inlined.

    Raises
    ------
    ValueError
        ``api_base`` is not an http(s) URL or a relative path, or an alert holds a value JSON
        cannot carry (NaN, infinity).
    """
    template, style, script = _assets()
    origin = _check_api_base(api_base) if api_base else None
    if alerts is not None:
        mode = "embedded"
        payload = _json_for_script([dict(a) for a in alerts])
        data = f'<script type="application/json" id="alert-data">{payload}</script>\n'
        connect = "'none'"
    else:
        mode = "fetch"
        data = ""
        connect = "'self'" + (f" {origin}" if origin else "")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_csp_hash(script)}",
            f"style-src {_csp_hash(style)}",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    values = {
        "CSP": html.escape(csp, quote=True),
        "TITLE": html.escape(title),
        "STYLE": style,
        "SCRIPT": script,
        "MODE": mode,
        "API_BASE_ATTR": f' data-api-base="{html.escape(api_base, quote=True)}"'
        if api_base
        else "",
        "DATA": data,
    }
    # One pass: text inserted for one placeholder is never scanned for another.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
