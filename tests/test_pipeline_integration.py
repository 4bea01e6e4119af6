"""The streaming spine against the real Kafka 0.9 broker: products in, detections out.

Each test uses its own topic names and consumer group on the session's broker, runs the
daemon's bounded passes for real (FnApiRunner, in-process models, Zarr PS store, SQLite
ledger) and reads what reached the broker with an independent consumer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.publishing import Outgoing, interferogram_message, outgoing, publish
from pipelines.context import PipelineContext
from pipelines.kafka_io import consume_all, plan_pass
from pipelines.raster_io import write_wrapped_phase_geotiff
from pipelines.transforms import FAULT_EXIT_AFTER_PUBLISH
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def _config(tmp_path: Path, bootstrap: str):
    path = isolated_config_file(tmp_path, bootstrap)
    return load_config(path, environ={}), path


def _topics(config) -> dict[str, str]:
    return {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}


def _frame(tmp_path: Path, name: str, *, volume: float, seed: int, crs: str = "EPSG:4326"):
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    shape = (300, 300)
    px = DEFAULT_PARAMS.pixel_m
    sources = (
        [MogiSource(150 * px, -150 * px, depth=3000.0, volume_change=volume)] if volume else []
    )
    frame = generate_frame(np.random.default_rng(seed), shape, sources, nuisance_scale=0.5)
    start = date(2024, 3, 1) + timedelta(days=12 * seed)
    pair = f"{start:%Y%m%d}_{start + timedelta(days=12):%Y%m%d}"
    path = tmp_path / "products" / name / pair / f"{pair}.geo.diff_pha.tif"
    write_wrapped_phase_geotiff(path, frame.phase, frame.transform, crs=crs)
    return path


def _ps_update(tmp_path: Path, name: str, start: date, n_epochs: int, seed: int, slope_mm_yr):
    """An EGMS CSV of ``n_epochs`` 12-day epochs from ``start`` for 30 linear-trend points."""
    from pipelines.egms_csv import write_egms_csv

    rng = np.random.default_rng(seed)
    dates = [start + timedelta(days=12 * k) for k in range(n_epochs)]
    t_years = np.array([(d - date(2023, 1, 1)).days / 365.25 for d in dates])
    n = 30
    pids = np.array([f"P{i:03d}" for i in range(n)])
    disp = slope_mm_yr[:, None] * t_years[None, :] + rng.normal(0, 1.0, (n, n_epochs))
    lon = 14.0 + np.linspace(0, 0.01, n)
    lat = np.full(n, 41.0)
    return write_egms_csv(
        tmp_path / "products" / "egms" / "T1" / f"{name}.csv", pids, lon, lat, dates, disp
    )


def _read(config, topic: str) -> list[dict]:
    settings = PipelineContext.from_config(config).kafka
    return [json.loads(r.value) for r in consume_all(settings, topic)]


def test_products_and_updates_become_detections_and_bad_input_is_dead_lettered(
    tmp_path, kafka_broker  # noqa: F811
):
    config, _ = _config(tmp_path, kafka_broker.bootstrap)
    ctx = PipelineContext.from_config(config)
    inflating = _frame(tmp_path, "124D_05291_081406", volume=8e6, seed=1)
    quiet = _frame(tmp_path, "124D_05291_081406", volume=0.0, seed=2)
    utm = _frame(tmp_path, "022A_00001_000001", volume=0.0, seed=3, crs="EPSG:32633")
    missing = interferogram_message(quiet, product_id="gone", checksum=False)
    missing = outgoing(
        type(missing)(**{**missing.__dict__, "wrapped_phase": type(missing.wrapped_phase)(
            uri=(tmp_path / "nope.tif").as_uri())})
    )
    from monitor.publishing import ps_update_message

    slopes = np.linspace(-20, 20, 30)
    first = _ps_update(tmp_path, "u1", date(2023, 1, 1), 40, 1, slopes)
    items = [
        outgoing(interferogram_message(inflating)),
        outgoing(interferogram_message(quiet)),
        outgoing(interferogram_message(utm)),
        missing,
        outgoing(ps_update_message(first, dataset_id="egms", tile_id="T1")),
        Outgoing("interferogram", "junk", b"{this is not json", date(2024, 1, 1), "junk"),
        Outgoing("ps_update", "junk", b'{"schema": "ps_update.v1"}', date(2024, 1, 1), "bad"),
    ]
    list(publish(items, ctx.kafka, _topics(config)))

    stats = Daemon(config).run(until_idle=True)
    assert stats.passes >= 1 and stats.failed_passes == 0

    detections = _read(config, config.topics.detections)
    by_kind = Counter(d["kind"] for d in detections)
    assert by_kind == {"interferogram_unrest": 2, "ps_trend_change": 1}
    frames = {d["product_id"]: d for d in detections if d["kind"] == "interferogram_unrest"}
    strong = frames[interferogram_message(inflating).product_id]
    assert strong["frame"]["unrest"] is True
    assert strong["frame"]["tiles"], "an unrest frame reports the tiles that fired"
    assert strong["model"] == {"name": "unrest_detector", "version": 1}
    assert strong["event_time"] == strong["secondary_date"]
    ps = next(d for d in detections if d["kind"] == "ps_trend_change")
    assert ps["n_points_classified"] == 30 and ps["n_points_skipped"] == 0
    assert sum(ps["class_counts"].values()) == 30
    # First classification: every point is new, so every point is a change from None.
    assert len(ps["changes"]) == 30
    assert all(c["previous_class"] is None for c in ps["changes"])

    dead = {d["reason"]: d for d in _read(config, config.topics.dlq)}
    assert set(dead) == {"not_json", "schema_error", "not_found", "wrong_crs"}
    assert dead["not_json"]["original"] == "{this is not json"
    assert dead["wrong_crs"]["stage"] == "fetch"
    assert all(d["error"] for d in dead.values())

    # Everything was committed: the next pass has nothing to read.
    assert plan_pass(ctx.kafka, ctx.input_topics) == []
    # The archive holds one file per detection, and a quicklook for the unrest frame.
    archive = config.storage.archive_path()
    assert len(list((archive / "interferogram_unrest").glob("*.json"))) == 2
    assert list((archive / "interferogram_unrest").glob("*.png"))

    # The PS update also produced the dataset's rolling hot spots, with their products on disk.
    (hot,) = _read(config, config.topics.hotspots)
    assert hot["schema"] == "hotspot.v1" and hot["dataset_id"] == "egms"
    assert hot["summary"]["n_points"] == 30
    assert [t["update_id"] for t in hot["triggered_by"]] == ["u1"]
    assert Path(hot["products"]["map_png"].removeprefix("file://")).is_file()

    # A later update: the store keeps the whole series and reports class changes against it.
    second = _ps_update(tmp_path, "u2", date(2023, 1, 1) + timedelta(days=480), 10, 2, slopes)
    list(publish([outgoing(ps_update_message(second, dataset_id="egms", tile_id="T1"))],
                 ctx.kafka, _topics(config)))
    Daemon(config).run(until_idle=True)
    ps2 = [d for d in _read(config, config.topics.detections) if d.get("update_id") == "u2"]
    assert len(ps2) == 1
    before = {c["pid"]: c["new_class"] for c in ps["changes"]}
    for change in ps2[0]["changes"]:
        assert change["previous_class"] == before[change["pid"]]
        assert change["new_class"] != change["previous_class"]
    hotspots = _read(config, config.topics.hotspots)
    assert len(hotspots) == 2 and hotspots[1]["triggered_by"][0]["update_id"] == "u2"
    from pipelines.ps_store import PSStore

    series = PSStore(config.storage.ps_store_path()).read_series("egms", "T1")
    assert series is not None and series.displacement_mm.shape == (30, 50)


def _daemon_process(config_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli.main", "run", "--config", str(config_path),
         "--until-idle", "--log-level", "INFO"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )


def test_crash_after_publishing_then_restart_emits_every_detection_exactly_once(
    tmp_path, kafka_broker  # noqa: F811
):
    config, config_path = _config(tmp_path, kafka_broker.bootstrap)
    ctx = PipelineContext.from_config(config)
    paths = [_frame(tmp_path, "124D_05291_081406", volume=6e6 * (k % 2), seed=10 + k)
             for k in range(4)]
    slopes = np.linspace(-15, 15, 30)
    csv = _ps_update(tmp_path, "u1", date(2023, 1, 1), 30, 5, slopes)
    from monitor.publishing import ps_update_message

    items = [outgoing(interferogram_message(p)) for p in paths]
    items.append(outgoing(ps_update_message(csv, dataset_id="egms", tile_id="T1")))
    items.append(Outgoing("interferogram", "junk", b"not json at all", date(2024, 1, 1), "junk"))
    list(publish(items, ctx.kafka, _topics(config)))

    # The daemon dies (like SIGKILL) right after the broker acknowledged its first outputs,
    # before the ledger or the offsets know about them.
    crashed = _daemon_process(config_path, {FAULT_EXIT_AFTER_PUBLISH: "86"})
    assert crashed.returncode == 86, crashed.stderr[-3000:]
    published_before_restart = _read(config, config.topics.detections) + _read(
        config, config.topics.dlq
    )
    assert published_before_restart, "the crash must come after some outputs were published"
    assert plan_pass(ctx.kafka, ctx.input_topics), "nothing may be committed by a crashed pass"

    restarted = _daemon_process(config_path, {})
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    detections = _read(config, config.topics.detections)
    ids = [d["detection_id"] for d in detections]
    assert len(ids) == len(set(ids)), f"duplicate detections: {Counter(ids).most_common(3)}"
    assert len(ids) == 5  # 4 frames + 1 PS update
    dead = _read(config, config.topics.dlq)
    assert [d["dead_letter_id"] for d in dead] == [dead[0]["dead_letter_id"]]
    assert plan_pass(ctx.kafka, ctx.input_topics) == []


def test_sigterm_during_a_pass_finishes_and_commits_it_then_exits_cleanly(
    tmp_path, kafka_broker  # noqa: F811
):
    import signal
    import time

    config, config_path = _config(tmp_path, kafka_broker.bootstrap)
    ctx = PipelineContext.from_config(config)
    paths = [_frame(tmp_path, "124D_05291_081406", volume=0.0, seed=20 + k) for k in range(6)]
    list(publish([outgoing(interferogram_message(p)) for p in paths], ctx.kafka,
                 _topics(config)))

    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli.main", "run", "--config", str(config_path),
         "--log-level", "INFO"],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"pass started"' in line:
                break
            assert time.monotonic() < deadline, "the daemon never started a pass"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)  # drains the pipes so logging never blocks the daemon
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    # The pass that was running when the signal came was finished and committed.
    ids = [d["detection_id"] for d in _read(config, config.topics.detections)]
    assert len(ids) == 6 == len(set(ids))
    assert plan_pass(ctx.kafka, ctx.input_topics) == []
