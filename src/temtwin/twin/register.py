"""Registering a crystal's lattice origin (in-plane translation) on the image.

The fill fixes the lattice orientation and spacing but not its in-plane position.  The image's
Fourier coefficients at the crystal's zone reflections, I(g) = Σ_r w(r) (I(r) − Ī) e^{−2πi g·r} over
the region's pixels (w: a smooth window), are correlated with the projected structure factor of the
cell, F(g) = Σ_k Z_k e^{−2πi g·d_k} (basis atoms projected along the beam).  The correlation of the
image with the model's projected density shifted by t is

    C(t) = Re Σ_g F(g) conj(I(g)) e^{−2πi g·t},

evaluated on a grid over one projected unit cell and refined around its extremum: the maximum for
bright-atom contrast (HAADF), the minimum for dark-atom contrast (HRTEM near Scherzer focus).
The result is exact for Z-contrast images of perfect crystals; for phase-contrast images it
depends on the transfer function and is reported with its correlation score.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fill import CrystalCell, zone_basis, zone_reflections


def lattice_origin(image: np.ndarray, pixel_size_nm, mask: np.ndarray, cell: CrystalCell,
                   contrast: str = "bright", g_max_nm: float | None = None, max_pixels: int = 262_144,
                   grid: int = 48) -> tuple[np.ndarray, dict]:
    """In-plane lattice origin (x, y) nm that best aligns ``cell``'s atom columns with ``image``.

    contrast: ``bright`` (atoms bright: HAADF) or ``dark`` (atoms dark: HRTEM at Scherzer).
    Returns (origin (2,), info with ``score`` (normalised correlation at the optimum, 0..1),
    ``n_reflections``).
    """
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    m = np.asarray(mask, bool)
    if m.sum() < 64:
        return np.zeros(2), {"score": 0.0, "n_reflections": 0, "reason": "region too small"}
    # smooth window: distance to the region edge, capped
    dist = ndimage.distance_transform_edt(m)
    w = np.clip(dist / 8.0, 0, 1)
    idx = np.flatnonzero(w > 0)
    if idx.size > max_pixels:
        idx = idx[np.linspace(0, idx.size - 1, max_pixels).astype(np.int64)]
    rows, cols = np.unravel_index(idx, m.shape)
    x = cols * px
    y = rows * py
    vals = np.asarray(image, float)[rows, cols]
    ww = w.ravel()[idx]
    vals = (vals - np.average(vals, weights=ww)) * ww
    nyq = 0.5 / max(px, py)
    gmax = min(0.8 * nyq, 9.0) if g_max_nm is None else g_max_nm
    _, g = zone_reflections(cell, hkl_max=8, g_max_nm=gmax)
    if len(g) == 0:
        return np.zeros(2), {"score": 0.0, "n_reflections": 0, "reason": "no reflection below Nyquist"}
    # image Fourier coefficients at the reflections (chunked to bound memory)
    Ig = np.zeros(len(g), complex)
    for s in range(0, len(g), 16):
        ph = np.exp(-2j * np.pi * (np.outer(g[s:s + 16, 0], x) + np.outer(g[s:s + 16, 1], y)))
        Ig[s:s + 16] = ph @ vals
    d = cell.positions_nm()[:, :2]
    Fg = (cell.numbers[None, :] * np.exp(-2j * np.pi * (g @ d.T))).sum(1)
    K = Fg * np.conj(Ig)
    Q, B = zone_basis(cell)
    P = B[:2, :2]
    sign = 1.0 if contrast == "bright" else -1.0

    def corr(t):
        return sign * np.real(np.exp(-2j * np.pi * (t @ g.T)) @ K)

    s = (np.arange(grid) + 0.5) / grid
    S = np.stack(np.meshgrid(s, s, indexing="ij"), -1).reshape(-1, 2)
    T = S @ P.T
    c = corr(T)
    t = T[np.argmax(c)]
    step = np.linalg.norm(P, axis=0).max() / grid
    for _ in range(3):   # local refinement on finer grids
        off = np.stack(np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 11), indexing="ij"), -1).reshape(-1, 2)
        cand = t + off * step
        cc = corr(cand)
        t = cand[np.argmax(cc)]
        step /= 5.0
    norm = np.sqrt(np.sum(np.abs(Fg) ** 2) * np.sum(np.abs(Ig) ** 2))
    score = float(corr(t[None])[0] / norm) if norm > 0 else 0.0
    return t, {"score": score, "n_reflections": int(len(g))}
