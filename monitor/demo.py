"""The offline demo behind ``make demo``: generate products, score them, compare with the truth.

Until the streaming daemon exists this is the main job on embedded defaults: it writes
LiCSAR-like interferograms and an EGMS-like CSV under ``out``, scores them with the
committed models through the configured inference client, and prints a readable summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from monitor.config import MonitorConfig
from monitor.scoring import classify_ps_file, make_model_client, score_interferograms
from serving.signatures import TREND_MODEL_NAME, UNREST_MODEL_NAME


def run_offline_demo(out: Path, config: MonitorConfig, *, seed: int = 5) -> int:
    """Run the demo; returns a process exit status (0 when every product was processed)."""
    from tqdm import tqdm

    from serving.synthetic.products import write_demo_interferograms, write_demo_ps_csv

    out = Path(out)
    print(f"insar-monitor demo: writing synthetic products under {out}/")
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
