"""Write synthetic products as operators receive them: LiCSAR-like GeoTIFFs, EGMS-like CSVs.

Used by ``insar-monitor generate`` and the demo. Interferograms follow LiCSAR's layout
``<frame>/<primary_secondary>/<primary_secondary>.geo.diff_pha.tif`` (EPSG:4326,
~0.001 degree pixels, float32 wrapped radians, NaN nodata). The PS file follows EGMS:
``pid, mp_type, latitude, longitude, mean_velocity`` then one ``YYYYMMDD`` column per
epoch in mm; its true classes go to a ``.truth.csv`` beside it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.egms_csv import write_egms_csv
from pipelines.raster_io import write_wrapped_phase_geotiff
from serving.signatures import TREND_CLASSES

FRAME_ID = "124D_05291_081406"  # a LiCSAR-style frame id (track, burst, ...)
FRAME_SHAPE = (520, 610)


def _scenarios(shape: tuple[int, int], pixel_m: float) -> list[tuple[str, bool, list[Any], dict]]:
    """(kind, unrest, sources, frame options) for the demo frames, centred in the frame."""
    from serving.synthetic.deformation import MogiSource, OkadaSource

    east = shape[1] / 2 * pixel_m
    north = -shape[0] / 2 * pixel_m
    return [
        ("mogi inflation", True,
         [MogiSource(east, north, depth=3500.0, volume_change=6e6)], {}),
        ("okada dyke opening", True,
         [OkadaSource(east - 4000, north + 3000, depth=2500.0, strike=30.0, dip=85.0,
                      length=6000.0, width=3000.0, opening=0.6)], {}),
        ("weak mogi (~1.5 fringes)", True,
         [MogiSource(east + 6000, north - 5000, depth=2500.0, volume_change=1.2e6)], {}),
        ("atmosphere only", False, [], {"nuisance_scale": 1.5}),
        ("stratified delay over cones", False, [], {"cones": True}),
        ("quiet", False, [], {"nuisance_scale": 0.5}),
    ]


def write_demo_interferograms(
    out: Path, *, count: int = 6, seed: int = 11
) -> list[tuple[Path, dict[str, Any]]]:
    """Write ``count`` frames cycling through the demo scenarios; return (path, truth) pairs."""
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    rng = np.random.default_rng(seed)
    scenarios = _scenarios(FRAME_SHAPE, DEFAULT_PARAMS.pixel_m)
    written = []
    first = date(2024, 1, 1)
    for i in range(count):
        kind, unrest, sources, options = scenarios[i % len(scenarios)]
        params = replace(DEFAULT_PARAMS, cone_probability=1.0 if options.get("cones") else 0.0)
        frame = generate_frame(
            rng, FRAME_SHAPE, sources, params,
            nuisance_scale=options.get("nuisance_scale", 1.0),
        )
        primary = first + timedelta(days=12 * i)
        pair = f"{primary:%Y%m%d}_{primary + timedelta(days=12):%Y%m%d}"
        path = Path(out) / FRAME_ID / pair / f"{pair}.geo.diff_pha.tif"
        write_wrapped_phase_geotiff(path, frame.phase, frame.transform)
        written.append((path, {"kind": kind, "unrest": unrest,
                               "max_deformation_fringes": float(frame.deformation_fringes.max())}))
    return written


def write_demo_ps_csv(path: Path, *, per_class: int = 40, seed: int = 11) -> Path:
    """Write an EGMS-like CSV with ``per_class`` points of each trend class on shared epochs.

    The true labels go to ``<path stem>.truth.csv`` (columns ``pid, true_label``).
    """
    from serving.synthetic.ps_series import PSSeriesParams, generate_ps_series, sample_epochs

    rng = np.random.default_rng(seed)
    params = PSSeriesParams()
    # Every point of an EGMS file shares the acquisitions; a multi-year stack (as EGMS
    # releases are) leaves room for every class within the generator's velocity caps.
    epochs_days = sample_epochs(rng, replace(params, n_epochs=(200, 240)))
    start = date(2019, 1, 2)
    dates = [start + timedelta(days=round(float(d - epochs_days[0]))) for d in epochs_days]
    labels = np.repeat(np.arange(len(TREND_CLASSES)), per_class)
    rng.shuffle(labels)
    disp = np.stack([
        generate_ps_series(int(c), rng, params, time_days=epochs_days)[1] for c in labels
    ])
    pids = np.array([f"SYN{i:06d}" for i in range(len(labels))])
    lon = 14.0 + rng.uniform(0, 0.1, len(labels))
    lat = 41.0 + rng.uniform(0, 0.1, len(labels))
    path = write_egms_csv(path, pids, lon, lat, dates, disp)
    pd.DataFrame({"pid": pids, "true_label": [TREND_CLASSES[c] for c in labels]}).to_csv(
        path.with_suffix(".truth.csv"), index=False
    )
    return path
