"""The ``insar-monitor`` command line: parse, validate, call the logic.

Heavy modules (TensorFlow, rasterio) are imported inside each command so that
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from monitor.config import ConfigError, MonitorConfig, load_config

log = logging.getLogger("insar_monitor")

DESCRIPTION = """\
insar-monitor: watch Sentinel-1 InSAR products and warn when the ground starts to move.

Scores wrapped interferograms for volcanic unrest (224x224 tiles, CNN) and classifies
Persistent Scatterer time series into Stable, Linear, Quadratic, Bilinear and
Phase-Unwrapping Error, with models the project trains on its own synthetic data.
"""

EPILOG = """\
configuration:
  One YAML file (--config) over embedded defaults, then INSAR_MONITOR__SECTION__KEY
  environment overrides. See every key: insar-monitor config schema

examples:
  insar-monitor score-interferogram 20240101_20240113.geo.diff_pha.tif
  insar-monitor classify-ps egms_l2b.csv --out classes.csv
  insar-monitor train trend && insar-monitor evaluate trend
  insar-monitor run --config deploy/insar-monitor.yaml
  insar-monitor replay /data/archive --bootstrap kafka:9092
  insar-monitor demo
  insar-monitor alerts list --state firing
  insar-monitor api --port 8088          # then open http://127.0.0.1:8088/map

references:
  Mirmazloumi et al. (2022), InSAR deformation time series classification using a CNN,
    ISPRS Archives XLIII-B3, doi:10.5194/isprs-archives-XLIII-B3-2022-307-2022
  Bountos et al. (2022), Learning class prototypes from synthetic InSAR with vision
    transformers, arXiv:2201.03016
"""


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML configuration file (default: embedded)")
    p.add_argument(
        "--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR (default WARNING)"
    )


def _add_model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        type=Path,
        help="directory holding <model>/<version>/ SavedModels (default: models.model_base, "
        "the committed serving/models)",
    )
    p.add_argument(
        "--backend", choices=["inprocess", "grpc", "rest"],
        help="override models.backend (inprocess, or a TF-Serving gRPC / REST server)",
    )


def _add_kafka(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="override kafka.bootstrap_servers (host:port)")
    p.add_argument("--api-version", help="override kafka.api_version (e.g. 0.9)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="insar-monitor", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "score-interferogram",
        help="score wrapped-phase rasters for volcanic unrest (one JSON line each)",
        description="Tile each wrapped-phase raster (GeoTIFF or NetCDF, radians) into 224x224 "
        "patches, score every patch with the unrest detector and aggregate to a frame decision "
        "(frame probability = highest tile probability).\n\nPrints one JSON object per line: "
        '{"path", "unrest_probability", "unrest", "n_tiles", "tiles": [{"row", "col", '
        '"probability", ...}]}. A file that cannot be scored prints {"path", "error", "reason"} '
        "and the others are still scored; the exit status is 1 if any file failed.",
        epilog="example:\n  insar-monitor score-interferogram "
        "124D_05291_081406/20240101_20240113/20240101_20240113.geo.diff_pha.tif",
        formatter_class=fmt,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--threshold", type=float, help="override unrest.threshold")
    p.add_argument(
        "--quicklook", type=Path, metavar="DIR",
        help="also write a PNG per frame (wrapped phase, fired tiles outlined) into DIR",
    )
    _add_model_dir(p)
    _add_config(p)

    p = sub.add_parser(
        "classify-ps",
        help="classify the PS time series of an EGMS-style CSV into trend classes",
        description="Read an EGMS-style CSV (pid, latitude, longitude, ..., one YYYYMMDD column "
        "of displacement in mm per epoch) and write pid, label, p_stable, p_linear, "
        "p_quadratic, p_bilinear, p_pue. Points with fewer valid epochs than "
        "products.min_epochs are skipped with a warning.",
        epilog="example:\n  insar-monitor classify-ps EGMS_L2b_146_0278_IW2_VV.csv "
        "--out classes.csv",
        formatter_class=fmt,
    )
    p.add_argument("csv", type=Path, metavar="CSV")
    p.add_argument("--out", type=Path, required=True, help="output CSV")
    _add_model_dir(p)
    _add_config(p)

    p = sub.add_parser(
        "train",
        help="train a model on freshly generated synthetic data and export a SavedModel",
        description="Generate synthetic training data with fixed seeds, train, and export "
        "<out>/<model_name>/<version>/ for TF-Serving. Refuses to overwrite an existing "
        "version.",
        formatter_class=fmt,
    )
    p.add_argument("model", choices=["trend", "unrest", "delineation"])
    p.add_argument("--out", type=Path, default=Path("serving/models"), help="model base dir")
    p.add_argument("--version", type=int, default=1)
    p.add_argument(
        "--seed", type=int, help="training seed (default: the recipe of the committed model)"
    )
    p.add_argument("--n-train", type=int, help="training samples (default: the model's recipe)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the model's recipe)")
    p.add_argument(
        "--patience", type=int,
        help="unrest only: early-stopping patience in epochs (default: the model's recipe)",
    )
    p.add_argument(
        "--architecture", choices=["improved", "paper"], default="improved",
        help="trend only: the served model or the paper's 1D CNN baseline",
    )
    _add_config(p)

    p = sub.add_parser(
        "evaluate",
        help="evaluate an exported model on an independent synthetic test set; write reports",
        description="Writes <report-dir>/<model>_report.json, .md and a confusion-matrix PNG, "
        "with the papers' published numbers side by side.",
        formatter_class=fmt,
    )
    p.add_argument("model", choices=["trend", "unrest", "delineation"])
    p.add_argument("--model-dir", type=Path, help="SavedModel version dir (default: newest)")
    p.add_argument("--report-dir", type=Path, default=Path("docs/models"))
    p.add_argument(
        "--seed", type=int, help="test-set seed (default: the one behind docs/models/)"
    )
    p.add_argument("--n-test", type=int, help="test samples (default: the model's recipe)")
    p.add_argument(
        "--baseline-model-dir", type=Path,
        help="trend only: the paper-CNN SavedModel to compare (e.g. build/paper_cnn/...)",
    )
    _add_config(p)

    p = sub.add_parser(
        "model-card",
        help="write MODEL_CARD.md beside a committed model from its evaluation report",
        description="Reads docs/models/<model>_report.json and the SavedModel directory and "
        "writes serving/models/<name>/MODEL_CARD.md with the signature, data recipe, "
        "reproduction commands, metrics and the directory's sha256.",
        formatter_class=fmt,
    )
    p.add_argument("model", choices=["trend", "unrest", "delineation"])
    p.add_argument("--model-dir", type=Path, help="SavedModel version dir (default: newest)")
    p.add_argument("--report-dir", type=Path, default=Path("docs/models"))
    _add_config(p)

    p = sub.add_parser(
        "generate",
        help="write synthetic products: LiCSAR-like GeoTIFF interferograms or an EGMS-like CSV",
        formatter_class=fmt,
    )
    p.add_argument("kind", choices=["interferograms", "ps"])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--count", type=int, default=4, help="frames, or points per class")
    p.add_argument("--seed", type=int, default=11)
    _add_config(p)

    p = sub.add_parser(
        "run",
        help="the always-on daemon: Kafka -> Beam pipeline -> detections",
        description="Consume interferogram.v1 and ps_update.v1 messages, tile and score "
        "interferograms, classify the PS points each update touches (whole series from the PS "
        "store), publish detection.v1 messages and dead-letter what cannot be processed.\n\n"
        "With pipeline.runner FnApiRunner (default) the daemon repeats bounded Beam passes: "
        "committed offsets .. end offsets, outputs made durable, then offsets committed. "
        "FlinkRunner / DataflowRunner submit one unbounded streaming job instead.\n\n"
        "SIGTERM or Ctrl-C: finish and commit the current pass, then exit; a second signal "
        "abandons the pass uncommitted (it is replayed at the next start).",
        epilog="examples:\n"
        "  insar-monitor run --config deploy/insar-monitor.yaml\n"
        "  INSAR_MONITOR__KAFKA__BOOTSTRAP_SERVERS=kafka:9092 insar-monitor run\n"
        "  insar-monitor run --bootstrap 127.0.0.1:9092 --api-version 0.9 --until-idle",
        formatter_class=fmt,
    )
    _add_kafka(p)
    p.add_argument(
        "--until-idle", action="store_true",
        help="exit after the first pass that finds nothing new (backfills, tests)",
    )
    p.add_argument("--max-passes", type=int, help="exit after this many committed passes")
    p.add_argument("--state-dir", type=Path, help="override storage.state_dir")
    _add_config(p)

    p = sub.add_parser(
        "publish",
        help="publish one product message (interferogram or PS update)",
        description="Build an interferogram.v1 or ps_update.v1 message for a file, validate it "
        "against its schema and publish it (waiting for the broker's acknowledgement). Rasters "
        "go by reference (file:// URI plus sha256) unless --inline is given.",
        epilog="examples:\n"
        "  insar-monitor publish interferogram "
        "124D_05291_081406/20240101_20240113/20240101_20240113.geo.diff_pha.tif\n"
        "  insar-monitor publish interferogram phase.tif --frame-id 124D_05291_081406 "
        "--primary 2024-01-01 --secondary 2024-01-13 --volcano-id etna\n"
        "  insar-monitor publish ps-update new_epochs.csv --dataset egms-l2b --tile E45N20",
        formatter_class=fmt,
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    q = kinds.add_parser("interferogram", help="a wrapped-phase raster (GeoTIFF / NetCDF)")
    q.add_argument("path", type=Path, help="wrapped phase raster (LiCSAR layout fills the ids)")
    q.add_argument("--frame-id", help="LiCSAR frame id (default: grand-parent directory)")
    q.add_argument("--primary", type=date.fromisoformat, help="primary date YYYY-MM-DD")
    q.add_argument("--secondary", type=date.fromisoformat, help="secondary date YYYY-MM-DD")
    q.add_argument("--product-id", help="default <frame>_<primary>_<secondary>")
    q.add_argument("--coherence", type=Path, help="coherence raster to reference")
    q.add_argument("--region-id")
    q.add_argument("--volcano-id")
    q.add_argument("--inline", action="store_true", help="embed the raster (small files only)")
    _add_kafka(q)
    _add_config(q)
    q = kinds.add_parser("ps-update", help="new epochs of PS points (EGMS CSV or Parquet)")
    q.add_argument("path", type=Path, help="EGMS-layout .csv or .parquet with YYYYMMDD columns")
    q.add_argument("--dataset", required=True, help="dataset id, e.g. egms-l2b-2019-2023")
    q.add_argument("--tile", required=True, help="spatial tile or burst id")
    q.add_argument("--update-id", help="unique id within the tile (default: the file stem)")
    _add_kafka(q)
    _add_config(q)

    p = sub.add_parser(
        "hotspots",
        help="Getis-Ord Gi* hot spots, density surface and deformation areas of a product",
        description="Compute Getis-Ord Gi* (binary weights within --distance metres, star form, "
        "sign-correct for signed LOS velocities) over the points of INPUT, judge significance "
        "with Benjamini-Hochberg FDR, cluster significant points faster than the stability "
        "threshold into active deformation areas (hot and cold apart), and compute the "
        "z-weighted quartic kernel density surface.\n\nINPUT is an EGMS-style CSV (velocity "
        "from mean_velocity, else fitted over the last hotspots.window_days of its date "
        "columns) or a NetCDF velocity grid. Points are projected to the UTM zone of the data "
        "(or hotspots.crs) before distances are taken.\n\nWrites to --out: points.csv "
        "(velocity, z, p, hotspot_class -3..3), areas.geojson, kde.nc, kde.tif, map.png, "
        "summary.json.\n\n--delineate also runs the ADA delineation U-Net (model "
        "ada_delineator, after the hot spot paper) on the density surface in 256x256 tiles: "
        "in-process from models.model_base (--model-dir), or on TF-Serving when models.backend "
        "(--backend) is grpc or rest. What it looks at: with a DEM (--dem, else "
        "delineation.dem_path) the hot spot map + terrain aspect (+ slope with "
        "delineation.use_slope); without one the hot spot map alone. The summary says which "
        "(delineation.used, .inputs, .note). It adds delineated_areas.geojson (ids dada-..., "
        "dashed on map.png) and ada_probability.tif (per-cell probability, GeoTIFF).",
        epilog="config keys (insar-monitor config schema):\n"
        "  hotspots.*               the Gi* method (distance_m, alpha, fdr, ...)\n"
        "  delineation.threshold    U-Net probability from which a cell is in an area (0.5)\n"
        "  delineation.overlap      cells shared by neighbouring 256x256 tiles (32)\n"
        "  delineation.min_area_m2  smaller delineated areas are dropped (20000)\n"
        "  delineation.dem_path     DEM GeoTIFF for terrain aspect (none)\n"
        "  delineation.use_slope    also give the U-Net slope (false)\n"
        "  models.backend, models.model_base, models.grpc_target, models.rest_url\n\n"
        "examples:\n"
        "  insar-monitor hotspots egms_l2b_tile.csv --out build/hotspots\n"
        "  insar-monitor hotspots velocity_grid.nc --distance 300 --no-fdr --out out/\n"
        "  insar-monitor hotspots egms_l2b_tile.csv --delineate --out out/      # map alone\n"
        "  insar-monitor hotspots egms_l2b_tile.csv --delineate --dem dem.tif --out out/\n\n"
        "references:\n"
        "  the hot spot map and its U-Net delineation (hot spot map + aspect) follow\n"
        "    the hot spot paper of docs/hotspots.md\n"
        "  Ronneberger et al. (2015), U-Net, MICCAI 2015, doi:10.1007/978-3-319-24574-4_28",
        formatter_class=fmt,
    )
    p.add_argument("input", type=Path, help="EGMS-style CSV or NetCDF velocity grid")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--distance", type=float, help="distance band, metres (default 150)")
    p.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    p.add_argument("--no-fdr", action="store_true", help="judge raw p-values, not FDR")
    p.add_argument("--stability-threshold", type=float,
                   help="|velocity| in mm/yr below which ground is stable (default 10)")
    p.add_argument(
        "--delineate", action="store_true",
        help="also outline anomalous deformation areas with the U-Net (ada_delineator) on the "
        "hot spot map (+ terrain aspect with a DEM); writes delineated_areas.geojson and "
        "ada_probability.tif",
    )
    p.add_argument(
        "--dem", type=Path, metavar="PATH",
        help="DEM GeoTIFF (metres, any CRS) whose terrain aspect the U-Net uses; overrides "
        "delineation.dem_path (needs --delineate). Without any DEM the U-Net sees the hot "
        "spot map alone",
    )
    _add_model_dir(p)
    _add_config(p)

    p = sub.add_parser(
        "replay",
        help="publish an archive of products in event-time order",
        description="Publish every product under DIR in event-time order: LiCSAR-layout "
        "interferograms (<frame>/<yyyymmdd_yyyymmdd>/*.geo.diff_pha.tif|nc), PS update files "
        "(<dataset>/<tile>/*.csv|parquet) and ready-made *.json messages. Every message is "
        "validated before the first one is sent.",
        epilog="example:\n  insar-monitor replay /data/archive/etna-2024 --bootstrap kafka:9092",
        formatter_class=fmt,
    )
    p.add_argument("directory", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list what would be published")
    _add_kafka(p)
    _add_config(p)

    p = sub.add_parser(
        "demo",
        help="streaming demo: embedded broker, the daemon, a scripted scenario, a summary",
        description="Start an embedded Kafka 0.9 broker and the daemon (in this process), "
        "generate a scenario under OUT/products (an inflating volcano, hard-negative "
        "interferograms, a PS tile whose cluster of points starts to accelerate, a malformed "
        "message and one whose raster is missing) and publish it in event-time order. "
        "Detections and dead letters are printed as they arrive; once every message is "
        "accounted for, daemon and broker stop and the results are compared with the "
        "scenario's truth (also in OUT/summary.json). Exit status 1 if a message was never "
        "processed.\n\nOUT/kafka, OUT/state and OUT/products are cleared on every run.\n\n"
        "--offline runs the earlier demo instead: no broker or daemon, the models score "
        "generated files directly.\n\nThe demo prints every detection and dead letter itself, "
        "so it logs only errors unless --log-level asks for more.",
        epilog="examples:\n  insar-monitor demo\n  insar-monitor demo --out /tmp/demo "
        "--pause 0.5\n  insar-monitor demo --offline",
        formatter_class=fmt,
    )
    p.add_argument("--out", type=Path, default=Path("build/demo"), help="output directory")
    p.add_argument(
        "--seed", type=int,
        help="scenario seed (default: the scenario's own; 5 with --offline)",
    )
    p.add_argument(
        "--pause", type=float, default=1.5, metavar="SECONDS",
        help="pause between published messages (default 1.5)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS",
        help="give up when not every message is processed after this long (default 300)",
    )
    p.add_argument(
        "--offline", action="store_true",
        help="the offline demo: score generated files directly, no broker or daemon",
    )
    _add_config(p)
    # The demo prints every detection and dead letter itself; the daemon's warnings about the
    # same events would only interleave with them.
    p.set_defaults(log_level="ERROR")

    from monitor.cli.alerts_parser import add_alert_parsers

    add_alert_parsers(sub, _add_config)

    p = sub.add_parser("config", help="show the effective configuration or every key")
    p.add_argument("action", choices=["show", "schema"])
    _add_config(p)
    return parser


def _config_from(args: argparse.Namespace) -> MonitorConfig:
    config = load_config(args.config)
    # evaluate and model-card take a version directory, the scoring commands a model base.
    scoring = args.command in ("score-interferogram", "classify-ps")
    if scoring and args.model_dir is not None:
        config.models.model_base = args.model_dir
    if args.command == "hotspots":
        if args.model_dir is not None:
            config.models.model_base = args.model_dir
        if args.dem is not None and not args.delineate:
            raise ConfigError("--dem needs --delineate (the DEM only feeds the U-Net)")
        if args.dem is not None and not args.dem.is_file():
            raise ConfigError(f"--dem {args.dem}: no such file (give a DEM GeoTIFF)")
        h = config.hotspots
        if args.distance is not None:
            h.distance_m = args.distance
        if args.alpha is not None:
            h.alpha = args.alpha
        if args.no_fdr:
            h.fdr = False
        if args.stability_threshold is not None:
            h.stability_threshold_mm_yr = args.stability_threshold
    if getattr(args, "bootstrap", None):
        config.kafka.bootstrap_servers = args.bootstrap
    if getattr(args, "api_version", None):
        config.kafka.api_version = args.api_version
    if getattr(args, "state_dir", None):
        config.storage.state_dir = args.state_dir
    if getattr(args, "backend", None):
        config.models.backend = args.backend
    if getattr(args, "threshold", None) is not None:
        config.unrest.threshold = args.threshold
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from monitor.logs import configure_logging, import_tensorflow_quietly

    configure_logging(args.log_level)
    no_tensorflow = ("config", "generate", "hotspots", "alerts", "api")
    needs_tensorflow = args.command not in no_tensorflow or getattr(args, "delineate", False)
    if needs_tensorflow and args.log_level.upper() != "DEBUG":
        import_tensorflow_quietly()
    try:
        config = _config_from(args)
        from monitor.cli import commands

        return commands.run(args, config)
    except ConfigError as e:
        print(f"insar-monitor: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def print_json(obj: object) -> None:
    print(json.dumps(obj), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
