"""What each ``insar-monitor`` sub-command does, given parsed arguments and the config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monitor.config import MonitorConfig

log = logging.getLogger("insar_monitor")


def run(args: argparse.Namespace, config: MonitorConfig) -> int:
    handler = {
        "score-interferogram": score_interferogram,
        "classify-ps": classify_ps,
        "train": train,
        "evaluate": evaluate,
        "model-card": model_card,
        "generate": generate,
        "demo": demo,
        "run": run_daemon,
        "publish": publish,
        "replay": replay,
        "hotspots": hotspots,
        "config": show_config,
        "alerts": _alerts,
        "api": _api,
    }[args.command]
    return handler(args, config)


def _alerts(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.cli.alerts_commands import run_alerts

    return run_alerts(args, config)


def _api(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.cli.alerts_commands import serve_api

    return serve_api(args, config)


def _fail(message: str, code: int = 1) -> int:
    print(f"insar-monitor: {message}", file=sys.stderr)
    return code


def score_interferogram(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.scoring import make_model_client, score_interferograms
    from serving.signatures import UNREST_MODEL_NAME

    failures = 0
    with make_model_client(config, UNREST_MODEL_NAME) as client:
        for result in score_interferograms(args.paths, config, client, args.quicklook):
            print(json.dumps(result), flush=True)
            if "error" in result:
                failures += 1
                print(f"insar-monitor: {result['error']}", file=sys.stderr)
    return 1 if failures else 0


def classify_ps(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.scoring import classify_ps_file, make_model_client
    from pipelines.raster_io import ProductError
    from serving.signatures import TREND_MODEL_NAME

    try:
        with make_model_client(config, TREND_MODEL_NAME) as client:
            table = classify_ps_file(args.csv, config, client)
    except ProductError as e:
        return _fail(str(e))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    counts = table["label"].value_counts().to_dict()
    print(json.dumps({"csv": str(args.csv), "out": str(args.out), "points": len(table),
                      "classes": counts}))
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict[str, int]:
    """Only the options the user gave, so each trainer's own recipe supplies the rest."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def train(args: argparse.Namespace, config: MonitorConfig) -> int:
    if args.model == "trend":
        from serving.training.trend import train as train_trend

        out = train_trend(
            args.out, version=args.version, architecture=args.architecture,
            **_given(args, "seed", "n_train", "epochs"),
        )
    elif args.model == "delineation":
        from serving.training.delineation import train as train_delineation

        out = train_delineation(args.out, version=args.version,
                                **_given(args, "seed", "n_train", "epochs", "patience"))
    else:
        from serving.training.unrest import train as train_unrest

        out = train_unrest(args.out, version=args.version,
                           **_given(args, "seed", "n_train", "epochs", "patience"))
    print(json.dumps({"model": args.model, "exported": str(out)}))
    return 0


_MODEL_NAMES = {
    "trend": "ps_trend_classifier",
    "unrest": "unrest_detector",
    "delineation": "ada_delineator",
}
"""CLI model choice -> served model name (serving.signatures)."""


def _newest_version(model_base: Path, model_name: str) -> Path:
    from serving.clients.inprocess import resolve_version

    return model_base / model_name / str(resolve_version(model_base, model_name, None))


def evaluate(args: argparse.Namespace, config: MonitorConfig) -> int:
    name = _MODEL_NAMES[args.model]
    model_dir = args.model_dir or _newest_version(config.models.model_base, name)
    if model_dir.is_absolute() and model_dir.is_relative_to(Path.cwd()):
        model_dir = model_dir.relative_to(Path.cwd())  # reports name repo paths, not machines
    extra = _given(args, "seed", "n_test")
    if args.model == "trend":
        from serving.evaluation.trend import evaluate as evaluate_trend

        report = evaluate_trend(model_dir, args.report_dir,
                                baseline_model_dir=args.baseline_model_dir, **extra)
    elif args.model == "delineation":
        from serving.evaluation.delineation import evaluate as evaluate_delineation

        report = evaluate_delineation(model_dir, args.report_dir, **extra)
    else:
        from serving.evaluation.unrest import evaluate as evaluate_unrest

        report = evaluate_unrest(model_dir, args.report_dir, **extra)
    print(json.dumps({"model": args.model, "model_dir": str(model_dir),
                      "report_dir": str(args.report_dir),
                      "summary": _summary(report)}, default=str))
    return 0


def model_card(args: argparse.Namespace, config: MonitorConfig) -> int:
    from serving import model_card as cards

    name = _MODEL_NAMES[args.model]
    text = {"trend": cards.TREND_CARD, "unrest": cards.UNREST_CARD,
            "delineation": cards.DELINEATION_CARD}[args.model]
    model_dir = args.model_dir or _newest_version(config.models.model_base, name)
    out = cards.write_model_card(
        name, model_dir, args.report_dir / f"{args.model}_report.json", text,
        model_dir.parent / "MODEL_CARD.md",
    )
    print(json.dumps({"model_card": str(out)}))
    return 0


def _summary(report: dict) -> dict:
    if "methods" in report:  # delineation: cell F1 and IoU of every method compared
        return {name: {k: row["cells"][k] for k in ("precision", "recall", "f1", "iou")}
                for name, row in report["methods"].items()}
    keys = ("overall_accuracy", "accuracy", "roc_auc", "macro_f1", "targets_met")
    found: dict = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in keys and not isinstance(v, dict | list):
                    found[f"{prefix}{k}"] = v
                elif isinstance(v, dict) and len(prefix) < 40:
                    walk(v, f"{prefix}{k}.")

    walk(report, "")
    return found


def generate(args: argparse.Namespace, config: MonitorConfig) -> int:
    from serving.synthetic.products import write_demo_interferograms, write_demo_ps_csv

    if args.kind == "interferograms":
        written = write_demo_interferograms(args.out, count=args.count, seed=args.seed)
        for path, truth in written:
            print(json.dumps({"path": str(path), "truth": truth}))
    else:
        path = write_demo_ps_csv(args.out / "egms_synthetic.csv", per_class=args.count,
                                 seed=args.seed)
        print(json.dumps({"path": str(path)}))
    return 0


def demo(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.demo import DemoError, run_offline_demo, run_streaming_demo

    if args.offline:
        return run_offline_demo(args.out, config, seed=5 if args.seed is None else args.seed)
    if args.pause < 0 or args.timeout <= 0:
        return _fail("--pause must be >= 0 and --timeout > 0", 2)
    try:
        return run_streaming_demo(
            args.out, config, seed=args.seed, pause_s=args.pause, timeout_s=args.timeout
        )
    except DemoError as e:
        return _fail(str(e), 2)


def run_daemon(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.daemon import Daemon

    daemon = Daemon(config)
    daemon.install_signal_handlers()
    stats = daemon.run(until_idle=args.until_idle, max_passes=args.max_passes)
    print(json.dumps({"passes": stats.passes, "records": stats.records,
                      "failed_passes": stats.failed_passes,
                      "alert_revisions": stats.alert_revisions}))
    return 0


def _topics(config: MonitorConfig) -> dict[str, str]:
    return {"interferogram": config.topics.interferograms, "ps_update": config.topics.ps_updates}


def publish(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor import publishing
    from pipelines.context import PipelineContext
    from pipelines.raster_io import ProductError

    try:
        if args.kind == "interferogram":
            message = publishing.interferogram_message(
                args.path, frame_id=args.frame_id, primary=args.primary,
                secondary=args.secondary, product_id=args.product_id,
                coherence_path=args.coherence, region_id=args.region_id,
                volcano_id=args.volcano_id, inline=args.inline,
            )
        else:
            message = publishing.ps_update_message(
                args.path, dataset_id=args.dataset, tile_id=args.tile, update_id=args.update_id
            )
        item = publishing.outgoing(message)
    except ProductError as e:
        return _fail(f"{e} [{e.reason}]")
    settings = PipelineContext.from_config(config).kafka
    for it, partition, offset in publishing.publish([item], settings, _topics(config)):
        print(json.dumps({"published": it.label, "topic": _topics(config)[it.topic_kind],
                          "partition": partition, "offset": offset}))
    return 0


def replay(args: argparse.Namespace, config: MonitorConfig) -> int:
    from tqdm import tqdm

    from monitor import publishing
    from pipelines.context import PipelineContext
    from pipelines.raster_io import ProductError

    try:
        items = publishing.scan_archive(args.directory)
    except ProductError as e:
        return _fail(f"{e} [{e.reason}] (nothing was published)")
    if args.dry_run:
        for it in items:
            print(json.dumps({"event_time": it.event_time.isoformat(), "kind": it.topic_kind,
                              "key": it.key, "path": it.label}))
        return 0
    settings = PipelineContext.from_config(config).kafka
    sent = 0
    stream = publishing.publish(items, settings, _topics(config))
    for _ in tqdm(stream, total=len(items), unit="msg", desc="replay", file=sys.stderr):
        sent += 1
    print(json.dumps({"published": sent, "directory": str(args.directory)}))
    return 0


def hotspots(args: argparse.Namespace, config: MonitorConfig) -> int:
    from monitor.hotspot_command import run_hotspots
    from pipelines.hotspots.engine import HotspotParams
    from pipelines.raster_io import ProductError
    from serving.clients import InferenceError

    delineation = None
    if args.delineate:
        from pipelines.delineation_stage import DelineationSettings

        delineation = DelineationSettings.from_config(config, dem_path=args.dem)
    try:
        summary = run_hotspots(
            args.input, args.out, HotspotParams.from_config(config.hotspots),
            delineation=delineation,
        )
    except (ProductError, ValueError) as e:
        reason = getattr(e, "reason", "invalid_input")
        return _fail(f"{e} [{reason}]")
    except InferenceError as e:
        return _fail(f"the delineation model could not run: {e}")
    print(json.dumps(summary))
    return 0


def show_config(args: argparse.Namespace, config: MonitorConfig) -> int:
    if args.action == "schema":
        print(describe())
    else:
        import yaml

        print(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False))
    return 0


def describe() -> str:
    from monitor.config import describe_schema

    return describe_schema()
