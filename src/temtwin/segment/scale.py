"""The smoothing scale of a micrograph: pixel size, noise, and the dominant lattice periodicity.

Lattice fringes must never become region boundaries, so atomic-resolution images are segmented on
features averaged over a window larger than the largest lattice period.  The lattice is found in a
Welch-averaged power spectrum (Hann-windowed tiles): sharp local maxima far above the local
spectral background, with periods between a few pixels and ``max_period_nm``.

Conventions: spatial frequencies in nm⁻¹ (|g| = 1/d, no 2π), ``g`` rows are [kx, ky] (x right,
y down); one vector per Friedel pair (kx > 0, or kx = 0 and ky > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi


@dataclass
class Lattice:
    """Bragg peaks of the image.

    g: (k, 2) [kx, ky] nm⁻¹, strongest first, one per Friedel pair.
    snr: (k,) peak power over the local spectral background.
    """

    g: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    snr: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def found(self) -> bool:
        return len(self.g) > 0

    @property
    def periods_nm(self) -> np.ndarray:
        return 1.0 / np.hypot(self.g[:, 0], self.g[:, 1]) if self.found else np.zeros(0)


def welch_spectrum(image: np.ndarray, tile: int = 512, max_tiles: int = 16):
    """Mean power spectrum of Hann-windowed tiles (rfft layout: rows ky, columns kx ≥ 0).

    Returns (power, n_tiles, tile_shape).  The tile is ``tile`` pixels, or half the image's
    shorter side for small images (at least 64); tiles overlap by half and are spread evenly over
    the image (up to ``max_tiles``).
    """
    rows, cols = image.shape
    t = int(min(tile, max(64, min(rows, cols) // 2)))
    th = min(t, rows - rows % 2)
    tw = min(t, cols - cols % 2)
    ny = int(np.clip(np.ceil(2 * rows / th) - 1, 1, np.sqrt(max_tiles)))
    nx = int(np.clip(np.ceil(2 * cols / tw) - 1, 1, np.sqrt(max_tiles)))
    r0 = np.linspace(0, rows - th, ny).astype(int)
    c0 = np.linspace(0, cols - tw, nx).astype(int)
    stack = np.stack([image[r:r + th, c:c + tw] for r in r0 for c in c0]).astype(np.float32)
    stack -= stack.mean(axis=(1, 2), keepdims=True)
    win = np.outer(np.hanning(th), np.hanning(tw)).astype(np.float32)
    spec = sfft.rfft2(stack * win, axes=(1, 2), workers=-1)
    power = (spec.real ** 2 + spec.imag ** 2).mean(0)
    return power, len(stack), (th, tw)


def find_lattice(image: np.ndarray, pixel_size_nm: tuple[float, float], max_period_nm: float = 2.0,
                 min_period_px: float = 2.5, min_snr: float | None = None, max_peaks: int = 6,
                 min_rel_power: float = 0.02, tile: int = 512) -> Lattice:
    """Dominant Bragg peaks of ``image`` (see module docstring).

    A peak counts when its power exceeds ``min_snr`` times the local background (median over a
    ring-free neighbourhood); by default 12 for ≥ 4 averaged tiles, 25 for fewer (an unaveraged
    periodogram is exponentially distributed, so single tiles need a higher bar), and its power is
    at least ``min_rel_power`` times that of the strongest peak.
    """
    px, py = pixel_size_nm
    power, n_tiles, (th, tw) = welch_spectrum(image, tile)
    if min_snr is None:
        min_snr = 12.0 if n_tiles >= 4 else 25.0
    ky = sfft.fftfreq(th, py)[:, None]
    kx = sfft.rfftfreq(tw, px)[None, :]
    k = np.hypot(kx, ky)
    kmax = 1.0 / (min_period_px * max(px, py))
    kmin = max(1.0 / max_period_nm, 4.0 / (min(th, tw) * max(px, py)))
    if kmin >= kmax:
        return Lattice()
    # background: median filter of the (fftshifted along ky) spectrum, ignores isolated peaks
    shifted = np.fft.fftshift(power, axes=0)
    bg = ndi.median_filter(shifted, size=9, mode="nearest")
    bg = np.fft.ifftshift(bg, axes=0)
    bg = np.maximum(bg, np.finfo(np.float32).tiny)
    ratio = power / bg
    band = (k >= kmin) & (k <= kmax)
    # drop the duplicated half of the kx = 0 column (Friedel mates: keep ky > 0)
    band[:, 0] &= (ky[:, 0] > 0)
    sm = np.fft.ifftshift(ndi.uniform_filter(np.fft.fftshift(ratio, axes=0), 3, mode="nearest"), axes=0)
    locmax = sm == np.fft.ifftshift(ndi.maximum_filter(np.fft.fftshift(sm, axes=0), 5, mode="nearest"),
                                    axes=0)
    cand = band & locmax & (ratio >= min_snr)
    iy, ix = np.nonzero(cand)
    if len(iy) == 0:
        return Lattice()
    order = np.argsort(-power[iy, ix])[:200]
    iy, ix = iy[order], ix[order]
    strong = power[iy, ix] >= min_rel_power * power[iy[0], ix[0]]
    iy, ix = iy[strong], ix[strong]
    g = np.column_stack([kx[0, ix], ky[iy, 0]])
    snr = ratio[iy, ix]
    # one peak per Bragg spot: suppress weaker candidates within 6 % of |g| (and 2 bins)
    dk = 2.0 / (min(th, tw) * max(px, py))
    keep: list[int] = []
    for i in range(len(g)):
        gi = g[i]
        ok = True
        for j in keep:
            d = min(np.hypot(*(gi - g[j])), np.hypot(*(gi + g[j])))
            if d < max(dk, 0.06 * np.hypot(*g[j])):
                ok = False
                break
        if ok:
            keep.append(i)
        if len(keep) >= max_peaks:
            break
    return Lattice(g=g[keep], snr=snr[keep])


def smoothing_scale_nm(pixel_size_nm: tuple[float, float], lattice: Lattice, lattice_factor: float = 1.0,
                       min_sigma_px: float = 1.5, user_nm: float | None = None) -> float:
    """Gaussian σ (nm) of the segmentation features.

    ``user_nm`` wins when given; otherwise ``max(min_sigma_px · pixel, lattice_factor · d_max)`` where
    d_max is the largest lattice period found (so that no fringe survives the averaging: a fringe of
    period d is attenuated by exp(-2π² σ²/d²) ≤ 3e-9 at σ = d).
    """
    if user_nm:
        return float(user_nm)
    s = min_sigma_px * max(pixel_size_nm)
    if lattice.found:
        s = max(s, lattice_factor * float(lattice.periods_nm.max()))
    return float(s)
