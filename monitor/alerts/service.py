"""Everything the alert side of the daemon runs: the stage, the webhook worker and the API.

:class:`AlertService` wires them from the configuration. The embedded daemon calls
:meth:`AlertService.run_once` after each pipeline pass; ``insar-monitor alerts run``
loops over it on its own when the pipeline runs on a cluster (Flink, Dataflow).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from monitor.alerts.cap import settings_from_config
from monitor.alerts.stage import AlertStage, AlertStageReport
from monitor.storage.alert_store import AlertStore
from pipelines.kafka_io import KafkaSettings

log = logging.getLogger(__name__)


class AlertService:
    """The alert stage, plus the webhook worker and the HTTP API when they are enabled.

    Parameters
    ----------
    config : MonitorConfig
    kafka : KafkaSettings
        The pipeline's broker settings (the stage derives its own consumer group).
    clock : callable, optional
        Wall clock, injectable for tests.
    """

    def __init__(
        self,
        config: Any,
        kafka: KafkaSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = AlertStore(config.database_url())
        self.stage = AlertStage(config, self.store, kafka, clock=clock)
        self.clock = clock
        self.dispatcher: Any = None
        self.api: Any = None

    def start(self) -> None:
        """Reconcile the outbox, start the webhook worker and the API (if enabled)."""
        log.info("alert store ready", extra={"database": self.store.url_for_logs})
        self.stage.prepare()
        if self.config.webhooks.enabled:
            from monitor import metrics
            from monitor.alerts.webhooks import WebhookDispatcher

            self.dispatcher = WebhookDispatcher(
                self.store,
                self.config.webhooks,
                cap_settings=settings_from_config(self.config),
                clock=self.clock,
                on_report=lambda r: metrics.record_deliveries(r.delivered, r.retried, r.dead),
            )
            self.dispatcher.start()
        if self.config.api.enabled:
            from monitor.api.app import create_app
            from monitor.api.server import ApiServer

            self.api = ApiServer(
                create_app(self.store, self.config), self.config.api.host, self.config.api.port
            )
            self.api.start()
            log.info("API listening", extra={"url": self.api.url})

    def run_once(self) -> AlertStageReport | None:
        """One stage run, with its metrics recorded around it."""
        from monitor import metrics

        report = self.stage.run_once()
        if report is not None:
            published = {}
            for message in report.inputs:
                metrics.record_output(message)
                if message.get("input_published_at") and message.get("detection_id"):
                    published[message["detection_id"]] = message["input_published_at"]
            metrics.record_alert_revisions(report.revisions, published)
        metrics.record_alert_counts(self.store.alert_counts())
        metrics.record_delivery_queue(self.store.delivery_counts())
        return report

    def stop(self) -> None:
        """Stop the worker (after one last round for what is due) and the API."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
            try:
                # Alerts made in the last pass should not wait for the next start; each
                # request is bounded by webhooks.timeout_s.
                self.dispatcher.deliver_due()
            except Exception as e:  # the database is gone: they stay queued for next time
                log.error("final webhook round failed", extra={"error": f"{type(e).__name__}: {e}"})
            self.dispatcher = None
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.stage.close()
        self.store.close()
