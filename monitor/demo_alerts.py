"""The alert side of the streaming demo: a signed webhook subscriber, live alert lines, and a
summary that checks every delivery's signature and every CAP file against the CAP 1.2 XSD."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from monitor.alerts.receiver import ReceivedPost, WebhookReceiver, webhook_receiver
from monitor.config import MonitorConfig


@dataclass
class DemoSubscriber:
    """The demo's own webhook subscriber (everywhere, every hazard, every severity)."""

    receiver: WebhookReceiver
    subscription_id: str
    secret: str = field(repr=False)


@contextmanager
def demo_subscriber(cfg: MonitorConfig) -> Iterator[DemoSubscriber]:
    """Start a local webhook receiver and subscribe it in the demo's alert store."""
    from monitor.alerts.subscriptions import SubscriptionSpec
    from monitor.storage.alert_store import AlertStore

    with webhook_receiver() as receiver:
        store = AlertStore(cfg.database_url())
        try:
            sub, secret = store.add_subscription(
                SubscriptionSpec("demo duty officer", f"{receiver.url}/insar-alerts")
            )
        finally:
            store.close()
        yield DemoSubscriber(receiver, sub.subscription_id, secret)


def alert_config(cfg: MonitorConfig) -> MonitorConfig:
    """The demo's alert settings: fast webhook polling, CAP marked as an exercise."""
    cfg.webhooks.poll_interval_s = 0.5
    # Synthetic data: whatever reads these CAP files must not take them for real warnings.
    cfg.alerts.cap = cfg.alerts.cap.model_copy(update={"status": "Exercise"})
    return cfg


def alerts_caught_up(cfg: MonitorConfig) -> bool:
    """Whether the alert stage has evaluated everything on the detection and hot-spot topics."""
    from pipelines.context import PipelineContext
    from pipelines.kafka_io import plan_pass

    kafka = PipelineContext.from_config(cfg).kafka
    group = replace(kafka, group_id=f"{kafka.group_id}-alerts")
    return not plan_pass(group, [cfg.topics.detections, cfg.topics.hotspots])


def describe_alert(payload: dict[str, Any]) -> str:
    """One line for the live printout."""
    suppressed = payload["suppressed"]
    muted = " (muted: " + ", ".join(
        [*(f"silence {s}" for s in suppressed["silenced_by"]),
         *(f"inhibited by {a}" for a in suppressed["inhibited_by"])]
    ) + ")" if suppressed["silenced_by"] or suppressed["inhibited_by"] else ""
    return (f"{payload['transition']:<8} {payload['alert_event_id']} [{payload['severity']}] "
            f"{payload['headline']}{muted}")


def summarise_alerts(
    cfg: MonitorConfig,
    subscriber: DemoSubscriber,
    out: Path,
    *,
    expected: dict[str, bool],
    wait_s: float = 10.0,
) -> dict[str, Any]:
    """Alerts in the store, deliveries received (signatures checked), CAP files validated,
    and a self-contained map page written to ``out/alerts.html``.

    ``expected`` maps a place (volcano or frame id) to whether the scenario's truth calls
    for an alert there.
    """
    from monitor.alerts.cap import validate_cap
    from monitor.alerts.signing import SIGNATURE_HEADER, verify_signature
    from monitor.api.map_page import render_map_html
    from monitor.storage.alert_store import AlertStore

    store = AlertStore(cfg.database_url())
    try:
        queued = len(store.list_deliveries(limit=100000))
        deadline = time.monotonic() + wait_s
        while len(subscriber.receiver.received()) < queued and time.monotonic() < deadline:
            time.sleep(0.1)
        posts: list[ReceivedPost] = subscriber.receiver.received()
        signed = sum(
            verify_signature(subscriber.secret, p.body, p.headers.get(SIGNATURE_HEADER, ""),
                             now=time.time())
            for p in posts
        )
        alerts = store.list_alerts(limit=1000)
        cap_files = sorted(cfg.storage.cap_path().glob("*.xml"))
        valid_caps = 0
        for path in cap_files:
            try:
                validate_cap(path.read_bytes())
                valid_caps += 1
            except ValueError:
                pass
        map_path = out / "alerts.html"
        map_path.write_text(render_map_html(alerts), encoding="utf-8")
        raised = {a["place"]["key"].split(":", 1)[-1] for a in alerts
                   if a["rule"]["kind"] == "unrest"}
        return {
            "expected": [
                {"place": place, "alert_expected": want, "alert_raised": place in raised,
                 "ok": (place in raised) == want}
                for place, want in expected.items()
            ],
            "alerts": [
                {"alert_id": a["alert_id"], "state": a["state"], "severity": a["severity"],
                 "revision": a["revision"], "headline": a["headline"],
                 "suppressed": bool(a["suppressed"]["silenced_by"]
                                    or a["suppressed"]["inhibited_by"])}
                for a in alerts
            ],
            "revisions": store.count_events(),
            "deliveries_queued": queued,
            "webhooks_received": len(posts),
            "webhooks_signature_valid": int(signed),
            "cap_files": len(cap_files),
            "cap_files_valid": valid_caps,
            "cap_dir": str(cfg.storage.cap_path()),
            "map": str(map_path),
            "database": store.url_for_logs,
        }
    finally:
        store.close()


def print_alerts_summary(summary: dict[str, Any]) -> None:
    print("\nAlerts (rules: persistence 2 of 3 for unrest, PS acceleration, new ADAs)")
    for a in summary["alerts"]:
        muted = " (muted)" if a["suppressed"] else ""
        print(f"  {a['severity']:<9} {a['state']:<9} rev {a['revision']}  {a['alert_id']}{muted}")
        print(f"            {a['headline']}")
    if not summary["alerts"]:
        print("  none")
    for e in summary["expected"]:
        want = "yes" if e["alert_expected"] else "no"
        got = "yes" if e["alert_raised"] else "no"
        print(f"  unrest alert for {e['place']:<20} expected {want:<4}got {got:<4}"
              f"{'ok' if e['ok'] else 'MISMATCH'}")
    print(f"  revisions {summary['revisions']}; webhook deliveries {summary['webhooks_received']}"
          f"/{summary['deliveries_queued']} received, {summary['webhooks_signature_valid']} "
          "with a valid HMAC-SHA256 signature")
    print(f"  CAP 1.2 files {summary['cap_files_valid']}/{summary['cap_files']} valid against "
          f"the OASIS schema, in {summary['cap_dir']}/")
    print(f"  map of the alerts (open in a browser, works offline): {summary['map']}")
