"""Run the API with uvicorn in a background thread of the daemon.

The daemon's main thread runs the pipeline passes; the API only reads the alert store (and
writes subscriptions and silences), so it lives in a thread of the same process rather than
a second service to deploy. uvicorn installs signal handlers only when it runs on the main
thread, so in a thread it leaves the daemon's own SIGTERM handling alone; :meth:`stop`
asks it to finish instead.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

__all__ = ["ApiServer"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class ApiServer:
    """A uvicorn server for ``app`` on a daemon thread.

    Parameters
    ----------
    app
        The application, e.g. from :func:`monitor.api.create_app`.
    host
        Interface to listen on.
    port
        TCP port; 0 picks a free one (read it back from :attr:`url` or :attr:`port`).
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._bound: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            # uvicorn's access log never prints headers, so Authorization tokens cannot leak
            # through it; at "warning" it is silent anyway, and turning it off makes sure.
            log_level="warning",
            access_log=False,
            # None: leave logging to the daemon (JSON lines); uvicorn's default dictConfig
            # would install its own handlers on the uvicorn loggers.
            log_config=None,
            lifespan="off",
        )
        self._server = uvicorn.Server(self._config)

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._bound is None:
            raise RuntimeError("the API server is not running")
        return self._bound[1]

    @property
    def url(self) -> str:
        """Base URL a client on this machine reaches the server at, e.g. ``http://127.0.0.1:8088``."""
        if self._bound is None:
            raise RuntimeError("the API server is not running")
        host, port = self._bound
        # A wildcard address is where the server listens, not where to connect.
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Start serving; return once the server accepts connections.

        Raises
        ------
        RuntimeError
            Already started, or the server did not come up within 10 s (e.g. the port is
            taken: uvicorn logs the reason).
        """
        if self._thread is not None:
            raise RuntimeError("the API server was already started")
        # A uvicorn Server runs once; a fresh one lets stop() then start() work.
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._run, name="insar-monitor-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            # uvicorn exits its thread (sys.exit) when it cannot bind: no point waiting on.
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the API server did not start on {self.host}:{self._requested_port} "
                    f"within {_START_TIMEOUT_S:.0f} s (see the log for uvicorn's reason)"
                )
            time.sleep(0.01)
        self._bound = self._bound_address()

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:
            # uvicorn calls sys.exit when it cannot start (port taken); on this thread that
            # would only end the thread, noisily. start() sees the thread gone and raises.
            log.debug("uvicorn exited during start-up")

    def _bound_address(self) -> tuple[str, int]:
        # With port 0 each listening socket gets its own port ("localhost" binds IPv4 and
        # IPv6); the first one is as good as any and stays the same for the server's life.
        for server in self._server.servers:
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    address = sock.getsockname()
                    return str(address[0]), int(address[1])
        raise RuntimeError("the API server started without a TCP socket")

    def stop(self) -> None:
        """Ask uvicorn to finish (open requests complete first) and wait for the thread."""
        thread = self._thread
        if thread is None:
            return
        self._server.should_exit = True
        thread.join(timeout=_STOP_TIMEOUT_S)
        if thread.is_alive():
            # Connections that do not close in time are cut rather than block the daemon.
            self._server.force_exit = True
            thread.join(timeout=_STOP_TIMEOUT_S)
        self._thread = None
        self._bound = None
