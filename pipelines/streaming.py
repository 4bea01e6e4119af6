"""The same monitor graph as one unbounded streaming job, for Flink or Dataflow.

Beyond one machine the daemon's loop of bounded passes is replaced by a single
streaming job: ``ReadFromKafka`` without an end offset feeds exactly the transforms of
:func:`pipelines.transforms.monitor_graph`. Differences from the embedded mode, and why:

* Records are put in fixed windows (``window_s``) of the source's timestamps before the
  graph, so the per-frame and per-store-tile GroupByKeys fire as the watermark passes
  each window instead of waiting for the end of an unbounded input. The windows only
  group the pieces of one message (a frame's tiles, a tile's updates); the event time
  that means something — acquisition dates — travels in the payload, as in the
  embedded mode.
* Offsets are committed by the Kafka source when a bundle is finalised
  (``commit_offset_in_finalize``), i.e. after the runner has checkpointed the bundle's
  downstream work; the outputs stay idempotent by id exactly as in the embedded mode,
  so a restart from the last checkpoint does not notify twice.
* ``ReadFromKafka`` is a Java cross-language transform: building the pipeline needs
  the Kafka expansion service (a jar from Maven Central, fetched by Beam or given as
  ``expansion_service``) and a JDK. That cannot be done offline here, so the tests
  build the graph with a TestStream in place of Kafka and run it on the streaming
  DirectRunner (see docs/scale-out.md for exactly what is and is not tested).
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import window

from pipelines.context import PipelineContext
from pipelines.kafka_io import KafkaRecord
from pipelines.transforms import monitor_graph

DEFAULT_WINDOW_S = 10


def _to_record(row: Any) -> KafkaRecord:
    return KafkaRecord(
        topic=row.topic,
        partition=int(row.partition),
        offset=int(row.offset),
        key=bytes(row.key) if row.key is not None else None,
        value=bytes(row.value),
    )


class ReadKafkaUnbounded(beam.PTransform):
    """Kafka records without an end offset, through Beam's cross-language ``ReadFromKafka``."""

    def __init__(self, ctx: PipelineContext, expansion_service: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.expansion_service = expansion_service

    def consumer_config(self) -> dict[str, str]:
        """Java consumer properties: the daemon's group, no auto-commit (offsets are committed
        when the runner finalises a bundle), start at the beginning for a new group; plus the
        Java equivalents of the kafka.security_protocol / sasl_* / ssl_* settings."""
        config = {
            "bootstrap.servers": self.ctx.kafka.bootstrap_servers,
            "group.id": self.ctx.kafka.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "max.partition.fetch.bytes": str(self.ctx.kafka.max_message_bytes),
        }
        config.update(self.ctx.kafka.java_security_properties())
        return config

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        consumer_config = self.consumer_config()
        kwargs: dict[str, Any] = {}
        if self.expansion_service:
            kwargs["expansion_service"] = self.expansion_service
        return (
            pbegin
            | "ReadFromKafka"
            >> ReadFromKafka(
                consumer_config=consumer_config,
                topics=self.ctx.input_topics,
                with_metadata=True,
                commit_offset_in_finalize=True,
                **kwargs,
            )
            | "ToKafkaRecord" >> beam.Map(_to_record)
        )


def streaming_options(runner: str, runner_options: dict[str, str]) -> PipelineOptions:
    """Options of the streaming job: ``runner`` plus e.g. ``flink_master`` or Dataflow's
    ``project``/``region``/``temp_location`` from ``pipeline.runner_options``."""
    flags = [f"--runner={runner}", "--streaming"]
    flags += [f"--{k}={v}" for k, v in sorted(runner_options.items())]
    options = PipelineOptions(flags=flags)
    options.view_as(StandardOptions).streaming = True
    return options


def build_streaming_pipeline(
    ctx: PipelineContext,
    options: PipelineOptions,
    *,
    source: beam.PTransform | None = None,
    window_s: int = DEFAULT_WINDOW_S,
    expansion_service: str | None = None,
) -> beam.Pipeline:
    """The unbounded job; ``source`` replaces Kafka (tests pass a TestStream of records).

    ``expansion_service`` (``host:port``) is the Kafka expansion service to use instead of
    the jar Beam would download and run in Docker (Flink task managers on Kubernetes have
    no Docker; see deploy/flink/README.md).
    """
    pipeline = beam.Pipeline(options=options)
    records = pipeline | "Source" >> (source or ReadKafkaUnbounded(ctx, expansion_service))
    windowed = records | "EventWindows" >> beam.WindowInto(window.FixedWindows(window_s))
    monitor_graph(windowed, ctx)
    return pipeline
