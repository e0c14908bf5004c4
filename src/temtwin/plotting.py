"""Figures: matplotlib (Agg) with deterministic PNG bytes and a shared style."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io.h5 import atomic_path  # noqa: E402


def new_figure(ncols: int = 1, nrows: int = 1, size: float = 4.0, **kw):
    """A figure with ``nrows x ncols`` axes of about ``size`` inches each."""
    return plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, **kw)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a figure as PNG atomically, without timestamps (byte-identical reruns), and close it.

    A full disk (or a read-only / forbidden folder) raises one-line :class:`~temtwin.errors.UserError`.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight",
                        metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def image_extent_nm(shape, pixel_size_nm):
    """imshow extent [left, right, bottom, top] in nm for rows = y down."""
    rows, cols = shape[:2]
    px, py = pixel_size_nm
    return [-0.5 * px, (cols - 0.5) * px, (rows - 0.5) * py, -0.5 * py]
