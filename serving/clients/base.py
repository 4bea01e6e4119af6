"""The one inference interface every backend (gRPC, REST, in-process) implements.

The pipeline talks to :class:`InferenceClient` only: ``predict`` takes and returns
numpy arrays keyed by the tensor names of :mod:`serving.signatures`, ``metadata``
describes what is served in one backend-neutral dict, and ``check_signature``
compares it with the contract at start-up. What every backend shares lives here:
chunking of large batches, casting inputs to the contract dtypes, the typed errors
that say whether a failure is worth retrying, the retry/backoff policy, and the
parser of TF-Serving's signature_def metadata (the same JSON for gRPC and REST).

Metadata format returned by every backend::

    {"model_name": "unrest_detector", "version": 2, "signature_name": "serving_default",
     "inputs":  {"phase": {"dtype": "float32", "shape": [None, 224, 224]}},
     "outputs": {"probability": {"dtype": "float32", "shape": [None]}}}

``dtype`` is a TensorFlow dtype name, ``shape`` a list with ``None`` for an
unknown dimension, or ``None`` for an unknown rank.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import numpy as np

from serving.signatures import SIGNATURE_NAME, SIGNATURES, ModelSignature

logger = logging.getLogger(__name__)

T = TypeVar("T")

Metadata = dict[str, Any]

# TF-Serving reports dtypes as DataType enum names; the contract uses TF dtype names.
DT_TO_DTYPE_NAME: dict[str, str] = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_BFLOAT16": "bfloat16",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}
DTYPE_NAME_TO_DT: dict[str, str] = {v: k for k, v in DT_TO_DTYPE_NAME.items()}


# --- errors --------------------------------------------------------------------------------
class InferenceError(Exception):
    """A prediction or metadata call failed.

    Parameters
    ----------
    message : str
        What happened and what to do about it.
    retryable : bool
        True when the same request may succeed later (server overloaded, restarting,
        deadline hit): the pipeline should retry or dead-letter for a later replay.
        False when resending the same request cannot help (bad input, contract broken).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ModelUnavailableError(InferenceError):
    """The server is unreachable, or it does not (yet) serve the model/version asked for.

    Retryable: during a roll-out TF-Serving answers NOT_FOUND until the new version
    has loaded, and UNAVAILABLE while it restarts.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class InferenceTimeoutError(InferenceError):
    """The per-call deadline passed before the server answered (retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class InvalidInputError(InferenceError):
    """The request itself is wrong (names, dtypes, shapes): fix the caller, do not retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class SignatureMismatchError(InferenceError):
    """The served model does not match :mod:`serving.signatures` (fatal at start-up).

    Attributes
    ----------
    differences : list of str
        One human-readable line per difference.
    """

    def __init__(self, model_name: str, differences: list[str]) -> None:
        self.differences = differences
        lines = "\n  - ".join(differences)
        super().__init__(
            f"model '{model_name}' served with a signature that differs from "
            f"serving/signatures.py:\n  - {lines}\n"
            "Re-export the model with serving.export.export_saved_model, or deploy the "
            "client version that matches the served model.",
            retryable=False,
        )


# --- retries ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures.

    Parameters
    ----------
    max_attempts : int
        Total tries including the first (1 = no retry).
    initial_backoff_s : float
        Wait before the second try, in seconds.
    max_backoff_s : float
        Upper bound of one wait, in seconds.
    multiplier : float
        Growth of the wait per try.
    jitter : float
        In [0, 1]: each wait is drawn uniformly from ``[(1 - jitter) * d, d]`` so that
        many workers retrying together do not hammer the server in lock-step.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")

    def backoff_s(self, retry_index: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 = first retry)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry_index)
        return ceiling * (1.0 - self.jitter * rng.random())


def call_with_retries(
    call: Callable[[], T],
    *,
    is_retryable: Callable[[Exception], bool],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``call`` and retry it on errors ``is_retryable`` accepts, with backoff.

    The last error is re-raised unchanged when tries run out, so the backend can map
    it to a typed :class:`InferenceError`.
    """
    rng = rng or random.Random()
    for attempt in range(policy.max_attempts):
        try:
            return call()
        except Exception as e:
            if attempt + 1 >= policy.max_attempts or not is_retryable(e):
                raise
            delay = policy.backoff_s(attempt, rng)
            logger.warning(
                "inference retry what=%s attempt=%d error=%s backoff_s=%.3f",
                what,
                attempt + 1,
                type(e).__name__,
                delay,
                extra={"event": "inference_retry", "what": what, "attempt": attempt + 1},
            )
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


# --- metadata -----------------------------------------------------------------------------
def parse_tensor_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Convert TF-Serving's JSON ``TensorInfo`` to ``{"dtype": ..., "shape": ...}``.

    ``info`` is what TF-Serving's REST metadata holds for one tensor (the proto3 JSON of
    ``tensorflow.TensorInfo``): ``{"dtype": "DT_FLOAT", "tensor_shape": {"dim":
    [{"size": "-1"}, ...], "unknown_rank": false}, "name": ...}``; sizes may be
    strings (proto3 JSON of int64) or ints.
    """
    dt = str(info.get("dtype", "DT_INVALID"))
    shape_proto = info.get("tensor_shape", {}) or {}
    shape: list[int | None] | None
    if shape_proto.get("unknown_rank", False):
        shape = None
    else:
        shape = []
        for dim in shape_proto.get("dim", []):
            size = int(dim.get("size", -1))
            shape.append(None if size < 0 else size)
    return {"dtype": DT_TO_DTYPE_NAME.get(dt, dt), "shape": shape}


def parse_signature_def_map(
    signature_def_map: Mapping[str, Any],
    *,
    model_name: str,
    version: int | None,
    signature_name: str,
) -> Metadata:
    """Build the backend-neutral metadata dict from TF-Serving's ``signature_def`` map.

    Parameters
    ----------
    signature_def_map : mapping
        ``{"serving_default": {"inputs": {...}, "outputs": {...}, "method_name": ...}}``,
        i.e. ``metadata.signature_def.signature_def`` of TF-Serving's answer.
    model_name, version, signature_name
        Copied into the result; ``version`` is the one the server reported.

    Raises
    ------
    SignatureMismatchError
        When ``signature_name`` is not among the served signatures.
    """
    if signature_name not in signature_def_map:
        raise SignatureMismatchError(
            model_name,
            [f"no signature '{signature_name}' (served: {sorted(signature_def_map)})"],
        )
    sig = signature_def_map[signature_name]
    return {
        "model_name": model_name,
        "version": version,
        "signature_name": signature_name,
        "inputs": {k: parse_tensor_info(v) for k, v in sig.get("inputs", {}).items()},
        "outputs": {k: parse_tensor_info(v) for k, v in sig.get("outputs", {}).items()},
    }


def _shape_differs(
    got: list[int | None] | None, want: tuple[int | None, ...], strict: bool
) -> bool:
    if got is None:
        return strict
    if len(got) != len(want):
        return True
    for g, w in zip(got, want, strict=True):
        if g == w:
            continue
        # Outputs: a dimension the server cannot infer (None) is accepted where the
        # contract fixes it, because the exporter's own check does not pin output shapes.
        if not strict and g is None:
            continue
        return True
    return False


def signature_differences(metadata: Mapping[str, Any], signature: ModelSignature) -> list[str]:
    """List every difference between served ``metadata`` and the contract ``signature``.

    Inputs must match exactly (names, dtypes, shapes). Outputs must match in names and
    dtypes; their shapes must match except where the server reports a dimension (or
    the rank) as unknown.

    Returns
    -------
    list of str
        Empty when the served model satisfies the contract.
    """
    diffs: list[str] = []
    for kind, specs, strict in (
        ("input", signature.inputs, True),
        ("output", signature.outputs, False),
    ):
        served: Mapping[str, Any] = metadata.get(f"{kind}s", {})
        wanted = {t.name: t for t in specs}
        for name in sorted(set(wanted) - set(served)):
            diffs.append(f"missing {kind} '{name}' (served {kind}s: {sorted(served)})")
        for name in sorted(set(served) - set(wanted)):
            diffs.append(f"extra {kind} '{name}' not in the contract")
        for name in sorted(set(wanted) & set(served)):
            want, got = wanted[name], served[name]
            if got["dtype"] != want.dtype:
                diffs.append(f"{kind} '{name}': dtype {got['dtype']} != contract {want.dtype}")
            if _shape_differs(got["shape"], want.shape, strict):
                diffs.append(
                    f"{kind} '{name}': shape {got['shape']} != contract {list(want.shape)}"
                )
    return diffs


# --- the interface ------------------------------------------------------------------------
class InferenceClient(ABC):
    """Predict with one served model; shared behaviour of every backend.

    Parameters
    ----------
    model_name : str
        Served model name, normally a key of ``serving.signatures.SIGNATURES``.
    version : int or None
        Pin this model version; None = whatever the server serves as latest.
    signature_name : str
        Signature to call (``serving_default``).
    max_batch_rows : int or None
        Split ``predict`` batches larger than this into consecutive calls of at most
        this many rows and concatenate the results in order (keeps gRPC messages and
        server batches bounded). None = never split.

    Notes
    -----
    Subclasses implement ``_predict_batch``, ``_fetch_metadata`` and ``close``. Clients
    are safe to share between threads when their transport is (gRPC channels, httpx
    clients and TF concrete functions all are).
    """

    def __init__(
        self,
        model_name: str,
        *,
        version: int | None = None,
        signature_name: str = SIGNATURE_NAME,
        max_batch_rows: int | None = None,
    ) -> None:
        if version is not None and version < 1:
            raise ValueError(f"model version must be >= 1 or None, got {version}")
        if max_batch_rows is not None and max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1 or None, got {max_batch_rows}")
        self.model_name = model_name
        self.version = version
        self.signature_name = signature_name
        self.max_batch_rows = max_batch_rows
        self.contract: ModelSignature | None = SIGNATURES.get(model_name)

    # -- what backends implement --
    @abstractmethod
    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request with already validated inputs."""

    @abstractmethod
    def _fetch_metadata(self) -> Metadata:
        """Ask the backend for its metadata dict (see the module docstring)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections / the loaded model. Idempotent."""

    # -- shared behaviour --
    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on a batch.

        Parameters
        ----------
        inputs : mapping of str to array_like
            One array per signature input, all with the same number of rows (axis 0),
            e.g. ``{"phase": (n, 224, 224) float32}``. Arrays are cast to the contract
            dtype when the model is in ``SIGNATURES``.

        Returns
        -------
        dict of str to numpy.ndarray
            One array per signature output, ``n`` rows each, in input row order.

        Raises
        ------
        InvalidInputError
            Inputs without a batch axis or with differing row counts, or rejected by
            the server.
        ModelUnavailableError, InferenceTimeoutError, InferenceError
            See their ``retryable`` attribute.
        """
        arrays = self._prepare(inputs)
        rows = next(iter(arrays.values())).shape[0]
        step = self.max_batch_rows
        if step is None or rows <= step:
            return self._predict_batch(arrays)
        parts = [
            self._predict_batch({k: v[start : start + step] for k, v in arrays.items()})
            for start in range(0, rows, step)
        ]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}

    def metadata(self) -> Metadata:
        """Model name, served version and signature inputs/outputs (dtype and shape)."""
        return self._fetch_metadata()

    def check_signature(self) -> Metadata:
        """Compare the served metadata with ``SIGNATURES[model_name]``.

        Returns
        -------
        dict
            The metadata, for logging which version passed.

        Raises
        ------
        SignatureMismatchError
            On any missing/extra input or output, dtype or shape difference, or when
            the model has no contract in ``serving/signatures.py``.
        """
        if self.contract is None:
            raise SignatureMismatchError(
                self.model_name,
                [f"no contract for this model name; known: {sorted(SIGNATURES)}"],
            )
        meta = self.metadata()
        diffs = signature_differences(meta, self.contract)
        if diffs:
            raise SignatureMismatchError(self.model_name, diffs)
        logger.info(
            "signature check passed model=%s version=%s",
            self.model_name,
            meta.get("version"),
            extra={"event": "signature_ok", "model": self.model_name},
        )
        return meta

    def _prepare(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not inputs:
            raise InvalidInputError(f"predict on '{self.model_name}' needs at least one input")
        dtypes = {t.name: t.dtype for t in self.contract.inputs} if self.contract else {}
        arrays: dict[str, np.ndarray] = {}
        for name, value in inputs.items():
            dtype = dtypes.get(name)
            arr = np.asarray(value, dtype=dtype) if dtype else np.asarray(value)
            if arr.ndim == 0:
                raise InvalidInputError(
                    f"input '{name}' is a scalar: give a batch axis (one row per item)"
                )
            arrays[name] = arr
        rows = {name: a.shape[0] for name, a in arrays.items()}
        if len(set(rows.values())) > 1:
            raise InvalidInputError(f"inputs have different row counts {rows}: align them")
        return arrays

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_name={self.model_name!r}, version={self.version}, "
            f"max_batch_rows={self.max_batch_rows})"
        )
