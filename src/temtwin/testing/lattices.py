"""Exact band-limited 2D crystal images (sums of Gaussian atomic columns) and STEM-distorted cases.

:func:`lattice_image` evaluates the periodic image of Gaussian columns analytically as its Fourier series
(no rendering grid artefacts, any canvas size). :func:`scan_distorted_case` renders an ideal frame and the
same frame as a raster scan with drift and row jitter would record it
(:func:`temtwin.testing.scan_distortion.distort_scan`, on a larger canvas so that the scan never leaves
the specimen), with Poisson noise. Lengths in pixels; [x, y] = [column, row].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scan_distortion import ScanDistortion, distort_scan

#: 2D lattices used by the benches and tests: basis vectors (pixels, at rotation 0) and sites
#: (fractional coordinates, weight ≈ Z^1.7-like contrast).
LATTICES = {
    "hexagonal": (np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2]), [(0.0, 0.0, 1.0)]),
    "honeycomb": (np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3) / 2]),
                  [(0.0, 0.0, 1.0), (1 / 3, 1 / 3, 0.45)]),            # MoS2-like (Mo, S2 columns)
    "square": (np.array([1.0, 0.0]), np.array([0.0, 1.0]), [(0.0, 0.0, 1.0), (0.5, 0.5, 0.55)]),  # SrTiO3 [001]-like
    "rectangular": (np.array([1.0, 0.0]), np.array([0.0, 1.42]), [(0.0, 0.0, 1.0), (0.5, 0.5, 1.0)]),  # Si [110]-like
}


def lattice_image(shape, a1_px, a2_px, sites=((0.0, 0.0, 1.0),), sigma_px: float = 1.2,
                  origin_px=(0.0, 0.0), background: float = 0.05) -> np.ndarray:
    """Image (rows, cols) float64 of Gaussian columns of width ``sigma_px`` at the lattice sites
    origin + (u + s1) a1 + (v + s2) a2, each with weight w (``sites`` = [(s1, s2, w)]); peak of the
    first site normalised to 1, plus ``background``."""
    A = np.column_stack([np.asarray(a1_px, float), np.asarray(a2_px, float)])
    B = np.linalg.inv(A).T                         # columns b1, b2: reciprocal (cycles/px)
    gmax = np.sqrt(np.log(1e7)) / (np.sqrt(2) * np.pi * sigma_px)
    hk = int(np.ceil(gmax / min(np.linalg.norm(B[:, 0]), np.linalg.norm(B[:, 1])) * 1.5)) + 1
    h, k = np.meshgrid(np.arange(-hk, hk + 1), np.arange(-hk, hk + 1))
    G = (B @ np.stack([h.ravel(), k.ravel()])).T   # (n, 2) [gx, gy]
    G = G[np.hypot(*G.T) <= gmax]
    s = np.asarray(sites, float)
    cell = abs(np.linalg.det(A))
    Fs = (s[:, 2][None, :] * np.exp(-2j * np.pi * (G @ (A @ s[:, :2].T)))).sum(1)
    amp = Fs * np.exp(-2 * np.pi ** 2 * sigma_px ** 2 * (G ** 2).sum(1)) * (2 * np.pi * sigma_px ** 2) / cell
    rows, cols = shape
    x = np.arange(cols) - origin_px[0]
    y = np.arange(rows) - origin_px[1]
    ex = np.exp(2j * np.pi * np.outer(G[:, 0], x))   # (n, cols)
    ey = np.exp(2j * np.pi * np.outer(G[:, 1], y))   # (n, rows)
    img = np.einsum("n,nr,nc->rc", amp, ey, ex, optimize=True).real
    return img / max(float(s[0, 2]), 1e-12) + background


@dataclass
class DistortedCase:
    """ideal, distorted: (rows, cols) noisy images of the same frame without and with the scan
    distortion (independent noise); clean_ideal: the noise-free ideal; truth: the ScanDistortion of the
    frame; a_px: lattice parameter; lattice: LATTICES key."""

    ideal: np.ndarray
    distorted: np.ndarray
    clean_ideal: np.ndarray
    truth: ScanDistortion
    lattice: str
    a_px: float


def scan_distorted_case(shape=(256, 256), lattice: str = "hexagonal", a_px: float = 9.0,
                        rotation_deg: float = 0.0, sigma_px: float = 1.2, drift=(0.0, 0.0),
                        jitter_px: float = 0.0, dose: float | None = 500.0, seed: int = 0) -> DistortedCase:
    """A generated STEM case: the lattice ``lattice`` (parameter ``a_px`` pixels, rotated by
    ``rotation_deg`` from +x towards +y) scanned with ``drift`` = (dx, dy) (fraction of the frame height
    per frame) and row jitter ``jitter_px``; Poisson noise at ``dose`` counts per unit intensity."""
    rng = np.random.default_rng(seed)
    a1, a2, sites = LATTICES[lattice]
    th = np.deg2rad(rotation_deg)
    Rm = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    a1, a2 = a_px * Rm @ a1, a_px * Rm @ a2
    rows, cols = shape
    mx = int(np.ceil(abs(drift[0]) * rows + 6 * jitter_px + 8))
    big = (int(np.ceil(rows * (1 + max(drift[1], 0.0)))) + 8, cols + 2 * mx)
    origin = rng.uniform(0, a_px, 2)
    canvas = lattice_image(big, a1, a2, sites, sigma_px, origin_px=(origin[0] + mx, origin[1]))
    dist, truth = distort_scan(canvas, drift_x=drift[0], drift_y=drift[1], jitter_px=jitter_px, rng=rng)
    clean = canvas[:rows, mx:mx + cols]
    dist = dist[:rows, mx:mx + cols]
    truth = ScanDistortion(drift[0], drift[1], jitter_px, truth.row_offset_px[:rows], truth.row_y_px[:rows])

    def noisy(im):
        return rng.poisson(np.clip(im, 0, None) * dose) / dose if dose else im.copy()
    return DistortedCase(noisy(clean), noisy(dist), clean, truth, lattice, a_px)


@dataclass
class PairCase:
    """a, b: noisy recorded scans of the same area, ``a`` with the fast scan along x (0°), ``b`` with the
    scan rotated by +90° (as recorded: ``np.rot90(b, -1)`` is in a's orientation); clean_ideal: the
    noise-free undistorted frame in a's orientation; truth_a, truth_b: their ScanDistortion (b's in
    its own scan frame, drift (dy, -dx))."""

    a: np.ndarray
    b: np.ndarray
    clean_ideal: np.ndarray
    truth_a: ScanDistortion
    truth_b: ScanDistortion
    lattice: str


def scan_pair_case(n: int = 192, lattice: str = "rectangular", a_px: float = 8.0, rotation_deg: float = 20.0,
                   sigma_px: float = 1.2, drift=(0.02, -0.015), jitter_px: float = 0.3,
                   dose: float | None = 500.0, seed: int = 0) -> PairCase:
    """A generated orthogonal scan pair (n x n) of one lattice with the same specimen drift ``drift``
    (dx, dy; fraction of the frame height per frame, in a's frame) and independent row jitter."""
    rng = np.random.default_rng(seed)
    a1, a2, sites = LATTICES[lattice]
    th = np.deg2rad(rotation_deg)
    Rm = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    m = int(np.ceil(max(abs(drift[0]), abs(drift[1])) * 2 * n + 6 * jitter_px + 8))
    N = n + 2 * m
    canvas = lattice_image((N, N), a_px * Rm @ a1, a_px * Rm @ a2, sites, sigma_px,
                           origin_px=tuple(rng.uniform(0, a_px, 2)))
    A, ta = distort_scan(canvas, drift_x=drift[0], drift_y=drift[1], jitter_px=jitter_px, rng=rng)
    B, tb = distort_scan(np.rot90(canvas, 1), drift_x=drift[1], drift_y=-drift[0], jitter_px=jitter_px, rng=rng)
    A = A[m:m + n, m:m + n]
    B = B[N - m - n:N - m, m:m + n]
    ta = ScanDistortion(drift[0], drift[1], jitter_px, ta.row_offset_px[m:m + n], ta.row_y_px[m:m + n])
    tb = ScanDistortion(drift[1], -drift[0], jitter_px, tb.row_offset_px[N - m - n:N - m],
                        tb.row_y_px[N - m - n:N - m])

    def noisy(im):
        return rng.poisson(np.clip(im, 0, None) * dose) / dose if dose else im.copy()
    return PairCase(noisy(A), noisy(B), canvas[m:m + n, m:m + n], ta, tb, lattice)
