"""Beam RunInference model handlers over the project's inference clients.

The pipeline never talks to TensorFlow directly: a
:class:`pipelines.model_endpoint.ModelEndpoint` gives the process-wide client of the
configured backend (TF-Serving gRPC in production, REST, or an in-process SavedModel in
the embedded default), and the handlers here adapt it to Beam's ``ModelHandler`` so
``RunInference`` does the batching.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines import observe
from pipelines.model_endpoint import LoadedModel, ModelEndpoint


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
        # Timed here, per request, for the inference latency histogram and error counter.
        start = time.perf_counter()
        ok = False
        try:
            outputs = model.client.predict(inputs)
            ok = True
            return outputs
        finally:
            observe.inference(
                self._endpoint.model_name, self._endpoint.backend,
                time.perf_counter() - start, ok,
            )


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
        width = max(e.displacement_mm.shape[1] for e in batch)

        def pad(a: np.ndarray) -> np.ndarray:
            out = np.full((a.shape[0], width), np.nan, dtype=np.float32)
            out[:, : a.shape[1]] = a
            return out

        disp = np.concatenate([pad(e.displacement_mm) for e in batch])
        days = np.concatenate([pad(e.time_days) for e in batch])
        probs = np.asarray(
            self._predict(model, {"displacement_mm": disp, "time_days": days})["probabilities"],
            dtype=np.float32,
        )
        out, start = [], 0
        for e in batch:
            n = e.displacement_mm.shape[0]
            out.append(PredictionResult(None, probs[start : start + n], model.model_id))
            start += n
        return out

    def get_num_bytes(self, batch: Sequence[SeriesExample]) -> int:
        return sum(int(e.displacement_mm.nbytes) * 2 for e in batch)
