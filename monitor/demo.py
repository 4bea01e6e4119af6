"""The demo behind ``make demo``: the real daemon watching a scripted scenario on a real broker.

:func:`run_streaming_demo` needs nothing installed beyond the package (and Java for the
embedded broker). It

1. starts an embedded Kafka 0.9 broker (:mod:`monitor.embedded_kafka`) under ``<out>/kafka``;
2. writes the scenario of :mod:`serving.synthetic.scenario` under ``<out>/products``: an
   inflating volcano, hard-negative interferograms, a PS tile whose cluster of points starts
   to accelerate, one malformed message and one message whose raster is missing;
3. loads the models and starts the daemon (:class:`monitor.daemon.Daemon`) in a background
   thread, state under ``<out>/state``;
4. publishes the scenario's messages in event-time order with a pause between them, while
   printing every detection and dead letter as it arrives on the output topics;
5. stops once every published message is accounted for (a detection or a dead letter names
   it as its source), or at a timeout, then stops daemon and broker and prints what was
   detected against the scenario's truth; ``<out>/summary.json`` holds the same.

:func:`run_offline_demo` is the earlier demo (``insar-monitor demo --offline``): no broker
and no daemon, the committed models scoring generated files directly.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitor.config import MonitorConfig
from monitor.demo_alerts import (
    alert_config,
    alerts_caught_up,
    demo_subscriber,
    describe_alert,
    print_alerts_summary,
    summarise_alerts,
)
from monitor.scoring import classify_ps_file, make_model_client, score_interferograms
from serving.signatures import TREND_CLASSES, TREND_MODEL_NAME, UNREST_MODEL_NAME

if TYPE_CHECKING:
    from monitor.publishing import Outgoing
    from pipelines.context import PipelineContext
    from pipelines.kafka_io import KafkaSettings
    from serving.synthetic.scenario import Scenario, Step

MARKER = ".insar-monitor-demo"
"""File marking an output directory as the streaming demo's (so a rerun may clear it)."""
OWNED = ("kafka", "state", "products")
"""Sub-directories the streaming demo creates and clears on a rerun."""
POLL_S = 0.25
"""How often the output topics are checked and the next publication considered, seconds."""


# --- the streaming demo ---------------------------------------------------------------------
class DemoError(RuntimeError):
    """The demo cannot run as asked (e.g. its output directory holds someone else's files)."""


@dataclass
class _Arrival:
    """An output message and when it arrived (seconds since publishing started)."""

    at_s: float
    topic: str
    payload: dict[str, Any]


@dataclass
class _Progress:
    """What has been published and which inputs the outputs have accounted for."""

    published: dict[tuple[str, int, int], int] = field(default_factory=dict)  # -> step index
    placement: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    published_at_s: dict[int, float] = field(default_factory=dict)
    outcome: dict[int, _Arrival] = field(default_factory=dict)
    detections: list[_Arrival] = field(default_factory=list)
    hotspots: list[_Arrival] = field(default_factory=list)
    alerts: list[_Arrival] = field(default_factory=list)
    dead_letters: list[_Arrival] = field(default_factory=list)
    strays: list[_Arrival] = field(default_factory=list)  # outputs of nothing we published

    def unaccounted(self) -> list[int]:
        return sorted(i for i in self.placement if i not in self.outcome)

    def hotspots_pending(self, ps_update_ids: set[str]) -> bool:
        """Whether a PS update has not yet been covered by a hot-spot computation."""
        covered = {
            t["update_id"] for a in self.hotspots for t in a.payload.get("triggered_by", [])
        }
        return bool(ps_update_ids - covered)


class _OutputWatcher:
    """Reads what was appended to the output topics since the last call (no consumer group).

    Every call opens short-lived clients through :mod:`pipelines.kafka_io`, as the daemon
    does; output topics that do not exist yet are simply not read (and not created).
    """

    def __init__(self, settings: KafkaSettings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self.positions: dict[tuple[str, int], int] = {}

    def poll(self) -> Iterator[tuple[str, bytes]]:
        from pipelines.kafka_io import PartitionRange, end_offsets, read_range

        for (topic, partition), end in sorted(end_offsets(self.settings, self.topics).items()):
            start = self.positions.get((topic, partition), 0)
            if end <= start:
                continue
            for record in read_range(self.settings, PartitionRange(topic, partition, start, end)):
                yield topic, record.value
            self.positions[(topic, partition)] = end


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready for a fresh run, deleting only what an earlier demo run created."""
    if out.exists() and not (out / MARKER).exists():
        clash = [name for name in OWNED if (out / name).exists()]
        if clash:
            raise DemoError(
                f"{out} already has {', '.join(clash)} (not created by this demo): remove "
                "it or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("created by insar-monitor demo; its sub-directories are cleared "
                              "on every run\n")
    for name in OWNED:
        # A stale emitted-id ledger or PS store would make this run's detections look like
        # replays (and drop them): every run starts from empty state.
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "summary.json").unlink(missing_ok=True)


def _demo_config(config: MonitorConfig, bootstrap: str, out: Path) -> MonitorConfig:
    """The user's configuration pointed at the embedded broker and the demo's state."""
    cfg = config.model_copy(deep=True)
    cfg.kafka.bootstrap_servers = bootstrap
    cfg.kafka.api_version = "0.9"  # kafka-python cannot probe a 0.9 broker's version
    cfg.pipeline.runner = "FnApiRunner"
    cfg.pipeline.poll_interval_s = 1.0
    cfg.storage.state_dir = out / "state"
    cfg.storage.ps_store = None
    cfg.storage.archive_dir = None
    cfg.database.url = None  # the demo's own SQLite store under its state directory
    cfg.metrics.port = 0  # any free port; printed once the daemon serves it
    return alert_config(cfg)


def _outgoing_for(step: Step, root: Path) -> Outgoing:
    """The broker message of one scenario step (built and validated like any producer's)."""
    from datetime import date

    from monitor import publishing
    from pipelines.messages import InterferogramMessage, RasterRef

    path = root / step.path
    if step.kind == "raw":
        return publishing.Outgoing(
            step.topic_kind, step.meta.get("key", ""), path.read_bytes(), step.event_time,
            step.label,
        )
    if step.kind == "ps_update":
        msg = publishing.ps_update_message(
            path, dataset_id=step.meta["dataset_id"], tile_id=step.meta["tile_id"],
            update_id=step.meta["update_id"],
        )
        return publishing.outgoing(msg, step.label)
    if step.meta.get("missing"):
        # publishing.interferogram_message rightly refuses a missing file; a producer that
        # announces a product before (or without) uploading it is what this step plays.
        msg = InterferogramMessage(
            product_id=step.meta["product_id"], frame_id=step.meta["frame_id"],
            primary_date=date.fromisoformat(step.meta["primary_date"]),
            secondary_date=date.fromisoformat(step.meta["secondary_date"]),
            wrapped_phase=RasterRef(uri=path.resolve().as_uri()),
        )
        return publishing.outgoing(msg, step.label)
    msg = publishing.interferogram_message(
        path, frame_id=step.meta["frame_id"], volcano_id=step.meta.get("volcano_id"),
    )
    return publishing.outgoing(msg, step.label)


def _clock(t0: float) -> str:
    return f"[{time.perf_counter() - t0:6.1f} s]"


def _describe_detection(payload: dict[str, Any], scenario: Scenario) -> str:
    if payload.get("kind") == "interferogram_unrest":
        frame = payload["frame"]
        truth = {t["product_id"]: t for t in scenario.truth["interferograms"]}.get(
            payload["product_id"], {}
        )
        decision = "UNREST" if frame["unrest"] else "quiet"
        fired = len(frame["tiles"])
        expected = ("unrest" if truth.get("unrest") else "quiet") if truth else "?"
        return (
            f"{payload['product_id']}: {decision}, p(unrest) {frame['unrest_probability']:.3f}, "
            f"{fired}/{frame['n_tiles']} tiles fired  "
            f"(truth: {expected}, {truth.get('peak_fringes', 0.0):.2f} fringes of deformation)"
        )
    cluster = set(scenario.accelerating_pids)
    changes = payload["changes"]
    counts = ", ".join(f"{c} {n}" for c, n in payload["class_counts"].items() if n)
    if all(c["previous_class"] is None for c in changes) and changes:
        return (
            f"{payload['dataset_id']}/{payload['tile_id']} {payload['update_id']}: first "
            f"classification of {payload['n_points_classified']} points ({counts})"
        )
    in_cluster = sum(c["pid"] in cluster for c in changes)
    moves = Counter(f"{c['previous_class']}->{c['new_class']}" for c in changes)
    detail = ", ".join(f"{k} {n}" for k, n in moves.most_common()) or "none"
    return (
        f"{payload['dataset_id']}/{payload['tile_id']} {payload['update_id']}: "
        f"{len(changes)} of {payload['n_points_classified']} points changed class "
        f"({in_cluster} in the accelerating cluster): {detail}"
    )


def _publish_and_watch(
    scenario: Scenario,
    ctx: PipelineContext,
    topics: dict[str, str],
    daemon_alive: Callable[[], bool],
    *,
    alerts_topic: str,
    alerts_done: Callable[[], bool],
    pause_s: float,
    timeout_s: float,
    t0: float,
) -> tuple[_Progress, str | None]:
    """Publish the steps on schedule and collect outputs until all are accounted for.

    Returns the progress and, when it stopped early, why.
    """
    from pipelines.kafka_io import KafkaPublisher

    progress = _Progress()
    watcher = _OutputWatcher(
        ctx.kafka, [ctx.detection_topic, ctx.dlq_topic, ctx.hotspot_topic, alerts_topic]
    )
    steps = list(scenario.steps)
    # The demo also waits for the hot spots of every PS update that was classified.
    ps_updates = {
        s.meta["update_id"] for s in steps
        if s.kind == "ps_update" and s.expect.get("outcome") != "dead_letter"
    }
    hotspots_on = ctx.hotspots is not None
    next_at = time.perf_counter()
    deadline = time.perf_counter() + timeout_s
    with KafkaPublisher(ctx.kafka) as publisher:
        while True:
            now = time.perf_counter()
            if steps and now >= next_at:
                step = steps.pop(0)
                item = _outgoing_for(step, scenario.root)
                topic = topics[item.topic_kind]
                partition, offset = publisher.publish(topic, item.value, key=item.key)
                progress.published[(topic, partition, offset)] = step.index
                progress.placement[step.index] = (topic, partition, offset)
                progress.published_at_s[step.index] = time.perf_counter() - t0
                print(f"{_clock(t0)} published   #{step.index:<2} {step.label:<44} "
                      f"-> {topic}[{partition}]@{offset}", flush=True)
                next_at = now + pause_s
            for topic, value in watcher.poll():
                _record_output(progress, topic, value, scenario, t0)
            if (
                not steps
                and not progress.unaccounted()
                and not (hotspots_on and progress.hotspots_pending(ps_updates))
                and alerts_done()
            ):
                for topic, value in watcher.poll():  # the alerts of the last pass
                    _record_output(progress, topic, value, scenario, t0)
                return progress, None
            if not daemon_alive():
                return progress, "the daemon stopped unexpectedly"
            if time.perf_counter() > deadline:
                return progress, f"timed out after {timeout_s:.0f} s"
            time.sleep(POLL_S)


def _record_output(
    progress: _Progress, topic: str, value: bytes, scenario: Scenario, t0: float
) -> None:
    payload = json.loads(value)
    arrival = _Arrival(time.perf_counter() - t0, topic, payload)
    if payload.get("schema") == "alert.v1":
        progress.alerts.append(arrival)
        print(f"{_clock(t0)} ALERT       {describe_alert(payload)}", flush=True)
        return
    if payload.get("schema") == "hotspot.v1":
        progress.hotspots.append(arrival)
        areas = payload["areas"]
        described = "; ".join(
            f"{a['id']} {a['status']} {a['sign']} {a['n_points']} pts "
            f"|v| {a['mean_abs_velocity_mm_yr']:.0f} mm/yr"
            for a in areas
        ) or "no active deformation area"
        print(f"{_clock(t0)} HOT SPOTS   {payload['dataset_id']} (window to "
              f"{payload['window']['end']}): {payload['summary']['n_hot']} hot / "
              f"{payload['summary']['n_cold']} cold points; {described}", flush=True)
        if "delineation" in payload:
            unet = payload["delineated_areas"]
            what = "; ".join(
                f"{a['id']} {a['status']} {a['sign']} {a['area_m2'] / 1e6:.2f} km2"
                for a in unet
            ) or "no area"
            inputs = " + ".join(payload["delineation"]["inputs"])
            print(f"{_clock(t0)}             U-Net delineation ({inputs}): {what}", flush=True)
        return
    src = payload.get("source", {})
    index = progress.published.get((src.get("topic"), src.get("partition"), src.get("offset")))
    if index is None:
        progress.strays.append(arrival)
    else:
        progress.outcome[index] = arrival
    label = "" if index is None else f"#{index:<2} "
    if payload.get("schema") == "dead_letter.v1":
        progress.dead_letters.append(arrival)
        print(f"{_clock(t0)} DEAD LETTER {label}{payload['reason']} (stage {payload['stage']}): "
              f"{payload['error']}", flush=True)
    else:
        progress.detections.append(arrival)
        print(f"{_clock(t0)} DETECTION   {label}{_describe_detection(payload, scenario)}",
              flush=True)


def _summarise(
    scenario: Scenario, progress: _Progress, out: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Compare what arrived with the scenario's truth (JSON-ready)."""
    steps = {s.index: s for s in scenario.steps}
    truth_frames = {t["product_id"]: t for t in scenario.truth["interferograms"]}

    frames = []
    bad = []
    for index, step in steps.items():
        arrival = progress.outcome.get(index)
        payload = arrival.payload if arrival else None
        if step.expect.get("outcome") == "dead_letter":
            got = payload.get("reason") if payload and "reason" in payload else None
            bad.append({
                "index": index, "label": step.label, "expected_reason": step.expect["reason"],
                "reason": got, "error": payload.get("error") if payload else None,
                "dead_lettered": got is not None, "match": got == step.expect["reason"],
            })
        elif step.kind == "interferogram":
            truth = truth_frames[step.meta["product_id"]]
            frame = (payload or {}).get("frame")
            frames.append({
                "index": index, "label": step.label, "product_id": step.meta["product_id"],
                "truth_unrest": truth["unrest"], "peak_fringes": truth["peak_fringes"],
                "detected": None if frame is None else frame["unrest"],
                "probability": None if frame is None else round(frame["unrest_probability"], 4),
                "tiles_fired": None if frame is None else len(frame["tiles"]),
                "n_tiles": None if frame is None else frame["n_tiles"],
                "match": frame is not None and frame["unrest"] == truth["unrest"],
            })

    ps_truth = scenario.truth["ps"]
    cluster = set(ps_truth["accelerating_pids"])
    after = ps_truth["class_after_onset"]
    classes: dict[str, str] = {}
    initial: dict[str, str] = {}
    updates = []
    ps_steps = [s for s in steps.values() if s.kind == "ps_update"]
    for step in ps_steps:
        arrival = progress.outcome.get(step.index)
        if arrival is None or "changes" not in arrival.payload:
            updates.append({"update_id": step.meta["update_id"], "arrived": False})
            continue
        p = arrival.payload
        first = not classes
        moves_cluster: Counter[str] = Counter()
        moves_other: Counter[str] = Counter()
        for change in p["changes"]:
            classes[change["pid"]] = change["new_class"]
            if change["previous_class"] is None:
                initial[change["pid"]] = change["new_class"]
                continue
            move = f"{change['previous_class']}->{change['new_class']}"
            (moves_cluster if change["pid"] in cluster else moves_other)[move] += 1
        updates.append({
            "update_id": p["update_id"], "arrived": True, "first": first,
            "n_classified": p["n_points_classified"], "class_counts": p["class_counts"],
            "changed_cluster": sum(moves_cluster.values()),
            "changed_other": sum(moves_other.values()),
            "moves_cluster": dict(moves_cluster), "moves_other": dict(moves_other),
        })
    final_moves_cluster = Counter(
        f"{initial[pid]}->{classes[pid]}" for pid in cluster
        if pid in initial and classes.get(pid) != initial[pid]
    )
    others = [pid for pid in initial if pid not in cluster]
    final_moves_other = Counter(
        f"{initial[pid]}->{classes[pid]}" for pid in others if classes[pid] != initial[pid]
    )
    ps = {
        "dataset_id": ps_truth["dataset_id"], "tile_id": ps_truth["tile_id"],
        "n_points": ps_truth["n_points"], "onset": ps_truth["onset"],
        "cluster_size": len(cluster),
        "truth_before_onset": {
            c: n for c in TREND_CLASSES
            if (n := sum(v == c for v in ps_truth["class_before_onset"].values()))
        },
        "cluster_initial_classes": dict(Counter(initial[p] for p in cluster if p in initial)),
        "cluster_final_classes": dict(Counter(classes[p] for p in cluster if p in classes)),
        "cluster_changed": sum(final_moves_cluster.values()),
        "cluster_moves": dict(final_moves_cluster),
        "others_size": len(others),
        # A background point that changes class is a false alarm unless the change corrects
        # a first classification that was wrong (its true class never changes).
        "others_changed_to_truth": sum(
            classes[pid] != initial[pid] and classes[pid] == after[pid] for pid in others
        ),
        "others_changed": sum(final_moves_other.values()),
        "others_moves": dict(final_moves_other),
        "updates": updates,
    }

    # Publication to output on the broker: waiting for the next poll, the pass, inference.
    latencies = sorted(
        arrival.at_s - progress.published_at_s[i] for i, arrival in progress.outcome.items()
    )
    archive = out / "state" / "archive"
    summary = {
        **extra,
        "published": len(progress.placement),
        "accounted": len(progress.outcome),
        "unaccounted": [steps[i].label for i in progress.unaccounted()],
        "detections": len(progress.detections),
        "dead_letters": len(progress.dead_letters),
        "stray_outputs": len(progress.strays),
        "latency_s": {
            "median": round(latencies[len(latencies) // 2], 2) if latencies else None,
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "interferograms": frames,
        "bad_messages": bad,
        "ps": ps,
        "outputs": {
            "products": str(scenario.root),
            "scenario_truth": str(scenario.root / "scenario.json"),
            "archive": str(archive),
            "archive_json": len(list(archive.rglob("*.json"))) if archive.exists() else 0,
            "quicklooks": sorted(
                str(p) for p in (archive / "interferogram_unrest").glob("*.png")
            ) if archive.exists() else [],
            "hotspot_maps": sorted(str(p) for p in (archive / "hotspots").rglob("map.png"))
            if archive.exists() else [],
            "hotspot_messages": len(progress.hotspots),
            "last_hotspot_areas": progress.hotspots[-1].payload["areas"]
            if progress.hotspots else [],
            "ps_store": str(out / "state" / "ps-store"),
            "ledger": str(out / "state" / "emitted.sqlite"),
        },
    }
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    print("\n=== Summary " + "=" * 68)
    print(f"published {summary['published']} messages; {summary['accounted']} accounted for "
          f"({summary['detections']} detections, {summary['dead_letters']} dead letters) in "
          f"{summary['elapsed_s']:.1f} s; daemon: {summary['daemon']['passes']} passes, "
          f"{summary['daemon']['failed_passes']} failed")
    if summary["stopped_early"]:
        print(f"!! stopped early: {summary['stopped_early']}; still unaccounted: "
              f"{', '.join(summary['unaccounted']) or 'none'}")
    lat = summary["latency_s"]
    if lat["median"] is not None:
        print(f"publication -> output on the broker: median {lat['median']:.1f} s, "
              f"max {lat['max']:.1f} s")
    print(f"consumer group committed every input: {summary['inputs_committed']}")

    print("\nInterferograms (truth: unrest = deformation of at least half a fringe)")
    print(f"  {'product':<53} {'truth':<17} {'p(unrest)':>9}  {'detected':<8} tiles  verdict")
    for f in summary["interferograms"]:
        name = f"{f['label'][:34]:<34} {f['product_id'][-17:]}"
        truth = f"{'unrest' if f['truth_unrest'] else 'quiet'} {f['peak_fringes']:.1f} fr"
        if f["detected"] is None:
            print(f"  {name:<53} {truth:<17} {'-':>9}  {'-':<8} -      no result")
            continue
        verdict = "ok" if f["match"] else ("MISSED" if f["truth_unrest"] else "FALSE ALARM")
        decision = "UNREST" if f["detected"] else "quiet"
        tiles = f"{f['tiles_fired']}/{f['n_tiles']}"
        print(f"  {name:<53} {truth:<17} {f['probability']:>9.3f}  "
              f"{decision:<8} {tiles:<6} {verdict}")
    n_ok = sum(f["match"] for f in summary["interferograms"])
    print(f"  decided as their truth: {n_ok}/{len(summary['interferograms'])}")

    ps = summary["ps"]
    print(f"\nPS tile {ps['dataset_id']}/{ps['tile_id']}: {ps['n_points']} points, "
          f"{ps['cluster_size']} of them accelerating from {ps['onset']} (bilinear onset)")
    for u in ps["updates"]:
        if not u["arrived"]:
            print(f"  {u['update_id']:<28} no detection arrived")
        elif u["first"]:
            counts = ", ".join(f"{c} {n}" for c, n in u["class_counts"].items() if n)
            truth = ", ".join(f"{c} {n}" for c, n in ps["truth_before_onset"].items())
            print(f"  {u['update_id']:<28} first classification: {counts} (truth: {truth})")
        else:
            moves = ", ".join(f"{k} {n}" for k, n in u["moves_cluster"].items())
            other = ", ".join(f"{k} {n}" for k, n in u["moves_other"].items())
            print(f"  {u['update_id']:<28} changed class: {u['changed_cluster']:>2} in the "
                  f"cluster{f' ({moves})' if moves else ''}, {u['changed_other']} elsewhere"
                  f"{f' ({other})' if other else ''}")
    cluster_moves = ", ".join(f"{k} {n}" for k, n in ps["cluster_moves"].items()) or "none"
    other_moves = ", ".join(f"{k} {n}" for k, n in ps["others_moves"].items()) or "none"
    print(f"  accelerating cluster, first release -> last update: {ps['cluster_changed']}/"
          f"{ps['cluster_size']} changed class ({cluster_moves})")
    print(f"  other points: {ps['others_changed']}/{ps['others_size']} changed class "
          f"({other_moves}; {ps['others_changed_to_truth']} of them to their true class)")

    print("\nBad input (must be dead-lettered, the daemon going on)")
    for b in summary["bad_messages"]:
        got = b["reason"] or "no dead letter"
        print(f"  {b['label']:<40} expected {b['expected_reason']:<10} got {got:<10} "
              f"{'ok' if b['match'] else 'MISMATCH'}")

    print_alerts_summary(summary["alerts"])

    o = summary["outputs"]
    print("\nOutputs")
    print(f"  scenario products and truth  {o['products']}/ ({o['scenario_truth']})")
    print(f"  archived detections (JSON)   {o['archive']}/<kind>/*.json ({o['archive_json']} "
          "files)")
    print(f"  quicklooks of unrest frames  {len(o['quicklooks'])} PNG files"
          + (f", e.g. {o['quicklooks'][-1]}" if o["quicklooks"] else ""))
    print(f"  hot spots and ADAs           {o['hotspot_messages']} hotspot.v1 messages; maps, "
          "GeoJSON, density NetCDF/GeoTIFF under "
          f"{o['archive']}/hotspots/" + (f", e.g. {o['hotspot_maps'][-1]}"
                                          if o["hotspot_maps"] else ""))
    print(f"  PS store                     {o['ps_store']}")
    print(f"  emitted-id ledger            {o['ledger']}")
    print(f"  broker logs                  {o['kafka_log']}, {o['zookeeper_log']}")
    print(f"  this summary                 {o['summary']}")


def run_streaming_demo(
    out: Path,
    config: MonitorConfig,
    *,
    seed: int | None = None,
    pause_s: float = 1.5,
    timeout_s: float = 300.0,
) -> int:
    """Run the streaming demo (see the module docstring); returns a process exit status.

    0 when every published message was accounted for (a detection or a dead letter) and the
    daemon stopped cleanly; whether the detections match the truth is reported, not judged.
    """
    from contextlib import ExitStack
    from dataclasses import replace

    from monitor.daemon import Daemon
    from monitor.embedded_kafka import EmbeddedKafka
    from pipelines.context import PipelineContext
    from pipelines.kafka_io import committed_offsets, end_offsets
    from serving.synthetic.scenario import ScenarioParams, generate_scenario

    started = time.perf_counter()
    out = Path(out)
    _prepare_out(out)
    params = ScenarioParams() if seed is None else replace(ScenarioParams(), seed=seed)
    print(f"insar-monitor demo: streaming scenario (seed {params.seed}) under {out}/")

    t = time.perf_counter()
    scenario = generate_scenario(out / "products", params)
    print(f"  scenario: {len(scenario.steps)} messages to publish, written to "
          f"{scenario.root}/ in {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    # Absolute: the broker's log4j configuration is passed to the JVM as a file:// URI.
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedKafka((out / "kafka").resolve(), num_partitions=3))
        print(f"  embedded Kafka 0.9 broker at {broker.bootstrap} "
              f"(started in {time.perf_counter() - t:.1f} s)")
        cfg = _demo_config(config, broker.bootstrap, out)
        ctx = PipelineContext.from_config(cfg)
        topics = {"interferogram": cfg.topics.interferograms, "ps_update": cfg.topics.ps_updates}

        subscriber = stack.enter_context(demo_subscriber(cfg))
        t = time.perf_counter()
        daemon = Daemon(cfg)
        daemon.prepare()  # models load once per process; run() finds them loaded
        print(f"  models loaded and checked in {time.perf_counter() - t:.1f} s "
              f"({cfg.models.backend} backend); daemon polling every "
              f"{cfg.pipeline.poll_interval_s:.0f} s, state in {cfg.storage.state_dir}/")
        if daemon.health is not None:
            print(f"  metrics {daemon.health.url}/metrics, readiness {daemon.health.url}/readyz")
        errors: list[BaseException] = []

        def run_daemon() -> None:
            try:
                daemon.run()
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        thread = threading.Thread(target=run_daemon, name="insar-monitor-daemon", daemon=True)
        thread.start()
        print(f"\nPublishing in event-time order, {pause_s:g} s apart; outputs as they "
              "arrive:\n", flush=True)
        t0 = time.perf_counter()
        try:
            progress, stopped_early = _publish_and_watch(
                scenario, ctx, topics, thread.is_alive,
                alerts_topic=cfg.topics.alerts, alerts_done=lambda: alerts_caught_up(cfg),
                pause_s=pause_s, timeout_s=timeout_s, t0=t0,
            )
        finally:
            # Also on Ctrl-C: the daemon finishes and commits its pass, then the broker stops.
            daemon.request_stop()
            thread.join(timeout=120)
        if thread.is_alive():
            stopped_early = stopped_early or "the daemon did not stop within 120 s"
        if errors:
            stopped_early = f"the daemon failed: {type(errors[0]).__name__}: {errors[0]}"
        ends = end_offsets(ctx.kafka, ctx.input_topics)
        committed = committed_offsets(ctx.kafka, ctx.input_topics)
        inputs_committed = all(committed.get(k) == v for k, v in ends.items() if v > 0)
        kafka_log, zookeeper_log = broker.kafka_log, broker.zookeeper_log
        # The cone frame fires once (a false alarm): persistence must keep it from alerting.
        alerts = summarise_alerts(
            cfg, subscriber, out,
            expected={params.volcano_id: True, params.negative_frame_id: False},
        )
    print(f"\n{_clock(t0)} daemon stopped ({daemon.stats.passes} passes), broker stopped")

    summary = _summarise(scenario, progress, out, {
        # Alert plumbing is judged (every queued webhook arrived signed, every CAP file is
        # valid); which alerts the models' detections lead to is reported, like accuracy.
        "ok": stopped_early is None and not progress.unaccounted() and inputs_committed
        and alerts["webhooks_signature_valid"] == alerts["deliveries_queued"]
        and alerts["cap_files_valid"] == alerts["cap_files"],
        "stopped_early": stopped_early,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "daemon": {"passes": daemon.stats.passes, "records": daemon.stats.records,
                   "failed_passes": daemon.stats.failed_passes},
        "inputs_committed": inputs_committed,
    })
    summary["alerts"] = alerts
    summary["outputs"].update(kafka_log=str(kafka_log), zookeeper_log=str(zookeeper_log),
                              summary=str(out / "summary.json"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _print_summary(summary)
    print(f"\ndone in {summary['elapsed_s']:.1f} s")
    return 0 if summary["ok"] else 1


# --- the offline demo -----------------------------------------------------------------------
def run_offline_demo(out: Path, config: MonitorConfig, *, seed: int = 5) -> int:
    """Generate products, score them with the models directly (no broker, no daemon), and
    compare with the truth; returns a process exit status (0 when every product was
    processed)."""
    from tqdm import tqdm

    from serving.synthetic.products import write_demo_interferograms, write_demo_ps_csv

    out = Path(out)
    print(f"insar-monitor demo --offline: writing synthetic products under {out}/")
    frames = write_demo_interferograms(out / "interferograms", count=6, seed=seed)
    csv_path = write_demo_ps_csv(out / "ps" / "egms_synthetic.csv", per_class=40, seed=seed)
    truth = {str(path): t for path, t in frames}

    print(f"\nScoring {len(frames)} interferograms with {UNREST_MODEL_NAME} "
          f"({config.models.backend} backend)")
    results = []
    with make_model_client(config, UNREST_MODEL_NAME) as client:
        client.check_signature()
        stream = score_interferograms([p for p, _ in frames], config, client,
                                      quicklook_dir=out / "quicklooks")
        for result in tqdm(stream, total=len(frames), unit="frame", leave=False):
            results.append(result)
    (out / "unrest_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    failures = 0
    correct = 0
    print(f"{'product':<40} {'truth':<28} {'p(unrest)':>9}  decision  tiles fired")
    for r in results:
        t = truth[r["path"]]
        if "error" in r:
            failures += 1
            print(f"{Path(r['path']).name:<40} {t['kind']:<28} ERROR: {r['error']}")
            continue
        fired = sum(1 for tile in r["tiles"] if tile["probability"] >= config.unrest.threshold)
        correct += r["unrest"] == t["unrest"]
        print(f"{Path(r['path']).name:<40} {t['kind']:<28} {r['unrest_probability']:>9.3f}  "
              f"{'UNREST' if r['unrest'] else 'quiet':<8}  {fired}/{r['n_tiles']}")
    print(f"frames decided as their truth: {correct}/{len(results) - failures}")

    print(f"\nClassifying PS points of {csv_path.name} with {TREND_MODEL_NAME}")
    with make_model_client(config, TREND_MODEL_NAME) as client:
        client.check_signature()
        classes = classify_ps_file(csv_path, config, client)
    classes_path = out / "ps_classes.csv"
    classes.to_csv(classes_path, index=False)
    truth_labels = pd.read_csv(csv_path.with_suffix(".truth.csv"), dtype={"pid": str})
    merged = classes.merge(truth_labels, on="pid")
    table = pd.crosstab(merged["true_label"], merged["label"], margins=True)
    print(table.to_string())
    accuracy = float((merged["label"] == merged["true_label"]).mean())
    print(f"PS points classified as their truth: {accuracy:.1%} of {len(merged)}")
    print(f"\noutputs: {out / 'unrest_scores.jsonl'}, {out / 'quicklooks'}/*.png, "
          f"{classes_path}")
    return 1 if failures else 0
