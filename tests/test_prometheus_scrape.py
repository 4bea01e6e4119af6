"""A real Prometheus server (Debian's package) scrapes a running daemon.

The daemon processes a product and a PS update from the real Kafka broker; Prometheus
scrapes its /metrics every second; the test asks Prometheus's HTTP API for the series an
operator's dashboards and alerting rules read.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.publishing import interferogram_message, outgoing, ps_update_message, publish
from pipelines.context import PipelineContext
from pipelines.raster_io import write_wrapped_phase_geotiff
from tests.environment import free_port, unavailable
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401

pytestmark = pytest.mark.timeout(300)


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        unavailable("the prometheus server is not installed: run `make system-deps`")
    return path


def _products(tmp_path: Path) -> list:
    from pipelines.egms_csv import write_egms_csv
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    px = DEFAULT_PARAMS.pixel_m
    frame = generate_frame(np.random.default_rng(1), (300, 300),
                           [MogiSource(150 * px, -150 * px, depth=3000.0, volume_change=8e6)],
                           nuisance_scale=0.5)
    tif = tmp_path / "p" / "20240301_20240313" / "20240301_20240313.geo.diff_pha.tif"
    write_wrapped_phase_geotiff(tif, frame.phase, frame.transform, crs="EPSG:4326")
    rng = np.random.default_rng(2)
    dates = [date(2023, 1, 1) + timedelta(days=12 * k) for k in range(30)]
    t = np.array([(d - dates[0]).days / 365.25 for d in dates])
    disp = np.linspace(-15, 15, 20)[:, None] * t[None, :] + rng.normal(0, 1, (20, 30))
    csv = write_egms_csv(tmp_path / "p" / "u1.csv", np.array([f"P{i}" for i in range(20)]),
                         14.0 + np.linspace(0, 0.01, 20), np.full(20, 41.0), dates, disp)
    return [outgoing(interferogram_message(tif, volcano_id="v")),
            outgoing(ps_update_message(csv, dataset_id="egms", tile_id="T1"))]


def _query(client: httpx.Client, expr: str) -> list[dict]:
    reply = client.get("/api/v1/query", params={"query": expr})
    reply.raise_for_status()
    return reply.json()["data"]["result"]


def test_prometheus_scrapes_the_daemon_and_finds_its_pipeline_series(
    tmp_path, kafka_broker  # noqa: F811
):
    binary = _prometheus_binary()
    config = load_config(isolated_config_file(tmp_path, kafka_broker.bootstrap), environ={})
    ctx = PipelineContext.from_config(config)
    topics = {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}
    list(publish(_products(tmp_path), ctx.kafka, topics))

    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    prometheus = None
    try:
        deadline = time.monotonic() + 60
        while daemon.health is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.health is not None, "the daemon did not start its metrics server"
        target = daemon.health.url.removeprefix("http://")

        port = free_port()
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "insar-monitor", "static_configs": [{"targets": [target]}]}
            ],
        }))
        log = (tmp_path / "prometheus.log").open("w")
        prometheus = subprocess.Popen(
            [binary, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wanted = {
            "up": 'up{job="insar-monitor"} == 1',
            "consumed": f'insar_messages_consumed_total{{topic="{config.topics.interferograms}"}}'
                        " >= 1",
            "frames": "sum(insar_frames_scored_total) >= 1",
            "tiles": "insar_tiles_scored_total > 0",
            "series": "insar_ps_series_classified_total >= 20",
            "inference": 'insar_inference_seconds_count{model="unrest_detector"} > 0',
            "latency": 'insar_publish_to_detection_seconds_count{kind="interferogram"} >= 1',
            "model": 'insar_model_info{model="ps_trend_classifier", version="1"}',
            "lag": f'insar_consumer_lag_messages{{topic="{config.topics.interferograms}"}} == 0',
            "passes": 'insar_passes_total{outcome="committed"} >= 1',
        }
        found: dict[str, list] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(found) < len(wanted):
                for name, expr in wanted.items():
                    if name in found:
                        continue
                    try:
                        result = _query(client, expr)
                    except httpx.HTTPError:
                        break  # Prometheus still starting
                    if result:
                        found[name] = result
                time.sleep(1)
        missing = sorted(set(wanted) - set(found))
        assert not missing, (
            f"Prometheus never saw: {[wanted[m] for m in missing]}; its log: "
            f"{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        )
        # The scraped target is the daemon itself, identified by the job label.
        assert found["up"][0]["metric"]["instance"] == target
    finally:
        daemon.request_stop()
        thread.join(timeout=120)
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
