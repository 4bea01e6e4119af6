"""Write the model card that sits beside each committed SavedModel.

A card says what the model is for, the exact serving signature, the synthetic data
recipe and the command that reproduces it, the headline metrics (read from the
evaluation report, never typed in by hand), the known limitations and the sha256 of
the exported directory, so anyone can check that the committed bytes are the ones
that were evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.export import directory_sha256
from serving.signatures import SIGNATURE_NAME, SIGNATURES


@dataclass(frozen=True)
class CardText:
    """The prose of a card; metrics and checksums are filled in from files."""

    title: str
    purpose: str
    architecture: str
    data_recipe: str
    train_command: str
    evaluate_command: str
    limitations: tuple[str, ...]


def _metric_lines(model_name: str, report: dict[str, Any]) -> list[str]:
    if model_name == "ps_trend_classifier":
        served = report["test"]["served"]
        lines = [
            f"- Overall accuracy: {served['overall_accuracy']:.2%} on {report['n_test']} "
            f"held-out synthetic series (seed {report['seed']})",
            "- Per-class F1: " + ", ".join(
                f"{name} {scores['f1']:.3f}" for name, scores in served["per_class"].items()
            ),
            f"- PUE recall: {served['per_class']['pue']['recall']:.3f}",
            f"- PS-Time statistical baseline on the same set: "
            f"{report['test']['ps_time']['overall_accuracy']:.2%}",
        ]
        if "ood" in report:
            lines.append(
                f"- Shifted-generator (out-of-distribution) check: "
                f"{report['ood']['served']['overall_accuracy']:.2%}"
            )
        return lines
    test = report.get("test", report)
    binary = test.get("served", test) if isinstance(test, dict) else test
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "tp", "fp", "fn", "tn")
    return [f"- {k}: {binary[k]:.4f}" if isinstance(binary[k], float) else f"- {k}: {binary[k]}"
            for k in keys if k in binary]


def write_model_card(
    model_name: str, version_dir: Path, report_json: Path, text: CardText, out: Path
) -> Path:
    """Render ``MODEL_CARD.md`` for the SavedModel at ``version_dir``.

    Parameters
    ----------
    model_name : str
        A key of ``serving.signatures.SIGNATURES``.
    version_dir : Path
        ``serving/models/<name>/<version>``; its sha256 goes into the card.
    report_json : Path
        The evaluation report the metrics are read from.
    text : CardText
        Purpose, architecture, data recipe, commands and limitations.
    out : Path
        Where to write the card.
    """
    signature = SIGNATURES[model_name]
    report = json.loads(Path(report_json).read_text())
    rows = [f"| input `{t.name}` | {t.dtype} | {list(t.shape)} |" for t in signature.inputs]
    rows += [f"| output `{t.name}` | {t.dtype} | {list(t.shape)} |" for t in signature.outputs]
    size = sum(p.stat().st_size for p in Path(version_dir).rglob("*") if p.is_file())
    body = [
        f"# Model card: {text.title}",
        "",
        f"- Served name: `{model_name}`, version `{Path(version_dir).name}`, "
        f"signature `{SIGNATURE_NAME}`",
        f"- SavedModel sha256 (files in path order, see `serving.export.directory_sha256`): "
        f"`{directory_sha256(version_dir)}`",
        f"- Size: {size / 1e6:.2f} MB",
        "",
        "## Purpose",
        text.purpose,
        "",
        "## Signature",
        "| tensor | dtype | shape |",
        "| --- | --- | --- |",
        *rows,
        "",
        "## Architecture",
        text.architecture,
        "",
        "## Training data",
        text.data_recipe,
        "",
        "Reproduce:",
        "```sh",
        text.train_command,
        text.evaluate_command,
        "```",
        "",
        f"## Metrics (from `{Path(report_json).as_posix()}`)",
        *_metric_lines(model_name, report),
        "",
        "## Limitations",
        *[f"- {line}" for line in text.limitations],
        "",
    ]
    out = Path(out)
    out.write_text("\n".join(body))
    return out


TREND_CARD = CardText(
    title="PS time-series trend classifier",
    purpose=(
        "Classifies one Persistent Scatterer displacement series (line of sight, mm, "
        "irregular Sentinel-1 epochs) into stable, linear, quadratic, bilinear or "
        "phase-unwrapping error (pue), the five trends of Berti et al. (2013) used by "
        "Mirmazloumi et al. (2022). A change of class of a point is a detection for the "
        "monitor's alert rules."
    ),
    architecture=(
        "Pre-processing inside the signature (`serving/models/trend.py`): each NaN-padded "
        "series is resampled onto 128 equally spaced times over its own span, turned into "
        "five grid channels (scaled displacement, first differences in units of 27.7 mm, "
        "span, linear and quadratic residuals) and ten PS-Time-style statistics "
        "(log residual-to-noise ratios of constant/linear/quadratic/bilinear fits with an "
        "annual term, noise, span, length, jump statistics). Model: a dilated residual 1D "
        "CNN with max+average pooling joined with a small dense branch on the statistics, "
        "softmax over 5 (~67k parameters). The paper's CNN (Conv1D 138/k5 + max-pool, "
        "Conv1D 64/k5 + max-pool, average pooling, dropout 0.4, dense LeakyReLU, softmax) "
        "is trained on the same data as a baseline and not served."
    ),
    data_recipe=(
        "Only data the repository generates: `serving/synthetic/ps_series.py` "
        "(every range in [docs/synthetic-data.md](../../../docs/synthetic-data.md)). "
        "20,000 training and 4,000 validation series, balanced classes, seed 0 "
        "(streams [0, 1] and [0, 2]); 60-300 epochs at 6/12-day revisits with random "
        "drops and winter gaps, white + AR(1) + atmospheric noise of 1-6 mm with outliers, "
        "seasonal terms, velocities up to 80 mm/yr, unwrapping jumps of +-27.7/55.4 mm."
    ),
    train_command="insar-monitor train trend --version 1 --out serving/models",
    evaluate_command=(
        "insar-monitor train trend --architecture paper --out build/paper_cnn\n"
        "insar-monitor evaluate trend --baseline-model-dir build/paper_cnn/ps_trend_classifier/1"
    ),
    limitations=(
        "Trained and evaluated on synthetic series only; not yet checked against real EGMS "
        "or PSI series with expert labels.",
        "On the shifted-generator check (noisier, with more outliers) PUE precision falls "
        "to about 0.72: isolated large outliers are taken for unwrapping jumps.",
        "Series shorter than 10 epochs are refused upstream; very short spans (< 1 year) "
        "make quadratic and bilinear hard to tell apart for any method.",
    ),
)
