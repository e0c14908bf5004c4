"""Segmentation of very large images (gigapixel overviews): layout on a binned copy, boundaries per tile.

An overview of 16 384² pixels (1 GB as float32) cannot be segmented by :func:`segment_auto` at full
resolution within a few GB: its full-resolution steps (boundary refinement, island removal, label
ordering) hold several full-size integer and float64 copies.  Above ``segment.tiled.above_px``
pixels the image is segmented in two steps instead:

1. Layout: the image is binned by an integer factor b (b × b block means, streamed in row blocks, no
   full-size float copy) to at most ``tiled.layout_px`` pixels per side, and :func:`segment_auto` runs
   on that copy at pixel size b·(px, py).  ``segment_auto`` analyses large images on a grid of at most
   ``max_analysis_px`` anyway, so the layout (which regions exist, their numbering top to bottom then
   left to right) is the one it finds at full resolution.  When the image shows a lattice whose
   period is shorter than 2.5·b pixels, b is lowered so the fringes survive binning (b = 1: plain
   ``segment_auto``, full memory).
2. Boundaries at full resolution, tile by tile (``tiled.tile_px``, with a margin): every pixel within
   ``band`` binned pixels of a layout boundary is given to the candidate region (its own and those of
   its (2·band + 1)² binned neighbourhood) whose mean intensity is nearest to its own intensity
   smoothed by a Gaussian of σ = max(1, b/2) pixels: the boundary lands on the mid-level crossing of
   the intensity step, as :func:`temtwin.segment.refine.refine_boundaries` places it.  A neighbour is a
   candidate only when the two regions' mean intensities differ by at least ``min_contrast`` times the
   pooled standard deviation of the smoothed intensity inside them (regions told apart by texture or
   lattice only keep the layout's boundary: intensity says nothing there).  Region means and standard
   deviations come from a first pass over the tiles (pixels outside the band).  Pieces that this cuts
   off (smaller than the layout's minimum region area) join the neighbour they border most, per tile.

Memory: the image, the int32 label map and per-tile work arrays (a few × tile²); time: two
Gaussian-smoothing passes over the image (OpenCV) plus ``segment_auto`` on the binned copy.
Conventions: rows = y (down); pixel sizes (x, y) in nm.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from .canny import AutoResult, segment_auto
from .refine import remove_islands
from .scale import find_lattice

log = logging.getLogger("temtwin")

TILED_DEFAULTS: dict[str, Any] = {"above_px": 8192 * 8192, "layout_px": 4096, "tile_px": 2048, "band": 2,
                                  "min_contrast": 3.0}


def tiled_settings(cfg: dict | None) -> dict:
    """The ``segment.tiled`` section with defaults filled in."""
    return {**TILED_DEFAULTS, **((cfg or {}).get("tiled") or {})}


def bin_image(image: np.ndarray, b: int, rows_per_block: int = 4096) -> np.ndarray:
    """b × b block means (float32, ceil(rows/b) × ceil(cols/b)); partial blocks at the bottom and right
    edges are averaged over the pixels they hold.  Streamed over row blocks (float64 sums of one block)."""
    rows, cols = image.shape
    if b == 1:
        return np.asarray(image, np.float32)
    out = np.empty((-(-rows // b), -(-cols // b)), np.float32)
    cstart = np.arange(0, cols, b)
    ccount = np.minimum(cstart + b, cols) - cstart
    step = max(b, (rows_per_block // b) * b)
    for r0 in range(0, rows, step):   # row blocks of ~rows_per_block rows, each vectorised
        blk = np.asarray(image[r0:r0 + step], np.float32)
        rstart = np.arange(0, blk.shape[0], b)
        rcount = np.minimum(rstart + b, blk.shape[0]) - rstart
        s = np.add.reduceat(np.add.reduceat(blk, rstart, axis=0, dtype=np.float64), cstart, axis=1)
        out[r0 // b:r0 // b + len(rstart)] = s / (rcount[:, None] * ccount[None, :])
    return out


def layout_binning(image: np.ndarray, pixel_size_nm, layout_px: int, max_period_nm: float = 2.0) -> int:
    """The binning factor b of the layout copy: ceil(max side / layout_px), lowered so that the
    shortest lattice period found (if any) spans at least 2.5·b pixels."""
    b = max(1, int(np.ceil(max(image.shape) / layout_px)))
    if b > 1:
        lat = find_lattice(image, pixel_size_nm, max_period_nm=max_period_nm)
        if lat.found:
            kx, ky = lat.g[:, 0] * pixel_size_nm[0], lat.g[:, 1] * pixel_size_nm[1]
            period_px = float(1.0 / np.max(np.hypot(kx, ky)))
            b = max(1, min(b, int(np.floor(period_px / 2.5))))
    return b


def _tiles(rows: int, cols: int, t: int):
    for r0 in range(0, rows, t):
        for c0 in range(0, cols, t):
            yield r0, min(rows, r0 + t), c0, min(cols, c0 + t)


def _smooth(image: np.ndarray, r0: int, r1: int, c0: int, c1: int, sigma: float, m: int):
    """Gaussian-smoothed float32 image over [r0-m, r1+m) x [c0-m, c1+m) clipped to the image, and the
    clipped window's origin.  Reflection only at the image's own edges: the core is identical whatever
    the tiling."""
    R0, R1 = max(0, r0 - m), min(image.shape[0], r1 + m)
    C0, C1 = max(0, c0 - m), min(image.shape[1], c1 + m)
    blk = np.ascontiguousarray(image[R0:R1, C0:C1], np.float32)
    k = int(2 * np.ceil(4 * sigma) + 1)
    return cv2.GaussianBlur(blk, (k, k), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT), R0, C0


def refine_tiled(image: np.ndarray, layout: np.ndarray, b: int, tile_px: int = 2048, band: int = 2,
                 min_contrast: float = 3.0, min_island_px: int = 0, progress=None) -> tuple[np.ndarray, dict]:
    """Full-resolution int32 labels from a layout on the b-binned grid (see module docstring, step 2).

    Returns (labels, info) with info ``refined_pixels`` (band pixels examined), ``moved_pixels`` (given
    to another region than the layout's), ``sigma_px``.
    """
    rows, cols = image.shape
    layout = np.asarray(layout, np.int32)
    n = int(layout.max()) + 1
    sigma = max(1.0, b / 2.0)
    m = int(np.ceil(4 * sigma)) + 1
    size = 2 * band + 1
    lo = ndi.minimum_filter(layout, size, mode="nearest")
    hi = ndi.maximum_filter(layout, size, mode="nearest")
    band_c = lo != hi
    labels = np.empty((rows, cols), np.int32)
    t = max(b, (int(tile_px) // b) * b)          # tiles aligned with the binned grid
    tiles = list(_tiles(rows, cols, t))

    def up(a, r0, r1, c0, c1):
        """Nearest upsampling of a binned-grid array over the full-resolution window."""
        blk = a[r0 // b:-(-r1 // b), c0 // b:-(-c1 // b)]
        full = np.repeat(np.repeat(blk, b, axis=0), b, axis=1)
        dr, dc = r0 - (r0 // b) * b, c0 - (c0 // b) * b
        return full[dr:dr + (r1 - r0), dc:dc + (c1 - c0)]

    # pass 1: region statistics of the smoothed intensity outside the band; layout labels everywhere
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    cnt = np.zeros(n)
    for k, (r0, r1, c0, c1) in enumerate(tiles):
        lab = up(layout, r0, r1, c0, c1)
        labels[r0:r1, c0:c1] = lab
        v, R0, C0 = _smooth(image, r0, r1, c0, c1, sigma, m)
        v = v[r0 - R0:r0 - R0 + (r1 - r0), c0 - C0:c0 - C0 + (c1 - c0)].astype(np.float64)
        inner = ~up(band_c, r0, r1, c0, c1)
        li, vi = lab[inner], v[inner]
        s1 += np.bincount(li, weights=vi, minlength=n)
        s2 += np.bincount(li, weights=vi * vi, minlength=n)
        cnt += np.bincount(li, minlength=n)
        if progress:
            progress(k + 1, 2 * len(tiles), "tiles (region statistics, boundaries)")
    mean = s1 / np.maximum(cnt, 1)
    var = np.maximum(s2 / np.maximum(cnt, 1) - mean ** 2, 0.0)
    if not band_c.any():
        return labels, {"refined_pixels": 0, "moved_pixels": 0, "sigma_px": sigma}
    # pass 2: band pixels take the nearest candidate's mean; islands dissolve, per tile
    n_band = n_moved = 0
    for k, (r0, r1, c0, c1) in enumerate(tiles):
        R0, R1 = max(0, r0 - m), min(rows, r1 + m)
        C0, C1 = max(0, c0 - m), min(cols, c1 + m)
        bt = up(band_c, R0, R1, C0, C1)
        if bt.any():
            v, Q0, P0 = _smooth(image, R0, R1, C0, C1, sigma, m)
            v = v[R0 - Q0:R1 - Q0, C0 - P0:C1 - P0]
            own = up(layout, R0, R1, C0, C1)
            rr, cc = np.nonzero(bt)
            cand = np.stack([own[rr, cc], up(lo, R0, R1, C0, C1)[rr, cc], up(hi, R0, R1, C0, C1)[rr, cc]])
            x = v[rr, cc].astype(np.float64)
            dist = np.abs(x[None, :] - mean[cand])
            pooled = np.sqrt(0.5 * (var[cand] + var[cand[0]][None, :]))
            ok = np.abs(mean[cand] - mean[cand[0]][None, :]) >= min_contrast * np.maximum(pooled, 1e-12)
            ok[0] = True
            dist[~ok] = np.inf
            best = cand[np.argmin(dist, axis=0), np.arange(len(x))]
            sub = own.copy()
            sub[rr, cc] = best
            sub = remove_islands(sub, bt, min_island_px)
            core = sub[r0 - R0:r0 - R0 + (r1 - r0), c0 - C0:c0 - C0 + (c1 - c0)]
            inside = (rr >= r0 - R0) & (rr < r1 - R0) & (cc >= c0 - C0) & (cc < c1 - C0)
            n_band += int(inside.sum())
            n_moved += int(np.count_nonzero(core != labels[r0:r1, c0:c1]))
            labels[r0:r1, c0:c1] = core
        if progress:
            progress(len(tiles) + k + 1, 2 * len(tiles), "tiles (region statistics, boundaries)")
    return labels, {"refined_pixels": n_band, "moved_pixels": n_moved, "sigma_px": sigma}


def segment_large(image: np.ndarray, pixel_size_nm, cfg: dict | None = None, progress=None) -> AutoResult:
    """:func:`segment_auto` for images of any size: plain ``segment_auto`` up to
    ``segment.tiled.above_px`` pixels (results unchanged), the tiled method above (module
    docstring).  ``info`` gains ``tiled``, ``layout_binning``, ``tile_px``, ``refined_pixels``,
    ``moved_pixels`` and ``refine_sigma_px`` on the tiled path."""
    tc = tiled_settings(cfg)
    if image.size <= int(tc["above_px"]):
        return segment_auto(image, pixel_size_nm, cfg)
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    canny_cfg = (cfg or {}).get("canny") or {}
    b = layout_binning(image, (px, py), int(tc["layout_px"]), float(canny_cfg.get("max_lattice_period_nm", 2.0)))
    if b == 1:
        log.warning("segment: %d x %d px with a lattice too fine to bin; segmenting at full resolution "
                    "(memory grows with the image)", image.shape[1], image.shape[0])
        return segment_auto(image, pixel_size_nm, cfg)
    small = bin_image(image, b)
    log.info("segment: %d x %d px, layout on a %d x %d copy binned %d x %d, boundaries per %d px tile",
             image.shape[1], image.shape[0], small.shape[1], small.shape[0], b, b, int(tc["tile_px"]))
    res = segment_auto(small, (px * b, py * b), cfg)
    min_island = int(np.ceil(res.info.get("min_area_nm2_effective", 0.0) / (px * py)))
    labels, rinfo = refine_tiled(image, res.labels, b, int(tc["tile_px"]), int(tc["band"]),
                                 float(tc["min_contrast"]), min_island, progress=progress)
    info = dict(res.info)
    info.update(tiled=True, layout_binning=b, tile_px=int(tc["tile_px"]), refined_pixels=rinfo["refined_pixels"],
                moved_pixels=rinfo["moved_pixels"], refine_sigma_px=rinfo["sigma_px"], n_regions=int(labels.max()))
    return AutoResult(labels=labels, info=info, coarse=res.labels, edges=None)
