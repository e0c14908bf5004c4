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
                                  "min_contrast": 3.0, "thin_layers": True, "strip_px": 1024}


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


def _strips(shape, theta_deg: float, width: int):
    """Full-length strips across the layers (column ranges when the normal is nearer to y, else row
    ranges): (r0, r1, c0, c1)."""
    rows, cols = shape
    if abs(np.sin(np.radians(theta_deg))) >= abs(np.cos(np.radians(theta_deg))):
        return [(0, rows, c0, min(cols, c0 + width)) for c0 in range(0, cols, width)]
    return [(r0, min(rows, r0 + width), 0, cols) for r0 in range(0, rows, width)]


def _frame_labels(layout: np.ndarray, b: int, geo, nu: int, nv: int, r0: int, c0: int, shape) -> np.ndarray:
    """Layout labels (binned grid, factor b) sampled at the frame pixels of a strip of ``shape`` whose
    pixel (0, 0) is image pixel (r0, c0); 0 outside the strip."""
    n, t, u0, v0 = geo
    uu = (np.arange(nu) + u0)[:, None]
    vv = (np.arange(nv) + v0)[None, :]
    x = np.rint(uu * n[0] + vv * t[0]).astype(np.int64)
    y = np.rint(uu * n[1] + vv * t[1]).astype(np.int64)
    ok = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
    out = np.zeros((nu, nv), np.int32)
    out[ok] = layout[(y[ok] + r0) // b, (x[ok] + c0) // b]
    return out


def _hidden_in_windows(prof, counts, pos, steps, tst, c, add_hidden_steps, half: int = 64):
    """:func:`temtwin.segment.layers.add_hidden_steps` on windows of ±``half`` px of the profile around
    the interfaces found (merged where they overlap): its candidate grid spans the profile, which at
    full resolution (16 384 px) would cost memory and time quadratic in the length."""
    pos, steps, tst = np.asarray(pos, float), np.asarray(steps, float), np.asarray(tst, float)
    if not len(pos):
        return pos, steps
    nu = prof.shape[1]
    order = np.argsort(pos)
    pos, steps, tst = pos[order], steps[order], tst[order]
    segs: list[list[int]] = []
    for i, p in enumerate(pos):
        if segs and p - half <= pos[segs[-1][-1]] + half:
            segs[-1].append(i)
        else:
            segs.append([i])
    out_p, out_s = [], []
    for seg in segs:        # loop over windows (tens), each a small fit
        a = int(max(0, np.floor(pos[seg[0]] - half)))
        b = int(min(nu, np.ceil(pos[seg[-1]] + half) + 1))
        p2, s2, _ = add_hidden_steps(prof[:, a:b], counts[:, a:b], pos[seg] - a, steps[seg], tst[seg], c)
        out_p.extend(np.asarray(p2, float) + a)
        out_s.extend(np.asarray(s2, float))
    return np.asarray(out_p), np.asarray(out_s)


def _layer_regions(Lf: np.ndarray) -> list[int]:
    """Labels of a strip's layer frame (rows along the normal, 0 outside the strip) that are layers: present
    in at least 90 % of the columns that the strip covers over the whole range of rows the label
    occupies (an inclusion such as a wire covers fewer)."""
    out = []
    for lab in np.unique(Lf[Lf > 0]):      # loop over regions (tens)
        m = Lf == lab
        rows = np.nonzero(m.any(1))[0]
        full = (Lf[rows[0]:rows[-1] + 1] > 0).all(0)
        if full.any() and (m.any(0) & full).sum() >= 0.9 * full.sum():
            out.append(int(lab))
    return out


def recover_thin_layers(image: np.ndarray, labels: np.ndarray, layout: np.ndarray, b: int, theta_deg: float,
                        layer_cfg: dict | None = None, strip_px: int = 1024, band: int = 2, progress=None) -> dict:
    """Paint the layers that the b-binned layout cannot carry (thinner than the refinement band,
    (2 ``band`` + 1) b pixels) into ``labels`` at full resolution, in place.

    The layout comes from the multilayer method (:mod:`temtwin.segment.layers`) on the binned copy:
    its layers thinner than about 3 binned pixels are lost, and a thin one it keeps lies wholly inside
    the band that :func:`refine_tiled` re-assigns by region means measured outside the band (so it has
    none, and vanishes).  Here the image is cut into full-length strips across the layers
    (``strip_px`` wide) and each strip is analysed at full resolution by the same method's steps: the
    layer frame at the layout's normal ``theta_deg``, band profiles, interfaces and hidden steps
    (:func:`temtwin.segment.layers.find_interfaces`, ``add_hidden_steps``), interfaces snapped column
    by column (:func:`temtwin.segment.layers.snap_interfaces`, without its per-column refit of thin
    layers: on the strips of the thin-layer test scene it lowered the 3-px layer's IoU from 0.84 to
    0.82 untilted and from 0.81 to 0.75 at 3° tilt).  Every layer between two consecutive
    interfaces whose median width is below the band width is a thin layer; thin layers of the strips
    whose centres agree within ``max_roughness_px`` are one layer when at least half of the strips
    that reach it find it (an inclusion may hide it in a few).  Each kept layer gets a new label,
    painted between its two snapped interfaces over the pixels whose label is a *layer* region of the
    strip (:func:`_layer_regions`: inclusions such as a wire keep theirs).  Labels are
    then renumbered top to bottom, left to right (centroid order, as
    :func:`temtwin.segment.canny.order_labels`), tile by tile.

    Memory: a strip's frame and a few float64 copies of it.  Returns info ``thin_layers`` (layers
    painted) and ``thin_layer_px`` (their median widths, px).
    """
    from .layers import DEFAULTS as LDEF
    from .layers import add_hidden_steps, band_profiles, find_interfaces, pixel_noise, snap_interfaces, to_frame

    c = dict(LDEF)
    c.update({k: v for k, v in (layer_cfg or {}).items() if k in LDEF})
    strips = _strips(image.shape, theta_deg, int(strip_px))
    th = np.radians(theta_deg)
    nvec = np.array([np.cos(th), np.sin(th)])
    thin_px = (2 * int(band) + 1) * b
    per_strip = []
    found = []                     # (strip, global centre u, layer index in the strip, width)
    for k, (r0, r1, c0, c1) in enumerate(strips):   # loop over strips (tens), each vectorised
        sub = np.asarray(image[r0:r1, c0:c1], np.float32)
        fr, geo = to_frame(sub, theta_deg)
        prof, counts = band_profiles(fr, int(c["band_px"]))
        noise = pixel_noise(sub[::4])
        pos, steps, tst = find_interfaces(prof, counts, noise, c)
        pos, steps = _hidden_in_windows(prof, counts, pos, steps, tst, {**c, "_noise": noise}, add_hidden_steps)
        order = np.argsort(pos)
        pos, steps = np.asarray(pos)[order], np.asarray(steps)[order]
        shift = geo[2] + c0 * nvec[0] + r0 * nvec[1]           # frame row -> global u
        bpos = (snap_interfaces(fr, pos, steps, c, refine_thin=False) if len(pos) > 1
                else np.zeros((len(pos), fr.shape[1])))
        widths = np.median(np.diff(bpos, axis=0), axis=1) if len(pos) > 1 else np.zeros(0)
        for i in np.nonzero(widths < thin_px)[0]:
            found.append((k, float(0.5 * (pos[i] + pos[i + 1]) + shift), int(i), float(widths[i])))
        per_strip.append((bpos, geo, shift, fr.shape, (float(pos.min() + shift), float(pos.max() + shift))
                          if len(pos) else (np.inf, -np.inf)))
        del fr, prof, counts
        if progress:
            progress(k + 1, 2 * len(strips), "strips (thin layers)")
    found.sort(key=lambda q: q[1])
    clusters: list[list] = []
    for q in found:
        if clusters and q[1] - clusters[-1][-1][1] <= float(c["max_roughness_px"]) and q[0] not in {
                z[0] for z in clusters[-1]}:
            clusters[-1].append(q)
        else:
            clusters.append([q])
    keep = []
    for cl in clusters:
        u = float(np.median([q[1] for q in cl]))
        reach = sum(1 for ps in per_strip if ps[4][0] - c["max_roughness_px"] <= u <= ps[4][1] + c["max_roughness_px"])
        if len(cl) >= max(2, 0.5 * reach) or (reach == 1 and len(cl) == 1):
            keep.append(cl)
    info = {"thin_layers": len(keep), "thin_layer_px": [round(float(np.median([q[3] for q in cl])), 1) for cl in keep]}
    if not keep:
        return info
    n0 = int(labels.max()) + 1
    for k, (r0, r1, c0, c1) in enumerate(strips):
        bpos, geo, shift, (nu, nv), _ = per_strip[k]
        mine = [(n0 + j, q[2]) for j, cl in enumerate(keep) for q in cl if q[0] == k]
        if mine:
            n, t, u0, v0 = geo
            Lf = _frame_labels(layout, b, geo, nu, nv, r0, c0, (r1 - r0, c1 - c0))
            layer_regs = np.array(_layer_regions(Lf), np.int32)
            lo = min(float(bpos[i].min()) for _, i in mine) - 2
            hi = max(float(bpos[i + 1].max()) for _, i in mine) + 2
            # bounding box (strip pixels) of the frame rows lo..hi
            fu = np.array([lo, lo, hi, hi]) + u0
            fv = np.array([0, nv - 1, 0, nv - 1]) + v0
            xs, ys = fu * n[0] + fv * t[0], fu * n[1] + fv * t[1]
            y0, y1 = int(max(0, np.floor(ys.min()))), int(min(r1 - r0, np.ceil(ys.max()) + 1))
            x0, x1 = int(max(0, np.floor(xs.min()))), int(min(c1 - c0, np.ceil(xs.max()) + 1))
            if y1 > y0 and x1 > x0:
                yy, xx = np.mgrid[y0:y1, x0:x1]
                u = xx * n[0] + yy * n[1] - u0
                v = np.clip(np.rint(xx * t[0] + yy * t[1] - v0).astype(np.int64), 0, nv - 1)
                lab = labels[r0 + y0:r0 + y1, c0 + x0:c0 + x1]
                ok = np.isin(lab, layer_regs)
                for new, i in mine:     # loop over the strip's thin layers (a few)
                    m = ok & (u > bpos[i][v]) & (u <= bpos[i + 1][v])
                    lab[m] = new
        if progress:
            progress(len(strips) + k + 1, 2 * len(strips), "strips (thin layers)")
    _order_inplace(labels)
    return info


def _order_inplace(labels: np.ndarray, tile: int = 4096) -> None:
    """Renumber labels 1..n by centroid (top to bottom, then left to right; rows quantised to 1 % of the
    height, as :func:`temtwin.segment.canny.order_labels`), in place, tile by tile."""
    rows, cols = labels.shape
    n = int(labels.max()) + 1
    area, sy, sx = np.zeros(n), np.zeros(n), np.zeros(n)
    for r0, r1, c0, c1 in _tiles(rows, cols, tile):
        lab = labels[r0:r1, c0:c1]
        yy, xx = np.mgrid[r0:r1, c0:c1]
        area += np.bincount(lab.ravel(), minlength=n)
        sy += np.bincount(lab.ravel(), weights=yy.ravel().astype(float), minlength=n)
        sx += np.bincount(lab.ravel(), weights=xx.ravel().astype(float), minlength=n)
    ids = np.nonzero(area[1:] > 0)[0] + 1
    cy, cx = sy[ids] / area[ids], sx[ids] / area[ids]
    order = ids[np.lexsort((cx, np.floor(cy / max(0.01 * rows, 1.0))))]
    lut = np.zeros(n, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    for r0, r1, c0, c1 in _tiles(rows, cols, tile):
        labels[r0:r1, c0:c1] = lut[labels[r0:r1, c0:c1]]


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
    if res.info.get("method") == "layers" and "layer_normal_deg" in res.info and tc["thin_layers"]:
        info.update(recover_thin_layers(image, labels, res.labels, b, float(res.info["layer_normal_deg"]),
                                        (cfg or {}).get("layers"), int(tc["strip_px"]), int(tc["band"]),
                                        progress=progress))
    info.update(tiled=True, layout_binning=b, tile_px=int(tc["tile_px"]), refined_pixels=rinfo["refined_pixels"],
                moved_pixels=rinfo["moved_pixels"], refine_sigma_px=rinfo["sigma_px"], n_regions=int(labels.max()))
    return AutoResult(labels=labels, info=info, coarse=res.labels, edges=None)
