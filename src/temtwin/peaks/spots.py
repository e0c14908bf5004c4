"""One spots type and one spot finder: Bragg spots of a micrograph's power spectrum.

* :class:`Spots` — position (kx, ky nm⁻¹), spacing d (nm), angle, significance and strength of each
  Friedel pair; built from fft_peaks' ``peaks.h5`` tables (:meth:`Spots.from_peaks_table`) or found
  in an image.
* :func:`find_spots` — THE finder of spots in an image, one pipeline whose steps are options
  (:class:`SpotOptions`): power spectrum (:func:`welch_power`: Hann-windowed tiles averaged, Welch;
  one central window is the 1-tile case) → background (:func:`radial_median`: the median per ring
  of |k| of the (smoothed, log or linear) power) → local maxima of power / background above a
  threshold, optionally isolated (a spot exceeds every value on a ring around it: interfaces give
  streaks, not spots) and carrying a share of the power → sub-pixel parabolic refinement (optional)
  → Friedel merge (:func:`merge_friedel`).
* Its two presets: :data:`WELCH_SPOTS` = :func:`fft_spots` / :func:`region_spots` (GPA's spots when a
  region has no fft_peaks entry, library use without the workflow) and :data:`ISOLATED_SPOTS` =
  :func:`isolated_spots` (the stack's lattice-fringe test before registering atomic-resolution
  images against mass-thickness images, :mod:`temtwin.stack.lattice`).

fft_peaks (:mod:`.combine`) is the stage that decides a region's spots and whether it is
crystalline; downstream code reads its table instead of finding spots again.  Its detectors work on
a standardised spectrum (:mod:`.fftprep`: fixed grid, Gamma noise model, U-Net) and share
:func:`radial_median` for the ring statistics, as does :func:`temtwin.scan_correct.lattice.find_peaks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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


# ------------------------------------------------------------------------------ the one finder
@dataclass(frozen=True)
class SpotOptions:
    """Options of :func:`find_spots` (the presets :data:`WELCH_SPOTS` and :data:`ISOLATED_SPOTS`).

    Power spectrum (:func:`welch_power`): ``tile`` (px, side of the Hann-windowed tiles), ``max_tiles``
    (Welch average over up to that many half-overlapping tiles; 1 = the one central tile).
    Background (:func:`radial_median`): ``log_power`` (the spectrum is compared in log power, True,
    or in power, False; the background is the median per ring of that value), ``smooth_px`` (σ in FFT
    pixels of a Gaussian applied to the (log) power first; 0: none), ``ring_offset`` (ring of a pixel
    = floor(|k| / dk + ring_offset), dk the coarser FFT step; 0.5: the nearest ring), ``profile_median``
    (running median over that many rings of the background profile; 1: none).
    Detection: a spot is a local maximum over ``window`` x ``window`` pixels of the ratio of the
    (smoothed) power to its background, with ratio ≥ ``min_ratio``; with ``isolation`` it must also
    exceed ``isolation`` x the largest ratio on a ring of ``isolation_ring_px`` pixels around it
    (an interface's streak is not a spot); with ``min_power_share`` its (unsmoothed) power must be at
    least that share of the spectrum's total.  Only |k| in [max(``k_min_nm``, ``k_min_px`` dk),
    1 / (``d_min_px`` x the larger pixel size)] counts; at least ``min_maxima`` maxima (before the
    Friedel merge; 2 = a Friedel pair) are needed, and windows under ``min_size`` px give none.
    Refinement and merge: ``subpixel`` (parabolic fit of the log ratio along each axis, else the
    nearest FFT pixel); Friedel mates (and maxima closer than ``merge_px`` dk) merged, the stronger
    kept; at most ``max_spots`` (None: all).
    """

    tile: int = 512
    max_tiles: int = 16
    log_power: bool = True
    smooth_px: float = 1.0
    ring_offset: float = 0.0
    profile_median: int = 5
    window: int = 5
    min_ratio: float = 15.0
    isolation: float | None = None
    isolation_ring_px: tuple[float, float] = (2.5, 4.2)
    min_power_share: float = 0.0
    k_min_nm: float = 0.6
    k_min_px: float = 4.0
    d_min_px: float = 2.5
    min_maxima: int = 1
    min_size: int = 0
    subpixel: bool = True
    merge_px: float = 2.5
    max_spots: int | None = 24


#: GPA's spots (:func:`fft_spots`): Welch over 16 tiles of 512², background = radial median of the
#: Gaussian-smoothed (σ 1 px) log power, smoothed over 5 rings; maxima over 5x5 at ≥ 15x the
#: background, 0.6 nm⁻¹ ≤ |k| ≤ 0.8 Nyquist; sub-pixel; the 24 strongest.
WELCH_SPOTS = SpotOptions()
#: Lattice fringes before stack registration (:func:`isolated_spots`): one central Hann window of
#: 512², background = radial median (nearest ring) of the power itself; maxima over 3x3 at ≥ 30x the
#: background, 5x any value on a ring 2.5-4.2 px around, ≥ 1e-4 of the total power, spacing between
#: 2.2 px and 1 nm, at least a Friedel pair; nearest FFT pixel; all spots.
ISOLATED_SPOTS = SpotOptions(max_tiles=1, log_power=False, smooth_px=0.0, ring_offset=0.5, profile_median=1,
                             window=3, min_ratio=30.0, isolation=5.0, min_power_share=1e-4, k_min_nm=1.0,
                             k_min_px=0.0, d_min_px=2.2, min_maxima=2, min_size=32, subpixel=False,
                             merge_px=0.5, max_spots=None)


def welch_power(image: np.ndarray, tile: int = 512, max_tiles: int = 16) -> np.ndarray:
    """Hann-windowed power spectrum (fftshifted, float64, zero frequency at (rows // 2, cols // 2)) of
    ``image``, averaged over tiles of ``tile``² px (Welch): tiles overlapping by half cover the image,
    ``max_tiles`` of them evenly picked; ``max_tiles`` = 1 is the one central tile.  Each tile has its
    mean removed before the window."""
    img = np.asarray(image, np.float32)
    R, C = img.shape
    ty, tx = min(tile, R), min(tile, C)
    if max_tiles <= 1:
        pairs = [((R - ty) // 2, (C - tx) // 2)]
    else:
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
    for y, x in pairs:                       # at most max_tiles FFTs
        t = img[y:y + ty, x:x + tx]
        t = (t - t.mean()) * win
        acc += np.abs(np.fft.fft2(t)) ** 2
    return np.fft.fftshift(acc / len(pairs))


def radial_median(values: np.ndarray, rings: np.ndarray, n_rings: int | None = None) -> np.ndarray:
    """Median of ``values`` over each ring (integer labels ``rings`` ≥ 0, same shape), (n_rings,);
    NaN for an empty ring (the mean of the two middle values for an even count, as :func:`np.median`;
    in the floating dtype of ``values``)."""
    r = np.asarray(rings, np.int64).ravel()
    v = np.asarray(values).ravel()
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(float)
    n = int(r.max()) + 1 if n_rings is None else int(n_rings)
    order = np.lexsort((v, r))
    vs = v[order]
    counts = np.bincount(r, minlength=n)[:n]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo = np.minimum(starts + np.maximum(counts - 1, 0) // 2, max(len(vs) - 1, 0))
    hi = np.minimum(starts + counts // 2, max(len(vs) - 1, 0))
    with np.errstate(invalid="ignore"):
        med = (vs[lo] + vs[hi]) / 2.0 if len(vs) else np.zeros(n)
    return np.where(counts > 0, med, np.nan)


def merge_friedel(k: np.ndarray, strength: np.ndarray, tol: float | np.ndarray,
                  max_spots: int | None = None) -> np.ndarray:
    """Indices (strongest first) of the spots kept when Friedel mates ±k, and spots closer than ``tol``
    (nm⁻¹; scalar or per spot) after :func:`canonical`, are merged; the stronger of each group is kept
    (ties: the earlier).  The one Friedel merge of :func:`find_spots` and :func:`spots_from_table`."""
    k = canonical(k)
    order = np.argsort(-np.asarray(strength, float), kind="stable")
    tol = np.broadcast_to(np.asarray(tol, float), (len(k),))
    keep: list[int] = []
    for i in order:                          # few maxima (above the threshold)
        if not keep or np.all(np.hypot(*(k[keep] - k[i]).T) > tol[i]):
            keep.append(int(i))
        if max_spots is not None and len(keep) >= max_spots:
            break
    return np.array(keep, int)


def _parabolic(a, b, c):
    """Sub-pixel offset of the vertex of the parabola through (-1, a), (0, b), (1, c), in [-0.5, 0.5]."""
    d = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(d) > 1e-12, 0.5 * (a - c) / d, 0.0).clip(-0.5, 0.5)


def find_spots(image: np.ndarray, pixel_size_nm, options: SpotOptions = WELCH_SPOTS, **changes) -> Spots:
    """The one spot finder: Bragg spots of ``image``'s power spectrum, one per Friedel pair, strongest
    first (see :class:`SpotOptions`; ``changes`` replace single options).  ``pixel_size_nm``: scalar
    or (x, y) nm.  Returns :class:`Spots` with kx, ky (nm⁻¹, image axes), snr = (smoothed) power /
    radial-median background at the spot, strength = power above that background (a.u.)."""
    o = replace(options, **changes) if changes else options
    none = Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    p = pixel_size_nm
    px, py = (float(p), float(p)) if np.isscalar(p) else (float(p[0]), float(p[1]))
    if min(min(o.tile, s) for s in np.shape(image)) < max(o.min_size, 3):
        return none
    P = welch_power(image, o.tile, o.max_tiles)
    ty, tx = P.shape
    dkx, dky = 1.0 / (tx * px), 1.0 / (ty * py)
    dk = max(dkx, dky)
    iy = (np.arange(ty) - ty // 2)[:, None]
    ix = (np.arange(tx) - tx // 2)[None, :]
    kx, ky = ix * dkx, iy * dky
    kk = np.sqrt(kx * kx + ky * ky)                                          # |k| nm⁻¹
    k_lo, k_hi = max(o.k_min_nm, o.k_min_px * dk), 1.0 / (o.d_min_px * max(px, py))
    if k_lo >= k_hi:
        return none
    # detection map D (log or linear power, smoothed) and its radial-median background B
    D = np.log(P + 1e-30) if o.log_power else P
    if o.smooth_px > 0:
        D = ndimage.gaussian_filter(D, o.smooth_px)
    rings = np.floor(kk / dk + o.ring_offset).astype(np.int64)
    prof = radial_median(D, rings)
    prof = np.where(np.isfinite(prof), prof, np.inf)                       # empty ring: no spot
    if o.profile_median > 1:
        prof = ndimage.median_filter(prof, o.profile_median, mode="nearest")
    B = prof[rings]
    # score: a monotone form of power / background (its log for log power)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = D - B if o.log_power else D / B
    score = np.nan_to_num(score, nan=-np.inf if o.log_power else 0.0)
    def times(s, f):                                   # score of f x the ratio of score s
        return s + math.log(f) if o.log_power else s * f
    spot = (score == ndimage.maximum_filter(score, size=o.window, mode="constant", cval=-np.inf))
    spot &= (score >= times(0.0 if o.log_power else 1.0, o.min_ratio)) & (kk >= k_lo) & (kk <= k_hi)
    if o.isolation is not None:
        r0, r1 = o.isolation_ring_px
        h = int(math.ceil(r1))
        yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
        ring = (np.hypot(yy, xx) >= r0) & (np.hypot(yy, xx) <= r1)
        spot &= score > times(ndimage.maximum_filter(score, footprint=ring, mode="constant", cval=-np.inf),
                              o.isolation)
    if o.min_power_share > 0:
        spot &= P >= o.min_power_share * P.sum()      # a real lattice carries a visible share of the contrast
    yi, xi = np.nonzero(spot)
    if len(yi) < max(o.min_maxima, 1):
        return none
    oy = np.zeros(len(yi))
    ox = np.zeros(len(yi))
    if o.subpixel:                                     # parabola through the log (smoothed) power, each axis
        lp = D if o.log_power else np.log(np.maximum(D, 1e-300))
        yc, xc = np.clip(yi, 1, ty - 2), np.clip(xi, 1, tx - 2)
        oy = _parabolic(lp[yc - 1, xc], lp[yc, xc], lp[yc + 1, xc])
        ox = _parabolic(lp[yc, xc - 1], lp[yc, xc], lp[yc, xc + 1])
    k = np.column_stack([(xi - tx // 2 + ox) * dkx, (yi - ty // 2 + oy) * dky])
    if o.log_power:
        snr, strength = np.exp(score[yi, xi]), np.exp(D[yi, xi]) - np.exp(B[yi, xi])
    else:
        snr, strength = score[yi, xi], D[yi, xi] - B[yi, xi]
    keep = merge_friedel(k, strength, o.merge_px * dk, o.max_spots)
    k = canonical(k)[keep]
    return Spots(k[:, 0], k[:, 1], snr[keep], strength[keep])


def spots_from_table(kx, ky, strength, snr=None) -> Spots:
    """:class:`Spots` from a peaks.h5 table (kx, ky nm⁻¹; strength: the ``intensity`` column, or
    the snr when intensities are missing); Friedel mates merged (the stronger is kept)."""
    k = canonical(np.column_stack([np.ravel(kx), np.ravel(ky)]))
    s = np.asarray(strength, float).ravel()
    q = s.copy() if snr is None else np.asarray(snr, float).ravel()
    keep = merge_friedel(k, s, 0.03 * np.maximum(np.hypot(k[:, 0], k[:, 1]), 1e-9))   # within 3 % of |k|
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


def fft_spots(image: np.ndarray, pixel_size_nm, min_snr: float = 15.0, tile: int = 512,
              k_min_nm: float = 0.6, max_spots: int = 24, k_max_nyquist: float = 0.8) -> Spots:
    """GPA's spots: :func:`find_spots` with :data:`WELCH_SPOTS` (``k_max_nyquist``: |k| up to that
    fraction of the Nyquist frequency)."""
    return find_spots(image, pixel_size_nm, WELCH_SPOTS, min_ratio=min_snr, tile=tile, k_min_nm=k_min_nm,
                      max_spots=max_spots, d_min_px=2.0 / k_max_nyquist)


def isolated_spots(img: np.ndarray, pixel_size_nm, d_max_nm: float = 1.0, ratio: float = 30.0,
                   size: int = 512) -> Spots:
    """Lattice fringes visible in ``img`` (spacings up to ``d_max_nm``): :func:`find_spots` with
    :data:`ISOLATED_SPOTS`; empty when the image shows no lattice."""
    return find_spots(img, pixel_size_nm, ISOLATED_SPOTS, k_min_nm=1.0 / d_max_nm, min_ratio=ratio, tile=size)
