"""TF-Serving REST client (``/v1/models/<name>[/versions/<v>]:predict`` and ``/metadata``).

Uses the columnar request format ``{"signature_name": ..., "inputs": {name: nested
lists}}`` and reads ``{"outputs": ...}``; TF-Serving returns a bare list instead of a
dict when the signature has a single output, which is mapped back to its name.
No-data values travel as the JSON literals ``NaN`` / ``Infinity`` that TF-Serving's
REST API reads and writes (Python's ``json`` does both). REST is the slow path for
224x224 patches (text encoding of every float); prefer gRPC for them.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from serving.clients.base import (
    InferenceClient,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    Metadata,
    ModelUnavailableError,
    RetryPolicy,
    call_with_retries,
    parse_signature_def_map,
)
from serving.signatures import SIGNATURE_NAME

logger = logging.getLogger(__name__)

_RETRY_STATUS = {429, 503}


class _RetryableHTTPStatus(Exception):
    """Internal: a 429/503 answer, raised so the retry loop sees it."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text[:500]


class RestInferenceClient(InferenceClient):
    """Call TF-Serving (or :mod:`serving.local_server`) over its REST API.

    Parameters
    ----------
    model_name : str
        Served model name.
    url : str
        Base URL of the REST endpoint, e.g. ``http://tfserving:8501``.
    version : int or None
        Pin ``/versions/<v>``; None = the server's latest.
    timeout_s : float
        Timeout of each HTTP attempt (connect, read, write), in seconds.
    retry : RetryPolicy
        Backoff for HTTP 429/503 and connection errors.
    max_batch_rows : int or None
        See :class:`~serving.clients.base.InferenceClient`.
    signature_name : str
        Signature to call.
    http_client : httpx.Client, optional
        Use this client (shared pools, tests with ``httpx.MockTransport``); not closed by
        :meth:`close`.
    sleep : callable, optional
        Injected for tests; defaults to ``time.sleep``.
    """

    def __init__(
        self,
        model_name: str,
        url: str,
        *,
        version: int | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        max_batch_rows: int | None = None,
        signature_name: str = SIGNATURE_NAME,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            model_name,
            version=version,
            signature_name=signature_name,
            max_batch_rows=max_batch_rows,
        )
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._owns_client = http_client is None
        self._http: httpx.Client | None = http_client or httpx.Client(timeout=timeout_s)
        self._sleep = sleep
        self._rng = random.Random()
        self._output_dtypes: dict[str, str] | None = None

    @property
    def model_url(self) -> str:
        """``<url>/v1/models/<name>[/versions/<v>]``."""
        base = f"{self.url}/v1/models/{self.model_name}"
        return f"{base}/versions/{self.version}" if self.version is not None else base

    def _request(self, method: str, url: str, what: str, body: bytes | None = None) -> Any:
        http = self._http
        if http is None:
            raise ModelUnavailableError(f"REST client for '{self.model_name}' is closed")

        def once() -> httpx.Response:
            response = http.request(
                method,
                url,
                content=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=self.timeout_s,
            )
            if response.status_code in _RETRY_STATUS:
                raise _RetryableHTTPStatus(response)
            return response

        def is_retryable(e: Exception) -> bool:
            return isinstance(e, _RetryableHTTPStatus | httpx.TransportError) and not isinstance(
                e, httpx.TimeoutException
            )

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        msg = f"{what} {url} for model '{self.model_name}'"
        try:
            response = call_with_retries(
                once,
                is_retryable=is_retryable,
                policy=self.retry,
                what=msg,
                rng=self._rng,
                **kwargs,
            )
        except httpx.TimeoutException as e:
            raise InferenceTimeoutError(
                f"{msg} timed out after {self.timeout_s} s: raise timeout_s or lower max_batch_rows"
            ) from e
        except httpx.TransportError as e:
            raise ModelUnavailableError(
                f"{msg}: cannot reach {self.url} ({e}); is the server up?"
            ) from e
        except _RetryableHTTPStatus as e:
            raise InferenceError(
                f"{msg}: HTTP {e.response.status_code} after {self.retry.max_attempts} "
                f"tries: {_error_text(e.response)}",
                retryable=True,
            ) from e
        code = response.status_code
        if code == 200:
            try:
                return json.loads(response.content)
            except ValueError as e:
                raise InferenceError(f"{msg}: answer is not JSON: {response.text[:200]}") from e
        text = _error_text(response)
        if code == 404:
            raise ModelUnavailableError(f"{msg}: HTTP 404: {text} (is the model/version loaded?)")
        if code == 400:
            raise InvalidInputError(f"{msg}: HTTP 400: {text}")
        if code in (408, 504):
            raise InferenceTimeoutError(f"{msg}: HTTP {code}: {text}")
        raise InferenceError(f"{msg}: HTTP {code}: {text}", retryable=code >= 500)

    def _dtypes_of_outputs(self) -> dict[str, str]:
        # JSON loses dtypes: take them from the contract, else (unknown model) ask once.
        if self._output_dtypes is None:
            if self.contract is not None:
                self._output_dtypes = {t.name: t.dtype for t in self.contract.outputs}
            else:
                meta = self.metadata()
                self._output_dtypes = {k: v["dtype"] for k, v in meta["outputs"].items()}
        return self._output_dtypes

    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        payload = {
            "signature_name": self.signature_name,
            "inputs": {name: arr.tolist() for name, arr in inputs.items()},
        }
        # allow_nan (the default) writes NaN/Infinity literals, which TF-Serving parses.
        body = json.dumps(payload, separators=(",", ":")).encode()
        answer = self._request("POST", f"{self.model_url}:predict", "predict", body)
        if not isinstance(answer, dict) or "outputs" not in answer:
            raise InferenceError(
                f"predict on '{self.model_name}' answered without 'outputs': {str(answer)[:200]}"
            )
        dtypes = self._dtypes_of_outputs()
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):
            # TF-Serving drops the name when the signature has exactly one output.
            if len(dtypes) != 1:
                raise InferenceError(
                    f"predict on '{self.model_name}' returned one unnamed output but the "
                    f"signature has {sorted(dtypes)}"
                )
            outputs = {next(iter(dtypes)): outputs}
        return {name: np.asarray(value, dtype=dtypes.get(name)) for name, value in outputs.items()}

    def _fetch_metadata(self) -> Metadata:
        answer = self._request("GET", f"{self.model_url}/metadata", "metadata")
        try:
            spec = answer["model_spec"]
            sig_map = answer["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError) as e:
            raise InferenceError(
                f"metadata of '{self.model_name}' is not TF-Serving's format: {str(answer)[:300]}"
            ) from e
        version = spec.get("version")
        return parse_signature_def_map(
            sig_map,
            model_name=self.model_name,
            version=int(version) if version not in (None, "") else None,
            signature_name=self.signature_name,
        )

    def close(self) -> None:
        if self._http is not None and self._owns_client:
            self._http.close()
        self._http = None
