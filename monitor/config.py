"""Typed, validated configuration of insar-monitor: one YAML file plus environment overrides.

Every key has a default that runs embedded on one machine (in-process models, local
files). A YAML file overrides the defaults; environment variables override the file:
``INSAR_MONITOR__<SECTION>__<KEY>=value`` (double underscores separate levels,
values parsed as YAML scalars), e.g. ``INSAR_MONITOR__MODELS__BACKEND=grpc``.
Secrets belong in the environment, never in the file or the logs.

Run ``insar-monitor config show`` for the effective configuration and
``insar-monitor config schema`` for every key with its type, range and meaning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.alerts.rule_config import AlertsConfig

ENV_PREFIX = "INSAR_MONITOR__"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_BASE = REPO_ROOT / "serving" / "models"


class _Section(BaseModel):
    # Unknown keys are almost always typos; refuse them instead of silently ignoring.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelsConfig(_Section):
    """Where inference runs and how the clients talk to it."""

    backend: Literal["inprocess", "grpc", "rest"] = Field(
        "inprocess",
        description="inprocess: load SavedModels in this process (embedded default); "
        "grpc / rest: call a TF-Serving server.",
    )
    model_base: Path = Field(
        DEFAULT_MODEL_BASE,
        description="Directory holding <model_name>/<version>/ SavedModels (inprocess backend).",
    )
    grpc_target: str = Field("localhost:8500", description="host:port of TF-Serving gRPC.")
    rest_url: str = Field("http://localhost:8501", description="Base URL of TF-Serving REST.")
    unrest_version: int | None = Field(
        None, ge=1, description="Pin the unrest model version (None = newest served)."
    )
    trend_version: int | None = Field(
        None, ge=1, description="Pin the trend model version (None = newest served)."
    )
    delineation_version: int | None = Field(
        None, ge=1,
        description="Pin the ADA delineation U-Net (ada_delineator) version (None = newest "
        "served).",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="Deadline per request, seconds.")
    max_retries: int = Field(4, ge=0, le=20, description="Retries on UNAVAILABLE / 429 / 503.")
    max_batch: int = Field(
        64, ge=1, le=65536, description="Rows per request; larger batches are chunked."
    )
    circuit_failure_threshold: int = Field(
        5, ge=1, le=1000,
        description="Consecutive failed requests (server unreachable, model not served, "
        "deadline hit; each after its retries) that open the model's circuit breaker: "
        "requests then fail at once and the pass is retried later.",
    )
    circuit_reset_s: float = Field(
        30.0, gt=0, le=3600,
        description="Seconds an open circuit fails requests fast before one probe request "
        "tests the server again (success closes it, failure re-opens it).",
    )


class UnrestConfig(_Section):
    """Frame-level unrest decision from tile scores."""

    threshold: float = Field(
        0.5, gt=0, lt=1, description="A tile fires, and a frame is unrest, at probability >= this."
    )
    tile_overlap: int = Field(
        56, ge=0, le=192, description="Pixels shared by neighbouring 224x224 tiles."
    )
    min_firing_tiles: int = Field(
        1, ge=1, le=16,
        description="Tiles that must reach the threshold for a frame to be unrest (1 = the "
        "highest tile decides; 2 trades recall for fewer false alarms, see "
        "docs/models/unrest_report.md).",
    )
    min_valid_fraction: float = Field(
        0.1, ge=0, le=1, description="Tiles with less finite data than this are skipped."
    )


class ProductsConfig(_Section):
    """Checks applied to interferogram rasters before scoring."""

    allowed_crs: list[str] = Field(
        ["EPSG:4326"],
        description="CRS accepted for interferograms (LiCSAR products are EPSG:4326).",
    )
    phase_tolerance_rad: float = Field(
        0.01, ge=0, le=1,
        description="Values beyond +-(pi + this) mean the raster is not wrapped phase in radians.",
    )
    min_epochs: int = Field(
        10, ge=3, le=1000, description="PS series with fewer epochs are refused."
    )
    allowed_uri_schemes: list[str] = Field(
        ["file", "http", "https", "s3"],
        description="URI schemes a message may reference rasters and PS files by (absolute "
        "paths count as file); others are dead-lettered as forbidden_uri.",
    )
    allowed_roots: list[Path] = Field(
        [],
        description="Directories local files (absolute paths, file://) must resolve into, "
        "after following '..' and symlinks; others are forbidden_uri ([] = any local path).",
    )
    max_raster_bytes: int = Field(
        2 * 1024**3, ge=1,
        description="Largest raster or PS points file fetched, bytes: checked against the "
        "size the message declares, the size the store states, and while streaming "
        "(too_large).",
    )
    max_raster_pixels: int = Field(
        200_000_000, ge=1,
        description="Largest raster read, rows x cols, from its header before any pixel is "
        "decoded (too_large: a small compressed file can claim a huge raster).",
    )
    fetch_retries: int = Field(
        2, ge=0, le=10,
        description="Retries of a fetch failing transiently (network error, timeout, HTTP "
        "408/429/5xx) before the message is dead-lettered as unreachable.",
    )
    fetch_backoff_s: float = Field(
        1.0, ge=0, le=60,
        description="Pause before the first fetch retry, seconds; doubled for each next one.",
    )

    @field_validator("allowed_uri_schemes")
    @classmethod
    def _lower_case_schemes(cls, value: list[str]) -> list[str]:
        return [s.lower().removesuffix("://") for s in value]


class KafkaConfig(_Section):
    """The broker the daemon reads products from and writes detections to."""

    bootstrap_servers: str = Field(
        "localhost:9092", description="host:port[,host:port] of the Kafka brokers."
    )
    api_version: str | None = Field(
        None,
        pattern=r"^\d+(\.\d+){1,2}$",
        description="Broker protocol version, e.g. '0.9' for the embedded test broker "
        "(None = ask the broker).",
    )
    group_id: str = Field(
        "insar-monitor", min_length=1, description="Consumer group whose offsets mark progress."
    )

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # YAML (and the environment overrides, parsed as YAML) read 0.9 as a float.
        return str(value) if isinstance(value, int | float) else value
    client_id: str = Field("insar-monitor", min_length=1, description="Client id in broker logs.")
    max_message_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest message produced or fetched, bytes."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT (embedded default), SSL (TLS), "
        "SASL_PLAINTEXT or SASL_SSL (SASL login, with TLS for SASL_SSL). See docs/security.md.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None,
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_PLAINTEXT / "
        "SASL_SSL.",
    )
    sasl_username: str | None = Field(
        None, min_length=1, description="SASL user; required with SASL_PLAINTEXT / SASL_SSL."
    )
    sasl_password: SecretStr | None = Field(
        None,
        description="SASL password; required with SASL_PLAINTEXT / SASL_SSL. Set it only in "
        "the environment (INSAR_MONITOR__KAFKA__SASL_PASSWORD); never printed or logged.",
    )
    ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA certificates that sign the brokers' certificates "
        "(SSL / SASL_SSL; default: the system's trust store). Must exist.",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (SSL / SASL_SSL). Must exist."
    )
    ssl_keyfile: Path | None = Field(
        None,
        description="PEM private key of ssl_certfile (unencrypted; may be the same file as "
        "ssl_certfile). Must exist.",
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to."
    )

    @field_validator("sasl_password", mode="before")
    @classmethod
    def _password_is_text(cls, value: Any) -> Any:
        # Environment values are parsed as YAML: 0123, yes or null would arrive as a number,
        # a bool or None and silently become another password. Refuse, naming the fix.
        if value is not None and not isinstance(value, str | SecretStr):
            raise ValueError(
                "must be text: quote it in the environment, e.g. "
                "INSAR_MONITOR__KAFKA__SASL_PASSWORD=\"'0123'\" (values are read as YAML)"
            )
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaConfig:
        """SASL protocols need mechanism, user and password; stray SASL keys are only warned of."""
        sasl_keys = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password": self.sasl_password,
        }
        if self.security_protocol.startswith("SASL_"):
            missing = [key for key, value in sasl_keys.items() if value is None]
            if self.sasl_password is not None and not self.sasl_password.get_secret_value():
                missing.append("sasl_password (empty)")
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs "
                    f"{', '.join('kafka.' + key for key in missing)} (the password only in "
                    "the environment: INSAR_MONITOR__KAFKA__SASL_PASSWORD)"
                )
        elif any(value is not None for value in sasl_keys.values()):
            logging.getLogger(__name__).warning(
                "kafka.sasl_* settings are ignored: security_protocol is not SASL_PLAINTEXT "
                "or SASL_SSL",
                extra={"security_protocol": self.security_protocol},
            )
        ssl_files = (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        if not self.security_protocol.endswith("SSL") and any(f is not None for f in ssl_files):
            logging.getLogger(__name__).warning(
                "kafka.ssl_* files are ignored: security_protocol is not SSL or SASL_SSL",
                extra={"security_protocol": self.security_protocol},
            )
        return self


class TopicsConfig(_Section):
    """Topic names (docs/messages.md describes each contract)."""

    interferograms: str = Field("insar.interferograms", description="interferogram.v1 in.")
    ps_updates: str = Field("insar.ps-updates", description="ps_update.v1 in.")
    detections: str = Field("insar.detections", description="detection.v1 out.")
    dlq: str = Field("insar.dlq", description="dead_letter.v1 out: what could not be processed.")
    hotspots: str = Field("insar.hotspots", description="hotspot.v1 out: hot spots and ADAs.")
    alerts: str = Field("insar.alerts", description="alert.v1 out: every alert revision.")


class PipelineConfig(_Section):
    """How the Beam pipeline runs."""

    runner: Literal["FnApiRunner", "FlinkRunner", "DataflowRunner"] = Field(
        "FnApiRunner",
        description="FnApiRunner: bounded passes in this process (embedded); FlinkRunner / "
        "DataflowRunner: one unbounded streaming job (see docs/scale-out.md).",
    )
    runner_options: dict[str, str] = Field(
        {},
        description="Extra Beam pipeline options for a cluster runner, e.g. flink_master, "
        "project, region, temp_location.",
    )
    poll_interval_s: float = Field(
        2.0, gt=0, le=3600, description="Pause between passes when nothing new arrived, seconds."
    )
    expansion_service: str | None = Field(
        None,
        description="Cluster runners: host:port of a running Kafka expansion service for "
        "ReadFromKafka (default: Beam downloads the jar and runs it itself).",
    )
    max_records_per_partition: int = Field(
        2000, ge=1, description="Cap on the records one pass takes from a partition."
    )
    unrest_batch_size: int = Field(
        64, ge=1, le=4096, description="Tiles per unrest-model request (RunInference batches)."
    )
    trend_batch_size: int = Field(
        4096, ge=1, le=65536, description="Series per trend-model request."
    )
    dedupe_scan_records: int = Field(
        10000, ge=0,
        description="Records per output partition re-read at start-up to learn which "
        "detections a crashed run already published (so a replay never emits them twice).",
    )


class HotspotsConfig(_Section):
    """Rolling Getis-Ord Gi* hot spots and active deformation areas (ADAs) over PS velocities."""

    enabled: bool = Field(True, description="Recompute hot spots after every PS update.")
    distance_m: float = Field(
        150.0, gt=0, le=10000,
        description="Distance band of the binary Gi* weights, metres (the paper's d = 150 m).",
    )
    window_days: int = Field(
        365, ge=30, le=3650, description="Rolling window the velocities are fitted on, days."
    )
    min_window_epochs: int = Field(
        5, ge=3, le=1000, description="Fewest epochs in the window for a point's velocity."
    )
    fdr: bool = Field(
        True, description="Judge significance on Benjamini-Hochberg adjusted p-values."
    )
    alpha: float = Field(0.05, gt=0, le=0.5, description="Significance level of a hot spot.")
    stability_threshold_mm_yr: float = Field(
        10.0, ge=0, le=1000,
        description="|velocity| below this is stable ground and never part of an ADA "
        "(the paper's +-10 mm/yr).",
    )
    min_area_points: int = Field(5, ge=1, le=100000, description="Fewest points in an ADA.")
    tile_size_m: float = Field(
        5000.0, ge=100, description="Metric tiles recomputed around an update (halo = distance)."
    )
    kde_cell_m: float = Field(50.0, gt=0, description="Cell size of the density surface, metres.")
    kde_radius_m: float = Field(
        300.0, gt=0, description="Quartic kernel radius of the z-weighted density, metres."
    )
    crs: str | None = Field(
        None, description="Metric CRS for distances (None = the UTM zone of the dataset)."
    )
    full_recompute_drift: float = Field(
        0.01, ge=0, le=1,
        description="Recompute every point, not only the touched tiles, when the dataset's "
        "velocity mean or standard deviation moved by more than this fraction of the standard "
        "deviation since the last whole computation (the Gi* z-scores depend on both).",
    )


class DelineationConfig(_Section):
    """The U-Net that outlines anomalous deformation areas on the hot spot map (+ terrain)."""

    enabled: bool = Field(
        True,
        description="Run the ada_delineator model after every hot spot computation that "
        "produced a density surface (needs hotspots.enabled and the model deployed: in "
        "models.model_base for inprocess, in TF-Serving for grpc / rest).",
    )
    dem_path: Path | None = Field(
        None,
        description="DEM GeoTIFF (elevation in metres, any CRS) of the monitored area: its "
        "terrain aspect (and slope with use_slope) goes into the U-Net beside the hot spot "
        "map. Must exist. None = the U-Net sees the hot spot map alone (said in the log and "
        "in hotspot.v1 delineation.terrain 'none').",
    )
    use_slope: bool = Field(
        False, description="Also give the U-Net terrain slope (needs dem_path)."
    )
    threshold: float = Field(
        0.5, gt=0, lt=1,
        description="A cell belongs to an area where the U-Net's probability is >= this.",
    )
    overlap: int = Field(
        32, ge=0, le=128,
        description="Cells shared by neighbouring 256x256 tiles of the hot spot map "
        "(predictions are blended across them).",
    )
    min_area_m2: float = Field(
        20000.0, ge=0, description="Delineated areas smaller than this are dropped, m2."
    )

    @field_validator("dem_path")
    @classmethod
    def _dem_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"DEM {value} does not exist or is not a file: point delineation.dem_path at "
                "a GeoTIFF of the monitored area, or remove the key to delineate from the hot "
                "spot map alone"
            )
        return value

    @model_validator(mode="after")
    def _slope_needs_dem(self) -> DelineationConfig:
        if self.use_slope and self.dem_path is None:
            raise ValueError(
                "use_slope needs a DEM: set delineation.dem_path, or use_slope: false"
            )
        return self


class DatabaseConfig(_Section):
    """The alert store (history, subscriptions, deliveries, silences) through SQLAlchemy."""

    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/insar; default "
        "sqlite:///<state_dir>/alerts.sqlite. Holds a password: set it in the environment "
        "(INSAR_MONITOR__DATABASE__URL), it is never printed or logged.",
    )


class WebhooksConfig(_Section):
    """Delivery of alert revisions to subscribers' webhooks (signed, retried, dead-lettered)."""

    enabled: bool = Field(True, description="Run the delivery worker inside the daemon.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Deadline of one HTTP POST, seconds.")
    max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts before a delivery is dead-lettered."
    )
    backoff_initial_s: float = Field(
        2.0, gt=0, le=3600, description="First retry delay; doubles per attempt, full jitter."
    )
    backoff_max_s: float = Field(600.0, gt=0, le=86400, description="Longest retry delay, s.")
    concurrency: int = Field(
        8, ge=1, le=256,
        description="Subscribers served in parallel (each one's deliveries go in order).",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the worker looks for due deliveries, seconds."
    )


class MetricsConfig(_Section):
    """Prometheus metrics and health endpoints (/metrics, /healthz, /readyz)."""

    enabled: bool = Field(True, description="Serve /metrics, /healthz and /readyz.")
    host: str = Field(
        "127.0.0.1", description="Interface to listen on (0.0.0.0 in a container)."
    )
    port: int = Field(9464, ge=0, le=65535, description="TCP port (0: any free port).")
    readiness_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Deadline of each readiness check (broker, store), s."
    )


_TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")


class ApiConfig(_Section):
    """The HTTP API (alerts, CAP, Atom feed, subscriptions, silences, map page)."""

    enabled: bool = Field(False, description="Serve the API from the daemon process.")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8088, ge=1, le=65535, description="TCP port.")
    public_url: str | None = Field(
        None,
        description="Base URL the API is reached at from outside (links in CAP <web> and the "
        "Atom feed); default http://<host>:<port>.",
    )
    tokens: list[SecretStr] = Field(
        [],
        description="Bearer tokens allowed to manage subscriptions, silences and deliveries "
        "(reading alerts needs none). Set them in the environment, e.g. "
        "INSAR_MONITOR__API__TOKENS='[\"s3cret\"]'; never logged. Prefer token_hashes: "
        "plaintext tokens are kept for compatibility, but whoever reads the environment or "
        "the file reads the tokens.",
    )
    token_hashes: list[str] = Field(
        [],
        description="SHA-256 hashes of accepted bearer tokens, 'sha256:<64 hex digits>' each "
        "(print one with `insar-monitor alerts hash-token`, token on stdin); the tokens "
        "themselves are then stored nowhere. Works alongside tokens.",
    )

    @field_validator("token_hashes")
    @classmethod
    def _hashes_well_formed(cls, value: list[str]) -> list[str]:
        normalised = []
        for i, entry in enumerate(value):
            text = entry.strip().lower()
            if not _TOKEN_HASH.fullmatch(text):
                # Never echo the entry: a token pasted here by mistake is still a secret.
                raise ValueError(
                    f"entry {i} is not 'sha256:<64 hex digits>' (it has {len(entry)} "
                    "characters); make one with `insar-monitor alerts hash-token`, which reads "
                    "the token from stdin"
                )
            normalised.append(text)
        return normalised

    @staticmethod
    def hash_token(token: str) -> str:
        """The ``token_hashes`` entry of a bearer token: ``sha256:<hex of its UTF-8 bytes>``."""
        return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class StorageConfig(_Section):
    """Where state and outputs live on disk."""

    state_dir: Path = Field(
        Path("insar-monitor-state"),
        description="Root of the daemon's state: PS store, emitted-id ledger, archive.",
    )
    ps_store: Path | None = Field(
        None, description="PS time-series store (Zarr); default <state_dir>/ps-store."
    )
    archive_dir: Path | None = Field(
        None,
        description="Detections as JSON files and quicklook PNGs; default <state_dir>/archive.",
    )
    quicklooks: bool = Field(True, description="Write a PNG for every frame flagged unrest.")

    def ps_store_path(self) -> Path:
        return self.ps_store or self.state_dir / "ps-store"

    def archive_path(self) -> Path:
        return self.archive_dir or self.state_dir / "archive"

    def ledger_path(self) -> Path:
        return self.state_dir / "emitted.sqlite"

    def cap_path(self) -> Path:
        return self.state_dir / "cap"


class MonitorConfig(_Section):
    """The whole configuration. Sections are added as the daemon grows."""

    models: ModelsConfig = ModelsConfig()
    unrest: UnrestConfig = UnrestConfig()
    products: ProductsConfig = ProductsConfig()
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    hotspots: HotspotsConfig = HotspotsConfig()
    delineation: DelineationConfig = DelineationConfig()
    storage: StorageConfig = StorageConfig()
    alerts: AlertsConfig = AlertsConfig()
    database: DatabaseConfig = DatabaseConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()

    def database_url(self) -> str:
        """The alert store's SQLAlchemy URL (secret: do not log it; see AlertStore.url_for_logs)."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.storage.state_dir / 'alerts.sqlite').resolve()}"


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Build the effective configuration: defaults, then ``path`` (YAML), then environment.

    Raises
    ------
    ConfigError
        The file is missing or not YAML, or a value fails validation; the message
        names the key and says what is allowed.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        data = loaded
    data = _merge(data, _env_overrides(os.environ if environ is None else environ))
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e


def describe_schema() -> str:
    """Every key with type, default and meaning, one per line (for ``config schema``)."""
    lines: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                lines.append(f"{prefix}{name}:  # {annotation.__doc__ or ''}".rstrip())
                walk(annotation, prefix + "  ")
                continue
            type_name = getattr(annotation, "__name__", str(annotation)).replace("typing.", "")
            # annotated_types constraints print as e.g. "Ge(ge=1)": show "ge=1".
            bounds = [re.sub(r"^\w+\((.*)\)$", r"\1", repr(m)) for m in field.metadata]
            extra = f" [{', '.join(bounds)}]" if bounds else ""
            default = field.get_default(call_default_factory=True)
            if isinstance(default, list) and default and hasattr(default[0], "name"):
                default = "[" + ", ".join(str(r.name) for r in default) + "]"
            lines.append(
                f"{prefix}{name}: {default!s}  # {type_name}{extra}. {field.description}"
            )

    walk(MonitorConfig, "")
    return "\n".join(lines)
