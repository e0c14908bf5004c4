"""Geometry of an atomic model along its growth direction (shared by the keating and phonons stages).

Model frame = image frame: x right, y down, z along the beam (nm in model.h5, Å in ase.Atoms).
``atoms.info["growth_direction"]`` is an image-frame unit vector (2 or 3 components); default
(0, -1, 0), i.e. growth up the image.
"""

from __future__ import annotations

import numpy as np

DEFAULT_GROWTH = np.array([0.0, -1.0, 0.0])


def growth_direction(atoms) -> np.ndarray:
    """Unit growth vector (3,) in the model frame."""
    g = atoms.info.get("growth_direction")
    if g is None:
        return DEFAULT_GROWTH.copy()
    g = np.asarray(g, float).ravel()
    if g.size == 2:
        g = np.array([g[0], g[1], 0.0])
    n = np.linalg.norm(g)
    if g.size != 3 or not np.isfinite(n) or n == 0:
        return DEFAULT_GROWTH.copy()
    return g / n


def growth_coordinate_nm(atoms, positions_A=None) -> np.ndarray:
    """Position of each atom along the growth direction (nm), measured from the lowest atom."""
    pos = atoms.get_positions() if positions_A is None else np.asarray(positions_A, float)
    s = pos @ growth_direction(atoms) / 10.0
    return s - s.min() if len(s) else s


def bin_index(coord: np.ndarray, width: float, max_bins: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Bin coordinates (from 0) into slabs of ``width``; returns (index, bin centres, used width).

    ``width`` is raised so that no more than ``max_bins`` bins result.
    """
    coord = np.asarray(coord, float)
    if len(coord) == 0:
        return np.zeros(0, np.int64), np.zeros(0), float(width)
    span = float(coord.max())
    if max_bins is not None and span / width >= max_bins:
        width = span / max_bins * (1.0 + 1e-9)
    idx = np.minimum(np.floor(coord / width).astype(np.int64), max(int(np.floor(span / width)), 0))
    nb = int(idx.max()) + 1
    centres = (np.arange(nb) + 0.5) * width
    return idx, centres, float(width)
