"""Everything a pipeline stage needs to know, in one picklable value built from the config.

Beam ships DoFns to workers by pickling them; a frozen dataclass of plain values (no open
clients, no config objects with validators) travels safely to an in-process FnApiRunner
worker and to a Flink or Dataflow worker alike. Stages open their own connections from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.kafka_io import KafkaSettings, Secret
from pipelines.model_endpoint import ModelEndpoint
from serving.signatures import TREND_MODEL_NAME, UNREST_MODEL_NAME


def parse_api_version(text: str | None) -> tuple[int, ...] | None:
    """``"0.9"`` -> ``(0, 9)``; None stays None (kafka-python then asks the broker)."""
    return None if text is None else tuple(int(p) for p in text.split("."))


def _path_text(path: Any) -> str | None:
    return None if path is None else str(path)


def kafka_settings_from_config(kafka: Any) -> KafkaSettings:
    """:class:`KafkaSettings` from the ``kafka`` section of the configuration, security included."""
    password = kafka.sasl_password
    return KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=kafka.group_id,
        client_id=kafka.client_id,
        api_version=parse_api_version(kafka.api_version),
        max_message_bytes=kafka.max_message_bytes,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism,
        sasl_username=kafka.sasl_username,
        sasl_password=None if password is None else Secret(password.get_secret_value()),
        ssl_cafile=_path_text(kafka.ssl_cafile),
        ssl_certfile=_path_text(kafka.ssl_certfile),
        ssl_keyfile=_path_text(kafka.ssl_keyfile),
        ssl_check_hostname=kafka.ssl_check_hostname,
    )


def _hotspot_params(config: Any) -> Any:
    from pipelines.hotspots.engine import HotspotParams

    section = config.hotspots
    return HotspotParams.from_config(section) if section.enabled else None


def _delineation_settings(config: Any) -> Any:
    from pipelines.delineation_stage import pipeline_settings

    return pipeline_settings(config)


@dataclass(frozen=True)
class PipelineContext:
    """Settings shared by every stage of one pipeline."""

    kafka: KafkaSettings
    interferogram_topic: str
    ps_update_topic: str
    detection_topic: str
    dlq_topic: str
    unrest: ModelEndpoint
    trend: ModelEndpoint
    unrest_batch_size: int
    trend_batch_size: int
    threshold: float
    tile_overlap: int
    min_valid_fraction: float
    min_firing_tiles: int
    allowed_crs: tuple[str, ...]
    phase_tolerance_rad: float
    min_epochs: int
    ps_store: str
    ledger_path: str
    archive_dir: str | None
    quicklooks: bool
    hotspot_topic: str = "insar.hotspots"
    hotspots: Any = None  # pipelines.hotspots.engine.HotspotParams, None = hot spots off
    # pipelines.delineation_stage.DelineationSettings, None = no ADA delineation U-Net
    delineation: Any = None
    # Input limits of the products section (docs/bad-input.md); defaults = the config's.
    allowed_uri_schemes: tuple[str, ...] = ("file", "http", "https", "s3")
    allowed_roots: tuple[str, ...] = ()
    max_raster_bytes: int = 2 * 1024**3
    max_raster_pixels: int = 200_000_000
    fetch_retries: int = 2
    fetch_backoff_s: float = 1.0

    def fetch_policy(self) -> Any:
        """The :class:`pipelines.product_fetch.FetchPolicy` of these settings."""
        from pipelines.product_fetch import FetchPolicy

        return FetchPolicy(
            allowed_schemes=self.allowed_uri_schemes,
            allowed_roots=self.allowed_roots,
            retries=self.fetch_retries,
            backoff_s=self.fetch_backoff_s,
        )

    @classmethod
    def from_config(cls, config: Any) -> PipelineContext:
        """Build from a :class:`monitor.config.MonitorConfig`.

        Also registers the configuration's secrets (SASL password, database password, API
        tokens) with the log redaction of :mod:`monitor.logs`: every process that talks to
        Kafka builds its context here first.
        """
        from monitor.logs import register_config_secrets

        register_config_secrets(config)
        k, t, u, s = config.kafka, config.topics, config.unrest, config.storage
        return cls(
            kafka=kafka_settings_from_config(k),
            interferogram_topic=t.interferograms,
            ps_update_topic=t.ps_updates,
            detection_topic=t.detections,
            dlq_topic=t.dlq,
            unrest=ModelEndpoint.from_config(config, UNREST_MODEL_NAME),
            trend=ModelEndpoint.from_config(config, TREND_MODEL_NAME),
            unrest_batch_size=config.pipeline.unrest_batch_size,
            trend_batch_size=config.pipeline.trend_batch_size,
            threshold=u.threshold,
            tile_overlap=u.tile_overlap,
            min_valid_fraction=u.min_valid_fraction,
            min_firing_tiles=u.min_firing_tiles,
            allowed_crs=tuple(config.products.allowed_crs),
            phase_tolerance_rad=config.products.phase_tolerance_rad,
            min_epochs=config.products.min_epochs,
            ps_store=str(s.ps_store_path()),
            ledger_path=str(s.ledger_path()),
            archive_dir=str(s.archive_path()),
            quicklooks=s.quicklooks,
            hotspot_topic=t.hotspots,
            hotspots=_hotspot_params(config),
            delineation=_delineation_settings(config),
            allowed_uri_schemes=tuple(config.products.allowed_uri_schemes),
            allowed_roots=tuple(str(r) for r in config.products.allowed_roots),
            max_raster_bytes=config.products.max_raster_bytes,
            max_raster_pixels=config.products.max_raster_pixels,
            fetch_retries=config.products.fetch_retries,
            fetch_backoff_s=config.products.fetch_backoff_s,
        )

    @property
    def input_topics(self) -> list[str]:
        return [self.interferogram_topic, self.ps_update_topic]

    def archive_path(self) -> Path | None:
        return None if self.archive_dir is None else Path(self.archive_dir)
