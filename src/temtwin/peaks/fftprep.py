"""Region FFTs on a standardised frequency grid: Welch-averaged, apodised power spectra.

Every region's power spectrum is brought onto one standard picture so that one detector (and one
U-Net) serves every magnification and window size:

* the spectrum is an ``S x S`` grid (``S`` = ``fft_size``, default 256) with the zero frequency at
  pixel ``(S // 2, S // 2)``; pixel (row i, column j) is the spatial frequency
  ``kx = (j - S//2) * dkx``, ``ky = (i - S//2) * dky`` in nm^-1 (|g| = 1/d, no 2 pi), kx along +x
  (columns), ky along +y (rows, down);
* the sampling ``dk`` is chosen so that the grid spans ``+-k_top``, ``k_top = min(k_max, Nyquist)``,
  but never finer than ``1 / window size`` (a small window gives a coarser grid);
* the window is cut into tiles of ``1 / dk`` nm (``1/(dkx px)`` x ``1/(dky py)`` pixels: non-square
  pixels give tiles of equal physical size), overlapping by half; each tile has its (weighted) mean
  removed, is apodised with a periodic 2D Hann window and Fourier transformed; the power spectra
  are averaged (Welch's method) and cropped (or padded) to the S x S grid.  A reflection is
  therefore always a Hann main lobe about 2 grid pixels wide, whatever the pixel size;
* the log-power is standardised ring by ring: ``z = (log P - median) / robust std`` over rings of
  equal |k| (1 pixel wide; the radial background of the CTF, Thon rings, thermal diffuse
  scattering and the image's own 1/k fall-off is removed), so noise has unit spread everywhere.

The noise model (:func:`noise_model`): the power-domain ring mean ``mu`` and standard deviation
``sd`` (3 rounds of 6-sigma clipping, so the reflections do not count), times a smooth 2D factor for
non-radial backgrounds (astigmatic Thon rings), raised along the kx = 0 / ky = 0 axes where streaks
run.  The averaged power of noise is Gamma distributed
with ``m = (mu / sd)^2`` equivalent degrees of freedom (Welch; m = 1, exponential, for a single
tile).  ``q`` maps every pixel through that distribution onto a standard normal scale (the
Gaussian-equivalent significance of its power): noise pixels are N(0, 1) whatever the number of
tiles, so thresholds follow from false-alarm rates.  The signal-to-noise ratio of a peak is ``q`` at
its pixel: SNR 3 = as unlikely under noise as a 3-sigma Gaussian excursion (for many tiles this
tends to ``(P - mu) / sd``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy import ndimage, special

from .spots import radial_median

#: radius (grid pixels) of the central zone excluded around the zero frequency
DC_RADIUS_PX = 3


@dataclass
class Spectrum:
    """A standardised power spectrum (see module docstring for the grid convention).

    power: float64 (S, S) Welch-averaged power (arbitrary units, per unit window energy).
    z: float32 (S, S) standardised log-power (0 outside ``valid``).
    valid: bool (S, S): measured frequencies outside the central zone.
    search: bool (S, S): the part of ``valid`` inside the ellipse inscribed in the measured rectangle.
    dk: (dkx, dky) nm^-1 per grid pixel.
    mu, sd: float32 (S, S) background mean and standard deviation of ``power`` (ring statistics).
    q: float32 (S, S) Gaussian-equivalent significance of ``power`` (0 outside ``valid``).
    n_tiles: number of tiles averaged; tile_px: (rows, cols) of a tile.
    """

    power: np.ndarray
    z: np.ndarray
    valid: np.ndarray
    dk: tuple[float, float]
    mu: np.ndarray
    sd: np.ndarray
    q: np.ndarray | None = None
    search: np.ndarray | None = None
    n_tiles: int = 1
    tile_px: tuple[int, int] = (0, 0)
    info: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.power.shape[0]

    @property
    def center(self) -> int:
        """Grid index of the zero frequency (same for rows and columns)."""
        return self.size // 2

    @property
    def sampling(self) -> float:
        """Mean grid sampling sqrt(dkx * dky), nm^-1 per pixel."""
        return float(np.sqrt(self.dk[0] * self.dk[1]))

    def to_k(self, rows, cols):
        """Grid positions (float rows, cols) -> (kx, ky) nm^-1."""
        c = self.center
        return (np.asarray(cols, float) - c) * self.dk[0], (np.asarray(rows, float) - c) * self.dk[1]

    def to_px(self, kx, ky):
        """(kx, ky) nm^-1 -> float grid (rows, cols)."""
        c = self.center
        return np.asarray(ky, float) / self.dk[1] + c, np.asarray(kx, float) / self.dk[0] + c

    @property
    def k_extent(self) -> list[float]:
        """[kx_min, kx_max, ky_min, ky_max] nm^-1 of the centres of the first and last columns/rows."""
        c, S = self.center, self.size
        return [-c * self.dk[0], (S - 1 - c) * self.dk[0], -c * self.dk[1], (S - 1 - c) * self.dk[1]]

    def snr_at(self, rows, cols) -> np.ndarray:
        """SNR (Gaussian-equivalent significance ``q``) at the nearest grid pixels of (rows, cols)."""
        i = np.clip(np.rint(rows).astype(int), 0, self.size - 1)
        j = np.clip(np.rint(cols).astype(int), 0, self.size - 1)
        return self.q[i, j].astype(float)

    def dof(self) -> np.ndarray:
        """Equivalent degrees of freedom m = (mu / sd)^2 of the noise power (>= 1)."""
        return np.clip((self.mu / np.maximum(self.sd, 1e-30)) ** 2, 1.0, 1e4)

    def significance_of(self, power, rows, cols) -> np.ndarray:
        """Significance of given power values at grid pixels (rows, cols) under this noise model."""
        i = np.clip(np.rint(rows).astype(int), 0, self.size - 1)
        j = np.clip(np.rint(cols).astype(int), 0, self.size - 1)
        return gamma_significance(np.asarray(power, float), self.mu[i, j].astype(float),
                                  self.dof()[i, j].astype(float))

    def inner(self) -> np.ndarray:
        """Where detections are accepted: the valid area within the ellipse inscribed in the measured
        rectangle (its corners, beyond one axis' Nyquist frequency, hold few pixels per ring), without
        its 1-pixel border (the edges of the measured band carry aliasing and interpolation artefacts)."""
        m = self.valid if self.search is None else self.search
        return ndimage.binary_erosion(m, structure=np.ones((3, 3), bool))

    def radius_px(self) -> np.ndarray:
        """|k| of every grid pixel in units of the mean sampling (float32 (S, S))."""
        S, c = self.size, self.center
        kx = (np.arange(S) - c) * self.dk[0]
        ky = (np.arange(S) - c) * self.dk[1]
        return (np.hypot(kx[None, :], ky[:, None]) / self.sampling).astype(np.float32)


def _logsf_to_sigma(logp: np.ndarray) -> np.ndarray:
    """Gaussian upper-tail quantile t with log Q(t) = logp, for very small tail probabilities."""
    t = np.sqrt(np.maximum(-2.0 * logp, 1.0))
    for _ in range(4):
        t = np.sqrt(np.maximum(-2.0 * (logp + np.log(t * np.sqrt(2 * np.pi))), 1.0))
    return t


def gamma_significance(power: np.ndarray, mu: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent significance of ``power`` under Gamma noise of mean ``mu`` and shape ``m``.

    q = Phi^-1(1 - sf) with sf = P(noise >= power); exact for moderate tails, asymptotic
    (log sf ~ (m-1) log x - x - log Gamma(m)) beyond 1e-300 so that strong peaks do not saturate.
    """
    power, mu, m = np.broadcast_arrays(np.asarray(power, float), np.asarray(mu, float), np.asarray(m, float))
    x = power * m / np.maximum(mu, 1e-300)
    sf = special.gammaincc(m, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = -special.ndtri(np.clip(sf, 1e-300, 1.0))  # = isf(sf)
        tiny = sf <= 1e-250
        if tiny.any():
            xt, mt = x[tiny], m[tiny]
            logp = (mt - 1) * np.log(xt) - xt - special.gammaln(mt) + np.log1p(np.maximum(mt - 1, 0) / xt)
            q[tiny] = _logsf_to_sigma(logp)
    return q


def standard_sampling(pixel_size_nm, window_shape, size: int = 256, k_max: float = 12.5):
    """Grid sampling (dkx, dky) nm^-1 and tile shape (rows, cols) px for a window.

    The tile's physical side is ``T = min(size / (2 k_top), window width, window height)`` nm with
    ``k_top = min(k_max, Nyquist)``; ``dk = 1 / (tile pixels * pixel size)`` per axis.
    """
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    h, w = int(window_shape[0]), int(window_shape[1])
    k_top = min(k_max, 0.5 / max(px, py))
    T = min(size / (2.0 * k_top), w * px, h * py)
    nx = int(max(8, min(w, round(T / px))))
    ny = int(max(8, min(h, round(T / py))))
    return (1.0 / (nx * px), 1.0 / (ny * py)), (ny, nx)


def _tile_starts(n: int, t: int, overlap: float) -> np.ndarray:
    """Start indices of tiles of length t over n samples (stride t*(1-overlap), centred)."""
    if t >= n:
        return np.array([0])
    stride = max(1, int(round(t * (1.0 - overlap))))
    m = (n - t) // stride + 1
    extra = (n - t) - (m - 1) * stride
    return extra // 2 + stride * np.arange(m)


def _grid_index(S: int, n: int):
    """For each standard-grid index: FFT index (into an unshifted length-n FFT) and validity."""
    q = np.arange(S) - S // 2
    ok = (q >= -(n // 2)) & (q <= (n - 1) // 2)
    return np.where(ok, q % n, 0), ok


def welch_power(data: np.ndarray, tile_px, size: int, weight: np.ndarray | None = None,
                overlap: float = 0.5, workers: int | None = None, chunk: int = 16):
    """Welch-averaged power spectrum of ``data`` on the standard grid.

    Returns (power (S, S) float64, valid (S, S) bool, number of tiles used).
    """
    ny, nx = tile_px
    H, W = data.shape
    rs, cs = _tile_starts(H, ny, overlap), _tile_starts(W, nx, overlap)
    starts = [(r, c) for r in rs for c in cs]
    han = np.outer(np.hanning(ny + 1)[:-1], np.hanning(nx + 1)[:-1]).astype(np.float32)
    if ny == 1 or nx == 1:
        han = np.ones((ny, nx), np.float32)
    if weight is not None:
        cover = np.array([weight[r:r + ny, c:c + nx].mean() for r, c in starts])
        keep = cover >= 0.5 * cover.max()
        starts = [s for s, k in zip(starts, keep) if k]
    ri, rok = _grid_index(size, ny)
    ci, cok = _grid_index(size, nx)
    acc = np.zeros((size, size), np.float64)
    norm = 0.0
    for k0 in range(0, len(starts), chunk):
        block = starts[k0:k0 + chunk]
        tiles = np.stack([data[r:r + ny, c:c + nx] for r, c in block]).astype(np.float32)
        if weight is not None:
            wts = np.stack([weight[r:r + ny, c:c + nx] for r, c in block]).astype(np.float32) * han
        else:
            wts = np.broadcast_to(han, tiles.shape)
        mean = (tiles * wts).sum((1, 2), keepdims=True) / np.maximum(wts.sum((1, 2), keepdims=True), 1e-12)
        tiles = (tiles - mean) * wts
        F = scipy.fft.fft2(tiles, axes=(1, 2), workers=workers)
        F = F[:, ri][:, :, ci]
        acc += (F.real.astype(np.float64) ** 2 + F.imag.astype(np.float64) ** 2).sum(0)
        norm += float((wts.astype(np.float64) ** 2).sum())
    power = acc / max(norm, 1e-30)
    valid = rok[:, None] & cok[None, :]
    power[~valid] = 0.0
    return power, valid, len(starts)


def ring_statistics(values: np.ndarray, ring: np.ndarray, use: np.ndarray, n_rings: int, clip: float = 6.0,
                    rounds: int = 3):
    """Per-ring robust statistics of ``values`` over pixels ``use``.

    Returns (median, robust std = 1.4826 MAD, clipped mean, clipped std, count), each (n_rings,);
    the clipped moments come from ``rounds`` of rejecting values above mean + clip * std (reflections).
    """
    ru = ring[use]                     # the one radial median (temtwin.peaks.spots); empty rings 0
    med = np.nan_to_num(radial_median(values[use], ru, n_rings))
    dev = np.abs(values - med[np.clip(ring, 0, n_rings - 1)])
    mad = np.nan_to_num(radial_median(dev[use], ru, n_rings)) * 1.4826
    r = np.clip(ring, 0, n_rings - 1)[use]
    v = values[use].astype(np.float64)
    keep = np.ones(v.shape, bool)
    hi = med + clip * np.maximum(mad, 1e-30)
    mean, std = med.copy(), mad.copy()
    for _ in range(rounds):
        keep = v <= hi[r]
        cnt = np.bincount(r[keep], minlength=n_rings).astype(float)
        s1 = np.bincount(r[keep], v[keep], minlength=n_rings)
        s2 = np.bincount(r[keep], v[keep] ** 2, minlength=n_rings)
        mean = s1 / np.maximum(cnt, 1)
        std = np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mean ** 2, 0))
        hi = mean + clip * np.maximum(std, 1e-30)
    count = np.bincount(r, minlength=n_rings)
    return med, mad, mean, std, count


def _inscribed(valid: np.ndarray, c: int) -> np.ndarray:
    """The ellipse inscribed in the measured rectangle around the zero frequency (its corners, beyond
    the Nyquist frequency of one axis, are dropped: few pixels per ring, unreliable statistics)."""
    rows = np.nonzero(valid.any(1))[0]
    cols = np.nonzero(valid.any(0))[0]
    if len(rows) == 0 or len(cols) == 0:
        return valid
    hr = max(min(c - rows[0], rows[-1] - c), 1)
    hc = max(min(c - cols[0], cols[-1] - c), 1)
    S = valid.shape[0]
    i = (np.arange(S) - c)[:, None] / hr
    j = (np.arange(S) - c)[None, :] / hc
    return i ** 2 + j ** 2 <= 1.0


def noise_model(power: np.ndarray, use: np.ndarray, r: np.ndarray, line_window: int = 15,
                smooth_px: int = 32):
    """Background mean and standard deviation maps of a (possibly smoothed) power spectrum.

    Ring statistics (clipped mean and std per 1-pixel ring of |k|, interpolated in |k|), scaled by a
    smooth 2D factor (the running median of power / ring median over ``smooth_px`` pixels: non-radial
    backgrounds such as astigmatic Thon rings; a reflection a few pixels wide does not move it), raised along
    the kx = 0 and ky = 0 axes (7 pixels wide) to a running median of the axis line itself when the
    line is brighter: edge and scan streaks are a background of their own there, and a reflection
    on an axis (a few pixels long) does not move the running median (up to ``line_window`` pixels,
    shorter near the zero frequency where streaks fall off steeply, see :func:`_falloff_median`).
    """
    ring = np.rint(r).astype(int)
    n_rings = int(ring.max()) + 1
    corr = np.ones_like(power, dtype=float)
    if smooth_px:
        med, _, _, _, cnt = ring_statistics(power, ring, use, n_rings, rounds=0)
        corr = _smooth_correction(power, use, _radial_interp(r, med, cnt >= 16), smooth_px)
    _, _, mean, std, cnt = ring_statistics(power / corr, ring, use, n_rings)
    ok = (cnt >= 16) & (std > 0)
    mu = _radial_interp(r, mean, ok) * corr
    sd = np.maximum(_radial_interp(r, std, ok), 1e-30) * corr
    S = power.shape[0]
    c = S // 2
    m = np.clip((mu / sd) ** 2, 1.0, 1e4)
    ratio = special.gammaincinv(m, 0.5) / m  # median / mean of Gamma(m)
    for axis in (0, 1):
        for off in range(-3, 4):
            idx = (c + off, slice(None)) if axis == 0 else (slice(None), c + off)
            line = np.where(use[idx], power[idx], np.nan)
            good = np.isfinite(line)
            if good.sum() < line_window:
                continue
            med = _falloff_median(line, good, c, line_window // 2)
            mu_line = med / ratio[idx]
            raise_ = good & (mu_line > mu[idx])
            mu_new = np.where(raise_, mu_line, mu[idx])
            sd[idx] = np.where(raise_, mu_new / np.sqrt(m[idx]), sd[idx])
            mu[idx] = mu_new
    return mu, sd


def _smooth_correction(power: np.ndarray, use: np.ndarray, med: np.ndarray, size: int) -> np.ndarray:
    """Smooth multiplicative correction of a radial background: running median (over ``size`` px, on a
    2x binned grid) of power / expected median, 1 where nothing is measured."""
    ratio = np.where(use, power / np.maximum(med, 1e-300), np.nan)
    S = ratio.shape[0]
    h = S // 2
    b = ratio[:2 * h, :2 * h].reshape(h, 2, h, 2)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            b = np.nanmedian(b, axis=(1, 3))
    ok = np.isfinite(b)
    b = np.where(ok, b, 1.0)
    k = max(3, size // 2 | 1)
    sm = ndimage.median_filter(b, size=k, mode="nearest")
    full = ndimage.zoom(sm, 2, order=1, mode="nearest")
    out = np.ones_like(ratio)
    out[:2 * h, :2 * h] = full
    return np.clip(np.where(use, out, 1.0), 0.2, 5.0)


def _falloff_median(line: np.ndarray, good: np.ndarray, c: int, max_half: int = 7, frac: float = 0.25):
    """Running median of a line through the zero frequency whose half-window grows with the distance d
    from it (``clip(frac * d, 2, max_half)``), so that it follows a streak's steep fall-off near zero."""
    n = len(line)
    idx = np.arange(n)
    filled = np.interp(idx, idx[good], line[good]) if good.any() else np.zeros(n)
    half = np.clip(np.rint(frac * np.abs(idx - c)), 2, max_half).astype(int)
    out = np.empty(n)
    for h in np.unique(half):
        med = ndimage.median_filter(filled, size=2 * h + 1, mode="nearest")
        out[half == h] = med[half == h]
    return out


def _radial_interp(r: np.ndarray, table: np.ndarray, ok: np.ndarray) -> np.ndarray:
    idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return np.zeros_like(r)
    return np.interp(r, idx.astype(float), table[idx])


def standardise(power: np.ndarray, valid: np.ndarray, dk, dc_radius_px: float = DC_RADIUS_PX,
                g_min: float = 0.0, n_tiles: int = 1, tile_px=(0, 0)) -> Spectrum:
    """Build a :class:`Spectrum` from a power spectrum on the standard grid (ring standardisation)."""
    sp = Spectrum(power=power, z=np.zeros_like(power, np.float32), valid=valid.copy(), dk=tuple(map(float, dk)),
                  mu=np.zeros_like(power, np.float32), sd=np.ones_like(power, np.float32),
                  n_tiles=n_tiles, tile_px=tuple(tile_px))
    r = sp.radius_px()
    r_min = max(float(dc_radius_px), g_min / sp.sampling)
    use = valid & (r >= r_min) & (power > 0)
    sp.search = use & _inscribed(valid, sp.center)
    sp.valid = use
    ring = np.rint(r).astype(int)
    n_rings = int(ring.max()) + 1
    logp = np.log(np.maximum(power, 1e-300))
    med_l, mad_l, _, _, cnt = ring_statistics(logp, ring, use, n_rings)
    ok = cnt >= 16
    bg = _radial_interp(r, med_l, ok)
    sig = _radial_interp(r, mad_l, ok & (mad_l > 0))
    z = (logp - bg) / np.maximum(sig, 1e-6)
    sp.z = np.where(use, z, 0.0).astype(np.float32)
    mu, sd = noise_model(power, use, r)
    sp.mu, sp.sd = mu.astype(np.float32), sd.astype(np.float32)
    m = np.clip((mu / sd) ** 2, 1.0, 1e4)
    q = np.nan_to_num(gamma_significance(power, mu, m), nan=0.0, posinf=1e6, neginf=-40.0)
    sp.q = np.where(use, q, 0.0).astype(np.float32)
    sp.info.update(r_min_px=r_min)
    return sp


def region_spectrum(data: np.ndarray, pixel_size_nm, box=None, weight: np.ndarray | None = None,
                    size: int = 256, k_max: float = 12.5, overlap: float = 0.5, g_min: float = 0.4,
                    workers: int | None = None) -> Spectrum:
    """The standardised spectrum of ``data[box]`` (whole image when ``box`` is None).

    ``weight`` (box-shaped, in [0, 1]) restricts the analysis to a masked area (soft-edged region
    mask).  ``g_min`` (nm^-1) widens the excluded central zone (spacings above 1/g_min nm are ignored).
    """
    data = np.asarray(data)
    if box is not None:
        r0, c0, r1, c1 = box
        data = data[r0:r1, c0:c1]
    dk, tile = standard_sampling(pixel_size_nm, data.shape, size, k_max)
    power, valid, n = welch_power(data, tile, size, weight=weight, overlap=overlap, workers=workers)
    sp = standardise(power, valid, dk, g_min=g_min, n_tiles=n, tile_px=tile)
    sp.info.update(window_shape=list(data.shape))
    return sp

