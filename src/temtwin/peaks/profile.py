"""Detector 3: 1D profile scanning of the spectrum's rows and columns, merged.

Every row and every column of the significance map ``q`` (see :mod:`.fftprep`) is scanned as a 1D
profile with its own local background (a running median along the profile, so non-radial
backgrounds such as astigmatic Thon rings or a tilted-crystal Kikuchi-like band do not matter) and
its own noise level (MAD of the residual along the profile).  A pixel is a row peak when it is the
maximum of its row residual within +-2 px and exceeds the threshold; column peaks likewise.  The
two scans are merged by requiring both (within one pixel): a streak along the kx = 0 or ky = 0
axis (edge or scan artefacts, the "cross") is a peak in every row it crosses but is flat along its
own column, so the cross disappears while compact reflections remain.  The threshold leaves
``false_alarms`` expected noise peaks per spectrum (see :func:`~temtwin.peaks.gaussian.noise_threshold`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .fftprep import Spectrum
from .gaussian import noise_threshold, roughness

WINDOW_PX = 15


def _scan(q: np.ndarray, valid: np.ndarray, axis: int, window: int):
    """Residual of q over a running median along ``axis``, in units of each profile's robust spread."""
    size = (1, window) if axis == 1 else (window, 1)
    import warnings

    warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
    qm = np.where(valid, q, np.nan)
    fill = np.nanmedian(qm, axis=axis, keepdims=True)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    qf = np.where(valid, q, fill)
    bg = ndimage.median_filter(qf, size=size, mode="nearest")
    res = np.where(valid, q - bg, np.nan)
    med = np.nanmedian(res, axis=axis, keepdims=True)
    mad = np.nanmedian(np.abs(res - med), axis=axis, keepdims=True) * 1.4826
    mad = np.where(np.isfinite(mad) & (mad > 0), mad, 1.0)
    out = (res - np.where(np.isfinite(med), med, 0.0)) / mad
    return np.where(valid, out, -np.inf).astype(np.float32)


def _peaks_1d(r: np.ndarray, axis: int, t: float) -> np.ndarray:
    """Pixels that are the maximum of their profile within +-2 px and above t."""
    mx = ndimage.maximum_filter1d(r, size=5, axis=axis, mode="constant", cval=-np.inf)
    return (r == mx) & (r >= t)


def detect_profile(sp: Spectrum, false_alarms: float = 0.05, window: int = WINDOW_PX):
    """Detector 3 on a spectrum.  Returns dict ``rows``, ``cols`` (significance-weighted centroids of
    merged peak pixels), ``score`` (the smaller of the row and column residuals at the peak),
    ``threshold``, and the row/column peak masks (``row_peaks``, ``col_peaks``)."""
    q = np.where(sp.valid, sp.q, 0.0).astype(np.float32)
    v = sp.valid
    rr = _scan(q, v, 1, window)
    rc = _scan(q, v, 0, window)
    both = np.where(v, np.minimum(rr, rc), 0.0)
    t = noise_threshold(float(v.sum()), roughness(np.where(v, both, 0.0), v), false_alarms)
    rowpk = _peaks_1d(rr, 1, t)
    colpk = _peaks_1d(rc, 0, t)
    box = np.ones((3, 3), bool)
    merged = (rowpk & ndimage.binary_dilation(colpk, box)) | (colpk & ndimage.binary_dilation(rowpk, box))
    merged &= sp.inner()
    lab, n = ndimage.label(ndimage.binary_dilation(merged, box) & v)
    if n == 0:
        z = np.zeros(0)
        return {"rows": z, "cols": z, "score": z, "threshold": t, "row_peaks": rowpk, "col_peaks": colpk}
    w = np.where(lab > 0, np.maximum(q, 0.0), 0.0)
    idx = np.arange(1, n + 1)
    cm = np.array(ndimage.center_of_mass(w, lab, idx)).reshape(-1, 2)
    score = np.asarray(ndimage.maximum(np.where(merged, both, 0.0), lab, idx), float)
    ok = np.isfinite(cm).all(1)
    return {"rows": cm[ok, 0], "cols": cm[ok, 1], "score": score[ok], "threshold": t,
            "row_peaks": rowpk, "col_peaks": colpk}
