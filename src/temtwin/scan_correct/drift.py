"""Linear drift from the lattice metric of one scan, under a stated lattice-symmetry assumption.

Scan model (the one of :func:`temtwin.testing.scan_distortion.distort_scan`): row i, column j sampled the
specimen at r_true = D r_obs with r = (x, y) in pixels and D = [[1, dx], [0, 1 + dy]]: dx is the drift
along x per frame height (a shear: non-orthogonality), dy the slow-scan stretch. Reciprocal vectors
transform as g_obs = Dᵀ g_true. From one scan, (dx, dy) are observable only with an assumption on the true
lattice: a hexagonal or square 2D lattice has two metric constraints (equal |g1| = |g2|, and an angle of
60°/120° or 90°), which fix dx and dy; a rectangular, centred-rectangular or oblique lattice has fewer,
and the drift is then not observable without a reference or a scan pair. Lengths are checked in nm
(non-square pixels allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

LATTICE_COS = {"hexagonal": 0.5, "square": 0.0}


@dataclass
class DriftEstimate:
    """drift: (2,) [dx, dy] fraction of the frame height (0 when not corrected); sigma: (2,) its
    standard error; lattice: assumed lattice type ("hexagonal", "square", "" = none); fits: distortion
    (max |dx|, |dy|) needed to reach each lattice type; significant: corrected; reason: why not."""

    drift: np.ndarray
    sigma: np.ndarray
    lattice: str
    significant: bool
    reason: str = ""
    measured: np.ndarray = field(default_factory=lambda: np.zeros(2))
    fits: dict = field(default_factory=dict)


def _true_g(G_obs_px: np.ndarray, d: np.ndarray, pixel_size_nm) -> np.ndarray:
    D = np.array([[1.0, d[0]], [0.0, 1.0 + d[1]]])
    Gt = np.linalg.solve(D.T, G_obs_px.T).T          # rows g_true in cycles/px of the true grid
    return Gt / np.asarray(pixel_size_nm, float)[None, :]   # nm⁻¹


def _residual(d, G_obs_px, pixel_size_nm, cos_target):
    g1, g2 = _true_g(G_obs_px, d, pixel_size_nm)
    n1, n2 = np.hypot(*g1), np.hypot(*g2)
    cos = abs(np.dot(g1, g2)) / (n1 * n2)
    return [(n1 - n2) / (0.5 * (n1 + n2)), cos - cos_target]


def solve_drift(G_obs_px: np.ndarray, pixel_size_nm, lattice: str) -> np.ndarray:
    """(dx, dy) making the observed reduced basis ``G_obs_px`` (2, 2) cycles/px the given lattice type."""
    r = least_squares(_residual, x0=np.zeros(2), args=(G_obs_px, pixel_size_nm, LATTICE_COS[lattice]),
                      xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return r.x if np.max(np.abs(r.fun)) < 1e-6 else np.full(2, np.nan)


#: systematic standard error added in quadrature to the statistical one (fraction of the frame height):
#: interpolation and the jitter left in the image bias the measured lattice by a few 1e-4
SYSTEMATIC_SIGMA = 2.5e-4


def estimate_drift(G_obs_px: np.ndarray, sigma_px: np.ndarray, pixel_size_nm, assume: str = "auto",
                   max_drift: float = 0.05, min_drift: float = 0.002, n_sigma: float = 3.0) -> DriftEstimate:
    """Linear drift from a reduced reciprocal basis (2, 2) cycles/px and its standard errors (2, 2).

    assume: "auto" (the hexagonal or square lattice reachable with a drift ≤ ``max_drift``; none when
    neither or both are), "hexagonal", "square", or "none" (never correct the drift).
    The drift is corrected only when it is significant: |d| > ``n_sigma`` σ for dx or dy, and
    max(|dx|, |dy|) ≥ ``min_drift`` (below, the image is left unchanged). σ is the propagated statistical
    error of the g vectors plus :data:`SYSTEMATIC_SIGMA` in quadrature.
    """
    zero = np.zeros(2)
    if assume == "none":
        return DriftEstimate(zero, zero, "", False, "linear drift correction switched off (scan_correct.lattice: none)")
    types = list(LATTICE_COS) if assume == "auto" else [assume]
    fits = {t: solve_drift(G_obs_px, pixel_size_nm, t) for t in types}
    sizes = {t: float(np.max(np.abs(v))) if np.all(np.isfinite(v)) else np.inf for t, v in fits.items()}
    ok = [t for t in types if sizes[t] <= max_drift]
    if not ok:
        return DriftEstimate(zero, zero, "", False,
                             "the lattice is neither hexagonal nor square within the drift limit "
                             f"({100 * max_drift:.0f} %): linear drift is not observable from one scan "
                             "(declare a scan pair to correct it)", fits={t: sizes[t] for t in types})
    if len(ok) > 1:
        return DriftEstimate(zero, zero, "", False, "lattice ambiguous between " + " and ".join(ok)
                             + ": linear drift not corrected", fits={t: sizes[t] for t in types})
    t = ok[0]
    d = fits[t]
    # standard error by linear propagation of the g errors (finite differences)
    J = np.zeros((2, 4))
    for n in range(4):
        Gp = G_obs_px.copy().ravel()
        h = max(float(sigma_px.ravel()[n]), 1e-7)
        Gp[n] += h
        J[:, n] = (solve_drift(Gp.reshape(2, 2), pixel_size_nm, t) - d) / h * sigma_px.ravel()[n]
    sig = np.sqrt((J ** 2).sum(1) + SYSTEMATIC_SIGMA ** 2)
    sig = np.where(np.isfinite(sig), sig, np.inf)
    if not (np.any(np.abs(d) > n_sigma * sig) and np.max(np.abs(d)) >= min_drift):
        return DriftEstimate(zero, sig, t, False,
                             f"lattice consistent with an undistorted {t} lattice (drift "
                             f"{100 * d[0]:.2f} %, {100 * d[1]:.2f} % not significant)", measured=d,
                             fits={k: sizes[k] for k in types})
    return DriftEstimate(d, sig, t, True, "", measured=d, fits={k: sizes[k] for k in types})
