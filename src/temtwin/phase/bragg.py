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


def padded_spectrum(image: np.ndarray, pad: int, workers: int | None = None, fast_len: bool = False) -> np.ndarray:
    """fft2 of the mean-subtracted image zero-padded by ``pad`` px on every side; with ``fast_len`` further
    zeros at the end bring each side to a length that factors well (:func:`scipy.fft.next_fast_len`)."""
    img = np.asarray(image, np.float32)
    if not fast_len:
        return sfft.fft2(np.pad(img - img.mean(), pad), workers=workers)
    shape = [sfft.next_fast_len(n + 2 * pad, real=False) for n in img.shape]
    buf = np.zeros(shape, np.float32)
    buf[pad:pad + img.shape[0], pad:pad + img.shape[1]] = img - img.mean()
    return sfft.fft2(buf, workers=workers)


def bragg_amplitude(image: np.ndarray, pixel_size_nm, g: np.ndarray, sigma_k: float,
                    spectrum: np.ndarray | None = None, pad: int | None = None,
                    workers: int | None = None, fast_len: bool = False) -> np.ndarray:
    """Bragg amplitude map (rows, cols), float32, of the reflections ``g`` (n, 2) [kx, ky] nm^-1.

    ``spectrum``: :func:`padded_spectrum` of the image with padding ``pad`` when already computed;
    ``fast_len``: when it is computed here, padded to FFT sizes that factor well.
    """
    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    px, py = (pixel_size_nm, pixel_size_nm) if np.isscalar(pixel_size_nm) else pixel_size_nm
    pad = pad_for(sigma_k, (px, py), img.shape) if pad is None else int(pad)
    F = spectrum if spectrum is not None else padded_spectrum(img, pad, workers, fast_len)
    R, C = F.shape
    kx = sfft.fftfreq(C, d=px)
    ky = sfft.fftfreq(R, d=py)
    total = np.zeros((rows, cols), np.float64)
    for gx, gy in np.asarray(g, float).reshape(-1, 2):
        mx = np.exp(-0.5 * ((kx - gx) / sigma_k) ** 2)
        my = np.exp(-0.5 * ((ky - gy) / sigma_k) ** 2)
        jx = np.flatnonzero(mx > 1e-6)
        iy = np.flatnonzero(my > 1e-6)
        if not jx.size or not iy.size:
            continue
        # the masked spectrum is zero outside rows iy x columns jx: the 2-D inverse transform is done
        # separably, first along the rows of those columns only, then along the columns of the kept
        # (unpadded) rows, so no padded-size copy is made (same result as ifft2 of the masked spectrum)
        col = np.zeros((R, jx.size), F.dtype)
        col[iy] = F[np.ix_(iy, jx)] * (my[iy][:, None] * mx[jx][None, :])
        col = sfft.ifft(col, axis=0, workers=workers)[pad:pad + rows]
        full = np.zeros((rows, C), F.dtype)
        full[:, jx] = col
        del col
        a = sfft.ifft(full, axis=1, workers=workers, overwrite_x=True)[:, pad:pad + cols]
        del full
        total += a.real ** 2
        total += a.imag ** 2
        del a
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


def normalised_amplitude(amplitude: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``amplitude`` divided by its median inside ``mask`` (bool; the whole map when None or empty),
    float32, dimensionless (1 = that median); zeros when the median is 0 (as :func:`crystal_map`)."""
    a = amplitude
    ref = float(np.median(a[mask])) if mask is not None and mask.any() else float(np.median(a))
    return (a / ref if ref > 0 else a * 0).astype(np.float32, copy=False)


class RunningCrystalMap:
    """The crystal map of :func:`crystal_map` built one normalised map at a time, so that only the
    best value (float32) and its index (int32) per pixel are held: 8 B/px whatever the number of
    crystals.  Ties go to the earlier crystal, as ``np.argmax`` does."""

    def __init__(self, shape=None) -> None:
        self.shape = None if shape is None else tuple(shape)
        self.value: np.ndarray | None = None
        self.index: np.ndarray | None = None
        self.n = 0

    def add(self, norm: np.ndarray, box=None) -> None:
        """Add the next crystal's normalised amplitude map: (rows, cols), or the part rows r0:r1, columns
        c0:c1 of the image when ``box`` = (r0, r1, c0, c1) (the crystal counts as 0 elsewhere; needs
        ``shape``)."""
        if box is not None and self.value is None:
            self.value = np.zeros(self.shape, np.float32)
            self.index = np.zeros(self.shape, np.int32)
        if self.value is None:
            self.value = np.array(norm, np.float32)
            self.index = np.zeros(self.value.shape, np.int32)
        else:
            sl = (slice(None), slice(None)) if box is None else (slice(box[0], box[1]), slice(box[2], box[3]))
            val, idx = self.value[sl], self.index[sl]
            upd = norm > val
            val[upd] = norm[upd]
            idx[upd] = self.n
        self.n += 1

    def result(self, threshold: float = 0.5) -> np.ndarray | None:
        """Map int32 of 1-based crystal indices, 0 where no crystal reaches ``threshold``; None if empty."""
        if self.value is None:
            return None
        out = self.index
        out += 1
        out[~(self.value >= threshold)] = 0
        self.value = self.index = None
        return out
