"""Row jitter: the fast-scan (x) offset of every scan row, measured against the periodic lattice.

Model: row i of the recorded image sampled the specimen at x = j + o_i (pixels), so
I(i, j) = T(i, j + o_i) with T the undistorted image. The strictly periodic lattice fitted to the image
(:func:`~temtwin.scan_correct.lattice.periodic_reference`) stands in for T. Linearised,
I(i, ·) - R(i, ·) ≈ o_i ∂R/∂x, so o_i is the least-squares slope of the row residual on the row's x
gradient: o_i = Σ_j (I - R) R_x / Σ_j R_x² — a row-by-row correlation with the lattice fringes. The
estimate is iterated (rows shifted back, reference rebuilt) and regularised by a Wiener shrinkage with the
per-row noise variance σ²_i = var(residual_i) / Σ_j R_x² (scaled up when the left and right halves of
the rows disagree by more than that), so noise-only offsets are pulled to zero.
Offsets varying over more than about the frame height (``max_period``) cannot be told apart from a real
displacement field of the crystal in one scan and are left alone (Gaussian high-pass), as are the mean
and the linear trend: a
uniform shift is no distortion, and the linear part (a shear) belongs to the linear drift
(:mod:`temtwin.scan_correct.drift`), measured from the lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .lattice import periodic_reference


@dataclass
class JitterEstimate:
    """offset_px: (rows,) x offset o_i of each row in pixels (the specimen x sampled at column j is
    j + o_i); sigma_px: (rows,) its standard error; rms_px: RMS of offset_px; chi2: mean of
    (raw offset / sigma)² (≈ 1 when there is no jitter); significant: whether the jitter stands out of
    the noise."""

    offset_px: np.ndarray
    sigma_px: np.ndarray   # inf on the edge rows, where the offsets are not measured (0)
    rms_px: float
    chi2: float
    significant: bool


def shift_rows(image: np.ndarray, offset_px: np.ndarray, order: int = 3) -> np.ndarray:
    """Undo row offsets: C(i, j) = I(i, j - o_i) (cubic spline; edges reflected)."""
    img = np.asarray(image, np.float64)
    rows, cols = img.shape
    jj, ii = np.meshgrid(np.arange(cols, dtype=float), np.arange(rows, dtype=float))
    return ndimage.map_coordinates(img, [ii, jj - np.asarray(offset_px)[:, None]], order=order, mode="reflect")


def _detrend(o: np.ndarray) -> np.ndarray:
    i = np.arange(len(o), dtype=float)
    A = np.stack([np.ones_like(i), i], 1)
    coef, *_ = np.linalg.lstsq(A, o, rcond=None)
    return o - A @ coef


def _highpass(o: np.ndarray, lowpass_rows: float) -> np.ndarray:
    """o minus its Gaussian low-pass (σ = ``lowpass_rows``) and linear trend."""
    o = _detrend(o)
    return _detrend(o - ndimage.gaussian_filter1d(o, lowpass_rows, mode="reflect"))


def estimate_jitter(image: np.ndarray, G_px: np.ndarray, n_iter: int = 4, margin: float = 0.05,
                    max_offset_px: float = 3.0, min_rms_px: float = 0.05, chi2_min: float = 2.0,
                    max_period: float = 1.0) -> JitterEstimate:
    """Estimate the row offsets of ``image`` (rows = slow scan y, columns = fast scan x).

    G_px: reciprocal basis (2, 2) [g1; g2] cycles/px of the image's lattice (the reference is
    :func:`~temtwin.scan_correct.lattice.periodic_reference`).
    max_offset_px: offsets are clipped to ± this (a wrong lock on a fringe cannot run away);
    min_rms_px, chi2_min: the jitter is significant when its RMS exceeds ``min_rms_px`` and the raw
    offsets scatter at least ``chi2_min`` times more than their noise (χ²/row); max_period: offset
    variations with periods longer than about this fraction of the frame height are left to the lattice
    (a Gaussian high-pass of σ = max_period · rows / 2π): from one scan they cannot be told apart from a
    real displacement field of the crystal (bending, shear). The first and last
    rows / 8π rows are not measured (offset 0, σ = inf): the row fits are least reliable at the edges.
    """
    img = np.asarray(image, np.float64)
    rows, cols = img.shape
    lowpass_rows = max(float(max_period) * rows / (2 * np.pi), 1.0)
    c0, c1 = int(margin * cols), cols - int(margin * cols)
    o = np.zeros(rows)
    var = np.full(rows, np.inf)
    edge = max(2, int(np.ceil(rows / (8 * np.pi))))
    inner = slice(edge, rows - edge)
    # Gauss-Newton on the row offsets; every step must lower the misfit to the periodic lattice, else
    # the previous offsets are kept (a fit that locks onto the wrong fringe cannot run away)
    best = None
    for _ in range(n_iter + 1):
        C = shift_rows(img, o) if np.any(o) else img
        R = periodic_reference(C, G_px)
        Rx = np.gradient(R, axis=1)[:, c0:c1]
        res = (C - R)[:, c0:c1]
        misfit = float((res[inner] ** 2).sum())
        if best is not None and misfit >= best[0]:
            o, Rx, res, den, d = best[1:]
            break
        den = np.maximum((Rx ** 2).sum(1), 1e-30)
        d = (res * Rx).sum(1) / den
        best = (misfit, o, Rx, res, den, d)
        o = _highpass(np.clip(o + d, -max_offset_px, max_offset_px), lowpass_rows)
    else:
        o = best[1]
        Rx, res, den, d = best[2:]
    var = (res - d[:, None] * Rx).var(1) / den
    # error scale from the two halves of every row (left/right columns fitted separately): their
    # scatter includes what the residual variance misses (misfit of the reference, correlated noise)
    h = (c1 - c0) // 2
    dh, vh = [], []
    for sl in (slice(0, h), slice(h, None)):
        dn = np.maximum((Rx[:, sl] ** 2).sum(1), 1e-30)
        dd = (res[:, sl] * Rx[:, sl]).sum(1) / dn
        dh.append(dd)
        vh.append((res[:, sl] - dd[:, None] * Rx[:, sl]).var(1) / dn)
    # the reference is least reliable within a few rows of the top and bottom edges: not measured there
    o = o.copy()
    var[:edge] = var[-edge:] = np.inf
    o[:edge] = o[-edge:] = 0.0
    var = np.maximum(var, 1e-12)
    scale2 = float(np.mean((dh[0] - dh[1])[inner] ** 2) / max(np.mean((vh[0] + vh[1])[inner]), 1e-30))
    var = var * max(1.0, scale2)
    chi2 = float(np.mean(o[inner] ** 2 / var[inner]))
    signal = max(float(np.mean(o[inner] ** 2) - np.mean(var[inner])), 0.0)
    shrink = signal / (signal + var)
    o_reg = o * shrink
    o_reg[inner] = _highpass(o_reg[inner], lowpass_rows)
    rms = float(np.sqrt(np.mean(o_reg[inner] ** 2)))
    significant = bool(chi2 >= chi2_min and rms >= min_rms_px)
    sigma = np.full(rows, np.inf)
    fin = np.isfinite(var)
    sigma[fin] = np.sqrt(var[fin] * shrink[fin])
    return JitterEstimate(offset_px=o_reg, sigma_px=sigma, rms_px=rms, chi2=chi2, significant=significant)
