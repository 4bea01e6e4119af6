"""Bounded soak run: the real daemon at an observatory's message rate, watched for drift.

Everything real, in one process: an embedded Kafka 0.9 broker
(:class:`monitor.embedded_kafka.EmbeddedKafka`, two JVM children), the daemon
(:class:`monitor.daemon.Daemon`, ``run()`` in a thread, default configuration: FnApiRunner
passes, models in-process, hot spots, the alert stage with its SQLite store and webhook
worker, the metrics server on a free port), a producer thread publishing on a schedule, and
an independent consumer thread that timestamps every output on the detection and
dead-letter topics.

Load (defaults, per minute): ``--ifg-rate`` 6 interferograms (``--frame-size`` 300 px
square LiCSAR-layout GeoTIFFs by reference, round-robin over ``--volcanoes`` 5 volcanoes,
each with its own frame, place and behaviour: inflating, intermittent or quiet; dates
advance 12 days per frame) and ``--ps-rate`` 4 PS updates (Parquet by reference, round-robin
over ``--ps-tiles`` 4 store tiles of ``--ps-points`` 300 points; each tile starts with a
history of ``--ps-history`` epochs published during the warm-up, and every update adds one
epoch; one tile holds a subsidence bowl). Publication times are evenly spaced per kind with
+-20 % jitter. Every product is written to disk before the clock starts.

Sampled every ``--sample-s`` seconds (``soak_samples.csv``): this process's RSS (psutil when
installed, else ``VmRSS`` of ``/proc/self/status``), the broker JVMs' RSS, the Python
allocator's block count (``sys.getallocatedblocks``, cheap) and, with ``--tracemalloc``,
traced Python memory; threads and open file descriptors; CPU cores used by this process in
the interval; messages published, outputs seen, outstanding (published, no output yet);
the daemon's own consumer-lag gauge from :data:`monitor.metrics.REGISTRY` (the daemon
refreshes it at most every 10 s); passes and their durations (the daemon's ``on_pass``).
Per message (``soak_messages.csv``): publish -> output latency as the independent consumer
saw it (from just before the publish call to the poll that returned the output), and the
daemon's own ``produced_at - input_published_at`` (``published_at`` has whole seconds).

Output: the two CSVs, ``soak_passes.csv``, ``soak.json`` (summary), ``soak.png`` (RSS with
linear fits, latency per message, lag) and a printed summary. The memory verdict compares
the least-squares RSS slope over the second half of the run (the first half is warm-up:
caches, allocator pools, the PS store and alert store filling) with ``--slope-threshold``
(MB/hour); the numbers are printed either way.

Examples
--------
::

    .venv/bin/python bench/bench_soak.py --out build/bench/soak --png docs/benchmarks/soak.png
    .venv/bin/python bench/bench_soak.py --minutes 1
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_soak")

PS_DATASET = "soak"
FIRST_DAY = date(2023, 1, 3)
REVISIT_DAYS = 12
# Behaviour of volcano v is BEHAVIOURS[v % 3]: Mogi volume change (m3) per frame k.
BEHAVIOURS: tuple[tuple[str, Callable[[int], float]], ...] = (
    ("inflating", lambda k: 2e6 + 4e5 * k),
    ("intermittent", lambda k: 5e6 if k % 3 == 1 else 0.0),
    ("quiet", lambda k: 0.0),
)
MB = 1024.0 * 1024.0

Ref = tuple[str, int, int]  # (topic, partition, offset) of a published input


# --------------------------------------------------------------------------- process probes
def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, bytes (0 when it is gone)."""
    try:
        import psutil  # optional

        return int(psutil.Process(None if pid == "self" else int(pid)).memory_info().rss)
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def cpu_ticks(pid: int | str = "self") -> int:
    """utime + stime of one process, clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def child_pids() -> list[int]:
    """Direct children of this process (the broker's JVMs)."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.append(int(entry.name))
    return out


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def os_threads() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# --------------------------------------------------------------------------- products
@dataclass(frozen=True)
class Product:
    """One product to publish: a file on disk and how to describe it."""

    kind: str  # "interferogram" | "ps_update"
    path: Path
    label: str
    volcano_id: str = ""
    tile_id: str = ""


def frame_id_of(v: int) -> str:
    return f"{(v % 175) + 1:03d}{'AD'[v % 2]}_{10000 + 37 * v:05d}_{130000 + 101 * v:06d}"


def write_frames(
    root: Path, rng: np.random.Generator, volcanoes: int, per_volcano: int, size: int
) -> list[list[Product]]:
    """Per volcano, ``per_volcano`` frames with advancing dates (index 0: warm-up)."""
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    pixel_m = DEFAULT_PARAMS.pixel_m
    east, north = 0.55 * size * pixel_m, -0.45 * size * pixel_m
    out: list[list[Product]] = []
    for v in range(volcanoes):
        _, volume = BEHAVIOURS[v % len(BEHAVIOURS)]
        fid = frame_id_of(v)
        frames = []
        for k in range(per_volcano):
            dv = volume(k)
            sources = [MogiSource(east, north, depth=3000.0, volume_change=dv)] if dv else []
            frame = generate_frame(
                rng, (size, size), sources, DEFAULT_PARAMS,
                origin_lonlat=(-20.0 + 1.5 * v, 60.0 - 0.8 * v),
            )
            primary = FIRST_DAY + timedelta(days=REVISIT_DAYS * k)
            pair = f"{primary:%Y%m%d}_{primary + timedelta(days=REVISIT_DAYS):%Y%m%d}"
            path = root / fid / pair / f"{pair}.geo.diff_pha.tif"
            write_wrapped_phase_geotiff(path, frame.phase, frame.transform)
            frames.append(Product("interferogram", path, f"{fid}_{pair}", volcano_id=f"V{v:02d}"))
        out.append(frames)
    return out


def write_ps_tiles(
    root: Path,
    rng: np.random.Generator,
    tiles: int,
    points: int,
    history: int,
    increments: int,
) -> list[list[Product]]:
    """Per store tile: the history file (index 0) then one file per added epoch."""
    from pipelines.product_fetch import PSBatch, write_ps_parquet
    from serving.signatures import TREND_CLASSES
    from serving.synthetic.ps_series import PSSeriesParams, generate_ps_series

    total = history + increments
    days = np.arange(total, dtype=float) * REVISIT_DAYS
    dates = tuple(FIRST_DAY + timedelta(days=int(d)) for d in days)
    params = PSSeriesParams()
    out: list[list[Product]] = []
    for t in range(tiles):
        tile_id = f"S{t:03d}"
        # Dense like urban PS (~300 points per km2), so the 150 m Gi* band has neighbours.
        lon = 15.0 + 0.2 * t + rng.uniform(0.0, 0.012, points)
        lat = 45.0 + rng.uniform(0.0, 0.009, points)
        disp = np.stack([
            generate_ps_series(i % len(TREND_CLASSES), rng, params, time_days=days)[1]
            for i in range(points)
        ]).astype(np.float32)
        if t == 0:  # a subsidence bowl, ~-30 mm/yr at its centre, ~300 m across
            cx, cy = lon.mean(), lat.mean()
            r_m = np.hypot((lon - cx) * 78_000.0, (lat - cy) * 111_000.0)
            disp -= (30.0 * np.exp(-((r_m / 300.0) ** 2)))[:, None] * (days / 365.25)[None, :]
        disp[rng.random(disp.shape) < 0.01] = np.nan
        pids = np.array([f"{tile_id}-{i:05d}" for i in range(points)])
        quality = np.full(points, 0.9, np.float32)
        files = []
        spans = [(0, history)] + [(history + k, history + k + 1) for k in range(increments)]
        for k, (a, b) in enumerate(spans):
            path = root / PS_DATASET / tile_id / f"{tile_id}_u{k:04d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_ps_parquet(path, PSBatch(pids, lon, lat, dates[a:b], disp[:, a:b], quality))
            files.append(Product("ps_update", path, path.stem, tile_id=tile_id))
        out.append(files)
    return out


def to_outgoing(p: Product) -> Any:
    """Build and validate the message now (so ``published_at`` is the publication time)."""
    from monitor.publishing import interferogram_message, outgoing, ps_update_message

    if p.kind == "interferogram":
        return outgoing(interferogram_message(
            p.path, volcano_id=p.volcano_id, region_id="soak-region"
        ))
    return outgoing(ps_update_message(p.path, dataset_id=PS_DATASET, tile_id=p.tile_id))


def schedule(
    rng: np.random.Generator, seconds: float, ifg_per_min: float, ps_per_min: float
) -> list[tuple[float, str]]:
    """(offset s, kind) of every publication: evenly spaced per kind, +-20 % jitter."""
    events: list[tuple[float, str]] = []
    for kind, rate, phase in (("interferogram", ifg_per_min, 0.5), ("ps_update", ps_per_min, 0.2)):
        if rate <= 0:
            continue
        gap = 60.0 / rate
        for i in range(int(seconds / gap) + 2):
            t = (i + phase) * gap + rng.uniform(-0.2, 0.2) * gap
            if 0.0 <= t < seconds:
                events.append((t, kind))
    return sorted(events)


# --------------------------------------------------------------------------- output watcher
@dataclass
class Output:
    at: float  # perf_counter when the watcher's poll returned it
    detection: bool  # False: a dead letter
    daemon_latency_s: float | None  # produced_at - input_published_at, if both given


class Watcher(threading.Thread):
    """Independent consumer of the detection and dead-letter topics; keeps timestamps only."""

    def __init__(self, bootstrap: str, detections: str, dlq: str, partitions: int) -> None:
        super().__init__(name="soak-watcher", daemon=True)
        self.bootstrap, self.detections, self.dlq = bootstrap, detections, dlq
        self.partitions = partitions
        self.outputs: dict[Ref, Output] = {}
        self.lock = threading.Lock()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import kafka
        from kafka.structs import TopicPartition

        try:
            consumer = kafka.KafkaConsumer(
                bootstrap_servers=self.bootstrap, api_version=(0, 9), group_id=None,
                enable_auto_commit=False, fetch_max_wait_ms=20, client_id="soak-watcher",
                max_partition_fetch_bytes=16 * 1024 * 1024,
            )
            tps = [TopicPartition(t, p) for t in (self.detections, self.dlq)
                   for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            for tp in tps:
                consumer.position(tp)
        except BaseException as e:
            self.error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop_event.is_set():
                batches = consumer.poll(timeout_ms=50)
                now = time.perf_counter()
                for tp, records in batches.items():
                    for record in records:
                        payload = json.loads(record.value)
                        src = payload.get("source", {})
                        ref = (src.get("topic"), src.get("partition"), src.get("offset"))
                        lat = _seconds_between(
                            payload.get("input_published_at"), payload.get("produced_at")
                        )
                        with self.lock:
                            self.outputs.setdefault(
                                ref, Output(now, tp.topic == self.detections, lat)
                            )
        finally:
            consumer.close()

    def start_watching(self) -> Watcher:
        self.start()
        self._ready.wait(60)
        if self.error is not None:
            raise RuntimeError(f"output watcher failed to start: {self.error}")
        return self

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def snapshot(self) -> dict[Ref, Output]:
        with self.lock:
            return dict(self.outputs)

    def wait_for(self, refs: Sequence[Ref], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if all(r in self.outputs for r in refs):
                    return True
            time.sleep(0.1)
        return False


def _seconds_between(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return (b - a).total_seconds()
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- the run
@dataclass
class Sent:
    kind: str
    label: str
    ref: Ref
    t: float  # perf_counter just before the publish call


@dataclass
class Soak:
    """State shared by the producer, the sampler and the report."""

    t0: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    passes: list[tuple[float, float, int]] = field(default_factory=list)  # (t_end, s, records)
    samples: list[dict[str, Any]] = field(default_factory=list)
    producer_error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_topics(broker: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """``broker.create_topics`` with retries (a fresh 0.9 broker reports no brokers at first)."""
    from pipelines.kafka_io import KafkaIOError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            broker.create_topics(names, 3)
            return
        except KafkaIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def daemon_lag(group: str) -> float | None:
    """Sum of the daemon's consumer-lag gauge over its input partitions (None: not set yet)."""
    from monitor.metrics import CONSUMER_LAG

    total, seen = 0.0, False
    for metric in CONSUMER_LAG.collect():
        for s in metric.samples:
            if s.labels.get("group") == group:
                total += s.value
                seen = True
    return total if seen else None


def producer(
    soak: Soak,
    events: Sequence[tuple[float, str]],
    queues: dict[str, Iterator[Product]],
    publisher: Any,
    topics: dict[str, str],
    stop: threading.Event,
) -> None:
    try:
        for offset, kind in events:
            if stop.wait(max(0.0, soak.t0 + offset - time.perf_counter())):
                return
            product = next(queues[kind])
            item = to_outgoing(product)
            start = time.perf_counter()
            partition, off = publisher.publish(topics[kind], item.value, key=item.key)
            with soak.lock:
                soak.sent.append(Sent(kind, product.label, (topics[kind], partition, off), start))
    except BaseException as e:  # reported by the main thread
        soak.producer_error = e


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]  # minus idle and iowait


def cpu_state(brokers: Sequence[int]) -> list[float]:
    """[wall, own ticks, broker ticks, machine busy ticks] now."""
    return [time.perf_counter(), float(cpu_ticks("self")),
            float(sum(cpu_ticks(p) for p in brokers)), float(machine_busy_ticks())]


def take_sample(
    soak: Soak, watcher: Watcher, group: str, cpu_prev: list[float], brokers: list[int]
) -> dict[str, Any]:
    import tracemalloc

    hz = os.sysconf("SC_CLK_TCK")
    state = cpu_state(brokers)
    now = state[0]
    wall = max(1e-9, now - cpu_prev[0])
    own, kids, busy = ((a - b) / hz / wall for a, b in zip(state[1:], cpu_prev[1:], strict=True))
    cpu_prev[:] = state
    outputs = watcher.snapshot()
    with soak.lock:
        sent = list(soak.sent)
        passes = list(soak.passes)
    t_prev = soak.samples[-1]["t_s"] if soak.samples else None
    window = [s for (te, s, _) in passes if t_prev is None or te > t_prev]
    seen = [outputs[s.ref] for s in sent if s.ref in outputs]
    recent = [
        outputs[s.ref].at - s.t for s in sent
        if s.ref in outputs and (t_prev is None or outputs[s.ref].at - soak.t0 > t_prev)
    ]
    return {
        "t_s": round(now - soak.t0, 3),
        "rss_mb": round(rss_bytes() / MB, 2),
        "broker_rss_mb": round(sum(rss_bytes(p) for p in brokers) / MB, 2),
        "py_alloc_blocks": sys.getallocatedblocks(),
        "traced_mb": (round(tracemalloc.get_traced_memory()[0] / MB, 2)
                      if tracemalloc.is_tracing() else ""),
        "threads": os_threads(),
        "open_fds": open_fds(),
        "cpu_cores": round(own, 3),
        "broker_cpu_cores": round(kids, 3),
        "others_cpu_cores": round(max(0.0, busy - own - kids), 3),
        "published": len(sent),
        "detections": sum(1 for o in seen if o.detection),
        "dead_letters": sum(1 for o in seen if not o.detection),
        "outstanding": len(sent) - len(seen),
        "daemon_lag": daemon_lag(group),
        "passes": len(passes),
        "pass_s_max": round(max(window), 3) if window else "",
        "latency_s_max": round(max(recent), 3) if recent else "",
    }


@contextmanager
def running_daemon(
    root: Path, args: argparse.Namespace, soak: Soak
) -> Iterator[tuple[Any, Any, Any, Watcher, dict[str, str]]]:
    """Broker, topics, daemon (prepared, not yet running), publisher, watcher."""
    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.embedded_kafka import EmbeddedKafka
    from pipelines.kafka_io import KafkaPublisher

    base = root / "run"
    shutil.rmtree(base, ignore_errors=True)
    broker = EmbeddedKafka((base / "kafka").resolve(), num_partitions=3).start()
    try:
        config = load_config(environ={
            "INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "INSAR_MONITOR__KAFKA__API_VERSION": "0.9",
            "INSAR_MONITOR__STORAGE__STATE_DIR": str(base / "state"),
            "INSAR_MONITOR__PIPELINE__POLL_INTERVAL_S": str(args.poll_interval),
            "INSAR_MONITOR__METRICS__PORT": "0",
        })
        t = config.topics
        create_topics(broker, [t.interferograms, t.ps_updates, t.detections, t.dlq,
                               t.hotspots, t.alerts])

        def on_pass(report: Any) -> None:
            with soak.lock:
                soak.passes.append(
                    (time.perf_counter() - soak.t0, float(report.seconds), int(report.records))
                )

        daemon = Daemon(config, on_pass=on_pass)
        watcher = Watcher(broker.bootstrap, t.detections, t.dlq, 3).start_watching()
        publisher = KafkaPublisher(daemon.ctx.kafka)
        try:
            yield config, broker, daemon, watcher, {
                "interferogram": t.interferograms, "ps_update": t.ps_updates,
            }
        finally:
            publisher.close()
            watcher.stop()
            daemon.close()
    finally:
        broker.stop()


def soak_run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    seconds = args.minutes * 60.0
    events = schedule(rng, seconds, args.ifg_rate, args.ps_rate)
    n_ifg = sum(1 for _, k in events if k == "interferogram")
    n_ps = len(events) - n_ifg
    per_volcano = (n_ifg + args.volcanoes - 1) // args.volcanoes + 1
    per_tile = (n_ps + args.ps_tiles - 1) // args.ps_tiles
    t = time.perf_counter()
    frames = write_frames(root / "frames", rng, args.volcanoes, per_volcano, args.frame_size)
    tiles = write_ps_tiles(root / "ps", rng, args.ps_tiles, args.ps_points, args.ps_history,
                           per_tile)
    logger.info("wrote %d frames and %d PS files in %.1f s",
                sum(map(len, frames)), sum(map(len, tiles)), time.perf_counter() - t)

    def round_robin(groups: list[list[Product]]) -> Iterator[Product]:
        k = 1  # index 0 of every group is the warm-up product
        while True:
            for g in groups:
                if k < len(g):
                    yield g[k]
            k += 1

    queues = {"interferogram": round_robin(frames), "ps_update": round_robin(tiles)}
    soak = Soak()
    result: dict[str, Any] = {}
    with running_daemon(root, args, soak) as (config, _broker, daemon, watcher, topics):
        from pipelines.kafka_io import KafkaPublisher

        brokers = child_pids()
        rss0 = rss_bytes()
        t = time.perf_counter()
        daemon.prepare()
        result["rss_before_models_mb"] = rss0 / MB
        result["model_load_s"] = time.perf_counter() - t
        errors: list[BaseException] = []

        def run_daemon() -> None:
            try:
                daemon.run()
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=run_daemon, name="soak-daemon", daemon=True)
        thread.start()
        # Warm-up: every tile's history and one frame per volcano, then wait for them all.
        t = time.perf_counter()
        publisher = KafkaPublisher(daemon.ctx.kafka)
        warm_refs = []
        for p in [g[0] for g in tiles] + [g[0] for g in frames]:
            item = to_outgoing(p)
            part, off = publisher.publish(topics[p.kind], item.value, key=item.key)
            warm_refs.append((topics[p.kind], part, off))
        if not watcher.wait_for(warm_refs, 300):
            raise RuntimeError("warm-up products got no output within 300 s")
        result["warmup_s"] = time.perf_counter() - t
        result["warmup_products"] = len(warm_refs)
        result["rss_after_warmup_mb"] = rss_bytes() / MB
        logger.info("warm-up: %d products in %.1f s; soak for %.1f min: %d interferograms, "
                    "%d PS updates", len(warm_refs), result["warmup_s"], args.minutes, n_ifg,
                    n_ps)
        stop = threading.Event()
        with soak.lock:
            soak.t0 = time.perf_counter()
            soak.passes.clear()
        prod = threading.Thread(
            target=producer, args=(soak, events, queues, publisher, topics, stop),
            name="soak-producer", daemon=True,
        )
        prod.start()
        cpu_prev = cpu_state(brokers)
        soak.samples.append(take_sample(soak, watcher, config.kafka.group_id, cpu_prev, brokers))
        k = 0
        drain_deadline = None
        try:
            while True:
                k += 1
                time.sleep(max(0.0, soak.t0 + k * args.sample_s - time.perf_counter()))
                soak.samples.append(take_sample(soak, watcher, config.kafka.group_id, cpu_prev,
                                                brokers))
                if errors or soak.producer_error:
                    break
                if not prod.is_alive():
                    if soak.samples[-1]["outstanding"] == 0:
                        break
                    drain_deadline = drain_deadline or time.perf_counter() + args.drain_s
                    if time.perf_counter() > drain_deadline:
                        logger.warning("%d messages still without output after %.0f s",
                                       soak.samples[-1]["outstanding"], args.drain_s)
                        break
        finally:
            stop.set()
            prod.join(30)
            daemon.request_stop()
            thread.join(120)
            publisher.close()
        if soak.producer_error:
            raise RuntimeError(f"producer failed: {soak.producer_error}")
        if errors:
            raise RuntimeError(f"daemon failed: {type(errors[0]).__name__}: {errors[0]}")
        result["daemon"] = {
            "passes": daemon.stats.passes, "failed_passes": daemon.stats.failed_passes,
            "records": daemon.stats.records, "alert_revisions": daemon.stats.alert_revisions,
        }
        outputs = watcher.snapshot()
    result["messages"] = [
        {
            "kind": s.kind, "label": s.label, "published_t_s": round(s.t - soak.t0, 3),
            "output_t_s": (round(outputs[s.ref].at - soak.t0, 3) if s.ref in outputs else ""),
            "latency_s": (round(outputs[s.ref].at - s.t, 3) if s.ref in outputs else ""),
            "outcome": ("missing" if s.ref not in outputs
                        else "detection" if outputs[s.ref].detection else "dead_letter"),
            "daemon_latency_s": (outputs[s.ref].daemon_latency_s
                                 if s.ref in outputs and outputs[s.ref].daemon_latency_s
                                 is not None else ""),
        }
        for s in soak.sent
    ]
    result["passes"] = [{"t_end_s": round(te, 3), "seconds": round(s, 3), "records": r}
                        for te, s, r in soak.passes]
    result["samples"] = soak.samples
    return result


# --------------------------------------------------------------------------- analysis
def linear_fit(t_s: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope per hour, its standard error per hour, intercept) of a least-squares line."""
    if len(t_s) < 3 or np.ptp(t_s) == 0:
        return float("nan"), float("nan"), float("nan")
    h = t_s / 3600.0
    (slope, intercept), cov = np.polyfit(h, y, 1, cov=True)
    return float(slope), float(np.sqrt(cov[0, 0])), float(intercept)


def summarise(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    samples = result["samples"]
    t = np.array([s["t_s"] for s in samples], float)
    rss = np.array([s["rss_mb"] for s in samples], float)
    broker = np.array([s["broker_rss_mb"] for s in samples], float)
    half = t >= t[-1] / 2.0 if len(t) else np.zeros(0, bool)
    slope_all = linear_fit(t, rss)
    slope_half = linear_fit(t[half], rss[half])
    broker_half = linear_fit(t[half], broker[half])
    msgs = result["messages"]
    lat = {k: [m["latency_s"] for m in msgs if m["latency_s"] != "" and (k == "all"
               or m["kind"] == k)] for k in ("interferogram", "ps_update", "all")}

    def stats(v: list[float]) -> dict[str, float | int | None]:
        if not v:
            return {"n": 0, "median_s": None, "p95_s": None, "max_s": None}
        return {"n": len(v), "median_s": statistics.median(v),
                "p95_s": float(np.percentile(v, 95)), "max_s": max(v)}

    pass_s = [p["seconds"] for p in result["passes"]]
    lags = [s["daemon_lag"] for s in samples if s["daemon_lag"] is not None]
    threshold = args.slope_threshold
    ok = bool(np.isfinite(slope_half[0]) and slope_half[0] < threshold)
    return {
        "minutes": args.minutes,
        "published": len(msgs),
        "published_by_kind": {k: sum(1 for m in msgs if m["kind"] == k)
                              for k in ("interferogram", "ps_update")},
        "detections": sum(1 for m in msgs if m["outcome"] == "detection"),
        "dead_letters": sum(1 for m in msgs if m["outcome"] == "dead_letter"),
        "missing": sum(1 for m in msgs if m["outcome"] == "missing"),
        "latency": {k: stats(v) for k, v in lat.items()},
        "passes": len(pass_s),
        "pass_s": stats(pass_s),
        "daemon_lag_max": max(lags) if lags else None,
        "outstanding_max": max((s["outstanding"] for s in samples), default=0),
        "rss_start_mb": float(rss[0]) if len(rss) else None,
        "rss_end_mb": float(rss[-1]) if len(rss) else None,
        "rss_max_mb": float(rss.max()) if len(rss) else None,
        "rss_slope_mb_h_all": slope_all[0],
        "rss_slope_mb_h_all_se": slope_all[1],
        "rss_slope_mb_h_second_half": slope_half[0],
        "rss_slope_mb_h_second_half_se": slope_half[1],
        "broker_rss_start_mb": float(broker[0]) if len(broker) else None,
        "broker_rss_end_mb": float(broker[-1]) if len(broker) else None,
        "broker_rss_slope_mb_h_second_half": broker_half[0],
        "threads_start_end": [samples[0]["threads"], samples[-1]["threads"]] if samples else [],
        "fds_start_end": [samples[0]["open_fds"], samples[-1]["open_fds"]] if samples else [],
        "py_blocks_start_end": ([samples[0]["py_alloc_blocks"], samples[-1]["py_alloc_blocks"]]
                                if samples else []),
        "cpu_cores_mean": (statistics.fmean(s["cpu_cores"] for s in samples[1:])
                           if len(samples) > 1 else None),
        "broker_cpu_cores_mean": (statistics.fmean(s["broker_cpu_cores"] for s in samples[1:])
                                  if len(samples) > 1 else None),
        "others_cpu_cores_mean": (statistics.fmean(s["others_cpu_cores"] for s in samples[1:])
                                  if len(samples) > 1 else None),
        "slope_threshold_mb_h": threshold,
        "memory_growth_detected": not ok,
        "verdict": (f"memory growth: none detected (second-half RSS slope "
                    f"{slope_half[0]:+.1f} MB/h < {threshold:g} MB/h)" if ok else
                    f"memory growth: second-half RSS slope {slope_half[0]:+.1f} MB/h is not "
                    f"below {threshold:g} MB/h"),
    }


def plot(result: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = np.array([s["t_s"] for s in samples], float) / 60.0
    rss = np.array([s["rss_mb"] for s in samples], float)
    fig, axes = plt.subplots(3, 1, figsize=(8.5, 8.0), sharex=True)
    ax = axes[0]
    ax.plot(t, rss, lw=1.2, color="C0", label="daemon process RSS")
    for mask, name, style, key in (
        (np.ones_like(t, bool), "whole run", ":", "rss_slope_mb_h_all"),
        (t >= t[-1] / 2.0, "second half", "--", "rss_slope_mb_h_second_half"),
    ):
        slope, _, intercept = linear_fit(t[mask] * 60.0, rss[mask])
        if np.isfinite(slope):
            ax.plot(t[mask], intercept + slope * t[mask] / 60.0, style, color="C3", lw=1.2,
                    label=f"fit, {name}: {summary[key]:+.1f} MB/h")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"Soak: {summary['minutes']:g} min, {summary['published']} messages, "
                 f"{summary['detections']} detections", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1]
    for kind, color, name in (("interferogram", "C0", "interferogram"),
                              ("ps_update", "C2", "PS update")):
        pts = [(m["published_t_s"] / 60.0, m["latency_s"]) for m in result["messages"]
               if m["kind"] == kind and m["latency_s"] != ""]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.scatter(x, y, s=12, color=color, label=f"{name} (publish -> output)")
    if result["passes"]:
        ax.scatter([p["t_end_s"] / 60.0 for p in result["passes"]],
                   [p["seconds"] for p in result["passes"]], s=5, marker="x", color="0.5",
                   label="pass duration")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)

    ax = axes[2]
    lag = [(s["t_s"] / 60.0, s["daemon_lag"]) for s in samples if s["daemon_lag"] is not None]
    if lag:
        x, y = zip(*lag, strict=True)
        ax.step(x, y, where="post", color="C1", label="daemon's consumer-lag gauge (messages)")
    ax.step(t, [s["outstanding"] for s in samples], where="post", color="C4", lw=1,
            label="published, no output yet (independent consumer)")
    ax.set_ylabel("messages")
    ax.set_xlabel("minutes since the first scheduled publication")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def print_summary(s: dict[str, Any], result: dict[str, Any], args: argparse.Namespace) -> None:
    lat = s["latency"]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"soak: {s['minutes']:g} min at {args.ifg_rate:g} interferograms/min "
          f"({args.frame_size}x{args.frame_size} px, {args.volcanoes} volcanoes) + "
          f"{args.ps_rate:g} PS updates/min ({args.ps_points} points, {args.ps_tiles} tiles, "
          f"+1 epoch each on {args.ps_history}); poll interval {args.poll_interval:g} s")
    print(f"warm-up: models {result['model_load_s']:.1f} s, {result['warmup_products']} "
          f"products {result['warmup_s']:.1f} s; RSS before models "
          f"{result['rss_before_models_mb']:.0f} MB, after warm-up "
          f"{result['rss_after_warmup_mb']:.0f} MB")
    print(f"messages: {s['published']} published ({s['published_by_kind']['interferogram']} "
          f"interferograms, {s['published_by_kind']['ps_update']} PS updates); "
          f"{s['detections']} detections, {s['dead_letters']} dead letters, "
          f"{s['missing']} without output")
    print(f"daemon: {result['daemon']['passes']} committed passes, "
          f"{result['daemon']['failed_passes']} failed, {result['daemon']['alert_revisions']} "
          f"alert revisions; pass median {fmt(s['pass_s']['median_s'])} s, max "
          f"{fmt(s['pass_s']['max_s'])} s")
    print(f"CPU (mean cores): this process {fmt(s['cpu_cores_mean'])}, broker JVMs "
          f"{fmt(s['broker_cpu_cores_mean'])}, other processes on the machine "
          f"{fmt(s['others_cpu_cores_mean'])}")
    print("latency publish -> output (s):   n  median    p95    max")
    for k, name in (("interferogram", "interferogram"), ("ps_update", "PS update"),
                    ("all", "all")):
        v = lat[k]
        print(f"  {name:<28} {v['n']:>3} {fmt(v['median_s']):>7} {fmt(v['p95_s']):>6} "
              f"{fmt(v['max_s']):>6}")
    print(f"lag: daemon gauge max {fmt(s['daemon_lag_max'], '.0f')} messages, outstanding max "
          f"{s['outstanding_max']}")
    print(f"RSS: start {fmt(s['rss_start_mb'], '.0f')} MB, end {fmt(s['rss_end_mb'], '.0f')} MB, "
          f"max {fmt(s['rss_max_mb'], '.0f')} MB; slope whole run "
          f"{fmt(s['rss_slope_mb_h_all'], '+.1f')} +- {fmt(s['rss_slope_mb_h_all_se'], '.1f')} "
          f"MB/h, second half {fmt(s['rss_slope_mb_h_second_half'], '+.1f')} +- "
          f"{fmt(s['rss_slope_mb_h_second_half_se'], '.1f')} MB/h (+- one standard error)")
    print(f"broker JVMs RSS: start {fmt(s['broker_rss_start_mb'], '.0f')} MB, end "
          f"{fmt(s['broker_rss_end_mb'], '.0f')} MB, second-half slope "
          f"{fmt(s['broker_rss_slope_mb_h_second_half'], '+.1f')} MB/h")
    print(f"threads start/end {s['threads_start_end']}, open fds start/end {s['fds_start_end']}, "
          f"Python allocated blocks start/end {s['py_blocks_start_end']}")
    print(s["verdict"])


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Soak the real daemon on an embedded broker at an observatory's rate; "
        "sample memory, latency and lag.",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="scheduled publishing time")
    p.add_argument("--ifg-rate", type=float, default=6.0, help="interferograms per minute")
    p.add_argument("--ps-rate", type=float, default=4.0, help="PS updates per minute")
    p.add_argument("--frame-size", type=int, default=300, help="frame side, pixels")
    p.add_argument("--volcanoes", type=int, default=5)
    p.add_argument("--ps-tiles", type=int, default=4)
    p.add_argument("--ps-points", type=int, default=300)
    p.add_argument("--ps-history", type=int, default=100, help="epochs before the soak")
    p.add_argument("--poll-interval", type=float, default=2.0, help="daemon poll interval, s")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--drain-s", type=float, default=120.0,
                   help="after the last publication, wait at most this long for outputs")
    p.add_argument("--slope-threshold", type=float, default=20.0,
                   help="MB/hour: second-half RSS slope below it = no memory growth detected")
    p.add_argument("--tracemalloc", action="store_true",
                   help="also sample traced Python memory (slows everything down)")
    p.add_argument("--out", type=Path, default=Path("build/bench/soak"),
                   help="directory for the CSVs, soak.json and soak.png")
    p.add_argument("--png", type=Path, help="also write the figure here")
    p.add_argument("--workdir", type=Path, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--seed", type=int, default=11)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_s <= 0 or args.volcanoes < 1 or args.ps_tiles < 1:
        parser.error("--minutes, --sample-s, --volcanoes and --ps-tiles must be positive")
    if args.ps_history < 10:
        parser.error("--ps-history must be at least 10 epochs (products.min_epochs)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        # Beam's RunInference warns on every pass when its optional ModelManager is missing.
        handler.addFilter(lambda r: "memory usage cannot be fetched" not in r.getMessage())
    logger.setLevel(logging.INFO)
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        result = soak_run(args, root)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    summary = summarise(result, args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "soak_samples.csv", result["samples"])
    write_csv(args.out / "soak_messages.csv", result["messages"])
    write_csv(args.out / "soak_passes.csv", result["passes"])
    (args.out / "soak.json").write_text(json.dumps({
        "started": started,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "summary": summary,
        "warmup": {k: result[k] for k in ("model_load_s", "warmup_s", "warmup_products",
                                          "rss_before_models_mb", "rss_after_warmup_mb")},
        "daemon": result["daemon"],
    }, indent=1, default=float))
    plot(result, summary, args.out / "soak.png")
    if args.png is not None:
        plot(result, summary, args.png)
    print_summary(summary, result, args)
    print(f"wrote {args.out}/soak_samples.csv, soak_messages.csv, soak_passes.csv, soak.json, "
          f"soak.png" + (f" and {args.png}" if args.png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
