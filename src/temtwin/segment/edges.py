"""Canny-style edges of a multi-channel feature stack, with thresholds from the gradient statistics.

The edge strength is the Di Zenzo multi-channel gradient: each channel's gradient is divided by the
channel's noise gradient (the median gradient magnitude, which the region interiors dominate), the
structure tensor J = Σ_c ∇F_c ∇F_cᵀ is formed and G = sqrt(λ_max(J)) is the gradient magnitude
along the direction θ of the largest eigenvector.  G is thus in units of "typical interior
gradient" (and normalised to a median of 1 at each scale), and the hysteresis thresholds are the
median plus ``low`` / ``high`` robust standard deviations (1.4826 MAD) of G, which makes them
independent of the detector, dose and contrast.  Edges are thinned by non-maximum
suppression along θ and kept by hysteresis (weak edge pixels connected to strong ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.filters import apply_hysteresis_threshold


@dataclass
class EdgeMap:
    """G: float32 edge strength (units of the median interior gradient); theta: gradient direction
    (rad, from +x towards +y); edges: bool thin Canny edges; low/high: the hysteresis thresholds
    applied to G; channel_noise: per-channel gradient normalisation (feature units per pixel)."""

    G: np.ndarray
    theta: np.ndarray
    edges: np.ndarray
    low: float
    high: float
    channel_noise: np.ndarray


def _gradients(ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference-like Scharr gradient (per pixel), reflect borders."""
    gx = cv2.Scharr(ch, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REFLECT) / 32.0
    gy = cv2.Scharr(ch, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REFLECT) / 32.0
    return gx, gy


def edge_strength(features: np.ndarray, weights: np.ndarray | None = None, border: int = 0,
                  scales: tuple[float, ...] = (0.0,)):
    """(G, theta, noise) of a (channels, rows, cols) stack; see module docstring.

    weights: optional per-channel multipliers applied after the noise normalisation.
    border: within this many pixels of the image border the derivative normal to the border is
    ignored (averages there see only part of their window, so border-parallel "edges" are
    artefacts; real boundaries cross the border).
    scales: extra Gaussian smoothing (pixels) of the features before the gradient; G is the maximum
    over the scales of the noise-normalised strengths (a long faint interface stands out at a
    coarser scale, thin layers at the finest).
    """
    best_G = best_t = None
    noise_all = None
    for sc in scales:
        fs = features if sc <= 0 else np.stack([cv2.GaussianBlur(np.ascontiguousarray(ch, np.float32),
                                                                  (0, 0), sc, borderType=cv2.BORDER_REFLECT)
                                                 for ch in features])
        G, theta, noise = _edge_strength_1(fs, weights, border)
        G = G / max(float(np.median(G)), 1e-12)
        if best_G is None:
            best_G, best_t, noise_all = G, theta, noise
        else:
            m = G > best_G
            best_G = np.where(m, G, best_G)
            best_t = np.where(m, theta, best_t)
    return best_G, best_t, noise_all


def _edge_strength_1(features: np.ndarray, weights: np.ndarray | None, border: int):
    C = features.shape[0]
    jxx = np.zeros(features.shape[1:], np.float32)
    jyy = np.zeros_like(jxx)
    jxy = np.zeros_like(jxx)
    noise = np.zeros(C)
    for c in range(C):  # loop over a handful of channels, each step vectorised
        ch = np.ascontiguousarray(features[c], np.float32)
        gx, gy = _gradients(ch)
        if border > 0:
            gy[:border] = 0
            gy[-border:] = 0
            gx[:, :border] = 0
            gx[:, -border:] = 0
        mag = np.hypot(gx, gy)
        span = float(np.percentile(ch, 99) - np.percentile(ch, 1))
        n = max(float(np.median(mag)), 1e-4 * span / max(ch.shape), 1e-12)
        noise[c] = n
        w = 1.0 if weights is None else float(weights[c])
        gx *= w / n
        gy *= w / n
        jxx += gx * gx
        jyy += gy * gy
        jxy += gx * gy
    tr = jxx + jyy
    disc = np.sqrt(np.maximum((jxx - jyy) ** 2 + 4 * jxy ** 2, 0))
    lam = 0.5 * (tr + disc)
    G = np.sqrt(np.maximum(lam, 0)).astype(np.float32)
    theta = (0.5 * np.arctan2(2 * jxy, jxx - jyy)).astype(np.float32)
    return G, theta, noise


def non_maximum_suppression(G: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels that are local maxima of G along θ (4 quantised directions)."""
    q = (np.round(theta / (np.pi / 4)).astype(int)) % 4   # 0: x, 1: diagonal (+x,+y), 2: y, 3: (−x,+y)
    P = np.pad(G, 1, mode="edge")
    c = P[1:-1, 1:-1]
    nb = {0: (P[1:-1, 2:], P[1:-1, :-2]), 1: (P[2:, 2:], P[:-2, :-2]),
          2: (P[2:, 1:-1], P[:-2, 1:-1]), 3: (P[2:, :-2], P[:-2, 2:])}
    keep = np.zeros(G.shape, bool)
    for k, (a, b) in nb.items():
        m = q == k
        keep |= m & (c >= a) & (c >= b)
    return keep


def canny(features: np.ndarray, low: float = 2.0, high: float = 4.0,
          weights: np.ndarray | None = None, border: int = 0, scales: tuple[float, ...] = (0.0,)
          ) -> EdgeMap:
    """Canny edges of a feature stack; thresholds median(G) + ``low``/``high`` × 1.4826 MAD(G) (see
    the module docstring, and :func:`edge_strength` for ``border`` and ``scales``)."""
    G, theta, noise = edge_strength(features, weights, border, scales)
    med = float(np.median(G))
    mad = 1.4826 * float(np.median(np.abs(G - med)))
    lo, hi = med + low * mad, med + high * mad
    thin = non_maximum_suppression(G, theta)
    edges = apply_hysteresis_threshold(np.where(thin, G, 0), lo, hi)
    return EdgeMap(G=G, theta=theta, edges=edges, low=lo, high=hi, channel_noise=noise)
