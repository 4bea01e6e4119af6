"""The HTTP API of insar-monitor: alerts, CAP 1.2, the Atom feed, management and the map page.

:func:`create_app` builds the FastAPI application over an
:class:`~monitor.storage.alert_store.AlertStore`; :class:`ApiServer` runs it with uvicorn in
a background thread of the daemon; :func:`render_map_html` renders the self-contained map
page (served at ``/map`` or written to a file).
"""

from monitor.api.app import create_app
from monitor.api.map_page import render_map_html
from monitor.api.server import ApiServer

__all__ = ["ApiServer", "create_app", "render_map_html"]
