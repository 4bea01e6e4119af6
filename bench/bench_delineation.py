"""Cost of delineating deformation areas with the U-Net, beside thresholding the hot spot map.

For synthetic hot spot grids of growing size (256, 512 and 1024 cells a side: 12.8 to
51.2 km at 50 m) it times, on the same grid in the same run:

* ``unet``: :func:`pipelines.hotspots.delineation.delineate` end to end — 256 x 256 tiles
  with 32 cells of overlap, the SavedModel through the in-process client (the daemon's
  embedded path), stitching, threshold 0.5, polygons and per-area point statistics;
* ``threshold``: the baseline of ``docs/models/delineation_report.md`` — cells where
  ``|density| >= t`` — outlined by the same polygon code.

The U-Net's cells F1 against the scene's true areas is printed beside each time, so the
price is shown with what it buys. Results go to stdout as a markdown table.

Example::

    .venv/bin/python bench/bench_delineation.py --sizes 256,512 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_delineation")


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up: tracing, caches
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    tp = float((truth & pred).sum())
    return 2 * tp / max(2 * tp + float((~truth & pred).sum()) + float((truth & ~pred).sum()), 1)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time both methods on one scene per size."""
    import rioxarray  # noqa: F401
    import xarray as xr
    from affine import Affine

    from pipelines.hotspots.delineation import (
        DelineationParams,
        delineate,
        mask_to_polygons,
        tile_windows,
    )
    from pipelines.hotspots.terrain import TerrainGrids
    from serving.clients.inprocess import InProcessInferenceClient
    from serving.evaluation.delineation import TEST_SEED
    from serving.synthetic.ada_scenes import DEFAULT_SCENE_PARAMS, make_scene

    client = InProcessInferenceClient.from_version_dir(args.model_dir, max_batch_rows=16)

    def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return client.predict(inputs)["probability"]

    params = DelineationParams()
    rows = []
    for size in args.sizes:
        scene_params = replace(DEFAULT_SCENE_PARAMS, size=size,
                               landslides=(size // 50, size // 25), bowls=(1, size // 128))
        scene = make_scene(np.random.default_rng([TEST_SEED, size]), scene_params)
        cell = scene_params.cell_m
        extent = size * cell
        transform = Affine(cell, 0.0, 0.0, 0.0, -cell, extent)
        coords = {"y": extent - (np.arange(size) + 0.5) * cell, "x": (np.arange(size) + 0.5) * cell}
        kde = xr.DataArray(scene.density, dims=("y", "x"), coords=coords)
        kde = kde.rio.write_crs("EPSG:32632").rio.write_transform(transform)
        terrain = TerrainGrids(scene.aspect_deg, scene.slope_deg, "synthetic")
        truth = scene.label.astype(bool)

        t_unet, result = _timed(
            lambda k=kde, t=terrain: delineate(k, predict, params=params, terrain=t),
            args.repeats,
        )

        def by_threshold(
            density: np.ndarray = scene.density, transform: Affine = transform, cell: float = cell
        ) -> tuple[np.ndarray, list]:
            mask = np.abs(density) >= args.density_threshold
            polygons = mask_to_polygons(mask, transform, min_area_m2=params.min_area_m2,
                                        simplify=params.simplify_cells * cell)
            return mask, polygons

        t_threshold, (mask, polygons) = _timed(by_threshold, args.repeats)
        tiles = len(tile_windows((size, size), 256, params.overlap))
        rows.append({
            "size": size, "km": extent / 1000, "tiles": tiles,
            "unet_s": t_unet, "unet_f1": _f1(truth, result.mask), "unet_areas": len(result.areas),
            "threshold_s": t_threshold, "threshold_f1": _f1(truth, mask),
            "threshold_areas": len(polygons), "true_areas": len(scene.kinds),
        })
        logger.info("size=%d unet %.2f s threshold %.3f s", size, t_unet, t_threshold)
    client.close()
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| grid (cells) | extent | tiles | U-Net s | U-Net F1 | U-Net areas | threshold s | "
        "threshold F1 | threshold areas | true areas |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['km']:.1f} km | {r['tiles']} | {r['unet_s']:.2f} | "
            f"{r['unet_f1']:.3f} | {r['unet_areas']} | {r['threshold_s']:.3f} | "
            f"{r['threshold_f1']:.3f} | {r['threshold_areas']} | {r['true_areas']} |"
        )
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("serving/models/ada_delineator/1"))
    parser.add_argument("--sizes", type=_ints, default=[256, 512, 1024],
                        help="grid sides in cells (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell")
    parser.add_argument(
        "--density-threshold", type=float, default=None,
        help="|density| threshold of the baseline (default: the one in "
        "docs/models/delineation_report.json)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    if args.density_threshold is None:
        import json

        report = json.loads(Path("docs/models/delineation_report.json").read_text())
        args.density_threshold = float(report["density_threshold"])
    print(markdown(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
