"""Series per second of the trend classification methods on the same generated series.

Compares, on one synthetic set (default 2,000 series, 60-300 epochs, NaN-padded):

* ``served``: the committed ``ps_trend_classifier`` SavedModel (pre-processing in the graph),
  called in-process in batches;
* ``paper_cnn``: the paper's 1D CNN baseline, if exported (``--paper-cnn DIR``);
* ``ps_time``: the statistical PS-Time baseline (least-squares fits per series in numpy).

Prints a markdown table (series/s and accuracy on this set) to stdout.

Example::

    .venv/bin/python bench/bench_trend_methods.py --n 2000 \\
        --paper-cnn build/paper_cnn/ps_trend_classifier/1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeats: int) -> tuple[float, np.ndarray]:
    best = float("inf")
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="series in the set")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--batch", type=int, default=1024, help="rows per model call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument(
        "--model-dir", type=Path,
        default=ROOT / "serving" / "models" / "ps_trend_classifier" / "1",
    )
    parser.add_argument("--paper-cnn", type=Path, help="exported paper-CNN version dir")
    args = parser.parse_args(argv)

    from monitor.logs import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from serving.baselines.ps_time import classify_batch
    from serving.synthetic.ps_series import generate_ps_dataset

    data = generate_ps_dataset(args.n, np.random.default_rng(args.seed))
    disp, days = data.padded()

    def saved_model(path: Path):
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]

        def run() -> np.ndarray:
            out = []
            for i in range(0, len(disp), args.batch):
                res = fn(displacement_mm=tf.constant(disp[i:i + args.batch]),
                         time_days=tf.constant(days[i:i + args.batch]))
                out.append(res["class_id"].numpy())
            return np.concatenate(out)

        run()  # trace and warm up outside the timing
        return run

    methods = {"served": saved_model(args.model_dir)}
    if args.paper_cnn:
        methods["paper_cnn"] = saved_model(args.paper_cnn)
    methods["ps_time"] = lambda: np.asarray(classify_batch(disp, days))

    print(f"{args.n} series, median length {int(np.median(np.isfinite(disp).sum(1)))} epochs, "
          f"batch {args.batch}, best of {args.repeats}\n")
    print("| method | seconds | series/s | accuracy on this set |")
    print("|---|---:|---:|---:|")
    for name, run in methods.items():
        seconds, predicted = _time(run, args.repeats if name != "ps_time" else 1)
        accuracy = float(np.mean(predicted == data.labels))
        print(f"| {name} | {seconds:.2f} | {args.n / seconds:,.0f} | {accuracy:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
