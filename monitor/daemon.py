"""The always-on process behind ``insar-monitor run``.

Embedded mode (``pipeline.runner: FnApiRunner``): loop over bounded passes
(:mod:`pipelines.bounded`), pausing ``pipeline.poll_interval_s`` when nothing new
arrived. Before the first pass the models are loaded and checked against their
contracts (a wrong model fails at start-up, not on the first product) and the
emitted-id ledger is reconciled with the tails of the output topics (closing the one
duplicate window a crash can leave, see :mod:`pipelines.ledger`).

Signals: the first SIGTERM or SIGINT lets the running pass finish, commits it and
exits; a second one abandons the pass *without committing* (it is replayed on the next
start) — a pass is never half-committed. A pass that fails (broker unreachable, model
server down) is logged and retried with backoff; its offsets stay uncommitted, so
nothing is lost. Bad input never fails a pass: it goes to the dead-letter topic.

After every pass (and when a pass found nothing new) the alert stage
(:mod:`monitor.alerts.stage`) turns new detections and hot spots into alerts; the webhook
worker and the HTTP API run beside it in threads (:mod:`monitor.alerts.service`).

Cluster mode (``FlinkRunner`` / ``DataflowRunner``): submit the unbounded job of
:mod:`pipelines.streaming` and wait on it; run ``insar-monitor alerts run`` next to it.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from monitor.config import MonitorConfig
from pipelines.bounded import PassReport, run_pass
from pipelines.context import PipelineContext

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
# Consumer lag is read at most this often (each read opens broker connections).
LAG_INTERVAL_S = 10.0
# Test hook: exit once a pass has committed its detections, before the alerts are evaluated.
FAULT_EXIT_BEFORE_ALERTS = "INSAR_MONITOR_FAULT_EXIT_BEFORE_ALERTS"


def _failure_headline(e: BaseException) -> str:
    """What the operator must read first about a failed pass."""
    text = f"{e}"
    current: BaseException | None = e
    while current is not None:
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            text = "No space left on device"
        current = current.__cause__ or current.__context__
    # Beam re-raises worker errors as its own type with the original text inside.
    if "No space left on device" in text:
        return ("pass failed: disk full (No space left on device) under storage.state_dir / "
                "storage.ps_store; free space or move the store. Nothing was committed: the "
                "pass is retried")
    return "pass failed; it will be retried"


@dataclass
class DaemonStats:
    passes: int = 0
    failed_passes: int = 0
    records: int = 0
    alert_revisions: int = 0


class Daemon:
    """Run the monitor pipeline until stopped.

    Parameters
    ----------
    config : MonitorConfig
    on_pass : callable, optional
        Called with each committed :class:`PassReport` (the demo prints from it).
    on_alerts : callable, optional
        Called with each :class:`monitor.alerts.stage.AlertStageReport` that made revisions.
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        on_pass: Callable[[PassReport], None] | None = None,
        on_alerts: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.ctx = PipelineContext.from_config(config)
        self.on_pass = on_pass
        self.on_alerts = on_alerts
        self.alerts: Any = None
        self.health: Any = None
        self._lag_read_at = 0.0
        self.stats = DaemonStats()
        self._stop = threading.Event()
        self._abandon = threading.Event()

    # -- control ---------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current pass, commit it, then return from :meth:`run`."""
        self._stop.set()

    def request_abandon(self) -> None:
        """Do not commit the current pass (it will be replayed), return as soon as possible."""
        self._abandon.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():
                log.warning("second signal: abandoning the pass without committing")
                self.request_abandon()
                raise SystemExit(128 + signum)
            log.info("stop requested: finishing the current pass", extra={"signal": signum})
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- running ---------------------------------------------------------------------
    def _endpoints(self) -> list[Any]:
        """The model endpoints this daemon uses (the delineation U-Net's when enabled)."""
        endpoints = [self.ctx.unrest, self.ctx.trend]
        if self.ctx.delineation is not None:
            endpoints.append(self.ctx.delineation.endpoint)
        return endpoints

    def _check_delineation(self) -> None:
        """A DEM that cannot be read is a configuration error; no DEM is said in the log."""
        from monitor.config import ConfigError
        from pipelines.delineation_stage import check_dem
        from pipelines.hotspots.terrain import TerrainError

        settings = self.ctx.delineation
        if settings is None:
            return
        if settings.dem_path is None:
            log.warning(
                "ADA delineation runs on the hot spot map alone: no delineation.dem_path, so "
                "the U-Net gets no terrain aspect (hotspot.v1 says terrain: none)"
            )
            return
        try:
            check_dem(settings.dem_path)
        except TerrainError as e:
            raise ConfigError(f"invalid configuration: delineation.dem_path: {e}") from e
        log.info("ADA delineation uses " + settings.terrain_description())

    def prepare(self) -> None:
        """Serve metrics, load and check the models, reconcile the ledger, start alerts."""
        from monitor import metrics
        from pipelines import observe
        from pipelines.ledger import EmittedLedger

        self.config.storage.state_dir.mkdir(parents=True, exist_ok=True)
        self._check_delineation()
        self._start_health()
        observe.set_inference_recorder(metrics.record_inference)
        observe.set_circuit_recorder(metrics.record_circuit_state)
        for endpoint in self._endpoints():
            loaded = endpoint.load()
            metrics.record_model(loaded.name, loaded.version, endpoint.backend)
            log.info(
                "model ready",
                extra={"model": loaded.model_id, "backend": endpoint.backend},
            )
        ledger = EmittedLedger(self.ctx.ledger_path)
        try:
            added = ledger.reconcile(
                self.ctx.kafka,
                [self.ctx.detection_topic, self.ctx.dlq_topic],
                self.config.pipeline.dedupe_scan_records,
            )
        finally:
            ledger.close()
        if added:
            log.warning(
                "ledger reconciled: outputs of an interrupted pass found on the broker",
                extra={"ids_added": added},
            )
        if self.config.alerts.enabled and self.alerts is None:
            from monitor.alerts.service import AlertService

            self.alerts = AlertService(self.config, self.ctx.kafka)
            self.alerts.start()

    def close(self) -> None:
        """Stop the alert service's threads (webhook worker, API) and the metrics server."""
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.health is not None:
            self.health.stop()
            self.health = None

    # -- observability -----------------------------------------------------------------
    def _start_health(self) -> None:
        if not self.config.metrics.enabled or self.health is not None:
            return
        from monitor.health import HealthServer

        m = self.config.metrics
        self.health = HealthServer(
            m.host, m.port, self.readiness_checks(), timeout_s=m.readiness_timeout_s
        )
        self.health.start()

    def readiness_checks(self) -> dict[str, Callable[[], str | None]]:
        """Broker reachable, models loaded, alert store writable (see monitor/health.py)."""
        from dataclasses import replace

        from pipelines.kafka_io import KafkaIOError, topic_partitions

        # The probe's own deadline is shorter than the check's, so a dead broker reads as
        # "unreachable" rather than as a probe that did not answer.
        probe_ms = int(self.config.metrics.readiness_timeout_s * 800)
        probe = replace(self.ctx.kafka, request_timeout_ms=max(500, probe_ms))

        def broker() -> str | None:
            try:
                topic_partitions(probe, self.ctx.input_topics)
            except KafkaIOError as e:
                return f"broker unreachable: {e}"
            return None

        def models() -> str | None:
            from pipelines.model_endpoint import is_loaded

            missing = [e.model_name for e in self._endpoints() if not is_loaded(e)]
            return f"models not loaded yet: {', '.join(missing)}" if missing else None

        def store() -> str | None:
            if not self.config.alerts.enabled:
                return None
            if self.alerts is None:
                return "alert store not opened yet"
            return self.alerts.store.check_writable()

        return {"broker": broker, "models": models, "alert_store": store}

    def _record_lag(self) -> None:
        import time
        from dataclasses import replace

        from monitor import metrics
        from pipelines.kafka_io import committed_offsets, end_offsets

        now = time.monotonic()
        if now - self._lag_read_at < LAG_INTERVAL_S:
            return
        self._lag_read_at = now
        groups = [(self.ctx.kafka, self.ctx.input_topics)]
        if self.alerts is not None:
            groups.append((
                replace(self.ctx.kafka, group_id=f"{self.ctx.kafka.group_id}-alerts"),
                [self.config.topics.detections, self.config.topics.hotspots],
            ))
        for settings, topics in groups:
            ends = end_offsets(settings, topics)
            committed = committed_offsets(settings, topics)
            metrics.record_lag(
                settings.group_id,
                {k: end - (committed.get(k) or 0) for k, end in ends.items()},
            )

    def run_once(self) -> PassReport | None:
        """One pass (None when there was nothing to read)."""
        from monitor import metrics

        report = run_pass(
            self.ctx,
            max_records_per_partition=self.config.pipeline.max_records_per_partition,
            should_commit=lambda: not self._abandon.is_set(),
        )
        if report is None:
            metrics.record_empty_pass()
        elif not self._abandon.is_set():
            metrics.record_pass(report)
        if report is not None and not self._abandon.is_set():
            self.stats.passes += 1
            self.stats.records += report.records
            if self.on_pass is not None:
                self.on_pass(report)
        return report

    def run_alerts_once(self) -> Any:
        """One run of the alert stage (None when disabled or nothing was new)."""
        if self.alerts is None or self._abandon.is_set():
            return None
        if os.environ.get(FAULT_EXIT_BEFORE_ALERTS):
            log.error("fault injection: exiting before the alert stage")
            os._exit(72)
        report = self.alerts.run_once()
        if report is not None and report.revisions:
            self.stats.alert_revisions += len(report.revisions)
            if self.on_alerts is not None:
                self.on_alerts(report)
        return report

    def run(self, *, until_idle: bool = False, max_passes: int | None = None) -> DaemonStats:
        """Loop over passes until stopped (or until a pass finds nothing, with ``until_idle``).

        Returns
        -------
        DaemonStats
        """
        if self.config.pipeline.runner != "FnApiRunner":
            self._run_streaming()
            return self.stats
        self.prepare()
        log.info(
            "daemon started",
            extra={
                "bootstrap": self.ctx.kafka.bootstrap_servers,
                "topics": self.ctx.input_topics,
                "poll_interval_s": self.config.pipeline.poll_interval_s,
            },
        )
        try:
            self._loop(until_idle=until_idle, max_passes=max_passes)
        finally:
            self.close()
        log.info("daemon stopped", extra={"passes": self.stats.passes})
        return self.stats

    def _loop(self, *, until_idle: bool, max_passes: int | None) -> None:
        backoff = self.config.pipeline.poll_interval_s
        while not self._stop.is_set():
            if max_passes is not None and self.stats.passes >= max_passes:
                break
            try:
                report = self.run_once()
                alert_report = self.run_alerts_once()
                self._record_lag()
            except Exception as e:
                # Not bad input (that is dead-lettered): the broker, the model server or the
                # disk failed. Nothing was committed; retry the same pass after a pause.
                self.stats.failed_passes += 1
                from monitor import metrics

                metrics.record_failed_pass()
                log.error(
                    _failure_headline(e),
                    extra={"error": f"{type(e).__name__}: {e}", "retry_in_s": backoff},
                )
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            backoff = self.config.pipeline.poll_interval_s
            if report is None and alert_report is None:
                if until_idle:
                    break
                self._stop.wait(self.config.pipeline.poll_interval_s)

    def _run_streaming(self) -> None:
        from pipelines.streaming import build_streaming_pipeline, streaming_options

        self._check_delineation()  # the DEM must be readable where the job is submitted too
        p = self.config.pipeline
        options = streaming_options(p.runner, dict(p.runner_options))
        pipeline = build_streaming_pipeline(
            self.ctx, options, expansion_service=p.expansion_service
        )
        self._start_health()  # liveness and process metrics of the submitting process
        log.info("submitting the streaming job", extra={"runner": p.runner})
        try:
            result: Any = pipeline.run()
            result.wait_until_finish()
        finally:
            self.close()
