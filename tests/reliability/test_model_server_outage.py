"""The model server goes down or turns slow while the daemon runs: nothing is lost.

The daemon calls the committed SavedModels through ``serving.local_server`` (TF-Serving's
gRPC API) on the session's embedded Kafka broker. While the server is unreachable, or
answers after the request deadline, the unrest model's circuit breaker opens after
``models.circuit_failure_threshold`` failed requests, passes fail fast and are retried by
the daemon, and no offset is committed: no detection, no dead letter, the records wait.
Once the server is back the next pass scores them all.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import metrics
from monitor.config import MonitorConfig, load_config
from monitor.daemon import Daemon
from monitor.publishing import interferogram_message, outgoing, publish
from pipelines.context import PipelineContext
from pipelines.kafka_io import consume_all, plan_pass
from serving.local_server import LocalServer, ServerConfig
from serving.signatures import UNREST_MODEL_NAME
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
MODEL_BASE = REPO / "serving" / "models"
THRESHOLD = 2
# Longer than the daemon's first backoffs (0.2, 0.4, 0.8 s): passes fail fast before a probe.
RESET_S = 3.0
pytestmark = pytest.mark.timeout(120)


# --- helpers ------------------------------------------------------------------------------
def _publish_frames(tmp_path: Path, config: MonitorConfig, n: int) -> None:
    """Publish ``n`` small (300x300) inflating interferograms of one frame."""
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    px = DEFAULT_PARAMS.pixel_m
    items = []
    for k in range(n):
        source = MogiSource(150 * px, -150 * px, depth=3000.0, volume_change=8e6)
        frame = generate_frame(np.random.default_rng(k), (300, 300), [source],
                               nuisance_scale=0.5)
        start = date(2024, 5, 1) + timedelta(days=12 * k)
        pair = f"{start:%Y%m%d}_{start + timedelta(days=12):%Y%m%d}"
        path = tmp_path / "products" / "124D_OUTAGE" / pair / f"{pair}.geo.diff_pha.tif"
        write_wrapped_phase_geotiff(path, frame.phase, frame.transform, crs="EPSG:4326")
        items.append(outgoing(interferogram_message(path)))
    topics = {"interferogram": config.topics.interferograms,
              "ps_update": config.topics.ps_updates}
    list(publish(items, PipelineContext.from_config(config).kafka, topics))


def _read(ctx: PipelineContext, topic: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in consume_all(ctx.kafka, topic)]


def _pending(ctx: PipelineContext) -> int:
    """Records of the input topics not committed by the daemon's group."""
    return sum(len(r) for r in plan_pass(ctx.kafka, ctx.input_topics))


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _circuit(name: str) -> float:
    return _sample(name, model=UNREST_MODEL_NAME, backend="grpc")


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _config(tmp_path: Path, bootstrap: str, target: str, **models: Any) -> MonitorConfig:
    path = isolated_config_file(
        tmp_path, bootstrap, backend="grpc", grpc_target=target, max_retries=1,
        circuit_failure_threshold=THRESHOLD, **models,
        sections={"alerts": {"enabled": False}},
    )
    return load_config(path, environ={})


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """The committed models over gRPC on a port that stays the same across restarts."""
    server = LocalServer(ServerConfig(MODEL_BASE, rest_port=None)).start()
    yield server
    server.stop()


def _restart(server: LocalServer, port: int) -> None:
    server.config.grpc_port = port
    server.start()


def _run_in_thread(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=daemon.run, name="daemon-under-test", daemon=True)
    thread.start()
    return thread


def _stop(daemon: Daemon, thread: threading.Thread) -> None:
    daemon.request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the daemon did not stop"


def _ready(config: MonitorConfig) -> None:
    """Start once with the server up: the models are loaded and checked (as in production)."""
    stats = Daemon(config).run(until_idle=True)
    assert stats.failed_passes == 0


def _outage_passes(
    config: MonitorConfig, caplog: pytest.LogCaptureFixture
) -> tuple[int, list[str]]:
    """Run the daemon until two passes failed on the open circuit; failed passes and errors."""
    daemon = Daemon(config)

    def errors() -> list[str]:
        return [r.error for r in caplog.records if isinstance(getattr(r, "error", None), str)]

    with caplog.at_level(logging.ERROR, logger="monitor.daemon"):
        thread = _run_in_thread(daemon)
        try:
            opened = _wait_until(lambda: sum("is open after" in e for e in errors()) >= 2, 45)
        finally:
            _stop(daemon, thread)
    assert opened, "passes did not fail fast on the open circuit"
    return daemon.stats.failed_passes, errors()


def _assert_nothing_lost_yet(ctx: PipelineContext) -> None:
    assert _read(ctx, ctx.detection_topic) == []
    assert _read(ctx, ctx.dlq_topic) == []
    assert _pending(ctx) == 3, "a failed pass must not commit its records"


def _assert_recovered(config: MonitorConfig, ctx: PipelineContext) -> float:
    """Run until idle with the server healthy again; the seconds it took."""
    start = time.monotonic()
    stats = Daemon(config).run(until_idle=True)
    took = time.monotonic() - start
    assert stats.records == 3
    detections = _read(ctx, ctx.detection_topic)
    assert len(detections) == 3
    assert {d["kind"] for d in detections} == {"interferogram_unrest"}
    assert _read(ctx, ctx.dlq_topic) == []
    assert _pending(ctx) == 0
    assert _circuit("insar_inference_circuit_state") == 0
    return took


# --- tests --------------------------------------------------------------------------------
def test_model_server_down_fails_passes_fast_commits_nothing_and_catches_up_when_back(
    tmp_path, kafka_broker, server, caplog  # noqa: F811
):
    port = server.grpc_port
    config = _config(tmp_path, kafka_broker.bootstrap, server.grpc_target, timeout_s=5.0,
                     circuit_reset_s=RESET_S)
    ctx = PipelineContext.from_config(config)
    _ready(config)
    server.stop()
    _publish_frames(tmp_path, config, 3)
    failed_before = _sample("insar_passes_total", outcome="failed")
    opens_before = _circuit("insar_inference_circuit_opens_total")
    errors_before = _sample("insar_inference_requests_total", model=UNREST_MODEL_NAME,
                            backend="grpc", outcome="error")

    failed_passes, errors = _outage_passes(config, caplog)

    _assert_nothing_lost_yet(ctx)
    assert failed_passes >= THRESHOLD + 2
    assert _sample("insar_passes_total", outcome="failed") - failed_before == failed_passes
    assert _circuit("insar_inference_circuit_opens_total") - opens_before >= 1
    assert _circuit("insar_inference_circuit_state") == 2
    # The first failures reached the server (UNAVAILABLE); the later passes did not.
    assert "StatusCode.UNAVAILABLE" in errors[0]
    # THRESHOLD failures open it; each failed half-open probe adds one (a loaded machine
    # lets the reset time pass between passes), so the count is at least THRESHOLD.
    opened_after = re.search(r"is open after (\d+) consecutive failures", errors[-1])
    assert opened_after and int(opened_after.group(1)) >= THRESHOLD, errors[-1]
    requests_failed = _sample("insar_inference_requests_total", model=UNREST_MODEL_NAME,
                              backend="grpc", outcome="error") - errors_before
    assert requests_failed < failed_passes, "an open circuit must keep passes off the server"

    _restart(server, port)
    _assert_recovered(config, ctx)


def test_slow_model_server_deadlines_open_the_circuit_and_nothing_is_lost_once_fast_again(
    tmp_path, kafka_broker, server, caplog, monkeypatch  # noqa: F811
):
    config = _config(tmp_path, kafka_broker.bootstrap, server.grpc_target, timeout_s=0.5,
                     circuit_reset_s=RESET_S)
    ctx = PipelineContext.from_config(config)
    _ready(config)
    # Test-only delay: every lookup of a servable (each Predict) answers after the deadline.
    slow = threading.Event()
    slow.set()
    registry = server.registry
    lookup = registry.get

    def slow_get(name: str, version: int | None) -> Any:
        if slow.is_set():
            time.sleep(1.5)
        return lookup(name, version)

    monkeypatch.setattr(registry, "get", slow_get)
    _publish_frames(tmp_path, config, 3)
    opens_before = _circuit("insar_inference_circuit_opens_total")

    failed_passes, errors = _outage_passes(config, caplog)

    _assert_nothing_lost_yet(ctx)
    assert failed_passes >= THRESHOLD + 2
    assert "StatusCode.DEADLINE_EXCEEDED" in errors[0]
    # THRESHOLD failures open it; each failed half-open probe adds one (a loaded machine
    # lets the reset time pass between passes), so the count is at least THRESHOLD.
    opened_after = re.search(r"is open after (\d+) consecutive failures", errors[-1])
    assert opened_after and int(opened_after.group(1)) >= THRESHOLD, errors[-1]
    assert "InferenceTimeoutError" in errors[-1]
    assert _circuit("insar_inference_circuit_opens_total") - opens_before >= 1
    assert _circuit("insar_inference_circuit_state") == 2

    slow.clear()
    _assert_recovered(config, ctx)
