"""Argument parsers of ``insar-monitor alerts ...`` and ``insar-monitor api``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

SEVERITIES = ("Minor", "Moderate", "Severe", "Extreme")
HAZARDS = ("volcanic_unrest", "ground_deformation", "active_deformation_area")

ALERTS_DESCRIPTION = """\
Inspect and manage alerts: the history in the alert store (SQLite by default,
database.url for PostgreSQL), CAP 1.2 documents, a map page, webhook subscriptions,
silences and deliveries. `alerts run` evaluates the rules on its own, for a pipeline
that runs on a cluster (the embedded daemon evaluates them after every pass).
"""

ALERTS_EPILOG = """\
examples:
  insar-monitor alerts list --state firing --severity Moderate
  insar-monitor alerts show unrest.volcano:etna.e1
  insar-monitor alerts cap unrest.volcano:etna.e1 > etna.cap.xml
  insar-monitor alerts map --out alerts.html          # open it in any browser, offline
  insar-monitor alerts subscribe --name etna-obs --url https://obs.example/hook \\
      --area etna.geojson --hazard volcanic_unrest --min-severity Moderate
  insar-monitor alerts silence --matcher volcano_id=etna --hours 12 --by duty \\
      --comment "field campaign, known signal"
  insar-monitor alerts deliveries --status dead
  insar-monitor alerts replay-deliveries --subscription 3f2a...
  insar-monitor alerts hash-token < token.txt        # -> sha256:... for api.token_hashes
"""


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--bbox wants west,south,east,north in degrees, got {text!r}"
        ) from None
    if west > east or south > north:
        raise argparse.ArgumentTypeError(f"--bbox {text!r}: west > east or south > north")
    return west, south, east, north


def add_alert_parsers(
    sub: argparse._SubParsersAction, add_config: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``alerts`` (with its sub-commands) and ``api`` on the top-level parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "alerts", help="alert history, CAP, map page, subscriptions, silences, deliveries",
        description=ALERTS_DESCRIPTION, epilog=ALERTS_EPILOG, formatter_class=fmt,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = actions.add_parser("list", help="alerts, most recently updated first")
    q.add_argument("--state", choices=["firing", "resolved", "expired"])
    q.add_argument("--severity", choices=SEVERITIES, help="at least this severity")
    q.add_argument("--hazard", choices=HAZARDS)
    q.add_argument("--rule", help="only this rule's alerts")
    q.add_argument("--bbox", type=_bbox, help="west,south,east,north (degrees)")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true", help="one alert.v1 JSON object per line")
    add_config(q)

    q = actions.add_parser("show", help="one alert with its revision history")
    q.add_argument("alert_id")
    q.add_argument("--json", action="store_true")
    add_config(q)

    q = actions.add_parser("cap", help="print an alert's CAP 1.2 XML (latest revision)")
    q.add_argument("alert_id")
    q.add_argument("--revision", type=int, help="a given revision instead of the latest")
    add_config(q)

    q = actions.add_parser(
        "map", help="write a self-contained HTML map of the alerts (no network needed)"
    )
    q.add_argument("--out", type=Path, required=True, help="HTML file to write")
    q.add_argument("--all", action="store_true", help="include resolved and expired alerts")
    add_config(q)

    q = actions.add_parser(
        "run", help="evaluate rules, deliver webhooks and serve the API, without the pipeline"
    )
    q.add_argument("--until-idle", action="store_true", help="exit when nothing new arrives")
    add_config(q)

    q = actions.add_parser("subscribe", help="register a webhook; prints its id and secret")
    q.add_argument("--name", required=True)
    q.add_argument("--url", required=True, help="http(s) URL that receives POSTs")
    q.add_argument("--area", type=Path, help="GeoJSON file of the area of interest")
    q.add_argument("--hazard", action="append", choices=HAZARDS, default=[],
                   help="repeatable; default: every hazard")
    q.add_argument("--min-severity", choices=SEVERITIES, default="Minor")
    q.add_argument("--format", choices=["json", "cap"], default="json")
    add_config(q)

    q = actions.add_parser("subscriptions", help="list webhook subscriptions (no secrets)")
    add_config(q)

    q = actions.add_parser("unsubscribe", help="stop delivering to a subscription")
    q.add_argument("subscription_id")
    add_config(q)

    q = actions.add_parser("silence", help="mute matching alerts for a while")
    q.add_argument("--matcher", action="append", required=True,
                   help="label op value, op one of = != =~ !~ (repeatable; all must match)")
    q.add_argument("--hours", type=float, required=True, help="how long, from now")
    q.add_argument("--by", required=True, help="who silences (kept for the record)")
    q.add_argument("--comment", required=True, help="why")
    add_config(q)

    q = actions.add_parser("silences", help="list silences (--active for current ones)")
    q.add_argument("--active", action="store_true")
    add_config(q)

    q = actions.add_parser("unsilence", help="end a silence now")
    q.add_argument("silence_id")
    add_config(q)

    q = actions.add_parser("deliveries", help="the webhook delivery log")
    q.add_argument("--status", choices=["pending", "delivered", "dead"])
    q.add_argument("--subscription")
    q.add_argument("--limit", type=int, default=50)
    add_config(q)

    q = actions.add_parser(
        "replay-deliveries", help="queue dead (or delivered) deliveries again"
    )
    q.add_argument("--subscription", help="only this subscription's")
    q.add_argument("--status", choices=["dead", "delivered"], default="dead")
    add_config(q)

    q = actions.add_parser(
        "hash-token",
        help="print the api.token_hashes entry of an API token read from stdin",
        description="Read one bearer token from stdin (prompted for, without echo, on a "
        "terminal) and print its api.token_hashes entry, sha256:<hex>. The token is never "
        "taken as an argument: arguments show in `ps` and in shell history.",
        epilog="example:\n  python -c 'import secrets; print(secrets.token_urlsafe(32))' "
        "> token.txt\n  insar-monitor alerts hash-token < token.txt",
        formatter_class=fmt,
    )
    add_config(q)

    p = sub.add_parser(
        "api", help="serve the HTTP API and map page over the alert store",
        description="Serve the HTTP API (alerts as JSON and CAP, an Atom feed of current CAP "
        "alerts, subscriptions, silences, deliveries, /map, /openapi.json) on api.host:api.port. "
        "Management endpoints need a bearer token from api.tokens "
        "(INSAR_MONITOR__API__TOKENS).",
    )
    p.add_argument("--host", help="override api.host")
    p.add_argument("--port", type=int, help="override api.port")
    add_config(p)
