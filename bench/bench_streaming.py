"""Streaming spine benchmark: product published on Kafka -> detection back on Kafka.

Everything real: an embedded Kafka 0.9 broker (:class:`monitor.embedded_kafka.EmbeddedKafka`),
the daemon's bounded Beam passes on FnApiRunner (:class:`monitor.daemon.Daemon`), the
committed SavedModels in-process, the PS store and the emitted-id ledger on local disk.
Each section gets a fresh broker and a fresh state directory; the models stay loaded in
the process between sections (as in a running daemon).

Sections
--------
``ps``
    PS trend classification. ``--ps-updates`` updates of ``--ps-points`` points x
    ``--ps-epochs`` epochs each, one store tile per update, written as EGMS-layout Parquet
    (or CSV) files and published by reference (``ps_update.v1`` with ``points_uri``). The
    daemon runs one pass (``run_once``) right after the last publish. Reported: seconds
    from the first publish to the last detection seen on the broker, the pass time, series/s
    end to end, and the raw model's series/s on exactly the arrays the daemon fed the model
    (re-run through ``InProcessInferenceClient`` in batches of ``trend_batch_size``). Rows:
    ``cold`` (new tiles: every point is new, every point "changes class" and is listed in its
    detection), ``+N epochs`` (the same tiles again, each update adding N epochs: the whole
    series of every point is re-classified, few class changes), and a diagnostic pass with the
    trend model replaced by a constant function (the pipeline without the model).
``frames``
    Interferogram scoring on ``--frame-size`` square frames (GeoTIFF by reference): one quiet
    frame alone, one frame with a Mogi source alone (a detection with a quicklook PNG), then
    ``--frames`` frames in one pass (frames/s). Raw model patches/s on the same tiles.
``latency``
    The daemon runs continuously in a thread (``Daemon.run``, poll interval
    ``--poll-interval``); single small products (a PS update of ``--latency-ps-points``
    points on a new tile, or a 600x700 frame) are published at random times (gaps uniform
    in [0.2, 2 x ``--latency-gap`` - 0.2] s). Reported: publish -> detection latency, median
    and p95.

For the ``ps`` and ``frames`` sections a stage breakdown of the pass is printed too: wall
time inside each instrumented function (exclusive of instrumented callees), measured by
wrapping the functions during the timed passes only; "Beam runner and the rest" is the
pass time no instrumented function accounts for (Beam's own work, shuffles, decoding glue).

Warm-up: before any timing each section calls ``Daemon.prepare()`` (loads and checks both
models) and runs one pass over small products, so TensorFlow, Beam and the Kafka clients
are warm. A watcher thread (kafka-python consumer, ``fetch_max_wait_ms=20``) timestamps
every detection as it appears on the detections topic; it adds up to a few tens of ms.

The development machine is shared: every measurement also records how many cores other
processes used meanwhile (from ``/proc``: machine busy time minus this process and the
broker's JVMs), printed as "others' CPU".

Examples
--------
::

    .venv/bin/python bench/bench_streaming.py --out build/bench
    .venv/bin/python bench/bench_streaming.py --quick --sections ps,latency
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_streaming")

SECTIONS = ("ps", "frames", "latency")
PS_DATASET = "bench"
FRAME_ID_QUIET = "001A_00001_000001"
FRAME_ID_UNREST = "002D_00002_000002"
SMALL_FRAME_SHAPE = (600, 700)
FIRST_EPOCH = date(2019, 1, 2)
REVISIT_DAYS = 12
TARGET_PS_SERIES_PER_S = 15_000
TARGET_FRAME_S = 10.0
TARGET_MEDIAN_LATENCY_S = 10.0

Ref = tuple[str, int, int]  # (topic, partition, offset) of a published input


# --------------------------------------------------------------------------- instrumentation
class StageTimer:
    """Wall time spent inside patched functions, exclusive of patched callees.

    ``install`` replaces attributes (module functions, class methods) by timing wrappers;
    ``restore`` puts the originals back. Nested instrumented calls are subtracted from their
    caller, so the totals add up to at most the wall time of the outermost calls.
    Optionally keeps the inputs of every model call (``captured``).
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.captured: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
        self._local = threading.local()
        self._patches: list[tuple[Any, str, Any]] = []

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()
        self.captured.clear()

    def _stack(self) -> list[float]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @contextmanager
    def _span(self, label: str) -> Iterator[None]:
        stack = self._stack()
        stack.append(0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            children = stack.pop()
            self.totals[label] += elapsed - children
            self.calls[label] += 1
            if stack:
                stack[-1] += elapsed

    def _patch(self, owner: Any, attr: str, replacement: Any) -> None:
        self._patches.append((owner, attr, owner.__dict__[attr]))
        setattr(owner, attr, replacement)

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        """Time calls of ``owner.attr`` under ``label``."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._span(label):
                return original(*args, **kwargs)

        self._patch(owner, attr, timed)

    def wrap_generator(self, owner: Any, attr: str, label: str) -> None:
        """Time the work done inside each ``next()`` of the generator ``owner.attr`` returns."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = iter(original(*args, **kwargs))
            while True:
                with self._span(label):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item

        self._patch(owner, attr, timed)

    def wrap_model(self, capture: bool, replace_trend: bool) -> None:
        """Time ``Servable.run`` per model; keep its inputs; optionally fake the trend model."""
        from serving.clients.inprocess import Servable
        from serving.signatures import TREND_CLASSES, TREND_MODEL_NAME

        original = Servable.run

        def run(servable: Servable, inputs: Any) -> dict[str, np.ndarray]:
            name = servable.model_name
            if capture:
                self.captured[name].append({k: np.asarray(v) for k, v in inputs.items()})
            with self._span(f"model: {name}"):
                if replace_trend and name == TREND_MODEL_NAME:
                    n = len(inputs["displacement_mm"])
                    k = len(TREND_CLASSES)
                    return {"probabilities": np.full((n, k), 1.0 / k, np.float32)}
                return original(servable, inputs)

        self._patch(Servable, "run", run)

    def install(self, *, capture: bool = True, replace_trend: bool = False) -> None:
        """Instrument the stages of a pass (see the module docstring)."""
        import pipelines.bounded as bounded
        import pipelines.messages as messages
        import pipelines.product_fetch as product_fetch
        import pipelines.ps_store as ps_store
        import pipelines.series_packing as series_packing
        import pipelines.tiling as tiling
        import pipelines.transforms as transforms
        from pipelines.kafka_io import KafkaPublisher
        from pipelines.ledger import EmittedLedger

        self.wrap(bounded, "run_pipeline_over", "Beam runner and the rest")
        self.wrap(bounded, "plan_pass", "plan pass (broker offsets)")
        self.wrap(bounded, "commit_offsets", "commit offsets")
        self.wrap_generator(bounded, "read_range", "read input records")
        self.wrap(messages, "parse_message", "decode input messages")
        self.wrap(messages, "validate", "JSON-schema validation")
        self.wrap(messages, "to_bytes", "serialize detections (JSON)")
        self.wrap(product_fetch, "load_ps_points", "load PS file")
        self.wrap(ps_store, "merge_epochs", "merge epochs")
        self.wrap(ps_store.PSStore, "read_series", "PS store read")
        self.wrap(ps_store.PSStore, "read_classes", "PS store read")
        self.wrap(ps_store.PSStore, "write_series", "PS store write")
        self.wrap(ps_store.PSStore, "write_classes", "PS store write")
        self.wrap(series_packing, "pack_series", "pack series")
        self.wrap(transforms, "build_ps_detection", "build detections")
        self.wrap(transforms, "build_unrest_detection", "build detections")
        self.wrap(transforms, "write_frame_quicklook", "quicklook PNG")
        self.wrap(transforms._PublishOnceFn, "_archive", "archive JSON files")
        self.wrap(product_fetch, "load_wrapped_phase", "read raster")
        self.wrap(tiling, "tile_frame", "tile frame")
        self.wrap(KafkaPublisher, "publish_many", "publish detections (until acked)")
        self.wrap(KafkaPublisher, "__init__", "open producer")
        self.wrap(EmittedLedger, "__init__", "ledger")
        self.wrap(EmittedLedger, "seen", "ledger")
        self.wrap(EmittedLedger, "record", "ledger")
        self.wrap_model(capture, replace_trend)

    def restore(self) -> None:
        while self._patches:
            owner, attr, original = self._patches.pop()
            setattr(owner, attr, original)

    @contextmanager
    def active(self, *, capture: bool = True, replace_trend: bool = False) -> Iterator[None]:
        self.reset()
        self.install(capture=capture, replace_trend=replace_trend)
        try:
            yield
        finally:
            self.restore()

    def breakdown(self) -> dict[str, float]:
        """Seconds per label, largest first."""
        return dict(sorted(self.totals.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- broker watcher
@dataclass(frozen=True)
class Seen:
    """An output message and when the watcher saw it (``time.perf_counter``)."""

    at: float
    topic: str
    payload: dict[str, Any]
    size: int  # bytes of the record value


class OutputWatcher(threading.Thread):
    """Consumes the detection and dead-letter topics from the start; timestamps each record."""

    def __init__(self, bootstrap: str, topics: Sequence[str], partitions: int) -> None:
        super().__init__(name="output-watcher", daemon=True)
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.partitions = partitions
        self.by_source: dict[Ref, Seen] = {}
        self._cond = threading.Condition()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        import kafka
        from kafka.structs import TopicPartition

        try:
            consumer = kafka.KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                api_version=(0, 9),
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
                max_partition_fetch_bytes=16 * 1024 * 1024,
                client_id="bench-watcher",
            )
            tps = [TopicPartition(t, p) for t in self.topics for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            for tp in tps:
                consumer.position(tp)
        except BaseException as e:  # surfaced by start_watching
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop_event.is_set():
                batches = consumer.poll(timeout_ms=50)
                now = time.perf_counter()
                if not batches:
                    continue
                with self._cond:
                    for tp, records in batches.items():
                        for record in records:
                            payload = json.loads(record.value)
                            src = payload.get("source", {})
                            ref = (src.get("topic"), src.get("partition"), src.get("offset"))
                            self.by_source[ref] = Seen(now, tp.topic, payload, len(record.value))
                    self._cond.notify_all()
        finally:
            consumer.close()

    def start_watching(self) -> OutputWatcher:
        self.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError(f"output watcher failed to start: {self._error}")
        return self

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def wait_for(self, refs: Sequence[Ref], detection_topic: str, timeout_s: float) -> list[Seen]:
        """The outputs of ``refs`` (in order); raises on a dead letter or a timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                missing = [r for r in refs if r not in self.by_source]
                dead = [
                    self.by_source[r] for r in refs
                    if r in self.by_source and self.by_source[r].topic != detection_topic
                ]
                if dead:
                    p = dead[0].payload
                    raise RuntimeError(f"input dead-lettered: {p.get('reason')}: {p.get('error')}")
                if not missing:
                    return [self.by_source[r] for r in refs]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} of {len(refs)} detections not seen")
                self._cond.wait(min(left, 0.5))


# --------------------------------------------------------------------------- the spine
@dataclass
class Spine:
    """A fresh broker + daemon + publisher + watcher for one section."""

    config: Any
    daemon: Any
    publisher: Any
    watcher: OutputWatcher
    topics: dict[str, str]

    def send(self, item: Any) -> tuple[Ref, float]:
        """Publish one Outgoing (waits for the ack); its ref and the time just before."""
        topic = self.topics[item.topic_kind]
        start = time.perf_counter()
        partition, offset = self.publisher.publish(topic, item.value, key=item.key)
        return (topic, partition, offset), start

    def wait(self, refs: Sequence[Ref], timeout_s: float = 600.0) -> list[Seen]:
        return self.watcher.wait_for(refs, self.config.topics.detections, timeout_s)


def create_topics(broker: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """``broker.create_topics`` with retries.

    Right after start-up a 0.9 broker answers metadata requests with an empty broker list
    (the controller has not sent it the cluster metadata yet), which kafka-python reports
    as ``MetadataEmptyBrokerList``.
    """
    from pipelines.kafka_io import KafkaIOError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            broker.create_topics(names, 3)
            return
        except KafkaIOError as e:
            if time.monotonic() > deadline:
                raise
            logger.info("broker not ready for topic creation yet (%s); retrying", e)
            time.sleep(0.5)


@contextmanager
def spine(
    root: Path,
    name: str,
    *,
    poll_interval_s: float = 2.0,
    on_pass: Callable | None = None,
    overrides: dict[str, str] | None = None,
) -> Iterator[Spine]:
    """Start a broker, create the topics, build a daemon on a fresh state directory.

    ``overrides``: more ``INSAR_MONITOR__...`` settings for the daemon's configuration.
    """
    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.embedded_kafka import EmbeddedKafka
    from pipelines.kafka_io import KafkaPublisher

    base = root / name
    shutil.rmtree(base, ignore_errors=True)
    broker = EmbeddedKafka(base / "kafka", num_partitions=3).start()
    try:
        config = load_config(
            environ={
                "INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
                "INSAR_MONITOR__KAFKA__API_VERSION": "0.9",
                "INSAR_MONITOR__STORAGE__STATE_DIR": str(base / "state"),
                "INSAR_MONITOR__PIPELINE__POLL_INTERVAL_S": str(poll_interval_s),
                **(overrides or {}),
            }
        )
        t = config.topics
        create_topics(broker, [t.interferograms, t.ps_updates, t.detections, t.dlq])
        daemon = Daemon(config, on_pass=on_pass)
        watcher = OutputWatcher(broker.bootstrap, [t.detections, t.dlq], 3).start_watching()
        publisher = KafkaPublisher(daemon.ctx.kafka)
        try:
            yield Spine(
                config,
                daemon,
                publisher,
                watcher,
                {"interferogram": t.interferograms, "ps_update": t.ps_updates},
            )
        finally:
            publisher.close()
            watcher.stop()
    finally:
        broker.stop()


def run_passes(daemon: Any) -> tuple[float, int]:
    """``run_once`` until a pass finds nothing; (seconds of the non-empty passes, count)."""
    seconds, passes = 0.0, 0
    while True:
        start = time.perf_counter()
        report = daemon.run_once()
        if report is None:
            return seconds, passes
        seconds += time.perf_counter() - start
        passes += 1


def warm_up(sp: Spine, items: Sequence[Any]) -> float:
    """``prepare()`` (model load) then one pass over ``items``; seconds of the whole warm-up."""
    start = time.perf_counter()
    sp.daemon.prepare()
    refs = [sp.send(item)[0] for item in items]
    run_passes(sp.daemon)
    sp.wait(refs, timeout_s=120)
    return time.perf_counter() - start


@dataclass
class BatchTiming:
    """One sequential publish -> pass -> detections measurement."""

    items: int
    publish_s: float
    pass_s: float
    passes: int
    end_to_end_s: float
    detection_bytes: int


def timed_batch(sp: Spine, items: Sequence[Any]) -> BatchTiming:
    """Publish ``items``, run the daemon's passes, wait for every detection."""
    t0 = time.perf_counter()
    refs = [sp.send(item)[0] for item in items]
    published = time.perf_counter() - t0
    pass_s, passes = run_passes(sp.daemon)
    seen = sp.wait(refs)
    last = max(s.at for s in seen)
    size = sum(s.size for s in seen)
    return BatchTiming(len(items), published, pass_s, passes, last - t0, size)


# --------------------------------------------------------------------------- raw model
_RAW_CLIENTS: dict[str, Any] = {}


def raw_client(config: Any, model_name: str) -> Any:
    """``InProcessInferenceClient.from_version_dir`` on the version the daemon serves."""
    from pipelines.model_endpoint import ModelEndpoint
    from serving.clients.inprocess import InProcessInferenceClient

    if model_name not in _RAW_CLIENTS:
        version = ModelEndpoint.from_config(config, model_name).load().version
        version_dir = Path(config.models.model_base) / model_name / str(version)
        _RAW_CLIENTS[model_name] = InProcessInferenceClient.from_version_dir(version_dir)
    return _RAW_CLIENTS[model_name]


def concat_inputs(calls: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate captured model inputs along rows (series NaN-padded to the widest)."""
    if not calls:
        raise RuntimeError("no model call was captured")
    out: dict[str, np.ndarray] = {}
    for name in calls[0]:
        arrays = [c[name] for c in calls]
        if arrays[0].ndim == 2:
            width = max(a.shape[1] for a in arrays)
            padded = []
            for a in arrays:
                p = np.full((a.shape[0], width), np.nan, dtype=a.dtype)
                p[:, : a.shape[1]] = a
                padded.append(p)
            arrays = padded
        out[name] = np.concatenate(arrays)
    return out


def raw_items_per_s(
    client: Any, inputs: dict[str, np.ndarray], batch: int, repeats: int
) -> tuple[int, float]:
    """Rows and seconds (best of ``repeats``) of ``client.predict`` over all of ``inputs``
    in ``batch``-row requests, after one untimed request (warm-up)."""
    rows = len(next(iter(inputs.values())))
    client.predict({k: v[:batch] for k, v in inputs.items()})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for s in range(0, rows, batch):
            client.predict({k: v[s : s + batch] for k, v in inputs.items()})
        best = min(best, time.perf_counter() - start)
    return rows, best


# --------------------------------------------------------------------------- PS data
def epoch_dates(n: int, start: date = FIRST_EPOCH) -> list[date]:
    return [start + timedelta(days=REVISIT_DAYS * i) for i in range(n)]


def ps_pool(rng: np.random.Generator, size: int, n_epochs: int) -> np.ndarray:
    """``size`` realistic series (all five classes) on the shared epochs, shape (size, T)."""
    from serving.signatures import TREND_CLASSES
    from serving.synthetic.ps_series import PSSeriesParams, generate_ps_series

    days = np.arange(n_epochs, dtype=float) * REVISIT_DAYS
    params = PSSeriesParams()
    return np.stack(
        [
            generate_ps_series(i % len(TREND_CLASSES), rng, params, time_days=days)[1]
            for i in range(size)
        ]
    ).astype(np.float32)


def write_points(
    path: Path,
    pids: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    dates: Sequence[date],
    disp: np.ndarray,
) -> Path:
    """One EGMS-layout file; Parquet or CSV by the suffix of ``path``."""
    from pipelines.egms_csv import write_egms_csv
    from pipelines.product_fetch import PSBatch, write_ps_parquet

    if path.suffix == ".csv":
        return write_egms_csv(path, pids, lon, lat, list(dates), disp)
    batch = PSBatch(
        pid=pids,
        longitude=lon,
        latitude=lat,
        dates=tuple(dates),
        displacement_mm=disp,
        quality=np.full(len(pids), 0.9, np.float32),
    )
    return write_ps_parquet(path, batch)


@dataclass
class PSTileFiles:
    """The files of one store tile: the first update and the incremental ones."""

    tile_id: str
    first: Path
    increments: list[Path] = field(default_factory=list)


def write_ps_tiles(
    root: Path,
    rng: np.random.Generator,
    pool: np.ndarray,
    *,
    prefix: str,
    n_tiles: int,
    n_points: int,
    increment_epochs: int,
    fmt: str,
    gap_fraction: float = 0.01,
) -> list[PSTileFiles]:
    """Per tile: ``n_points`` series drawn from ``pool`` with fresh noise and a few gaps."""
    n_epochs = pool.shape[1]
    dates = epoch_dates(n_epochs + increment_epochs)
    suffix = ".parquet" if fmt == "parquet" else ".csv"
    tiles = []
    for k in range(n_tiles):
        tile_id = f"{prefix}{k:03d}"
        rows = pool[rng.integers(0, len(pool), n_points)]
        disp = rows + rng.normal(0.0, 0.5, rows.shape).astype(np.float32)
        disp[rng.random(disp.shape) < gap_fraction] = np.nan
        pids = np.array([f"{tile_id}-{i:06d}" for i in range(n_points)])
        lon = 14.0 + rng.uniform(0, 0.05, n_points)
        lat = 41.0 + rng.uniform(0, 0.05, n_points)
        folder = root / PS_DATASET / tile_id
        first = write_points(folder / f"u000{suffix}", pids, lon, lat, dates[:n_epochs], disp)
        files = PSTileFiles(tile_id, first)
        if increment_epochs:
            last = np.nan_to_num(disp[:, -1])
            new = last[:, None] + rng.normal(0.0, 1.0, (n_points, increment_epochs))
            files.increments.append(
                write_points(
                    folder / f"u001{suffix}", pids, lon, lat, dates[n_epochs:],
                    new.astype(np.float32),
                )
            )
        tiles.append(files)
    return tiles


def ps_outgoing(path: Path, tile_id: str) -> Any:
    from monitor.publishing import outgoing, ps_update_message

    return outgoing(ps_update_message(path, dataset_id=PS_DATASET, tile_id=tile_id))


# --------------------------------------------------------------------------- frames
def write_frame(
    root: Path, rng: np.random.Generator, frame_id: str, shape: tuple[int, int], unrest: bool
) -> Path:
    """A synthetic LiCSAR-layout wrapped-phase GeoTIFF; a central Mogi source if ``unrest``."""
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    pixel_m = DEFAULT_PARAMS.pixel_m
    sources = (
        [MogiSource(shape[1] / 2 * pixel_m, -shape[0] / 2 * pixel_m, depth=3500.0,
                    volume_change=6e6)]
        if unrest
        else []
    )
    frame = generate_frame(rng, shape, sources, DEFAULT_PARAMS)
    pair = "20240101_20240113"
    path = root / frame_id / pair / f"{pair}.geo.diff_pha.tif"
    write_wrapped_phase_geotiff(path, frame.phase, frame.transform)
    return path


def frame_outgoing(path: Path, product_id: str) -> Any:
    from monitor.publishing import interferogram_message, outgoing

    return outgoing(interferogram_message(path, product_id=product_id))


# --------------------------------------------------------------------------- sections
def _proc_cpu_ticks(pid: int | str) -> int:
    """utime + stime of one process, clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def _child_pids() -> list[int]:
    """Direct children of this process (the broker's two JVMs)."""
    me, children = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            children.append(int(entry.name))
    return children


def _machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


@contextmanager
def cpu_meter() -> Iterator[dict[str, float]]:
    """Cores used while the block runs: this process, the broker, and every other process.

    The machine is shared; ``other_cores`` says how much of it others took meanwhile.
    """
    hz = os.sysconf("SC_CLK_TCK")
    children = _child_pids()
    out: dict[str, float] = {}
    wall0, busy0 = time.perf_counter(), _machine_busy_ticks()
    self0 = _proc_cpu_ticks("self")
    kids0 = sum(_proc_cpu_ticks(p) for p in children)
    yield out
    wall = time.perf_counter() - wall0
    busy = (_machine_busy_ticks() - busy0) / hz
    own = (_proc_cpu_ticks("self") - self0) / hz
    kids = (sum(_proc_cpu_ticks(p) for p in children) - kids0) / hz
    out.update(
        self_cores=own / wall,
        broker_cores=kids / wall,
        other_cores=max(0.0, busy - own - kids) / wall,
    )


def config_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Daemon settings the command line changes."""
    out = {}
    if args.trend_batch_size is not None:
        out["INSAR_MONITOR__PIPELINE__TREND_BATCH_SIZE"] = str(args.trend_batch_size)
    return out


def section_ps(args: argparse.Namespace, root: Path, timer: StageTimer) -> dict[str, Any]:
    """PS updates: cold tiles, incremental updates, and the no-model diagnostic."""
    from serving.signatures import TREND_MODEL_NAME

    rng = np.random.default_rng(args.seed)
    data = root / "ps-data"
    logger.info("ps: generating %d pool series x %d epochs", args.ps_pool, args.ps_epochs)
    pool = ps_pool(rng, args.ps_pool, args.ps_epochs)
    logger.info("ps: writing %d updates x %d points (%s)", args.ps_updates, args.ps_points,
                args.ps_format)
    tiles = write_ps_tiles(
        data, rng, pool, prefix="T", n_tiles=args.ps_updates, n_points=args.ps_points,
        increment_epochs=args.ps_increment_epochs, fmt=args.ps_format,
    )
    warm = write_ps_tiles(
        data, rng, pool, prefix="W", n_tiles=1, n_points=200, increment_epochs=0,
        fmt=args.ps_format,
    )[0]
    small_frame = write_frame(data / "frames", rng, FRAME_ID_QUIET, SMALL_FRAME_SHAPE, False)
    n_series = args.ps_updates * args.ps_points
    result: dict[str, Any] = {
        "updates": args.ps_updates,
        "points_per_update": args.ps_points,
        "epochs": args.ps_epochs,
        "format": args.ps_format,
        "runs": [],
    }
    with spine(root, "ps", overrides=config_overrides(args)) as sp:
        result["warmup_s"] = warm_up(
            sp, [ps_outgoing(warm.first, warm.tile_id), frame_outgoing(small_frame, "warm")]
        )
        trend = raw_client(sp.config, TREND_MODEL_NAME)
        batch = sp.config.pipeline.trend_batch_size
        runs: list[tuple[str, str, list[Any], bool]] = [
            ("cold", "cold tiles", [ps_outgoing(t.first, t.tile_id) for t in tiles], False)
        ]
        if args.ps_increment_epochs:
            runs.append(
                (
                    f"+{args.ps_increment_epochs} epoch",
                    f"+{args.ps_increment_epochs} epoch(s), same tiles",
                    [ps_outgoing(t.increments[0], t.tile_id) for t in tiles],
                    False,
                )
            )
        if not args.no_null_model:
            runs.append(
                (
                    "no model",
                    "cold tiles, trend model replaced by a constant (diagnostic)",
                    [ps_outgoing(t.first, "N" + t.tile_id[1:]) for t in tiles],
                    True,
                )
            )
        for short, label, items, fake in runs:
            logger.info("ps: %s: publishing %d updates", label, len(items))
            with timer.active(capture=not fake, replace_trend=fake), cpu_meter() as cpu:
                timing = timed_batch(sp, items)
            row: dict[str, Any] = {
                "run": label,
                "short": short,
                "series": n_series,
                **asdict(timing),
                "series_per_s_end_to_end": n_series / timing.end_to_end_s,
                "breakdown_s": timer.breakdown(),
                "cpu_cores": cpu,
            }
            if not fake:
                inputs = concat_inputs(timer.captured[TREND_MODEL_NAME])
                timer.captured.clear()
                with cpu_meter() as raw_cpu:
                    rows, seconds = raw_items_per_s(trend, inputs, batch, args.raw_repeats)
                row.update(
                    raw_model_cpu_cores=raw_cpu,
                    raw_model_series=rows,
                    raw_model_s=seconds,
                    raw_model_series_per_s=rows / seconds,
                    raw_model_batch=batch,
                )
                del inputs
            logger.info("ps: %s: %s", label, {k: v for k, v in row.items() if k != "breakdown_s"})
            result["runs"].append(row)
    return result


def section_frames(args: argparse.Namespace, root: Path, timer: StageTimer) -> dict[str, Any]:
    """Interferograms: one quiet frame, one unrest frame, then a batch in one pass."""
    from serving.signatures import UNREST_MODEL_NAME

    rng = np.random.default_rng(args.seed + 1)
    data = root / "frame-data"
    shape = (args.frame_size, args.frame_size)
    logger.info("frames: generating two %dx%d frames", *shape)
    quiet = write_frame(data, rng, FRAME_ID_QUIET, shape, unrest=False)
    unrest = write_frame(data, rng, FRAME_ID_UNREST, shape, unrest=True)
    small = write_frame(data / "small", rng, FRAME_ID_QUIET, SMALL_FRAME_SHAPE, unrest=True)
    result: dict[str, Any] = {"frame_shape": list(shape), "format": "GeoTIFF", "runs": []}
    with spine(root, "frames", overrides=config_overrides(args)) as sp:
        result["warmup_s"] = warm_up(sp, [frame_outgoing(small, "warm")])
        client = raw_client(sp.config, UNREST_MODEL_NAME)
        batch = sp.config.pipeline.unrest_batch_size
        runs = [
            ("quiet", "1 frame, no deformation", [frame_outgoing(quiet, "quiet-single")]),
            (
                "unrest",
                "1 frame, Mogi source (unrest + quicklook)",
                [frame_outgoing(unrest, "unrest-single")],
            ),
            (
                "batch",
                f"{args.frames} frames in one pass (half with a source)",
                [
                    frame_outgoing(unrest if k % 2 else quiet, f"batch-{k:02d}")
                    for k in range(args.frames)
                ],
            ),
        ]
        for short, label, items in runs:
            logger.info("frames: %s", label)
            with timer.active(capture=True), cpu_meter() as cpu:
                timing = timed_batch(sp, items)
            inputs = concat_inputs(timer.captured[UNREST_MODEL_NAME])
            timer.captured.clear()
            with cpu_meter() as raw_cpu:
                tiles, seconds = raw_items_per_s(client, inputs, batch, args.raw_repeats)
            row = {
                "run": label,
                "short": short,
                "frames": len(items),
                "tiles": tiles,
                **asdict(timing),
                "frames_per_s_end_to_end": len(items) / timing.end_to_end_s,
                "seconds_per_frame_end_to_end": timing.end_to_end_s / len(items),
                "raw_model_patches_per_s": tiles / seconds,
                "raw_model_seconds_per_frame": seconds / len(items),
                "raw_model_batch": batch,
                "breakdown_s": timer.breakdown(),
                "cpu_cores": cpu,
                "raw_model_cpu_cores": raw_cpu,
            }
            logger.info("frames: %s: %s", label,
                        {k: v for k, v in row.items() if k != "breakdown_s"})
            result["runs"].append(row)
    return result


def section_latency(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Publish single small products at random times to a continuously running daemon."""
    rng = np.random.default_rng(args.seed + 2)
    data = root / "latency-data"
    n = args.latency_n
    kinds = np.array(["ps_update"] * (n // 2) + ["interferogram"] * (n - n // 2))
    rng.shuffle(kinds)
    pool = ps_pool(rng, 500, args.ps_epochs)
    ps_tiles = write_ps_tiles(
        data, rng, pool, prefix="L", n_tiles=int((kinds == "ps_update").sum()) + 1,
        n_points=args.latency_ps_points, increment_epochs=0, fmt=args.ps_format,
    )
    frames = [
        write_frame(data / f"f{k}", rng, FRAME_ID_UNREST if k % 2 else FRAME_ID_QUIET,
                    SMALL_FRAME_SHAPE, unrest=bool(k % 2))
        for k in range(3)
    ]
    items: list[Any] = []
    ps_iter = iter(ps_tiles[1:])
    for k, kind in enumerate(kinds):
        if kind == "ps_update":
            t = next(ps_iter)
            items.append(ps_outgoing(t.first, t.tile_id))
        else:
            items.append(frame_outgoing(frames[k % len(frames)], f"lat-{k:03d}"))
    gaps = rng.uniform(0.2, 2 * args.latency_gap - 0.2, n)
    pass_log: list[tuple[float, int]] = []

    def on_pass(report: Any) -> None:
        pass_log.append((report.seconds, report.records))

    with spine(
        root,
        "latency",
        poll_interval_s=args.poll_interval,
        on_pass=on_pass,
        overrides=config_overrides(args),
    ) as sp:
        warm = ps_tiles[0]
        warmup_s = warm_up(sp, [ps_outgoing(warm.first, warm.tile_id),
                                frame_outgoing(frames[0], "warm")])
        pass_log.clear()
        thread = threading.Thread(target=sp.daemon.run, name="daemon", daemon=True)
        thread.start()
        time.sleep(args.poll_interval)  # let run() finish prepare() and enter its loop
        sent: list[tuple[Ref, float]] = []
        logger.info("latency: publishing %d products at random times", n)
        with cpu_meter() as cpu:
            for gap, item in zip(gaps, items, strict=True):
                time.sleep(float(gap))
                sent.append(sp.send(item))
            seen = sp.wait([r for r, _ in sent], timeout_s=300)
        sp.daemon.request_stop()
        thread.join(120)
    latencies = [s.at - t for s, (_, t) in zip(seen, sent, strict=True)]
    per_kind: dict[str, list[float]] = defaultdict(list)
    for kind, lat in zip(kinds, latencies, strict=True):
        per_kind[str(kind)].append(lat)
    per_kind["all"] = latencies
    pass_seconds = [s for s, _ in pass_log]
    return {
        "n": n,
        "poll_interval_s": args.poll_interval,
        "mean_gap_s": args.latency_gap,
        "ps_points": args.latency_ps_points,
        "ps_epochs": args.ps_epochs,
        "frame_shape": list(SMALL_FRAME_SHAPE),
        "warmup_s": warmup_s,
        "cpu_cores": cpu,
        "passes": len(pass_log),
        "pass_s_median": statistics.median(pass_seconds) if pass_seconds else None,
        "records_per_pass_max": max((r for _, r in pass_log), default=0),
        "latency_s": {k: sorted(v) for k, v in per_kind.items()},
        "summary": {
            k: {
                "n": len(v),
                "median_s": statistics.median(v),
                "p95_s": float(np.percentile(v, 95)),
                "max_s": max(v),
            }
            for k, v in per_kind.items()
        },
    }


# --------------------------------------------------------------------------- report
def _breakdown_table(runs: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """One row per instrumented stage, one column of seconds per run, largest first."""
    labels: dict[str, float] = defaultdict(float)
    for r in runs:
        for label, seconds in r["breakdown_s"].items():
            labels[label] = max(labels[label], seconds)
    lines = [
        "| stage (s, exclusive) | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for label, peak in sorted(labels.items(), key=lambda kv: -kv[1]):
        if peak < 0.005:
            continue
        cells = [f"{r['breakdown_s'].get(label, 0.0):.2f}" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **pass** | " + " | ".join(f"**{r['pass_s']:.2f}**" for r in runs) + " |")
    return lines


def _others(row: dict[str, Any]) -> str:
    """CPU other processes used during the pass / during the raw model run, in cores."""
    raw = row.get("raw_model_cpu_cores")
    text = f"{row['cpu_cores']['other_cores']:.1f}"
    return text + (f" / {raw['other_cores']:.1f}" if raw else "")


def markdown(results: dict[str, Any]) -> str:
    """All results as markdown tables."""
    out: list[str] = []
    ps = results.get("ps")
    if ps:
        out += [
            f"PS classification: {ps['updates']} updates x {ps['points_per_update']:,} points x "
            f"{ps['epochs']} epochs, {ps['format']} files by reference, one store tile each "
            f"(warm-up {ps['warmup_s']:.1f} s, untimed)",
            "",
            "| run | what | series | detections (MB) | pass (s) "
            "| publish -> last detection (s) | series/s end to end | raw model series/s "
            "| end to end / raw | others' CPU, pass / raw (cores) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in ps["runs"]:
            raw = r.get("raw_model_series_per_s")
            out.append(
                f"| {r['short']} | {r['run']} | {r['series']:,} "
                f"| {r['detection_bytes'] / 1e6:.1f} | {r['pass_s']:.1f} "
                f"| {r['end_to_end_s']:.1f} | {r['series_per_s_end_to_end']:,.0f} "
                + (f"| {raw:,.0f} | {r['series_per_s_end_to_end'] / raw:.0%} " if raw else
                   "| - | - ")
                + f"| {_others(r)} |"
            )
        out += ["", "Where the PS passes spend their time (instrumented, see the script):", ""]
        out += _breakdown_table(ps["runs"], [r["short"] for r in ps["runs"]])
        out.append("")
    fr = results.get("frames")
    if fr:
        rows, cols = fr["frame_shape"]
        out += [
            f"Interferograms: {rows}x{cols} px wrapped-phase GeoTIFF by reference "
            f"(warm-up {fr['warmup_s']:.1f} s, untimed)",
            "",
            "| run | what | frames | tiles | pass (s) | publish -> last detection (s) "
            "| s/frame | frames/s | raw model patches/s | raw model s/frame "
            "| others' CPU, pass / raw (cores) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fr["runs"]:
            out.append(
                f"| {r['short']} | {r['run']} | {r['frames']} | {r['tiles']} "
                f"| {r['pass_s']:.1f} | {r['end_to_end_s']:.1f} "
                f"| {r['seconds_per_frame_end_to_end']:.2f} "
                f"| {r['frames_per_s_end_to_end']:.2f} | {r['raw_model_patches_per_s']:,.0f} "
                f"| {r['raw_model_seconds_per_frame']:.2f} | {_others(r)} |"
            )
        out += ["", "Where the frame passes spend their time (instrumented):", ""]
        out += _breakdown_table(fr["runs"], [r["short"] for r in fr["runs"]])
        out.append("")
    lat = results.get("latency")
    if lat:
        out += [
            f"Latency: daemon running in a thread, poll interval {lat['poll_interval_s']} s; "
            f"{lat['n']} single products at random times (mean gap {lat['mean_gap_s']} s); "
            f"{lat['passes']} passes, median pass {lat['pass_s_median'] or 0:.1f} s; "
            f"others' CPU meanwhile {lat['cpu_cores']['other_cores']:.1f} cores",
            "",
            "| product | n | median (s) | p95 (s) | max (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        names = {
            "ps_update": f"PS update, {lat['ps_points']:,} points x {lat['ps_epochs']} epochs "
            "(new tile)",
            "interferogram": f"frame {lat['frame_shape'][0]}x{lat['frame_shape'][1]} px",
            "all": "all",
        }
        for k, s in lat["summary"].items():
            out.append(
                f"| {names.get(k, k)} | {s['n']} | {s['median_s']:.1f} | {s['p95_s']:.1f} "
                f"| {s['max_s']:.1f} |"
            )
        out.append("")
    targets = results.get("targets")
    if targets:
        out += ["| target | measured | met |", "|---|---:|---|"]
        out += [f"| {t['target']} | {t['measured']} | {t['met']} |" for t in targets]
    return "\n".join(out) + "\n"


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's three targets against the measurements."""
    rows = []
    ps = results.get("ps")
    if ps:
        cold = ps["runs"][0]["series_per_s_end_to_end"]
        rows.append({
            "target": f">= {TARGET_PS_SERIES_PER_S:,} PS series/s end to end (cold tiles)",
            "measured": f"{cold:,.0f}/s",
            "met": "yes" if cold >= TARGET_PS_SERIES_PER_S else "no",
        })
    fr = results.get("frames")
    if fr:
        single = max(r["end_to_end_s"] for r in fr["runs"] if r["frames"] == 1)
        rows.append({
            "target": f"<= {TARGET_FRAME_S:.0f} s per {fr['frame_shape'][0]}x"
            f"{fr['frame_shape'][1]} frame, publish -> detection",
            "measured": f"{single:.1f} s (slower single frame)",
            "met": "yes" if single <= TARGET_FRAME_S else "no",
        })
    lat = results.get("latency")
    if lat:
        median = lat["summary"]["all"]["median_s"]
        rows.append({
            "target": f"median latency <= {TARGET_MEDIAN_LATENCY_S:.0f} s at poll "
            f"{lat['poll_interval_s']} s",
            "measured": f"{median:.1f} s",
            "met": "yes" if median <= TARGET_MEDIAN_LATENCY_S else "no",
        })
    return rows


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    p = argparse.ArgumentParser(
        description="Publish -> detection throughput and latency through the embedded Kafka "
        "broker and the daemon, next to the raw model throughput on the same inputs.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    p.add_argument(
        "--sections", default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    p.add_argument("--out", type=Path, help="directory for streaming.json with every number")
    p.add_argument("--workdir", type=Path, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ps-updates", type=int, default=20)
    p.add_argument("--ps-points", type=int, default=5000)
    p.add_argument("--ps-epochs", type=int, default=150)
    p.add_argument("--ps-pool", type=int, default=2000,
                   help="distinct generated series the updates are drawn from (+ fresh noise)")
    p.add_argument("--ps-format", choices=("parquet", "csv"), default="parquet")
    p.add_argument("--ps-increment-epochs", type=int, default=1,
                   help="epochs of the second round of updates (0: skip that run)")
    p.add_argument("--no-null-model", action="store_true",
                   help="skip the diagnostic pass with the trend model replaced")
    p.add_argument("--frame-size", type=int, default=2500)
    p.add_argument("--frames", type=int, default=4, help="frames of the one-pass batch run")
    p.add_argument("--latency-n", type=int, default=24)
    p.add_argument("--latency-gap", type=float, default=3.0, help="mean seconds between products")
    p.add_argument("--latency-ps-points", type=int, default=1000)
    p.add_argument("--poll-interval", type=float, default=2.0)
    p.add_argument("--trend-batch-size", type=int,
                   help="pipeline.trend_batch_size for the daemon (default: the config's)")
    p.add_argument("--raw-repeats", type=int, default=3,
                   help="timed passes of the raw model over the captured inputs (best is kept)")
    return p


QUICK = {
    "ps_updates": 4, "ps_points": 1000, "ps_pool": 300, "frame_size": 1000, "frames": 2,
    "latency_n": 6, "latency_gap": 2.0, "latency_ps_points": 300,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; markdown tables to stdout, JSON to ``--out``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {a.dest: a.default for a in parser._actions}
        for key, value in QUICK.items():
            if getattr(args, key) == defaults[key]:
                setattr(args, key, value)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    if args.latency_n < 2 or args.ps_updates < 1 or args.frames < 1:
        parser.error("--latency-n >= 2, --ps-updates >= 1 and --frames >= 1 are required")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        # Beam's RunInference warns on every pass when its optional ModelManager is missing.
        handler.addFilter(lambda r: "memory usage cannot be fetched" not in r.getMessage())
    logger.setLevel(logging.INFO)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    root.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "platform": platform.platform(),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    timer = StageTimer()
    try:
        if "ps" in sections:
            results["ps"] = section_ps(args, root, timer)
        if "frames" in sections:
            results["frames"] = section_frames(args, root, timer)
        if "latency" in sections:
            results["latency"] = section_latency(args, root)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    results["targets"] = targets(results)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "streaming.json"
        path.write_text(json.dumps(results, indent=1, default=float))
        logger.info("wrote %s", path)
    sys.stdout.write(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
