"""The signature scheme of webhook deliveries, as a subscriber sees it; and the retry backoff.

Every delivery POSTed to a subscriber carries
``X-Insar-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``: an HMAC-SHA256,
keyed with the subscription's secret, over the Unix time of sending, a dot and the exact
request body (the scheme Stripe uses). The timestamp is inside the MAC so a captured request
cannot be replayed later. :func:`sign` makes the header, :func:`verify_signature` is what a
subscriber runs on what it received; ``X-Insar-Delivery`` (the id a receiver de-duplicates
by), ``X-Insar-Event`` (the revision) and ``X-Insar-Attempt`` come with it.

:func:`backoff_delay` is the wait before a failed delivery is tried again: exponential, with
full jitter. Everything here is pure (no I/O, no clock): the dispatcher of
:mod:`monitor.alerts.webhooks` and subscribers' own code both use it.
"""

from __future__ import annotations

import hashlib
import hmac
import random

__all__ = [
    "ATTEMPT_HEADER",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "backoff_delay",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Insar-Signature"
DELIVERY_HEADER = "X-Insar-Delivery"
EVENT_HEADER = "X-Insar-Event"
ATTEMPT_HEADER = "X-Insar-Attempt"

# 2**64 times any sane initial delay is far beyond any cap; it also keeps the float finite.
_MAX_BACKOFF_EXPONENT = 64


# ---------------------------------------------------------------------------- signatures
def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Insar-Signature`` value of a request body.

    Parameters
    ----------
    secret : str
        The subscription's secret (returned once, when the subscription was created).
    body : bytes
        The exact request body.
    timestamp : int
        Unix time of sending, in seconds; it is signed together with the body.

    Returns
    -------
    str
        ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>``.
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300
) -> bool:
    """Check a received ``X-Insar-Signature`` header; this is what a subscriber runs.

    Compute it over the raw request body exactly as received (before any JSON or XML
    parsing: re-serialising changes the bytes). A header may carry several ``v1`` values
    (e.g. while a secret is rotated); one match is enough.

    Parameters
    ----------
    secret : str
        The subscription's secret.
    body : bytes
        The raw request body.
    header : str
        The value of the ``X-Insar-Signature`` header, ``t=<unix time>,v1=<hex>``.
    now : float
        The receiver's current Unix time, in seconds (``time.time()``).
    tolerance_s : float, default 300
        Largest accepted difference between ``now`` and the signed timestamp; an older
        (replayed) or much newer request is refused.

    Returns
    -------
    bool
        True when the header is well-formed, its timestamp is within the tolerance and a
        signature matches; False otherwise (never raises on a malformed header).

    Examples
    --------
    >>> body = b'{"alert_event_id":"unrest-etna.volcano-etna.e1#1"}'
    >>> header = sign("s3cret", body, 1_700_000_000)
    >>> header.startswith("t=1700000000,v1=")
    True
    >>> verify_signature("s3cret", body, header, now=1_700_000_030)
    True
    >>> verify_signature("another", body, header, now=1_700_000_030)
    False
    >>> verify_signature("s3cret", body + b" ", header, now=1_700_000_030)
    False
    >>> verify_signature("s3cret", body, header, now=1_700_000_000 + 3600)
    False
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            # isascii: isdigit alone accepts digits such as "²" that int() refuses.
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
        # Unknown schemes (a future v2) are ignored so that senders can add one.
    if timestamp is None or not candidates:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    # Compare every candidate, not stopping at the first match: no timing signal.
    matched = [hmac.compare_digest(expected.encode(), c.encode()) for c in candidates]
    return any(matched)


# ---------------------------------------------------------------------------- backoff
def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before the next try after failed attempt number ``attempt``: full jitter.

    Parameters
    ----------
    attempt : int
        Number of the attempt that just failed, from 1.
    initial_s : float
        Upper bound of the first delay, seconds; it doubles with each attempt.
    max_s : float
        The bound never exceeds this, seconds.
    rng : random.Random
        Source of the jitter.

    Returns
    -------
    float
        ``uniform(0, min(max_s, initial_s * 2**(attempt - 1)))`` seconds. Spreading the whole
        interval (rather than adding a little noise to a fixed delay) keeps subscribers that
        failed together, e.g. after an outage of ours, from retrying in lock-step.
    """
    exponent = min(max(attempt, 1) - 1, _MAX_BACKOFF_EXPONENT)
    return rng.uniform(0.0, min(max_s, initial_s * 2.0**exponent))
