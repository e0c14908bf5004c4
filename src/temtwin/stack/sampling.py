"""Resampling of images onto a common pixel grid at a common resolution (for registration).

Coordinates: pixel (i, j) of an image is the point (j * px, i * py) nm of its own frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

LOG_EPS = 0.02   # log(I + eps * mean) keeps zero counts finite


def as_xy(p) -> tuple[float, float]:
    return (float(p), float(p)) if np.isscalar(p) else (float(p[0]), float(p[1]))


def resample(img: np.ndarray, px_in, p_out: float, sigma_nm: float, origin_nm=(0.0, 0.0),
              size=None, native_sigma: float = 0.35) -> np.ndarray:
    """Low-pass ``img`` to a total Gaussian resolution ``sigma_nm`` and sample it on a square grid.

    Output pixel (r, c) is the input's point ``origin_nm + (c, r) * p_out`` (nm; input pixel (i, j) at
    (j px, i py)).  The input is assumed to have a native resolution of ``native_sigma`` pixels, so the
    added blur is sqrt(sigma² - native²).  ``size`` = (rows, cols) of the output (default: the part of
    the input from origin on).  Large reductions bin by an integer factor first (cv2.INTER_AREA).
    """
    px, py = as_xy(px_in)
    ox, oy = origin_nm
    rows_in, cols_in = img.shape
    if size is None:
        size = (int(math.floor(((rows_in - 1) * py - oy) / p_out)) + 1,
                int(math.floor(((cols_in - 1) * px - ox) / p_out)) + 1)
    rows, cols = int(size[0]), int(size[1])
    # input-pixel window that the output needs (+ margin for the blur)
    fx, fy = p_out / px, p_out / py
    sx_in = math.sqrt(max(0.0, (sigma_nm / px) ** 2 - native_sigma ** 2))
    sy_in = math.sqrt(max(0.0, (sigma_nm / py) ** 2 - native_sigma ** 2))
    mx, my = int(3 * sx_in) + 3, int(3 * sy_in) + 3
    c0 = max(0, int(math.floor(ox / px)) - mx)
    r0 = max(0, int(math.floor(oy / py)) - my)
    c1 = min(cols_in, int(math.ceil((ox + (cols - 1) * p_out) / px)) + mx + 1)
    r1 = min(rows_in, int(math.ceil((oy + (rows - 1) * p_out) / py)) + my + 1)
    sub = np.ascontiguousarray(img[r0:r1, c0:c1], dtype=np.float32)
    k = max(1, int(min(fx, fy) // 2))              # bin factor (box average)
    kx = ky = k
    if k > 1:
        h, w = sub.shape[0] // ky * ky, sub.shape[1] // kx * kx
        sub = cv2.resize(sub[:h, :w], (w // kx, h // ky), interpolation=cv2.INTER_AREA)
    # remaining Gaussian blur on the binned grid (box of k has variance (k^2 - 1) / 12)
    vx = (sx_in ** 2 - (kx * kx - 1) / 12.0) / (kx * kx)
    vy = (sy_in ** 2 - (ky * ky - 1) / 12.0) / (ky * ky)
    sgx, sgy = math.sqrt(max(vx, 0.0)), math.sqrt(max(vy, 0.0))
    if sgx > 0.05 or sgy > 0.05:
        sub = cv2.GaussianBlur(sub, (0, 0), sigmaX=max(sgx, 1e-3), sigmaY=max(sgy, 1e-3),
                               borderType=cv2.BORDER_REFLECT)
    # output (c, r) -> input pixel x = (ox + c p_out) / px -> local (x - c0) -> binned (x_l - (k-1)/2) / k
    M = np.array([[fx / kx, 0.0, (ox / px - c0 - (kx - 1) / 2.0) / kx],
                  [0.0, fy / ky, (oy / py - r0 - (ky - 1) / 2.0) / ky]], np.float64)
    return cv2.warpAffine(sub, M, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def features(img: np.ndarray, px_in, p_out: float, sigma_nm: float, bg_nm: float, log: bool,
              origin_nm=(0.0, 0.0), size=None) -> np.ndarray:
    """The image as compared: resampled (see ``resample``), log intensity when ``log`` (mass-thickness
    contrast is linear in log I, which makes contrast/gamma differences between images a gain), minus
    its Gaussian background of sigma ``bg_nm`` (a band-pass: smooth thickness/illumination gradients
    carry no position information and would dominate the correlation)."""
    a = resample(img, px_in, p_out, sigma_nm, origin_nm, size)
    if log:
        a = np.log(np.maximum(a, 0) + np.float32(LOG_EPS) * max(float(a.mean()), 1e-12)).astype(np.float32)
    s_bg = bg_nm / p_out
    if s_bg > 0.5:
        a = a - cv2.GaussianBlur(a, (0, 0), sigmaX=s_bg, borderType=cv2.BORDER_REFLECT)
    return a
