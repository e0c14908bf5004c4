"""STEM images by abTEM multislice over a small crop of the image, and the fit of their post-imaging optics.

The linear HAADF model (:mod:`linear`) stays the fast default for ranking and refinement; this module gives the
dynamical (multislice) image where the linear model does not apply (ABF, BF) or as a check of it (HAADF).

Geometry: the crop is the image box ``(row0, col0, row1, col1)`` (pixels); the model's atoms inside the box
grown by ``margin_nm`` on every side form a periodic cell (its wrap-around seam lies in the margin, away from
the scanned pixels), and the probe visits exactly the crop's pixel centres: pixel (i, j) ↔ image point
(j·px, i·py) nm.  Positions in nm, image frame (x right, y down), atoms in Å.

Detector angles (inner, outer mrad) come from the image metadata (``detector_inner_mrad``,
``detector_outer_mrad``) where present, else from ``simulate_image.stem.detector_mrad``, else the mode's
default: HAADF (max(60, 2.5 α), 200), ABF (α/2, α), BF (0, α/2) for the convergence semi-angle α.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares

from .fit import FitResult, _at_bound, _cov_sigma, _determined, correlation_inflation, linear_intensity, ncc

STEM_MODES = ("haadf", "abf", "bf")


def default_detector(mode: str, convergence_mrad: float) -> tuple[float, float]:
    """Default (inner, outer) detector semi-angles (mrad) of a STEM ``mode`` for convergence α (mrad)."""
    a = float(convergence_mrad)
    if mode == "haadf":
        return max(60.0, 2.5 * a), 200.0
    if mode == "abf":
        return 0.5 * a, a
    if mode == "bf":
        return 0.0, 0.5 * a
    raise ValueError(f"no STEM detector for mode {mode!r}")


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def detector_angles(mode: str, meta: dict, configured, convergence_mrad: float) -> tuple[tuple[float, float], str]:
    """((inner, outer) mrad, source) with source 'metadata', 'config' or 'default'."""
    lo, hi = _finite(meta.get("detector_inner_mrad")), _finite(meta.get("detector_outer_mrad"))
    if lo is not None and hi is not None and hi > lo >= 0:
        return (lo, hi), "metadata"
    if configured:
        return (float(configured[0]), float(configured[1])), "config"
    return default_detector(mode, convergence_mrad), "default"


def crop_cell(atoms, box_nm, thickness_A=None):
    """Atoms inside box (x0, y0, x1, y1) nm shifted to its origin, in an orthogonal cell (periodic x, y)."""
    from ase import Atoms

    p = atoms.get_positions()
    x0, y0, x1, y1 = (v * 10.0 for v in box_nm)
    tz = float(atoms.cell[2, 2]) if thickness_A is None else float(thickness_A)
    keep = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1) & (p[:, 2] >= 0) & (p[:, 2] < tz)
    return Atoms(numbers=atoms.numbers[keep], positions=p[keep] - np.array([x0, y0, 0.0]),
                 cell=np.diag([x1 - x0, y1 - y0, max(tz, 1.0)]), pbc=(True, True, False))


@dataclass
class StemCrop:
    """A multislice STEM image of a crop: ``raw`` (rows, cols) detector fraction of the probe intensity."""

    raw: np.ndarray
    box_px: tuple[int, int, int, int]
    detector_mrad: tuple[float, float]
    collected_outer_mrad: float
    sampling_A: float
    thickness_nm: float
    n_atoms: int
    seconds: float


def simulate_stem_crop(atoms, box_px, pixel_nm, energy_eV: float, convergence_mrad: float,
                       detector_mrad: tuple[float, float], *, margin_nm: float = 0.5, sampling_A: float = 0.05,
                       slice_A: float = 2.0, defocus_nm: float = 0.0, cs_um: float = 0.0,
                       max_thickness_nm: float | None = None, threads: int = 1, device: str = "cpu") -> StemCrop:
    """abTEM multislice STEM image of the image pixels in ``box_px`` from the model ``atoms`` (Å, image frame)."""
    from .multislice import max_angle_mrad, stem_multislice

    r0, c0, r1, c1 = (int(v) for v in box_px)
    px, py = float(pixel_nm[0]), float(pixel_nm[1])
    m = float(margin_nm)
    box = (c0 * px - m, r0 * py - m, (c1 - 1) * px + m, (r1 - 1) * py + m)
    tz = None if max_thickness_nm is None else min(float(max_thickness_nm) * 10.0, float(atoms.cell[2, 2]))
    sub = crop_cell(atoms, box, tz)
    t0 = time.perf_counter()
    start = (m * 10.0, m * 10.0)
    end = (start[0] + (c1 - c0) * px * 10.0, start[1] + (r1 - r0) * py * 10.0)
    raw = stem_multislice(sub, energy_eV, convergence_mrad, [detector_mrad], start, end, (c1 - c0, r1 - r0),
                          sampling_A, slice_A, defocus_nm, cs_um, threads, device)[0]
    samp = float(sub.cell[0, 0]) / int(np.ceil(sub.cell[0, 0] / sampling_A - 1e-9))
    return StemCrop(raw, (r0, c0, r1, c1), (float(detector_mrad[0]), float(detector_mrad[1])),
                    min(float(detector_mrad[1]), max_angle_mrad(energy_eV, samp)), samp,
                    float(sub.cell[2, 2]) / 10.0, len(sub), time.perf_counter() - t0)


def render(raw: np.ndarray, pixel_nm, blur_nm: float, shift_px=(0.0, 0.0)) -> np.ndarray:
    """``raw`` blurred by a Gaussian of 1-σ ``blur_nm`` (source size) and moved by ``shift_px`` = (dx, dy)."""
    img = raw
    if blur_nm > 0:
        img = ndimage.gaussian_filter(img, (blur_nm / pixel_nm[1], blur_nm / pixel_nm[0]), mode="nearest")
    if shift_px[0] or shift_px[1]:
        img = ndimage.shift(img, (shift_px[1], shift_px[0]), order=3, mode="nearest")
    return img


def fit_stem(raw: np.ndarray, data: np.ndarray, mask: np.ndarray, pixel_nm, *, blur_nm: float = 0.03,
             defocus_nm: float = 0.0, cs_um: float = 0.0, thickness_nm: float | None = None,
             corr_window_px: int = 8) -> FitResult:
    """Fit source size (nm), shift (px) and a, b of ``data ≈ a + b · render(raw)`` over ``mask``.

    The probe defocus, Cs and the thickness are those of the multislice run (one run per trial value is too
    costly): they are reported with σ absent and a note.  Uncertainties as in :func:`fit.fit_haadf`.
    """
    names = ["blur_nm", "shift_x_px", "shift_y_px"]

    def resid(x):
        sim = render(raw, pixel_nm, max(x[0], 0.0), (x[1], x[2]))
        a, b = linear_intensity(sim, data, mask)
        return data[mask] - a - b * sim[mask]

    lo, hi = np.array([0.0, -3.0, -3.0]), np.array([0.2, 3.0, 3.0])
    best = None
    for b0 in (0.5 * blur_nm, blur_nm, 2.0 * blur_nm):
        r = least_squares(resid, np.clip([b0, 0.0, 0.0], lo + 1e-9, hi - 1e-9), bounds=(lo, hi),
                          x_scale=np.array([0.01, 0.2, 0.2]), diff_step=1e-3, max_nfev=60)
        c = float(r.fun @ r.fun)
        if best is None or c < best[0]:
            best = (c, r)
    cost, r = best
    sig = _cov_sigma(r.jac, r.fun)
    sim = render(raw, pixel_nm, max(r.x[0], 0.0), (r.x[1], r.x[2]))
    a, b = linear_intensity(sim, data, mask)
    infl = correlation_inflation(data - a - b * sim, mask, corr_window_px)
    sig = sig * infl
    values = dict(zip(names, [float(v) for v in r.x]))
    values.update(defocus_nm=float(defocus_nm), cs_um=float(cs_um), thickness_nm=thickness_nm, offset=a, scale=b,
                  sigma_inflation=infl)
    sigma = {k: (float(s) if np.isfinite(s) else None) for k, s in zip(names, sig)}
    sigma.update(defocus_nm=None, cs_um=None, thickness_nm=None)
    notes = ["probe defocus, Cs and thickness fixed in the multislice run (metadata/config, model thickness): "
             "not fitted"]
    _at_bound(r.x, lo, hi, names, sigma, notes)
    sigma = _determined(sigma, notes)
    return FitResult(values, sigma, cost, ncc(sim, data, mask), a + b * sim, False, notes, {}, dict(sigma), {})
