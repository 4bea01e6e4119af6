"""A scripted monitoring scenario for the streaming demo: products, publishing plan and truth.

``insar-monitor demo`` replays a few weeks of a monitored area through the real daemon.
This module only *generates* that story, deterministically from a seed, as files an
operator would receive plus one JSON file saying what should happen:

1. **An inflating volcano**: consecutive 12-day interferograms of one LiCSAR frame with a
   Mogi source whose volume change per pair grows, so the deformation goes from below the
   labelling threshold (under half a fringe) to several fringes.
2. **Hard negatives**: interferograms of another frame with strong turbulent atmosphere or
   a strong stratified delay over tall cones (concentric fringes) but no deformation.
3. **A PS area**: one EGMS tile whose points are stable or move linearly through an initial
   release, after which a small cluster of neighbouring points starts to accelerate
   (bilinear onset). Later updates add epochs; by the last one the classifier, which sees
   each point's whole stored series, should move the cluster out of its initial class.
4. **Bad input**: one truncated (invalid JSON) message and one message whose raster does
   not exist; both must end in the dead-letter topic while the daemon goes on.

Layout under the products directory (``products/`` in the demo's output)::

    <frame>/<yyyymmdd_yyyymmdd>/<pair>.geo.diff_pha.tif    LiCSAR layout
    <dataset>/<tile>/<update_id>.csv                       EGMS layout, new epochs only
    bad/truncated_message.txt                              bytes published verbatim
    scenario.json                                          plan and truth (TRUTH_FILE)

Paths in ``scenario.json`` are relative to the products directory, so the directory can
be moved. The steps are listed in publishing order (event time: an interferogram's
secondary date, an update's last epoch). Nothing here talks to Kafka or loads a model.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

TRUTH_FILE = "scenario.json"
TRUTH_SCHEMA = "insar_monitor.demo_scenario.v1"

StepKind = Literal["interferogram", "ps_update", "raw"]


@dataclass(frozen=True)
class ScenarioParams:
    """Everything the scenario is made of; the defaults are the demo's story.

    Attributes
    ----------
    seed : int
        Root of every random draw (each part has its own stream, see ``_rng``).
    frame_shape : (rows, cols)
        Interferogram size in ~100 m pixels (LiCSAR frames are much larger; this keeps the
        demo fast while still holding several 224-pixel tiles).
    volcano_frame_id, volcano_id : str
        The inflating volcano's frame (descending track) and its name on the messages.
    volcano_start : date
        Primary date of the first inflation pair.
    pair_days : int
        Temporal baseline of each interferogram (Sentinel-1 12-day revisit).
    inflation_fringes : tuple of float
        Peak |LOS| of the deformation of each consecutive pair, in fringes (27.7 mm each).
        The Mogi volume change of each pair is derived from it, so the volume grows too.
    mogi_depth_m : float
        Depth of the Mogi source below the frame centre.
    volcano_turbulence_mm_log : (low, high)
        Turbulence std range of the volcano's pairs (ordinary weather), mm.
    volcano_decorrelated_fraction : (low, high)
        Area share of decorrelated (noise or NaN) regions where the volcano's pairs have
        any: a mostly coherent, sparsely vegetated volcano, so the fringes stay visible.
    negative_frame_id : str
        Frame of the hard negatives (ascending track, another area).
    negative_start : date
        Primary date of the first hard negative.
    strong_turbulence_mm_log : (low, high)
        Turbulence std of the "strong atmosphere" negative, mm (the training set's
        hard-negative range).
    cone_height_m, cone_stratified_mm_per_km : (low, high)
        Cone heights and stratified-delay coefficient of the "cones" negative.
    missing_raster_pair : (date, date)
        Dates of the message whose raster file does not exist.
    ps_dataset_id, ps_tile_id : str
        The PS tile (one store key).
    n_points, n_accelerating : int
        Points of the tile, and how many of them form the accelerating cluster.
    ps_revisit_days : int
        Epoch spacing (12 days, as after the loss of Sentinel-1B).
    ps_first_epoch : date
        First epoch of the initial release.
    initial_epochs : int
        Epochs of the initial release (the classifier's training series have 60 to 300).
    update_epochs : tuple of int
        Epochs added by each later update; the acceleration starts with the first of them.
    linear_fraction : float
        Share of the background points that move linearly (the rest are stable).
    linear_velocity_mm_yr : (low, high)
        |velocity| of the linear points, mm/yr (either sign).
    stable_velocity_mm_yr : float
        Largest |velocity| of a stable point, mm/yr.
    acceleration_dv_mm_yr : (low, high)
        Velocity change of a cluster point at the onset, mm/yr (subsidence, so applied
        with a negative sign). Drawn per point: the centre of the cluster moves most.
    cluster_radius_deg : float
        Standard deviation of the cluster's point positions around its centre, degrees.
    noise_std_mm : (low, high)
        Per-point noise std, mm (the generator's noise models: white, AR(1), atmospheric).
    seasonal_amp_mm : (low, high)
        Annual sinusoid amplitude where present (60 % of points), mm.
    missing_fraction : float
        Share of (point, epoch) values left empty, as in real PS products.
    """

    seed: int = 20240213
    frame_shape: tuple[int, int] = (520, 610)
    volcano_frame_id: str = "124D_05291_081406"
    volcano_id: str = "demo-volcano"
    volcano_start: date = date(2024, 1, 1)
    pair_days: int = 12
    inflation_fringes: tuple[float, ...] = (0.3, 1.0, 2.5, 5.0)
    mogi_depth_m: float = 3000.0
    volcano_turbulence_mm_log: tuple[float, float] = (1.0, 4.0)
    volcano_decorrelated_fraction: tuple[float, float] = (0.02, 0.15)
    negative_frame_id: str = "044A_05220_131313"
    negative_start: date = date(2024, 1, 7)
    strong_turbulence_mm_log: tuple[float, float] = (6.0, 15.0)
    cone_height_m: tuple[float, float] = (1500.0, 3000.0)
    cone_stratified_mm_per_km: tuple[float, float] = (20.0, 35.0)
    missing_raster_pair: tuple[date, date] = (date(2024, 1, 31), date(2024, 2, 12))
    ps_dataset_id: str = "egms-demo"
    ps_tile_id: str = "E45N20"
    n_points: int = 300
    n_accelerating: int = 40
    ps_revisit_days: int = 12
    ps_first_epoch: date = date(2022, 1, 10)
    initial_epochs: int = 60
    update_epochs: tuple[int, ...] = (15, 15, 15)
    linear_fraction: float = 0.35
    linear_velocity_mm_yr: tuple[float, float] = (4.0, 12.0)
    stable_velocity_mm_yr: float = 0.5
    acceleration_dv_mm_yr: tuple[float, float] = (10.0, 25.0)
    cluster_radius_deg: float = 0.0015
    noise_std_mm: tuple[float, float] = (1.0, 2.5)
    seasonal_amp_mm: tuple[float, float] = (0.5, 3.0)
    missing_fraction: float = 0.02


@dataclass(frozen=True)
class Step:
    """One message the demo publishes, with what the daemon should make of it.

    Attributes
    ----------
    index : int
        Position in the publishing order.
    kind : "interferogram", "ps_update" or "raw"
        How to build the message: from a raster, from a PS update file, or the file's
        bytes as they are (a malformed message).
    topic_kind : "interferogram" or "ps_update"
        Input topic it goes to.
    label : str
        Short name for printouts.
    path : str
        File, relative to the products directory (for a missing raster: where it would be).
    event_time : date
        Secondary date, last epoch, or (raw) the time it is published among the others.
    expect : dict
        ``{"outcome": "detection", ...}`` with ``unrest`` for interferograms, or
        ``{"outcome": "dead_letter", "reason": ...}``.
    meta : dict
        Ids the message carries (frame_id, primary/secondary dates, volcano_id,
        dataset_id, tile_id, update_id, product_id), JSON-ready.
    """

    index: int
    kind: StepKind
    topic_kind: Literal["interferogram", "ps_update"]
    label: str
    path: str
    event_time: date
    expect: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["event_time"] = self.event_time.isoformat()
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Step:
        return cls(**{**obj, "event_time": date.fromisoformat(obj["event_time"])})


@dataclass(frozen=True)
class Scenario:
    """A generated scenario: where it lies, its steps in publishing order, and its truth."""

    root: Path
    steps: tuple[Step, ...]
    truth: dict[str, Any]

    def path_of(self, step: Step) -> Path:
        return self.root / step.path

    @property
    def accelerating_pids(self) -> list[str]:
        return list(self.truth["ps"]["accelerating_pids"])


# --- randomness ----------------------------------------------------------------------------
_STREAMS = {"volcano": 1, "negatives": 2, "ps": 3}


def _rng(seed: int, part: str) -> np.random.Generator:
    # One stream per part: changing the PS recipe never changes the interferograms.
    return np.random.default_rng([seed, _STREAMS[part]])


def _pair_name(primary: date, secondary: date) -> str:
    return f"{primary:%Y%m%d}_{secondary:%Y%m%d}"


def _frame_path(frame_id: str, primary: date, secondary: date) -> str:
    pair = _pair_name(primary, secondary)
    return f"{frame_id}/{pair}/{pair}.geo.diff_pha.tif"


# --- interferograms -----------------------------------------------------------------------
# Descending frames look from the east (heading ~190 deg), ascending from the west.
_DESCENDING = {"incidence_deg": 38.0, "heading_deg": 190.0}
_ASCENDING = {"incidence_deg": 36.0, "heading_deg": -10.0}


def _unit_mogi_peak_fringes(params: ScenarioParams, shape: tuple[int, int]) -> float:
    """Peak |LOS| in fringes of a 1 m^3 Mogi source under the volcano (LOS is linear in dV)."""
    from serving.synthetic.deformation import MogiSource, source_los
    from serving.synthetic.interferogram import DEFAULT_PARAMS, grid_en

    east, north = grid_en(shape, DEFAULT_PARAMS.pixel_m)
    centre = _volcano_centre(shape)
    los = source_los(east, north, MogiSource(*centre, params.mogi_depth_m, 1.0), **_DESCENDING)
    return float(np.abs(los).max() / DEFAULT_PARAMS.fringe_m)


def _volcano_centre(shape: tuple[int, int]) -> tuple[float, float]:
    from serving.synthetic.interferogram import DEFAULT_PARAMS

    # Near, not at, the frame centre: frames are cut along the track, not around volcanoes.
    return 0.55 * shape[1] * DEFAULT_PARAMS.pixel_m, -0.45 * shape[0] * DEFAULT_PARAMS.pixel_m


def _write_volcano(root: Path, params: ScenarioParams) -> tuple[list[Step], list[dict]]:
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.deformation import MogiSource
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    rng = _rng(params.seed, "volcano")
    shape = params.frame_shape
    gen = replace(
        DEFAULT_PARAMS, cone_probability=0.0, turbulence_mm_log=params.volcano_turbulence_mm_log,
        decorrelated_fraction=params.volcano_decorrelated_fraction,
    )
    per_m3 = _unit_mogi_peak_fringes(params, shape)
    east, north = _volcano_centre(shape)
    steps: list[Step] = []
    truth: list[dict] = []
    for i, fringes in enumerate(params.inflation_fringes):
        primary = params.volcano_start + timedelta(days=params.pair_days * i)
        secondary = primary + timedelta(days=params.pair_days)
        volume = fringes / per_m3
        source = MogiSource(east, north, params.mogi_depth_m, volume)
        frame = generate_frame(rng, shape, [source], gen, **_DESCENDING)
        rel = _frame_path(params.volcano_frame_id, primary, secondary)
        write_wrapped_phase_geotiff(root / rel, frame.phase, frame.transform)
        peak = float(frame.deformation_fringes.max())
        # The training label rule: deformation of at least half a fringe is unrest.
        unrest = peak >= DEFAULT_PARAMS.label_min_fringes
        product_id = f"{params.volcano_frame_id}_{_pair_name(primary, secondary)}"
        steps.append(Step(
            index=-1, kind="interferogram", topic_kind="interferogram",
            label=f"volcano pair {i + 1}/{len(params.inflation_fringes)}", path=rel,
            event_time=secondary,
            expect={"outcome": "detection", "unrest": unrest},
            meta={"frame_id": params.volcano_frame_id, "product_id": product_id,
                  "primary_date": primary.isoformat(), "secondary_date": secondary.isoformat(),
                  "volcano_id": params.volcano_id},
        ))
        truth.append({
            "product_id": product_id, "path": rel, "scenario": "mogi inflation",
            "unrest": unrest, "peak_fringes": round(peak, 3),
            "mogi_volume_change_m3": round(volume, 1), "mogi_depth_m": params.mogi_depth_m,
            "source_pixel": [round(-north / DEFAULT_PARAMS.pixel_m, 1),
                             round(east / DEFAULT_PARAMS.pixel_m, 1)],
        })
    return steps, truth


def _write_negatives(root: Path, params: ScenarioParams) -> tuple[list[Step], list[dict]]:
    from pipelines.raster_io import write_wrapped_phase_geotiff
    from serving.synthetic.interferogram import DEFAULT_PARAMS, generate_frame

    rng = _rng(params.seed, "negatives")
    recipes = [
        ("strong atmosphere", "strong turbulent atmosphere", replace(
            DEFAULT_PARAMS, cone_probability=0.0,
            turbulence_mm_log=params.strong_turbulence_mm_log,
        )),
        ("delay over cones", "stratified delay over tall cones", replace(
            DEFAULT_PARAMS, cone_probability=1.0, cone_height_m=params.cone_height_m,
            stratified_mm_per_km=params.cone_stratified_mm_per_km,
        )),
    ]
    steps: list[Step] = []
    truth: list[dict] = []
    for i, (short, name, gen) in enumerate(recipes):
        primary = params.negative_start + timedelta(days=params.pair_days * i)
        secondary = primary + timedelta(days=params.pair_days)
        frame = generate_frame(rng, params.frame_shape, [], gen, **_ASCENDING)
        rel = _frame_path(params.negative_frame_id, primary, secondary)
        write_wrapped_phase_geotiff(root / rel, frame.phase, frame.transform)
        product_id = f"{params.negative_frame_id}_{_pair_name(primary, secondary)}"
        steps.append(Step(
            index=-1, kind="interferogram", topic_kind="interferogram",
            label=f"hard negative: {short}", path=rel, event_time=secondary,
            expect={"outcome": "detection", "unrest": False},
            meta={"frame_id": params.negative_frame_id, "product_id": product_id,
                  "primary_date": primary.isoformat(), "secondary_date": secondary.isoformat()},
        ))
        truth.append({"product_id": product_id, "path": rel, "scenario": name,
                      "unrest": False, "peak_fringes": 0.0})
    return steps, truth


# --- PS area ------------------------------------------------------------------------------
def ps_epochs(params: ScenarioParams) -> list[date]:
    """Every epoch of the PS tile, initial release and updates together."""
    n = params.initial_epochs + sum(params.update_epochs)
    return [params.ps_first_epoch + timedelta(days=params.ps_revisit_days * k) for k in range(n)]


def _ps_series(params: ScenarioParams) -> dict[str, Any]:
    """Positions, behaviour and full displacement series (mm) of every point of the tile."""
    from serving.synthetic.ps_series import DAYS_PER_YEAR, PSSeriesParams, sample_noise

    rng = _rng(params.seed, "ps")
    dates = ps_epochs(params)
    t_days = np.array([(d - dates[0]).days for d in dates], dtype=np.float64)
    years = t_days / DAYS_PER_YEAR
    onset_index = params.initial_epochs
    onset_years = years[onset_index]
    n, k = params.n_points, params.n_accelerating

    # The tile: ~5 x 5 km; the cluster sits well inside it.
    lon0, lat0 = 14.12, 40.83
    lon = lon0 + rng.uniform(0.0, 0.06, n)
    lat = lat0 + rng.uniform(0.0, 0.045, n)
    centre = (lon0 + 0.03, lat0 + 0.02)
    accelerating = np.zeros(n, dtype=bool)
    accelerating[rng.choice(n, size=k, replace=False)] = True
    lon[accelerating] = centre[0] + params.cluster_radius_deg * rng.standard_normal(k)
    lat[accelerating] = centre[1] + params.cluster_radius_deg * rng.standard_normal(k)

    behaviour = np.where(rng.random(n) < params.linear_fraction, "linear", "stable").astype(object)
    behaviour[accelerating] = "accelerating"
    velocity = rng.uniform(-params.stable_velocity_mm_yr, params.stable_velocity_mm_yr, n)
    linear = behaviour == "linear"
    velocity[linear] = rng.choice([-1.0, 1.0], linear.sum()) * rng.uniform(
        *params.linear_velocity_mm_yr, linear.sum()
    )
    # The cluster moves most at its centre: the velocity change falls off with distance.
    dist = np.hypot(lon - centre[0], lat - centre[1]) / params.cluster_radius_deg
    lo, hi = params.acceleration_dv_mm_yr
    dv = np.zeros(n)
    dv[accelerating] = -(lo + (hi - lo) * np.exp(-0.5 * dist[accelerating] ** 2))

    noise_params = PSSeriesParams()
    disp = np.empty((n, len(dates)))
    sigma = rng.uniform(*params.noise_std_mm, n)
    for i in range(n):
        trend = velocity[i] * years + dv[i] * np.maximum(years - onset_years, 0.0)
        noise = sample_noise(len(dates), float(sigma[i]), t_days, rng, noise_params)
        seasonal = 0.0
        if rng.random() < noise_params.p_seasonal:
            amp = rng.uniform(*params.seasonal_amp_mm)
            seasonal = amp * np.sin(2 * np.pi * t_days / DAYS_PER_YEAR + rng.uniform(0, 2 * np.pi))
        disp[i] = trend + noise + seasonal
    disp -= disp[:, :1]  # EGMS series start at zero
    disp[rng.random(disp.shape) < params.missing_fraction] = np.nan
    disp[:, 0] = 0.0
    return {
        "dates": dates, "pid": np.array([f"DEMO{i:05d}" for i in range(n)]),
        "lon": lon, "lat": lat, "behaviour": behaviour, "velocity": velocity, "dv": dv,
        "sigma": sigma, "displacement_mm": disp, "onset": dates[onset_index],
        "centre": centre,
    }


def _write_ps(root: Path, params: ScenarioParams) -> tuple[list[Step], dict]:
    from pipelines.egms_csv import write_egms_csv

    ps = _ps_series(params)
    dates = ps["dates"]
    bounds = np.cumsum([0, params.initial_epochs, *params.update_epochs])
    steps: list[Step] = []
    updates = []
    for u, (a, b) in enumerate(itertools.pairwise(bounds)):
        update_dates = dates[a:b]
        update_id = f"u{u}_{update_dates[0]:%Y%m%d}_{update_dates[-1]:%Y%m%d}"
        rel = f"{params.ps_dataset_id}/{params.ps_tile_id}/{update_id}.csv"
        write_egms_csv(
            root / rel, ps["pid"], ps["lon"], ps["lat"], update_dates,
            ps["displacement_mm"][:, a:b],
        )
        label = "PS initial release" if u == 0 else f"PS update {u}/{len(params.update_epochs)}"
        steps.append(Step(
            index=-1, kind="ps_update", topic_kind="ps_update",
            label=f"{label} (+{b - a} epochs)", path=rel, event_time=update_dates[-1],
            expect={"outcome": "detection"},
            meta={"dataset_id": params.ps_dataset_id, "tile_id": params.ps_tile_id,
                  "update_id": update_id},
        ))
        updates.append({"update_id": update_id, "path": rel, "n_epochs": int(b - a),
                        "first_epoch": update_dates[0].isoformat(),
                        "last_epoch": update_dates[-1].isoformat(),
                        "epochs_after_onset": int(max(0, b - params.initial_epochs))})
    behaviour = ps["behaviour"]
    accelerating = behaviour == "accelerating"
    truth = {
        "dataset_id": params.ps_dataset_id,
        "tile_id": params.ps_tile_id,
        "n_points": int(params.n_points),
        "updates": updates,
        "onset": ps["onset"].isoformat(),
        "cluster_centre": [round(c, 5) for c in ps["centre"]],
        "behaviour_counts": {b: int((behaviour == b).sum())
                             for b in ("stable", "linear", "accelerating")},
        # Before the onset every point is stable or linear; the cluster is then bilinear.
        "class_before_onset": {pid: ("linear" if b == "linear" else "stable")
                               for pid, b in zip(ps["pid"], behaviour, strict=True)},
        "class_after_onset": {pid: ("bilinear" if b == "accelerating" else str(b))
                              for pid, b in zip(ps["pid"], behaviour, strict=True)},
        "accelerating_pids": [str(p) for p in ps["pid"][accelerating]],
        "velocity_change_mm_yr": {str(p): round(float(v), 2)
                                  for p, v in zip(ps["pid"][accelerating],
                                                  ps["dv"][accelerating], strict=True)},
    }
    return steps, truth


# --- bad input ----------------------------------------------------------------------------
TRUNCATED_MESSAGE = (
    b'{"schema": "interferogram.v1", "product_id": "124D_05291_081406_20240206_2024'
)
"""A producer that died mid-write: not JSON at all (dead-lettered as ``not_json``)."""


def _bad_steps(root: Path, params: ScenarioParams) -> list[Step]:
    rel = "bad/truncated_message.txt"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(TRUNCATED_MESSAGE)
    primary, secondary = params.missing_raster_pair
    missing = _frame_path(params.negative_frame_id, primary, secondary)
    return [
        Step(
            index=-1, kind="raw", topic_kind="interferogram", label="malformed message",
            path=rel,
            # Published between the volcano's second and third pair.
            event_time=params.volcano_start + timedelta(days=2 * params.pair_days + 1),
            expect={"outcome": "dead_letter", "reason": "not_json"},
            meta={"key": params.volcano_frame_id},
        ),
        Step(
            index=-1, kind="interferogram", topic_kind="interferogram",
            label="interferogram whose raster is missing", path=missing,
            event_time=secondary,
            expect={"outcome": "dead_letter", "reason": "not_found"},
            meta={"frame_id": params.negative_frame_id,
                  "product_id": f"{params.negative_frame_id}_{_pair_name(primary, secondary)}",
                  "primary_date": primary.isoformat(), "secondary_date": secondary.isoformat(),
                  "missing": True},
        ),
    ]


# --- the whole scenario ---------------------------------------------------------------------
def generate_scenario(root: Path | str, params: ScenarioParams | None = None) -> Scenario:
    """Write every product of the scenario under ``root`` and its ``scenario.json``.

    Deterministic: the same ``params`` (seed included) write the same files.

    Returns
    -------
    Scenario
        Steps in publishing (event-time) order, and the truth.
    """
    params = params or ScenarioParams()
    if not 0 < params.n_accelerating < params.n_points:
        raise ValueError("n_accelerating must be between 1 and n_points - 1")
    if not params.update_epochs:
        raise ValueError("the PS area needs at least one update after the initial release")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    volcano_steps, volcano_truth = _write_volcano(root, params)
    negative_steps, negative_truth = _write_negatives(root, params)
    ps_steps, ps_truth = _write_ps(root, params)
    steps = volcano_steps + negative_steps + ps_steps + _bad_steps(root, params)
    # Stable sort: equal event times keep the order above.
    ordered = [replace(s, index=i) for i, s in enumerate(sorted(steps, key=lambda s: s.event_time))]
    truth = {
        "schema": TRUTH_SCHEMA,
        "seed": params.seed,
        "params": _params_json(params),
        "steps": [s.to_json() for s in ordered],
        "interferograms": volcano_truth + negative_truth,
        "ps": ps_truth,
    }
    (root / TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")
    return Scenario(root, tuple(ordered), truth)


def load_scenario(root: Path | str) -> Scenario:
    """Read a scenario written by :func:`generate_scenario`."""
    root = Path(root)
    truth = json.loads((root / TRUTH_FILE).read_text())
    if truth.get("schema") != TRUTH_SCHEMA:
        raise ValueError(f"{root / TRUTH_FILE}: not a {TRUTH_SCHEMA} file")
    return Scenario(root, tuple(Step.from_json(s) for s in truth["steps"]), truth)


def _params_json(params: ScenarioParams) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in asdict(params).items()}
