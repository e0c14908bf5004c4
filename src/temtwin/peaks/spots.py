"""One spots type and finder: Bragg spots of a micrograph's power spectrum.

* :class:`Spots` — position (kx, ky nm⁻¹), spacing d (nm), angle, significance and strength of each
  Friedel pair; built from fft_peaks' ``peaks.h5`` tables (:meth:`Spots.from_peaks_table`) or found
  in an image.
* :func:`fft_spots` / :func:`region_spots` — Welch power spectrum, local maxima at least ``min_snr``
  times the radial median power at the same |k|, sub-pixel by parabolic fits.  GPA's fallback when a
  region has no fft_peaks entry (library use without the workflow).
* :func:`isolated_spots` — the same radial-median test on one Hann-windowed crop with an isolation
  ring (interfaces give streaks, not spots) and a power share: the stack's lattice-fringe test before
  registering atomic-resolution images against mass-thickness images.

fft_peaks (:mod:`.combine`) is the stage that decides a region's spots and whether it is
crystalline; downstream code reads its table instead of finding spots again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage


@dataclass
class Spots:
    """Bragg spots, one per Friedel pair (angle in (-90°, 90°]): kx, ky (nm⁻¹, image axes); snr:
    significance of the detection (peak power over the radial median background for
    :func:`fft_spots`, Gaussian-equivalent σ for fft_peaks' tables); strength: power above
    background (∝ amplitude², ranks the spots), sorted by decreasing strength.  The one spots type
    of temtwin: fft_peaks' tables (:meth:`from_peaks_table`), GPA's g-vector choice and the stack's
    lattice-fringe test (:func:`isolated_spots`) all use it."""

    kx: np.ndarray
    ky: np.ndarray
    snr: np.ndarray
    strength: np.ndarray | None = None

    def __post_init__(self):
        if self.strength is None:
            self.strength = np.asarray(self.snr, float).copy()

    def __len__(self) -> int:
        return len(self.kx)

    @property
    def k(self) -> np.ndarray:
        """(n, 2) [kx, ky] (nm⁻¹)."""
        return np.column_stack([self.kx, self.ky])

    @property
    def g(self) -> np.ndarray:
        """|k| (nm⁻¹)."""
        return np.hypot(self.kx, self.ky)

    @property
    def d(self) -> np.ndarray:
        """Lattice spacing 1/|k| (nm)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.g

    @property
    def angle_deg(self) -> np.ndarray:
        """Direction of k, degrees from +x towards +y, in (-90, 90] (one per Friedel pair)."""
        return np.degrees(np.arctan2(self.ky, self.kx))

    @property
    def amplitude(self) -> np.ndarray:
        """Bragg amplitude ∝ sqrt(strength) (a.u.)."""
        return np.sqrt(np.maximum(np.asarray(self.strength, float), 0.0))

    @classmethod
    def from_peaks_table(cls, table: dict | None) -> Spots:
        """The spots of one region of ``peaks.h5`` (the fft_peaks table: kx, ky nm⁻¹, intensity,
        snr): strength = the integrated intensity (the snr where intensities are missing or not
        positive); Friedel mates merged.  Empty when the table is missing."""
        if table is None or len(np.atleast_1d(table.get("kx", []))) == 0:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        n = len(np.atleast_1d(table["kx"]))
        inten = np.asarray(table.get("intensity", table.get("snr")), float)
        if not np.all(np.isfinite(inten)) or inten.min() <= 0:
            inten = np.asarray(table.get("snr", np.ones(n)), float)
        return spots_from_table(table["kx"], table["ky"], inten, table.get("snr"))

    @classmethod
    def from_peakset(cls, peaks) -> Spots:
        """The spots of a :class:`temtwin.peaks.combine.PeakSet` (what fft_peaks writes)."""
        return cls.from_peaks_table({"kx": peaks.kx, "ky": peaks.ky, "intensity": peaks.intensity,
                                     "snr": peaks.snr})


def canonical(k: np.ndarray) -> np.ndarray:
    """Representative of ±k with angle in (-90°, 90°] (kx > 0, or kx == 0 and ky > 0)."""
    k = np.array(k, float, ndmin=2)
    flip = (k[:, 0] < 0) | ((k[:, 0] == 0) & (k[:, 1] < 0))
    k[flip] *= -1
    return k


def welch_power(image: np.ndarray, tile: int = 512, max_tiles: int = 16) -> np.ndarray:
    """Average Hann-windowed power spectrum (fftshifted, float64) of tiles of ``image``."""
    img = np.asarray(image, np.float32)
    R, C = img.shape
    ty, tx = min(tile, R), min(tile, C)
    nyt = max(1, int(math.ceil((R - ty) / (ty / 2))) + 1) if R > ty else 1
    nxt = max(1, int(math.ceil((C - tx) / (tx / 2))) + 1) if C > tx else 1
    ys = np.linspace(0, R - ty, nyt).astype(int)
    xs = np.linspace(0, C - tx, nxt).astype(int)
    pairs = [(y, x) for y in ys for x in xs]
    if len(pairs) > max_tiles:
        idx = np.linspace(0, len(pairs) - 1, max_tiles).astype(int)
        pairs = [pairs[i] for i in idx]
    win = (np.hanning(ty)[:, None] * np.hanning(tx)[None, :]).astype(np.float32)
    acc = np.zeros((ty, tx))
    for y, x in pairs:
        t = img[y:y + ty, x:x + tx]
        t = (t - t.mean()) * win
        acc += np.abs(np.fft.fft2(t)) ** 2
    return np.fft.fftshift(acc / len(pairs))


def fft_spots(image: np.ndarray, pixel_size_nm, min_snr: float = 15.0, tile: int = 512,
              k_min_nm: float = 0.6, max_spots: int = 24, k_max_nyquist: float = 0.8) -> Spots:
    """Bragg spots of an image from its Welch power spectrum (see module rules)."""
    P = welch_power(image, tile)
    ty, tx = P.shape
    px, py = pixel_size_nm
    dkx, dky = 1.0 / (tx * px), 1.0 / (ty * py)
    ky = (np.arange(ty) - ty // 2)[:, None] * dky
    kx = (np.arange(tx) - tx // 2)[None, :] * dkx
    kk = np.sqrt(kx * kx + ky * ky)
    lp = ndimage.gaussian_filter(np.log(P + 1e-30), 1.0)
    # radial median background
    dk = max(dkx, dky)
    bins = np.minimum((kk / dk).astype(int), int(kk.max() / dk))
    nb = bins.max() + 1
    order = np.argsort(bins, axis=None)
    b_sorted = bins.ravel()[order]
    v_sorted = lp.ravel()[order]
    edges = np.searchsorted(b_sorted, np.arange(nb + 1))
    med = np.array([np.median(v_sorted[edges[i]:edges[i + 1]]) if edges[i + 1] > edges[i] else 0.0
                    for i in range(nb)])
    med = ndimage.median_filter(med, 5, mode="nearest")
    ratio = lp - med[bins]
    nyq = 0.5 * min(1.0 / px, 1.0 / py)
    ok = (kk >= max(k_min_nm, 4 * dk)) & (kk <= k_max_nyquist * nyq)
    peak = (ratio == ndimage.maximum_filter(ratio, size=5)) & ok & (ratio >= math.log(min_snr))
    iy, ix = np.nonzero(peak)
    if len(iy) == 0:
        return Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    # sub-pixel: parabolic fit on the log power along each axis
    def para(a, b, c):
        d = a - 2 * b + c
        return np.where(np.abs(d) > 1e-12, 0.5 * (a - c) / d, 0.0).clip(-0.5, 0.5)
    iyc, ixc = np.clip(iy, 1, ty - 2), np.clip(ix, 1, tx - 2)
    oy = para(lp[iyc - 1, ixc], lp[iyc, ixc], lp[iyc + 1, ixc])
    ox = para(lp[iyc, ixc - 1], lp[iyc, ixc], lp[iyc, ixc + 1])
    k = np.column_stack([(ix - tx // 2 + ox) * dkx, (iy - ty // 2 + oy) * dky])
    snr = np.exp(ratio[iy, ix])
    power = np.exp(lp[iy, ix]) - np.exp(med[bins[iy, ix]])
    k = canonical(k)
    # merge Friedel mates (now on top of each other)
    order = np.argsort(-power)
    k, snr, power = k[order], snr[order], power[order]
    keep: list[int] = []
    for i in range(len(k)):
        if all(np.hypot(*(k[i] - k[j])) > 2.5 * dk for j in keep):
            keep.append(i)
        if len(keep) >= max_spots:
            break
    return Spots(k[keep, 0], k[keep, 1], snr[keep], power[keep])


def spots_from_table(kx, ky, strength, snr=None) -> Spots:
    """:class:`Spots` from a peaks.h5 table (kx, ky nm⁻¹; strength: the ``intensity`` column, or
    the snr when intensities are missing); Friedel mates merged (the stronger is kept)."""
    k = canonical(np.column_stack([np.ravel(kx), np.ravel(ky)]))
    s = np.asarray(strength, float).ravel()
    q = s.copy() if snr is None else np.asarray(snr, float).ravel()
    order = np.argsort(-s)
    k, s, q = k[order], s[order], q[order]
    keep: list[int] = []
    for i in range(len(k)):
        tol = 0.03 * max(np.hypot(*k[i]), 1e-9)
        if all(np.hypot(*(k[i] - k[j])) > tol for j in keep):
            keep.append(i)
    return Spots(k[keep, 0], k[keep, 1], q[keep], s[keep])


def region_spots(image: np.ndarray, pixel_size_nm, region: np.ndarray, min_snr: float = 15.0,
                 tile: int = 512) -> Spots:
    """Bragg spots of one region of an image: its bounding box, with the pixels outside the region
    set to the region's mean (so only the region's lattice contributes), Welch spectrum."""
    region = np.asarray(region, bool)
    rows = np.nonzero(region.any(1))[0]
    cols = np.nonzero(region.any(0))[0]
    if len(rows) < 16 or len(cols) < 16:
        return Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = np.asarray(image, np.float32)[sl].copy()
    m = region[sl]
    crop[~m] = crop[m].mean()
    return fft_spots(crop, pixel_size_nm, min_snr=min_snr, tile=tile)


def isolated_spots(img: np.ndarray, pixel_size_nm, d_max_nm: float = 1.0, ratio: float = 30.0,
                   size: int = 512) -> Spots:
    """Isolated Bragg spots of the lattice fringes visible in ``img`` (one per Friedel pair, strongest
    first; empty when it shows no lattice).

    A spot is an isolated maximum of the (Hann-windowed) power spectrum at least ``ratio`` times the
    spectrum's radial median at its |k| and 5 times any value on a ring 3-4 pixels around it
    (interfaces give streaks, not isolated spots), and carries at least 1e-4 of the image's
    (windowed) power.  Only spacings between 2.2 pixels and ``d_max_nm`` are considered; at least two
    maxima (a Friedel pair) are needed.  Uses the central ``size``² crop; positions are to the nearest
    FFT pixel; ``snr`` = power / radial median, ``strength`` = power.
    """
    none = Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    p = pixel_size_nm
    pxx, pxy = (float(p), float(p)) if np.isscalar(p) else (float(p[0]), float(p[1]))
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
    k = canonical(np.column_stack([kxx[spot][o], kyy[spot][o]]))
    p, q = P[spot][o], (P / bg)[spot][o]
    keep: list[int] = []                      # Friedel mates: the same canonical k (stronger first)
    for i in range(len(k)):
        if all(np.hypot(*(k[i] - k[j])) > 0.5 * dk for j in keep):
            keep.append(i)
    return Spots(k[keep, 0], k[keep, 1], q[keep], p[keep])
