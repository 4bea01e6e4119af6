"""A hot spot map a person can look at: density surface, significant points, ADA outlines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_hotspot_map(result: Any, path: Path, *, title: str | None = None) -> Path:
    """Write a PNG of one hot-spot computation.

    Left: the z-weighted kernel density surface (red = clusters of high velocity, blue =
    clusters of low velocity). Right: every point coloured by its Gi* confidence bin
    (hot 90/95/99 %, cold, not significant), with the active deformation areas outlined
    and labelled with their ids and statuses: clustered areas solid black, areas the
    delineation U-Net outlined (``result.delineated``, ids ``dada-...``) dashed purple, on
    both panels. Axes are metres in the computation's CRS.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from pipelines.hotspots.projection import to_metric

    points = result.points
    usable = points[np.isfinite(points["velocity_mm_yr"].to_numpy(dtype=float))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), constrained_layout=True)
    ax_kde, ax_pts = axes
    if result.kde is not None:
        da = result.kde
        limit = float(np.nanmax(np.abs(da.values))) or 1.0
        x, y = da["x"].values, da["y"].values
        image = ax_kde.imshow(
            da.values, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="upper",
            extent=(x[0], x[-1], y[-1], y[0]), interpolation="nearest",
        )
        fig.colorbar(image, ax=ax_kde, fraction=0.046, label="z-weighted density")
    ax_kde.set_title("z-weighted kernel density (quartic)")
    if len(usable) and result.crs:
        xy, _ = to_metric(
            usable["longitude"].to_numpy(), usable["latitude"].to_numpy(), result.crs
        )
        bins = usable["hotspot_class"].fillna(0).to_numpy(dtype=int)
        # Every significant point is drawn; beyond 30k others a random sample shows the
        # coverage just as well and keeps the map quick for million-point datasets.
        keep = bins != 0
        others = np.flatnonzero(~keep)
        if len(others) > 30_000:
            others = np.random.default_rng(0).choice(others, 30_000, replace=False)
        keep[others] = True
        xy, bins = xy[keep], bins[keep]
        colours = ListedColormap(
            ["#08306b", "#2171b5", "#9ecae1", "#d9d9d9", "#fcbba1", "#ef3b2c", "#67000d"]
        )
        scatter = ax_pts.scatter(
            xy[:, 0], xy[:, 1], c=bins, cmap=colours, vmin=-3.5, vmax=3.5, s=6, linewidths=0
        )
        bar = fig.colorbar(scatter, ax=ax_pts, fraction=0.046, ticks=range(-3, 4))
        bar.ax.set_yticklabels(
            ["cold 99%", "cold 95%", "cold 90%", "n.s.", "hot 90%", "hot 95%", "hot 99%"]
        )
    _outline_areas(ax_pts, result.tracked, color="black", linestyle="-", label_above=True)
    delineated = list(getattr(result, "delineated", []) or [])
    for ax in axes:
        _outline_areas(ax, delineated, color="#6a3d9a", linestyle="--", label_above=False)
    title_pts = "Gi* hot spots (FDR) and active deformation areas"
    if delineated or getattr(result, "delineation", None) is not None:
        title_pts += "\n(solid: clustered, dashed: delineated by the U-Net)"
    ax_pts.set_title(title_pts)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel(f"easting (m, {result.crs})")
        ax.set_ylabel("northing (m)")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _outline_areas(
    ax: Any, tracked_areas: Any, *, color: str, linestyle: str, label_above: bool
) -> None:
    """Outline each tracked area on ``ax`` and label it with its id and status.

    Labels go just above (``label_above``) or below the outline, on a white box, so the
    points stay visible and clustered and delineated labels of one place do not overlap.
    """
    for tracked in tracked_areas:
        polygon = tracked.area.polygon
        for part in getattr(polygon, "geoms", [polygon]):
            xs, ys = part.exterior.xy
            ax.plot(xs, ys, color=color, linewidth=1.2, linestyle=linestyle)
        c = polygon.centroid
        y, offset, va = (polygon.bounds[3], 4, "bottom") if label_above else (
            polygon.bounds[1], -4, "top"
        )
        ax.annotate(
            f"{tracked.id} ({tracked.status})", (c.x, y), fontsize=7, color=color,
            ha="center", va=va, xytext=(0, offset), textcoords="offset points",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8,
                  "linewidth": 0},
        )
