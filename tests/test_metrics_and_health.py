"""The Prometheus metrics (names, labels, what each recording call counts) and the
/metrics, /healthz and /readyz endpoints, without a broker."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from prometheus_client import generate_latest

from monitor import metrics
from monitor.health import HealthServer, run_checks
from pipelines import observe
from pipelines.kafka_io import PartitionRange


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if got is None else got


def _families() -> set[str]:
    text = generate_latest(metrics.REGISTRY).decode()
    return set(re.findall(r"^# TYPE (insar_\S+)", text, flags=re.M))


def test_every_listed_metric_family_is_exposed_and_none_is_unlisted() -> None:
    # Families with labels appear once they have a series; give each one.
    metrics.record_model("unrest_detector", 1, "inprocess")
    metrics.record_lag("g", {("t", 0): 3})
    metrics.record_alert_counts({("r", "Minor", "firing"): 1})
    metrics.record_delivery_queue({})
    metrics.record_inference("m", "inprocess", 0.01, True)
    metrics.record_output({"schema": "hotspot.v1", "dataset_id": "d", "areas": []})
    metrics.record_output({"schema": "detection.v1", "kind": "ps_trend_change",
                           "dataset_id": "d", "class_counts": {"stable": 1},
                           "changes": [{"new_class": "linear"}]})
    metrics.record_output({"schema": "detection.v1", "kind": "interferogram_unrest",
                           "frame": {"unrest": True, "unrest_probability": 0.9}})
    metrics.record_alert_revisions([], {})
    metrics.record_deliveries(0, 0, 0)
    metrics.PRODUCTS_FAILED.labels("not_json")
    metrics.PASSES.labels("committed")
    metrics.PUBLISH_TO_DETECTION.labels("interferogram")
    metrics.PUBLISH_TO_ALERT.labels("volcanic_unrest")
    metrics.ALERT_REVISIONS.labels("r", "Minor", "raised")
    assert _families() == set(metrics.METRIC_NAMES)


def test_metric_names_follow_prometheus_conventions() -> None:
    for name in metrics.METRIC_NAMES:
        assert re.fullmatch(r"insar_[a-z0-9_]+", name), name
    counters = [m for m in metrics.REGISTRY.collect() if m.type == "counter"]
    assert counters and all(f"{m.name}_total" in metrics.METRIC_NAMES for m in counters
                            if m.name.startswith("insar_"))


def test_a_detection_counts_once_by_kind_and_decision_without_any_id_label() -> None:
    before = _value("insar_products_processed_total", {"kind": "interferogram"})
    unrest_before = _value("insar_frames_scored_total", {"decision": "unrest"})
    lat_before = _value("insar_publish_to_detection_seconds_count", {"kind": "interferogram"})
    detection = {
        "schema": "detection.v1", "kind": "interferogram_unrest",
        "detection_id": "unrest:P-UNIQUE-123:unrest_detector@v1", "product_id": "P-UNIQUE-123",
        "input_published_at": "2024-01-13T05:00:00Z", "produced_at": "2024-01-13T05:00:07Z",
        "frame": {"unrest": True, "unrest_probability": 0.93},
    }
    metrics.record_output(detection)
    assert _value("insar_products_processed_total", {"kind": "interferogram"}) == before + 1
    assert _value("insar_frames_scored_total", {"decision": "unrest"}) == unrest_before + 1
    assert _value(
        "insar_publish_to_detection_seconds_count", {"kind": "interferogram"}
    ) == lat_before + 1
    # 7 s latency lands in the le=10 bucket but not in le=5.
    assert _value("insar_publish_to_detection_seconds_bucket",
                  {"kind": "interferogram", "le": "10.0"}) >= 1
    assert "P-UNIQUE-123" not in generate_latest(metrics.REGISTRY).decode()


def test_a_producer_clock_ahead_of_the_daemon_records_no_negative_latency() -> None:
    before = _value("insar_publish_to_detection_seconds_count", {"kind": "ps_update"})
    metrics.record_output({
        "schema": "detection.v1", "kind": "ps_trend_change", "dataset_id": "d",
        "input_published_at": "2024-01-13T05:00:10Z", "produced_at": "2024-01-13T05:00:00Z",
        "class_counts": {}, "changes": [],
    })
    assert _value("insar_publish_to_detection_seconds_count", {"kind": "ps_update"}) == before


def test_hot_spots_set_the_active_area_gauge_per_sign_ignoring_gone_areas() -> None:
    metrics.record_output({
        "schema": "hotspot.v1", "dataset_id": "egms-x",
        "areas": [{"sign": "hot", "status": "new"}, {"sign": "hot", "status": "gone"},
                  {"sign": "cold", "status": "growing"}, {"sign": "cold", "status": "stable"}],
    })
    assert _value("insar_active_deformation_areas", {"dataset": "egms-x", "sign": "hot"}) == 1
    assert _value("insar_active_deformation_areas", {"dataset": "egms-x", "sign": "cold"}) == 2


def test_a_committed_pass_counts_messages_per_topic_and_dead_letters_by_reason() -> None:
    from pipelines.bounded import PassReport

    report = PassReport(
        [PartitionRange("topic-a", 0, 10, 14), PartitionRange("topic-a", 1, 0, 2)],
        1.5,
        {"tiles": 12, "ps_points_classified": 300, "dead_letter.not_json": 2},
    )

    consumed = _value("insar_messages_consumed_total", {"topic": "topic-a"})
    failed = _value("insar_products_failed_total", {"reason": "not_json"})
    tiles = _value("insar_tiles_scored_total")
    committed = _value("insar_passes_total", {"outcome": "committed"})
    metrics.record_pass(report)
    assert _value("insar_messages_consumed_total", {"topic": "topic-a"}) == consumed + 6
    assert _value("insar_products_failed_total", {"reason": "not_json"}) == failed + 2
    assert _value("insar_tiles_scored_total") == tiles + 12
    assert _value("insar_passes_total", {"outcome": "committed"}) == committed + 1
    assert time.time() - _value("insar_last_pass_timestamp_seconds") < 5


def test_raised_alert_latency_is_measured_from_its_newest_evidence() -> None:
    before = _value("insar_publish_to_alert_seconds_sum", {"hazard": "volcanic_unrest"})
    revision = {
        "rule": {"name": "unrest"}, "severity": "Severe", "transition": "raised",
        "hazard": "volcanic_unrest", "sent_at": "2024-02-06T10:00:30Z",
        "evidence": [{"id": "d1"}, {"id": "d2"}],
    }
    metrics.record_alert_revisions(
        [revision], {"d1": "2024-01-25T10:00:00Z", "d2": "2024-02-06T10:00:00Z"}
    )
    after = _value("insar_publish_to_alert_seconds_sum", {"hazard": "volcanic_unrest"})
    assert after - before == pytest.approx(30.0)


def test_alert_gauge_drops_to_zero_for_states_no_longer_present() -> None:
    metrics.record_alert_counts({("rule-z", "Severe", "firing"): 2})
    metrics.record_alert_counts({("rule-z", "Severe", "resolved"): 2})
    assert _value("insar_alerts", {"rule": "rule-z", "severity": "Severe", "state": "firing"}) == 0
    assert _value("insar_alerts",
                  {"rule": "rule-z", "severity": "Severe", "state": "resolved"}) == 2


def test_inference_hook_reaches_the_histogram_only_when_installed() -> None:
    labels = {"model": "hook-model", "backend": "grpc"}
    observe.set_inference_recorder(None)
    observe.inference("hook-model", "grpc", 0.2, True)
    assert _value("insar_inference_seconds_count", labels) == 0
    observe.set_inference_recorder(metrics.record_inference)
    try:
        observe.inference("hook-model", "grpc", 0.2, True)
        observe.inference("hook-model", "grpc", 0.3, False)
    finally:
        observe.set_inference_recorder(None)
    assert _value("insar_inference_seconds_count", labels) == 2
    assert _value("insar_inference_requests_total", {**labels, "outcome": "error"}) == 1


def test_checks_report_ok_reason_exception_and_timeout() -> None:
    def boom() -> str | None:
        raise ConnectionError("refused")

    results = run_checks(
        {"fine": lambda: None, "down": lambda: "broker unreachable", "boom": boom,
         "slow": lambda: time.sleep(2)},
        timeout_s=0.3,
    )
    assert results["fine"] == "ok"
    assert results["down"] == "broker unreachable"
    assert results["boom"] == "ConnectionError: refused"
    assert "no answer within 0.3 s" in results["slow"]


def test_health_server_serves_metrics_liveness_and_readiness() -> None:
    state = {"ready": False}
    server = HealthServer(
        "127.0.0.1", 0,
        {"models": lambda: None if state["ready"] else "models not loaded yet"},
        timeout_s=1,
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"] == {"models": "models not loaded yet"}
            state["ready"] = True
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            scraped = client.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain")
            assert "insar_passes_total" in scraped.text
            missing = client.get("/nope")
            assert missing.status_code == 404 and "/metrics" in json.loads(missing.text)["error"]
    finally:
        server.stop()


def test_a_busy_port_is_a_clear_start_up_error() -> None:
    first = HealthServer("127.0.0.1", 0, {})
    port = int(first.url.rsplit(":", 1)[1])
    try:
        with pytest.raises(RuntimeError, match=r"metrics\.port"):
            HealthServer("127.0.0.1", port, {})
    finally:
        first.stop()
