"""The unbounded mode's graph: the same transforms, windowed, on a streaming runner.

``ReadFromKafka`` cannot be expanded offline (it needs Beam's Java expansion service),
so a TestStream of Kafka records stands in for it; everything after the source — the
event windows, decode, fetch/tile, RunInference, the per-frame and per-tile joins, the
PS store and the publish-once sinks to the real broker — runs on Beam's streaming
DirectRunner exactly as it would under Flink.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as RecordStream
from apache_beam.transforms import window

from monitor.config import load_config
from monitor.publishing import scan_archive
from pipelines.context import PipelineContext
from pipelines.kafka_io import KafkaRecord, consume_all
from pipelines.streaming import build_streaming_pipeline, streaming_options
from tests.kafka_fixtures import kafka_broker  # noqa: F401

pytestmark = pytest.mark.timeout(300)


def _archive(root: Path) -> list:
    from serving.synthetic.products import write_demo_interferograms, write_demo_ps_csv

    write_demo_interferograms(root, count=2, seed=3)
    write_demo_ps_csv(root / "egms" / "T1" / "u1.csv", per_class=4, seed=3)
    return scan_archive(root)


def test_monitor_graph_runs_unbounded_with_event_windows(tmp_path, kafka_broker):  # noqa: F811
    tag = uuid.uuid4().hex[:8]
    config = load_config(
        environ={
            "INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "INSAR_MONITOR__KAFKA__API_VERSION": "0.9",
            "INSAR_MONITOR__TOPICS__DETECTIONS": f"det-{tag}",
            "INSAR_MONITOR__TOPICS__DLQ": f"dlq-{tag}",
            "INSAR_MONITOR__STORAGE__STATE_DIR": str(tmp_path / "state"),
        }
    )
    ctx = PipelineContext.from_config(config)
    topics = {"interferogram": ctx.interferogram_topic, "ps_update": ctx.ps_update_topic}
    items = _archive(tmp_path / "archive")

    # One record per 30 s of event time, each in its own 10 s window, the watermark moving
    # on after each: every window must fire on its own, not at the end of the input.
    stream = RecordStream()
    for k, item in enumerate(items):
        record = KafkaRecord(topics[item.topic_kind], 0, k, item.key.encode(), item.value)
        stream = stream.add_elements([window.TimestampedValue(record, 1000 + 30 * k)])
        stream = stream.advance_watermark_to(1000 + 30 * k + 20)
    junk = KafkaRecord(ctx.interferogram_topic, 0, 99, None, b"<xml/>")
    stream = stream.add_elements([window.TimestampedValue(junk, 5000)])
    stream = stream.advance_watermark_to_infinity()

    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    build_streaming_pipeline(ctx, options, source=stream, window_s=10).run().wait_until_finish()

    detections = [json.loads(r.value) for r in consume_all(ctx.kafka, ctx.detection_topic)]
    kinds = sorted(d["kind"] for d in detections)
    assert kinds == ["interferogram_unrest", "interferogram_unrest", "ps_trend_change"]
    dead = [json.loads(r.value) for r in consume_all(ctx.kafka, ctx.dlq_topic)]
    assert [d["reason"] for d in dead] == ["not_json"]


def test_streaming_options_name_the_cluster_runner_and_pass_its_options():
    options = streaming_options("FlinkRunner", {"flink_master": "flink-jobmanager:8081"})
    everything = options.get_all_options()
    assert everything["runner"] == "FlinkRunner"
    assert everything["streaming"] is True
    assert everything["flink_master"] == "flink-jobmanager:8081"


def test_unbounded_kafka_source_reads_both_input_topics_with_the_daemons_group():
    # Expanding ReadFromKafka needs the Java expansion service (not available offline):
    # check the consumer settings the job would hand it instead.
    from pipelines.streaming import ReadKafkaUnbounded

    config = load_config(
        environ={
            "INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "INSAR_MONITOR__KAFKA__GROUP_ID": "observatory-a",
        }
    )
    source = ReadKafkaUnbounded(PipelineContext.from_config(config))
    assert isinstance(source, beam.PTransform)
    assert source.ctx.input_topics == ["insar.interferograms", "insar.ps-updates"]
    consumer = source.consumer_config()
    assert consumer["bootstrap.servers"] == "k1:9092,k2:9092"
    assert consumer["group.id"] == "observatory-a"
    # Offsets move only when the runner finalises a bundle, never on a timer.
    assert consumer["enable.auto.commit"] == "false"
