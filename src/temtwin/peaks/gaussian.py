"""Detector 1: blob detection on the significance map + 2D Gaussian fits.

* Blobs: local maxima of the spectrum's Gaussian-equivalent significance map ``q`` (N(0, 1) for
  noise whatever the number of averaged tiles, see :mod:`.fftprep`) above a threshold are
  candidates.  The threshold is set from the noise statistics, not from hand-fitted curves: the
  map's roughness (gradient variance) is measured on the spectrum itself and the threshold leaves
  ``false_alarms`` expected noise maxima per spectrum (expected Euler characteristic of a random
  field, :func:`noise_threshold`).
* Fits: a 2D Gaussian plus a constant is fitted (batched Levenberg-Marquardt, every candidate at
  once) to the background-subtracted power in a small patch around each candidate.  A candidate is
  kept when the fit converges to a positive, compact, round-enough blob near the candidate.

All positions are float grid (row, col) positions of the standard grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fftprep import Spectrum

def noise_threshold(area_px: float, roughness: float, false_alarms: float) -> float:
    """Threshold on a unit-variance significance map leaving ``false_alarms`` expected noise maxima.

    Expected Euler characteristic of a Gaussian random field above t (Adler; Worsley):
    ``E[#maxima above t] ~ area * roughness / (2 pi)^1.5 * t * exp(-t^2 / 2)``, with ``roughness`` =
    sqrt(det) of the gradient covariance (per px^2) measured on the map itself; solved for t.  On
    simulated Hann-windowed Welch noise it holds (slightly conservative) from 1 to 30 tiles.
    """
    k = max(area_px * roughness / (2 * np.pi) ** 1.5, 1e-12)
    fa = max(false_alarms, 1e-12)
    t = 3.0
    for _ in range(30):
        t = np.sqrt(max(2.0 * np.log(max(k * t / fa, 1.0 + 1e-12)), 1.0))
    return float(t)


def roughness(d: np.ndarray, valid: np.ndarray) -> float:
    """sqrt(det) of the gradient covariance of a unit-variance map (robust finite differences)."""
    gx = np.diff(d, axis=1)[valid[:, 1:] & valid[:, :-1]]
    gy = np.diff(d, axis=0)[valid[1:] & valid[:-1]]
    if gx.size < 8 or gy.size < 8:
        return 1.0
    lx = (1.4826 * np.median(np.abs(gx - np.median(gx)))) ** 2
    ly = (1.4826 * np.median(np.abs(gy - np.median(gy)))) ** 2
    return float(np.sqrt(lx * ly))


def detection_map(sp: Spectrum):
    """(Significance map ``q``, its threshold for 1 expected false alarm: dict area, roughness).

    The pixel significance itself is the detection statistic: the Hann window already spreads noise
    over a reflection's main lobe, so further smoothing lowers a reflection's significance.
    """
    v = sp.valid
    return sp.q, {"area": float(v.sum()), "roughness": roughness(sp.q, v)}


def local_maxima(d: np.ndarray, threshold: float, valid: np.ndarray, size: int = 3, border: int = 1):
    """(rows, cols) of local maxima of ``d`` above ``threshold`` inside ``valid`` (eroded by ``border``)."""
    mx = ndimage.maximum_filter(d, size=size, mode="constant", cval=-np.inf)
    inner = ndimage.binary_erosion(valid, iterations=border) if border else valid
    r, c = np.nonzero((d == mx) & (d >= threshold) & inner)
    return r, c


def fit_gaussians(img: np.ndarray, rows, cols, half: int = 2, iters: int = 12):
    """Batched 2D Gaussian + constant fits to ``img`` around integer positions (rows, cols).

    Model: ``A exp(-(dr^2 / 2 sr^2 + dc^2 / 2 sc^2)) + b`` on the (2 half + 1)^2 patch.  Returns a
    dict of arrays: ``row``, ``col`` (float positions), ``amp``, ``sr``, ``sc``, ``offset``, ``ok``
    (converged, positive, centre within the patch).
    """
    rows = np.asarray(rows, int)
    cols = np.asarray(cols, int)
    n = len(rows)
    out = {k: np.zeros(n) for k in ("row", "col", "amp", "sr", "sc", "offset")}
    out["ok"] = np.zeros(n, bool)
    if n == 0:
        return out
    H, W = img.shape
    off = np.arange(-half, half + 1)
    RR = np.clip(rows[:, None, None] + off[None, :, None], 0, H - 1)
    CC = np.clip(cols[:, None, None] + off[None, None, :], 0, W - 1)
    y = img[RR, CC].reshape(n, -1).astype(np.float64)
    dr = np.broadcast_to(off[:, None], (2 * half + 1, 2 * half + 1)).ravel().astype(float)
    dc = np.broadcast_to(off[None, :], (2 * half + 1, 2 * half + 1)).ravel().astype(float)
    # initial values: moments of the positive part
    b0 = np.minimum(y.min(1), np.median(y, 1))
    yp = np.maximum(y - b0[:, None], 0)
    s = yp.sum(1) + 1e-30
    p = np.stack([y.max(1) - b0, (yp * dr).sum(1) / s, (yp * dc).sum(1) / s,
                  np.full(n, 0.9), np.full(n, 0.9), b0], 1)
    scale = np.maximum(np.abs(p[:, 0]), 1e-30)
    y = y / scale[:, None]
    p[:, 0] /= scale
    p[:, 5] /= scale
    lam = np.full(n, 1e-2)

    def model(p):
        er = np.exp(-0.5 * ((dr[None] - p[:, 1:2]) ** 2 / p[:, 3:4] ** 2
                            + (dc[None] - p[:, 2:3]) ** 2 / p[:, 4:5] ** 2))
        return p[:, 0:1] * er + p[:, 5:6], er

    f, er = model(p)
    cost = ((y - f) ** 2).sum(1)
    for _ in range(iters):
        A = p[:, 0:1]
        ur = (dr[None] - p[:, 1:2]) / p[:, 3:4] ** 2
        uc = (dc[None] - p[:, 2:3]) / p[:, 4:5] ** 2
        J = np.stack([er, A * er * ur, A * er * uc, A * er * ur * (dr[None] - p[:, 1:2]) / p[:, 3:4],
                      A * er * uc * (dc[None] - p[:, 2:3]) / p[:, 4:5], np.ones_like(er)], 2)
        r = y - f
        JTJ = np.einsum("nki,nkj->nij", J, J)
        JTr = np.einsum("nki,nk->ni", J, r)
        D = np.einsum("nii->ni", JTJ)
        Aug = JTJ + lam[:, None, None] * (D[:, :, None] * np.eye(6)[None] + 1e-9 * np.eye(6)[None])
        try:
            step = np.linalg.solve(Aug, JTr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(p)
        pn = p + step
        pn[:, 3:5] = np.clip(np.abs(pn[:, 3:5]), 0.2, 4.0)
        fn, ern = model(pn)
        cn = ((y - fn) ** 2).sum(1)
        better = cn < cost
        p = np.where(better[:, None], pn, p)
        f = np.where(better[:, None], fn, f)
        er = np.where(better[:, None], ern, er)
        cost = np.where(better, cn, cost)
        lam = np.where(better, lam * 0.3, lam * 5.0)
    out["row"] = rows + p[:, 1]
    out["col"] = cols + p[:, 2]
    out["amp"] = p[:, 0] * scale
    out["sr"], out["sc"] = p[:, 3], p[:, 4]
    out["offset"] = p[:, 5] * scale
    out["ok"] = (p[:, 0] > 0) & (np.abs(p[:, 1]) <= half) & (np.abs(p[:, 2]) <= half) & np.isfinite(p).all(1)
    return out


def refine_positions(sp: Spectrum, rows, cols, half: int = 2):
    """Sub-pixel refinement: Gaussian fits to the log-power around the nearest integer positions.

    The Hann main lobe's log-power is close to a parabola, so a Gaussian fit on the power's
    logarithm (background removed, floored) locates a noise-free reflection to a few hundredths of a
    pixel.  Returns (rows, cols, fit dict); positions whose fit fails keep the input.
    """
    rows = np.asarray(rows, float)
    cols = np.asarray(cols, float)
    ri = np.clip(np.rint(rows).astype(int), 0, sp.size - 1)
    ci = np.clip(np.rint(cols).astype(int), 0, sp.size - 1)
    excess = np.maximum(sp.power - sp.mu, 0.0) + 1e-3 * sp.sd
    fit = fit_gaussians(excess, ri, ci, half=half)
    ok = fit["ok"] & (np.hypot(fit["row"] - rows, fit["col"] - cols) <= 1.5)
    return np.where(ok, fit["row"], rows), np.where(ok, fit["col"], cols), fit, ok


def detect_gaussian(sp: Spectrum, false_alarms: float = 0.05, max_width_px: float = 3.0, max_aspect: float = 3.0):
    """Detector 1 on a spectrum.  Returns dict ``rows``, ``cols`` (refined), ``score`` (smoothed
    significance in noise units), ``amp`` (fitted peak excess power), ``threshold``."""
    dn, par = detection_map(sp)
    t = noise_threshold(par["area"], par["roughness"], false_alarms)
    r, c = local_maxima(dn, t, sp.inner(), border=0)
    fit = fit_gaussians(np.maximum(sp.power - sp.mu, 0.0), r, c, half=2)
    width_ok = (fit["sr"] <= max_width_px) & (fit["sc"] <= max_width_px)
    aspect = np.maximum(fit["sr"], fit["sc"]) / np.maximum(np.minimum(fit["sr"], fit["sc"]), 1e-6)
    near = np.hypot(fit["row"] - r, fit["col"] - c) <= 1.5
    keep = fit["ok"] & width_ok & (aspect <= max_aspect) & near
    return {"rows": fit["row"][keep], "cols": fit["col"][keep], "score": dn[r[keep], c[keep]],
            "amp": fit["amp"][keep], "threshold": t}
