"""Comparison metrics between a micrograph and its simulation.

* ``ncc``: normalised cross-correlation (Pearson), 1 = identical up to offset and scale;
* ``ssim``: structural similarity (scikit-image), on both images standardised over the mask, averaged
  over the mask;
* ``rms_noise``: RMS of the residual (data − fitted simulation) in units of the image noise σ, which is
  estimated from the image alone (Immerkær's 3×3 second-difference mask, made robust with the median
  absolute deviation); ≈ 1 when the simulation explains the image down to its noise.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity
from scipy import ndimage

from .fit import ncc


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation estimated from the image (same units as the image).

    The mask [[1, −2, 1], [−2, 4, −2], [1, −2, 1]] cancels smooth signal and multiplies white noise's
    variance by 36; the MAD of its response (× 1.4826) estimates 6σ robustly against edges and atoms.
    """
    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    r = ndimage.convolve(np.asarray(image, float), k, mode="reflect")[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(r - np.median(r))) / 6.0)


def metrics(data: np.ndarray, sim: np.ndarray, mask: np.ndarray, noise: float,
            ssim_map: np.ndarray | None = None) -> dict:
    """NCC, SSIM, noise-normalised RMS residual and pixel count over ``mask`` (``sim`` already scaled)."""
    n = int(mask.sum())
    if n < 16:
        return {"n_pixels": n}
    if ssim_map is None:
        ssim_map = ssim_full(data, sim, mask)
    r = (data - sim)[mask]
    return {"ncc": ncc(data, sim, mask), "ssim": float(ssim_map[mask].mean()),
            "rms_noise": float(np.sqrt(np.mean(r**2)) / noise) if noise > 0 else None, "n_pixels": n}


def ssim_full(data: np.ndarray, sim: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM map of the two images standardised over ``mask``."""
    def std(x):
        v = x[mask]
        return (x - v.mean()) / (v.std() + 1e-12)
    a, b = std(data), std(sim)
    a, b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)  # sim is NaN where not simulated
    rng = float(max(a[mask].max(), b[mask].max()) - min(a[mask].min(), b[mask].min()))
    _, full = structural_similarity(a, b, data_range=rng, full=True, win_size=7)
    return full
