"""Structured logging: one JSON object per line on stderr, extras included as fields.

Call :func:`configure_logging` once from an entry point. ``log.info("msg", extra={...})``
adds the extras as top-level keys. Keys that look like secrets are masked, so a
token passed by mistake never reaches the log.

Values are redacted too, by :class:`SecretRedactingFilter` on the handler: every secret
registered with :func:`register_secret` (the configuration's are, through
:func:`register_config_secrets`) and anything shaped like a credential — the password of
``scheme://user:password@host``, ``password=...``, ``Authorization: Bearer ...`` and the
``v1=`` MAC of an ``X-Insar-Signature`` header — is replaced by ``***`` in the message, its
arguments, the extras and the traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_WORDS = ("password", "secret", "token", "authorization", "api_key", "apikey")


class JsonFormatter(logging.Formatter):
    """Render a record as a single JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            masked = any(word in key.lower() for word in _SECRET_WORDS)
            payload[key] = "***" if masked else value
        if record.exc_text:
            # Set by SecretRedactingFilter: the traceback with secrets already redacted.
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


# ---------------------------------------------------------------------------- redaction
REDACTED = "***"

_registered: set[str] = set()
_registered_lock = threading.Lock()
_registered_pattern: re.Pattern[str] | None = None

# Credentials recognised by their shape, whoever logs them. Each keeps its group 1 and
# replaces the rest of the match with REDACTED.
_CREDENTIAL_PATTERNS = (
    # scheme://user:password@host (database and broker URLs).
    re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)[^\s@/]+(?=@)"),
    # password=..., secret="...", sasl_plain_password=... (JAAS lines, DSNs, query strings)
    # and "password": "..." (dict and JSON reprs).
    re.compile(
        r"((?:password|passwd|pwd|secret|tokens?)[\"']?\s*(?:=|[\"']\s*:)\s*)"
        r"(?:\"[^\"]*\"|'[^']*'|[^\s&,;'\"}]+)",
        re.IGNORECASE,
    ),
    # Authorization: Bearer <token> / Basic <credentials>, and a bare "Bearer <token>".
    re.compile(
        r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?\s*(?i:basic|bearer|digest)\s+)"
        r"[^\s\"',;]+"
    ),
    re.compile(r"(\bBearer\s+)[A-Za-z0-9\-._~+/]+=*"),
    # X-Insar-Signature: t=<unix>,v1=<hex MAC> (a valid MAC can be replayed for a while).
    re.compile(r"(\bv1=)[0-9a-fA-F]{16,}"),
)


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log line from now on (message, arguments, extras, traces).

    Empty values and ``None`` are ignored. Short secrets are redacted too, wherever they
    occur: a 3-character password makes the logs harder to read, never leaky.
    """
    global _registered_pattern
    if not value:
        return
    with _registered_lock:
        if value in _registered:
            return
        _registered.add(value)
        # Longest first, so that a secret containing another is redacted whole.
        alternatives = sorted(_registered, key=len, reverse=True)
        _registered_pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def _secret_texts(value: Any) -> Iterable[str]:
    """The secret strings inside a configuration value (SecretStr, lists, nested sections)."""
    if value is None:
        return
    reveal = getattr(value, "get_secret_value", None)
    if callable(reveal):
        text = reveal()
        if isinstance(text, str) and text:
            yield text
            # A URL's password also appears on its own (drivers' errors), maybe %-decoded.
            try:
                password = urlsplit(text).password if "://" in text else None
            except ValueError:
                password = None
            if password:
                yield password
                yield unquote(password)
        return
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):
        for name in fields:
            yield from _secret_texts(getattr(value, name, None))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_texts(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _secret_texts(item)


def register_config_secrets(config: Any) -> None:
    """Register every secret of a configuration with :func:`register_secret`.

    Walks the (pydantic) configuration for ``SecretStr`` values — the Kafka SASL password,
    the database URL and its password, the API tokens — so a section added later with a
    ``SecretStr`` key is covered without touching this function.
    """
    for text in _secret_texts(config):
        register_secret(text)


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-shaped substrings replaced by ``***``."""
    pattern = _registered_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for credential in _CREDENTIAL_PATTERNS:
        text = credential.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _redacted_value(value: Any) -> Any:
    """An extra's value with secrets redacted; unchanged (same object) when it held none."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {key: _redacted_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_redacted_value(item) for item in value)
    # Anything else is rendered with str() by the JSON formatter: judge that text.
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class SecretRedactingFilter(logging.Filter):
    """Redacts secrets from a record before any formatter sees it; never drops a record.

    Installed on the handler by :func:`configure_logging`, so it sees every record that
    handler writes, whichever logger it came from (a filter on a logger would not).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A malformed call: the formatter would fail too, and logging's error report
            # would then print the raw arguments. Keep the template, drop the arguments.
            message = f"{record.msg} (arguments dropped: they could not be formatted)"
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key in _STANDARD or key.startswith("_"):
                continue
            setattr(record, key, _redacted_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Lines third-party libraries log on every Beam pass that say nothing an operator can act on.
_NOISE = (
    "Resource module is not available for current platform",  # RunInference, twice a pass
    "apitools not found",  # Beam's GCP extras, absent on purpose
)


def _drop_known_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(fragment in message for fragment in _NOISE)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr at ``level``, secrets redacted; quieten TensorFlow's chatter."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # Redaction first: it also turns a malformed call into a plain message that the
    # noise filter can read without raising.
    handler.addFilter(SecretRedactingFilter())
    handler.addFilter(_drop_known_noise)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up chatter (oneDNN, CUDA probing) hidden.

    Those lines are written by C++ code to file descriptor 2 before TensorFlow's own
    log-level variable takes effect, so only a temporary redirect of the descriptor
    hides them. An import failure still raises normally once the descriptor is back.
    """
    import os

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow

            # The first device query probes CUDA and logs an error on CPU-only hosts.
            tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
