"""The circuit breaker of the model clients (serving/clients/circuit.py), on a fake clock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from monitor import metrics
from pipelines import observe
from pipelines.model_endpoint import ModelEndpoint
from serving.clients import (
    CircuitBreaker,
    CircuitBreakerClient,
    CircuitOpenError,
    InferenceClient,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
)
from serving.clients.base import Metadata


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Transitions:
    """A listener that remembers every (old, new) it is told about."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, old: str, new: str) -> None:
        self.seen.append((old, new))


def _down() -> None:
    raise ModelUnavailableError("connection refused")


def _ok() -> str:
    return "ok"


def _fail(breaker: CircuitBreaker, times: int, error: Exception | None = None) -> None:
    def boom() -> None:
        raise error or ModelUnavailableError("connection refused")

    for _ in range(times):
        with pytest.raises(InferenceError):
            breaker.call(boom)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def listener() -> Transitions:
    return Transitions()


@pytest.fixture
def breaker(clock: FakeClock, listener: Transitions) -> CircuitBreaker:
    return CircuitBreaker(
        "unrest_detector@grpc:tfs:8500",
        failure_threshold=3,
        reset_timeout_s=10.0,
        clock=clock,
        listener=listener,
    )


# --- closed -----------------------------------------------------------------------------------
def test_a_new_breaker_is_closed_and_passes_calls_and_results_through(breaker):
    assert breaker.state == "closed"
    assert breaker.call(lambda a, b=0: a + b, 2, b=3) == 5
    assert breaker.failures == 0 and breaker.opens == 0


def test_failures_below_the_threshold_keep_the_circuit_closed(breaker, listener):
    _fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.failures == 2
    assert listener.seen == []


def test_the_threshold_of_consecutive_failures_opens_the_circuit(breaker, listener):
    _fail(breaker, 3)
    assert breaker.state == "open"
    assert breaker.opens == 1
    assert listener.seen == [("closed", "open")]


def test_a_success_resets_the_count_of_consecutive_failures(breaker):
    _fail(breaker, 2)
    assert breaker.call(_ok) == "ok"
    _fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.failures == 2


def test_deadline_errors_count_as_failures(breaker):
    _fail(breaker, 3, InferenceTimeoutError("DEADLINE_EXCEEDED"))
    assert breaker.state == "open"


def test_the_error_that_failed_a_call_reaches_the_caller_unchanged(breaker):
    error = ModelUnavailableError("server restarting")
    with pytest.raises(ModelUnavailableError) as raised:
        breaker.call(lambda: (_ for _ in ()).throw(error))
    assert raised.value is error


@pytest.mark.parametrize(
    "error",
    [
        InvalidInputError("wrong shape"),
        InferenceError("contract broken", retryable=False),
        ValueError("a bug"),
    ],
    ids=["invalid_input", "non_retryable", "bug"],
)
def test_errors_that_say_nothing_about_availability_do_not_trip_the_circuit(
    clock, listener, error
):
    breaker = CircuitBreaker("m", failure_threshold=1, reset_timeout_s=5, clock=clock,
                             listener=listener)
    for _ in range(10):
        with pytest.raises(type(error)):
            breaker.call(lambda: (_ for _ in ()).throw(error))
    assert breaker.state == "closed"
    assert breaker.failures == 0
    assert listener.seen == []


def test_invalid_input_between_failures_neither_counts_nor_resets_the_count(breaker):
    _fail(breaker, 2)
    _fail(breaker, 1, InvalidInputError("bad tile"))
    assert breaker.failures == 2
    _fail(breaker, 1)
    assert breaker.state == "open"


# --- open -------------------------------------------------------------------------------------
def test_an_open_circuit_fails_fast_without_calling_the_server(breaker, clock):
    _fail(breaker, 3)
    calls = []
    clock.advance(4.0)
    for _ in range(50):
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: calls.append(1))
    assert calls == []
    assert breaker.state == "open"


def test_the_fail_fast_error_says_when_it_probes_again_and_how_many_failures_opened_it(
    breaker, clock
):
    _fail(breaker, 3, ModelUnavailableError("connection refused"))
    clock.advance(2.5)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(_ok)
    error = raised.value
    assert error.failures == 3
    assert error.retry_in_s == pytest.approx(7.5)
    assert breaker.retry_in_s == pytest.approx(7.5)
    message = str(error)
    assert "unrest_detector@grpc:tfs:8500" in message
    assert "after 3 consecutive failures" in message
    assert "in 7.5 s" in message
    assert "connection refused" in message


def test_the_fail_fast_error_is_a_retryable_model_unavailable_error(breaker):
    _fail(breaker, 3)
    with pytest.raises(ModelUnavailableError) as raised:
        breaker.call(_ok)
    assert isinstance(raised.value, CircuitOpenError)
    assert raised.value.retryable is True


# --- half-open --------------------------------------------------------------------------------
def test_the_circuit_turns_half_open_when_the_reset_timeout_has_elapsed(breaker, clock, listener):
    _fail(breaker, 3)
    clock.advance(9.99)
    assert breaker.state == "open"
    clock.advance(0.01)
    assert breaker.state == "half_open"
    assert listener.seen == [("closed", "open"), ("open", "half_open")]


def test_a_successful_probe_closes_the_circuit(breaker, clock, listener):
    _fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.call(_ok) == "ok"
    assert breaker.state == "closed"
    assert breaker.failures == 0
    assert listener.seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_the_circuit_for_a_full_reset_timeout(breaker, clock, listener):
    _fail(breaker, 3)
    clock.advance(12.0)
    _fail(breaker, 1)
    assert breaker.state == "open"
    assert breaker.opens == 2
    assert breaker.retry_in_s == pytest.approx(10.0)
    assert listener.seen == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    with pytest.raises(CircuitOpenError, match="after 4 consecutive failures"):
        breaker.call(_ok)


def test_only_one_probe_goes_to_the_server_while_the_circuit_is_half_open(breaker, clock):
    _fail(breaker, 3)
    clock.advance(10.0)
    refused: list[CircuitOpenError] = []

    def probe() -> str:
        # Another call arriving while the probe is in flight must not reach the server.
        with pytest.raises(CircuitOpenError) as raised:
            breaker.call(_ok)
        refused.append(raised.value)
        return "probed"

    assert breaker.call(probe) == "probed"
    assert refused[0].probing is True
    assert "probe call is testing the server" in str(refused[0])
    assert breaker.state == "closed"


def test_invalid_input_in_the_probe_frees_the_probe_for_the_next_call(breaker, clock):
    _fail(breaker, 3)
    clock.advance(10.0)
    _fail(breaker, 1, InvalidInputError("bad tile"))
    assert breaker.state == "half_open"
    assert breaker.call(_ok) == "ok"
    assert breaker.state == "closed"


def test_a_late_success_of_a_call_admitted_while_closed_does_not_close_an_open_circuit(
    breaker, clock
):
    def slow_success() -> str:
        _fail(breaker, 3)  # the circuit opens while this call is in flight
        return "late"

    assert breaker.call(slow_success) == "late"
    assert breaker.state == "open"


def test_a_probe_that_outlives_a_reset_does_not_reopen_the_circuit(breaker, clock):
    _fail(breaker, 3)
    clock.advance(10.0)

    def probe_interrupted_by_reset() -> None:
        breaker.reset()
        raise ModelUnavailableError("down")

    with pytest.raises(ModelUnavailableError):
        breaker.call(probe_interrupted_by_reset)
    assert breaker.state == "closed"
    assert breaker.failures == 1


def test_reset_closes_an_open_circuit_and_forgets_the_failures(breaker, listener):
    _fail(breaker, 3)
    breaker.reset()
    assert breaker.state == "closed" and breaker.failures == 0
    assert listener.seen[-1] == ("open", "closed")


# --- listener and configuration ---------------------------------------------------------------
def test_a_failing_listener_does_not_break_the_breaker(clock):
    def broken(old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("m", failure_threshold=1, reset_timeout_s=1, clock=clock,
                             listener=broken)
    _fail(breaker, 1)
    assert breaker.state == "open"


def test_a_listener_may_read_the_state_it_is_told_about(clock):
    states: list[str] = []
    breaker: CircuitBreaker

    def reader(old: str, new: str) -> None:
        states.append(breaker.state)

    breaker = CircuitBreaker("m", failure_threshold=1, reset_timeout_s=1, clock=clock,
                             listener=reader)
    _fail(breaker, 1)
    clock.advance(1)
    breaker.call(_ok)
    assert states == ["open", "half_open", "closed"]


@pytest.mark.parametrize(
    "kwargs", [{"failure_threshold": 0}, {"reset_timeout_s": 0}, {"reset_timeout_s": -1}]
)
def test_a_threshold_below_one_or_a_non_positive_reset_timeout_is_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker("m", **kwargs)


# --- threads ----------------------------------------------------------------------------------
def test_concurrent_failures_open_the_circuit_once_and_then_stop_reaching_the_server(clock):
    threads_n, calls_each, threshold = 8, 200, 5
    listener = Transitions()
    breaker = CircuitBreaker("m", failure_threshold=threshold, reset_timeout_s=60, clock=clock,
                             listener=listener)
    reached = []
    reached_lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def down() -> None:
        with reached_lock:
            reached.append(1)
        raise ModelUnavailableError("down")

    def worker() -> None:
        start.wait()
        for _ in range(calls_each):
            with pytest.raises(ModelUnavailableError):
                breaker.call(down)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert breaker.state == "open"
    assert breaker.opens == 1
    assert listener.seen == [("closed", "open")]
    # Only calls admitted before the circuit opened can have reached the server.
    assert threshold <= len(reached) <= threshold + threads_n - 1


def test_concurrent_calls_on_a_half_open_circuit_send_exactly_one_probe(clock):
    threads_n = 8
    breaker = CircuitBreaker("m", failure_threshold=1, reset_timeout_s=5, clock=clock)
    _fail(breaker, 1)
    clock.advance(5)
    probe_started, release = threading.Event(), threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def slow_probe() -> str:
        probe_started.set()
        assert release.wait(10)
        return "probe"

    def worker() -> None:
        try:
            result = breaker.call(slow_probe)
        except CircuitOpenError:
            result = "refused"
        with lock:
            outcomes.append(result)

    first = threading.Thread(target=worker)
    first.start()
    assert probe_started.wait(10)
    others = [threading.Thread(target=worker) for _ in range(threads_n - 1)]
    for t in others:
        t.start()
    for t in others:
        t.join(timeout=10)
    release.set()
    first.join(timeout=10)
    assert sorted(outcomes) == ["probe"] + ["refused"] * (threads_n - 1)
    assert breaker.state == "closed"


# --- the client wrapper -----------------------------------------------------------------------
class FakeClient(InferenceClient):
    """Answers with zeros, or raises ``error`` when it is set; counts calls."""

    def __init__(self) -> None:
        super().__init__("unrest_detector")
        self.error: Exception | None = None
        self.calls = 0
        self.closed = False
        self.target = "tfs:8500"

    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"probability": np.zeros(len(inputs["phase"]), np.float32)}

    def _fetch_metadata(self) -> Metadata:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"model_name": self.model_name, "version": 1, "inputs": {}, "outputs": {}}

    def close(self) -> None:
        self.closed = True


def test_the_wrapped_client_predicts_through_the_breaker_and_stops_calling_when_open(clock):
    inner = FakeClient()
    breaker = CircuitBreaker("m", failure_threshold=2, reset_timeout_s=10, clock=clock)
    client = CircuitBreakerClient(inner, breaker)
    phase = np.zeros((3, 224, 224), np.float32)
    assert client.predict({"phase": phase})["probability"].shape == (3,)
    inner.error = ModelUnavailableError("down")
    for _ in range(2):
        with pytest.raises(ModelUnavailableError):
            client.predict({"phase": phase})
    calls = inner.calls
    with pytest.raises(CircuitOpenError):
        client.predict({"phase": phase})
    with pytest.raises(CircuitOpenError):
        client.metadata()
    assert inner.calls == calls
    inner.error = None
    clock.advance(10)
    assert client.predict({"phase": phase})["probability"].shape == (3,)
    assert breaker.state == "closed"


def test_the_wrapped_client_reads_backend_attributes_and_closes_the_backend(clock):
    inner = FakeClient()
    client = CircuitBreakerClient(inner, CircuitBreaker("m", clock=clock))
    assert client.model_name == "unrest_detector"
    assert client.target == "tfs:8500"
    assert client.metadata()["version"] == 1
    client.close()
    assert inner.closed


# --- the pipeline's endpoints and metrics -----------------------------------------------------
@pytest.fixture
def circuit_recorder() -> Iterator[None]:
    observe.set_circuit_recorder(metrics.record_circuit_state)
    yield
    observe.set_circuit_recorder(None)


def _endpoint(**overrides: Any) -> ModelEndpoint:
    # Fields of its own: breakers and metric series are per process.
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = dict(
        backend="grpc", model_name=f"m-{tag}", model_base=f"/nonexistent/{tag}",
        grpc_target="127.0.0.1:1", rest_url="http://127.0.0.1:1", version=None,
        timeout_s=1.0, max_retries=0, max_batch=8, circuit_failure_threshold=2,
        circuit_reset_s=30.0,
    )
    values.update(overrides)
    return ModelEndpoint(**values)


def test_each_endpoint_has_one_breaker_configured_from_its_settings():
    endpoint = _endpoint(circuit_failure_threshold=7, circuit_reset_s=12.5)
    breaker = endpoint.breaker()
    assert endpoint.breaker() is breaker
    assert _endpoint().breaker() is not breaker
    assert (breaker.failure_threshold, breaker.reset_timeout_s) == (7, 12.5)
    assert "grpc:127.0.0.1:1" in breaker.name


def _sample(name: str, model: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"model": model, "backend": "grpc"})


def test_endpoint_circuit_transitions_set_the_state_gauge_and_count_openings(circuit_recorder):
    endpoint = _endpoint()
    model = endpoint.model_name
    metrics.record_model(model, 1, "grpc")
    assert _sample("insar_inference_circuit_state", model) == 0
    assert _sample("insar_inference_circuit_opens_total", model) == 0
    breaker = endpoint.breaker()
    _fail(breaker, 2)
    assert _sample("insar_inference_circuit_state", model) == 2
    assert _sample("insar_inference_circuit_opens_total", model) == 1
    breaker.reset()
    assert _sample("insar_inference_circuit_state", model) == 0
    assert _sample("insar_inference_circuit_opens_total", model) == 1


def test_a_server_down_at_load_trips_the_endpoint_breaker_and_later_loads_fail_fast():
    endpoint = _endpoint(model_name="unrest_detector", circuit_failure_threshold=1)
    with pytest.raises(ModelUnavailableError) as first:
        endpoint.load()
    assert not isinstance(first.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError):
        endpoint.load()
    assert endpoint.breaker().state == "open"
