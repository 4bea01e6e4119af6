"""The daemon's operational endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

A small HTTP server in a background thread (the standard library's, so it works whether or
not the HTTP API is enabled):

- ``/metrics``: the Prometheus text format of :data:`monitor.metrics.REGISTRY`;
- ``/healthz``: liveness — 200 while the process serves requests (a wedged daemon stops
  answering and the orchestrator restarts it);
- ``/readyz``: readiness — 200 only when every check passes (broker reachable, models
  loaded, alert store writable), else 503; the body says which check failed and why, so an
  operator sees it from ``curl``.

Checks are callables returning ``None`` when fine or a short reason; each runs with a
deadline so a hung broker cannot hang the probe.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.metrics import REGISTRY

log = logging.getLogger(__name__)

Check = Callable[[], str | None]


def run_checks(checks: Mapping[str, Check], timeout_s: float) -> dict[str, str]:
    """Run every check in parallel; ``name -> "ok"`` or the reason it failed."""
    results: dict[str, str] = {}
    if not checks:
        return results
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(checks))
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        for name, future in futures.items():
            try:
                reason = future.result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                reason = f"no answer within {timeout_s:g} s"
            except Exception as e:  # a check that raises is a failed check, not a crash
                reason = f"{type(e).__name__}: {e}"
            results[name] = "ok" if reason is None else reason
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


class HealthServer:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread.

    Parameters
    ----------
    host, port : str, int
        Where to listen (port 0 picks a free one; see :attr:`url`).
    checks : mapping of name to callable
        Readiness checks (see the module docstring).
    timeout_s : float
        Deadline of each readiness check.
    """

    def __init__(
        self, host: str, port: int, checks: Mapping[str, Check], *, timeout_s: float = 5.0
    ) -> None:
        self.checks = dict(checks)
        self.timeout_s = timeout_s
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._json(200, {"status": "alive"})
                elif path == "/readyz":
                    results = run_checks(server.checks, server.timeout_s)
                    ready = all(v == "ok" for v in results.values())
                    self._json(200 if ready else 503,
                               {"status": "ready" if ready else "not ready", "checks": results})
                else:
                    self._json(404, {"error": f"no {path}; try /metrics, /healthz or /readyz"})

            def _json(self, status: int, body: object) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # a scrape every 15 s is not news

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise RuntimeError(
                f"cannot serve metrics on {host}:{port}: {e} (set metrics.port to a free port, "
                "or metrics.enabled: false)"
            ) from e
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health endpoints up", extra={"url": self.url})

    def stop(self) -> None:
        # shutdown() waits for serve_forever to notice; it would wait forever if never started.
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
