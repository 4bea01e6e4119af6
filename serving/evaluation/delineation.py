"""Evaluate the ADA delineation U-Net on held-out synthetic scenes, beside its baselines.

Metrics are the hot spot paper's (its eq. 3-6): precision, recall, F1 and IoU of the cells
called anomalous, pooled over every cell of the test set (and, as a second view, averaged
over scenes). Compared on the same scenes:

* the served U-Net as the daemon runs it by default (hot spot map + aspect), with aspect
  and slope, and without a DEM (hot spot map alone); and, as a control of whether it uses
  the terrain at all, with each scene's aspect swapped for another scene's;
* **threshold**: cells where ``|hot spot density| >= t``, with ``t`` chosen on a separate
  validation set for the best F1 — what one gets from the hot spot map without a model;
* **clustered**: the project's own clustered ADAs (significant Gi* points faster than the
  stability threshold, :func:`pipelines.hotspots.areas.cluster_areas`) rasterised — the
  areas the alert rules used before this model.

Also per area: the share of true areas found (>= half their cells called), by kind
(landslide, bowl) and size, and the false areas per scene. The paper's published table
(real data, with a Google Earth image as extra input that the project does not have) is
printed beside the numbers; it is context, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from serving.evaluation.metrics import write_json
from serving.synthetic.ada_scenes import DEFAULT_SCENE_PARAMS, KIND_CODES, SceneParams, SceneSet

log = logging.getLogger(__name__)

TEST_SEED = 20261121
THRESHOLD = 0.5
SMALL_AREA_CELLS = 100  # 0.25 km2 at 50 m cells

PAPER_TABLE: tuple[dict[str, Any], ...] = (
    {"id": "IV", "model": "U-Net", "inputs": "Google Earth RGB + hot spot map",
     "precision": 0.829, "recall": 0.807, "f1": 0.812, "iou": 0.689},
    {"id": "XII", "model": "U-Net", "inputs": "Google Earth RGB + hot spot map + slope",
     "precision": 0.828, "recall": 0.812, "f1": 0.814, "iou": 0.693},
    {"id": "XIII", "model": "U-Net", "inputs": "Google Earth RGB + hot spot map + aspect",
     "precision": 0.822, "recall": 0.835, "f1": 0.823, "iou": 0.705},
    {"id": "XV", "model": "U-Net", "inputs": "Google Earth RGB + hot spot map + slope + aspect",
     "precision": 0.810, "recall": 0.836, "f1": 0.818, "iou": 0.697},
    {"id": "III", "model": "U-Net", "inputs": "Google Earth RGB + InSAR deformation points",
     "precision": 0.843, "recall": 0.775, "f1": 0.806, "iou": 0.676},
)
"""Tables 1 and 2 of the hot spot paper (upper Yellow River, real data, 12,872 test tiles)."""

# name -> (uses aspect, uses slope): the U-Net configurations evaluated.
UNET_CONFIGS: dict[str, tuple[bool, bool]] = {
    "unet_hotspot_aspect": (True, False),
    "unet_hotspot_aspect_slope": (True, True),
    "unet_hotspot_only": (False, False),
}


def segmentation_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Pooled cell counts and the paper's four scores (eq. 3-6), plus per-scene means.

    Parameters
    ----------
    truth, pred : ndarray of bool, shape (n, H, W)

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``iou`` (pooled) and
        ``scene_mean`` {precision, recall, f1, iou} over scenes where the score is defined.
    """
    truth = np.asarray(truth, bool)
    pred = np.asarray(pred, bool)
    axes = tuple(range(1, truth.ndim))
    tp_s = (truth & pred).sum(axis=axes).astype(float)
    fp_s = (~truth & pred).sum(axis=axes).astype(float)
    fn_s = (truth & ~pred).sum(axis=axes).astype(float)

    def scores(tp: Any, fp: Any, fn: Any) -> dict[str, Any]:
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
            f1 = 2 * tp / (2 * tp + fp + fn)
            iou = tp / (tp + fp + fn)
        return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}

    pooled = scores(tp_s.sum(), fp_s.sum(), fn_s.sum())
    per_scene = scores(tp_s, fp_s, fn_s)
    return {
        "tp": int(tp_s.sum()),
        "fp": int(fp_s.sum()),
        "fn": int(fn_s.sum()),
        **{k: _num(v) for k, v in pooled.items()},
        "scene_mean": {
            k: _num(np.nanmean(v)) if np.isfinite(v).any() else None
            for k, v in per_scene.items()
        },
    }


def _num(value: Any) -> float | None:
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def area_scores(data: SceneSet, pred: np.ndarray) -> dict[str, Any]:
    """Per-area recall (>= half an area's cells called) by kind and size, false areas per scene."""
    found: dict[str, list[bool]] = {"landslide": [], "bowl": [], "small": [], "large": []}
    names = {code: name for name, code in KIND_CODES.items()}
    false_areas = 0
    for i in range(len(pred)):
        inst = data.instances[i]
        for k, code in enumerate(data.kinds[i], start=1):
            if code == 0:
                continue
            cells = inst == k
            size = int(cells.sum())
            if size == 0:
                continue
            hit = bool(pred[i][cells].mean() >= 0.5)
            found[names[int(code)]].append(hit)
            found["small" if size < SMALL_AREA_CELLS else "large"].append(hit)
        labels, n = ndimage.label(pred[i])
        if n:
            touched = np.unique(labels[(labels > 0) & (data.label[i] > 0)])
            false_areas += n - touched.size
    out: dict[str, Any] = {
        f"recall_{name}": {"found": int(sum(v)), "n": len(v),
                           "rate": round(sum(v) / len(v), 4) if v else None}
        for name, v in found.items()
    }
    out["false_areas_per_scene"] = round(false_areas / max(len(pred), 1), 3)
    return out


def unet_predictor(model_dir: Path) -> Callable[[SceneSet, bool, bool], np.ndarray]:
    """A function scoring whole scenes with the SavedModel (in-process client, as the daemon)."""
    from serving.clients.inprocess import InProcessInferenceClient

    client = InProcessInferenceClient.from_version_dir(model_dir, max_batch_rows=16)

    def predict(data: SceneSet, aspect: bool, slope: bool) -> np.ndarray:
        nan = np.full(data.density.shape[1:], np.nan, np.float32)
        out = []
        for start in range(0, len(data.density), 16):
            sl = slice(start, start + 16)
            n = len(data.density[sl])
            out.append(client.predict({
                "hotspot_density": data.density[sl].astype(np.float32),
                "aspect_deg": data.aspect_deg[sl].astype(np.float32) if aspect
                else np.broadcast_to(nan, (n, *nan.shape)).copy(),
                "slope_deg": data.slope_deg[sl].astype(np.float32) if slope
                else np.broadcast_to(nan, (n, *nan.shape)).copy(),
            })["probability"])
        return np.concatenate(out)

    return predict


def best_density_threshold(data: SceneSet) -> tuple[float, float]:
    """The ``|density|`` threshold with the best pooled F1 on ``data``, and that F1."""
    magnitude = np.abs(data.density)
    truth = data.label.astype(bool)
    candidates = np.quantile(magnitude, np.linspace(0.5, 0.9995, 300))
    best = (float(candidates[0]), -1.0)
    for t in candidates:
        f1 = segmentation_scores(truth, magnitude >= t)["f1"] or 0.0
        if f1 > best[1]:
            best = (float(t), float(f1))
    return best


def _markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# ADA delineation U-Net: evaluation on synthetic scenes",
        "",
        f"Model `{rep['model_dir']}` (sha256 `{rep['model_sha256'][:16]}…`, "
        f"{rep['n_parameters']:,} parameters). Test set: {rep['n_test']} held-out scenes of "
        f"256 x 256 cells of 50 m (seed {rep['seed']}), {rep['label_share']:.1%} of cells in "
        f"deformation areas; threshold {rep['threshold']}. Baseline threshold on "
        f"abs(density) = {rep['density_threshold']:.1f} per km2, chosen on {rep['n_val']} "
        f"validation scenes (seed {rep['val_seed']}). "
        "Reproduce: `insar-monitor evaluate delineation`.",
        "",
        "## Cells (pooled over the test set; per-scene means in the JSON)",
        "",
        "| method | inputs | precision | recall | F1 | IoU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rep["methods"].items():
        s = row["cells"]
        lines.append(
            f"| {name} | {row['inputs']} | {s['precision']} | {s['recall']} | {s['f1']} | "
            f"{s['iou']} |"
        )
    lines += [
        "",
        "The paper's table (real data, Yellow River; its inputs include a Google Earth image):",
        "",
        "| paper model | inputs | precision | recall | F1 | IoU |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rep["paper_table_real_data"]:
        lines.append(
            f"| {row['id']} {row['model']} | {row['inputs']} | {row['precision']} | "
            f"{row['recall']} | {row['f1']} | {row['iou']} |"
        )
    lines += [
        "",
        "## Areas",
        "",
        "| method | landslides found | bowls found | small (< 0.25 km2) | large | "
        "false areas / scene |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rep["methods"].items():
        a = row["areas"]

        def cell(key: str, a: dict[str, Any] = a) -> str:
            v = a[key]
            return f"{v['rate']:.1%} ({v['found']}/{v['n']})" if v["rate"] is not None else "-"

        lines.append(
            f"| {name} | {cell('recall_landslide')} | {cell('recall_bowl')} | "
            f"{cell('recall_small')} | {cell('recall_large')} | {a['false_areas_per_scene']} |"
        )
    lines += [
        "",
        f"Speed: {rep['tiles_per_second']:.1f} tiles of 256 x 256 per second in-process "
        "on this machine (CPU).",
        "",
        "![examples](delineation_examples.png)",
        "",
    ]
    return "\n".join(lines)


def plot_examples(
    data: SceneSet, probs: np.ndarray, density_threshold: float, path: Path, n: int = 4
) -> Path:
    """Hot spot map, aspect, U-Net probability and the three masks for ``n`` test scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Spread over the scenes with the most labelled cells: large bowls first, landslides
    # further down; empty scenes make dull examples.
    order = np.argsort(-data.label.reshape(len(data.label), -1).sum(axis=1).astype(np.int64))
    picks = order[np.linspace(0, min(len(order), 150) - 1, n).astype(int)]
    fig, axes = plt.subplots(n, 4, figsize=(15, 3.8 * n), constrained_layout=True)
    extent = (0, 12.8, 0, 12.8)
    for row, i in zip(np.atleast_2d(axes), picks, strict=False):
        truth = data.label[i]
        limit = float(np.percentile(np.abs(data.density[i]), 99.5)) or 1.0
        row[0].imshow(data.density[i], cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent)
        row[0].set_title("hot spot map (z-weighted density)")
        row[1].imshow(data.aspect_deg[i].astype(np.float32), cmap="twilight", vmin=0, vmax=360,
                      extent=extent)
        row[1].set_title("aspect (twilight: 0-360 deg)")
        row[2].imshow(probs[i], cmap="magma", vmin=0, vmax=1, extent=extent)
        row[2].set_title("U-Net probability")
        overlay = np.zeros((*truth.shape, 3))
        overlay[..., 1] = truth
        overlay[..., 0] = probs[i] >= THRESHOLD
        overlay[..., 2] = np.abs(data.density[i]) >= density_threshold
        row[3].imshow(overlay, extent=extent)
        row[3].set_title("truth green, U-Net red, threshold blue\n(yellow: truth + U-Net, "
                         "white: all three)", fontsize=9)
        for ax in row:
            ax.contour(np.flipud(truth), [0.5], colors="lime", linewidths=0.7, extent=extent)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("ADA delineation on held-out synthetic scenes (12.8 km tiles)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def evaluate(
    model_dir: Path,
    report_dir: Path,
    *,
    n_test: int = 400,
    n_val: int = 150,
    seed: int = TEST_SEED,
    params: SceneParams = DEFAULT_SCENE_PARAMS,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a SavedModel and write ``delineation_report.{json,md}`` and the examples PNG.

    Parameters
    ----------
    model_dir : Path
        ``.../ada_delineator/<version>``.
    report_dir : Path
        Output directory.
    n_test, n_val : int
        Test scenes, and validation scenes for the baseline threshold.
    seed : int
        Test-set seed (validation: ``seed + 1``); must differ from the training seeds.
    params : SceneParams
        Generator ranges (the training ones).
    workers : int
        Generation processes.
    progress : bool
        Progress bars.

    Returns
    -------
    dict
        The report written to ``delineation_report.json``.
    """
    from serving.export import directory_sha256
    from serving.synthetic.ada_scenes import generate_scenes

    test = generate_scenes(n_test, seed, params, with_clusters=True, workers=workers,
                           progress=progress)
    val = generate_scenes(n_val, seed + 1, params, workers=workers, progress=progress)
    density_threshold, val_f1 = best_density_threshold(val)
    truth = test.label.astype(bool)

    predict = unet_predictor(model_dir)
    methods: dict[str, Any] = {}
    probs_default = None
    rate = 0.0
    for name, (aspect, slope) in UNET_CONFIGS.items():
        t0 = time.perf_counter()
        probs = predict(test, aspect, slope)
        if name == "unet_hotspot_aspect":
            probs_default = probs
            rate = len(probs) / (time.perf_counter() - t0)
        pred = probs >= THRESHOLD
        inputs = "hot spot map" + (" + aspect" if aspect else "") + (" + slope" if slope else "")
        methods[name] = {"inputs": inputs, "cells": segmentation_scores(truth, pred),
                         "areas": area_scores(test, pred)}
    # Control: each scene with its neighbour's terrain. If the scores do not move, the
    # network does not use aspect at all.
    wrong = predict(test._replace(aspect_deg=np.roll(test.aspect_deg, 1, axis=0)), True, False)
    methods["unet_hotspot_wrong_aspect"] = {
        "inputs": "hot spot map + another scene's aspect (control)",
        "cells": segmentation_scores(truth, wrong >= THRESHOLD),
        "areas": area_scores(test, wrong >= THRESHOLD),
    }
    by_threshold = np.abs(test.density) >= density_threshold
    methods["threshold_hotspot_map"] = {
        "inputs": f"abs(hot spot map) >= {density_threshold:.1f} per km2",
        "cells": segmentation_scores(truth, by_threshold),
        "areas": area_scores(test, by_threshold),
    }
    clustered = test.clustered.astype(bool)
    methods["clustered_adas"] = {
        "inputs": "Gi* points (clusters of significant points)",
        "cells": segmentation_scores(truth, clustered),
        "areas": area_scores(test, clustered),
    }
    report: dict[str, Any] = {
        "model_dir": str(model_dir),
        "model_sha256": directory_sha256(Path(model_dir)),
        "n_parameters": predict_parameters(model_dir),
        "seed": seed,
        "val_seed": seed + 1,
        "n_test": n_test,
        "n_val": n_val,
        "threshold": THRESHOLD,
        "label_share": float(truth.mean()),
        "density_threshold": density_threshold,
        "density_threshold_val_f1": val_f1,
        "data": "synthetic (serving.synthetic.ada_scenes, DEFAULT_SCENE_PARAMS)",
        "methods": methods,
        "paper_table_real_data": list(PAPER_TABLE),
        "tiles_per_second": rate,
    }
    report_dir = Path(report_dir)
    write_json(report, report_dir / "delineation_report.json")
    (report_dir / "delineation_report.md").write_text(_markdown(report))
    assert probs_default is not None
    plot_examples(test, probs_default, density_threshold, report_dir / "delineation_examples.png")
    return report


def predict_parameters(model_dir: Path) -> int:
    from serving.clients.inprocess import InProcessInferenceClient

    return int(InProcessInferenceClient.from_version_dir(model_dir).servable.parameter_count())


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m serving.evaluation.delineation MODEL_DIR REPORT_DIR``."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("report_dir", type=Path)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--seed", type=int, default=TEST_SEED)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rep = evaluate(args.model_dir, args.report_dir, n_test=args.n_test, seed=args.seed)
    for name, row in rep["methods"].items():
        s = row["cells"]
        print(f"{name:28s} P {s['precision']} R {s['recall']} F1 {s['f1']} IoU {s['iou']}")


if __name__ == "__main__":
    main()
