"""The daemon through TF-Serving's gRPC API, and the operator commands publish / replay.

The gRPC test serves the committed SavedModels with ``serving.local_server`` (the real
TF-Serving PredictionService API; the ``tensorflow_model_server`` binary cannot be installed
here) and runs a pass with ``models.backend: grpc`` — the production configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli.main import main
from monitor.config import load_config
from monitor.daemon import Daemon
from pipelines.context import PipelineContext
from pipelines.kafka_io import consume_all, plan_pass
from tests.kafka_fixtures import isolated_config_file, kafka_broker  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def _archive(root: Path) -> None:
    from serving.synthetic.products import write_demo_interferograms, write_demo_ps_csv

    write_demo_interferograms(root, count=2, seed=4)
    write_demo_ps_csv(root / "egms" / "T9" / "release.csv", per_class=3, seed=4)


def test_production_example_config_is_valid():
    config = load_config(REPO / "deploy" / "config" / "production.yaml", environ={})
    assert config.models.backend == "grpc"
    assert config.kafka.bootstrap_servers.count(",") == 2


def test_replay_dry_run_lists_the_archive_in_event_time_order(tmp_path, capsys):
    _archive(tmp_path / "archive")
    assert main(["replay", str(tmp_path / "archive"), "--dry-run"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    # The PS file's last epoch (2026) comes after both 2024 interferograms.
    assert [x["kind"] for x in lines] == ["interferogram", "interferogram", "ps_update"]
    times = [x["event_time"] for x in lines]
    assert times == sorted(times)


def test_replay_refuses_an_archive_with_a_bad_file_before_publishing_anything(tmp_path, capsys):
    _archive(tmp_path / "archive")
    (tmp_path / "archive" / "broken.json").write_text('{"schema": "interferogram.v1"}')
    assert main(["replay", str(tmp_path / "archive"), "--bootstrap", "127.0.0.1:1"]) == 1
    assert "nothing was published" in capsys.readouterr().err


def test_publish_and_replay_reach_the_daemon_through_grpc_serving(
    tmp_path, kafka_broker, capsys  # noqa: F811
):
    from serving.local_server import LocalServer, ServerConfig

    with LocalServer(ServerConfig(REPO / "serving" / "models", rest_port=None)) as server:
        config_path = isolated_config_file(
            tmp_path, kafka_broker.bootstrap, backend="grpc", grpc_target=server.grpc_target
        )
        _archive(tmp_path / "archive")
        assert main(["replay", str(tmp_path / "archive"), "--config", str(config_path)]) == 0
        phase = next((tmp_path / "archive").rglob("*.geo.diff_pha.tif"))
        assert main(["publish", "interferogram", str(phase), "--product-id", "again",
                     "--config", str(config_path)]) == 0
        published = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert published["published"] == "again"

        config = load_config(config_path, environ={})
        stats = Daemon(config).run(until_idle=True)
        assert stats.failed_passes == 0
    ctx = PipelineContext.from_config(config)
    detections = [json.loads(r.value) for r in consume_all(ctx.kafka, ctx.detection_topic)]
    assert sorted(d.get("product_id", d.get("update_id")) for d in detections) == sorted(
        ["124D_05291_081406_20240101_20240113", "124D_05291_081406_20240113_20240125",
         "again", "release"]
    )
    assert all(d["model"]["version"] == 1 for d in detections)
    assert plan_pass(ctx.kafka, ctx.input_topics) == []
