"""What ``insar-monitor alerts ...`` and ``insar-monitor api`` do, given parsed arguments."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import MonitorConfig


def _fail(message: str, code: int = 1) -> int:
    print(f"insar-monitor: {message}", file=sys.stderr)
    return code


def _register_secrets(config: MonitorConfig) -> None:
    """Keep the configuration's secrets (database password, API tokens) out of the logs."""
    from monitor.logs import register_config_secrets

    register_config_secrets(config)


def _store(config: MonitorConfig) -> Any:
    from monitor.storage.alert_store import AlertStore

    return AlertStore(config.database_url())


def run_alerts(args: argparse.Namespace, config: MonitorConfig) -> int:
    handler = {
        "list": list_alerts,
        "show": show_alert,
        "cap": print_cap,
        "map": write_map,
        "run": run_service,
        "subscribe": subscribe,
        "subscriptions": list_subscriptions,
        "unsubscribe": unsubscribe,
        "silence": silence,
        "silences": list_silences,
        "unsilence": unsilence,
        "deliveries": list_deliveries,
        "replay-deliveries": replay_deliveries,
        "hash-token": hash_token,
    }[args.action]
    _register_secrets(config)
    try:
        return handler(args, config)
    except ValueError as e:
        return _fail(str(e), 2)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def list_alerts(args: argparse.Namespace, config: MonitorConfig) -> int:
    alerts = _store(config).list_alerts(
        state=args.state, min_severity=args.severity, hazard=args.hazard, rule=args.rule,
        bbox=args.bbox, limit=args.limit,
    )
    if args.json:
        for a in alerts:
            print(json.dumps(a))
        return 0
    if not alerts:
        print("no alerts match")
        return 0
    rows = [
        [a["severity"], a["state"] + ("*" if _suppressed(a) else ""), a["hazard"],
         a["event_time"], str(a["revision"]), a["alert_id"], a["headline"][:70]]
        for a in alerts
    ]
    print(_table(rows, ["SEVERITY", "STATE", "HAZARD", "EVENT", "REV", "ALERT", "HEADLINE"]))
    if any(_suppressed(a) for a in alerts):
        print("* silenced or inhibited: recorded, not notified")
    return 0


def _suppressed(alert: dict[str, Any]) -> bool:
    s = alert["suppressed"]
    return bool(s["silenced_by"] or s["inhibited_by"])


def show_alert(args: argparse.Namespace, config: MonitorConfig) -> int:
    store = _store(config)
    alert = store.get_alert(args.alert_id)
    if alert is None:
        return _fail(f"no alert {args.alert_id!r}; see `insar-monitor alerts list`")
    history = store.alert_history(args.alert_id)
    if args.json:
        print(json.dumps({"alert": alert, "history": history}, indent=2))
        return 0
    print(f"{alert['alert_id']}  [{alert['state']}, {alert['severity']}, {alert['hazard']}]")
    print(f"  {alert['headline']}")
    print(f"  place: {alert['place']['name']}   area: {alert['area']['description']}")
    print(f"  episode since {alert['episode_start']}, last event {alert['event_time']}")
    print(f"  {alert['description']}")
    for rev in history:
        print(f"  rev {rev['revision']} {rev['sent_at']} {rev['msg_type']:6} "
              f"{rev['transition']:8} {rev.get('reason', '')}")
    return 0


def print_cap(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.alerts.cap import cap_xml, settings_from_config

    store = _store(config)
    history = store.alert_history(args.alert_id)
    if not history:
        return _fail(f"no alert {args.alert_id!r}; see `insar-monitor alerts list`")
    if args.revision is None:
        event = history[-1]
    else:
        matching = [e for e in history if e["revision"] == args.revision]
        if not matching:
            return _fail(f"{args.alert_id} has revisions 1..{len(history)}")
        event = matching[0]
    sent = store.sent_times(event["references"])
    xml = cap_xml(event, settings=settings_from_config(config),
                  references=[(r, sent[r]) for r in event["references"]])
    sys.stdout.write(xml.decode("utf-8"))
    return 0


def write_map(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.api.map_page import render_map_html

    alerts = _store(config).list_alerts(state=None if args.all else "firing", limit=5000)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # CAP links only when the API has a public address to point them at.
    api_base = config.api.public_url
    args.out.write_text(render_map_html(alerts, api_base=api_base), encoding="utf-8")
    print(json.dumps({"map": str(args.out), "alerts": len(alerts)}))
    return 0


def subscribe(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.alerts.subscriptions import SubscriptionSpec

    area = None
    if args.area is not None:
        try:
            area = json.loads(args.area.read_text())
        except (OSError, ValueError) as e:
            return _fail(f"--area {args.area}: not a readable GeoJSON file ({e})", 2)
    spec = SubscriptionSpec(args.name, args.url, area, tuple(args.hazard), args.min_severity,
                            args.format)
    sub, secret = _store(config).add_subscription(spec)
    from monitor.logs import register_secret

    register_secret(secret)
    print(json.dumps({**sub.to_json_dict(), "secret": secret}))
    print("keep the secret: it verifies the X-Insar-Signature header and is not shown again",
          file=sys.stderr)
    return 0


def list_subscriptions(args: argparse.Namespace, config: MonitorConfig) -> int:
    for sub in _store(config).list_subscriptions():
        print(json.dumps(sub.to_json_dict()))
    return 0


def unsubscribe(args: argparse.Namespace, config: MonitorConfig) -> int:
    if not _store(config).deactivate_subscription(args.subscription_id):
        return _fail(f"no subscription {args.subscription_id!r}")
    print(json.dumps({"subscription_id": args.subscription_id, "active": False}))
    return 0


def silence(args: argparse.Namespace, config: MonitorConfig) -> int:
    if args.hours <= 0:
        return _fail("--hours must be positive", 2)
    now = datetime.now(UTC)
    created = _store(config).add_silence(
        args.matcher, starts_at=now, ends_at=now + timedelta(hours=args.hours),
        created_by=args.by, comment=args.comment,
    )
    print(json.dumps(created.to_json_dict()))
    return 0


def list_silences(args: argparse.Namespace, config: MonitorConfig) -> int:
    at = datetime.now(UTC) if args.active else None
    for s in _store(config).silences(active_at=at):
        print(json.dumps(s.to_json_dict()))
    return 0


def unsilence(args: argparse.Namespace, config: MonitorConfig) -> int:
    if not _store(config).expire_silence(args.silence_id):
        return _fail(f"no active silence {args.silence_id!r}")
    print(json.dumps({"silence_id": args.silence_id, "expired": True}))
    return 0


def list_deliveries(args: argparse.Namespace, config: MonitorConfig) -> int:
    rows = _store(config).list_deliveries(
        status=args.status, subscription_id=args.subscription, limit=args.limit
    )
    for row in rows:
        print(json.dumps(row))
    return 0


def replay_deliveries(args: argparse.Namespace, config: MonitorConfig) -> int:
    n = _store(config).replay_deliveries(subscription_id=args.subscription, status=args.status)
    print(json.dumps({"requeued": n}))
    return 0


def hash_token(args: argparse.Namespace, config: MonitorConfig) -> int:
    """Print ``sha256:<hex>`` of the token on stdin (prompted for without echo on a terminal)."""
    if sys.stdin.isatty():
        import getpass

        token = getpass.getpass("API token (not echoed): ")
    else:
        token = sys.stdin.read()
    # A trailing newline (echo, a file) or spaces are not part of a bearer token: HTTP
    # strips them from the header too, so the hash must be of the bare token.
    token = token.strip()
    if not token:
        return _fail("no token on stdin: pipe one in, e.g. insar-monitor alerts hash-token "
                     "< token.txt", 2)
    if any(c.isspace() for c in token):
        return _fail("a bearer token cannot contain spaces or line breaks (one token only)", 2)
    from monitor.config import ApiConfig

    print(ApiConfig.hash_token(token))
    if len(token) < 16:
        print("warning: a token this short can be guessed; use e.g. "
              "python -c 'import secrets; print(secrets.token_urlsafe(32))'", file=sys.stderr)
    return 0


def _wait_for_signal() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_service(args: argparse.Namespace, config: MonitorConfig) -> int:
    """The alert side alone: for a pipeline running on Flink or Dataflow."""
    from monitor.alerts.service import AlertService
    from pipelines.context import PipelineContext

    service = AlertService(config, PipelineContext.from_config(config).kafka)
    stop = _wait_for_signal()
    service.start()
    revisions = 0
    try:
        while not stop.is_set():
            report = service.run_once()
            if report is not None:
                revisions += len(report.revisions)
            elif args.until_idle:
                break
            else:
                stop.wait(config.pipeline.poll_interval_s)
    finally:
        service.stop()
    print(json.dumps({"revisions": revisions}))
    return 0


def serve_api(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.api.app import create_app
    from monitor.api.server import ApiServer

    host = args.host or config.api.host
    port = args.port if args.port is not None else config.api.port
    _register_secrets(config)
    store = _store(config)
    server = ApiServer(create_app(store, config), host, port)
    stop = _wait_for_signal()
    server.start()
    print(json.dumps({"api": server.url, "map": f"{server.url}/map"}), flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
        store.close()
    return 0
