"""Structured logging: one JSON object per line on stderr, extras included as fields.

Call :func:`configure_logging` once from an entry point. ``log.info("msg", extra={...})``
adds the extras as top-level keys. Keys that look like secrets are masked, so a
token passed by mistake never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

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
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


# Lines third-party libraries log on every Beam pass that say nothing an operator can act on.
_NOISE = (
    "Resource module is not available for current platform",  # RunInference, twice a pass
    "apitools not found",  # Beam's GCP extras, absent on purpose
)


def _drop_known_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(fragment in message for fragment in _NOISE)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr at ``level``; quieten TensorFlow's C++ chatter."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
