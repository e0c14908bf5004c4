"""Lattice fringes in a micrograph's power spectrum (to low-pass atomic-resolution images before they
are registered against mass-thickness images)."""

from __future__ import annotations

import numpy as np

from ..peaks.spots import Spots, isolated_spots
from .sampling import as_xy


def lattice_spots(img: np.ndarray, px, d_max_nm: float = 1.0, ratio: float = 30.0,
                  size: int = 512) -> Spots:
    """Bragg spots of the lattice fringes visible in ``img`` (the one finder
    :func:`temtwin.peaks.spots.find_spots` with its preset ``ISOLATED_SPOTS``, via
    :func:`~temtwin.peaks.spots.isolated_spots`: isolated maxima of the power spectrum, one per
    Friedel pair, strongest first; empty when it shows no lattice)."""
    return isolated_spots(img, as_xy(px), d_max_nm, ratio, size)


def lattice_spacing_nm(img: np.ndarray, px, d_max_nm: float = 1.0, ratio: float = 30.0,
                       size: int = 512) -> float | None:
    """Largest lattice-fringe spacing (nm) visible in ``img`` (see :func:`lattice_spots`), or None when
    it shows no lattice."""
    sp = lattice_spots(img, px, d_max_nm, ratio, size)
    return float(1.0 / sp.g.min()) if len(sp) else None


def auto_lowpass_nm(*images_px, factor: float = 0.55) -> float:
    """Gaussian sigma (nm) that removes the lattice fringes of any of (image, px) pairs (0 if none):
    ``factor`` x the largest spacing (transfer exp(-2 pi^2 factor^2) < 0.3 % at that spacing)."""
    d = [lattice_spacing_nm(im, px) for im, px in images_px]
    d = [v for v in d if v is not None]
    return factor * max(d) if d else 0.0
