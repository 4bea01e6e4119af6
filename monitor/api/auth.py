"""The bearer-token guard of the API's management endpoints.

Subscriptions, silences and the delivery log change what the daemon does, so they need
``Authorization: Bearer <token>`` with a token from ``api.tokens``, or one whose SHA-256 is
in ``api.token_hashes`` (``sha256:<hex>``: the token itself is then stored nowhere). With no
token configured every such request is refused (403), so a fresh install never exposes them.
Tokens and hashes are compared in constant time, all of them every time, and are never
logged: a failed attempt logs who tried and where, never what was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from monitor.api.models import Problem
from monitor.config import MonitorConfig

__all__ = ["AUTH_ERRORS", "NO_TOKENS_MESSAGE", "make_token_check"]

log = logging.getLogger(__name__)

NO_TOKENS_MESSAGE = "set api.tokens (INSAR_MONITOR__API__TOKENS) to enable management"

# The replies of a guarded endpoint that the guard itself makes, for the OpenAPI document.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No bearer token, or not a valid one."},
    403: {"model": Problem, "description": "No tokens configured: management is disabled."},
}

# Module level: FastAPI resolves the (string) annotations of the dependency below against
# this module's globals, where a local of the factory would not be found.
# auto_error=False: the dependency answers 401 / 403 itself, with the messages it wants.
_BEARER = HTTPBearer(
    auto_error=False,
    description="A token from api.tokens, or one whose hash is in api.token_hashes.",
)


def make_token_check(config: MonitorConfig) -> Callable[..., None]:
    """The dependency that guards management endpoints with ``api.tokens`` and ``token_hashes``."""
    # Empty tokens are dropped: compare_digest(b"", b"") is True, so an empty entry would let
    # "Authorization: Bearer " through. Bytes, because compare_digest refuses non-ASCII str.
    tokens = [
        s.get_secret_value().encode("utf-8") for s in config.api.tokens if s.get_secret_value()
    ]
    # Raw digests of the configured hashes (validated as sha256:<64 hex> at config load).
    digests = [bytes.fromhex(h.partition(":")[2]) for h in config.api.token_hashes]

    def require_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    ) -> None:
        if not tokens and not digests:
            raise HTTPException(403, NO_TOKENS_MESSAGE)
        if credentials is None:
            raise HTTPException(
                401,
                "this endpoint needs 'Authorization: Bearer <token>' with a token from "
                "api.tokens",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = credentials.credentials.encode("utf-8")
        given_digest = hashlib.sha256(given).digest()
        # Every token and hash is compared, so the time taken does not tell which one nearly
        # matched (nor whether a plaintext or a hashed entry did).
        matched = [hmac.compare_digest(given, token) for token in tokens]
        matched += [hmac.compare_digest(given_digest, digest) for digest in digests]
        if not any(matched):
            # Who tried, never what they sent: a near-miss token is still a secret.
            client = request.client.host if request.client else "unknown"
            log.warning(
                "API request with an invalid bearer token",
                extra={"client": client, "path": request.url.path},
            )
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return require_token
