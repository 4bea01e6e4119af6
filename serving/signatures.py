"""The contract between the models, their exporters and every inference client.

One place names the served models, their ``serving_default`` inputs and outputs,
tensor shapes and the class order. Exporters build signatures from it, clients
check TF-Serving's model metadata against it at start-up, and the pipeline reads
outputs by these names. Changing anything here is a breaking change of the
served API: bump the model version and say so in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

SIGNATURE_NAME = "serving_default"


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype (TensorFlow dtype name) and shape (None = any size) of one tensor."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class ModelSignature:
    """What a served model takes and returns under ``serving_default``."""

    model_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


# --- Volcanic unrest detector on interferogram patches -------------------------------------
PATCH_SIZE = 224
UNREST_MODEL_NAME = "unrest_detector"
UNREST_SIGNATURE = ModelSignature(
    model_name=UNREST_MODEL_NAME,
    inputs=(
        # Wrapped interferometric phase in radians, one 224x224 patch per row.
        # NaN marks no data (decorrelated / outside the frame); the signature masks it.
        TensorSpec("phase", "float32", (None, PATCH_SIZE, PATCH_SIZE)),
    ),
    outputs=(
        # Probability that the patch shows volcanic deformation (unrest), in [0, 1].
        TensorSpec("probability", "float32", (None,)),
    ),
)

# --- PS time-series trend classifier ---------------------------------------------------------
TREND_MODEL_NAME = "ps_trend_classifier"
TREND_CLASSES: tuple[str, ...] = ("stable", "linear", "quadratic", "bilinear", "pue")
TREND_SIGNATURE = ModelSignature(
    model_name=TREND_MODEL_NAME,
    inputs=(
        # Raw displacement series in mm, one point per row, right-padded with NaN.
        TensorSpec("displacement_mm", "float32", (None, None)),
        # Acquisition times of each sample in days since any fixed origin (increasing
        # along a row), right-padded with NaN exactly where displacement_mm is.
        TensorSpec("time_days", "float32", (None, None)),
    ),
    outputs=(
        # Softmax over TREND_CLASSES, in that order.
        TensorSpec("probabilities", "float32", (None, len(TREND_CLASSES))),
        # argmax of probabilities (index into TREND_CLASSES).
        TensorSpec("class_id", "int64", (None,)),
    ),
)

# --- U-Net delineation of anomalous deformation areas on hot spot maps -------------------
DELINEATION_TILE = 256
# Cell size of the hot spot grids the served model was trained on (hotspots.kde_cell_m's
# default): shapes and kernel widths are learnt in cells, so other sizes are out of range.
DELINEATION_CELL_M = 50.0
DELINEATION_MODEL_NAME = "ada_delineator"
DELINEATION_SIGNATURE = ModelSignature(
    model_name=DELINEATION_MODEL_NAME,
    inputs=(
        # The z-weighted kernel density of Gi* z-scores (pipelines/hotspots/kde.py), 1/km2,
        # one 256x256 tile per row on the hot spot grid (north up). NaN = outside the data.
        TensorSpec("hotspot_density", "float32", (None, DELINEATION_TILE, DELINEATION_TILE)),
        # Terrain aspect on the same grid: degrees clockwise from north of the downslope
        # direction, [0, 360). NaN where unknown (flat ground, no DEM configured).
        TensorSpec("aspect_deg", "float32", (None, DELINEATION_TILE, DELINEATION_TILE)),
        # Terrain slope on the same grid, degrees [0, 90]. NaN where unknown or not used.
        TensorSpec("slope_deg", "float32", (None, DELINEATION_TILE, DELINEATION_TILE)),
    ),
    outputs=(
        # Per-cell probability of belonging to an anomalous deformation area, in [0, 1].
        TensorSpec("probability", "float32", (None, DELINEATION_TILE, DELINEATION_TILE)),
    ),
)

SIGNATURES: dict[str, ModelSignature] = {
    UNREST_MODEL_NAME: UNREST_SIGNATURE,
    TREND_MODEL_NAME: TREND_SIGNATURE,
    DELINEATION_MODEL_NAME: DELINEATION_SIGNATURE,
}
