"""Which part of the micrograph the atomic model covers."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def coverage_mask(positions_nm: np.ndarray, shape, pixel_nm, bin_nm: float = 0.5) -> np.ndarray:
    """Image pixels (rows, cols) lying in a ``bin_nm`` cell of the image plane that holds atoms."""
    rows, cols = shape
    px, py = pixel_nm
    nbx = max(1, int(np.ceil(cols * px / bin_nm)))
    nby = max(1, int(np.ceil(rows * py / bin_nm)))
    xy = np.asarray(positions_nm)[:, :2]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < cols * px) & (xy[:, 1] >= 0) & (xy[:, 1] < rows * py)
    occ = np.zeros((nby, nbx), bool)
    oi = (xy[inside, 1] / bin_nm).astype(int).clip(0, nby - 1)
    oj = (xy[inside, 0] / bin_nm).astype(int).clip(0, nbx - 1)
    occ[oi, oj] = True
    bi = ((np.arange(rows) * py) / bin_nm).astype(int).clip(0, nby - 1)
    bj = ((np.arange(cols) * px) / bin_nm).astype(int).clip(0, nbx - 1)
    return occ[bi[:, None], bj[None, :]]


def check_coverage(positions_nm: np.ndarray, shape, pixel_nm, model_path: str, image_name: str,
                   min_coverage: float, bin_nm: float = 0.5) -> np.ndarray:
    """The coverage mask, or a :class:`UserError` when the model covers less than ``min_coverage`` of the image."""
    cov = coverage_mask(positions_nm, shape, pixel_nm, bin_nm)
    frac = float(cov.mean())
    if frac < min_coverage:
        fov = (shape[1] * pixel_nm[0], shape[0] * pixel_nm[1])
        raise UserError(
            f"the atomic model covers {100 * frac:.1f}% of image {image_name} ({fov[0]:.2f} x {fov[1]:.2f} nm), "
            f"less than simulate_image.min_coverage = {100 * min_coverage:.0f}%: rebuild the model for this image "
            f"(atomic_model.image, atomic_model.regions) or lower simulate_image.min_coverage", model_path)
    return cov
