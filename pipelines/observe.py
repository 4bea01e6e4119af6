"""A process-wide hook through which pipeline code reports timings to whoever listens.

The Beam transforms must not import the daemon's modules (they also run on Flink or
Dataflow workers, where the daemon's Prometheus registry does not exist). They call
:func:`inference`; the daemon installs a recorder with :func:`set_inference_recorder`
(:func:`monitor.metrics.record_inference`). Without one, the calls cost nothing. On a
cluster the runner's own metrics (Beam counters, RunInference's latency distributions)
are the source instead.
"""

from __future__ import annotations

from collections.abc import Callable

InferenceRecorder = Callable[[str, str, float, bool], None]
_inference_recorder: InferenceRecorder | None = None


def set_inference_recorder(recorder: InferenceRecorder | None) -> None:
    """Install (or with None remove) the recorder of inference calls."""
    global _inference_recorder
    _inference_recorder = recorder


def inference(model: str, backend: str, seconds: float, ok: bool) -> None:
    """Report one inference request: model name, backend, duration, success."""
    recorder = _inference_recorder
    if recorder is not None:
        recorder(model, backend, seconds, ok)
