"""Two-scan correction of an orthogonal scan pair (after Ophus, Ciston & Nelson, Ultramicroscopy 162, 1 (2016)).

Two STEM images of the same area recorded with the fast scan along x (image ``a``, 0°) and along y (image
``b``, scan rotated by +90°) see the same specimen drift with different slow-scan directions, so the
drift that makes both agree is the true one: no lattice assumption is needed (any structure works).
Implemented: the linear-drift part (a search over the drift (dx, dy), fraction of a frame height per
frame, for the best normalised cross-correlation of the two scans resampled onto the common grid) and the
row-offset part (every scan line of each image shifted along its fast-scan direction to match the
current mean of the two, iterated). The result is the mean of the two corrected scans.

Frames and conventions: ``b`` is given as recorded (its rows are its scan lines); with the scan rotated
by +90° (from +x towards +y), its recorded pixel (i, j) lies at (x, y) = (W - 1 - i, j) of ``a``'s frame,
so ``np.rot90(b, -1)`` is in ``a``'s orientation. Both images must have the same (square) shape and
pixel size. Drift convention of :func:`temtwin.testing.scan_distortion.distort_scan`: in its own scan
frame, ``b`` has drift (dy, -dx) when ``a`` has (dx, dy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .core import resample_scan


@dataclass
class PairCorrection:
    """image: merged corrected image in ``a``'s frame (float32); drift: (2,) [dx, dy] of ``a``;
    offsets_a, offsets_b: (rows,) fast-scan offsets of every scan line of a and b (px);
    shift_px: (2,) [dy, dx] translation of b onto a (its later start); score: normalised cross-correlation peak;
    score_no_drift: the same without drift correction."""

    image: np.ndarray
    drift: np.ndarray
    offsets_a: np.ndarray
    offsets_b: np.ndarray
    shift_px: np.ndarray
    score: float
    score_no_drift: float


def _window(shape):
    return (np.hanning(shape[0])[:, None] * np.hanning(shape[1])[None, :]).astype(np.float32)


def _phase_corr(Fa: np.ndarray, b: np.ndarray, win: np.ndarray) -> tuple[float, np.ndarray]:
    """Peak of the normalised cross-correlation of (windowed, spectrum Fa) with b (windowed), and its
    integer shift [dy, dx]."""
    bb = (b - b.mean()) * win
    Fb = np.fft.rfft2(bb)
    X = Fa * np.conj(Fb)
    c = np.fft.irfft2(X, s=b.shape) / np.sqrt(_energy(Fa, b.shape) * _energy(Fb, b.shape))
    k = int(np.argmax(c))
    iy, ix = np.unravel_index(k, c.shape)
    sh = np.array([iy if iy <= c.shape[0] // 2 else iy - c.shape[0],
                   ix if ix <= c.shape[1] // 2 else ix - c.shape[1]], float)
    return float(c.flat[k]), sh


def _energy(F: np.ndarray, shape) -> float:
    """Σ x² of the real image whose rfft2 is F (Parseval, counting the half spectrum twice)."""
    w = np.full(F.shape[1], 2.0)
    w[0] = 1.0
    if shape[1] % 2 == 0:
        w[-1] = 1.0
    return float((np.abs(F) ** 2 * w[None, :]).sum() / (shape[0] * shape[1]))


def _resampled(a, b, d, oa=None, ob=None, order=1):
    ra = resample_scan(a, d, oa, order=order)
    rb = np.rot90(resample_scan(b, (d[1], -d[0]), ob, order=order), -1)
    return ra, rb


def _score(a, b, d, win):
    ra, rb = _resampled(a, b, d)
    return _score_pair(ra, rb, win)


def _score_pair(ra, rb, win):
    Fa = np.fft.rfft2((ra - ra.mean()) * win)
    return _phase_corr(Fa, rb, win)[0]


def _line_offsets(img: np.ndarray, ref: np.ndarray, margin: int) -> np.ndarray:
    """Per-row x offsets r with img(y, x) ≈ ref(y, x + r(y)) (least squares, one Gauss-Newton step)."""
    gx = np.gradient(ref, axis=1)[:, margin:-margin]
    res = (img - ref)[:, margin:-margin]
    r = (res * gx).sum(1) / np.maximum((gx ** 2).sum(1), 1e-30)
    i = np.arange(len(r), dtype=float)
    return r - np.polyval(np.polyfit(i, r, 1), i)


def correct_pair(a: np.ndarray, b: np.ndarray, max_drift: float = 0.05, n_iter: int = 4,
                 max_offset_px: float = 3.0, search_px: int = 256) -> PairCorrection:
    """Correct the scan pair (``a`` at 0°, ``b`` at +90°, both as recorded); see the module docstring."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"scan pair: both images must be square and of the same shape ({a.shape}, {b.shape})")
    n = a.shape[0]
    # 1. linear drift: grid searches then a simplex refinement of the cross-correlation peak, on the
    #    central crop (at most ``search_px``²; the drift rate is the same on any part of the frame)
    c = min(n, search_px)
    c0 = (n - c) // 2
    ac = a[c0:c0 + c, c0:c0 + c]
    bc = b[n - c0 - c:n - c0, c0:c0 + c]
    win = _window(ac.shape)
    score0 = _score(ac, bc, np.zeros(2), win)
    best, sc = np.zeros(2), score0
    for step, span in ((0.01, max_drift), (0.0025, 0.01)):
        m = int(round(span / step))
        grid = np.arange(-m, m + 1) * step
        cand = [best + (u, v) for u in grid for v in grid]
        scores = np.array([_score(ac, bc, cc, win) for cc in cand])
        k = int(np.argmax(scores))
        if scores[k] > sc:
            best, sc = np.asarray(cand[k], float), float(scores[k])
    # 2. per-line offsets against the mean of the two registered scans (b translated: it started later),
    #    alternating with a simplex refinement of the drift given the offsets
    from scipy.optimize import minimize
    from skimage.registration import phase_cross_correlation

    oa = np.zeros(n)
    ob = np.zeros(n)
    margin = max(2, n // 20)
    shift = np.zeros(2)
    y = np.arange(n, dtype=float)

    def score_full(d):
        ra, rb = _resampled(a, b, d, oa, ob)
        return _score_pair(ra[c0:c0 + c, c0:c0 + c], rb[c0:c0 + c, c0:c0 + c], win)

    for _outer in range(2):
        r = minimize(lambda d: -score_full(d), best, method="Nelder-Mead",
                     options={"xatol": 2e-5, "fatol": 1e-7,
                              "initial_simplex": best + np.array([[0, 0], [0.002, 0], [0, 0.002]])})
        best, sc = np.asarray(r.x, float), float(-r.fun)
        for _ in range(n_iter):
            ra, rb = _resampled(a, b, best, oa, ob, order=3)
            shift, _, _ = phase_cross_correlation(ra, rb, upsample_factor=20, normalization=None)
            rb = ndimage.shift(rb, shift, order=3, mode="reflect")
            mean = 0.5 * (ra + rb)
            # a: resampled row y holds line i = y / (1 + dy)
            r_rows = _line_offsets(ra, mean, margin)
            oa = np.clip(oa + np.interp(y * (1 + best[1]), y, r_rows), -max_offset_px, max_offset_px)
            # b: its line i lies at row i (1 - dx) of its own resampled frame, i.e. at common column
            # x = n - 1 - i (1 - dx); an offset along b's fast scan is a shift along +y of the common frame
            r_cols = _line_offsets(rb.T, mean.T, margin)
            ob = np.clip(ob + np.interp(n - 1 - y * (1 - best[0]), y, r_cols), -max_offset_px, max_offset_px)
    ra, rb = _resampled(a, b, best, oa, ob, order=3)
    rb = ndimage.shift(rb, shift, order=3, mode="reflect")
    return PairCorrection(image=(0.5 * (ra + rb)).astype(np.float32), drift=best, offsets_a=oa, offsets_b=ob,
                          shift_px=np.asarray(shift, float), score=sc, score_no_drift=score0)


def scan_partner(settings: dict, image: str) -> tuple[str, str] | None:
    """(partner, role) of ``image`` from sample.yaml ``images.<a>.scan_pair: <b>`` (role "a": the 0° scan,
    "b": the +90° scan), or None when the image belongs to no declared pair."""
    images = (settings or {}).get("images") or {}
    own = (images.get(image) or {}).get("scan_pair")
    if own:
        return str(own), "a"
    for name, per in images.items():
        if (per or {}).get("scan_pair") == image:
            return str(name), "b"
    return None
