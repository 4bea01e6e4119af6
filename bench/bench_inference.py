"""Throughput and latency of the served models through every inference path.

For each model found under ``--model-base`` (``unrest_detector``: 224x224 phase
patches; ``ps_trend_classifier``: NaN-padded displacement series; ``ada_delineator``:
256x256 hot spot density + aspect + slope tiles) it times:

* ``raw``: the SavedModel's ``serving_default`` concrete function called directly
  (numpy -> tensor -> numpy; the baseline, no client code);
* ``inprocess``: :class:`serving.clients.InProcessInferenceClient`;
* ``grpc`` / ``rest``: the gRPC and REST clients against :mod:`serving.local_server`
  started in this process on free ports.

Client and server share this process and its cores, so the remote numbers include
the server's work and are a lower bound for a separate TF-Serving host. Results are
written to stdout as a markdown table; progress goes to the log (stderr).

Examples
--------
::

    .venv/bin/python bench/bench_inference.py --model-base serving/models --repeats 5
    .venv/bin/python bench/bench_inference.py --model-base /tmp/tiny_models --repeats 3 \\
        --backends raw,inprocess,grpc
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_inference")

BACKENDS = ("raw", "inprocess", "grpc", "rest")


@dataclass(frozen=True)
class Row:
    """One measured (model, backend, batch) cell."""

    model: str
    backend: str
    batch: int
    median_ms: float
    p90_ms: float
    items_per_s: float


def make_inputs(model: str, batch: int, series_length: int, seed: int) -> dict[str, np.ndarray]:
    """Synthetic inputs of the contract's shapes: patches (batch, 224, 224) or series."""
    from serving.signatures import (
        DELINEATION_MODEL_NAME,
        DELINEATION_TILE,
        PATCH_SIZE,
        TREND_MODEL_NAME,
        UNREST_MODEL_NAME,
    )

    rng = np.random.default_rng(seed)
    if model == DELINEATION_MODEL_NAME:
        shape = (batch, DELINEATION_TILE, DELINEATION_TILE)
        return {
            "hotspot_density": rng.normal(0, 200, shape).astype(np.float32),
            "aspect_deg": rng.uniform(0, 360, shape).astype(np.float32),
            "slope_deg": np.full(shape, np.nan, np.float32),  # the default: aspect only
        }
    if model == UNREST_MODEL_NAME:
        phase = rng.uniform(-np.pi, np.pi, (batch, PATCH_SIZE, PATCH_SIZE)).astype(np.float32)
        phase[rng.random(phase.shape) < 0.1] = np.nan  # decorrelated pixels
        return {"phase": phase}
    if model == TREND_MODEL_NAME:
        t = np.cumsum(rng.uniform(6, 12, (batch, series_length)), axis=1).astype(np.float32)
        d = rng.normal(0, 3, (batch, series_length)).astype(np.float32)
        lengths = rng.integers(series_length // 2, series_length + 1, batch)
        pad = np.arange(series_length)[None, :] >= lengths[:, None]
        t[pad] = np.nan
        d[pad] = np.nan
        return {"displacement_mm": d, "time_days": t}
    raise ValueError(f"no input generator for model '{model}'")


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def raw_caller(model_base: Path, model: str) -> Callable[[dict[str, np.ndarray]], Any]:
    """The highest version's ``serving_default`` function, called with tensors."""
    import tensorflow as tf

    from serving.clients.inprocess import resolve_version

    version = resolve_version(model_base, model, None)
    loaded = tf.saved_model.load(str(model_base / model / str(version)))
    fn = loaded.signatures["serving_default"]

    def call(inputs: dict[str, np.ndarray]) -> Any:
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}

    call.loaded = loaded  # type: ignore[attr-defined]  # keep variables alive
    return call


def run(args: argparse.Namespace) -> list[Row]:
    """Measure every (model, backend, batch) cell requested by ``args``."""
    from serving.clients import make_client
    from serving.local_server import LocalServer, ServerConfig
    from serving.signatures import (
        DELINEATION_MODEL_NAME,
        SIGNATURES,
        TREND_MODEL_NAME,
        UNREST_MODEL_NAME,
    )

    base: Path = args.model_base
    models = [m for m in SIGNATURES if (base / m).is_dir()
              and (not args.models or m in args.models)]
    if not models:
        raise SystemExit(f"no model of {sorted(SIGNATURES)} under {base}: export them first")
    batches = {UNREST_MODEL_NAME: args.patch_batches, TREND_MODEL_NAME: args.series_batches,
               DELINEATION_MODEL_NAME: args.tile_batches}
    backends = args.backends
    rows: list[Row] = []
    server = None
    if {"grpc", "rest"} & set(backends):
        server = LocalServer(ServerConfig(base, models=dict.fromkeys(models))).start()
    try:
        for model in models:
            callers: dict[str, Callable[[dict[str, np.ndarray]], Any]] = {}
            clients = []
            for backend in backends:
                if backend == "raw":
                    callers[backend] = raw_caller(base, model)
                    continue
                address: dict[str, Any] = {
                    "inprocess": {"model_dir": base},
                    "grpc": {"target": server.grpc_target if server else ""},
                    "rest": {"url": server.rest_url if server else ""},
                }[backend]
                client = make_client(backend, model, timeout_s=120.0, **address)
                client.check_signature()
                clients.append(client)
                callers[backend] = client.predict
            for batch in batches[model]:
                inputs = make_inputs(model, batch, args.series_length, seed=batch)
                for backend, call in callers.items():
                    if (
                        backend == "rest"
                        and model in (UNREST_MODEL_NAME, DELINEATION_MODEL_NAME)
                        and batch > args.rest_max_patches
                    ):
                        logger.info("skip rest %s batch=%d (> --rest-max-patches)", model, batch)
                        continue
                    times = time_calls(lambda c=call, x=inputs: c(x), args.repeats, args.warmup)
                    median = statistics.median(times)
                    p90 = float(np.percentile(times, 90))
                    rows.append(Row(model, backend, batch, median * 1e3, p90 * 1e3, batch / median))
                    logger.info(
                        "model=%s backend=%s batch=%d median_ms=%.1f items_per_s=%.0f",
                        model,
                        backend,
                        batch,
                        median * 1e3,
                        batch / median,
                    )
            for client in clients:
                client.close()
    finally:
        if server is not None:
            server.stop()
    return rows


def markdown_table(rows: Sequence[Row]) -> str:
    """Rows as a markdown table."""
    lines = [
        "| model | backend | batch | median latency (ms) | p90 latency (ms) "
        "| throughput (items/s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.backend} | {r.batch} | {r.median_ms:.1f} | {r.p90_ms:.1f} "
        f"| {r.items_per_s:,.0f} |"
        for r in rows
    ]
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _backend_list(text: str) -> list[str]:
    chosen = [x for x in text.split(",") if x]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backends {unknown}; choose from {BACKENDS}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(
        description="Throughput/latency of the served models: raw TF call, in-process, "
        "gRPC and REST clients (against serving.local_server in this process).",
    )
    parser.add_argument(
        "--model-base",
        type=Path,
        default=Path("serving/models"),
        help="directory with <model>/<version>/ SavedModels",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell")
    parser.add_argument(
        "--models", type=lambda text: [m for m in text.split(",") if m], default=[],
        help="comma-separated served names to measure (default: every model found)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per cell")
    parser.add_argument(
        "--patch-batches",
        type=_int_list,
        default=[1, 16, 64],
        help="batch sizes for unrest_detector (patches)",
    )
    parser.add_argument(
        "--series-batches",
        type=_int_list,
        default=[256, 4096],
        help="batch sizes for ps_trend_classifier (series)",
    )
    parser.add_argument(
        "--tile-batches",
        type=_int_list,
        default=[1, 8],
        help="batch sizes for ada_delineator (256x256 tiles)",
    )
    parser.add_argument(
        "--series-length", type=int, default=120, help="epochs per padded series (default 120)"
    )
    parser.add_argument(
        "--rest-max-patches",
        type=int,
        default=64,
        help="skip REST above this patch batch (JSON of 224x224 floats is slow)",
    )
    parser.add_argument(
        "--backends",
        type=_backend_list,
        default=list(BACKENDS),
        help="comma-separated subset of raw,inprocess,grpc,rest",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the markdown table to stdout."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request at INFO: far too chatty for a benchmark.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    rows = run(args)
    sys.stdout.write(markdown_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
