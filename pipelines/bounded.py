"""One bounded pass of the monitor pipeline on FnApiRunner (the embedded mode).

No Beam runner streams an unbounded source offline on one machine (docs/platform.md),
so the daemon repeats bounded passes. A pass:

1. plans, for every partition of the input topics, the range from the group's committed
   offset to the end offset seen now (capped per pass);
2. runs the whole graph of :func:`pipelines.transforms.monitor_graph` over exactly those
   records on FnApiRunner — outputs are acknowledged by the broker, written to the PS
   store and the archive before ``run()`` returns;
3. only then commits the ranges' end offsets.

A crash anywhere before step 3 replays the pass; every output is idempotent by id, so the
replay changes nothing that was already done (at-least-once in, exactly-once effects).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.context import PipelineContext
from pipelines.kafka_io import PartitionRange, commit_offsets, plan_pass, read_range
from pipelines.transforms import METRICS_NAMESPACE, monitor_graph

log = logging.getLogger(__name__)


class _ReadRangeFn(beam.DoFn):
    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.records = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "records_read")

    def process(self, rng: PartitionRange):
        n = 0
        for record in read_range(self.ctx.kafka, rng):
            n += 1
            yield record
        self.records.inc(n)


class ReadKafkaRanges(beam.PTransform):
    """The records of fixed offset ranges (a bounded source) as KafkaRecord elements."""

    def __init__(self, ctx: PipelineContext, ranges: list[PartitionRange]) -> None:
        super().__init__()
        self.ctx = ctx
        self.ranges = ranges

    def expand(self, pbegin):
        return (
            pbegin
            | "Ranges" >> beam.Create(self.ranges)
            | "ReadRange" >> beam.ParDo(_ReadRangeFn(self.ctx))
        )


@dataclass
class PassReport:
    """What one pass did (for logs, metrics and the demo's printout)."""

    ranges: list[PartitionRange]
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(len(r) for r in self.ranges)


def bounded_options() -> PipelineOptions:
    """FnApiRunner, named explicitly so Beam never tries to download a runner."""
    # flags=[]: otherwise Beam parses the host program's sys.argv, and a flag of ours that
    # happens to share a Beam option's name would silently change the pass.
    return PipelineOptions(
        flags=[], runner="FnApiRunner", direct_num_workers=1, direct_running_mode="in_memory"
    )


def run_pipeline_over(ctx: PipelineContext, ranges: list[PartitionRange]) -> dict[str, int]:
    """Run the graph over ``ranges`` and return Beam's counters (name -> value)."""
    pipeline = beam.Pipeline(options=bounded_options())
    records = pipeline | "ReadKafka" >> ReadKafkaRanges(ctx, ranges)
    monitor_graph(records, ctx)
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    for c in result.metrics().query()["counters"]:
        if c.key.metric.namespace == METRICS_NAMESPACE:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(c.committed)
    return counters


def run_pass(
    ctx: PipelineContext,
    *,
    max_records_per_partition: int | None = None,
    should_commit: Callable[[], bool] = lambda: True,
) -> PassReport | None:
    """Plan, run and commit one pass; None when there was nothing new.

    ``should_commit`` is asked after the pipeline finished: a daemon told to stop
    abruptly answers False and the pass is replayed by the next run.
    """
    ranges = plan_pass(
        ctx.kafka, ctx.input_topics, max_records_per_partition=max_records_per_partition
    )
    if not ranges:
        return None
    start = time.perf_counter()
    log.info(
        "pass started",
        extra={"records": sum(len(r) for r in ranges), "partitions": len(ranges)},
    )
    counters = run_pipeline_over(ctx, ranges)
    if not should_commit():
        log.warning("pass finished but not committed (stop requested): it will be replayed")
        return PassReport(ranges, time.perf_counter() - start, counters)
    commit_offsets(ctx.kafka, ranges)
    report = PassReport(ranges, time.perf_counter() - start, counters)
    log.info(
        "pass committed",
        extra={"records": report.records, "seconds": round(report.seconds, 3), **counters},
    )
    return report
