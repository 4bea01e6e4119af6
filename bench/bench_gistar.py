"""Seconds and memory of our Gi* against PySAL esda.G_Local on the same points.

Points in a square (default 50 km, metres), uniform or clustered (dense PS clusters over a
sparse background), with signed LOS velocities (mm/yr, negative mean, subsidence bowls).
For each size, in the same run:

* ``ours``: :func:`pipelines.hotspots.gistar.gi_star` (cKDTree neighbour sums, chunked),
  best of ``--repeats``, including the neighbour search;
* ``esda``: ``libpysal.weights.DistanceBand(xy, threshold, binary=True)`` then
  ``esda.G_Local(y, w, transform="B", star=True, permutations=0)``, once, only up to
  ``--esda-max`` points (it needs ~216 s and ~10 GB at 1M points). esda is given the
  velocities shifted to be non-negative: its z has the wrong sign for a negative mean
  (pysal/esda#112), while ours does not change under a shift, so the max |z difference|
  column compares like with like.

Each measurement runs in a fresh process (spawned), so peak RSS is that computation's own.
Prints a markdown table to stdout.

Example::

    .venv/bin/python bench/bench_gistar.py                      # 100k, 300k, 1M; esda <= 300k
    .venv/bin/python bench/bench_gistar.py --sizes 100000 --esda-max 100000 --repeats 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scene:
    variant: str
    n: int
    side_m: float
    seed: int


def make_points(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (n, 2) in metres and signed velocities (n,) in mm/yr."""
    rng = np.random.default_rng([scene.seed, scene.n, scene.variant == "clustered"])
    n, side = scene.n, scene.side_m
    if scene.variant == "uniform":
        xy = rng.uniform(0.0, side, size=(n, 2))
    elif scene.variant == "clustered":
        # 60 % of the points in 1000 Gaussian clusters (sigma 300 m, towns and rock
        # outcrops), the rest uniform: neighbourhoods up to ~4x denser than the mean.
        n_clustered = int(0.6 * n)
        centres = rng.uniform(0.0, side, size=(1000, 2))
        members = centres[rng.integers(0, 1000, n_clustered)]
        clustered = members + rng.normal(0.0, 300.0, size=(n_clustered, 2))
        # Wrapped into the square (clipping would stack points on its edges).
        xy = np.concatenate([np.mod(clustered, side),
                             rng.uniform(0.0, side, size=(n - n_clustered, 2))])
    else:
        raise ValueError(f"unknown variant {scene.variant!r}")
    velocity = rng.normal(-1.5, 3.0, n)
    # Subsidence bowls (-30 mm/yr) and a few uplift areas (+10 mm/yr), 400 m across.
    for centre, rate in zip(rng.uniform(0.0, side, size=(60, 2)),
                            np.r_[np.full(45, -30.0), np.full(15, 10.0)], strict=True):
        velocity[np.hypot(*(xy - centre).T) < 200.0] += rate
    return xy, velocity


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def run_ours(scene: Scene, distance: float, repeats: int) -> dict:
    from pipelines.hotspots.gistar import gi_star

    xy, velocity = make_points(scene)
    best = float("inf")
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = gi_star(xy, velocity, distance)
        best = min(best, time.perf_counter() - t0)
    return {
        "seconds": best, "z": result.z, "mean_neighbours": float(result.n_neighbours.mean()),
        "peak_rss_mb": _peak_rss_mb(), "mean_velocity": float(velocity.mean()),
    }


def run_esda(scene: Scene, distance: float) -> dict:
    import warnings

    import esda
    import libpysal

    xy, velocity = make_points(scene)
    y = velocity - velocity.min()  # non-negative, see the module docstring
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        w = libpysal.weights.DistanceBand(xy, threshold=distance, binary=True,
                                          silence_warnings=True)
        t1 = time.perf_counter()
        g = esda.G_Local(y, w, transform="B", star=True, permutations=0)
        t2 = time.perf_counter()
    return {"weights_seconds": t1 - t0, "g_local_seconds": t2 - t1, "z": np.asarray(g.Zs),
            "peak_rss_mb": _peak_rss_mb()}


def in_fresh_process(fn, *args):
    """Run ``fn(*args)`` in a new spawned interpreter (own memory, own peak RSS)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--variants", nargs="+", default=["uniform", "clustered"],
                        choices=["uniform", "clustered"])
    parser.add_argument("--side", type=float, default=50_000.0, help="square side, metres")
    parser.add_argument("--distance", type=float, default=150.0, help="Gi* band, metres")
    parser.add_argument("--esda-max", type=int, default=300_000,
                        help="run esda only up to this many points")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (best kept)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    print(f"{args.side / 1000:g} km square, band {args.distance:g} m, signed velocities; "
          f"ours best of {args.repeats}, esda once (weights + G_Local); "
          f"{os.cpu_count()} CPUs\n")
    print("| points | layout | mean W_i | ours (s) | ours peak RSS (MB) "
          "| esda weights (s) | esda G_Local (s) | esda total (s) | esda peak RSS (MB) "
          "| speed-up | max abs z difference |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        for n in args.sizes:
            scene = Scene(variant, n, args.side, args.seed)
            ours = in_fresh_process(run_ours, scene, args.distance, args.repeats)
            cells = [f"{n:,}", variant, f"{ours['mean_neighbours']:.1f}",
                     f"{ours['seconds']:.2f}", f"{ours['peak_rss_mb']:,.0f}"]
            if n <= args.esda_max:
                theirs = in_fresh_process(run_esda, scene, args.distance)
                total = theirs["weights_seconds"] + theirs["g_local_seconds"]
                diff = float(np.abs(theirs["z"] - ours["z"]).max())
                cells += [f"{theirs['weights_seconds']:.1f}", f"{theirs['g_local_seconds']:.1f}",
                          f"{total:.1f}", f"{theirs['peak_rss_mb']:,.0f}",
                          f"{total / ours['seconds']:.0f}x", f"{diff:.1e}"]
            else:
                cells += ["-"] * 6
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
