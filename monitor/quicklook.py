"""Quick-look PNGs of scored interferograms: wrapped phase with the tiles that fired.

A duty officer would rather look than read JSON: the picture shows the wrapped phase
(cyclic colour map, NaN blank), the tile grid, the tiles at or above the threshold
outlined in red with their probability, and the frame decision in the title.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def plot_frame_score(
    phase: np.ndarray, result: dict[str, Any], path: Path, *, title: str | None = None
) -> Path:
    """Write a quick-look PNG of one scored frame.

    Parameters
    ----------
    phase : ndarray, shape (rows, cols)
        Wrapped phase, radians, NaN = no data.
    result : dict
        The frame result as printed by ``score-interferogram`` (``unrest_probability``,
        ``unrest``, ``n_tiles``, ``tiles`` with ``row0``, ``col0``, ``probability``).
    path : Path
        Output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from serving.signatures import PATCH_SIZE

    rows, cols = phase.shape
    fig, ax = plt.subplots(figsize=(7, 7 * rows / cols + 0.8))
    # A 630 px wide figure cannot show more than ~1000 px: decimating first (never averaging:
    # it would blur across 2*pi jumps) makes a 2500x2500 frame 8x faster to draw. The extent
    # keeps the axes in full-resolution pixels so the tile boxes stay where they belong.
    step = max(1, math.ceil(max(rows, cols) / 1000))
    image = ax.imshow(
        phase[::step, ::step], cmap="twilight", vmin=-np.pi, vmax=np.pi,
        interpolation="nearest", extent=(-0.5, cols - 0.5, rows - 0.5, -0.5),
    )
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="wrapped phase (rad)")
    for tile in result.get("tiles", []):
        ax.add_patch(Rectangle((tile["col0"] - 0.5, tile["row0"] - 0.5), PATCH_SIZE, PATCH_SIZE,
                               fill=False, edgecolor="red", linewidth=1.8))
        ax.text(tile["col0"] + 6, tile["row0"] + 18, f"{tile['probability']:.2f}", color="red",
                fontsize=9, fontweight="bold")
    decision = "UNREST" if result["unrest"] else "quiet"
    ax.set_title(
        (title + "\n" if title else "")
        + f"{decision}: p = {result['unrest_probability']:.2f}, "
        f"{len(result.get('tiles', []))}/{result['n_tiles']} tiles fired",
        fontsize=10,
    )
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
