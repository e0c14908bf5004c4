"""Lattice of an image from its spectrum: Bragg peaks, the periodic reference image, refined g vectors.

All reciprocal vectors here are in cycles per pixel, [kx, ky] (kx along columns = x, ky along rows = y),
the FFT convention of :func:`numpy.fft.fftfreq`. A lattice image is a sum of sharp Bragg peaks; scan
row jitter moves part of their power into diffuse streaks along ky, while linear drift only moves the
peaks. The *lattice reference* keeps only small disks around the peaks (and the lowest frequencies),
so it is the periodic average lattice, nearly free of noise and of jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..gpa.core import periodic_component


@dataclass
class LatticePeaks:
    """Bragg peaks of an image spectrum.

    k: (n, 2) peak positions [kx, ky] in cycles/px (one of each ±k pair, ky > 0 or ky = 0, kx > 0);
    strength: (n,) peak power over the local (radial median) background;
    mask: (rows, cols) bool FFT-ordered mask of the disks around ±peaks and the lowest frequencies.
    """

    k: np.ndarray
    strength: np.ndarray
    mask: np.ndarray


def _kgrid(shape):
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    return kx, ky


def find_peaks(image: np.ndarray, threshold: float = 25.0, radius_bins: float = 4.0,
               dc_bins: float = 3.0, max_peaks: int = 40) -> LatticePeaks:
    """Bragg peaks of ``image``: local maxima of the smoothed power spectrum ``threshold`` times above
    the radial median background (the noise and diffuse level at the same |k|).

    radius_bins: radius of the reference disks, in FFT bins; dc_bins: frequencies below this many bins
    are kept in the reference mask (mean level, slow intensity variations) but are not peaks.
    """
    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    F = np.fft.fft2(periodic_component(img))
    P = np.fft.fftshift(np.abs(F) ** 2)
    Ps = ndimage.gaussian_filter(P, 1.0, mode="wrap")
    cy, cx = rows // 2, cols // 2
    yy, xx = np.mgrid[0:rows, 0:cols]
    rb = np.hypot((yy - cy) * cols / rows, xx - cx)        # radius in x-bins, isotropic in k
    rbin = np.minimum(rb.astype(int), int(rb.max()))
    idx = np.arange(rbin.max() + 1)
    bg = np.asarray(ndimage.median(Ps, labels=rbin, index=idx))
    bg = np.maximum(bg, 1e-12 * max(float(Ps.max()), 1e-30))
    ratio = Ps / bg[rbin]
    locmax = (Ps == ndimage.maximum_filter(Ps, size=5, mode="wrap")) & (ratio > threshold) & (rb > dc_bins + 1)
    half = (yy > cy) | ((yy == cy) & (xx > cx))
    sel = np.flatnonzero((locmax & half).ravel())
    sel = sel[np.argsort(-ratio.ravel()[sel])][:max_peaks]
    py_, px_ = np.unravel_index(sel, P.shape)
    # sub-bin centroid of the power over 3x3
    k = []
    for y0, x0 in zip(py_, px_):   # few peaks (<= max_peaks)
        ys = (np.arange(y0 - 1, y0 + 2) % rows)
        xs = (np.arange(x0 - 1, x0 + 2) % cols)
        w = P[np.ix_(ys, xs)]
        dy = float((w.sum(1) * np.array([-1, 0, 1])).sum() / w.sum())
        dx = float((w.sum(0) * np.array([-1, 0, 1])).sum() / w.sum())
        k.append([(x0 - cx + dx) / cols, (y0 - cy + dy) / rows])
    k = np.array(k, float).reshape(-1, 2)
    strength = ratio.ravel()[sel]
    kx, ky = _kgrid(img.shape)
    mask = np.hypot(kx * cols, ky * rows * cols / rows) <= dc_bins
    r2 = radius_bins ** 2
    for kk in k:   # few peaks
        for s in (1, -1):
            dxb = (kx - s * kk[0] + 0.5) % 1.0 - 0.5
            dyb = (ky - s * kk[1] + 0.5) % 1.0 - 0.5
            mask |= (dxb * cols) ** 2 + (dyb * rows) ** 2 <= r2
    return LatticePeaks(k=k, strength=strength, mask=mask)


def lattice_reference(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The periodic lattice part of ``image``: its periodic component filtered to ``mask`` (FFT order),
    plus the smooth (edge) component and the mean. float64 (rows, cols)."""
    img = np.asarray(image, np.float64)
    p = periodic_component(img).astype(np.float64)
    rest = img - p                                   # mean + smooth component
    return rest + np.fft.ifft2(np.fft.fft2(p) * mask).real


def reduced_basis(k: np.ndarray, strength: np.ndarray, min_strength_frac: float = 0.02) -> np.ndarray | None:
    """A Gauss-reduced reciprocal basis (2, 2) [g1; g2] (cycles/px) of the peaks, or None.

    g1 is the shortest peak among the strong ones, g2 the shortest not collinear with it; the pair is then
    Lagrange-Gauss reduced (|g1| <= |g2|, |g1·g2| <= |g1|²/2) so that its angle lies in [60°, 120°].
    """
    if len(k) < 2:
        return None
    ok = strength >= min_strength_frac * strength.max()
    kk = k[ok]
    order = np.argsort(np.hypot(*kk.T))
    kk = kk[order]
    g1 = kk[0]
    g2 = None
    for c in kk[1:]:
        sin = abs(g1[0] * c[1] - g1[1] * c[0]) / (np.hypot(*g1) * np.hypot(*c))
        if sin > 0.2:
            g2 = c
            break
    if g2 is None:
        return None
    a, b = g1.astype(float), g2.astype(float)
    for _ in range(20):
        if np.dot(b, b) < np.dot(a, a):
            a, b = b, a
        m = np.round(np.dot(a, b) / np.dot(a, a))
        if m == 0:
            break
        b = b - m * a
    return np.array([a, b])


def refine_g(image: np.ndarray, g: np.ndarray, sigma_bins: float = 3.0, tiles: int = 4,
             margin: float = 0.1, n_iter: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Refine reciprocal vectors ``g`` (n, 2) cycles/px from the phase gradient of their Bragg filters.

    For each g, the image spectrum is masked by a Gaussian of ``sigma_bins`` FFT bins at g; the local
    wave vector is g + (phase gradient of the demodulated filter) / 2π; its |h|²-weighted mean over the
    image interior (``margin`` of each side left out) is the refined g (a least-squares phase ramp).
    The standard error comes from the scatter of the ``tiles`` x ``tiles`` tile means.
    Returns (g_refined (n, 2), sigma (n, 2)), cycles/px.
    """
    img = np.asarray(image, np.float64)
    rows, cols = img.shape
    F = np.fft.fft2(periodic_component(img))
    kx, ky = _kgrid(img.shape)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    m0, m1 = int(margin * rows), int(margin * cols)
    inner = (slice(m0, rows - m0 - 1), slice(m1, cols - m1 - 1))
    g = np.array(g, float).reshape(-1, 2)
    out, sig = g.copy(), np.zeros_like(g)
    for n in range(len(g)):   # two g vectors
        gc = g[n].copy()
        for _ in range(n_iter):
            dxb = ((kx - gc[0] + 0.5) % 1.0 - 0.5) * cols
            dyb = ((ky - gc[1] + 0.5) % 1.0 - 0.5) * rows
            h = np.fft.ifft2(F * np.exp(-(dxb ** 2 + dyb ** 2) / (2 * sigma_bins ** 2)))
            hd = h * np.exp(-2j * np.pi * (gc[0] * xx + gc[1] * yy))
            gx = np.angle(hd[:, 1:] * np.conj(hd[:, :-1]))[:-1, :] / (2 * np.pi)
            gy = np.angle(hd[1:, :] * np.conj(hd[:-1, :]))[:, :-1] / (2 * np.pi)
            w = (np.abs(hd[:-1, :-1]) ** 2)
            gx, gy, w = gx[inner], gy[inner], w[inner]
            gc = gc + np.array([(gx * w).sum() / w.sum(), (gy * w).sum() / w.sum()])
        # tile scatter -> standard error of the mean
        ty = np.array_split(np.arange(w.shape[0]), tiles)
        tx = np.array_split(np.arange(w.shape[1]), tiles)
        means = []
        for a in ty:
            for b in tx:
                ww = w[np.ix_(a, b)]
                means.append([(gx[np.ix_(a, b)] * ww).sum() / ww.sum(), (gy[np.ix_(a, b)] * ww).sum() / ww.sum()])
        means = np.array(means)
        out[n] = gc
        sig[n] = means.std(0, ddof=1) / np.sqrt(len(means))
    return out, sig
