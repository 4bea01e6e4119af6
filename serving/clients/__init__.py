"""Inference clients for the served models: one interface, three backends.

``make_client("grpc" | "rest" | "inprocess", model_name, ...)`` returns an
:class:`InferenceClient`; the pipeline never needs to know which. Backends are
imported lazily (each pulls in grpc / httpx / TensorFlow), so importing this package
is cheap. :class:`CircuitBreakerClient` puts any of them behind a
:class:`CircuitBreaker` so that a server outage fails calls fast
(:mod:`serving.clients.circuit`).

Examples
--------
>>> from serving.clients import make_client
>>> client = make_client("grpc", "unrest_detector", target="localhost:8500")  # doctest: +SKIP
>>> client.check_signature()  # doctest: +SKIP
>>> client.predict({"phase": patches})["probability"]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from serving.clients.base import (
    InferenceClient,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
    RetryPolicy,
    SignatureMismatchError,
    signature_differences,
)
from serving.clients.circuit import CircuitBreaker, CircuitBreakerClient, CircuitOpenError

if TYPE_CHECKING:
    from serving.clients.grpc_client import GrpcInferenceClient
    from serving.clients.inprocess import InProcessInferenceClient
    from serving.clients.rest_client import RestInferenceClient

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerClient",
    "CircuitOpenError",
    "GrpcInferenceClient",
    "InProcessInferenceClient",
    "InferenceClient",
    "InferenceError",
    "InferenceTimeoutError",
    "InvalidInputError",
    "ModelUnavailableError",
    "RestInferenceClient",
    "RetryPolicy",
    "SignatureMismatchError",
    "make_client",
    "signature_differences",
]

Backend = Literal["grpc", "rest", "inprocess"]

_LAZY = {
    "GrpcInferenceClient": "serving.clients.grpc_client",
    "RestInferenceClient": "serving.clients.rest_client",
    "InProcessInferenceClient": "serving.clients.inprocess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'serving.clients' has no attribute '{name}'")


def make_client(
    backend: Backend,
    model_name: str,
    *,
    target: str | None = None,
    url: str | None = None,
    model_dir: str | Path | None = None,
    version: int | None = None,
    timeout_s: float = 10.0,
    max_batch_rows: int | None = None,
    retry: RetryPolicy | None = None,
    **backend_options: Any,
) -> InferenceClient:
    """Build the client for ``backend``.

    Parameters
    ----------
    backend : {"grpc", "rest", "inprocess"}
        Transport. ``grpc`` needs ``target``, ``rest`` needs ``url``, ``inprocess``
        needs ``model_dir`` (the model base directory holding ``<model_name>/<v>/``).
    model_name : str
        Served model name (a key of ``serving.signatures.SIGNATURES``).
    target : str, optional
        gRPC ``host:port`` (TF-Serving ``--port``, 8500).
    url : str, optional
        REST base URL (TF-Serving ``--rest_api_port``, e.g. ``http://host:8501``).
    model_dir : str or Path, optional
        Model base directory for the in-process backend.
    version : int or None
        Pin a model version; None = latest.
    timeout_s : float
        Per-call deadline for the remote backends, in seconds (ignored in-process).
    max_batch_rows : int or None
        Split larger batches into calls of at most this many rows.
    retry : RetryPolicy, optional
        Backoff policy of the remote backends (ignored in-process).
    **backend_options
        Passed to the backend's constructor (e.g. ``retry_on_deadline`` for gRPC).

    Returns
    -------
    InferenceClient

    Raises
    ------
    ValueError
        Unknown backend or its address argument missing.
    """
    if backend == "grpc":
        if not target:
            raise ValueError("backend 'grpc' needs target='host:port' (TF-Serving --port)")
        from serving.clients.grpc_client import GrpcInferenceClient

        return GrpcInferenceClient(
            model_name,
            target,
            version=version,
            timeout_s=timeout_s,
            max_batch_rows=max_batch_rows,
            retry=retry,
            **backend_options,
        )
    if backend == "rest":
        if not url:
            raise ValueError("backend 'rest' needs url='http://host:port' (--rest_api_port)")
        from serving.clients.rest_client import RestInferenceClient

        return RestInferenceClient(
            model_name,
            url,
            version=version,
            timeout_s=timeout_s,
            max_batch_rows=max_batch_rows,
            retry=retry,
            **backend_options,
        )
    if backend == "inprocess":
        if model_dir is None:
            raise ValueError("backend 'inprocess' needs model_dir=<model base directory>")
        from serving.clients.inprocess import InProcessInferenceClient

        return InProcessInferenceClient(
            model_name,
            model_dir,
            version=version,
            max_batch_rows=max_batch_rows,
            **backend_options,
        )
    raise ValueError(f"unknown backend {backend!r}: use 'grpc', 'rest' or 'inprocess'")
