"""Lattice of an image from its spectrum: Bragg peaks, the periodic reference image, refined g vectors.

All reciprocal vectors here are in cycles per pixel, [kx, ky] (kx along columns = x, ky along rows = y),
the FFT convention of :func:`numpy.fft.fftfreq`. A lattice image is a sum of sharp Bragg peaks; scan
row jitter moves part of their power into diffuse streaks along ky, while linear drift only moves the
peaks. The *periodic reference* (:func:`periodic_reference`) is the strictly periodic lattice fitted to
the image on the harmonics of its refined reciprocal basis: free of noise and of jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..gpa.core import periodic_component
from ..peaks.spots import radial_median


@dataclass
class LatticePeaks:
    """Bragg peaks of an image spectrum.

    k: (n, 2) peak positions [kx, ky] in cycles/px (one of each ±k pair, ky > 0 or ky = 0, kx > 0);
    strength: (n,) peak power over the local (radial median) background.
    """

    k: np.ndarray
    strength: np.ndarray


def _kgrid(shape):
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    return kx, ky


def find_peaks(image: np.ndarray, threshold: float = 25.0, dc_bins: float = 3.0,
               max_peaks: int = 40) -> LatticePeaks:
    """Bragg peaks of ``image``: compact local maxima of the smoothed power spectrum ``threshold`` times
    above the radial median background (the noise and diffuse level at the same |k|).

    dc_bins: frequencies below this many FFT bins (mean level, slow intensity variations) are no peaks.
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
    bg = radial_median(Ps, rbin)                            # the one radial median (temtwin.peaks.spots)
    bg = np.maximum(bg, 1e-12 * max(float(Ps.max()), 1e-30))
    ratio = Ps / bg[rbin]
    locmax = (Ps == ndimage.maximum_filter(Ps, size=5, mode="wrap")) & (ratio > threshold) & (rb > dc_bins + 1)
    half = (yy > cy) | ((yy == cy) & (xx > cx))
    # Bragg peaks are compact; the maxima along a row-jitter streak (elongated along ky) or an edge
    # streak are not: the power 2 bins away along ky and along kx must fall below half the peak's
    compact = np.ones_like(locmax)
    for ax in (0, 1):
        for sh in (2, -2):
            compact &= np.roll(Ps, sh, axis=ax) < 0.5 * Ps
    sel = np.flatnonzero((locmax & half & compact).ravel())
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
    return LatticePeaks(k=k, strength=strength)


def _gauss_reduce(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lagrange-Gauss reduction of a 2D basis: |g1| <= |g2|, |g1·g2| <= |g1|²/2 (angle in [60°, 120°])."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    for _ in range(50):
        if np.dot(b, b) < np.dot(a, a):
            a, b = b, a
        m = np.round(np.dot(a, b) / np.dot(a, a))
        if m == 0:
            break
        b = b - m * a
    if np.dot(b, b) < np.dot(a, a):
        a, b = b, a
    return np.array([a, b])


def index_fraction(G: np.ndarray, k: np.ndarray, tol: float = 0.1) -> float:
    """Fraction of the peaks ``k`` (n, 2) whose (h, k) indices on the basis ``G`` are integers within ``tol``."""
    hk = np.linalg.solve(np.asarray(G, float).T, np.asarray(k, float).T).T
    return float(np.mean(np.all(np.abs(hk - np.round(hk)) <= tol, axis=1)))


def reduced_basis(k: np.ndarray, strength: np.ndarray, n_short: int = 12, n_strong: int = 8,
                  tol: float = 0.1) -> np.ndarray | None:
    """The reduced reciprocal basis (2, 2) [g1; g2] (cycles/px) of the lattice the peaks belong to, or None.

    Candidates are the Gauss-reduced pairs of the ``n_short`` shortest and ``n_strong`` strongest peaks.
    A spurious peak (noise, a jitter streak) lies within ``tol`` of a node of any candidate lattice with
    the same probability (2 tol)², so the indexed peaks separate the lattices that index the real
    reflections from those that miss some; each peak is weighted by 1 + ln(strength / weakest strength)
    (a marginal peak counts little, a weak real reflection such as the (100) of a centred cell with two
    species still counts), and among the lattices within 5 % of the best indexed weight the coarsest
    reciprocal lattice (the smallest real-space cell) is chosen.
    """
    k = np.asarray(k, float).reshape(-1, 2)
    if len(k) < 2:
        return None
    idx = set(np.argsort(np.hypot(*k.T))[:n_short].tolist())
    idx |= set(np.argsort(-np.asarray(strength))[:n_strong].tolist())
    cand = k[sorted(idx)]
    st = np.maximum(np.asarray(strength, float), 1e-30)
    w = np.log(st / st.min()) + 1.0          # a strong reflection outweighs a marginal (possibly spurious) one
    bases = []
    for i in range(len(cand)):
        for j in range(i + 1, len(cand)):
            g1, g2 = cand[i], cand[j]
            if abs(g1[0] * g2[1] - g1[1] * g2[0]) < 0.2 * np.hypot(*g1) * np.hypot(*g2):
                continue
            G = _gauss_reduce(g1, g2)
            hk = np.linalg.solve(G.T, k.T).T
            count = float(w[np.all(np.abs(hk - np.round(hk)) <= tol, axis=1)].sum())
            bases.append((count, abs(G[0, 0] * G[1, 1] - G[0, 1] * G[1, 0]), G))
    if not bases:
        return None
    top = max(b[0] for b in bases)
    ok = [b for b in bases if b[0] >= top - 0.05 * w.sum()]
    if not ok:
        return None
    return max(ok, key=lambda b: (round(b[1], 9), b[0]))[2]


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


def harmonics(G_px: np.ndarray, kmax: float = 0.45) -> np.ndarray:
    """All lattice vectors h g1 + k g2 (one of each ± pair, not 0) with |g| ≤ ``kmax`` cycles/px, (n, 2)."""
    G = np.asarray(G_px, float).reshape(2, 2)
    gmin = min(np.hypot(*G[0]), np.hypot(*G[1]))
    sin = abs(G[0, 0] * G[1, 1] - G[0, 1] * G[1, 0]) / (np.hypot(*G[0]) * np.hypot(*G[1]))
    m = int(np.ceil(kmax / (gmin * max(sin, 0.2)))) + 1
    h, k = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1))
    h, k = h.ravel(), k.ravel()
    half = (h > 0) | ((h == 0) & (k > 0))
    g = h[half, None] * G[0] + k[half, None] * G[1]
    return g[np.hypot(*g.T) <= kmax]


def periodic_reference(image: np.ndarray, G_px: np.ndarray, kmax: float = 0.45, max_harmonics: int = 200) -> np.ndarray:
    """The strictly periodic lattice of ``image``: mean + Σ 2 Re(c_g exp(2πi g·r)) over the harmonics g of the
    reciprocal basis ``G_px`` (2, 2) cycles/px, with c_g the Hann-windowed mean of I(r) exp(-2πi g·r).

    Unlike a mask on the FFT grid, this has no leakage (the g are off-grid, exact) and no bandwidth: any
    departure from the periodic lattice (row jitter, noise) stays out of it. float64 (rows, cols)."""
    img = np.asarray(image, np.float64)
    rows, cols = img.shape
    g = harmonics(G_px, kmax)
    wy, wx = np.hanning(rows + 2)[1:-1], np.hanning(cols + 2)[1:-1]
    mean = float((wy[:, None] * img * wx[None, :]).sum() / (wy.sum() * wx.sum()))
    WI = (img - mean) * wy[:, None] * wx[None, :]
    y, x = np.arange(rows, dtype=float), np.arange(cols, dtype=float)
    ey = np.exp(-2j * np.pi * np.outer(g[:, 1], y))          # (n, rows)
    ex = np.exp(-2j * np.pi * np.outer(g[:, 0], x))          # (n, cols)
    c = np.einsum("nr,rc,nc->n", ey, WI, ex, optimize=True) / (wy.sum() * wx.sum())
    if len(c) > max_harmonics:
        keep = np.argsort(-np.abs(c))[:max_harmonics]
        g, c, ey, ex = g[keep], c[keep], ey[keep], ex[keep]
    R = 2.0 * np.einsum("n,nr,nc->rc", c, np.conj(ey), np.conj(ex), optimize=True).real
    return R + mean
