"""Beam RunInference model handlers over the project's inference clients.

The pipeline never talks to TensorFlow directly: a
:class:`pipelines.model_endpoint.ModelEndpoint` gives the process-wide client of the
configured backend (TF-Serving gRPC in production, REST, or an in-process SavedModel in
the embedded default), and the handlers here adapt it to Beam's ``ModelHandler`` so
``RunInference`` does the batching.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.model_endpoint import LoadedModel, ModelEndpoint, observed_predict


class _ClientModelHandler(ModelHandler[Any, PredictionResult, Any]):
    """Shared plumbing: load = fetch the cached client; batching bounds from the config."""

    def __init__(self, endpoint: ModelEndpoint, batch_size: int) -> None:
        # min_batch_size 1: a frame with three tiles must not wait for more to arrive.
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self._endpoint = endpoint
        self._batch_size = batch_size

    def load_model(self) -> LoadedModel:
        return self._endpoint.load()

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def share_model_across_processes(self) -> bool:
        return False

    def get_metrics_namespace(self) -> str:
        return f"insar_monitor.{self._endpoint.model_name}"

    def _predict(self, model: Any, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        # Timed per request for the inference latency histogram and error counter; a
        # request refused by an open circuit fails the pass, which the daemon retries
        # later with nothing committed (see observed_predict).
        return observed_predict(self._endpoint, model.client, inputs)


class UnrestModelHandler(_ClientModelHandler):
    """Examples: ``(224, 224)`` float32 wrapped-phase tiles -> unrest probability (float)."""

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        phase = np.stack([np.asarray(t, dtype=np.float32) for t in batch])
        probs = np.asarray(self._predict(model, {"phase": phase})["probability"], dtype=float)
        # The example is not echoed back: tiles are 200 kB each and nothing downstream needs
        # the pixels, only the probability (keeps shuffles small).
        return [PredictionResult(None, float(p), model.model_id) for p in probs]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(int(np.asarray(t).nbytes) for t in batch)


ROW_BUCKET = 256
"""Trend requests hold a multiple of this many series (padding rows are all NaN)."""
EPOCH_BUCKET = 32
"""... and a multiple of this many epochs (a new shape about once a year of 12-day data)."""


def _round_up(n: int, step: int) -> int:
    return max(step, -(-n // step) * step)


@dataclass(frozen=True)
class SeriesExample:
    """One PS series for the trend classifier: NaN-right-padded rows of equal length."""

    displacement_mm: np.ndarray
    time_days: np.ndarray


class TrendModelHandler(_ClientModelHandler):
    """Examples: :class:`SeriesExample` chunks (k series each) -> (k, 5) probabilities.

    Each example already holds many series (one update's points), so the model sees big
    batches even when updates are small; ``batch_size`` counts examples here.
    """

    def run_inference(
        self,
        batch: Sequence[SeriesExample],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        # Requests come in a few fixed shapes: TensorFlow's oneDNN kernels keep memory for
        # every input shape they see, and each PS update has its own point count and epoch
        # count, so unpadded requests made the daemon grow ~4 MB per new shape without end
        # (docs/BENCHMARKS.md, soak run). Padding is NaN, which the model reads as "no data".
        rows = sum(e.displacement_mm.shape[0] for e in batch)
        width = _round_up(max(e.displacement_mm.shape[1] for e in batch), EPOCH_BUCKET)
        disp = np.full((_round_up(rows, ROW_BUCKET), width), np.nan, dtype=np.float32)
        days = np.full_like(disp, np.nan)
        start = 0
        for e in batch:
            n, m = e.displacement_mm.shape
            disp[start : start + n, :m] = e.displacement_mm
            days[start : start + n, :m] = e.time_days
            start += n
        probs = np.asarray(
            self._predict(model, {"displacement_mm": disp, "time_days": days})["probabilities"],
            dtype=np.float32,
        )[:rows]
        out, start = [], 0
        for e in batch:
            n = e.displacement_mm.shape[0]
            out.append(PredictionResult(None, probs[start : start + n], model.model_id))
            start += n
        return out

    def get_num_bytes(self, batch: Sequence[SeriesExample]) -> int:
        return sum(int(e.displacement_mm.nbytes) * 2 for e in batch)
