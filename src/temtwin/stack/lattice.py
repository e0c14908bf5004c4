"""Lattice fringes in a micrograph's power spectrum (to low-pass atomic-resolution images before they
are registered against mass-thickness images)."""

from __future__ import annotations

import cv2
import numpy as np

from .sampling import as_xy


def lattice_spots(img: np.ndarray, px, d_max_nm: float = 1.0, ratio: float = 30.0,
                  size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Bragg spots of the lattice fringes visible in ``img``: (k, power), k complex kx + i ky (nm^-1,
    image axes, both members of each Friedel pair), strongest first; empty when it shows no lattice.

    A Bragg spot is an isolated maximum of the (Hann-windowed) power spectrum at least ``ratio`` times
    the spectrum's radial median at its |k| and 5 times any value on a ring 3-4 pixels around it
    (interfaces give streaks, not isolated spots), and carries at least 1e-4 of the image's (windowed)
    power.  Only spacings between 2.2 pixels and ``d_max_nm`` are considered; at least two spots (a
    Friedel pair) are needed.  Uses the central ``size``² crop; positions are to the nearest FFT pixel.
    """
    none = (np.zeros(0, complex), np.zeros(0))
    pxx, pxy = as_xy(px)
    if 2.2 * max(pxx, pxy) >= d_max_nm:
        return none
    a = np.asarray(img, np.float32)
    r0, c0 = max(0, (a.shape[0] - size) // 2), max(0, (a.shape[1] - size) // 2)
    a = a[r0:r0 + size, c0:c0 + size]
    n_r, n_c = a.shape
    if min(n_r, n_c) < 32:
        return none
    win = np.outer(np.hanning(n_r), np.hanning(n_c)).astype(np.float32)
    P = np.abs(np.fft.fftshift(np.fft.fft2((a - a.mean()) * win))) ** 2
    ky = np.fft.fftshift(np.fft.fftfreq(n_r, pxy))
    kx = np.fft.fftshift(np.fft.fftfreq(n_c, pxx))
    K = np.hypot(*np.meshgrid(kx, ky))
    dk = max(kx[1] - kx[0], ky[1] - ky[0])
    rbin = np.rint(K / dk).astype(np.int64)
    nb = int(rbin.max()) + 1
    # radial median via sorting by (bin, value)
    order = np.lexsort((P.ravel(), rbin.ravel()))
    counts = np.bincount(rbin.ravel(), minlength=nb)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    med = np.where(counts > 0, P.ravel()[order][np.minimum(starts + counts // 2, P.size - 1)], np.inf)
    bg = med[rbin]
    ring = np.zeros((9, 9), np.uint8)
    yy, xx = np.mgrid[-4:5, -4:5]
    ring[(np.hypot(yy, xx) >= 2.5) & (np.hypot(yy, xx) <= 4.2)] = 1
    ring_max = cv2.dilate(P.astype(np.float32), ring)
    local = P >= cv2.dilate(P.astype(np.float32), np.ones((3, 3), np.uint8))
    k_lo = 1.0 / d_max_nm
    k_hi = 1.0 / (2.2 * max(pxx, pxy))
    spot = local & (P > ratio * bg) & (P > 5.0 * ring_max) & (K >= k_lo) & (K <= k_hi)
    spot &= P >= 1e-4 * P.sum()       # a real lattice carries a visible share of the contrast
    if int(spot.sum()) < 2:
        return none
    kxx, kyy = np.meshgrid(kx, ky)
    o = np.argsort(-P[spot], kind="stable")
    return (kxx[spot] + 1j * kyy[spot])[o], P[spot][o]


def lattice_spacing_nm(img: np.ndarray, px, d_max_nm: float = 1.0, ratio: float = 30.0,
                       size: int = 512) -> float | None:
    """Largest lattice-fringe spacing (nm) visible in ``img`` (see :func:`lattice_spots`), or None when
    it shows no lattice."""
    k, _ = lattice_spots(img, px, d_max_nm, ratio, size)
    return float(1.0 / np.abs(k).min()) if len(k) else None


def auto_lowpass_nm(*images_px, factor: float = 0.55) -> float:
    """Gaussian sigma (nm) that removes the lattice fringes of any of (image, px) pairs (0 if none):
    ``factor`` x the largest spacing (transfer exp(-2 pi^2 factor^2) < 0.3 % at that spacing)."""
    d = [lattice_spacing_nm(im, px) for im, px in images_px]
    d = [v for v in d if v is not None]
    return factor * max(d) if d else 0.0
