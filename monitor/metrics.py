"""Every Prometheus metric of insar-monitor, in one place, with units in the names.

Conventions (https://prometheus.io/docs/practices/naming/): the ``insar_`` prefix, base
units (seconds, messages), ``_total`` for counters, and label values from small fixed
sets only — topic names, partition numbers, model names and backends, rule names and
severities from the configuration, dead-letter reason codes, dataset ids. Never a product,
detection, alert or point id: those belong in logs and in the alert store.

The metrics live in a :class:`prometheus_client.CollectorRegistry` of their own
(:data:`REGISTRY`, plus the process and platform collectors), so tests can read them
without the global registry of the test process. :mod:`monitor.health` serves them on
``/metrics``. The code that records them sits at the edges: the daemon after each pass
(:class:`PassRecorder`), the alert stage as it reads detections and hot spots, the webhook
worker, and the inference clients through :mod:`pipelines.observe` (a hook, so the Beam
code does not import the daemon's modules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

# The *_created series double the number of series and no dashboard or rule reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Latencies from a producer's publication to an output: seconds to tens of minutes.
_LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PASS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

# --------------------------------------------------------------------------- pipeline
MESSAGES_CONSUMED = Counter(
    "insar_messages_consumed_total", "Input messages read by committed passes.", ["topic"],
    registry=REGISTRY,
)
PRODUCTS_PROCESSED = Counter(
    "insar_products_processed_total",
    "Input messages that produced a detection (kind: interferogram, ps_update).", ["kind"],
    registry=REGISTRY,
)
PRODUCTS_FAILED = Counter(
    "insar_products_failed_total",
    "Input messages dead-lettered, by reason code (docs/messages.md).", ["reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "insar_dead_letters_total", "Messages published to the dead-letter topic.",
    registry=REGISTRY,
)
TILES_SCORED = Counter(
    "insar_tiles_scored_total", "224x224 interferogram tiles scored.", registry=REGISTRY
)
FRAMES_SCORED = Counter(
    "insar_frames_scored_total", "Interferogram frames decided, by decision (unrest, quiet).",
    ["decision"], registry=REGISTRY,
)
FRAME_PROBABILITY = Histogram(
    "insar_frame_unrest_probability", "Frame unrest probability (highest tile) of each frame.",
    buckets=_PROBABILITY_BUCKETS, registry=REGISTRY,
)
PS_SERIES_CLASSIFIED = Counter(
    "insar_ps_series_classified_total", "PS time series classified by the trend model.",
    registry=REGISTRY,
)
PS_CLASS_CHANGES = Counter(
    "insar_ps_class_changes_total", "PS points that changed class, by their new class.",
    ["to_class"], registry=REGISTRY,
)
PS_CLASS_MIX = Gauge(
    "insar_ps_points", "PS points of the latest update of each dataset, by class.",
    ["dataset", "trend_class"], registry=REGISTRY,
)
PASS_DURATION = Histogram(
    "insar_pass_duration_seconds", "Duration of a bounded pass, read to commit.",
    buckets=_PASS_BUCKETS, registry=REGISTRY,
)
PASSES = Counter(
    "insar_passes_total", "Bounded passes by outcome (committed, failed, empty).", ["outcome"],
    registry=REGISTRY,
)
LAST_PASS = Gauge(
    "insar_last_pass_timestamp_seconds",
    "Unix time the daemon last completed a pass (committed or empty): stalls show here.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "insar_consumer_lag_messages", "End offset minus committed offset, per partition.",
    ["group", "topic", "partition"], registry=REGISTRY,
)
PUBLISH_TO_DETECTION = Histogram(
    "insar_publish_to_detection_seconds",
    "Producer's published_at (in the input payload) to the detection's produced_at.",
    ["kind"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
ACTIVE_DEFORMATION_AREAS = Gauge(
    "insar_active_deformation_areas", "ADAs currently active in each PS dataset, by sign.",
    ["dataset", "sign"], registry=REGISTRY,
)
DELINEATED_AREAS = Gauge(
    "insar_delineated_areas",
    "Areas the delineation U-Net outlined in each PS dataset's last hot spot map, by sign "
    "(not gone).",
    ["dataset", "sign"], registry=REGISTRY,
)

# --------------------------------------------------------------------------- inference
INFERENCE_SECONDS = Histogram(
    "insar_inference_seconds", "Duration of one inference request (a batch).",
    ["model", "backend"], buckets=_INFERENCE_BUCKETS, registry=REGISTRY,
)
INFERENCE_REQUESTS = Counter(
    "insar_inference_requests_total", "Inference requests by outcome (ok, error).",
    ["model", "backend", "outcome"], registry=REGISTRY,
)
MODEL_INFO = Info(
    "insar_model", "The models in use (one series per model).", ["model"], registry=REGISTRY
)
CIRCUIT_STATE_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
CIRCUIT_STATE = Gauge(
    "insar_inference_circuit_state",
    "Circuit breaker of each model client: 0 closed, 1 half-open (probing), 2 open "
    "(requests fail fast, passes are retried).",
    ["model", "backend"], registry=REGISTRY,
)
CIRCUIT_OPENS = Counter(
    "insar_inference_circuit_opens_total",
    "Times a model client's circuit opened (re-opens after a failed probe included).",
    ["model", "backend"], registry=REGISTRY,
)

# --------------------------------------------------------------------------- alerts
ALERT_REVISIONS = Counter(
    "insar_alert_revisions_total", "Alert revisions made, by rule, severity and transition.",
    ["rule", "severity", "transition"], registry=REGISTRY,
)
ALERTS = Gauge(
    "insar_alerts", "Alerts in the store by rule, severity and state (firing, resolved, expired).",
    ["rule", "severity", "state"], registry=REGISTRY,
)
PUBLISH_TO_ALERT = Histogram(
    "insar_publish_to_alert_seconds",
    "Producer's published_at of the newest evidence to the alert revision's sent_at.",
    ["hazard"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "insar_webhook_deliveries_total", "Webhook attempts by outcome (delivered, retried, dead).",
    ["outcome"], registry=REGISTRY,
)
WEBHOOK_QUEUE = Gauge(
    "insar_webhook_queue_deliveries",
    "Deliveries in the store by status (pending, delivered, dead).",
    ["status"], registry=REGISTRY,
)

METRIC_NAMES: tuple[str, ...] = (
    "insar_messages_consumed_total", "insar_products_processed_total",
    "insar_products_failed_total", "insar_dead_letters_total", "insar_tiles_scored_total",
    "insar_frames_scored_total", "insar_frame_unrest_probability",
    "insar_ps_series_classified_total", "insar_ps_class_changes_total", "insar_ps_points",
    "insar_pass_duration_seconds", "insar_passes_total", "insar_last_pass_timestamp_seconds",
    "insar_consumer_lag_messages", "insar_publish_to_detection_seconds",
    "insar_active_deformation_areas", "insar_delineated_areas", "insar_inference_seconds",
    "insar_inference_requests_total", "insar_model_info",
    "insar_inference_circuit_state", "insar_inference_circuit_opens_total",
    "insar_alert_revisions_total",
    "insar_alerts", "insar_publish_to_alert_seconds", "insar_webhook_deliveries_total",
    "insar_webhook_queue_deliveries",
)
"""Every metric family name as exposed (dashboards and alerting rules are checked against it)."""


# --------------------------------------------------------------------------- recording
def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    if a.tzinfo is None or b.tzinfo is None:
        return None
    seconds = (b - a).total_seconds()
    return seconds if seconds >= 0 else None  # clocks of producer and daemon disagree


def record_pass(report: Any) -> None:
    """Counters of one committed pass (:class:`pipelines.bounded.PassReport`)."""
    for rng in report.ranges:
        MESSAGES_CONSUMED.labels(rng.topic).inc(len(rng))
    counters: Mapping[str, int] = report.counters
    TILES_SCORED.inc(counters.get("tiles", 0))
    PS_SERIES_CLASSIFIED.inc(counters.get("ps_points_classified", 0))
    for name, value in counters.items():
        if name.startswith("dead_letter."):
            PRODUCTS_FAILED.labels(name.removeprefix("dead_letter.")).inc(value)
            DEAD_LETTERS.inc(value)
    PASS_DURATION.observe(report.seconds)
    PASSES.labels("committed").inc()
    LAST_PASS.set_to_current_time()


def record_empty_pass() -> None:
    PASSES.labels("empty").inc()
    LAST_PASS.set_to_current_time()


def record_failed_pass() -> None:
    PASSES.labels("failed").inc()


def record_lag(group: str, lag: Mapping[tuple[str, int], int]) -> None:
    """Set the lag gauge of every (topic, partition) of ``group``."""
    for (topic, partition), value in lag.items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(max(0, value))


def record_output(message: Mapping[str, Any]) -> None:
    """What one output message (detection or hot spot) says about the pipeline's behaviour.

    Called by the alert stage for every message it reads, so the same numbers come out
    whether the pipeline ran embedded or on a cluster.
    """
    schema = message.get("schema")
    if schema == "detection.v1":
        kind = "interferogram" if message.get("kind") == "interferogram_unrest" else "ps_update"
        PRODUCTS_PROCESSED.labels(kind).inc()
        latency = _seconds_between(message.get("input_published_at"), message.get("produced_at"))
        if latency is not None:
            PUBLISH_TO_DETECTION.labels(kind).observe(latency)
        if kind == "interferogram":
            frame = message.get("frame", {})
            FRAMES_SCORED.labels("unrest" if frame.get("unrest") else "quiet").inc()
            FRAME_PROBABILITY.observe(float(frame.get("unrest_probability", 0.0)))
        else:
            for change in message.get("changes", []):
                PS_CLASS_CHANGES.labels(change.get("new_class", "unknown")).inc()
            for trend_class, n in message.get("class_counts", {}).items():
                PS_CLASS_MIX.labels(message.get("dataset_id", ""), trend_class).set(n)
    elif schema == "hotspot.v1":
        counts = {"hot": 0, "cold": 0}
        for area in message.get("areas", []):
            if area.get("status") != "gone" and area.get("sign") in counts:
                counts[area["sign"]] += 1
        for sign, n in counts.items():
            ACTIVE_DEFORMATION_AREAS.labels(message.get("dataset_id", ""), sign).set(n)
        if "delineated_areas" in message:  # absent: the U-Net did not run this time
            delineated = {"hot": 0, "cold": 0}
            for area in message["delineated_areas"]:
                if area.get("status") != "gone" and area.get("sign") in delineated:
                    delineated[area["sign"]] += 1
            for sign, n in delineated.items():
                DELINEATED_AREAS.labels(message.get("dataset_id", ""), sign).set(n)


def record_alert_revisions(
    revisions: Iterable[Mapping[str, Any]], published_at: Mapping[str, str]
) -> None:
    """Count revisions; observe publish-to-alert latency of raised alerts.

    ``published_at`` maps evidence ids (detection / hot-spot ids) to the producer's
    publication time of their input, where known.
    """
    for rev in revisions:
        ALERT_REVISIONS.labels(rev["rule"]["name"], rev["severity"], rev["transition"]).inc()
        if rev["transition"] != "raised":
            continue
        times = [published_at[e["id"]] for e in rev["evidence"] if e["id"] in published_at]
        latency = _seconds_between(max(times) if times else None, rev["sent_at"])
        if latency is not None:
            PUBLISH_TO_ALERT.labels(rev["hazard"]).observe(latency)


def record_alert_counts(counts: Mapping[tuple[str, str, str], int]) -> None:
    """Set the alerts gauge from ``(rule, severity, state) -> n`` (absent keys drop to 0)."""
    for labels in list(_known_alert_labels):
        if labels not in counts:
            ALERTS.labels(*labels).set(0)
    for labels, n in counts.items():
        ALERTS.labels(*labels).set(n)
        _known_alert_labels.add(labels)


_known_alert_labels: set[tuple[str, str, str]] = set()


def record_deliveries(delivered: int, retried: int, dead: int) -> None:
    WEBHOOK_DELIVERIES.labels("delivered").inc(delivered)
    WEBHOOK_DELIVERIES.labels("retried").inc(retried)
    WEBHOOK_DELIVERIES.labels("dead").inc(dead)


def record_delivery_queue(counts: Mapping[str, int]) -> None:
    for status in ("pending", "delivered", "dead"):
        WEBHOOK_QUEUE.labels(status).set(counts.get(status, 0))


def record_inference(model: str, backend: str, seconds: float, ok: bool) -> None:
    """The :mod:`pipelines.observe` hook for inference calls."""
    INFERENCE_SECONDS.labels(model, backend).observe(seconds)
    INFERENCE_REQUESTS.labels(model, backend, "ok" if ok else "error").inc()


def record_model(model: str, version: int, backend: str) -> None:
    """The model in use; also creates its circuit series (closed, no opens) if new."""
    MODEL_INFO.labels(model).info({"version": str(version), "backend": backend})
    # labels() alone creates a series at 0 without overwriting a state already reported.
    CIRCUIT_STATE.labels(model, backend)
    CIRCUIT_OPENS.labels(model, backend)


def record_circuit_state(model: str, backend: str, state: str) -> None:
    """The :mod:`pipelines.observe` hook for circuit-breaker transitions.

    Parameters
    ----------
    model, backend : str
        The model client whose circuit changed.
    state : {"closed", "half_open", "open"}
        The state entered; entering ``open`` also counts one opening.
    """
    CIRCUIT_STATE.labels(model, backend).set(CIRCUIT_STATE_CODES[state])
    if state == "open":
        CIRCUIT_OPENS.labels(model, backend).inc()


def now_utc() -> datetime:
    return datetime.now(UTC)
