"""A circuit breaker in front of a model server, so an outage fails calls fast.

When TF-Serving is down every request otherwise costs its own retries and deadlines
before it fails; a daemon pass that sends many requests would spend minutes finding out
what the first one already said. :class:`CircuitBreaker` counts consecutive *outage*
failures (:class:`~serving.clients.base.ModelUnavailableError`,
:class:`~serving.clients.base.InferenceTimeoutError`) and, at ``failure_threshold``,
opens: for ``reset_timeout_s`` every call fails at once with :class:`CircuitOpenError`
without reaching the server. Then it lets one probe call through (half-open): success
closes the circuit, another outage failure opens it again for a full ``reset_timeout_s``.

States and transitions::

    closed --(failure_threshold consecutive outage failures)--> open
    open --(reset_timeout_s elapsed, on the next call or state read)--> half_open
    half_open --(the probe succeeds)--> closed
    half_open --(the probe fails with an outage error)--> open

Errors that say nothing about the server being reachable (bad input, a broken contract,
bugs) leave the breaker as it is: they neither count as failures nor as successes.

:class:`CircuitBreakerClient` puts a breaker in front of any
:class:`~serving.clients.base.InferenceClient`; the pipeline's cached clients
(:meth:`pipelines.model_endpoint.ModelEndpoint.load`) are wrapped this way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import numpy as np

from serving.clients.base import (
    InferenceClient,
    InferenceTimeoutError,
    Metadata,
    ModelUnavailableError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CircuitState = Literal["closed", "open", "half_open"]
CLOSED: CircuitState = "closed"
OPEN: CircuitState = "open"
HALF_OPEN: CircuitState = "half_open"

TransitionListener = Callable[[str, str], None]
"""Called as ``listener(old_state, new_state)`` on every state change."""


class CircuitOpenError(ModelUnavailableError):
    """A call was refused without reaching the server because the circuit is open.

    A :class:`~serving.clients.base.ModelUnavailableError`, hence retryable: the caller
    retries later (the daemon retries the whole pass with its own backoff).

    Parameters
    ----------
    name : str
        The breaker's name (model and endpoint).
    failures : int
        Consecutive outage failures that opened the circuit.
    retry_in_s : float
        Seconds until the breaker lets a probe call through (0 while a probe is running).
    last_error : str or None
        ``Type: message`` of the failure that opened the circuit.
    probing : bool
        True when the circuit is half-open and another call is the probe.

    Attributes
    ----------
    failures, retry_in_s, last_error, probing
        As given.
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        retry_in_s: float,
        last_error: str | None = None,
        probing: bool = False,
    ) -> None:
        self.failures = failures
        self.retry_in_s = retry_in_s
        self.last_error = last_error
        self.probing = probing
        cause = f"after {failures} consecutive failures"
        if last_error:
            cause += f" (last: {last_error})"
        if probing:
            when = "a probe call is testing the server now; calls fail fast until it succeeds"
        else:
            when = f"calls fail fast; the next probe goes to the server in {retry_in_s:.1f} s"
        super().__init__(f"circuit breaker '{name}' is open {cause}: {when}")


def is_outage_error(error: BaseException) -> bool:
    """Whether ``error`` says the server is unreachable or too slow (counts as a failure).

    True for :class:`~serving.clients.base.ModelUnavailableError` and
    :class:`~serving.clients.base.InferenceTimeoutError`, except a
    :class:`CircuitOpenError` (a refusal by a breaker, not an answer from the server).
    """
    if isinstance(error, CircuitOpenError):
        return False
    return isinstance(error, ModelUnavailableError | InferenceTimeoutError)


class CircuitBreaker:
    """Thread-safe closed / open / half-open circuit breaker.

    Parameters
    ----------
    name : str
        Shown in errors and logs, e.g. ``"unrest_detector@grpc:host:8500"``.
    failure_threshold : int
        Consecutive outage failures that open a closed circuit (>= 1).
    reset_timeout_s : float
        Seconds an open circuit refuses calls before it lets one probe through (> 0).
    clock : callable, optional
        Monotonic seconds; ``time.monotonic`` unless injected (tests).
    is_failure : callable, optional
        Which exceptions count as failures; :func:`is_outage_error` by default. Other
        exceptions propagate without changing the breaker.
    listener : callable, optional
        ``listener(old_state, new_state)``, called on every transition, in order, while
        the breaker's lock is held: keep it short and do not call other breakers from it.
        Its exceptions are logged and swallowed.

    Examples
    --------
    >>> breaker = CircuitBreaker("m", failure_threshold=2, reset_timeout_s=30)
    >>> breaker.call(lambda: 42)
    42
    >>> breaker.state
    'closed'
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = is_outage_error,
        listener: TransitionListener | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_timeout_s <= 0:
            raise ValueError(f"reset_timeout_s must be > 0, got {reset_timeout_s}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._is_failure = is_failure
        self._listener = listener
        # Re-entrant: a listener may read the state it is told about.
        self._lock = threading.RLock()
        self._state: CircuitState = CLOSED
        self._failures = 0
        self._opens = 0
        self._opened_at = 0.0
        self._last_error: str | None = None
        self._probe_in_flight = False
        # Numbers probes, so that only the current probe can settle a half-open circuit.
        self._probe_seq = 0

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an elapsed open turns half-open)."""
        with self._lock:
            self._half_open_if_due()
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive outage failures counted since the last success."""
        with self._lock:
            return self._failures

    @property
    def opens(self) -> int:
        """How many times the circuit has opened (re-opens after a failed probe included)."""
        with self._lock:
            return self._opens

    @property
    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    def _transition(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if new == OPEN:
            self._opens += 1
            self._opened_at = self._clock()
            logger.warning(
                "circuit open name=%s failures=%d probe_in_s=%.1f last_error=%s",
                self.name, self._failures, self.reset_timeout_s, self._last_error,
                extra={"event": "circuit_open", "circuit": self.name,
                       "failures": self._failures, "from_state": old},
            )
        else:
            logger.info(
                "circuit %s name=%s", new, self.name,
                extra={"event": f"circuit_{new}", "circuit": self.name, "from_state": old},
            )
        if self._listener is not None:
            try:
                self._listener(old, new)
            except Exception:
                logger.exception("circuit listener failed name=%s", self.name)

    def _half_open_if_due(self) -> None:
        if self._state == OPEN and self._clock() >= self._opened_at + self.reset_timeout_s:
            self._probe_in_flight = False
            self._transition(HALF_OPEN)

    # -- calls -------------------------------------------------------------------------
    def _admit(self) -> int | None:
        """Let a call through (with its probe number when it is the probe) or raise."""
        with self._lock:
            self._half_open_if_due()
            if self._state == CLOSED:
                return None
            if self._state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                self._probe_seq += 1
                return self._probe_seq
            probing = self._state == HALF_OPEN
            raise CircuitOpenError(
                self.name,
                failures=self._failures,
                retry_in_s=0.0
                if probing
                else max(0.0, self._opened_at + self.reset_timeout_s - self._clock()),
                last_error=self._last_error,
                probing=probing,
            )

    def _is_current_probe(self, probe: int | None) -> bool:
        return probe is not None and probe == self._probe_seq and self._probe_in_flight

    def _on_success(self, probe: int | None) -> None:
        with self._lock:
            if self._is_current_probe(probe):
                self._probe_in_flight = False
                self._failures = 0
                if self._state == HALF_OPEN:
                    self._transition(CLOSED)
            elif self._state == CLOSED:
                self._failures = 0
            # A late success of a call admitted before the circuit opened proves less than
            # the probe will: leave an open or half-open circuit to its probe.

    def _on_error(self, error: BaseException, probe: int | None) -> None:
        with self._lock:
            current_probe = self._is_current_probe(probe)
            if current_probe:
                self._probe_in_flight = False
            if not self._is_failure(error):
                return  # neither a failure nor a success; a probe slot is freed above
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
            if (current_probe and self._state == HALF_OPEN) or (
                self._state == CLOSED and self._failures >= self.failure_threshold
            ):
                self._transition(OPEN)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker.

        Returns
        -------
        object
            What ``fn`` returned.

        Raises
        ------
        CircuitOpenError
            The circuit is open (or half-open with a probe running): ``fn`` was not called.
        Exception
            Whatever ``fn`` raised, unchanged, after it was counted.
        """
        probe = self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            self._on_error(e, probe)
            raise
        self._on_success(probe)
        return result

    def reset(self) -> None:
        """Close the circuit and forget the failures (operator action, tests)."""
        with self._lock:
            self._failures = 0
            self._last_error = None
            self._probe_in_flight = False
            if self._state != CLOSED:
                self._transition(CLOSED)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(name={self.name!r}, state={self.state!r}, "
            f"failures={self.failures}, failure_threshold={self.failure_threshold}, "
            f"reset_timeout_s={self.reset_timeout_s})"
        )


class CircuitBreakerClient(InferenceClient):
    """An :class:`~serving.clients.base.InferenceClient` whose calls go through a breaker.

    ``predict`` and ``metadata`` (hence ``check_signature``) of ``inner`` each count as one
    breaker call: ``inner``'s own retries, chunking and input checks happen inside it, so
    one call that failed after all its retries is one failure.

    Parameters
    ----------
    inner : InferenceClient
        The backend client; closed by :meth:`close`.
    breaker : CircuitBreaker
        Shared by every client of the same endpoint.

    Notes
    -----
    Attributes the wrapper does not define (``target``, ``timeout_s``, ...) are read from
    ``inner``.
    """

    def __init__(self, inner: InferenceClient, breaker: CircuitBreaker) -> None:
        super().__init__(
            inner.model_name, version=inner.version, signature_name=inner.signature_name
        )
        self.inner = inner
        self.breaker = breaker
        self.contract = inner.contract

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``inner.predict`` through the breaker (see :meth:`InferenceClient.predict`).

        Raises
        ------
        CircuitOpenError
            The circuit is open: nothing was sent.
        """
        return self.breaker.call(self.inner.predict, inputs)

    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.breaker.call(self.inner._predict_batch, inputs)

    def _fetch_metadata(self) -> Metadata:
        return self.breaker.call(self.inner.metadata)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not found normally; guard against recursion while
        # __init__ has not set ``inner`` yet (e.g. during unpickling).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"CircuitBreakerClient({self.inner!r}, state={self.breaker.state!r})"
