"""The whole single-scan correction: find the lattice, measure row jitter and linear drift, resample.

Conventions: rows = y = slow scan (down), columns = x = fast scan (right); offsets in pixels; drift as a
fraction of the frame height per frame (dx: along x, a shear; dy: along y, a stretch), as in
:func:`temtwin.testing.scan_distortion.distort_scan`. The corrected image is on the recorded grid with
the same pixel size: pixel (y, x) holds the specimen point (x, y) of the first row's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .drift import DriftEstimate, estimate_drift
from .jitter import JitterEstimate, estimate_jitter, shift_rows
from .lattice import find_peaks, reduced_basis, refine_g


@dataclass
class ScanCorrection:
    """Result of :func:`correct_scan`.

    image: corrected image (float32), identical to the input when nothing was corrected;
    changed: whether the image was altered; method: what was applied ("row jitter + linear drift",
    "row jitter", "linear drift" or "none"); reason: why a part was not applied;
    drift, jitter: the estimates (None when no lattice was found); g_px: reduced reciprocal basis
    (2, 2) [kx, ky] cycles/px used for the drift.
    """

    image: np.ndarray
    changed: bool
    method: str
    reason: str
    drift: DriftEstimate | None = None
    jitter: JitterEstimate | None = None
    g_px: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def resample_scan(image: np.ndarray, drift=(0.0, 0.0), offset_px: np.ndarray | None = None,
                  order: int = 3) -> np.ndarray:
    """Undo linear drift and row offsets: the corrected pixel (y, x) takes the recorded value at
    row i = y / (1 + dy), column j = x - dx·i - o(i) (o interpolated linearly between rows).
    Cubic spline interpolation, edges reflected. float64 (rows, cols)."""
    img = np.asarray(image, np.float64)
    rows, cols = img.shape
    dx, dy = float(drift[0]), float(drift[1])
    y = np.arange(rows, dtype=float)
    i = y / (1.0 + dy)
    o = np.zeros(rows) if offset_px is None else np.interp(i, y, np.asarray(offset_px, float))
    jj = np.arange(cols, dtype=float)[None, :] - (dx * i + o)[:, None]
    ii = np.broadcast_to(i[:, None], jj.shape)
    return ndimage.map_coordinates(img, [ii, jj], order=order, mode="reflect")


def valid_region(shape, drift=(0.0, 0.0), offset_px: np.ndarray | None = None) -> list[int]:
    """[row0, col0, row1, col1) of the corrected image whose pixels were all recorded (outside it
    :func:`resample_scan` extrapolates by reflection)."""
    rows, cols = shape
    dx, dy = float(drift[0]), float(drift[1])
    row1 = int(min(rows, np.floor((rows - 1) * (1.0 + dy)) + 1))
    y = np.arange(row1, dtype=float)
    i = y / (1.0 + dy)
    o = np.zeros(rows) if offset_px is None else np.asarray(offset_px, float)
    s = dx * i + np.interp(i, np.arange(rows, dtype=float), o)
    col0 = int(np.clip(np.ceil(s.max()), 0, cols))
    col1 = int(np.clip(np.floor(cols - 1 + s.min()) + 1, col0, cols))
    return [0, col0, row1, col1]


def correct_scan(image: np.ndarray, pixel_size_nm, *, jitter: bool = True, linear_drift: bool = True,
                 lattice: str = "auto", max_drift: float = 0.05, min_drift: float = 0.002,
                 n_sigma: float = 3.0, min_jitter_px: float = 0.08, peak_threshold: float = 25.0,
                 n_iter: int = 4, jitter_max_period: float = 1.0,
                 strong_fraction: float = 0.05) -> ScanCorrection:
    """Correct the row jitter and linear drift of a STEM image (rows = slow scan, columns = fast scan).

    Steps: (1) Bragg peaks of the spectrum, the lattice that indexes them and its periodic reference;
    (2) row offsets by a fit of each row to the reference
    (:func:`~temtwin.scan_correct.jitter.estimate_jitter`), applied only when they stand out of the noise;
    (3) the reduced basis of the strong reflections (power ≥ ``strong_fraction`` of the strongest: weak
    superstructure reflections left out) refined on the de-jittered image; (4) the linear drift that
    makes that basis hexagonal or square (:func:`~temtwin.scan_correct.drift.estimate_drift`;
    ``lattice`` = auto/hexagonal/square/none),
    applied only when significant; (5) one cubic resampling of the recorded image. An image with no
    significant distortion is returned unchanged (the same values).
    """
    img = np.asarray(image)
    peaks = find_peaks(img, threshold=peak_threshold)
    G = reduced_basis(peaks.k, peaks.strength)
    if G is None:
        return ScanCorrection(img.astype(np.float32), False, "none",
                              "no crystal lattice found in the image spectrum (fewer than two "
                              "non-collinear Bragg peaks): nothing to measure the scan distortion on",
                              info={"n_peaks": int(len(peaks.k))})
    reasons = []
    G0, _ = refine_g(img, G)
    jit = estimate_jitter(img, G0, n_iter=n_iter, min_rms_px=min_jitter_px,
                          max_period=jitter_max_period) if jitter else None
    use_jit = bool(jit is not None and jit.significant)
    if jit is None:
        reasons.append("row jitter correction switched off")
    elif not use_jit:
        reasons.append(f"row jitter not significant (RMS {jit.rms_px:.3f} px, chi2/row {jit.chi2:.2f})")
    base = shift_rows(img, jit.offset_px) if use_jit else np.asarray(img, np.float64)
    # the metric (drift) is read from the lattice of the strong reflections: weak superstructure
    # reflections (ordering, a simulation supercell) make the full lattice a supercell whose metric says
    # nothing about the scan; every strong reflection is also a node of the full lattice
    strong = peaks.strength >= strong_fraction * peaks.strength.max()
    Gm = reduced_basis(peaks.k[strong], peaks.strength[strong]) if strong.sum() >= 2 else None
    Gr, sig = refine_g(base, G0 if Gm is None else Gm)
    if linear_drift:
        dr = estimate_drift(Gr, sig, pixel_size_nm, lattice, max_drift=max_drift, min_drift=min_drift,
                            n_sigma=n_sigma)
    else:
        dr = estimate_drift(Gr, sig, pixel_size_nm, "none")
    if not dr.significant:
        reasons.append(dr.reason)
    parts = (["row jitter"] if use_jit else []) + (["linear drift"] if dr.significant else [])
    info = {"n_peaks": int(len(peaks.k))}
    if not parts:
        return ScanCorrection(img.astype(np.float32), False, "none", "; ".join(reasons), dr, jit, Gr, info)
    out = resample_scan(img, dr.drift, jit.offset_px if use_jit else None)
    info["valid_region_px"] = valid_region(img.shape, dr.drift, jit.offset_px if use_jit else None)
    return ScanCorrection(out.astype(np.float32), True, " + ".join(parts), "; ".join(reasons), dr, jit, Gr, info)
