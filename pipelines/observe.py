"""A process-wide hook through which pipeline code reports timings to whoever listens.

The Beam transforms must not import the daemon's modules (they also run on Flink or
Dataflow workers, where the daemon's Prometheus registry does not exist). They call
:func:`inference`; the daemon installs a recorder with :func:`set_inference_recorder`
(:func:`monitor.metrics.record_inference`). Without one, the calls cost nothing. On a
cluster the runner's own metrics (Beam counters, RunInference's latency distributions)
are the source instead. Circuit-breaker transitions of the model clients
(:mod:`serving.clients.circuit`) reach :func:`circuit` the same way, recorded by
:func:`monitor.metrics.record_circuit_state` once installed with
:func:`set_circuit_recorder`.
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


CircuitRecorder = Callable[[str, str, str], None]
_circuit_recorder: CircuitRecorder | None = None


def set_circuit_recorder(recorder: CircuitRecorder | None) -> None:
    """Install (or with None remove) the recorder of circuit-breaker transitions."""
    global _circuit_recorder
    _circuit_recorder = recorder


def circuit(model: str, backend: str, state: str) -> None:
    """Report that the circuit of ``model`` on ``backend`` entered ``state``.

    ``state`` is ``"closed"``, ``"open"`` or ``"half_open"``; called once per transition.
    """
    recorder = _circuit_recorder
    if recorder is not None:
        recorder(model, backend, state)
