"""Small product factories and waits shared by the reliability tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from monitor.publishing import Outgoing, interferogram_message, outgoing, ps_update_message
from pipelines.kafka_io import KafkaSettings, consume_all


def write_frame(root: Path, k: int, *, seed: int, start: date = date(2024, 1, 1),
                volume: float = 8e6, frame_id: str | None = None) -> Path:
    """Write pair ``k`` (12-day pairs from ``start``) of a small (300x300) wrapped
    interferogram, inflating by a Mogi source of ``volume`` m3 (0: no deformation), as
    ``root[/frame_id]/<pair>/<pair>.geo.diff_pha.tif``; returns the path."""
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    px = DEFAULT_PARAMS.pixel_m
    source = MogiSource(150 * px, -150 * px, depth=3000.0, volume_change=volume)
    sources = [source] if volume else []
    frame = generate_frame(np.random.default_rng(seed), (300, 300), sources,
                           nuisance_scale=0.5)
    first = start + timedelta(days=12 * k)
    pair = f"{first:%Y%m%d}_{first + timedelta(days=12):%Y%m%d}"
    folder = root / frame_id if frame_id is not None else root
    path = folder / pair / f"{pair}.geo.diff_pha.tif"
    write_wrapped_phase_geotiff(path, frame.phase, frame.transform, crs="EPSG:4326")
    return path


def frame_product(root: Path, k: int, *, frame_id: str = "124D_REL", volume: float = 8e6,
                  volcano_id: str | None = "relvolcano") -> Outgoing:
    """The message of a small (300x300) inflating interferogram, pair ``k`` of a series."""
    path = write_frame(root, k, seed=100 + k, volume=volume, frame_id=frame_id)
    return outgoing(interferogram_message(path, frame_id=frame_id, volcano_id=volcano_id))


def ps_product(root: Path, k: int, *, n_points: int = 200, n_epochs: int = 30,
               dataset_id: str = "egms-rel", tile_id: str = "T1") -> Outgoing:
    """The message of PS update ``k``: ``n_epochs`` 12-day epochs after the previous update's."""
    from pipelines.egms_csv import write_egms_csv

    rng = np.random.default_rng(200 + k)
    first = date(2022, 1, 1) + timedelta(days=12 * n_epochs * k)
    dates = [first + timedelta(days=12 * i) for i in range(n_epochs)]
    t = np.array([(d - date(2022, 1, 1)).days / 365.25 for d in dates])
    velocity = np.linspace(-20, 20, n_points)
    disp = velocity[:, None] * t[None, :] + rng.normal(0, 1.0, (n_points, n_epochs))
    lon = 14.0 + np.linspace(0, 0.02, n_points)
    lat = 41.0 + np.linspace(0, 0.01, n_points)
    pids = np.array([f"P{i:05d}" for i in range(n_points)])
    path = write_egms_csv(root / dataset_id / tile_id / f"u{k}.csv", pids, lon, lat, dates, disp)
    return outgoing(ps_update_message(path, dataset_id=dataset_id, tile_id=tile_id,
                                      update_id=f"u{k}"))


def read_json(settings: KafkaSettings, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in consume_all(settings, topic)]


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()
