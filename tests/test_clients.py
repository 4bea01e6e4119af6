"""Inference clients (gRPC, REST, in-process) against serving.local_server and tiny models.

The tiny models of :mod:`tests.serving_fixtures` satisfy serving/signatures.py; the
server and clients speak TF-Serving's real wire APIs. Fake servers appear only where
the behaviour under test is the client's own (retries, deadlines).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.clients import (
    InferenceClient,
    InferenceTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
    RetryPolicy,
    SignatureMismatchError,
    make_client,
    signature_differences,
)
from serving.clients.grpc_client import (
    GrpcInferenceClient,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
)
from serving.clients.rest_client import RestInferenceClient
from serving.local_server import LocalServer, ServerConfig, main
from serving.signatures import (
    TREND_MODEL_NAME,
    TREND_SIGNATURE,
    UNREST_MODEL_NAME,
    UNREST_SIGNATURE,
    ModelSignature,
    TensorSpec,
)
from tests.serving_fixtures import (
    export_tiny_trend,
    export_tiny_unrest,
    ragged_series,
    random_patches,
)

BACKENDS = ["inprocess", "grpc", "rest"]
NO_WAIT = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, jitter=0.0)


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """unrest_detector v1 and v2 (different outputs), ps_trend_classifier v1."""
    base = tmp_path_factory.mktemp("models")
    export_tiny_unrest(base, 1, bias=0.0)
    export_tiny_unrest(base, 2, bias=3.0)
    export_tiny_trend(base, 1)
    return base


@pytest.fixture(scope="session")
def server(model_base: Path) -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(model_base, all_versions=True)) as srv:
        yield srv


def client_for(
    backend: str, model: str, server: LocalServer, model_base: Path, **kw: Any
) -> InferenceClient:
    address = {
        "inprocess": {"model_dir": model_base},
        "grpc": {"target": server.grpc_target},
        "rest": {"url": server.rest_url},
    }[backend]
    return make_client(backend, model, **address, **kw)  # type: ignore[arg-type]


def assert_outputs_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=0, err_msg=name)


# --- same answers from every backend ------------------------------------------------------
@pytest.mark.parametrize("backend", ["grpc", "rest"])
def test_remote_backends_match_inprocess_on_patches_with_nan(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    inputs = random_patches(6, seed=1, nan_fraction=0.2)
    with client_for("inprocess", UNREST_MODEL_NAME, server, model_base) as ref:
        want = ref.predict(inputs)
    with client_for(backend, UNREST_MODEL_NAME, server, model_base) as client:
        got = client.predict(inputs)
    assert np.all(np.isfinite(want["probability"]))
    assert_outputs_equal(got, want)


@pytest.mark.parametrize("backend", ["grpc", "rest"])
def test_remote_backends_match_inprocess_on_nan_padded_ragged_series(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    inputs = ragged_series(50, 40, seed=2)
    assert np.isnan(inputs["time_days"]).any()
    with client_for("inprocess", TREND_MODEL_NAME, server, model_base) as ref:
        want = ref.predict(inputs)
    with client_for(backend, TREND_MODEL_NAME, server, model_base) as client:
        got = client.predict(inputs)
    assert want["class_id"].dtype == np.int64
    np.testing.assert_allclose(want["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert_outputs_equal(got, want)


def test_grpc_carries_a_request_larger_than_4mb(server: LocalServer, model_base: Path) -> None:
    inputs = random_patches(64, seed=3)  # 64 x 224 x 224 x 4 bytes = 12.8 MB
    assert inputs["phase"].nbytes > 4 * 1024 * 1024
    with client_for("inprocess", UNREST_MODEL_NAME, server, model_base) as ref:
        want = ref.predict(inputs)
    with client_for("grpc", UNREST_MODEL_NAME, server, model_base) as client:
        got = client.predict(inputs)
    assert_outputs_equal(got, want)


# --- versions -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_unpinned_gets_highest_version_and_pinned_gets_the_pinned_one(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    inputs = random_patches(4, seed=4)
    with (
        client_for(backend, UNREST_MODEL_NAME, server, model_base) as latest,
        client_for(backend, UNREST_MODEL_NAME, server, model_base, version=1) as pinned,
    ):
        assert latest.metadata()["version"] == 2
        assert pinned.metadata()["version"] == 1
        p_latest = latest.predict(inputs)["probability"]
        p_v1 = pinned.predict(inputs)["probability"]
    # v2 was exported with a +3 logit bias: strictly higher probabilities.
    assert np.all(p_latest > p_v1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_model_or_version_raises_model_unavailable(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    for model, version in (("no_such_model", None), (UNREST_MODEL_NAME, 9)):
        with pytest.raises(ModelUnavailableError) as info:
            client = client_for(backend, model, server, model_base, version=version)
            client.predict(random_patches(1, seed=0))
        assert info.value.retryable


# --- signature check ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", [UNREST_MODEL_NAME, TREND_MODEL_NAME])
def test_signature_check_passes_for_models_matching_the_contract(
    backend: str, model: str, server: LocalServer, model_base: Path
) -> None:
    with client_for(backend, model, server, model_base) as client:
        meta = client.check_signature()
    assert meta["model_name"] == model
    assert meta["signature_name"] == "serving_default"


@pytest.mark.parametrize("backend", ["inprocess", "grpc"])
def test_signature_check_raises_for_a_model_exported_with_another_input_name(
    backend: str, tmp_path: Path
) -> None:
    renamed = ModelSignature(
        model_name=UNREST_MODEL_NAME,
        inputs=(TensorSpec("phase_rad", "float32", UNREST_SIGNATURE.inputs[0].shape),),
        outputs=UNREST_SIGNATURE.outputs,
    )
    export_tiny_unrest(tmp_path, 1, signature=renamed)
    with LocalServer(ServerConfig(tmp_path, rest_port=None)) as srv:
        client = (
            make_client("inprocess", UNREST_MODEL_NAME, model_dir=tmp_path)
            if backend == "inprocess"
            else make_client("grpc", UNREST_MODEL_NAME, target=srv.grpc_target)
        )
        with client, pytest.raises(SignatureMismatchError) as info:
            client.check_signature()
    assert any("missing input 'phase'" in d for d in info.value.differences)
    assert any("extra input 'phase_rad'" in d for d in info.value.differences)
    assert not info.value.retryable


def _served(signature: ModelSignature) -> dict[str, Any]:
    def block(specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
        return {t.name: {"dtype": t.dtype, "shape": list(t.shape)} for t in specs}

    return {"inputs": block(signature.inputs), "outputs": block(signature.outputs)}


def test_signature_differences_reports_dtype_and_shape_changes() -> None:
    served = _served(TREND_SIGNATURE)
    assert signature_differences(served, TREND_SIGNATURE) == []
    served["inputs"]["time_days"]["dtype"] = "float64"
    served["inputs"]["displacement_mm"]["shape"] = [None, 100]
    served["outputs"]["probabilities"]["shape"] = [None, 4]
    diffs = signature_differences(served, TREND_SIGNATURE)
    assert len(diffs) == 3
    assert any("time_days" in d and "float64" in d for d in diffs)
    assert any("displacement_mm" in d and "shape" in d for d in diffs)
    assert any("probabilities" in d and "shape" in d for d in diffs)


def test_signature_differences_accepts_unknown_output_dims_but_not_unknown_input_rank() -> None:
    served = _served(TREND_SIGNATURE)
    served["outputs"]["probabilities"]["shape"] = [None, None]
    served["outputs"]["class_id"]["shape"] = None
    assert signature_differences(served, TREND_SIGNATURE) == []
    served["inputs"]["time_days"]["shape"] = None
    assert len(signature_differences(served, TREND_SIGNATURE)) == 1


# --- chunking -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_larger_than_chunk_size_equals_one_call(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    inputs = ragged_series(23, 30, seed=5)
    with client_for(backend, TREND_MODEL_NAME, server, model_base) as whole:
        want = whole.predict(inputs)
    with client_for(backend, TREND_MODEL_NAME, server, model_base, max_batch_rows=5) as chunked:
        calls: list[int] = []
        original = chunked._predict_batch

        def counting(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            calls.append(len(batch["time_days"]))
            return original(batch)

        chunked._predict_batch = counting  # type: ignore[method-assign]
        got = chunked.predict(inputs)
    assert calls == [5, 5, 5, 5, 3]
    assert_outputs_equal(got, want)


# --- server-side validation ---------------------------------------------------------------
@pytest.mark.parametrize("backend", ["grpc", "rest"])
def test_wrong_input_name_is_invalid_argument_naming_the_expected_inputs(
    backend: str, server: LocalServer, model_base: Path
) -> None:
    client = client_for(backend, UNREST_MODEL_NAME, server, model_base)
    with client, pytest.raises(InvalidInputError, match="phase") as info:
        client.predict({"phaze": random_patches(1, seed=0)["phase"]})
    assert not info.value.retryable


def test_grpc_wrong_dtype_is_invalid_argument(server: LocalServer) -> None:
    # A client with no contract (unknown name) would not cast; send float64 directly.
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = UNREST_MODEL_NAME
        request.inputs["phase"].CopyFrom(ndarray_to_tensor_proto(np.zeros((1, 224, 224))))
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "float32" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(classification_pb2.ClassificationRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_rest_speaks_tf_serving_json_formats(server: LocalServer) -> None:
    base = f"{server.rest_url}/v1/models"
    status = httpx.get(f"{base}/{UNREST_MODEL_NAME}/versions/1").json()
    assert status["model_version_status"][0] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    row = np.zeros((224, 224)).tolist()
    row[0][0] = float("nan")
    body = json.dumps({"inputs": {"phase": [row]}})
    assert "NaN" in body
    single = httpx.post(f"{base}/{UNREST_MODEL_NAME}:predict", content=body).json()
    assert isinstance(single["outputs"], list)  # one output: its name is omitted
    rows = httpx.post(
        f"{base}/{TREND_MODEL_NAME}:predict",
        content=json.dumps(
            {"instances": [{"displacement_mm": [1.0, float("nan")], "time_days": [0.0, None]}]}
        ).replace("null", "NaN"),
    ).json()
    assert set(rows["predictions"][0]) == {"probabilities", "class_id"}
    missing = httpx.get(f"{base}/nope/metadata")
    assert missing.status_code == 404 and "error" in missing.json()


# --- tensor conversion --------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "float16", "int32", "int64", "uint8", "bool"]
)
def test_fast_tensor_proto_conversion_agrees_with_tensorflow(dtype: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 10).astype(dtype)
    np.testing.assert_array_equal(tf.make_ndarray(ndarray_to_tensor_proto(array)), array)
    np.testing.assert_array_equal(tensor_proto_to_ndarray(tf.make_tensor_proto(array)), array)
    # Typed-field encoding with a short value list repeats the last value (TF's rule).
    short = tf.make_tensor_proto(array.reshape(-1)[:1].copy(), shape=[2, 3])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(short), tf.make_ndarray(short))


# --- retries and deadlines (fake servers: the client's behaviour is under test) -----------
class FlakyServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Fails the first ``failures`` calls with UNAVAILABLE, sleeps ``delay_s`` per call."""

    def __init__(self, failures: int = 0, delay_s: float = 0.0) -> None:
        self.failures = failures
        self.delay_s = delay_s
        self.calls = 0
        self._lock = threading.Lock()

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.calls += 1
            fail = self.calls <= self.failures
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        time.sleep(self.delay_s)
        rows = tensor_proto_to_ndarray(request.inputs["phase"]).shape[0]
        response = predict_pb2.PredictResponse()
        response.outputs["probability"].CopyFrom(
            ndarray_to_tensor_proto(np.full(rows, 0.5, np.float32))
        )
        return response


StartFake = Callable[[FlakyServicer], str]


@pytest.fixture
def fake_grpc() -> Iterator[StartFake]:
    """Start a gRPC server around a given servicer; yields the starter."""

    def start(servicer: FlakyServicer) -> str:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, srv)
        srv.start()
        return f"127.0.0.1:{port}"

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = srv.add_insecure_port("127.0.0.1:0")
    yield start
    srv.stop(0).wait()


def test_grpc_retries_unavailable_with_backoff_then_succeeds(fake_grpc: StartFake) -> None:
    servicer = FlakyServicer(failures=2)
    target = fake_grpc(servicer)
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.1, multiplier=2.0, jitter=0.5)
    with GrpcInferenceClient(UNREST_MODEL_NAME, target, retry=policy, sleep=waits.append) as client:
        out = client.predict(random_patches(2, seed=0))
    assert servicer.calls == 3
    np.testing.assert_array_equal(out["probability"], [0.5, 0.5])
    assert len(waits) == 2
    assert 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2


def test_grpc_gives_up_after_max_attempts_with_a_retryable_error(fake_grpc: StartFake) -> None:
    servicer = FlakyServicer(failures=10)
    target = fake_grpc(servicer)
    client = GrpcInferenceClient(UNREST_MODEL_NAME, target, retry=NO_WAIT)
    with client, pytest.raises(ModelUnavailableError, match="UNAVAILABLE") as info:
        client.predict(random_patches(1, seed=0))
    assert servicer.calls == 3
    assert info.value.retryable


def test_grpc_deadline_raises_timeout_error(fake_grpc: StartFake) -> None:
    target = fake_grpc(FlakyServicer(delay_s=1.0))
    with GrpcInferenceClient(UNREST_MODEL_NAME, target, timeout_s=0.2, retry=NO_WAIT) as client:
        start = time.monotonic()
        with pytest.raises(InferenceTimeoutError):
            client.predict(random_patches(1, seed=0))
    assert time.monotonic() - start < 0.9  # no retry on DEADLINE_EXCEEDED by default


def test_rest_retries_503_then_succeeds() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) == 1:
            return httpx.Response(503, json={"error": "model loading"})
        if len(seen) == 2:
            return httpx.Response(429, json={"error": "too many requests"})
        body = json.loads(request.content)
        rows = len(body["inputs"]["phase"])
        return httpx.Response(200, content=json.dumps({"outputs": [float("nan")] * rows}))

    waits: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with RestInferenceClient(
        UNREST_MODEL_NAME, "http://tfs:8501", version=3, http_client=http, sleep=waits.append
    ) as client:
        out = client.predict(random_patches(2, seed=0))
    assert seen == ["/v1/models/unrest_detector/versions/3:predict"] * 3
    assert len(waits) == 2
    assert out["probability"].dtype == np.float32 and np.isnan(out["probability"]).all()


def test_rest_timeout_raises_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = RestInferenceClient(UNREST_MODEL_NAME, "http://tfs:8501", http_client=http)
    with client, pytest.raises(InferenceTimeoutError):
        client.predict(random_patches(1, seed=0))


def test_rest_connection_refused_is_model_unavailable() -> None:
    client = RestInferenceClient(
        UNREST_MODEL_NAME, "http://127.0.0.1:9", retry=NO_WAIT, timeout_s=2
    )
    with client, pytest.raises(ModelUnavailableError, match="is the server up"):
        client.metadata()


# --- CLI ----------------------------------------------------------------------------------
def test_local_server_help_says_it_stands_in_for_tensorflow_model_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "tensorflow_model_server" in capsys.readouterr().out
