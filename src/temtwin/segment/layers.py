"""Multilayer-device overview segmentation (``segment.method: layers``; chosen by ``auto`` for a
lattice-free image whose contrast is layered).

Low-magnification cross-sections of devices are stacks of layers (gates, spacers, oxides, channels,
substrates) crossed by a few inclusions (nanowires, particles, fins, trenches).  Their thinnest layers
are only 2-8 pixels wide, far below the smoothing footprint an edge detector needs in 2D, but every
layer runs across the whole field of view, so averaging *along* the layers gives a 1D profile whose
noise is √(number of columns) times lower.  The method:

1. Layer normal: the dominant orientation of the structure tensor of the smoothed image (angle θ of
   the normal n = (cos θ, sin θ) from +x towards +y, chosen pointing down the image, y > 0); its
   coherence says how layered the image is.
2. Layer frame: the image resampled (bilinear) on a grid with rows along n (u) and columns along the
   layers (v), 1 pixel spacing.
3. Profiles: the frame is cut into lateral bands; each band's mean profile along u, and their median
   (robust to inclusions that cover a minority of the bands).
4. Interfaces: maxima of the profile derivative (derivative of Gaussian, σ = ``profile_sigma_px``)
   kept when (a) the derivative has the same sign in the bands (t statistic across the bands ≥
   ``min_t``), (b) the step is sharp (≥ ``min_sharpness`` times the lower quartile of the derivative within
   ±32 pixels: a smooth thickness ramp or a bend contour is not an interface) and (c) the step height is
   at least ``min_step_noise`` times the pixel noise.
   Then a piecewise-constant model of the median profile (blurred unit steps of one edge width,
   levels by least squares) adds, greedily, the steps the derivative maxima miss: two steps of the
   same sign a few pixels apart (a thin layer in a staircase of levels: one maximum) and a weak step
   in the flank of a strong one; each must lower the residual significantly, agree in sign and size
   across the bands, and be ≥ 1.5 px from the others (:func:`add_hidden_steps`).  A step inside a
   thin layer (two interfaces < 10 px apart) is tried once more with the interfaces beside it free
   (their fit without it took part of it up) and kept on a sign test of the bands.  Interfaces
   closer than 3 edge widths + 2 px to another take the positions of the step fit (their derivative
   maxima overlap: pushed apart, or merged in a staircase).
5. Edge snapping: each interface is followed column by column to the derivative maximum of the same
   sign within ± min(``max_roughness_px``, half the distance to its neighbours), on the image
   smoothed by σ = ``lateral_sigma_px`` along the layers; positions are median-filtered along v and
   fall back to the profile position where the local step is weak (an inclusion interrupts it).
   The interfaces of thin layers (runs < 6 px apart) are then refined column by column by a fit of
   blurred steps between the run's levels (:func:`_refine_thin`), keeping the step fit's mean position.
6. Inclusions: pixels whose smoothed intensity departs from their layer's level by more than
   ``inclusion_z`` times the layer's robust spread (MAD) and the smoothed noise; opened by a 3×3
   square (slivers < 3 px along misplaced interfaces vanish), components smaller than the minimum
   area dropped; an accepted inclusion extends, within its extent along the layers, over the pixels
   closer to its level than to their layer's (a fin or trench crossing a layer of nearly its level);
   each is split in two intensity levels (Otsu) when its interior (2 px in from the outline) is
   bimodal (separability ≥ ``SPLIT_ETA``), the levels differ by more than ``inclusion_z`` smoothed
   noise and both parts are large enough (core/shell nanowires).
7. Regions: one per layer (a layer cut by an inclusion keeps one label) and one per inclusion part;
   pieces smaller than the minimum area join the neighbour they border most.

All positions are in pixels of the input image; labels 1..n are numbered top to bottom, then left to
right (:func:`temtwin.segment.canny.order_labels`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

log = logging.getLogger("temtwin")

#: a hidden step (:func:`add_hidden_steps`) lowers the residual by at least this many noise σ
HIDDEN_Z = 4.0
#: and is at least this fraction of the larger step beside it
HIDDEN_MIN_REL = 0.15
#: a layer whose median width (px) is below this is not a region (a sliver between misplaced interfaces)
THIN_DROP_PX = 1.5
#: an inclusion is split in two levels (core/shell) when Otsu's separability of its interior is at least
SPLIT_ETA = 0.8
#: a crowded interface takes the step fit's position when the fitted model's derivative maximum lies
#: within this (px) of the observed one (95 % of the generated family's thin layers do)
CONSISTENT_PX = 0.5
#: edge width (px) of an interface within one column of the frame (the optical blur; the roughness
#: broadens only the profiles averaged along the layers)
THIN_EDGE_PX = 1.0
#: two steps of the same sign closer than this (px) share one derivative maximum (a staircase)
STAIR_PX = 6.0
#: a step inside a thin layer must have the same sign in the bands with this binomial p-value
THIN_SIGN_P = 1e-3
#: inside a thin layer (two interfaces < 10 px apart) the added step's residual decrease need only reach
#: this many noise σ (instead of ``HIDDEN_Z``): the band sign test (``THIN_SIGN_P``) is independent
#: evidence on top of it, and the two rough interfaces beside the step take up part of its gain
#: (chosen on seeds 0-11 of the generated family: 4 -> 2.5 resolves a same-sign staircase; held out unchanged)
THIN_Z = 2.5

DEFAULTS: dict[str, Any] = {
    "min_coherence": 0.2,
    "profile_sigma_px": 1.0,
    "profile_scales_px": [1.0, 2.0, 4.0],
    "band_px": 32,
    "min_z": 8.0,
    "min_sign_fraction": 0.65,
    "min_sharpness": 3.0,
    "min_step_noise": 0.5,
    "lateral_sigma_px": 2.0,
    "max_roughness_px": 12.0,
    "inclusion_z": 4.0,
    "inclusion_sigma_px": 2.5,
    "inclusion_core_ratio": 1.25,
    "inclusion_edge_ratio": 0.35,
    "inclusion_edge_px": 6.0,
    "min_width_px": 3.0,
    "max_px": 4096,
}


@dataclass
class LayerModel:
    """theta_deg: angle of the layer normal (from +x towards +y); coherence in [0, 1];
    interfaces_px: interface positions along the normal in the layer frame (rows of the frame);
    steps: step height (image units, signed, downwards along n) of each interface;
    noise: pixel noise (image units)."""

    theta_deg: float
    coherence: float
    interfaces_px: np.ndarray
    steps: np.ndarray
    noise: float
    info: dict = field(default_factory=dict)


def pixel_noise(img: np.ndarray) -> float:
    """Robust white-noise standard deviation (image units) from horizontal neighbour differences."""
    d = np.diff(np.asarray(img, np.float64), axis=1).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def layer_normal(img: np.ndarray, sigma_px: float = 2.0) -> tuple[float, float]:
    """(θ in degrees, coherence): the dominant gradient direction of the image smoothed by ``sigma_px``
    (structure tensor summed over the image), pointing down the image (sin θ ≥ 0)."""
    s = ndi.gaussian_filter(np.asarray(img, np.float64), sigma_px)
    gy, gx = np.gradient(s)
    j11, j22, j12 = float(np.sum(gx * gx)), float(np.sum(gy * gy)), float(np.sum(gx * gy))
    tot = j11 + j22
    if tot <= 0:
        return 90.0, 0.0
    theta = 0.5 * np.degrees(np.arctan2(2 * j12, j11 - j22))
    coh = float(np.hypot(j11 - j22, 2 * j12) / tot)
    if theta < 0:
        theta += 180.0
    if theta >= 180.0 - 1e-9:
        theta -= 180.0
    return float(theta), coh


def _frame(shape, theta_deg: float):
    """Layer-frame geometry: unit normal n, tangent t, origins u0, v0 and frame size (nu, nv)."""
    th = np.radians(theta_deg)
    n = np.array([np.cos(th), np.sin(th)])        # (x, y)
    t = np.array([-np.sin(th), np.cos(th)])
    rows, cols = shape
    cx = np.array([0, cols - 1, 0, cols - 1], float)
    cy = np.array([0, 0, rows - 1, rows - 1], float)
    u = cx * n[0] + cy * n[1]
    v = cx * t[0] + cy * t[1]
    u0, v0 = np.floor(u.min()), np.floor(v.min())
    nu, nv = int(np.ceil(u.max() - u0)) + 1, int(np.ceil(v.max() - v0)) + 1
    return n, t, u0, v0, nu, nv


def to_frame(img: np.ndarray, theta_deg: float):
    """(frame image with NaN outside the input, geometry) — rows along the normal, columns along the
    layers, bilinear resampling at 1 pixel spacing."""
    n, t, u0, v0, nu, nv = _frame(img.shape, theta_deg)
    uu = (np.arange(nu) + u0)[:, None]
    vv = (np.arange(nv) + v0)[None, :]
    x = uu * n[0] + vv * t[0]
    y = uu * n[1] + vv * t[1]
    fr = ndi.map_coordinates(np.asarray(img, np.float32), [y, x], order=1, mode="constant", cval=np.nan)
    out = (x < -0.5) | (x > img.shape[1] - 0.5) | (y < -0.5) | (y > img.shape[0] - 0.5)
    fr[out] = np.nan
    return fr, (n, t, u0, v0)


def _fill_nan_rows(p: np.ndarray) -> np.ndarray:
    """Each row of ``p`` (bands × u) with NaNs replaced by the nearest finite value along u."""
    out = p.copy()
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    idx = np.where(~bad, np.arange(p.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = np.take_along_axis(out, idx, 1)
    bad2 = ~np.isfinite(out)
    if bad2.any():                                 # leading NaNs: first finite value after them
        rev = out[:, ::-1]
        idx = np.where(np.isfinite(rev), np.arange(p.shape[1])[None, :], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        out = np.take_along_axis(rev, idx, 1)[:, ::-1]
    return np.nan_to_num(out)


def band_profiles(fr: np.ndarray, band_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(profiles (bands, u), valid pixel count (bands, u)): mean of each lateral band of the frame."""
    nv = fr.shape[1]
    nb = max(3, min(48, nv // max(int(band_px), 4)))
    edges = np.linspace(0, nv, nb + 1).astype(int)
    ok = np.isfinite(fr)
    val = np.where(ok, fr, 0.0).astype(np.float64)
    s = np.add.reduceat(val, edges[:-1], axis=1).T
    c = np.add.reduceat(ok.astype(np.float64), edges[:-1], axis=1).T
    prof = np.where(c >= 2, s / np.maximum(c, 1), np.nan)
    return prof, c


def _interfaces_at(P, have, nb_u, npx, noise, s, c):
    """Candidate interfaces of the band profiles at one derivative scale ``s`` (px): (index,
    derivative of the median profile, its noise z-score, step height, sign fraction).

    The median over the bands is robust to what only a minority of bands show (grain boundaries,
    inclusions).  Its noise follows from the pixel noise: a band mean of ``npx`` pixels has σ/√npx, a
    derivative of Gaussian (scale s) of white noise has that times (4√π s³)^-1/2, and the median of B
    bands √(π/2)/√B of it; or, when larger, the robust spread (MAD) of the median derivative over
    the profile."""
    d_b = ndi.gaussian_filter1d(P, s, axis=1, order=1, mode="nearest")
    d_b = np.where(have, d_b, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.nanmedian(d_b, axis=0)
        frac = np.nanmean(np.sign(d_b) == np.sign(d)[None, :], axis=0)
        npx_u = np.nanmedian(np.where(have, npx, np.nan), axis=0)
    d = np.nan_to_num(d)
    frac = np.nan_to_num(frac)
    sd_bin = noise / np.sqrt(np.maximum(np.nan_to_num(npx_u), 1.0))
    sd_d = sd_bin / np.sqrt(4 * np.sqrt(np.pi) * s ** 3) * np.sqrt(np.pi / 2) / np.sqrt(np.maximum(nb_u, 1))
    # empirical noise of the median derivative (most positions lie between interfaces): it includes
    # correlated texture and detector noise that the neighbour differences miss
    sd_emp = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    z = np.abs(d) / np.maximum(np.maximum(sd_d, sd_emp), 1e-12)
    a = np.abs(d)
    # sharpness: the peak against the lower quartile of |derivative| within ±32 px (a ramp has ratio
    # ~1; the quartile, not the median, so that the flanks of the other interfaces of a dense stack
    # do not count as background)
    bg = ndi.percentile_filter(a, 25, size=65, mode="nearest")
    peak = (a >= np.roll(a, 1)) & (a > np.roll(a, -1))
    peak[[0, -1]] = False
    step = a * np.sqrt(2 * np.pi) * np.hypot(s, 0.5)     # step height of an ideal (slightly blurred) edge
    keep = (peak & (z >= c["min_z"]) & (frac >= c["min_sign_fraction"])
            & (a >= c["min_sharpness"] * np.maximum(bg, 1e-12))
            & (step >= c["min_step_noise"] * noise) & (nb_u >= 3))
    idx = np.nonzero(keep)[0]
    return idx, d, z, step, frac


def refine_normal(prof: np.ndarray, counts: np.ndarray, nv: int, max_lag: int = 8) -> float | None:
    """Correction (degrees, to add to θ) of the layer normal from the drift of the band profiles:
    each band's derivative profile is cross-correlated with the median one (lags ±``max_lag`` px,
    parabolic sub-pixel peak), and a straight line fitted to the shifts against the band centres
    (its slope is −tan Δθ).  None when fewer than 3 bands give a peak."""
    P = _fill_nan_rows(prof)
    d_b = ndi.gaussian_filter1d(P, 1.0, axis=1, order=1, mode="nearest")
    d_b = np.where(np.isfinite(prof) & (counts >= 2), d_b, 0.0)
    ref = np.median(d_b, axis=0)
    nb, nu = d_b.shape
    lags = np.arange(-max_lag, max_lag + 1)
    F = np.fft.rfft(d_b, n=2 * nu, axis=1)
    R = np.fft.rfft(ref, n=2 * nu)
    cc = np.fft.irfft(F * np.conj(R)[None, :], n=2 * nu, axis=1)[:, lags % (2 * nu)]
    j = np.argmax(cc, axis=1)
    ok = (j > 0) & (j < len(lags) - 1) & (cc.max(1) > 0)
    if ok.sum() < 3:
        return None
    r = np.arange(nb)
    y0, y1, y2 = cc[r, np.clip(j - 1, 0, None)], cc[r, j], cc[r, np.clip(j + 1, None, len(lags) - 1)]
    den = y0 - 2 * y1 + y2
    shift = lags[j] + np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    centres = (np.arange(nb) + 0.5) * nv / nb
    k = np.polyfit(centres[ok], shift[ok], 1)[0]
    return float(-np.degrees(np.arctan(k)))     # an interface u = c - v·tan Δθ in the frame


def find_interfaces(prof: np.ndarray, counts: np.ndarray, noise: float, c: dict):
    """Interfaces of the band profiles (rows = bands): (positions (sub-pixel), signed steps, t).

    Scales ``profile_scales_px`` from fine to coarse: a fine scale resolves thin layers, a coarse one
    finds rough interfaces (whose fine derivative wanders from band to band).  A candidate at a
    coarser scale is added only where no interface of the same sign was found within ±(1.5 s + 1)
    px; two candidates of the same sign closer than 2.5 px are one interface (the stronger)."""
    P = _fill_nan_rows(prof)
    have = np.isfinite(prof) & (counts >= 2)
    nb_u = have.sum(0)
    found: list[tuple[float, float, float, float]] = []      # (position, signed step, t, scale)
    for s in sorted(float(x) for x in c["profile_scales_px"]):
        idx, d, tstat, step, _ = _interfaces_at(P, have, nb_u, counts, noise, s, c)
        a = np.abs(d)
        cand = []
        for i in idx:                # loop over candidate interfaces (tens)
            y0, y1, y2 = a[i - 1], a[i], a[i + 1]
            den = y0 - 2 * y1 + y2
            p = i + (0.5 * (y0 - y2) / den if den < 0 else 0.0)
            cand.append((float(p), float(np.sign(d[i]) * step[i]), float(tstat[i]), s))
        # same-sign candidates closer than 2.5 px at this scale: keep the stronger
        cand.sort(key=lambda q: -abs(q[1]))
        sel: list[tuple[float, float, float, float]] = []
        for q in cand:
            if all(abs(q[0] - r[0]) >= 2.5 or np.sign(q[1]) != np.sign(r[1]) for r in sel):
                sel.append(q)
        for q in sel:
            if all(abs(q[0] - r[0]) > 1.5 * s + 1 or (np.sign(q[1]) != np.sign(r[1]) and abs(q[0] - r[0]) > 1.5)
                   for r in found):
                found.append(q)
    found.sort()
    # a weak interface next to a much stronger one of the same sign (within the roughness window)
    # is the tail of the rough strong one
    rw = 1.5 * float(c["max_roughness_px"])
    found = [q for q in found if not any(np.sign(r[1]) == np.sign(q[1]) and abs(r[0] - q[0]) <= rw
                                         and abs(q[1]) < 0.15 * abs(r[1]) for r in found)]
    if not found:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    arr = np.asarray(found)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _step_basis(u: np.ndarray, pos, sigma: float) -> np.ndarray:
    """Design matrix (len(u), 1 + K): a constant and one blurred unit step Φ((u − p)/σ) per position."""
    from scipy.special import ndtr

    pos = np.asarray(pos, float)
    return np.column_stack([np.ones_like(u)] + [ndtr((u - p) / sigma) for p in pos])


def _fit_steps(u, y, pos, sigma):
    """(levels, residual sum of squares) of the least-squares blurred-step model at fixed positions."""
    X = _step_basis(u, pos, sigma)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return coef, float(r @ r)


def add_hidden_steps(prof: np.ndarray, counts: np.ndarray, pos, steps, tst, c: dict, max_add: int = 8):
    """Interfaces that the derivative maxima miss, found by a piecewise-constant fit of the profile.

    Two steps of the same sign closer than about twice the edge blur (a thin layer in a staircase of
    levels) give one derivative maximum, and a weak step beside a strong one is hidden in its flank.
    The median band profile is modelled as a constant plus blurred unit steps Φ((u − p_k)/σ_e) at the
    known interfaces (levels by linear least squares; positions and the common edge width σ_e (px)
    by a nonlinear fit); then, greedily, the step whose addition lowers the residual sum of squares
    most is added when (a) the decrease is ≥ ``HIDDEN_Z``² times the residual variance (robust, from
    the plateaus) times the number of samples an edge spans, (b) the band profiles, fitted with the
    same positions, agree on its sign (fraction ≥ ``min_sign_fraction``, t across the bands ≥
    ``min_z``), (c) its height is ≥ ``min_step_noise`` pixel noise and ≥ ``HIDDEN_MIN_REL`` of the
    larger adjacent step and (d) it is ≥ 1.5 px from the other interfaces.  Returns (positions,
    steps, t) sorted, the added ones included."""
    from scipy.optimize import least_squares

    pos = list(map(float, pos))
    if not pos:
        return np.asarray(pos), np.asarray(steps), np.asarray(tst)
    have = np.isfinite(prof) & (counts >= 2)
    nb_u = have.sum(0)
    ok = nb_u >= max(3, 0.5 * nb_u.max())          # not the frame's corners (few bands)
    if ok.sum() < 16:
        return np.asarray(pos), np.asarray(steps), np.asarray(tst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(have, prof, np.nan), axis=0)
    u = np.nonzero(ok & np.isfinite(med))[0].astype(float)
    y = med[u.astype(int)]
    Pb = _fill_nan_rows(prof)[:, u.astype(int)]
    wb = have[:, u.astype(int)]
    lo, hi = u[0], u[-1]

    def refit(p0, s0):
        p0 = np.asarray(p0, float)

        def res(q):
            X = _step_basis(u, q[:-1], q[-1])
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            return y - X @ coef
        # each position within ±2 px and short of the midpoints to its neighbours (less 0.75 px):
        # the fit keeps the order and a 1.5 px separation (two opposite steps of a thin layer
        # would otherwise collapse onto one position)
        srt = np.sort(p0)
        mid = 0.5 * (srt[1:] + srt[:-1])
        rank = np.searchsorted(srt, p0)
        lo_k = np.concatenate([[-np.inf], mid + 0.75])[rank]
        hi_k = np.concatenate([mid - 0.75, [np.inf]])[rank]
        lb = np.concatenate([np.maximum(np.maximum(p0 - 2.0, lo), np.minimum(lo_k, p0)), [0.3]])
        ub = np.concatenate([np.minimum(np.minimum(p0 + 2.0, hi), np.maximum(hi_k, p0)), [6.0]])
        x0 = np.clip(np.concatenate([p0, [s0]]), lb + 1e-6, ub - 1e-6)
        q = least_squares(res, x0, bounds=(lb, ub), x_scale=1.0, max_nfev=60).x
        return q[:-1], float(q[-1])

    order = np.argsort(pos)
    pos_a = np.asarray(pos)[order]
    orig = np.ones(len(pos_a), bool)
    p_fit, sig = refit(pos_a, 1.5)
    noise_pix = float(c.get("_noise", 0.0))
    added = 0
    grid = np.arange(lo + 1.0, hi - 1.0, 0.25)
    def _new_step_ok(q, sq, kn, thin: bool = False, height_only: bool = False) -> bool:
        """The tests (b)-(d) of the step ``kn`` of the model with positions ``q`` and edge width ``sq``:
        band consistency (band profiles fitted at the same positions), height."""
        Xq = _step_basis(u, q, sq)
        hb = np.full(Pb.shape[0], np.nan)
        for b in range(Pb.shape[0]):      # loop over bands (≤ 48), each a small least-squares fit
            m = wb[b]
            if m.sum() > max(len(q) + 4, 0.5 * len(u)):
                hb[b] = np.linalg.lstsq(Xq[m], Pb[b, m], rcond=None)[0][kn + 1]
        hb = hb[np.isfinite(hb)]
        coef_q, _ = _fit_steps(u, y, q, sq)
        h = float(coef_q[kn + 1])
        nbrs = [abs(coef_q[i + 1]) for i in (kn - 1, kn + 1) if 0 <= i < len(q)]
        if height_only:
            return bool(abs(h) >= float(c["min_step_noise"]) * noise_pix
                        and abs(h) >= HIDDEN_MIN_REL * max(nbrs + [0.0]))
        if hb.size < 3:
            return False
        t_b = abs(np.median(hb)) / (1.858 * np.median(np.abs(hb - np.median(hb))) / np.sqrt(hb.size) + 1e-30)
        log.debug("  new %.1f h %.3g nbrs %s t %.1f", q[kn], h, nbrs, t_b)
        agree = int(np.sum(np.sign(hb) == np.sign(h)))
        if thin:
            # inside a thin layer the band fits are ill-conditioned (the rough interfaces beside the
            # step trade height with it): their spread says little, their signs still do — a sign
            # test (binomial, two-sided p <= THIN_SIGN_P) replaces the t test
            from math import comb

            tail = sum(comb(int(hb.size), j) for j in range(agree, int(hb.size) + 1)) / 2.0 ** hb.size
            consistent = 2.0 * tail <= THIN_SIGN_P
        else:
            consistent = t_b >= float(c["min_z"])
        return bool(agree / hb.size >= float(c["min_sign_fraction"]) and consistent
                    and abs(h) >= float(c["min_step_noise"]) * noise_pix
                    and abs(h) >= HIDDEN_MIN_REL * max(nbrs + [0.0]))

    band_rejected: list[float] = []      # positions (±0.5 px) whose band model selection failed: not refitted

    def _band_select(q, sq, kn) -> bool:
        """Model selection on the band profiles for the step ``kn`` beside another interface (within
        ``STAIR_PX``: a staircase or a thin layer), where the bands' heights at common positions
        scatter (each band sees the rough interfaces elsewhere).  In a window of ±10 px each band is
        fitted with and without the step, the positions within 6 px free per band (±2 px), the edge
        width ``sq`` fixed.  Accepted when the sum over bands of the residual decreases, each in
        units of the band's variance (its plateaus' or the window residual's, the larger), exceeds
        its expectation under no step (2 per band: a height and a position) by ``HIDDEN_Z``
        standard deviations (√(4 n_bands)), the bands' heights agree in sign (fraction ≥
        ``min_sign_fraction``) and the model places the observed derivative maxima nearby within
        ``CONSISTENT_PX``."""
        if any(abs(q[kn] - x) <= 0.5 for x in band_rejected):
            return False
        ok = _band_select_new(q, sq, kn)
        if not ok:
            band_rejected.append(float(q[kn]))
        return ok

    def _band_select_new(q, sq, kn) -> bool:
        win = np.abs(u - q[kn]) <= 10.0
        inw = np.nonzero(np.abs(q - q[kn]) <= 10.0 + 3.0 * sq)[0]
        free = inw[np.abs(q[inw] - q[kn]) <= 6.0]
        X_all = _step_basis(u, q, sq)
        far_q = np.min(np.abs(u[:, None] - q[None, :]), axis=1) > 3 * sq + 1
        stat, nb, signs = 0.0, 0, []
        for b in range(Pb.shape[0]):      # loop over bands (≤ 48), two small nonlinear fits each
            m = wb[b]
            if m.sum() <= max(len(q) + 4, 0.5 * len(u)) or (m & win).sum() < 12:
                continue
            cb = np.linalg.lstsq(X_all[m], Pb[b, m], rcond=None)[0]
            rb = Pb[b, m] - X_all[m] @ cb
            fq = far_q[m]
            if fq.sum() < 8:
                continue
            s2b = (1.4826 * np.median(np.abs(rb[fq] - np.median(rb[fq])))) ** 2
            uw, yw = u[m & win], Pb[b, m & win]
            rss = []
            for with_k in (False, True):
                idx = inw if with_k else inw[inw != kn]
                fr_ = np.isin(idx, free)
                p0 = q[idx].astype(float)

                def res(z, fr_=fr_, p0=p0, uw=uw, yw=yw):
                    pp = p0.copy()
                    pp[fr_] = z
                    Xw = _step_basis(uw, pp, sq)
                    return yw - Xw @ np.linalg.lstsq(Xw, yw, rcond=None)[0]
                if fr_.any():
                    z = least_squares(res, p0[fr_], bounds=(p0[fr_] - 2.0, p0[fr_] + 2.0), max_nfev=30).x
                else:
                    z = p0[fr_]
                r_ = res(z)
                rss.append(float(r_ @ r_))
                if with_k:
                    pp = p0.copy()
                    pp[fr_] = z
                    Xw = _step_basis(uw, pp, sq)
                    signs.append(np.sign(np.linalg.lstsq(Xw, yw, rcond=None)[0][1 + int(np.nonzero(idx == kn)[0][0])]))
            # per band variance: the plateaus' or the window's residual with the step, the larger
            # (the rough interfaces' misfit counts as noise)
            stat += (rss[0] - rss[1]) / max(s2b, rss[1] / max(len(uw) - 2 * len(free) - 2, 1), 1e-30)
            nb += 1
        if nb < 3:
            return False
        coef_q, _ = _fit_steps(u, y, q, sq)
        # the model with the step explains the observed derivative maxima nearby (within
        # CONSISTENT_PX, as for crowded interfaces): an edge of another shape (a graded or non-Gaussian
        # edge, a fringe) is fitted better by two steps too, but their derivative maximum lies elsewhere
        se = float(np.hypot(sq, float(c.get("profile_sigma_px", 1.0))))
        for obs in pos_a[np.abs(pos_a - q[kn]) <= 3 * sq + 2]:
            k0 = int(np.argmin(np.abs(q - obs)))
            uf = obs + np.arange(-2.5, 2.5001, 0.05)
            dm = np.sum(coef_q[None, 1:] * np.exp(-0.5 * ((uf[:, None] - q[None, :]) / se) ** 2), axis=1)
            pred = uf[int(np.argmax(np.sign(coef_q[k0 + 1]) * dm))]
            log.debug("  band selection: derivative max observed %.1f, model %.1f", obs, pred)
            if abs(pred - obs) > CONSISTENT_PX:
                return False
        agree = float(np.mean(np.asarray(signs) == np.sign(coef_q[kn + 1])))
        z = (stat - 2.0 * nb) / np.sqrt(4.0 * nb)
        log.debug("  band selection: %d bands, z %.1f, sign agreement %.2f", nb, z, agree)
        return bool(z >= HIDDEN_Z and agree >= float(c["min_sign_fraction"]))

    def _local_gain(pf, sg, x, rss0):
        """(decrease of the residual sum of squares, positions) when a step at ``x`` is added and the
        interfaces within 6 px of it move (±2 px, order and 1.5 px separation kept; edge width
        fixed); the new position last."""
        free = np.nonzero(np.abs(pf - x) <= 6.0)[0]
        p0 = np.concatenate([pf[free], [x]])
        allp = np.concatenate([pf, [x]])
        srt = np.sort(allp)
        mid = 0.5 * (srt[1:] + srt[:-1])
        rank = np.searchsorted(srt, p0)
        lo_k = np.concatenate([[-np.inf], mid + 0.75])[rank]
        hi_k = np.concatenate([mid - 0.75, [np.inf]])[rank]
        lb = np.maximum(np.maximum(p0 - 2.0, lo), np.minimum(lo_k, p0)) - 1e-9
        ub = np.minimum(np.minimum(p0 + 2.0, hi), np.maximum(hi_k, p0)) + 1e-9

        def res(q):
            pp = pf.copy()
            pp[free] = q[:-1]
            X = _step_basis(u, np.concatenate([pp, [q[-1]]]), sg)
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            return y - X @ coef
        q = least_squares(res, np.clip(p0, lb + 1e-9, ub - 1e-9), bounds=(lb, ub), max_nfev=30).x
        r_ = res(q)
        pp = pf.copy()
        pp[free] = q[:-1]
        return rss0 - float(r_ @ r_), np.concatenate([pp, [q[-1]]])

    tries = 0
    rejected: list[float] = []       # interfaces whose split failed the tests
    while added < max_add and grid.size and tries < 4 * max_add:
        tries += 1
        X = _step_basis(u, p_fit, sig)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        r = y - X @ coef
        # residual variance away from the edges (plateaus)
        far = np.min(np.abs(u[:, None] - p_fit[None, :]), axis=1) > 3 * sig + 1
        s2 = (1.4826 * np.median(np.abs(r[far] - np.median(r[far])))) ** 2 if far.sum() > 8 else float(r @ r) / len(r)
        Q, _ = np.linalg.qr(X)
        cand = grid[np.min(np.abs(grid[:, None] - p_fit[None, :]), axis=1) >= 1.5]
        if not cand.size:
            break
        from scipy.special import ndtr
        B = ndtr((u[:, None] - cand[None, :]) / sig)
        B -= Q @ (Q.T @ B)
        bb = np.einsum("ij,ij->j", B, B)
        gain = (B.T @ r) ** 2 / np.maximum(bb, 1e-12)
        j = int(np.argmax(gain))
        best_gain, trial, new_flag = float(gain[j]), np.concatenate([p_fit, [cand[j]]]), None
        # splits: an interface replaced by two of the same sign d px apart (a staircase whose two
        # steps give one derivative maximum); a linear fit per trial
        rss0 = float(r @ r)
        for k in range(len(p_fit)):      # loop over interfaces × separations (tens of small fits)
            if any(abs(p_fit[k] - q0) < 0.5 for q0 in rejected):
                continue
            for d in (2.0, 3.0, 4.0, 5.0, 6.0):
                pk = np.concatenate([np.delete(p_fit, k), [p_fit[k] - d / 2, p_fit[k] + d / 2]])
                if np.min(np.abs(np.delete(p_fit, k)[:, None] - pk[None, -2:]), initial=1e9) < 1.5:
                    continue
                coef_k, rss_k = _fit_steps(u, y, pk, sig)
                if np.sign(coef_k[-1]) != np.sign(coef_k[-2]):
                    continue
                if rss0 - rss_k > best_gain:
                    weaker = -1 if abs(coef_k[-1]) < abs(coef_k[-2]) else -2
                    best_gain, trial, new_flag = rss0 - rss_k, pk, (k, weaker, float(p_fit[k]))
        span = 2.0 * sig + 1.0
        log.debug("hidden step: best %s gain %.3g thr %.3g", trial[-2:], best_gain, HIDDEN_Z ** 2 * s2 * span)
        if best_gain < HIDDEN_Z ** 2 * max(s2, 1e-30) * span:
            break
        flags = np.concatenate([~orig, [False]])          # added before
        cur = np.zeros(len(trial), bool)                  # the candidate
        cur[-1] = True
        if new_flag is not None:
            k, weaker, _ = new_flag
            flags = np.concatenate([np.delete(~orig, k), [False, False]])
            cur[:] = False
            cur[weaker] = True
        srt = np.argsort(trial)
        trial, cur = trial[srt], cur[srt]
        is_new = flags[srt] | cur
        kn = int(np.nonzero(cur)[0][0])
        q, sg_new = refit(trial, sig)
        ok_new = np.min(np.diff(q)) >= 1.5 and _new_step_ok(q, sg_new, kn)
        # a staircase step whose band heights scatter (rough interfaces beside it): model selection
        # on the band profiles with the nearby positions free per band
        if (not ok_new and np.min(np.diff(q)) >= 1.5
                and float(np.min(np.abs(np.delete(q, kn) - q[kn]))) < STAIR_PX
                and _new_step_ok(q, sg_new, kn, height_only=True)):
            ok_new = _band_select(q, sg_new, kn)
        log.debug("  trial %s -> refit %s sigma %.2f ok %s", np.round(trial, 1), np.round(q, 1), sg_new, ok_new)
        if not ok_new:
            if new_flag is not None:
                rejected.append(new_flag[2])
            grid = grid[np.abs(grid - trial[kn]) > 1.0]
            continue
        p_fit, sig = q, sg_new
        orig = ~is_new
        added += 1
    # a step inside a thin layer (two interfaces < 10 px apart): at fixed positions its gain is
    # masked (the two interfaces, fitted without it, took part of it up), so each such gap is tried
    # once more with the interfaces within 6 px free; the same tests, the gain at THIN_Z σ; a step that
    # fails the gain or the sign test (the bands' heights scatter beside rough interfaces) may still
    # pass the model selection on the band profiles (_band_select)
    X = _step_basis(u, p_fit, sig)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    rss0 = float(r @ r)
    far = np.min(np.abs(u[:, None] - p_fit[None, :]), axis=1) > 3 * sig + 1
    s2 = (1.4826 * np.median(np.abs(r[far] - np.median(r[far])))) ** 2 if far.sum() > 8 else rss0 / len(r)
    thr = HIDDEN_Z ** 2 * max(s2, 1e-30) * (2.0 * sig + 1.0)
    for a_, b_ in [(p_fit[k], p_fit[k + 1]) for k in range(len(p_fit) - 1) if p_fit[k + 1] - p_fit[k] < 10.0]:
        if added >= max_add:     # loop over thin layers (a few), each a few small fits
            break
        best = (0.0, None)
        for x in np.arange(a_ + 1.5, b_ - 1.5 + 1e-9, 1.0):    # the fit moves it by up to ±2 px
            best = max(best, _local_gain(p_fit, sig, float(x), rss0), key=lambda z: z[0])
        log.debug("thin-layer step: gap %.1f-%.1f gain %.3g thr %.3g", a_, b_, best[0], thr)
        weak = best[1] is not None and best[0] < thr * (THIN_Z / HIDDEN_Z) ** 2
        if best[1] is None:
            continue
        trial = best[1]
        srt = np.argsort(trial)
        is_new = np.concatenate([~orig, [True]])[srt]
        kn = int(np.nonzero(srt == len(trial) - 1)[0][0])
        q, sg_new = refit(trial[srt], sig)
        if np.min(np.diff(q)) >= 1.5 and ((not weak and _new_step_ok(q, sg_new, kn, thin=True))
                                          or (_new_step_ok(q, sg_new, kn, height_only=True)
                                              and _band_select(q, sg_new, kn))):
            p_fit, sig, orig = q, sg_new, ~is_new
            added += 1
            X = _step_basis(u, p_fit, sig)
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            rss0 = float(np.sum((y - X @ coef) ** 2))
    coef, _ = _fit_steps(u, y, p_fit, sig)
    st = np.asarray(coef[1:], float)
    t_old = dict(zip(np.round(pos_a, 6), np.asarray(tst)[order]))
    # keep the derivative-based positions of the original interfaces (the fit only adds), except
    # where another interface lies within 3 edge widths + 2 px: there the derivative maxima of the
    # two overlap (a staircase's single maximum lies between its steps; the maxima of a thin layer's
    # two opposite steps are pushed apart) and the step fit, which models both, places them
    out_p = np.where(orig, np.nan, p_fit)
    out_p[orig] = pos_a
    d_other = np.abs(p_fit[:, None] - p_fit[None, :]) + np.diag(np.full(len(p_fit), np.inf))
    crowded = orig & (np.min(d_other, axis=1, initial=np.inf) <= 3 * sig + 2)
    # ... where the model explains the derivative maxima: the maxima of the fitted model's own
    # derivative (same derivative scale) lie within CONSISTENT_PX of the observed ones; an edge of
    # another shape (a Fresnel fringe, a graded interface) misplaces the fitted positions instead
    h_fit = np.asarray(coef[1:], float)
    se = float(np.hypot(sig, float(c.get("profile_sigma_px", 1.0))))
    fits = np.zeros(len(p_fit), bool)
    for k in np.nonzero(crowded)[0]:             # loop over crowded interfaces (a few)
        uf = p_fit[k] + np.arange(-2.5, 2.5001, 0.05)
        dm = np.sum(h_fit[None, :] * np.exp(-0.5 * ((uf[:, None] - p_fit[None, :]) / se) ** 2), axis=1)
        pred = uf[int(np.argmax(np.sign(h_fit[k]) * dm))]
        obs = pos_a[int(np.cumsum(orig)[k]) - 1]
        fits[k] = abs(pred - obs) <= CONSISTENT_PX
        log.debug("crowded %.1f: derivative max observed %.1f, model %.1f", p_fit[k], obs, pred)
    # next to an added interface the fit's positions always (a staircase's single maximum lies
    # between its two steps: the derivative position is not one of them)
    near_new = orig & (np.min(np.abs(p_fit[:, None] - p_fit[None, ~orig]), axis=1, initial=np.inf) <= 3 * sig + 2)
    use_fit = (crowded & fits) | near_new
    out_p[use_fit] = p_fit[use_fit]
    # the step of an original interface stays its derivative-based height (what the snapping
    # compares the local derivative with; next to an opposite step it is less than the level
    # difference the fit gives), except beside an added one
    keep = orig & ~near_new
    st_o = np.asarray(steps, float)[order]
    st[keep] = st_o[keep[orig]]
    o = np.argsort(out_p)
    tt = np.array([t_old.get(round(p, 6), float(c["min_z"])) for p in out_p])
    if not added:
        return out_p[o], st[o], tt[o]
    log.info("segment (layers): %d interface(s) added by the step fit (edge width %.2f px)", added, sig)
    return out_p[o], st[o], tt[o]


def _argmax_window(D: np.ndarray, center: np.ndarray, r: int, sign: float):
    """Per column of ``D`` (u × columns): the sub-pixel row of the maximum of sign·D within
    ±r rows of ``center`` (rows, per column), and that maximum."""
    nu, nv = D.shape
    off = np.arange(-r, r + 1)
    rows = np.clip(np.rint(center).astype(np.int64)[None, :] + off[:, None], 1, nu - 2)
    cols = np.arange(nv)[None, :]
    slab = sign * D[rows, cols]
    j = np.argmax(slab, axis=0)
    ar = np.arange(nv)
    best = slab[j, ar]
    y0 = sign * D[np.clip(rows[j, ar] - 1, 0, nu - 1), ar]
    y2 = sign * D[np.clip(rows[j, ar] + 1, 0, nu - 1), ar]
    den = y0 - 2 * best + y2
    frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    return rows[j, ar] + np.clip(frac, -0.5, 0.5), best


def snap_interfaces(fr: np.ndarray, pos: np.ndarray, steps: np.ndarray, c: dict,
                    refine_thin: bool = True) -> np.ndarray:
    """Per-column interface positions (K, nv) in frame rows, coarse to fine: (1) in each lateral band
    the derivative maximum of the interface's sign within ± min(``max_roughness_px``, half the gaps
    to its neighbours) of the profile position, median-filtered over 3 bands and interpolated to the
    columns (follows bowing and long undulations); (2) in each column the maximum within ±3 px of
    that, median-filtered along the layers, where the local step is detectable (expected derivative
    peak ≥ 4 × the derivative noise), else the band position; (3) with ``refine_thin``, the
    interfaces of thin layers refitted column by column (:func:`_refine_thin`; chosen on the 512²
    overview family: the tiled path's full-resolution strips do better without it, see
    :func:`temtwin.segment.tiled.recover_thin_layers`)."""
    K = len(pos)
    nu, nv = fr.shape
    if K == 0:
        return np.zeros((0, nv))
    ok = np.isfinite(fr)
    filled = _fill_nan_rows(np.where(ok, fr, np.nan).T).T          # along u within each column
    su = float(c["profile_sigma_px"])
    sv = float(c["lateral_sigma_px"])
    sm = ndi.gaussian_filter(filled.astype(np.float64), (su, sv))
    D = np.gradient(sm, axis=0)
    noise_d = 1.4826 * float(np.median(np.abs(D[ok] - np.median(D[ok])))) if ok.any() else 0.0
    # band-scale derivative (strong lateral smoothing) for the coarse pass
    nb = max(3, min(48, nv // max(int(c["band_px"]), 4)))
    bw = nv / nb
    Db = np.gradient(ndi.gaussian_filter(filled.astype(np.float64), (2.0, bw / 2.0)), axis=0)
    centers = ((np.arange(nb) + 0.5) * bw).astype(int).clip(0, nv - 1)
    gaps = np.diff(np.concatenate([[-1e9], pos, [1e9]]))
    out = np.repeat(pos[:, None], nv, 1).astype(float)
    cols = np.arange(nv)
    for k in range(K):               # loop over interfaces; each is vectorised over the columns
        sg = float(np.sign(steps[k]))
        half = max(0.5 * min(gaps[k], gaps[k + 1]) - 0.5, 1.0)
        r1 = int(np.floor(min(float(c["max_roughness_px"]), half)))
        coarse = np.full(nv, pos[k])
        # two steps of the same sign closer than 6 px (a staircase) share one derivative maximum:
        # their positions are those of the step fit, not snapped
        if any(0 <= i < K and np.sign(steps[i]) == sg and abs(pos[i] - pos[k]) < STAIR_PX for i in (k - 1, k + 1)):
            out[k] = coarse
            continue
        if r1 >= 1:
            loc, best = _argmax_window(Db[:, centers], np.full(nb, pos[k]), r1, sg)
            weak = best < 0.3 * abs(steps[k]) / (np.sqrt(2 * np.pi) * 2.5)
            loc = np.where(weak, pos[k], loc)
            loc = ndi.median_filter(loc, size=3, mode="nearest")
            coarse = np.interp(cols, centers, loc)
        r2 = int(np.floor(min(3.0, half)))
        peak = abs(steps[k]) / (np.sqrt(2 * np.pi) * np.hypot(su, 1.0))
        if r2 >= 1 and peak >= 4.0 * noise_d:
            loc, best = _argmax_window(D, coarse, r2, sg)
            loc = np.where(best >= 0.3 * peak, loc, coarse)
            coarse = ndi.median_filter(loc, size=int(2 * round(2 * sv) + 1), mode="nearest")
        if min(gaps[k], gaps[k + 1]) < 6.0:
            # an interface of a thin layer: the derivative maxima of its neighbour's step pull the
            # snapped positions off by a constant; the snapping keeps the local wobble, the step fit
            # the mean position
            coarse = coarse + (pos[k] - float(np.median(coarse)))
        out[k] = coarse
    if refine_thin:
        out = _refine_thin(filled, out, pos, sv)
    for k in range(1, K):            # keep the order of the interfaces (at least 1 px apart)
        out[k] = np.maximum(out[k], out[k - 1] + 1.0)
    return out


def _sse_steps(Y: np.ndarray, u: np.ndarray, coef: np.ndarray, P: np.ndarray, edge_px: float) -> np.ndarray:
    """Per column: residual sum of squares of ``Y`` (rows u × columns) against a constant plus blurred
    unit steps of heights ``coef[1:]`` at the per-column positions ``P`` (steps × columns)."""
    from scipy.special import ndtr

    M = coef[0] + sum(coef[i + 1] * ndtr((u[:, None] - P[i][None, :]) / edge_px) for i in range(len(P)))
    return np.sum((Y - M) ** 2, axis=0)


def _refine_thin(filled: np.ndarray, out: np.ndarray, pos: np.ndarray, sv: float,
                 edge_px: float = THIN_EDGE_PX, reach: float = 2.0) -> np.ndarray:
    """Per-column positions of the interfaces of thin layers (runs of interfaces < 6 px apart)
    refined by a model fit: each column of the frame (smoothed along the layers by ``sv``) is
    compared, within the run ± 4 px, with blurred unit steps (edge width ``edge_px``) between the
    run's levels (from the mean profile at the fitted positions ``pos``), each interface moved in
    turn over ±``reach`` px (0.25 px steps; two sweeps, order and 1 px separation kept); then
    median-filtered along the layers and shifted back to the mean position ``pos`` (the wobble is
    the column's, the mean the fit's).  Vectorised over the columns."""
    from scipy.special import ndtr

    K = len(pos)
    runs, cur = [], [0]
    for k in range(1, K):
        if pos[k] - pos[k - 1] < 6.0:
            cur.append(k)
        else:
            runs.append(cur)
            cur = [k]
    runs.append(cur)
    runs = [r for r in runs if len(r) >= 2]
    if not runs:
        return out
    nu, nv = filled.shape
    sm = ndi.gaussian_filter1d(filled.astype(np.float64), sv, axis=1)
    mean_p = np.mean(sm, axis=1)
    uu = np.arange(nu, dtype=float)
    res = out.copy()
    offs = np.arange(-reach, reach + 1e-9, 0.25)
    for run in runs:                 # loop over thin-layer runs (a few)
        a = int(max(np.floor(pos[run[0]]) - 4, 0))
        b = int(min(np.ceil(pos[run[-1]]) + 5, nu))
        if b - a < 4:
            continue
        u = uu[a:b]
        # levels of the run's layers: least squares of the mean profile on the window
        X = np.column_stack([np.ones_like(u)] + [ndtr((u - pos[k]) / edge_px) for k in run])
        coef = np.linalg.lstsq(X, mean_p[a:b], rcond=None)[0]
        Y = sm[a:b]                                            # (window, columns)
        P = res[run].copy()                                    # (len(run), columns)

        for _ in range(2):           # coordinate descent sweeps
            for i in range(len(run)):
                best = _sse_steps(Y, u, coef, P, edge_px)
                keep = P[i].copy()
                for d in offs:       # loop over offsets (17), vectorised over the columns
                    trial = P.copy()
                    trial[i] = np.clip(pos[run[i]] + d, (P[i - 1] + 1.0) if i else -np.inf,
                                       (P[i + 1] - 1.0) if i + 1 < len(run) else np.inf)
                    e = _sse_steps(Y, u, coef, trial, edge_px)
                    better = e < best
                    keep = np.where(better, trial[i], keep)
                    best = np.where(better, e, best)
                P[i] = keep
        for i, k in enumerate(run):
            q = ndi.median_filter(P[i], size=5, mode="nearest")
            res[k] = q + (pos[k] - float(np.median(q)))
    return res


def _box(sl, shape, pad: int):
    """Bounding box (r0, r1, c0, c1) of a ``find_objects`` slice, widened by ``pad`` pixels."""
    return (max(sl[0].start - pad, 0), min(sl[0].stop + pad, shape[0]),
            max(sl[1].start - pad, 0), min(sl[1].stop + pad, shape[1]))


def _label_median(values: np.ndarray, labels: np.ndarray, n: int, max_px: int = 1 << 20) -> np.ndarray:
    """Median of ``values`` per label 0..n-1 (NaN-free; 0 for absent labels), on a regular subsample
    of at most about ``max_px`` pixels (the layers are large: their medians do not need every pixel)."""
    step = max(1, int(np.ceil(np.sqrt(values.size / max_px))))
    v = values[::step, ::step].ravel()
    lb = labels[::step, ::step].ravel()
    out = np.zeros(n)
    present = np.unique(lb)
    present = present[present < n]
    if present.size:
        out[present] = np.asarray(ndi.median(v, lb, present), float)
    return np.nan_to_num(out)


def _otsu(v: np.ndarray) -> float:
    h, e = np.histogram(v, 128)
    cen = 0.5 * (e[1:] + e[:-1])
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * cen)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(cen[int(np.argmax(between))])


def analyse(img: np.ndarray, cfg: dict | None = None) -> LayerModel:
    """The layer model of an image: normal, interfaces (profile positions), steps, noise."""
    c = dict(DEFAULTS)
    c.update({k: v for k, v in (cfg or {}).items() if k in DEFAULTS})
    img = np.asarray(img, np.float32)
    noise = pixel_noise(img)
    theta, coh = layer_normal(img)
    fr, _geo = to_frame(img, theta)
    prof, counts = band_profiles(fr, int(c["band_px"]))
    for _ in range(2):               # the structure tensor is biased by inclusions and texture
        dth = refine_normal(prof, counts, fr.shape[1])
        if dth is None or abs(dth) <= 0.02:
            break
        theta += dth
        fr, _geo = to_frame(img, theta)
        prof, counts = band_profiles(fr, int(c["band_px"]))
    pos, steps, tst = find_interfaces(prof, counts, noise, c)
    pos, steps, tst = add_hidden_steps(prof, counts, pos, steps, tst, {**c, "_noise": noise})
    return LayerModel(theta, coh, pos, steps, noise, {"t": tst, "frame": fr, "geometry": _geo, "c": c})


def is_layered(model: LayerModel) -> bool:
    """True when the image looks like a layered device: a coherent normal and at least one interface."""
    return model.coherence >= model.info["c"]["min_coherence"] and len(model.interfaces_px) >= 1


def choose_layers(img: np.ndarray, has_lattice: bool, cfg: dict | None = None, forced: bool = False):
    """(layer model or None, reason): the multilayer-device mode applies to a low-magnification image
    (no lattice fringes) whose contrast is layered (coherent normal, at least one interface);
    ``forced`` (``segment.method: layers``) skips the lattice and coherence tests."""
    if has_lattice and not forced:
        return None, "lattice fringes found (atomic-resolution image)"
    model = analyse(img, cfg)
    c = model.info["c"]
    if not len(model.interfaces_px):
        return None, "no layer interface found"
    if not forced and model.coherence < c["min_coherence"]:
        return None, f"contrast not layered (orientation coherence {model.coherence:.2f} < {c['min_coherence']})"
    return model, (f"layered overview: normal {model.theta_deg:.1f} deg, coherence {model.coherence:.2f}, "
                   f"{len(model.interfaces_px)} interfaces")


def segment_layers(image: np.ndarray, pixel_size_nm, cfg: dict | None = None, model: LayerModel | None = None,
                   min_area_nm2: float = 1.0):
    """Labels (int32, 1..n, every pixel assigned) and info of a layered device overview (module
    docstring).  ``cfg``: the ``segment.layers`` settings (missing keys: :data:`DEFAULTS`)."""
    from .canny import order_labels
    from .refine import remove_islands
    from .smallmerge import merge_smallest

    c = dict(DEFAULTS)
    c.update({k: v for k, v in (cfg or {}).items() if k in DEFAULTS})
    img = np.asarray(image, np.float32)
    if model is None:
        model = analyse(img, c)
    fr = model.info["frame"]
    n, t, u0, v0 = model.info["geometry"]
    b = snap_interfaces(fr, model.interfaces_px, model.steps, c)
    rows, cols = img.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    u = xx * n[0] + yy * n[1] - u0
    v = np.clip(np.rint(xx * t[0] + yy * t[1] - v0).astype(np.int64), 0, fr.shape[1] - 1)
    lab = np.ones(img.shape, np.int32)
    for k in range(len(b)):          # loop over interfaces (tens), vectorised over the pixels
        lab += (u > b[k][v]).astype(np.int32)
    del u, v, xx, yy
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    min_px = max(float(min_area_nm2) / (px * py), float(c["min_width_px"]) ** 2)
    # drop layers thinner than THIN_DROP_PX (median over the columns; a layer the step fit resolved,
    # 2 px and more, stays its own region): they join a neighbour
    widths = np.median(np.diff(b, axis=0), axis=1) if len(b) > 1 else np.zeros(0)
    thin = np.nonzero(widths < THIN_DROP_PX)[0] + 2       # layer ids (2..K)
    # inclusions: detected on the image smoothed within each layer (σ = inclusion_sigma_px, normalised
    # convolution: interfaces do not blur into the layers beside them), outlined at half their contrast
    # on the image smoothed by 1 px
    img64 = img.astype(np.float64)
    s1 = ndi.gaussian_filter(img64, 1.0)
    sc = float(c["inclusion_sigma_px"])
    nl = int(lab.max()) + 1
    s3 = np.empty_like(img64)
    pad = int(np.ceil(4 * sc))
    for k, sl in enumerate(ndi.find_objects(lab), start=1):   # loop over layers (tens), on their boxes
        if sl is None:
            continue
        r0, r1, c0, c1 = _box(sl, lab.shape, pad)
        m = lab[r0:r1, c0:c1] == k
        w = ndi.gaussian_filter(m.astype(np.float64), sc)
        num = ndi.gaussian_filter(np.where(m, img64[r0:r1, c0:c1], 0.0), sc)
        s3[r0:r1, c0:c1][m] = num[m] / np.maximum(w[m], 1e-6)
    noise_s = model.noise / (2 * np.sqrt(np.pi) * sc)
    level = _label_median(s3, lab, nl)
    dev3 = np.abs(s3 - level[lab])
    spread = 1.4826 * _label_median(dev3, lab, nl)
    thr = float(c["inclusion_z"]) * np.maximum(spread, noise_s)
    # cores away from the interfaces and the image border (±3 px: a pixel on the wrong side of a
    # snapped interface departs by the full step, one beside it by the blurred step)
    band = (ndi.maximum_filter(lab, 5) != ndi.minimum_filter(lab, 5))
    band[:3] = band[-3:] = True
    band[:, :3] = band[:, -3:] = True
    core = (dev3 > thr[lab]) & ~band
    core = ndi.binary_opening(core, np.ones((3, 3), bool))
    # a core whose median departure is barely above the threshold is the tail of the texture/noise
    cc0, nc0 = ndi.label(core)
    if nc0:
        sel = cc0 > 0
        rel = np.zeros(nc0 + 1)
        rel[1:] = np.asarray(ndi.median((dev3 / np.maximum(thr[lab], 1e-12))[sel], cc0[sel], np.arange(1, nc0 + 1)))
        core = (rel >= float(c["inclusion_core_ratio"]))[cc0] & core
    dev = np.abs(s1 - level[lab])
    comp0, n0 = ndi.label(core)
    if n0:
        sel = comp0 > 0
        cmed = np.zeros(n0 + 1)
        # the contrast on the image the outline is drawn on (σ = 1 px; the layer-smoothed one
        # underestimates it on a small inclusion, and the outline would grow out into its blur)
        cmed[1:] = np.asarray(ndi.median(np.maximum(dev, dev3)[sel], comp0[sel], np.arange(1, n0 + 1)))
        half = np.zeros(n0 + 1)
        half[1:] = 0.5 * cmed[1:]
        # geodesic growth of each core into the pixels above half its contrast (and above the
        # detection threshold of their layer: noise does not carry the growth into a layer)
        near_idx = ndi.distance_transform_edt(comp0 == 0, return_distances=False, return_indices=True)
        nearest = comp0[near_idx[0], near_idx[1]]
        low = (dev >= np.maximum(half[nearest], thr[lab])) & (nearest > 0)
        inc = ndi.binary_propagation(core & low, mask=low)        # trimmed to half contrast, grown
    else:
        inc = core
    inc = ndi.binary_opening(inc, np.ones((3, 3), bool))
    # steepest gradient within ±2 px of each pixel (an outline at half contrast may sit a pixel or
    # two off the steepest point of a blurred edge)
    grad = ndi.maximum_filter(ndi.gaussian_gradient_magnitude(img64, 1.0), size=5)
    grad_t = ndi.maximum_filter(np.abs(ndi.gaussian_filter(img64, 1.0, order=(0, 1)) * t[0]
                                       + ndi.gaussian_filter(img64, 1.0, order=(1, 0)) * t[1]), size=5)
    band9 = (ndi.maximum_filter(lab, 9) != ndi.minimum_filter(lab, 9))      # its reach off the interfaces
    comp, ncomp = ndi.label(inc)
    out = lab.copy()
    n_inc = 0
    if ncomp:
        sizes = np.bincount(comp.ravel())
        objs = ndi.find_objects(comp)
        nxt = nl
        for k in range(1, ncomp + 1):   # loop over inclusions (a few), each vectorised on its box
            if sizes[k] < min_px:
                continue
            r0, r1, c0, c1 = _box(objs[k - 1], comp.shape, 16)
            mk = comp[r0:r1, c0:c1] == k
            # an inclusion has a sharp edge: 2-4 px outside its outline (beside it in the layer(s) it
            # sits in) the intensity is back at the level of the layer, 2-4 px inside it departs by
            # nearly its full contrast (a bend contour or a thickness ramp departs about as much on
            # both sides); and it is at least 2·min_width wide (misplaced interfaces leave slivers)
            lb = lab[r0:r1, c0:c1]
            dv = dev[r0:r1, c0:c1]
            out_r = ndi.binary_dilation(mk, iterations=4) & ~ndi.binary_dilation(mk, iterations=2)
            out_r &= np.isin(lb, np.unique(lb[mk]))
            in_r = ndi.binary_erosion(mk, iterations=2) & ~ndi.binary_erosion(mk, iterations=4)
            if not in_r.any():
                in_r = mk
            base = 0.67 * model.noise / (2 * np.sqrt(np.pi))       # median |noise| at σ = 1 px
            outer = (float(np.median(dv[out_r])) - base) if out_r.any() else np.inf
            inner = float(np.median(dv[in_r])) - base
            width = 2.0 * float(ndi.distance_transform_edt(np.pad(mk, 1)).max())
            # and its outline (away from the interfaces) is steep: the contrast is crossed within
            # ``inclusion_edge_px`` (a bend contour fades over tens of pixels)
            edge_ = mk & ~ndi.binary_erosion(mk)
            line = edge_ & ~band9[r0:r1, c0:c1]
            g_out = float(np.median(grad[r0:r1, c0:c1][line])) if line.sum() >= 8 else 0.0
            if line.sum() < 8 and edge_.sum() >= 8:
                # an inclusion within thin layers (a fin or trench through them) has its whole
                # outline near interfaces: there only the gradient along the layers counts (the
                # side walls cross the layers; an interface's own step is across them), and it is
                # at least half as tall (along the normal) as it is wide (a sliver along a
                # misplaced interface is long and flat)
                yk, xk = np.nonzero(mk)
                tall = np.ptp(xk * n[0] + yk * n[1]) >= 0.5 * np.ptp(xk * t[0] + yk * t[1])
                g_out = float(np.median(grad_t[r0:r1, c0:c1][edge_])) if tall else 0.0
            ok = (outer < float(c["inclusion_edge_ratio"]) * inner and width >= 2.0 * float(c["min_width_px"])
                  and g_out * float(c["inclusion_edge_px"]) >= inner)
            log.debug("  inclusion at (%d, %d) %d px: outer %.3g inner %.3g width %.1f edge %.3g ok %s",
                      r0, c0, int(mk.sum()), outer, inner, width, g_out, ok)
            if not ok:
                continue
            # the work below stays inside the inclusion's box
            bs = (slice(r0, r1), slice(c0, c1))
            m = mk
            # across the layers it crosses: within its extent along the layers (1 px in from its
            # sides), pixels closer to its level than to their layer's join it (the foot of a fin in
            # a layer of nearly its level, where the growth at half contrast stopped)
            yy_, xx_ = np.mgrid[r0:r1, c0:c1]
            vv_ = xx_ * t[0] + yy_ * t[1]
            vlo, vhi = np.percentile(vv_[m], [2, 98])
            lvl = float(np.median(s1[bs][m]))
            sx = s1[bs]
            cand_ = (np.abs(sx - lvl) < np.abs(sx - level[lab[bs]])) & (vv_ >= vlo + 1) & (vv_ <= vhi - 1)
            m = ndi.binary_propagation(m, mask=cand_ | m)
            # two levels (core/shell): tested on the interior (2 px in from the outline: the blurred
            # edge of a uniform inclusion is not a second level); Otsu's separability η (between-class
            # over total variance) is 2/π ≈ 0.64 for one Gaussian level and reaches SPLIT_ETA only
            # for two levels ≳ 4 within-level σ apart
            inner_m = ndi.binary_erosion(m, iterations=2)
            vals = s1[bs][inner_m]
            split = False
            if vals.size >= 2 * min_px:
                th = _otsu(vals)
                lo_, hi_ = vals[vals <= th], vals[vals > th]
                eta = lo_.size * hi_.size / vals.size ** 2 * (hi_.mean() - lo_.mean()) ** 2 / max(vals.var(), 1e-30)
                if (lo_.size >= min_px and hi_.size >= min_px and eta >= SPLIT_ETA
                        and hi_.mean() - lo_.mean() > float(c["inclusion_z"]) * max(noise_s, 1e-12)
                        and hi_.mean() - lo_.mean() > 0.25 * float(np.median(dev[bs][m]))):
                    split = True
                log.debug("  inclusion split test: diff %.3g noise_s %.3g eta %.3f n %d split %s",
                          hi_.mean() - lo_.mean(), noise_s, eta, vals.size, split)
            ob = out[bs]
            if split:
                ob[m] = nxt
                ob[m & (s1[bs] > th)] = nxt + 1
                nxt += 2
                n_inc += 2
            else:
                ob[m] = nxt
                nxt += 1
                n_inc += 1
    if len(thin):
        # a layer thinner than the minimum width: its pixels go to the nearest other region
        gone = np.isin(out, thin)
        if gone.any() and not gone.all():
            idx = ndi.distance_transform_edt(gone, return_distances=False, return_indices=True)
            out = out[idx[0], idx[1]]
    out = remove_islands(out, None, int(np.ceil(min_px)))
    # regions smaller than the minimum area (slivers at the frame corners, split halves) join their
    # most similar neighbour
    out, _ = merge_smallest(out, img, None, max(min_px, 4 * float(c["min_width_px"]) ** 2))
    used = np.unique(out)
    lut = np.zeros(int(out.max()) + 1, np.int32)
    lut[used] = np.arange(1, len(used) + 1, dtype=np.int32)
    out = order_labels(lut[out])
    info = {
        "layer_normal_deg": model.theta_deg,
        "layer_coherence": model.coherence,
        "n_interfaces": int(len(b)),
        "n_inclusions": n_inc,
        "n_regions": int(out.max()),
        "noise": model.noise,
        "min_area_nm2_effective": float(min_px * px * py),
    }
    log.info("segment (layers): normal %.1f deg, %d interfaces, %d inclusion regions -> %d regions",
             model.theta_deg, len(b), n_inc, info["n_regions"])
    return out, info


def layered_segmentation(image: np.ndarray, pixel_size_nm, cfg: dict | None, has_lattice: bool,
                         forced: bool = False, min_area_nm2: float = 1.0):
    """(labels or None, info, reason): the multilayer-device mode when it applies
    (:func:`choose_layers`).  Images larger than ``max_px`` per side are analysed on a block-averaged
    copy (factor f = ⌈side / max_px⌉; memory and time stay bounded) and the labels are returned at full
    resolution (nearest neighbour; boundaries then within f/2 pixels, layers thinner than 3·f pixels
    are not resolved: the reason says so)."""
    c = dict(DEFAULTS)
    c.update({k: v for k, v in (cfg or {}).items() if k in DEFAULTS})
    img = np.asarray(image, np.float32)
    f = max(1, int(np.ceil(max(img.shape) / float(c["max_px"]))))
    work = img
    if f > 1:
        r, q = (img.shape[0] // f) * f, (img.shape[1] // f) * f
        work = img[:r, :q].reshape(r // f, f, q // f, f).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    model, why = choose_layers(work, has_lattice, c, forced=forced)
    if model is None:
        return None, {}, why
    px, py = float(pixel_size_nm[0]) * f, float(pixel_size_nm[1]) * f
    labels, info = segment_layers(work, (px, py), c, model=model, min_area_nm2=min_area_nm2)
    if f > 1:
        labels = np.repeat(np.repeat(labels, f, axis=0), f, axis=1)
        pr, pc = img.shape[0] - labels.shape[0], img.shape[1] - labels.shape[1]
        labels = np.pad(labels, ((0, pr), (0, pc)), mode="edge")
        why += f"; analysed on a {f}x{f} block-averaged copy (layers thinner than {3 * f} px not resolved)"
    info["analysis_factor"] = f
    return labels.astype(np.int32), info, why
