"""The whole bad-input corpus through the real daemon on the real embedded Kafka broker.

Every case of ``tests/data/bad/manifest.json`` (plus two good control messages) is published
to an isolated pair of input topics, the daemon runs its bounded passes until idle once (a
module fixture), and an independent consumer reads what came out. The tests then check that
each bad record is dead-lettered exactly once with its reason and its original bytes, that
the good ones became detections (a duplicate only once), that no pass failed and that every
offset was committed.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.config import load_config
from monitor.daemon import Daemon, DaemonStats
from monitor.publishing import (
    Outgoing,
    interferogram_message,
    outgoing,
    ps_update_message,
    publish,
)
from pipelines.context import PipelineContext
from pipelines.egms_csv import write_egms_csv
from pipelines.kafka_io import consume_all, plan_pass
from pipelines.messages import dead_letter_original
from pipelines.raster_io import write_wrapped_phase_geotiff
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401
from tests.test_bad_input_corpus import CASES, GEOGRAPHIC, materialize_corpus

pytestmark = pytest.mark.timeout(600)
CONTROL_IFG, CONTROL_PS = "control_interferogram", "control_ps_update"
DUPLICATES = {c["name"] for c in CASES if c["expect"]["outcome"] == "deduplicated"} | {
    c["expect"]["duplicate_of"] for c in CASES if c["expect"]["outcome"] == "deduplicated"
}
Where = tuple[str, int, int]


@dataclass
class CorpusRun:
    """One daemon run over the corpus: what went in, where, and what came out."""

    values: dict[str, bytes]
    placed: dict[str, Where]  # case or control name -> (topic, partition, offset)
    stats: DaemonStats
    seconds: float
    ctx: PipelineContext
    dead: dict[Where, list[dict[str, Any]]]
    detections: list[dict[str, Any]]

    def detections_of(self, name: str) -> list[dict[str, Any]]:
        return [d for d in self.detections if _where(d) == self.placed[name]]


def _controls(data: Path) -> list[Outgoing]:
    """A valid LiCSAR-layout interferogram and a 30-point, 20-epoch EGMS update."""
    pair = "20240301_20240313"
    phase = np.random.default_rng(42).uniform(-3.1, 3.1, (300, 300)).astype(np.float32)
    tif = data / "control" / "124D_05291_081406" / pair / f"{pair}.geo.diff_pha.tif"
    write_wrapped_phase_geotiff(tif, phase, GEOGRAPHIC)
    epochs = [date(2023, 1, 1) + timedelta(days=12 * k) for k in range(20)]
    years = np.array([(d - epochs[0]).days / 365.25 for d in epochs])
    slopes = np.linspace(-20, 20, 30)
    csv = write_egms_csv(
        data / "control" / "egms" / "T1" / "u1.csv",
        np.array([f"P{i:03d}" for i in range(30)]),
        14.0 + np.linspace(0, 0.01, 30), np.full(30, 41.0), epochs,
        slopes[:, None] * years[None, :],
    )
    return [
        outgoing(interferogram_message(tif), CONTROL_IFG),
        outgoing(ps_update_message(csv, dataset_id="control", tile_id="T1"), CONTROL_PS),
    ]


def _where(obj: dict[str, Any]) -> Where:
    src = obj["source"]
    return src["topic"], src["partition"], src["offset"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, kafka_broker) -> CorpusRun:  # noqa: F811
    tmp_path = tmp_path_factory.mktemp("bad-input-daemon")
    data = (tmp_path / "data").resolve()
    values = materialize_corpus(data)
    path = isolated_config_file(
        tmp_path, kafka_broker.bootstrap,
        sections={"products": {"allowed_roots": [str(data)], "fetch_backoff_s": 0.05}},
    )
    config = load_config(path, environ={})
    ctx = PipelineContext.from_config(config)
    topics = {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}
    items = [
        Outgoing(c["topic"], c["key"], values[c["name"]], date(2024, 1, 1), c["name"])
        for c in CASES
    ] + _controls(data)
    placed = {
        item.label: (topics[item.topic_kind], partition, offset)
        for item, partition, offset in publish(items, ctx.kafka, topics)
    }
    started = time.monotonic()
    stats = Daemon(config).run(until_idle=True)
    seconds = time.monotonic() - started
    dead = defaultdict(list)
    for record in consume_all(ctx.kafka, config.topics.dlq):
        obj = json.loads(record.value)
        dead[_where(obj)].append(obj)
    detections = [json.loads(r.value) for r in consume_all(ctx.kafka, config.topics.detections)]
    return CorpusRun(values, placed, stats, seconds, ctx, dict(dead), detections)


def test_daemon_reads_everything_in_passes_that_never_fail_and_commits_every_offset(run):
    assert run.stats.passes >= 1 and run.stats.failed_passes == 0
    assert run.stats.records == len(run.placed) == len(CASES) + 2
    assert plan_pass(run.ctx.kafka, run.ctx.input_topics) == []


def test_every_bad_record_has_one_dead_letter_with_its_reason_and_original_bytes(run):
    problems = []
    for case in CASES:
        name, expect = case["name"], case["expect"]
        dead = run.dead.get(run.placed[name], [])
        reasons = [d["reason"] for d in dead]
        if expect["outcome"] != "dead_letter":
            if dead:
                problems.append(f"{name}: dead-lettered as {reasons}, expected no dead letter")
            continue
        if reasons != [expect["reason"]]:
            problems.append(f"{name}: dead letters {reasons}, expected [{expect['reason']}]")
        elif dead_letter_original(dead[0])[1] != run.values[name]:
            problems.append(f"{name}: the dead letter does not keep the original bytes")
        elif not dead[0]["error"].strip():
            problems.append(f"{name}: the dead letter does not say what is wrong")
        if run.detections_of(name):
            problems.append(f"{name}: a bad record also produced a detection")
    assert not problems, "\n".join(problems)
    n_expected = sum(c["expect"]["outcome"] == "dead_letter" for c in CASES)
    assert sum(len(v) for v in run.dead.values()) == n_expected, "no other dead letters"


def test_good_records_and_the_controls_become_one_detection_each(run):
    problems = []
    for case in CASES:
        name, expect = case["name"], case["expect"]
        if expect["outcome"] != "detection" or name in DUPLICATES:
            continue  # duplicates: see the next test
        found = run.detections_of(name)
        if len(found) != 1:
            problems.append(f"{name}: {len(found)} detections, expected 1")
            continue
        for key, value in expect.items():
            if (key == "kind" or key.startswith("n_points")) and found[0][key] != value:
                problems.append(f"{name}: {key} = {found[0][key]}, expected {value}")
    assert not problems, "\n".join(problems)
    for control in (CONTROL_IFG, CONTROL_PS):
        assert len(run.detections_of(control)) == 1, control
    ps_control = run.detections_of(CONTROL_PS)[0]
    assert ps_control["n_points_classified"] == 30


def test_a_product_or_update_published_twice_yields_one_detection(run):
    ids = Counter(d["detection_id"] for d in run.detections)
    assert all(n == 1 for n in ids.values()), f"duplicate detections: {ids.most_common(3)}"
    for case in CASES:
        if case["expect"]["outcome"] != "deduplicated":
            continue
        first = case["expect"]["duplicate_of"]
        assert run.detections_of(case["name"]) == [], f"{case['name']} was published again"
        (detection,) = run.detections_of(first)
        expect = next(c for c in CASES if c["name"] == first)["expect"]
        for key, value in expect.items():
            if key == "kind" or key.startswith("n_points"):
                assert detection[key] == value, f"{first}: {key}"
