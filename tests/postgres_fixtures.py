"""Pytest fixtures around one real PostgreSQL 15 server per test session (Debian's packages).

``tests/conftest.py`` makes them available to every test:

- ``postgres_url``: the session's server with an empty database ``insar_test``
  (``postgresql+psycopg://insar@127.0.0.1:<port>/insar_test``).
- ``pg_store_url``: a database of the test's own on that server, dropped afterwards.

The server is a throw-away cluster (``initdb`` into a temporary directory, trust
authentication on 127.0.0.1 and a private socket directory, ``fsync=off``, a session time
zone far from UTC), started lazily by the first test that asks for it. ``initdb`` refuses
to run as root, so as root the cluster belongs to Debian's ``postgres`` system user and
every server command runs through ``runuser``; as anyone else it runs as the current user.
A cluster left behind by a killed session is removed by the next one.

Without the binaries the tests are skipped (``make system-deps`` installs them), except
when ``CI`` is set: there a skip would hide that the real database was never exercised, so
it is a failure instead.

Like the Kafka broker, the server is a process-wide singleton: importing a fixture into a
module gives pytest a second definition with its own cache, and each definition must not
start a second cluster.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.environment import free_port, unavailable

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"  # Debian's system account; only used when the tests run as root
DB_USER = "insar"
DB_NAME = "insar_test"
# A zone with an odd offset, not UTC: production servers often run in local time, and code
# that only works while the session time zone happens to be UTC must fail here, not there.
SERVER_TIMEZONE = "Asia/Kathmandu"
_START_ATTEMPTS = 3  # the free port is found before the server binds it: another may win
_PREFIX = "insar-pg-"
_OWNER_FILE = "owner.pid"

_lock = threading.Lock()
_server: PostgresServer | None = None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no server log: {e})"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster in ``root`` listening on 127.0.0.1:``port``."""

    root: Path
    as_user: str | None  # run server commands as this user (we are root), else as ourselves
    port: int = 0
    running: bool = False
    _admin: psycopg.Connection | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socketdir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.port}/{database}"

    # -------------------------------------------------------------- commands
    def _run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        argv = [str(PG_BIN / args[0]), *args[1:]]
        if self.as_user is not None:
            argv = ["runuser", "-u", self.as_user, "--", *argv]
        # Inherited PG* variables (PGDATA, PGPORT, PGHOST, ...) would redirect the tools to
        # another cluster; the locale is fixed so initdb never trips over an absent one.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        # The cwd must be readable by the server user: the tools resolve their own path
        # relative to it, and a root-only working directory makes them give up.
        return subprocess.run(
            argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )

    def _check(self, what: str, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"--- server log tail ({self.logfile}) ---\n{_tail(self.logfile)}"
            )

    def start(self) -> PostgresServer:
        """initdb, start on a free port and create :data:`DB_NAME`; raises with the log tail."""
        self._check(
            "initdb",
            self._run(
                "initdb", "-D", str(self.datadir), "-A", "trust", "-U", DB_USER,
                "--encoding", "UTF8", "--no-locale", "--no-sync",
            ),
        )
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 "
                f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                f"-c timezone={SERVER_TIMEZONE}"
            )
            done = self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options,
                "-w", "-t", "60", "start",
            )
            if done.returncode == 0:
                break
            if attempt == _START_ATTEMPTS or "could not bind" not in _tail(self.logfile):
                self._check("pg_ctl start", done)
        self.running = True
        self.admin().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
        return self

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to the ``postgres`` database (CREATE/DROP DATABASE)."""
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(
                host="127.0.0.1", port=self.port, user=DB_USER, dbname="postgres",
                autocommit=True, connect_timeout=10,
            )
        return self._admin

    def stop(self) -> None:
        """Stop the server and delete the cluster (idempotent)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.running = False
        # postmaster.pid rather than the flag: a start that timed out may still have left a
        # server running.
        if (self.datadir / "postmaster.pid").exists():
            done = self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            if done.returncode != 0:  # a stuck backend must not leave a server behind
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _server_user() -> str | None:
    """None to run as ourselves; the ``postgres`` user when we are root (initdb refuses)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        unavailable(
            f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as; "
            "`make system-deps` installs Debian's postgresql package, which creates it"
        )
    return SERVER_USER


def _make_root(as_user: str | None) -> Path:
    """A fresh directory for the cluster that the server user owns and can reach."""
    root = Path(tempfile.mkdtemp(prefix=_PREFIX))
    # Who owns the cluster, so that a later session can remove it if this one is killed.
    (root / _OWNER_FILE).write_text(str(os.getpid()))
    if as_user is None:
        (root / "sock").mkdir()
        return root
    # TMPDIR may lie under a root-only directory (0700 /root): the server user could not
    # even reach its cluster there, so fall back to the world-traversable /tmp.
    entry = pwd.getpwnam(as_user)
    probe = subprocess.run(
        ["runuser", "-u", as_user, "--", "test", "-x", str(root.parent)], check=False
    )
    if probe.returncode != 0:
        shutil.rmtree(root)
        root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir="/tmp"))
        (root / _OWNER_FILE).write_text(str(os.getpid()))
    (root / "sock").mkdir()
    for path in (root, root / "sock"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _reap_orphans() -> None:
    """Stop and delete the clusters of test sessions that died without their teardown.

    A session killed by a timeout or SIGKILL never runs its teardown and its server would
    run forever (an always-on CI machine collects them). A cluster is only touched when
    the process that created it is gone; one without an owner file is left alone, as it
    may be another session's that is being set up right now.
    """
    for base in {Path(tempfile.gettempdir()), Path("/tmp")}:
        for root in base.glob(f"{_PREFIX}*"):
            try:
                owner = int((root / _OWNER_FILE).read_text())
                uid = root.stat().st_uid
            except (OSError, ValueError):
                continue
            if _pid_alive(owner):
                continue
            if os.geteuid() == 0:
                as_user = None if uid == 0 else pwd.getpwuid(uid).pw_name
            elif uid == os.geteuid():
                as_user = None
            else:
                continue  # another user's: we could not stop it anyway
            PostgresServer(root, as_user).stop()


def _shared_server() -> PostgresServer:
    global _server
    with _lock:
        if _server is not None and _server.running:
            return _server
        if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
            unavailable(
                f"PostgreSQL 15 binaries not found in {PG_BIN}; `make system-deps` installs them"
            )
        as_user = _server_user()
        _reap_orphans()
        root = _make_root(as_user)
        server = PostgresServer(root, as_user)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _server = server
        return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL 15 server (started on first use, removed at the end)."""
    server = _shared_server()
    yield server
    server.stop()  # idempotent: every definition of this fixture may call it


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session database ``insar_test`` (shared by every test)."""
    return postgres_server.url(DB_NAME)


@pytest.fixture
def pg_store_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of an empty database of this test's own, dropped afterwards.

    A new database per test is the only isolation that also covers schema and sequences,
    and with ``fsync=off`` creating one from ``template0`` costs a few tens of milliseconds.
    """
    name = f"test_{uuid.uuid4().hex}"
    ident = sql.Identifier(name)
    postgres_server.admin().execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident)
    )
    yield postgres_server.url(name)
    # FORCE ends connections a test left open (an engine not disposed) instead of failing.
    with contextlib.suppress(psycopg.Error):
        postgres_server.admin().execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
        )
