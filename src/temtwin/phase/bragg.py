"""Bragg-filtered real-space maps: where in the image each identified crystal's lattice is.

For a crystal with reflections g_1..g_n (measured, nm^-1, one of each Friedel pair), the image's
Fourier transform is multiplied by a Gaussian mask of std σ_k centred on each g_i; the inverse
transform A_i(r) is the complex lattice fringe of g_i, smooth on the scale 1/(2π σ_k).  The
crystal's *Bragg amplitude* is sqrt(Σ_i |A_i|²): large where that lattice (in that orientation) is
present.  Amplitudes are normalised by their median inside the crystal's own region, and each pixel
is given to the crystal with the largest normalised amplitude when it exceeds a threshold (crystal
map, 0 = none).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft


def sigma_k_for(resolution_nm: float, g_sets: list[np.ndarray]) -> float:
    """Mask std σ_k (nm^-1): 1/(2π resolution), reduced so that spots of different crystals (more
    than 1 % apart in |g|) are at least 4 σ_k apart."""
    s = 1.0 / (2 * np.pi * resolution_nm)
    for i in range(len(g_sets)):
        for j in range(i + 1, len(g_sets)):
            a, b = np.asarray(g_sets[i]), np.asarray(g_sets[j])
            if len(a) == 0 or len(b) == 0:
                continue
            for sgn in (1, -1):
                d = np.hypot(*(a[:, None, :] - sgn * b[None, :, :]).transpose(2, 0, 1))
                d = d[d > 0.01 * np.hypot(*a.T).min()]
                if d.size:
                    s = min(s, float(d.min()) / 4.0)
    return max(s, 0.02)


def pad_for(sigma_k: float, pixel_size_nm, shape) -> int:
    """Zero padding (px per side) that keeps the fringes of opposite image edges from mixing:
    3 real-space widths 1/(2π σ_k), at most half the image."""
    px = float(np.min(np.atleast_1d(pixel_size_nm)))
    return int(min(max(shape) // 2, np.ceil(3.0 / (2 * np.pi * sigma_k) / px)))


def padded_spectrum(image: np.ndarray, pad: int, workers: int | None = None) -> np.ndarray:
    """fft2 of the mean-subtracted image zero-padded by ``pad`` px on every side."""
    img = np.asarray(image, np.float32)
    return sfft.fft2(np.pad(img - img.mean(), pad), workers=workers)


def bragg_amplitude(image: np.ndarray, pixel_size_nm, g: np.ndarray, sigma_k: float,
                    spectrum: np.ndarray | None = None, pad: int | None = None,
                    workers: int | None = None) -> np.ndarray:
    """Bragg amplitude map (rows, cols), float32, of the reflections ``g`` (n, 2) [kx, ky] nm^-1.

    ``spectrum``: :func:`padded_spectrum` of the image with padding ``pad`` when already computed.
    """
    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    px, py = (pixel_size_nm, pixel_size_nm) if np.isscalar(pixel_size_nm) else pixel_size_nm
    pad = pad_for(sigma_k, (px, py), img.shape) if pad is None else int(pad)
    F = spectrum if spectrum is not None else padded_spectrum(img, pad, workers)
    R, C = F.shape
    kx = sfft.fftfreq(C, d=px)
    ky = sfft.fftfreq(R, d=py)
    total = np.zeros((rows, cols), np.float64)
    for gx, gy in np.asarray(g, float).reshape(-1, 2):
        mx = np.exp(-0.5 * ((kx - gx) / sigma_k) ** 2)
        my = np.exp(-0.5 * ((ky - gy) / sigma_k) ** 2)
        jx = mx > 1e-6
        iy = my > 1e-6
        if not jx.any() or not iy.any():
            continue
        masked = np.zeros_like(F)
        sub = np.ix_(iy, jx)
        masked[sub] = F[sub] * (my[iy][:, None] * mx[jx][None, :])
        a = sfft.ifft2(masked, workers=workers)[pad:pad + rows, pad:pad + cols]
        total += a.real ** 2 + a.imag ** 2
    return np.sqrt(total).astype(np.float32)


def crystal_map(amplitudes: list[np.ndarray], masks: list[np.ndarray], threshold: float = 0.5):
    """Normalised amplitudes and the crystal map.

    amplitudes: Bragg amplitude maps, one per crystal; masks: each crystal's own region (bool) used
    for the normalisation (its median amplitude there = 1).  Returns (normalised list, map int32 with
    1-based crystal indices, 0 where no crystal exceeds ``threshold``).
    """
    norm = []
    for a, m in zip(amplitudes, masks):
        ref = float(np.median(a[m])) if m is not None and m.any() else float(np.median(a))
        norm.append((a / ref if ref > 0 else a * 0).astype(np.float32))
    if not norm:
        return norm, None
    stack = np.stack(norm)
    best = np.argmax(stack, axis=0)
    val = np.take_along_axis(stack, best[None], 0)[0]
    cmap = np.where(val >= threshold, best + 1, 0).astype(np.int32)
    return norm, cmap
