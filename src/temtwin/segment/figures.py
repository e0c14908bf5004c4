"""The overlay figure of the segment stage: contours on the micrograph, regions numbered."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure
from .regions import RegionTable, label_points


def overlay_figure(image: np.ndarray, labels: np.ndarray, pixel_size_nm: tuple[float, float],
                   contours: dict[int, np.ndarray], table: RegionTable, path: str | Path,
                   title: str = "", max_px: int = 2048) -> Path:
    """Save a PNG of the micrograph (grey, 1st–99th percentile) with each region's contour and its
    label at a point well inside it; axes in nm."""
    step = max(1, int(np.ceil(max(image.shape) / max_px)))
    shown = np.asarray(image, np.float32)[::step, ::step]
    lo, hi = np.percentile(shown, [1, 99])
    px, py = pixel_size_nm
    fig, axes = new_figure(1, 1, size=6.0)
    ax = axes[0, 0]
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
              extent=image_extent_nm(image.shape, (px, py)), interpolation="nearest")
    colours = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#42d4f4", "#f032e6", "#bfef45"]
    pts = label_points(labels, table.label)
    for k, lab in enumerate(table.label):
        poly = contours.get(int(lab))
        col = colours[k % len(colours)]
        if poly is not None and len(poly) >= 3:
            closed = np.vstack([poly, poly[:1]])
            ax.plot(closed[:, 0], closed[:, 1], "-", color=col, lw=1.0)
        r, c = pts[k]
        ax.text(c * px, r * py, str(int(lab)), color="white", fontsize=8, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc=col, ec="none", alpha=0.8))
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(title or f"{len(table)} regions")
    return save_figure(fig, path)
