"""STEM scan-distortion artefact model for generated test and benchmark images.

A STEM image is acquired row by row: the fast scan runs along +x (columns), the slow scan along +y
(rows). Two artefacts dominate on real instruments and are modelled here:

* **Linear drift** during the frame: the specimen moves by ``drift_x`` and ``drift_y`` (fractions of the
  frame's height, per frame) while the slow scan advances. Row ``i`` is recorded with the specimen shifted
  by (drift_x, drift_y) · y_i, which shears the image (non-orthogonality, exy-like) and stretches or
  compresses it along y (eyy-like).
* **Row jitter**: each row's fast-scan start is offset by a random shift along x, Gaussian with standard
  deviation ``jitter_px`` pixels, independent from row to row (optionally smoothed over ``jitter_corr_rows``).

The model resamples a distortion-free image ``ideal`` (rows = y down, columns = x right) at the specimen
positions the scan actually visited, with cubic interpolation, so a lattice in ``ideal`` appears sheared,
stretched and jittered exactly as on the microscope. :func:`distort_scan` returns the distorted image
and the ground truth (per-row x offsets and the drift), so a correction can be scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ScanDistortion:
    """Truth of one generated scan distortion.

    Attributes
    ----------
    drift_x, drift_y: specimen drift over the whole frame as a fraction of the frame height. Row i
        samples the specimen at x = j + drift_x · i (a shear: apparent exy ≈ -drift_x / 2, rotation
        ≈ +drift_x / 2) and y = i · (1 + drift_y) (the specimen appears compressed along y by
        1 / (1 + drift_y): apparent eyy ≈ -drift_y).
    jitter_px: standard deviation of the per-row x offsets, in pixels.
    row_offset_px: (rows,) x offset of each row in pixels (jitter + drift_x part), the specimen position
        sampled at column j of row i is x = j + row_offset_px[i].
    row_y_px: (rows,) y position in pixels of the specimen sampled by row i.
    """

    drift_x: float
    drift_y: float
    jitter_px: float
    row_offset_px: np.ndarray
    row_y_px: np.ndarray


def distort_scan(ideal: np.ndarray, *, drift_x: float = 0.0, drift_y: float = 0.0, jitter_px: float = 0.0,
                 jitter_corr_rows: float = 0.0, rng: np.random.Generator | None = None,
                 order: int = 3) -> tuple[np.ndarray, ScanDistortion]:
    """Apply linear drift and row jitter to ``ideal`` as a raster STEM scan would record it.

    Parameters
    ----------
    ideal: (rows, cols) distortion-free image, rows = y (slow scan), columns = x (fast scan).
    drift_x, drift_y: drift over the frame in units of the frame height (e.g. 0.02 = 2 %).
    jitter_px: standard deviation of the independent per-row x offsets, in pixels.
    jitter_corr_rows: if > 0, the jitter is smoothed with a Gaussian of this many rows (then rescaled to
        ``jitter_px``), to model low-frequency line noise.
    rng: random generator for the jitter (required when jitter_px > 0).
    order: spline interpolation order.

    Returns
    -------
    (distorted, truth): the distorted image (same shape and dtype float64) and the ScanDistortion truth.
    The specimen point sampled at pixel (i, j) is (x, y) = (j + row_offset_px[i], row_y_px[i]) in
    ``ideal``'s pixel coordinates.
    """
    ideal = np.asarray(ideal, dtype=np.float64)
    rows, cols = ideal.shape
    i = np.arange(rows, dtype=np.float64)
    jitter = np.zeros(rows)
    if jitter_px > 0:
        if rng is None:
            raise ValueError("distort_scan: jitter_px > 0 needs an rng")
        jitter = rng.normal(0.0, 1.0, rows)
        if jitter_corr_rows > 0:
            jitter = ndimage.gaussian_filter1d(jitter, jitter_corr_rows, mode="wrap")
        jitter *= jitter_px / max(float(jitter.std()), 1e-12)
    # Row i is recorded at slow-scan time t = i / rows; the specimen has drifted by drift * rows * t px.
    row_x = drift_x * i + jitter
    row_y = i * (1.0 + drift_y)
    jj, ii = np.meshgrid(np.arange(cols, dtype=np.float64), i)
    coords = np.array([np.broadcast_to(row_y[:, None], ii.shape), jj + row_x[:, None]])
    out = ndimage.map_coordinates(ideal, coords, order=order, mode="reflect")
    return out, ScanDistortion(float(drift_x), float(drift_y), float(jitter_px), row_x, row_y)
