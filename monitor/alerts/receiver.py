"""A minimal webhook subscriber: an HTTP server that records every POST it receives.

The demo registers one to show a signed delivery arriving, the tests use it as the far end
of real deliveries, and an operator can run one to check a deployment's webhooks before
pointing them at a real subscriber. Signatures are checked by the caller with
:func:`monitor.alerts.signing.verify_signature` on the recorded body and headers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ReceivedPost:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Accepts POSTs on any path with 200 and keeps them in arrival order.

    Parameters
    ----------
    on_post : callable, optional
        Called (in the server's thread) with each :class:`ReceivedPost`.
    port : int
        TCP port on 127.0.0.1 (0: any free port, see :attr:`url`).
    """

    def __init__(
        self, on_post: Callable[[ReceivedPost], None] | None = None, *, port: int = 0
    ) -> None:
        self.posts: list[ReceivedPost] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                post = ReceivedPost(self.path, dict(self.headers.items()), body)
                with receiver._lock:
                    receiver.posts.append(post)
                if on_post is not None:
                    on_post(post)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def received(self) -> list[ReceivedPost]:
        with self._lock:
            return list(self.posts)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits for serve_forever to notice; it would wait forever if never started.
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


@contextmanager
def webhook_receiver(
    on_post: Callable[[ReceivedPost], None] | None = None,
) -> Iterator[WebhookReceiver]:
    """A started :class:`WebhookReceiver`, stopped on exit."""
    receiver = WebhookReceiver(on_post)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
