"""The streaming demo: its scenario generator (fast, no broker) and one whole run on a real broker.

The generator must be deterministic and write exactly what its ``scenario.json`` promises;
the end-to-end run checks that the daemon processes every message of the scenario and that
the headline results hold: the strongest inflation pair is detected, both bad messages are
dead-lettered, and the accelerating PS cluster changes class.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.publishing import ps_update_message
from serving.synthetic.scenario import (
    TRUTH_FILE,
    ScenarioParams,
    generate_scenario,
    load_scenario,
    ps_epochs,
)


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory):
    return generate_scenario(tmp_path_factory.mktemp("scenario"))


def test_same_seed_writes_the_same_files_and_another_seed_does_not(
    tmp_path: Path, scenario
):
    again = generate_scenario(tmp_path / "again")
    assert _files(again.root) == _files(scenario.root)

    other = generate_scenario(tmp_path / "other", replace(ScenarioParams(), seed=7))
    a, b = _files(scenario.root), _files(other.root)
    assert a.keys() == b.keys()  # same layout: names come from dates and ids, not the seed
    tif = next(name for name in a if name.endswith(".tif"))
    assert a[tif] != b[tif]


def test_truth_lists_every_step_in_event_time_order(scenario):
    params = ScenarioParams()
    steps = scenario.steps
    assert [s.index for s in steps] == list(range(len(steps)))
    assert [s.event_time for s in steps] == sorted(s.event_time for s in steps)
    kinds = [s.kind for s in steps]
    n_updates = 1 + len(params.update_epochs)
    assert kinds.count("ps_update") == n_updates
    assert kinds.count("raw") == 1
    assert kinds.count("interferogram") == len(params.inflation_fringes) + 2 + 1
    for step in steps:
        missing = step.meta.get("missing", False)
        assert (scenario.root / step.path).is_file() != missing, step.label
    dead = [s for s in steps if s.expect["outcome"] == "dead_letter"]
    assert sorted(s.expect["reason"] for s in dead) == ["not_found", "not_json"]
    raw = next(s for s in steps if s.kind == "raw")
    with pytest.raises(json.JSONDecodeError):
        json.loads((scenario.root / raw.path).read_bytes())
    assert load_scenario(scenario.root) == scenario
    assert json.loads((scenario.root / TRUTH_FILE).read_text())["seed"] == params.seed


def test_volcano_inflates_from_below_to_far_above_the_labelling_threshold(scenario):
    volcano = [t for t in scenario.truth["interferograms"] if t["scenario"] == "mogi inflation"]
    fringes = [t["peak_fringes"] for t in volcano]
    volumes = [t["mogi_volume_change_m3"] for t in volcano]
    assert fringes == sorted(fringes) and volumes == sorted(volumes)
    assert fringes[0] < 0.5 and not volcano[0]["unrest"]
    assert fringes[-1] >= 3 and all(t["unrest"] for t in volcano[1:])
    negatives = [t for t in scenario.truth["interferograms"] if t["scenario"] != "mogi inflation"]
    assert len(negatives) == 2 and not any(t["unrest"] for t in negatives)

    from pipelines.raster_io import read_wrapped_phase

    raster = read_wrapped_phase(scenario.root / volcano[-1]["path"])
    assert raster.phase.shape == ScenarioParams().frame_shape
    finite = raster.phase[np.isfinite(raster.phase)]
    assert np.abs(finite).max() <= np.pi + 1e-6


def test_ps_updates_split_one_series_and_the_cluster_is_compact(scenario):
    params = ScenarioParams()
    ps = scenario.truth["ps"]
    steps = [s for s in scenario.steps if s.kind == "ps_update"]
    epochs = ps_epochs(params)
    seen: list[date] = []
    for step in steps:
        msg = ps_update_message(
            scenario.root / step.path, dataset_id=step.meta["dataset_id"],
            tile_id=step.meta["tile_id"], update_id=step.meta["update_id"],
        )
        assert msg.event_time == step.event_time
        seen.extend(msg.epochs)
    assert seen == epochs  # no epoch twice, none missing
    assert [u["n_epochs"] for u in ps["updates"]] == [params.initial_epochs,
                                                      *params.update_epochs]
    assert ps["onset"] == epochs[params.initial_epochs].isoformat()

    cluster = set(scenario.accelerating_pids)
    assert len(cluster) == params.n_accelerating
    assert ps["behaviour_counts"]["accelerating"] == params.n_accelerating
    table = pd.read_csv(scenario.root / steps[0].path, dtype={"pid": str})
    assert len(table) == params.n_points
    inside = table["pid"].isin(cluster)
    spread = lambda t: float(np.hypot(t["longitude"].std(), t["latitude"].std()))  # noqa: E731
    assert spread(table[inside]) < 0.2 * spread(table[~inside])

    # The cluster only moves once the updates start: same class before, bilinear after.
    assert all(ps["class_before_onset"][p] == "stable" for p in cluster)
    assert all(ps["class_after_onset"][p] == "bilinear" for p in cluster)
    assert all(v < 0 for v in ps["velocity_change_mm_yr"].values())


def _broker_available() -> str | None:
    if shutil.which("java") is None:
        return "java is not installed"
    try:
        from monitor.embedded_kafka import kafka_libs_dir

        kafka_libs_dir()
    except Exception as e:  # no cached jars and no npm / network
        return f"Kafka jars unavailable: {e}"
    return None


@pytest.mark.timeout(300)
def test_streaming_demo_processes_the_whole_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    why = _broker_available()
    if why:
        pytest.skip(why)
    from monitor.cli.main import main

    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--pause", "0.5", "--timeout", "240"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, printed
    assert summary["ok"] and summary["unaccounted"] == [] and summary["inputs_committed"]
    assert summary["published"] == summary["accounted"] == 12

    volcano = [f for f in summary["interferograms"] if f["label"].startswith("volcano")]
    strongest = max(volcano, key=lambda f: f["peak_fringes"])
    assert strongest["detected"] is True
    assert all(f["detected"] is not None for f in summary["interferograms"])

    bad = summary["bad_messages"]
    assert len(bad) == 2 and all(b["match"] for b in bad), bad
    assert summary["dead_letters"] == 2

    ps = summary["ps"]
    assert ps["cluster_size"] == 40
    assert ps["cluster_changed"] >= 30, ps
    assert ps["others_changed"] <= 0.05 * ps["others_size"], ps
    assert "DEAD LETTER" in printed and "DETECTION" in printed and "Summary" in printed
    assert len(summary["outputs"]["quicklooks"]) >= 1
    assert Path(summary["outputs"]["kafka_log"]).is_file()
