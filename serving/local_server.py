"""A TF-Serving-compatible model server in Python, standing in for ``tensorflow_model_server``.

``tensorflow_model_server`` ships only as Docker images and Google's apt repository,
neither usable on the development machines (docs: PLATFORM.md). This module serves the
same SavedModel directories with the same wire APIs, so the gRPC and REST clients are
tested against the protocol they will meet in production:

* gRPC: ``tensorflow.serving.PredictionService`` from tensorflow-serving-api's own
  service definition — ``Predict`` and ``GetModelMetadata`` (``signature_def``);
  ``Classify``, ``Regress`` and ``MultiInference`` answer UNIMPLEMENTED. Message size
  limits are raised (default 256 MiB).
* REST: ``GET /v1/models/<name>[/versions/<v>]`` (status),
  ``GET .../metadata`` and ``POST ...:predict`` (columnar ``inputs`` and row
  ``instances`` formats), with TF-Serving's JSON shapes, ``NaN`` literals included.

Unknown model or version gives NOT_FOUND / HTTP 404; wrong input names, dtypes or
shapes give INVALID_ARGUMENT / HTTP 400 with the expected ones in the message.
It is not a production server: no request batching, no model hot-reload, no
monitoring endpoint. Heavy imports (TensorFlow, gRPC) are deferred so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from serving.clients.base import (
    DTYPE_NAME_TO_DT,
    InferenceError,
    InvalidInputError,
    ModelUnavailableError,
)
from serving.clients.inprocess import Servable, available_versions, resolve_version
from serving.signatures import SIGNATURE_NAME

if TYPE_CHECKING:
    import grpc

logger = logging.getLogger(__name__)

PREDICT_METHOD_NAME = "tensorflow/serving/predict"


@dataclass
class ServerConfig:
    """What to serve and where.

    Parameters
    ----------
    model_base : Path
        Directory holding ``<model_name>/<version>/`` SavedModels (TF-Serving layout).
    models : mapping of str to (int or None), optional
        Model names to serve, each with a pinned version or None for the policy below.
        None = every subdirectory of ``model_base`` that has a numeric version.
    all_versions : bool
        Serve every version found (like ``version_policy {all {}}``) instead of only the
        highest (``latest {num_versions: 1}``, TF-Serving's default).
    host : str
        Interface to bind; ``0.0.0.0`` to accept remote clients.
    grpc_port, rest_port : int or None
        Ports; 0 = pick a free one (read it back from the server), None = disabled.
    max_message_bytes : int
        gRPC max send/receive message length.
    grpc_workers : int
        Threads handling gRPC calls.
    """

    model_base: Path
    models: Mapping[str, int | None] | None = None
    all_versions: bool = False
    host: str = "127.0.0.1"
    grpc_port: int | None = 0
    rest_port: int | None = 0
    max_message_bytes: int = 256 * 1024 * 1024
    grpc_workers: int = 8
    signature_name: str = field(default=SIGNATURE_NAME)


class ModelRegistry:
    """The loaded servables, by model name and version.

    Raises
    ------
    ModelUnavailableError
        At construction, when a requested model or version is not on disk.
    """

    def __init__(self, config: ServerConfig) -> None:
        base = Path(config.model_base)
        if not base.is_dir():
            raise ModelUnavailableError(f"model base {base} is not a directory")
        wanted: Mapping[str, int | None] = config.models or {
            p.name: None for p in sorted(base.iterdir()) if available_versions(base, p.name)
        }
        if not wanted:
            raise ModelUnavailableError(
                f"no <model>/<version>/ SavedModels under {base}: export one first"
            )
        self._servables: dict[str, dict[int, Servable]] = {}
        for name, pinned in wanted.items():
            if pinned is not None:
                versions = [resolve_version(base, name, pinned)]
            elif config.all_versions:
                versions = available_versions(base, name)
            else:
                versions = [resolve_version(base, name, None)]
            if not versions:
                raise ModelUnavailableError(f"no versions of '{name}' under {base / name}")
            self._servables[name] = {
                v: Servable(name, v, base / name / str(v), config.signature_name) for v in versions
            }

    @property
    def models(self) -> dict[str, list[int]]:
        """Served model names and their versions."""
        return {name: sorted(vs) for name, vs in self._servables.items()}

    def get(self, name: str, version: int | None) -> Servable:
        """The servable for ``name`` at ``version`` (None = highest served).

        Raises
        ------
        ModelUnavailableError
            Unknown model or version (NOT_FOUND / HTTP 404).
        """
        versions = self._servables.get(name)
        if versions is None:
            raise ModelUnavailableError(
                f"Servable not found for request: model '{name}' is not served "
                f"(served: {sorted(self._servables)})"
            )
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise ModelUnavailableError(
                f"Servable not found for request: model '{name}' version {version} "
                f"is not served (served versions: {sorted(versions)})"
            )
        return versions[version]


def signature_def_map(servable: Servable) -> Any:
    """A ``tensorflow_serving.apis.SignatureDefMap`` describing ``servable``'s signature."""
    from tensorflow.core.framework import tensor_shape_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    meta = servable.metadata()

    def info(name: str, spec: Mapping[str, Any], tensor_name: str) -> Any:
        shape = tensor_shape_pb2.TensorShapeProto()
        if spec["shape"] is None:
            shape.unknown_rank = True
        else:
            for size in spec["shape"]:
                shape.dim.add(size=-1 if size is None else size)
        dt = types_pb2.DataType.Value(DTYPE_NAME_TO_DT.get(spec["dtype"], "DT_INVALID"))
        return meta_graph_pb2.TensorInfo(name=tensor_name, dtype=dt, tensor_shape=shape)

    sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD_NAME)
    # Tensor names follow what TF gives a serving signature's placeholders / outputs.
    for name, spec in meta["inputs"].items():
        sig.inputs[name].CopyFrom(info(name, spec, f"{servable.signature_name}_{name}:0"))
    for i, (name, spec) in enumerate(sorted(meta["outputs"].items())):
        sig.outputs[name].CopyFrom(info(name, spec, f"StatefulPartitionedCall:{i}"))
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig_map.signature_def[servable.signature_name].CopyFrom(sig)
    return sig_map


def _check_signature_name(servable: Servable, requested: str) -> None:
    if requested not in ("", servable.signature_name):
        raise InvalidInputError(
            f'Serving signature name: "{requested}" not found in signature def; '
            f"model '{servable.model_name}' serves \"{servable.signature_name}\""
        )


# --- gRPC ---------------------------------------------------------------------------------
def _grpc_code(error: InferenceError) -> grpc.StatusCode:
    import grpc

    if isinstance(error, ModelUnavailableError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def _make_servicer(registry: ModelRegistry) -> Any:
    """Build the PredictionService servicer (a function so gRPC/TF import lazily)."""
    import grpc
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    from serving.clients.grpc_client import ndarray_to_tensor_proto, tensor_proto_to_ndarray

    def lookup(spec: Any) -> Servable:
        if spec.WhichOneof("version_choice") == "version_label":
            raise InvalidInputError(
                "version labels are not supported by serving.local_server: pin a number"
            )
        version = spec.version.value if spec.HasField("version") else None
        return registry.get(spec.name, version)

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        """TF-Serving's PredictionService over :class:`ModelRegistry`."""

        def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                servable = lookup(request.model_spec)
                _check_signature_name(servable, request.model_spec.signature_name)
                inputs = {k: tensor_proto_to_ndarray(v) for k, v in request.inputs.items()}
                outputs = servable.run(inputs)
                wanted = list(request.output_filter) or list(outputs)
                unknown = sorted(set(wanted) - set(outputs))
                if unknown:
                    raise InvalidInputError(
                        f"output_filter names {unknown} are not outputs of "
                        f"'{servable.model_name}' ({sorted(outputs)})"
                    )
            except InferenceError as e:
                context.abort(_grpc_code(e), str(e))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.model_name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = servable.signature_name
            for name in wanted:
                response.outputs[name].CopyFrom(ndarray_to_tensor_proto(outputs[name]))
            return response

        def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                servable = lookup(request.model_spec)
                fields = list(request.metadata_field)
                if fields != ["signature_def"]:
                    raise InvalidInputError(
                        f"metadata_field must be exactly ['signature_def'], got {fields}"
                    )
            except InferenceError as e:
                context.abort(_grpc_code(e), str(e))
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.model_name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_def_map(servable))
            return response

        def _unimplemented(self, context: grpc.ServicerContext, what: str) -> Any:
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{what} is not implemented by serving.local_server: use Predict",
            )

        def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
            return self._unimplemented(context, "Classify")

        def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
            return self._unimplemented(context, "Regress")

        def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
            return self._unimplemented(context, "MultiInference")

    return PredictionServicer()


# --- REST ---------------------------------------------------------------------------------
_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)


def _http_status(error: InferenceError) -> HTTPStatus:
    if isinstance(error, ModelUnavailableError):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, InvalidInputError):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.INTERNAL_SERVER_ERROR


def _rest_predict(servable: Servable, body: Mapping[str, Any]) -> dict[str, Any]:
    _check_signature_name(servable, str(body.get("signature_name", "")))
    specs = servable.input_specs
    if ("inputs" in body) == ("instances" in body):
        raise InvalidInputError("request must have exactly one of 'inputs' or 'instances'")

    def as_array(name: str, value: Any) -> np.ndarray:
        dtype = specs[name].dtype.as_numpy_dtype if name in specs else None
        try:
            return np.asarray(value, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise InvalidInputError(
                f"input '{name}' is not a rectangular {dtype or ''} array: {e}"
            ) from e

    row_format = "instances" in body
    if row_format:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise InvalidInputError("'instances' must be a list of rows")
        if len(specs) == 1 and not (rows and isinstance(rows[0], dict)):
            columns = {next(iter(specs)): rows}
        else:
            names = set().union(*(r.keys() for r in rows)) if rows else set(specs)
            columns = {n: [r.get(n) for r in rows] for n in names}
    else:
        raw = body["inputs"]
        columns = raw if isinstance(raw, dict) else {next(iter(specs)): raw}
    outputs = servable.run({n: as_array(n, v) for n, v in columns.items()})
    lists = {name: arr.tolist() for name, arr in outputs.items()}
    if row_format:
        if len(lists) == 1:
            return {"predictions": next(iter(lists.values()))}
        n = len(next(iter(lists.values())))
        return {"predictions": [{k: v[i] for k, v in lists.items()} for i in range(n)]}
    # TF-Serving omits the output name when the signature has exactly one output.
    return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}


def _make_handler(registry: ModelRegistry) -> type[BaseHTTPRequestHandler]:
    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps httpx connections alive between calls.
        protocol_version = "HTTP/1.1"
        server_version = "insar-monitor-local-server"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("rest %s", format % args)

        def _send(self, status: int, payload: Mapping[str, Any]) -> None:
            data = json.dumps(payload, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, int | None, str]:
            match = _PATH.match(self.path.split("?", 1)[0])
            if match is None:
                raise ModelUnavailableError(
                    f"Malformed request: {self.command} {self.path}; use /v1/models/<name>"
                    "[/versions/<v>][/metadata|:predict]"
                )
            version = match["version"]
            return match["name"], int(version) if version else None, match["verb"] or ""

        def do_GET(self) -> None:
            try:
                name, version, verb = self._route()
                if verb == "/metadata":
                    servable = registry.get(name, version)
                    sig = json_format.MessageToDict(
                        signature_def_map(servable),
                        preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True,
                    )
                    self._send(
                        200,
                        {
                            "model_spec": {
                                "name": name,
                                "signature_name": "",
                                "version": str(servable.version),
                            },
                            "metadata": {"signature_def": sig},
                        },
                    )
                elif verb == "":
                    versions = (
                        [registry.get(name, version).version]
                        if version is not None
                        else registry.models.get(name) or [registry.get(name, None).version]
                    )
                    self._send(
                        200,
                        {
                            "model_version_status": [
                                {
                                    "version": str(v),
                                    "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""},
                                }
                                for v in versions
                            ]
                        },
                    )
                else:
                    raise InvalidInputError(f"use POST for {verb}")
            except InferenceError as e:
                self._send(_http_status(e), {"error": str(e)})

        def do_POST(self) -> None:
            try:
                name, version, verb = self._route()
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if verb in (":classify", ":regress"):
                    self._send(501, {"error": f"{verb[1:]} is not implemented: use :predict"})
                    return
                if verb != ":predict":
                    raise InvalidInputError(f"POST needs :predict, got '{verb}'")
                servable = registry.get(name, version)
                try:
                    body = json.loads(raw)  # accepts NaN / Infinity literals
                except ValueError as e:
                    raise InvalidInputError(f"JSON Parse error: {e}") from e
                if not isinstance(body, dict):
                    raise InvalidInputError("request body must be a JSON object")
                self._send(200, _rest_predict(servable, body))
            except InferenceError as e:
                self._send(_http_status(e), {"error": str(e)})

    return Handler


# --- the server ---------------------------------------------------------------------------
class LocalServer:
    """Serve SavedModels over TF-Serving's gRPC and REST APIs in this process.

    Parameters
    ----------
    config : ServerConfig
        Models, ports and limits.

    Examples
    --------
    >>> with LocalServer(ServerConfig(Path("serving/models"))) as server:  # doctest: +SKIP
    ...     print(server.grpc_target, server.rest_url)
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry: ModelRegistry | None = None
        self._grpc_server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the running gRPC endpoint."""
        if self.grpc_port is None:
            raise RuntimeError("gRPC is not running: call start() with grpc_port set")
        return f"{self.config.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """``http://host:port`` of the running REST endpoint."""
        if self.rest_port is None:
            raise RuntimeError("REST is not running: call start() with rest_port set")
        return f"http://{self.config.host}:{self.rest_port}"

    def start(self) -> Self:
        """Load the models and start listening; returns ``self``.

        Raises
        ------
        ModelUnavailableError
            Missing models; OSError when a port is taken.
        """
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self.registry is not None:
            raise RuntimeError("server already started")
        cfg = self.config
        self.registry = ModelRegistry(cfg)
        try:
            if cfg.grpc_port is not None:
                limit = cfg.max_message_bytes
                server = grpc.server(
                    futures.ThreadPoolExecutor(
                        max_workers=cfg.grpc_workers, thread_name_prefix="local-server-grpc"
                    ),
                    options=[
                        ("grpc.max_send_message_length", limit),
                        ("grpc.max_receive_message_length", limit),
                    ],
                )
                prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                    _make_servicer(self.registry), server
                )
                port = server.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
                if port == 0:
                    raise OSError(f"cannot bind gRPC to {cfg.host}:{cfg.grpc_port}")
                server.start()
                self._grpc_server, self.grpc_port = server, port
            if cfg.rest_port is not None:
                http = ThreadingHTTPServer((cfg.host, cfg.rest_port), _make_handler(self.registry))
                http.daemon_threads = True
                self._http = http
                self.rest_port = http.server_address[1]
                self._http_thread = threading.Thread(
                    target=http.serve_forever, name="local-server-rest", daemon=True
                )
                self._http_thread.start()
        except Exception:
            self.stop()
            raise
        logger.info(
            "local server started models=%s grpc_port=%s rest_port=%s",
            self.registry.models,
            self.grpc_port,
            self.rest_port,
            extra={
                "event": "server_started",
                "grpc_port": self.grpc_port,
                "rest_port": self.rest_port,
            },
        )
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop both endpoints (in-flight gRPC calls get ``grace_s``). Idempotent."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace_s).wait()
            self._grpc_server = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self.registry is not None:
            logger.info("local server stopped", extra={"event": "server_stopped"})
        self.registry = None
        self.grpc_port = self.rest_port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- CLI ----------------------------------------------------------------------------------
def _parse_model(text: str) -> tuple[str, int | None]:
    name, _, version = text.partition(":")
    if not name or (version and not version.isdigit()):
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:VERSION, got '{text}'")
    return name, int(version) if version else None


def _port(text: str) -> int | None:
    value = int(text)
    if value < -1 or value > 65535:
        raise argparse.ArgumentTypeError(f"port must be in [-1, 65535], got {value}")
    return None if value == -1 else value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m serving.local_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.local_server",
        description=(
            "Serve TF SavedModels over TensorFlow Serving's gRPC (PredictionService: "
            "Predict, GetModelMetadata) and REST (/v1/models/...) APIs. A stand-in for "
            "tensorflow_model_server where it cannot be installed (tests, development "
            "machines); production uses the tensorflow/serving image, see "
            "deploy/tfserving/README.md. No request batching, no hot reload."
        ),
        epilog=(
            "examples:\n"
            "  python -m serving.local_server --model-base serving/models "
            "--grpc-port 8500 --rest-port 8501\n"
            "  python -m serving.local_server --model-base /tmp/models "
            "--model unrest_detector:1 --rest-port -1\n"
            "  curl localhost:8501/v1/models/unrest_detector/metadata"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model-base",
        type=Path,
        required=True,
        help="directory holding <model_name>/<version>/ SavedModels (TF-Serving layout)",
    )
    parser.add_argument(
        "--model",
        type=_parse_model,
        action="append",
        metavar="NAME[:VERSION]",
        help="model to serve, optionally pinned to a version; repeatable "
        "(default: every model under --model-base, highest version)",
    )
    parser.add_argument(
        "--all-versions",
        action="store_true",
        help="serve every version found, not only the highest (version_policy all)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; 0.0.0.0 for remote)",
    )
    parser.add_argument(
        "--grpc-port",
        type=_port,
        default=8500,
        help="gRPC port like TF-Serving's --port (default 8500; 0 = free, -1 = off)",
    )
    parser.add_argument(
        "--rest-port",
        type=_port,
        default=8501,
        help="REST port like --rest_api_port (default 8501; 0 = free, -1 = off)",
    )
    parser.add_argument(
        "--max-message-mb",
        type=int,
        default=256,
        help="gRPC max send/receive message size in MiB (default 256)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.grpc_port is None and args.rest_port is None:
        logger.error("both --grpc-port and --rest-port are -1: enable at least one")
        return 2
    config = ServerConfig(
        model_base=args.model_base,
        models=dict(args.model) if args.model else None,
        all_versions=args.all_versions,
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        max_message_bytes=args.max_message_mb * 1024 * 1024,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d received, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = LocalServer(config).start()
    except (ModelUnavailableError, OSError) as e:
        logger.error("cannot start: %s", e)
        return 1
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
