"""Region adjacency graph of an over-segmentation and hierarchical merging, weakest boundary first.

Two regions a, b **differ** when some feature channel c has both an effect size
z_c = |μ_a,c − μ_b,c| / s_c ≥ ``min_contrast`` (s_c the pixel-level noise of the channel) and a
significance t_c = z_c / sqrt(A_corr/A_a + A_corr/A_b) ≥ ``min_significance`` (A_corr the
correlation area of the features, so small noise fragments never "differ").

Their boundary is an **edge** when the contrast between the regions is concentrated at the boundary:
the feature jump measured across the boundary pixels (mean difference of neighbouring pixels,
times sqrt(2π)·σ, the width of a step blurred by the feature smoothing σ), projected on the
regions' mean difference, is at least ``min_jump`` of that difference; or when at least
``min_support`` of its length lies on Canny edge pixels.  A slow drift split in two has a jump ≈ σ/W
of its contrast (W the region width) and is not an edge.

Two passes (:func:`merge_regions`), each merging the weakest pair first and re-evaluating the
neighbours of every merged region:

1. **Grow**: merge while the boundary's mean edge strength G is below ``min_boundary_g`` and the
   regions do not differ (an ultrametric contour map with a statistical stop).  Boundaries are
   judged by their mean over the whole length and by region means, so a gap in an edge cannot leak
   one region into another.
2. **Validate**: merge every remaining pair that does not differ or whose boundary is not an edge.

Then thin regions are resolved: a region narrower than sqrt(2π)σ (mean width = area / half its
boundary length) whose mean lies between those of its two main neighbours (mixed pixels of a
blurred boundary) joins the nearer one, and any region narrower than 2σ (below the resolution of
the features) joins its most similar neighbour.  Finally regions smaller than ``min_area`` pixels
join their most similar neighbour.  Loops run over
regions and boundaries (not pixels); per-pixel statistics are vectorised with bincount.
"""

from __future__ import annotations

import cv2
import numpy as np


def boundary_pairs(labels: np.ndarray, edges: np.ndarray, G: np.ndarray, features: np.ndarray | None = None):
    """Adjacent label pairs (4-connectivity) with boundary statistics.

    Returns (a, b, length, on_edge, sum_g, jump) with a < b: the number of neighbouring pixel
    pairs across the boundary, how many of them touch an edge pixel, the sum over them of the mean
    G of the two pixels, and (C, n_pairs) the summed feature difference (pixel in b minus pixel in a;
    zeros when ``features`` is None).
    """
    n = int(labels.max()) + 1
    keys, hits, gs, dif = [], [], [], []
    for sl_a, sl_b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        la, lb = labels[sl_a], labels[sl_b]
        m = la != lb
        a, b = la[m].astype(np.int64), lb[m].astype(np.int64)
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
        hits.append(edges[sl_a][m] | edges[sl_b][m])
        gs.append(0.5 * (G[sl_a][m] + G[sl_b][m]))
        if features is not None:
            sign = np.where(a < b, 1.0, -1.0)
            dif.append(np.stack([(ch[sl_b][m] - ch[sl_a][m]) * sign for ch in features]))
    k = np.concatenate(keys)
    C = 0 if features is None else features.shape[0]
    if len(k) == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, z, np.zeros(0), np.zeros((C, 0))
    uk, inv = np.unique(k, return_inverse=True)
    length = np.bincount(inv)
    on_edge = np.bincount(inv, weights=np.concatenate(hits).astype(float))
    sum_g = np.bincount(inv, weights=np.concatenate(gs).astype(float))
    if features is not None:
        d = np.concatenate(dif, axis=1)
        jump = np.stack([np.bincount(inv, weights=d[c], minlength=len(uk)) for c in range(C)])
    else:
        jump = np.zeros((0, len(uk)))
    return uk // n, uk % n, length, on_edge, sum_g, jump


def region_sums(labels: np.ndarray, features: np.ndarray):
    """(area (n+1,), sums (C, n+1)) per label value."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    sums = np.stack([np.bincount(flat, weights=ch.ravel().astype(float), minlength=n) for ch in features])
    return area, sums


def _robust_std(v: np.ndarray) -> float:
    """1.4826 × median absolute deviation (the std of a Gaussian, robust to outliers)."""
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def _blocks(x: np.ndarray, B: int) -> np.ndarray:
    """(rows//B, B, cols//B, B) view of the top-left part of ``x`` tiled by B × B blocks."""
    rows, cols = (x.shape[0] // B) * B, (x.shape[1] // B) * B
    return x[:rows, :cols].reshape(rows // B, B, cols // B, B)


def _box_trend(ch: np.ndarray, half: float) -> np.ndarray:
    """Local trend: box average over ±``half`` pixels (cost independent of the size)."""
    size = int(2 * round(half) + 1)
    return cv2.blur(ch, (size, size), borderType=cv2.BORDER_REFLECT)


def feature_noise(features: np.ndarray, sigma_px: float, rel_floor: float = 0.0, scales=None):
    """Per-channel noise of the features: (s_c, corr_area_c).

    s_c: pixel-level noise, 1.4826 × MAD of the feature minus its local average over ±4σ (robust
    to the few edge pixels, independent of any segmentation), but at least ``rel_floor`` × the
    channel's range (1st to 99th percentile), so that in nearly noise-free images tiny real
    variations (thickness, bending) do not count as region contrast.
    corr_area_c: the correlation area (pixels) of that noise, measured as the largest
    B² · var(block means) / var(pixels) over B × B blocks of 3 to 24 windows (robust MAD
    variances of the residual from a trend at 4 B; at least 4 × 4 blocks), and at least
    4π(window)², the value for white noise under a Gaussian window, so that the mean of a region
    of A pixels has the standard error s_c·sqrt(corr_area_c / A) whatever the texture.
    scales: each channel's averaging window in units of ``sigma_px`` (default 1).
    """
    C = features.shape[0]
    s = np.zeros(C)
    ca = np.zeros(C)
    for c, ch in enumerate(features):
        win = sigma_px * (1.0 if scales is None else float(scales[c]))
        ch = np.ascontiguousarray(ch, np.float32)
        mad = _robust_std(ch - _box_trend(ch, 4 * win))
        span = float(np.percentile(ch, 99) - np.percentile(ch, 1))
        s[c] = max(mad, rel_floor * span, 1e-6 * span, 1e-12)
        best = 4 * np.pi * win ** 2
        for k in (3, 6, 12, 24):
            B = int(round(k * win))
            if B < 2 or ch.shape[0] < 4 * B or ch.shape[1] < 4 * B:
                continue
            r = ch - _box_trend(ch, 4 * k * win)
            madk = _robust_std(r)
            if madk > 0:
                bm = _blocks(r, B).mean(axis=(1, 3))
                best = max(best, B * B * (_robust_std(bm) / madk) ** 2)
        ca[c] = best
    return s, ca


def region_noise(labels: np.ndarray, features: np.ndarray, sigma_px: float, scales=None,
                 fallback: tuple[np.ndarray, np.ndarray] | None = None, rel_floor: float = 0.0,
                 min_pixels: int = 200):
    """Per-channel noise (s_c, corr_area_c) measured inside the regions of a segmentation.

    The residual of every pixel from its region's mean feature is taken on interior pixels (at least
    2 windows from a boundary); s_c = 1.4826 MAD of the residual, and corr_area_c = the largest
    B² var(block mean) / s_c² over blocks of 3 to 24 windows lying inside one region (robust
    MAD; block sizes with fewer than 16 such blocks are skipped), at least 4π(window)².  Channels
    with too few interior pixels keep the ``fallback``.
    """
    C = features.shape[0]
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    s = np.zeros(C) if fallback is None else np.array(fallback[0], float)
    ca = np.zeros(C) if fallback is None else np.array(fallback[1], float)
    labf = labels.astype(np.float32)
    for c, ch in enumerate(features):
        win = sigma_px * (1.0 if scales is None else float(scales[c]))
        rad = int(max(1, round(2 * win)))
        kern = np.ones((2 * rad + 1, 2 * rad + 1), np.uint8)
        inner = (cv2.erode(labf, kern, borderType=cv2.BORDER_REPLICATE)
                 == cv2.dilate(labf, kern, borderType=cv2.BORDER_REPLICATE))
        if inner.sum() < min_pixels:
            continue
        mean = np.bincount(flat, weights=ch.ravel().astype(float), minlength=n) / np.maximum(area, 1)
        r = (ch - mean[labels]).astype(np.float32)
        mad = _robust_std(r[inner])
        span = float(np.percentile(ch, 99) - np.percentile(ch, 1))
        s[c] = max(mad, rel_floor * span, 1e-6 * span, 1e-12)
        best = 4 * np.pi * win ** 2
        for k in (3, 6, 12, 24):
            B = int(round(k * win))
            if B < 2 or r.shape[0] < B or r.shape[1] < B:
                continue
            lb = _blocks(labels, B)
            ok = _blocks(inner, B).all(axis=(1, 3)) & (lb.min(axis=(1, 3)) == lb.max(axis=(1, 3)))
            if ok.sum() >= 16:
                bm = _blocks(r, B).mean(axis=(1, 3))[ok]
                best = max(best, B * B * (_robust_std(bm) / max(mad, 1e-12)) ** 2)
        ca[c] = best
    return s, ca


def _merge_call(labels, features, edges, G, noise, corr_area, params, stages):
    from ._merge_core import run_merge

    n = int(labels.max()) + 1
    area, sums = region_sums(labels, features)
    a, b, length, on_edge, sum_g, jump = boundary_pairs(labels, edges, G, features)
    keep = a > 0
    parent = run_merge(n, area.astype(np.float64), np.ascontiguousarray(sums, np.float64),
                       1.0 / np.asarray(noise, np.float64), a[keep].astype(np.int64), b[keep].astype(np.int64),
                       length[keep].astype(np.float64), on_edge[keep].astype(np.float64),
                       sum_g[keep].astype(np.float64), np.ascontiguousarray(jump[:, keep], np.float64), params,
                       np.asarray(corr_area, np.float64), stages)
    parent[0] = 0
    uniq = np.unique(parent[1:])
    remap = np.zeros(n, np.int32)
    remap[uniq] = np.arange(1, len(uniq) + 1, dtype=np.int32)
    lut = remap[parent]
    lut[0] = 0
    return lut[labels]


def merge_regions(labels: np.ndarray, features: np.ndarray, edges: np.ndarray, G: np.ndarray,
                  noise: np.ndarray, corr_area: np.ndarray, sigma_px: float, min_boundary_g: float,
                  min_contrast: float = 2.0, min_significance: float = 8.0, min_jump: float = 0.4,
                  min_support: float = 0.5, min_area: float = 0.0, scales=None, noise_floor: float = 0.0,
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Merge an over-segmentation (labels ≥ 1) as described in the module docstring.

    noise, corr_area: (C,) first estimate of the pixel-level noise s_c and its correlation area per
    feature channel (:func:`feature_noise`); after the grow pass both are re-measured inside the
    grown regions (:func:`region_noise`), which excludes the image's real structure, and the
    validation uses those (for images larger than 64 σ the correlation area is the larger of the
    two estimates).  sigma_px: the feature smoothing σ in pixels (step width sqrt(2π)σ);
    G: edge strength; min_boundary_g: threshold on the mean G of a boundary in the grow pass;
    min_area: pixels.  Returns (labels 1..n, (s_c, corr_area_c) used).
    """
    params = _params(sigma_px, min_boundary_g, min_contrast, min_significance, min_jump, min_support, min_area)
    grown = _merge_call(labels, features, edges, G, noise, corr_area, params, "grow")
    s2, ca2 = region_noise(grown, features, sigma_px, scales, (noise, corr_area), noise_floor)
    if min(labels.shape) >= 64 * sigma_px:
        # a field much larger than the windows: the image-wide correlation estimate also sees
        # texture at scales the grown regions are too fragmented to hold
        ca2 = np.maximum(ca2, corr_area)
    return _merge_call(grown, features, edges, G, s2, ca2, params, "validate"), (s2, ca2)


def _params(sigma_px, min_boundary_g, min_contrast, min_significance, min_jump, min_support, min_area):
    return np.array([1.0 / min_boundary_g, min_contrast, min_significance, min_jump, min_support,
                     0.0, np.sqrt(2 * np.pi) * sigma_px, min_area,
                     1.0 * np.sqrt(2 * np.pi) * sigma_px, 2.0 * sigma_px], np.float64)


def revalidate(labels: np.ndarray, features: np.ndarray, edges: np.ndarray, G: np.ndarray, noise: np.ndarray,
               corr_area: np.ndarray, sigma_px: float, min_contrast: float = 2.0, min_significance: float = 8.0,
               min_jump: float = 0.4, min_support: float = 0.5, min_area: float = 0.0) -> np.ndarray:
    """The validation pass of :func:`merge_regions` alone, on a given labelling (0 = excluded: those
    pixels count for no region and their boundaries are never merged).  Returns labels 1..m (0 kept)."""
    params = _params(sigma_px, 1.0, min_contrast, min_significance, min_jump, min_support, min_area)
    return _merge_call(labels, features, edges, G, noise, corr_area, params, "validate")
