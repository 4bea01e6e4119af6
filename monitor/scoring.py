"""Offline scoring: interferogram files to unrest decisions, EGMS CSVs to trend classes.

The logic behind ``insar-monitor score-interferogram`` and ``classify-ps``, shared with
the daemon and the evaluations. Inference goes through :mod:`serving.clients`, so the
same code scores in-process, against TF-Serving gRPC or REST.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitor.config import MonitorConfig
from pipelines.egms_csv import PSTable, read_egms_csv
from pipelines.raster_io import ProductError, read_wrapped_phase
from serving.signatures import TREND_CLASSES, TREND_MODEL_NAME, UNREST_MODEL_NAME

log = logging.getLogger(__name__)

TREND_OUTPUT_COLUMNS = ["pid", "label"] + [f"p_{c}" for c in TREND_CLASSES]


def make_model_client(config: MonitorConfig, model_name: str):  # -> InferenceClient
    """An inference client for ``model_name`` as the ``models`` section says.

    One request carries at most ``models.max_batch`` rows, for both models.
    """
    from pipelines.model_endpoint import ModelEndpoint

    return ModelEndpoint.from_config(
        config, model_name, max_batch=config.models.max_batch
    ).build_client()


def score_interferograms(
    paths: Iterable[Path], config: MonitorConfig, client: Any, quicklook_dir: Path | None = None
) -> Iterator[dict[str, Any]]:
    """Yield one result per path: the frame decision, or ``{"path", "error", "reason"}``.

    A bad file yields its error and scoring goes on with the next one. With
    ``quicklook_dir``, a PNG of each scored frame (phase and fired tiles) is written
    there and its path added to the result as ``quicklook``.
    """
    from serving.frame_scoring import score_frame

    def predict(patches: np.ndarray) -> np.ndarray:
        return np.asarray(client.predict({"phase": patches})["probability"], dtype=np.float64)

    for path in paths:
        try:
            raster = read_wrapped_phase(
                path,
                allowed_crs=config.products.allowed_crs,
                phase_tolerance_rad=config.products.phase_tolerance_rad,
            )
            result = score_frame(
                raster.phase,
                predict,
                threshold=config.unrest.threshold,
                transform=raster.transform,
                overlap=config.unrest.tile_overlap,
                min_valid_fraction=config.unrest.min_valid_fraction,
                min_firing_tiles=config.unrest.min_firing_tiles,
            )
        except ProductError as e:
            log.info("product refused", extra={"path": str(path), "reason": e.reason})
            yield {"path": str(path), "error": str(e), "reason": e.reason}
            continue
        except ValueError as e:
            yield {"path": str(path), "error": f"{path}: {e}", "reason": "invalid_raster"}
            continue
        record = {"path": str(path), **result.to_json_dict()}
        if quicklook_dir is not None:
            from monitor.quicklook import plot_frame_score

            png = Path(quicklook_dir) / (Path(path).name.split(".")[0] + ".png")
            record["quicklook"] = str(plot_frame_score(raster.phase, record, png,
                                                       title=Path(path).name))
        yield record


def valid_series(table: PSTable, min_epochs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-right-padded (displacement, time) rows for points with >= ``min_epochs`` values.

    Returns
    -------
    keep : ndarray of bool, shape (n,)
    displacement_mm, time_days : ndarray of float32, shape (n_keep, T)
    """
    from pipelines.series_packing import pack_series

    return pack_series(table.displacement_mm, table.time_days(), min_epochs)


def classify_ps_table(table: PSTable, config: MonitorConfig, client: Any) -> pd.DataFrame:
    """Classify every point with enough epochs; columns ``TREND_OUTPUT_COLUMNS``."""
    keep, disp, time = valid_series(table, config.products.min_epochs)
    dropped = int((~keep).sum())
    if dropped:
        log.warning(
            "points skipped: fewer valid epochs than products.min_epochs",
            extra={"count": dropped, "min_epochs": config.products.min_epochs},
        )
    if not keep.any():
        return pd.DataFrame(columns=TREND_OUTPUT_COLUMNS)
    out = client.predict({"displacement_mm": disp, "time_days": time})
    probs = np.asarray(out["probabilities"], dtype=np.float64)
    result = pd.DataFrame({"pid": table.pid[keep]})
    result["label"] = [TREND_CLASSES[i] for i in probs.argmax(axis=1)]
    for i, name in enumerate(TREND_CLASSES):
        result[f"p_{name}"] = probs[:, i].round(5)
    return result


def classify_ps_file(path: Path, config: MonitorConfig, client: Any) -> pd.DataFrame:
    """Read an EGMS-style CSV and classify its points (raises ProductError for a bad file)."""
    return classify_ps_table(
        read_egms_csv(path, min_epochs=config.products.min_epochs), config, client
    )


__all__ = [
    "TREND_MODEL_NAME",
    "TREND_OUTPUT_COLUMNS",
    "UNREST_MODEL_NAME",
    "classify_ps_file",
    "classify_ps_table",
    "make_model_client",
    "score_interferograms",
    "valid_series",
]
