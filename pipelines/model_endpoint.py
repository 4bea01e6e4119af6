"""Where a served model is and how to reach it: a picklable endpoint and a per-process cache.

A :class:`ModelEndpoint` is a small, hashable description built from the ``models`` config
section. It builds an :class:`serving.clients.InferenceClient` for the configured backend
(TF-Serving gRPC or REST, or an in-process SavedModel). The pipeline's RunInference
handlers load it through :meth:`ModelEndpoint.load`, which caches one signature-checked
client per process so that the daemon's passes do not reload a SavedModel each time; the
CLI builds a fresh client with :meth:`ModelEndpoint.build_client`. Nothing here imports
Beam, so the scoring commands start quickly.

The cached client goes through the endpoint's :class:`serving.clients.CircuitBreaker`
(one per endpoint and process, ``models.circuit_failure_threshold`` and
``models.circuit_reset_s``): while the model server is down its requests fail at once with
``CircuitOpenError``, so a pass fails fast and the daemon retries it later, instead of every
pass spending retries and deadlines on a server known to be down. Transitions are reported
through :func:`pipelines.observe.circuit`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from serving.signatures import DELINEATION_MODEL_NAME, TREND_MODEL_NAME, UNREST_MODEL_NAME

_CLIENTS_LOCK = threading.Lock()

_CLIENTS: dict[ModelEndpoint, LoadedModel] = {}

_BREAKERS: dict[ModelEndpoint, Any] = {}

# gRPC's default ceiling of its reconnect backoff.
MAX_RECONNECT_BACKOFF_S = 120.0


@dataclass(frozen=True)
class ModelEndpoint:
    """Where one model is served and how to call it (hashable: the client-cache key)."""

    backend: str
    model_name: str
    model_base: str
    grpc_target: str
    rest_url: str
    version: int | None
    timeout_s: float
    max_retries: int
    max_batch: int
    circuit_failure_threshold: int = 5
    circuit_reset_s: float = 30.0

    @classmethod
    def from_config(
        cls, config: Any, model_name: str, *, max_batch: int | None = None
    ) -> ModelEndpoint:
        """The endpoint of ``model_name`` as the ``models`` section of a MonitorConfig says.

        ``max_batch`` overrides the rows per request chosen for the pipeline.
        """
        m = config.models
        version = {
            UNREST_MODEL_NAME: m.unrest_version,
            TREND_MODEL_NAME: m.trend_version,
            DELINEATION_MODEL_NAME: m.delineation_version,
        }.get(model_name)
        if max_batch is None:
            # Trend series are tiny (a few hundred floats): requests of 64 rows, right for
            # 224x224 tiles, would leave the model idle between calls. Image models (tiles,
            # 256x256 hot spot map tiles) keep models.max_batch.
            max_batch = max(m.max_batch, config.pipeline.trend_batch_size) if (
                model_name == TREND_MODEL_NAME
            ) else m.max_batch
        return cls(
            backend=m.backend,
            model_name=model_name,
            model_base=str(m.model_base),
            grpc_target=m.grpc_target,
            rest_url=m.rest_url,
            version=version,
            timeout_s=m.timeout_s,
            max_retries=m.max_retries,
            max_batch=max_batch,
            circuit_failure_threshold=m.circuit_failure_threshold,
            circuit_reset_s=m.circuit_reset_s,
        )

    def build_client(self) -> Any:
        """A new, unchecked client for this endpoint (the caller owns and closes it).

        A gRPC channel tries to reconnect at least every ``circuit_reset_s`` (gRPC's own
        backoff grows to 120 s), so the breaker's probe after an outage finds the server.
        """
        from serving.clients import RetryPolicy, make_client

        options: dict[str, Any] = {}
        if self.backend == "grpc":
            reconnect_ms = int(min(self.circuit_reset_s, MAX_RECONNECT_BACKOFF_S) * 1000)
            options["channel_options"] = [("grpc.max_reconnect_backoff_ms", reconnect_ms)]
        return make_client(
            self.backend,  # type: ignore[arg-type]
            self.model_name,
            model_dir=self.model_base,
            target=self.grpc_target,
            url=self.rest_url,
            version=self.version,
            timeout_s=self.timeout_s,
            max_batch_rows=self.max_batch,
            retry=RetryPolicy(max_attempts=self.max_retries + 1),
            **options,
        )

    @property
    def address(self) -> str:
        """Where the model is served, for messages: ``grpc:host:port``, ``rest:url``, ..."""
        where = {"grpc": self.grpc_target, "rest": self.rest_url}.get(self.backend, self.model_base)
        return f"{self.backend}:{where}"

    def breaker(self) -> Any:
        """This process's :class:`serving.clients.CircuitBreaker` of this endpoint.

        Created on first use; it outlives failed loads, so that a server down at start-up
        trips it too.
        """
        with _CLIENTS_LOCK:
            return self._breaker_locked()

    def _breaker_locked(self) -> Any:
        breaker = _BREAKERS.get(self)
        if breaker is None:
            from pipelines import observe
            from serving.clients.circuit import CircuitBreaker

            model, backend = self.model_name, self.backend

            def report(old: str, new: str) -> None:
                observe.circuit(model, backend, new)

            breaker = CircuitBreaker(
                f"{model}@{self.address}",
                failure_threshold=self.circuit_failure_threshold,
                reset_timeout_s=self.circuit_reset_s,
                listener=report,
            )
            _BREAKERS[self] = breaker
        return breaker

    def load(self) -> LoadedModel:
        """The process-wide client for this endpoint, created (and signature-checked) once.

        The client goes through :meth:`breaker`; the signature check does too.

        Raises
        ------
        serving.clients.InferenceError
            The server is unreachable (``CircuitOpenError`` while the circuit is open) or
            serves a model that breaks the contract.
        """
        from serving.clients.circuit import CircuitBreakerClient

        with _CLIENTS_LOCK:
            loaded = _CLIENTS.get(self)
            if loaded is None:
                client = CircuitBreakerClient(self.build_client(), self._breaker_locked())
                try:
                    metadata = client.check_signature()
                except BaseException:
                    client.close()
                    raise
                loaded = LoadedModel(client, self.model_name, int(metadata["version"]))
                _CLIENTS[self] = loaded
            return loaded


def observed_predict(
    endpoint: ModelEndpoint, client: Any, inputs: dict[str, Any]
) -> dict[str, Any]:
    """``client.predict(inputs)``, timed and reported through :func:`pipelines.observe.inference`.

    A request refused by an open circuit never reached the server: it is not counted as a
    request (the circuit metrics count it). Every error propagates, so that the pass fails
    and the daemon retries it later with nothing committed.
    """
    import time

    from pipelines import observe
    from serving.clients.circuit import CircuitOpenError

    start = time.perf_counter()
    ok = refused = False
    try:
        outputs = client.predict(inputs)
        ok = True
        return outputs
    except CircuitOpenError:
        refused = True
        raise
    finally:
        if not refused:
            observe.inference(
                endpoint.model_name, endpoint.backend, time.perf_counter() - start, ok
            )


def is_loaded(endpoint: ModelEndpoint) -> bool:
    """Whether this process holds a ready client for ``endpoint`` (readiness probes)."""
    with _CLIENTS_LOCK:
        return endpoint in _CLIENTS


@dataclass(frozen=True)
class LoadedModel:
    """A ready client and the model version it answered with at start-up."""

    client: Any
    name: str
    version: int

    @property
    def model_id(self) -> str:
        return f"{self.name}@v{self.version}"
