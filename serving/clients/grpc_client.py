"""TF-Serving gRPC client (``tensorflow.serving.PredictionService``).

Sends ``PredictRequest`` / ``GetModelMetadataRequest`` built from
tensorflow-serving-api's protos, with a per-call deadline, retries with exponential
backoff and jitter on UNAVAILABLE / RESOURCE_EXHAUSTED (optionally
DEADLINE_EXCEEDED), and message-size limits raised well above gRPC's 4 MiB default
(64 patches of 224x224 float32 are 12.8 MB).

numpy <-> ``TensorProto`` conversion writes and reads ``tensor_content`` bytes
directly instead of going through ``tf.make_tensor_proto`` / ``tf.make_ndarray``:
it is a single memcpy (see :func:`ndarray_to_tensor_proto`). TensorFlow is still
imported as a side effect, because the ``tensorflow.core.framework`` protos that
tensorflow-serving-api depends on live inside the ``tensorflow`` package.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

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

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_NP_TO_DT: dict[np.dtype[Any], int] = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.float16): types_pb2.DT_HALF,
    np.dtype(np.int8): types_pb2.DT_INT8,
    np.dtype(np.int16): types_pb2.DT_INT16,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.uint8): types_pb2.DT_UINT8,
    np.dtype(np.uint16): types_pb2.DT_UINT16,
    np.dtype(np.uint32): types_pb2.DT_UINT32,
    np.dtype(np.uint64): types_pb2.DT_UINT64,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}
_DT_TO_NP: dict[int, np.dtype[Any]] = {v: k for k, v in _NP_TO_DT.items()}

# Which repeated field holds the values when a TensorProto has no tensor_content.
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def ndarray_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode a numeric numpy array as a ``TensorProto`` with ``tensor_content`` bytes.

    TensorFlow's wire format is little-endian, row-major; other layouts are converted
    first. Non-numeric arrays (strings) fall back to ``tf.make_tensor_proto``.
    """
    dt = _NP_TO_DT.get(array.dtype.newbyteorder("="))
    if dt is None:
        import tensorflow as tf

        return tf.make_tensor_proto(array)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return tensor_pb2.TensorProto(
        dtype=dt,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape]
        ),
        tensor_content=array.tobytes(),
    )


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a ``TensorProto`` (``tensor_content`` or typed ``*_val`` fields) to numpy.

    Follows TensorFlow's rule for short ``*_val`` fields: the last value repeats to
    fill the shape. Strings and exotic dtypes fall back to ``tf.make_ndarray``.
    """
    shape = [d.size for d in proto.tensor_shape.dim]
    dtype = _DT_TO_NP.get(proto.dtype)
    if dtype is None:
        import tensorflow as tf

        return tf.make_ndarray(proto)
    size = int(np.prod(shape, dtype=np.int64))
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<"))
        # astype copies into a writable, native-order array the caller may modify.
        return flat.astype(dtype).reshape(shape)
    field = getattr(proto, _VALUE_FIELD[proto.dtype])
    if proto.dtype == types_pb2.DT_HALF:
        # half_val stores the raw 16-bit patterns in int32 slots.
        values = np.asarray(field, dtype=np.uint16).view(np.float16)
    else:
        values = np.asarray(field, dtype=dtype)
    if values.size == size:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype)
    if values.size > size:
        raise InferenceError(f"TensorProto holds {values.size} values for shape {shape}")
    filled = np.concatenate([values, np.full(size - values.size, values[-1], dtype=dtype)])
    return filled.reshape(shape)


def _map_rpc_error(e: grpc.RpcError, model: str, what: str) -> InferenceError:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    msg = f"{what} on model '{model}' failed with {code}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelUnavailableError(f"{msg} (is the model/version loaded on the server?)")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ModelUnavailableError(f"{msg} (is the server up and the target right?)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return InferenceTimeoutError(f"{msg} (raise timeout_s or lower max_batch_rows)")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return InvalidInputError(msg)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return InferenceError(
            f"{msg} (server overloaded or message too large: lower max_batch_rows)",
            retryable=True,
        )
    return InferenceError(msg, retryable=False)


class GrpcInferenceClient(InferenceClient):
    """Call TF-Serving (or :mod:`serving.local_server`) over gRPC.

    Parameters
    ----------
    model_name : str
        Served model name.
    target : str
        ``host:port`` of the gRPC endpoint (TF-Serving's ``--port``, 8500).
    version : int or None
        Pin ``model_spec.version``; None = the server's latest.
    timeout_s : float
        Deadline of each RPC attempt, in seconds.
    retry : RetryPolicy
        Backoff for UNAVAILABLE / RESOURCE_EXHAUSTED.
    retry_on_deadline : bool
        Also retry DEADLINE_EXCEEDED (only if the model is idempotent and the deadline
        is due to transient load, not to a batch too big to ever finish in time).
    max_message_bytes : int
        gRPC max send/receive message length; TF-Serving needs the same raised on its
        side for requests over 4 MiB (``--grpc_max_threads`` is unrelated).
    max_batch_rows : int or None
        See :class:`~serving.clients.base.InferenceClient`.
    signature_name : str
        Signature to call.
    channel_options : sequence of (str, value), optional
        Extra grpc channel options (e.g. keep-alive), appended after the size limits.
    channel : grpc.Channel, optional
        Use this channel instead of creating one (tests, shared channels); it is not
        closed by :meth:`close`.
    sleep : callable, optional
        Injected for tests; defaults to ``time.sleep``.

    Notes
    -----
    No connection is made in the constructor: gRPC connects on the first call.
    """

    def __init__(
        self,
        model_name: str,
        target: str,
        *,
        version: int | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        retry_on_deadline: bool = False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch_rows: int | None = None,
        signature_name: str = SIGNATURE_NAME,
        channel_options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
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
        self.target = target
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._retryable = set(_RETRYABLE)
        if retry_on_deadline:
            self._retryable.add(grpc.StatusCode.DEADLINE_EXCEEDED)
        self._owns_channel = channel is None
        if channel is None:
            options = [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
                *channel_options,
            ]
            channel = grpc.insecure_channel(target, options=options)
        self._channel: grpc.Channel | None = channel
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._sleep = sleep
        self._rng = random.Random()

    def _model_spec(self, spec: model_pb2.ModelSpec) -> None:
        spec.name = self.model_name
        spec.signature_name = self.signature_name
        if self.version is not None:
            spec.version.value = self.version

    def _call(self, method: Callable[..., Any], request: Any, what: str) -> Any:
        if self._channel is None:
            raise ModelUnavailableError(f"gRPC client for '{self.model_name}' is closed")

        def is_retryable(e: Exception) -> bool:
            return isinstance(e, grpc.RpcError) and e.code() in self._retryable

        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep else {}
        try:
            return call_with_retries(
                lambda: method(request, timeout=self.timeout_s),
                is_retryable=is_retryable,
                policy=self.retry,
                what=f"grpc {what} {self.model_name}@{self.target}",
                rng=self._rng,
                **kwargs,
            )
        except grpc.RpcError as e:
            raise _map_rpc_error(e, self.model_name, what) from e

    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec)
        for name, arr in inputs.items():
            request.inputs[name].CopyFrom(ndarray_to_tensor_proto(arr))
        response = self._call(self._stub.Predict, request, "Predict")
        return {name: tensor_proto_to_ndarray(t) for name, t in response.outputs.items()}

    def _fetch_metadata(self) -> Metadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        # GetModelMetadata ignores signature_name; leave it empty as TF-Serving expects.
        request.model_spec.ClearField("signature_name")
        response = self._call(self._stub.GetModelMetadata, request, "GetModelMetadata")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(sig_map):
            raise InferenceError(
                f"GetModelMetadata for '{self.model_name}' returned no SignatureDefMap"
            )
        as_json = json_format.MessageToDict(sig_map, preserving_proto_field_name=True)
        version = (
            response.model_spec.version.value if response.model_spec.HasField("version") else None
        )
        return parse_signature_def_map(
            as_json.get("signature_def", {}),
            model_name=self.model_name,
            version=version,
            signature_name=self.signature_name,
        )

    def close(self) -> None:
        if self._channel is not None and self._owns_channel:
            self._channel.close()
        self._channel = None
