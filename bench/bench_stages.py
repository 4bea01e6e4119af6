"""Per-stage throughput, each stage next to a baseline measured in the same run.

Stages (``--stages``, all by default):

``tiling``
    :func:`pipelines.tiling.tile_frame` on a ``--frame-size`` square frame (224-px tiles,
    56-px overlap, as the pipeline) against a naive pure-Python double loop over the
    pixels of each tile (the frame converted to lists once, included in its time).
``unrest``
    ``--unrest-tiles`` 224x224 tiles through the unrest model: (a) the pipeline's
    :class:`pipelines.model_handlers.UnrestModelHandler` ``run_inference`` on batches of
    ``pipeline.unrest_batch_size`` with the endpoint's cached client
    (:meth:`pipelines.model_endpoint.ModelEndpoint.load`), and (b) a whole Beam pipeline on
    FnApiRunner (the daemon's options) feeding ``RunInference(KeyedModelHandler(...))`` from
    a ``.npy`` file, against the raw model call:
    :class:`serving.clients.InProcessInferenceClient` ``predict`` on the same batches.
``trend``
    ``--trend-series`` PS series of ``--trend-epochs`` epochs, the same three ways, in
    chunks of ``pipeline.trend_batch_size`` series (the pipeline's ``SeriesExample``).
``gistar``
    :func:`pipelines.hotspots.gistar.gi_star` against ``esda.G_Local`` (libpysal
    ``DistanceBand`` weights built in its time; velocities shifted non-negative for esda,
    pysal/esda#112) and against a naive per-point loop (numpy distances from each point to
    all, only at the smallest size). Points uniform in a square sized for ~9.5 neighbours
    within the 150 m band.
``alerts``
    :func:`monitor.alerts.engine.evaluate` folding ``--alert-obs`` observations per place
    over ``--alert-places`` places one at a time (the alert stage's way) against a naive
    engine that, for every new observation, re-evaluates the place's whole history from
    an empty state. Both must make the same transitions (checked).
``e2e``
    One interferogram (``--e2e-shape``, a Mogi source: a detection with its quicklook)
    published on the embedded Kafka broker, until an independent consumer sees its
    detection; median of ``--e2e-n``. Two ways: the daemon running (``Daemon.run`` in a
    thread, polling every ``pipeline.poll_interval_s``), and a pass started right after the
    publish (``Daemon.run_once``, no poll wait). Baseline: scoring the same file in-process
    without broker or Beam (:func:`monitor.scoring.score_interferograms`: read, tile, model,
    decide).

Timings are the best of ``--repeats`` unless said otherwise (the naive baselines and esda
run once). Prints one table (stage, ours, baseline, ratio = ours / baseline as a rate,
units) and the command. Models are the committed ones (``models.model_base``).

Examples
--------
::

    .venv/bin/python bench/bench_stages.py
    .venv/bin/python bench/bench_stages.py --stages tiling,gistar,alerts --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_stages")

STAGES = ("tiling", "unrest", "trend", "gistar", "alerts", "e2e")


@dataclass(frozen=True)
class Row:
    """One line of the table: two rates (or latencies) of the same work."""

    stage: str
    ours: float
    baseline: float
    units: str
    ours_what: str
    baseline_what: str
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times better ours is (rates: ours / baseline; latencies: inverse)."""
        if self.higher_is_better:
            return self.ours / self.baseline
        return self.baseline / self.ours


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(best seconds, last result) of ``repeats`` calls."""
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def default_config(**environ: str) -> Any:
    from monitor.config import load_config

    return load_config(environ=dict(environ))


# --------------------------------------------------------------------------- tiling
def naive_tile_frame(
    phase: np.ndarray, size: int, overlap: int, min_valid_fraction: float
) -> list[tuple[int, int, float, list[list[float]]]]:
    """The same tiling in pure Python: every pixel of every tile copied and tested."""
    rows, cols = phase.shape
    stride = size - overlap
    grid = phase.tolist()

    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        out, s = [], 0
        while s < length - size:
            out.append(s)
            s += stride
        out.append(length - size)
        return out

    tiles = []
    for r0 in starts(rows):
        for c0 in starts(cols):
            data, finite = [], 0
            for i in range(size):
                src = grid[r0 + i]
                line = []
                for j in range(size):
                    v = src[c0 + j]
                    if v == v:  # not NaN
                        finite += 1
                    line.append(v)
                data.append(line)
            frac = finite / (size * size)
            if frac >= min_valid_fraction and frac > 0.0:
                tiles.append((r0, c0, frac, data))
    return tiles


def stage_tiling(args: argparse.Namespace) -> list[Row]:
    from pipelines.tiling import tile_frame

    rng = np.random.default_rng(args.seed)
    n = args.frame_size
    phase = rng.uniform(-np.pi, np.pi, (n, n)).astype(np.float32)
    phase[: n // 5, : n // 3] = np.nan  # a no-data corner (sea, layover), as in real frames
    phase[rng.random(phase.shape) < 0.05] = np.nan  # scattered decorrelation
    ours_s, tiles = best_of(lambda: tile_frame(phase, 224, 56, 0.1), args.repeats)
    logger.info("tiling: ours %.3f s for %d tiles; naive loop ...", ours_s, len(tiles))
    t = time.perf_counter()
    naive = naive_tile_frame(phase, 224, 56, 0.1)
    naive_s = time.perf_counter() - t
    if len(naive) != len(tiles) or not all(
        (a.row0, a.col0) == (b[0], b[1]) and np.array_equal(a.data, np.array(b[3], np.float32),
                                                            equal_nan=True)
        for a, b in zip(tiles, naive, strict=True)
    ):
        raise RuntimeError("naive tiling disagrees with pipelines.tiling.tile_frame")
    return [Row(
        f"tiling {n}x{n} frame -> {len(tiles)} tiles 224 px", len(tiles) / ours_s,
        len(naive) / naive_s, "tiles/s", "tile_frame", "Python double loop",
        note=f"ours {ours_s * 1000:.1f} ms/frame, naive {naive_s:.1f} s/frame",
    )]


# --------------------------------------------------------------------------- models
def raw_client(config: Any, model_name: str) -> Any:
    """A separate in-process client of the version the pipeline serves."""
    from pipelines.model_endpoint import ModelEndpoint
    from serving.clients.inprocess import InProcessInferenceClient

    version = ModelEndpoint.from_config(config, model_name).load().version
    version_dir = Path(config.models.model_base) / model_name / str(version)
    return InProcessInferenceClient.from_version_dir(version_dir)


class _NpyRows:
    """A FlatMap body: keyed tiles, or ``SeriesExample`` chunks, read from ``.npy`` files."""

    def __init__(self, paths: dict[str, str], rows_per_element: int, example: str) -> None:
        self.paths, self.rows, self.example = paths, rows_per_element, example
        self._data: dict[str, np.ndarray] | None = None

    def __call__(self, index: int):
        from pipelines.model_handlers import SeriesExample

        if self._data is None:  # memory-mapped once per worker copy (page cache: fast)
            self._data = {k: np.load(v, mmap_mode="r") for k, v in self.paths.items()}
        data = self._data
        s = slice(index * self.rows, (index + 1) * self.rows)
        if self.example == "tile":
            for i in range(s.start, min(s.stop, len(data["phase"]))):
                yield (i, np.array(data["phase"][i]))
        else:
            yield (index, SeriesExample(np.array(data["displacement_mm"][s]),
                                        np.array(data["time_days"][s])))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


def save_npy(root: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    out = {}
    for name, a in arrays.items():
        path = root / f"{name}.npy"
        np.save(path, a)
        out[name] = str(path)
    return out


def beam_run_inference(
    handler: Any, paths: dict[str, str], elements: int, rows_per_element: int, example: str
) -> int:
    """One FnApiRunner pipeline (the daemon's options): rows -> RunInference; results."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from pipelines.bounded import bounded_options

    p = beam.Pipeline(options=bounded_options())
    _ = (
        p
        | beam.Create(list(range(elements)))
        | beam.FlatMap(_NpyRows(paths, rows_per_element, example))
        | RunInference(KeyedModelHandler(handler))
        | beam.Map(_count_result)
    )
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("results"))["counters"]
    return sum(int(c.committed) for c in counters)


def _count_result(element: Any) -> None:
    import apache_beam as beam

    beam.metrics.Metrics.counter("bench_stages", "results").inc()


def model_rows(
    stage: str,
    n: int,
    unit: str,
    inputs: dict[str, np.ndarray],
    batch: int,
    raw: Any,
    handler_call: Callable[[], int],
    beam_call: Callable[[], int],
    beam_results: int,
    repeats: int,
    what: str,
) -> list[Row]:
    def raw_all() -> int:
        done = 0
        for s in range(0, n, batch):
            raw.predict({k: v[s : s + batch] for k, v in inputs.items()})
            done += min(batch, n - s)
        return done

    raw.predict({k: v[:batch] for k, v in inputs.items()})  # warm-up
    handler_call()
    raw_s, _ = best_of(raw_all, repeats)
    handler_s, got = best_of(handler_call, repeats)
    if got != n:
        raise RuntimeError(f"{stage} handler returned {got} results for {n} inputs")
    beam_call()  # warm-up (Beam's first pipeline imports and caches a lot)
    beam_s, got = best_of(beam_call, repeats)
    if got != beam_results:
        raise RuntimeError(f"{stage}: the Beam pipeline returned {got} results, "
                           f"expected {beam_results}")
    raw_what = f"InProcessInferenceClient.predict, {batch}/request"
    return [
        Row(f"{stage}: {what}, handler.run_inference", n / handler_s, n / raw_s, unit,
            "model handler", raw_what),
        Row(f"{stage}: {what}, Beam RunInference pass", n / beam_s, n / raw_s, unit,
            "FnApiRunner pipeline (incl. ~fixed start-up)", raw_what,
            note=f"Beam pass {beam_s:.2f} s vs raw {raw_s:.2f} s"),
    ]


def stage_unrest(args: argparse.Namespace, root: Path) -> list[Row]:
    from pipelines.model_endpoint import ModelEndpoint
    from pipelines.model_handlers import UnrestModelHandler
    from serving.signatures import UNREST_MODEL_NAME

    config = default_config()
    batch = config.pipeline.unrest_batch_size
    endpoint = ModelEndpoint.from_config(config, UNREST_MODEL_NAME)
    loaded = endpoint.load()
    raw = raw_client(config, UNREST_MODEL_NAME)
    rng = np.random.default_rng(args.seed + 1)
    n = args.unrest_tiles
    phase = rng.uniform(-np.pi, np.pi, (n, 224, 224)).astype(np.float32)
    phase[:, :40, :] = np.nan
    paths = save_npy(root, {"phase": phase})
    handler = UnrestModelHandler(endpoint, batch)

    def handler_all() -> int:
        done = 0
        for s in range(0, n, batch):
            done += len(handler.run_inference(list(phase[s : s + batch]), loaded))
        return done

    return model_rows(
        "unrest", n, "tiles/s", {"phase": phase}, batch, raw, handler_all,
        lambda: beam_run_inference(UnrestModelHandler(endpoint, batch), paths, (n + 63) // 64,
                                   64, "tile"),
        n, args.repeats, f"{n} tiles",
    )


def stage_trend(args: argparse.Namespace, root: Path) -> list[Row]:
    from pipelines.model_endpoint import ModelEndpoint
    from pipelines.model_handlers import SeriesExample, TrendModelHandler
    from serving.signatures import TREND_CLASSES, TREND_MODEL_NAME
    from serving.synthetic.ps_series import PSSeriesParams, generate_ps_series

    config = default_config()
    chunk = config.pipeline.trend_batch_size
    endpoint = ModelEndpoint.from_config(config, TREND_MODEL_NAME)
    loaded = endpoint.load()
    raw = raw_client(config, TREND_MODEL_NAME)
    rng = np.random.default_rng(args.seed + 2)
    n, t = args.trend_series, args.trend_epochs
    days = np.arange(t, dtype=float) * 12.0
    pool = np.stack([
        generate_ps_series(i % len(TREND_CLASSES), rng, PSSeriesParams(), time_days=days)[1]
        for i in range(min(n, 1000))
    ]).astype(np.float32)
    disp = pool[rng.integers(0, len(pool), n)] + rng.normal(0, 0.5, (n, t)).astype(np.float32)
    time_days = np.broadcast_to(days.astype(np.float32), (n, t)).copy()
    paths = save_npy(root, {"displacement_mm": disp, "time_days": time_days})
    handler = TrendModelHandler(endpoint, 16)  # 16 examples per request, as ClassifyPSUpdates
    examples = [SeriesExample(disp[s : s + chunk], time_days[s : s + chunk])
                for s in range(0, n, chunk)]

    def handler_all() -> int:
        done = 0
        for s in range(0, len(examples), 16):
            done += sum(len(r.inference) for r in handler.run_inference(examples[s : s + 16],
                                                                         loaded))
        return done

    return model_rows(
        "trend", n, "series/s", {"displacement_mm": disp, "time_days": time_days}, chunk, raw,
        handler_all,
        lambda: beam_run_inference(TrendModelHandler(endpoint, 16), paths, len(examples), chunk,
                                   "series"),
        len(examples), args.repeats, f"{n} series x {t} epochs",
    )


# --------------------------------------------------------------------------- Gi*
def gistar_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points (~9.5 neighbours in 150 m) with signed velocities and subsidence bowls."""
    rng = np.random.default_rng([seed, n])
    side = 50_000.0 * np.sqrt(n / 300_000.0)
    xy = rng.uniform(0.0, side, (n, 2))
    v = rng.normal(-1.5, 3.0, n)
    for centre in rng.uniform(0.0, side, (max(1, n // 2000), 2)):
        v[np.hypot(*(xy - centre).T) < 200.0] -= 30.0
    return xy, v


def naive_gi_star(xy: np.ndarray, v: np.ndarray, distance: float) -> np.ndarray:
    """Gi* z per point by a loop over points (distances from each point to all others)."""
    n = len(v)
    mean, s = v.mean(), v.std()
    z = np.empty(n)
    d2 = distance * distance
    for i in range(n):
        near = ((xy - xy[i]) ** 2).sum(axis=1) <= d2
        w = near.sum()
        num = v[near].sum() - mean * w
        den = s * np.sqrt((n * w - w * w) / (n - 1))
        z[i] = num / den if den > 0 else 0.0
    return z


def esda_gi_star(xy: np.ndarray, v: np.ndarray, distance: float) -> np.ndarray:
    import warnings

    import esda
    import libpysal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = libpysal.weights.DistanceBand(xy, distance, binary=True, silence_warnings=True)
        g = esda.G_Local(v - v.min() + 1.0, w, transform="B", star=True, permutations=0)
    return np.asarray(g.Zs)


def stage_gistar(args: argparse.Namespace) -> list[Row]:
    from pipelines.hotspots.gistar import gi_star

    rows = []
    sizes = [int(s) for s in args.gistar_sizes.split(",") if s]
    esda_gi_star(*gistar_points(200, args.seed), 150.0)  # imports libpysal and esda, untimed
    for k, n in enumerate(sizes):
        xy, v = gistar_points(n, args.seed)
        ours_s, res = best_of(lambda xy=xy, v=v: gi_star(xy, v, 150.0), args.repeats)
        t = time.perf_counter()
        z_esda = esda_gi_star(xy, v, 150.0)
        esda_s = time.perf_counter() - t
        diff = float(np.max(np.abs(res.z - z_esda)))
        w_mean = float(res.n_neighbours.mean())
        rows.append(Row(
            f"Gi* {n:,} points (mean W_i {w_mean:.1f})", n / ours_s, n / esda_s, "points/s",
            "gi_star", "esda.G_Local + DistanceBand", note=f"max |dz| {diff:.1e}",
        ))
        if k == 0:
            t = time.perf_counter()
            z_naive = naive_gi_star(xy, v, 150.0)
            naive_s = time.perf_counter() - t
            diff = float(np.max(np.abs(res.z - z_naive)))
            rows.append(Row(
                f"Gi* {n:,} points (mean W_i {w_mean:.1f})", n / ours_s, n / naive_s,
                "points/s", "gi_star", "per-point loop", note=f"max |dz| {diff:.1e}",
            ))
    return rows


# --------------------------------------------------------------------------- alerts
def alert_observations(places: int, per_place: int, seed: int) -> list[Any]:
    """Unrest probabilities per volcano: a slow random walk in [0, 1], interleaved in time."""
    from monitor.alerts.observations import Observation

    rng = np.random.default_rng(seed)
    level = rng.uniform(0.0, 0.6, places)
    day0 = date(2024, 1, 1)
    obs = []
    for k in range(per_place):
        level = np.clip(level + rng.normal(0.0, 0.15, places), 0.0, 1.0)
        for p in range(places):
            obs.append(Observation(
                rule="unrest", place_key=f"volcano:V{p:03d}", place_name=f"Volcano {p}",
                obs_id=f"det-{p:03d}-{k:05d}", event_time=day0 + timedelta(days=6 * k),
                value=float(level[p]), labels={"volcano_id": f"V{p:03d}", "scope": "volcano"},
            ))
    return obs


def stage_alerts(args: argparse.Namespace) -> list[Row]:
    from monitor.alerts.engine import evaluate
    from monitor.alerts.rule_config import UnrestRule

    rule = UnrestRule(name="unrest", kind="unrest")
    obs = alert_observations(args.alert_places, args.alert_obs, args.seed)

    def incremental() -> list[tuple[str, str]]:
        states: dict[str, Any] = {}
        out = []
        for o in obs:
            states[o.place_key], tr = evaluate(rule, states.get(o.place_key), o)
            if tr is not None:
                out.append((o.obs_id, tr.kind))
        return out

    def naive() -> list[tuple[str, str]]:
        history: dict[str, list[Any]] = {}
        out = []
        for o in obs:
            h = history.setdefault(o.place_key, [])
            h.append(o)
            state, tr = None, None
            for past in h:
                state, tr = evaluate(rule, state, past)
            if tr is not None:
                out.append((o.obs_id, tr.kind))
        return out

    ours_s, ours = best_of(incremental, args.repeats)
    t = time.perf_counter()
    base = naive()
    naive_s = time.perf_counter() - t
    if ours != base:
        raise RuntimeError("the naive re-evaluation made different transitions")
    n = len(obs)
    return [Row(
        f"alert engine: {args.alert_places} places x {args.alert_obs} observations",
        n / ours_s, n / naive_s, "observations/s", "engine.evaluate (fold)",
        "re-evaluate full history", note=f"{len(ours)} transitions, identical",
    )]


# --------------------------------------------------------------------------- end to end
def stage_e2e(args: argparse.Namespace, root: Path) -> list[Row]:
    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.embedded_kafka import EmbeddedKafka
    from monitor.publishing import interferogram_message, outgoing
    from monitor.scoring import make_model_client, score_interferograms
    from pipelines.kafka_io import KafkaIOError, KafkaPublisher
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.signatures import UNREST_MODEL_NAME
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    rows_px, cols_px = (int(x) for x in args.e2e_shape.split("x"))
    rng = np.random.default_rng(args.seed + 3)
    pm = DEFAULT_PARAMS.pixel_m
    frame = generate_frame(
        rng, (rows_px, cols_px),
        [MogiSource(cols_px / 2 * pm, -rows_px / 2 * pm, depth=3500.0, volume_change=6e6)],
    )
    n = args.e2e_n
    paths = []
    first = date(2024, 1, 1)
    for k in range(2 * n + 1):  # a distinct product (dates) per publication, same pixels
        a = first + timedelta(days=12 * k)
        pair = f"{a:%Y%m%d}_{a + timedelta(days=12):%Y%m%d}"
        path = root / "e2e" / "124D_05291_081406" / pair / f"{pair}.geo.diff_pha.tif"
        write_wrapped_phase_geotiff(path, frame.phase, frame.transform)
        paths.append(path)

    base = root / "e2e-run"
    broker = EmbeddedKafka((base / "kafka").resolve(), num_partitions=3).start()
    try:
        config = load_config(environ={
            "INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "INSAR_MONITOR__KAFKA__API_VERSION": "0.9",
            "INSAR_MONITOR__STORAGE__STATE_DIR": str(base / "state"),
            "INSAR_MONITOR__METRICS__PORT": "0",
        })
        t = config.topics
        deadline = time.monotonic() + 30
        while True:
            try:
                broker.create_topics([t.interferograms, t.ps_updates, t.detections, t.dlq,
                                      t.hotspots, t.alerts], 3)
                break
            except KafkaIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        daemon = Daemon(config)
        watcher = _DetectionWatcher(broker.bootstrap, [t.detections, t.dlq]).start_watching()
        publisher = KafkaPublisher(daemon.ctx.kafka)
        try:
            daemon.prepare()

            def publish(path: Path) -> tuple[tuple[str, int, int], float]:
                item = outgoing(interferogram_message(path, volcano_id="V001"))
                start = time.perf_counter()
                part, off = publisher.publish(t.interferograms, item.value, key=item.key)
                return (t.interferograms, part, off), start

            # Warm-up pass (Beam, TF, the quicklook's matplotlib), untimed.
            ref, _ = publish(paths[0])
            while daemon.run_once() is None:
                time.sleep(0.1)
            watcher.wait(ref, 120)
            direct_runs: list[float] = []
            immediate: list[float] = []
            for path in paths[1 : n + 1]:
                ref, start = publish(path)
                while daemon.run_once() is None:  # the pass starts right away
                    pass
                immediate.append(watcher.wait(ref, 120) - start)
            polled: list[float] = []
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    daemon.run()
                except BaseException as e:
                    errors.append(e)

            thread = threading.Thread(target=run, name="e2e-daemon", daemon=True)
            thread.start()
            time.sleep(config.pipeline.poll_interval_s)
            for path in paths[n + 1 :]:
                time.sleep(float(rng.uniform(0.2, 2.0 * config.pipeline.poll_interval_s)))
                ref, start = publish(path)
                polled.append(watcher.wait(ref, 120) - start)
            daemon.request_stop()
            thread.join(120)
            if errors:
                raise RuntimeError(f"daemon failed: {errors[0]}")
        finally:
            publisher.close()
            watcher.stop()
            daemon.close()
    finally:
        broker.stop()

    client = make_model_client(config, UNREST_MODEL_NAME)
    (first_result,) = score_interferograms([paths[0]], config, client)  # warm-up
    # The daemon draws a quicklook PNG for an unrest frame: so does the baseline then.
    quicklook = root / "e2e-quicklooks" if first_result.get("unrest") else None
    list(score_interferograms([paths[0]], config, client, quicklook))
    for path in paths[1 : n + 1]:
        t0 = time.perf_counter()
        (result,) = score_interferograms([path], config, client, quicklook)
        direct_runs.append(time.perf_counter() - t0)
        if "error" in result:
            raise RuntimeError(f"direct scoring failed: {result['error']}")
    direct = statistics.median(direct_runs)
    what = f"1 interferogram {rows_px}x{cols_px} px (Mogi), median of {n}"
    base_what = ("score_interferograms in-process (no broker, no Beam)"
                 + (", with its quicklook PNG" if quicklook else ""))
    return [
        Row(f"e2e publish -> detection, {what}, daemon polling "
            f"{config.pipeline.poll_interval_s:g} s", statistics.median(polled), direct, "s",
            "embedded broker + Daemon.run", base_what, higher_is_better=False,
            note=f"p95 {np.percentile(polled, 95):.2f} s, max {max(polled):.2f} s"),
        Row(f"e2e publish -> detection, {what}, pass right after publish",
            statistics.median(immediate), direct, "s", "embedded broker + Daemon.run_once",
            base_what, higher_is_better=False,
            note=f"p95 {np.percentile(immediate, 95):.2f} s, max {max(immediate):.2f} s"),
    ]


class _DetectionWatcher(threading.Thread):
    """Independent consumer: time at which each input's output appeared (by source ref)."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        super().__init__(name="e2e-watcher", daemon=True)
        self.bootstrap, self.topics = bootstrap, list(topics)
        self.seen: dict[tuple[str, int, int], float] = {}
        self.cond = threading.Condition()
        self._stop_event = threading.Event()
        self._ready = threading.Event()

    def run(self) -> None:
        import kafka
        from kafka.structs import TopicPartition

        consumer = kafka.KafkaConsumer(
            bootstrap_servers=self.bootstrap, api_version=(0, 9), group_id=None,
            enable_auto_commit=False, fetch_max_wait_ms=20, client_id="e2e-watcher",
        )
        tps = [TopicPartition(t, p) for t in self.topics for p in range(3)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for tp in tps:
            consumer.position(tp)
        self._ready.set()
        try:
            while not self._stop_event.is_set():
                batches = consumer.poll(timeout_ms=50)
                now = time.perf_counter()
                with self.cond:
                    for records in batches.values():
                        for r in records:
                            src = json.loads(r.value).get("source", {})
                            ref = (src.get("topic"), src.get("partition"), src.get("offset"))
                            self.seen.setdefault(ref, now)
                    self.cond.notify_all()
        finally:
            consumer.close()

    def start_watching(self) -> _DetectionWatcher:
        self.start()
        if not self._ready.wait(60):
            raise RuntimeError("watcher did not start")
        return self

    def wait(self, ref: tuple[str, int, int], timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while ref not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no output for {ref} within {timeout_s} s")
                self.cond.wait(min(left, 0.5))
            return self.seen[ref]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


# --------------------------------------------------------------------------- machine load
def _ticks(path: str) -> int:
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the machine, CPU seconds of this process and its children).

    Children: those alive now (from ``/proc``) plus those already reaped (``RUSAGE_CHILDREN``,
    e.g. a broker stopped meanwhile).
    """
    import resource

    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    busy = (sum(values) - values[3] - values[4]) / hz  # minus idle and iowait
    own = sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF),
                  resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == me:
                own += _ticks(str(entry / "stat")) / hz
    return time.perf_counter(), busy, own


def others_cores(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Cores other processes used between two snapshots."""
    wall = max(1e-9, b[0] - a[0])
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / wall)


# --------------------------------------------------------------------------- report
def table(rows: Sequence[Row]) -> str:
    def num(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:.3g}" if x < 10 else f"{x:.1f}"

    def ratio(x: float) -> str:
        return f"{x:,.0f}x" if x >= 10 else f"{x:.2f}x"

    lines = [
        "| stage | ours | baseline | ratio | units | ours is | baseline is | note |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {num(r.ours)} | {num(r.baseline)} | {ratio(r.ratio)} | {r.units} "
            f"| {r.ours_what} | {r.baseline_what} | {r.note} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Per-stage throughput next to a baseline.")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of ours (best kept)")
    p.add_argument("--frame-size", type=int, default=2500, help="tiling: square frame side")
    p.add_argument("--unrest-tiles", type=int, default=512)
    p.add_argument("--trend-series", type=int, default=8192)
    p.add_argument("--trend-epochs", type=int, default=150)
    p.add_argument("--gistar-sizes", default="5000,20000",
                   help="comma-separated point counts; the naive loop runs on the first only")
    p.add_argument("--alert-places", type=int, default=20)
    p.add_argument("--alert-obs", type=int, default=100, help="observations per place")
    p.add_argument("--e2e-n", type=int, default=10)
    p.add_argument("--e2e-shape", default="600x700", help="rowsxcols of the e2e frame")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--seed", type=int, default=3)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {STAGES}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda r: "memory usage cannot be fetched" not in r.getMessage())
    logger.setLevel(logging.INFO)
    root = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    rows: list[Row] = []
    others: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for stage in stages:
            t = time.perf_counter()
            cpu0 = cpu_snapshot()
            logger.info("stage %s ...", stage)
            if stage == "tiling":
                rows += stage_tiling(args)
            elif stage == "unrest":
                rows += stage_unrest(args, root)
            elif stage == "trend":
                rows += stage_trend(args, root)
            elif stage == "gistar":
                rows += stage_gistar(args)
            elif stage == "alerts":
                rows += stage_alerts(args)
            elif stage == "e2e":
                rows += stage_e2e(args, root)
            others[stage] = others_cores(cpu0, cpu_snapshot())
            logger.info("stage %s done in %.1f s", stage, time.perf_counter() - t)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"command: .venv/bin/python {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; total {time.perf_counter() - started:.0f} s; "
          f"ratio = how many times faster ours is (rates: ours/baseline; seconds: "
          f"baseline/ours)")
    print("others' CPU (cores used by other processes on the machine meanwhile): "
          + ", ".join(f"{k} {v:.2f}" for k, v in others.items()))
    print()
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{**r.__dict__, "ratio": r.ratio} for r in rows],
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
