"""Classification metrics and the plots the papers print, computed the same way for every model.

Multi-class (trend): confusion matrix (rows = true, columns = predicted, as in the
PS-trend paper's Figure 3), per-class precision / recall / F1 / support and overall
accuracy. Binary (unrest): TP / FP / FN / TN, accuracy, precision, recall, F1 and
ROC AUC, the columns of the volcano paper's tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Confusion matrix and per-class scores of a multi-class prediction.

    Parameters
    ----------
    y_true, y_pred : ndarray of int, shape (n,)
        True and predicted class indices into ``class_names``.
    class_names : sequence of str
        Names in index order.

    Returns
    -------
    dict
        ``confusion_matrix`` (list of lists, rows true, columns predicted),
        ``per_class`` {name: {precision, recall, f1, support}}, ``overall_accuracy``,
        ``macro_f1`` and ``n``.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    k = len(class_names)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(class_names):
        tp = cm[i, i]
        predicted = cm[:, i].sum()
        actual = cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual),
        }
    n = int(cm.sum())
    return {
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "overall_accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "n": n,
    }


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) identity, ties averaged."""
    from scipy.stats import rankdata

    y_true = np.asarray(y_true, dtype=bool)
    n_pos = int(y_true.sum())
    n_neg = int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative samples")
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_report(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Counts and scores of a binary detector at ``threshold`` (score >= threshold is positive).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``tn``, ``accuracy``, ``precision``, ``recall``, ``f1``,
        ``roc_auc``, ``threshold`` and ``n``.
    """
    y_true = np.asarray(y_true, dtype=bool)
    pred = np.asarray(scores, dtype=float) >= threshold
    tp = int(np.sum(pred & y_true))
    fp = int(np.sum(pred & ~y_true))
    fn = int(np.sum(~pred & y_true))
    tn = int(np.sum(~pred & ~y_true))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = tp + fp + fn + tn
    return {
        "threshold": float(threshold),
        "n": n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y_true, scores),
    }


def plot_confusion_matrix(
    cm: np.ndarray | list[list[int]], class_names: Sequence[str], path: Path, title: str
) -> Path:
    """Draw a confusion matrix (counts and row-normalised shading) to a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    row_sums = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row_sums, out=np.zeros_like(cm, dtype=float), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2, 1.1 * len(class_names) + 1.5))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.1%}", ha="center", va="center",
                    color="white" if frac[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write a report as indented, key-sorted JSON (diff-friendly in git)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path
