"""Full-resolution label maps from an analysis-grid segmentation, boundaries on the true edge.

The coarse labels are upsampled (nearest) and, in a band around every boundary, each
full-resolution pixel is given to the candidate region (its own and those of its 3 × 3 analysis
neighbourhood) whose mean feature vector is nearest in units of the feature noise, with the
features interpolated bilinearly to full resolution.  For two regions this puts the boundary on
the mid-level crossing of the blurred transition (the true intensity edge for a step, unbiased for
a straight interface whatever the smoothing scale).  Islands that this leaves are given to the
surrounding region.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi



def upsample_labels(coarse: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of an analysis-grid label map (block layout) to ``shape``."""
    if factor == 1:
        return np.ascontiguousarray(coarse[:shape[0], :shape[1]]).astype(np.int32)
    up = np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1)
    return np.ascontiguousarray(up[:shape[0], :shape[1]]).astype(np.int32)


def upsample_feature(ch: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an analysis-grid channel sampled at block centres."""
    if factor == 1:
        return ch[:shape[0], :shape[1]]
    r, c = ch.shape
    up = cv2.resize(np.ascontiguousarray(ch, np.float32), (c * factor, r * factor),
                    interpolation=cv2.INTER_LINEAR)
    return up[:shape[0], :shape[1]]


def refine_boundaries(coarse: np.ndarray, features: np.ndarray, noise: np.ndarray, factor: int,
                      shape: tuple[int, int], min_island_px: int = 0) -> np.ndarray:
    """Full-resolution int32 labels (see module docstring).

    coarse: (ra, ca) labels ≥ 1 on the analysis grid; features: (C, ra, ca); noise: (C,) s_c.
    """
    n = int(coarse.max()) + 1
    flat = coarse.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    means = np.stack([np.bincount(flat, weights=ch.ravel().astype(float), minlength=n) for ch in features])
    means = means / np.maximum(area, 1) / np.asarray(noise)[:, None]        # (C, n), noise units
    lo = ndi.minimum_filter(coarse, 3, mode="nearest")
    hi = ndi.maximum_filter(coarse, 3, mode="nearest")
    band_c = lo != hi
    labels = upsample_labels(coarse, factor, shape)
    if not band_c.any():
        return labels
    cr, cc = np.nonzero(band_c)
    dy, dx = np.divmod(np.arange(factor * factor), factor)
    rows = (cr[:, None] * factor + dy[None, :]).ravel()
    cols = (cc[:, None] * factor + dx[None, :]).ravel()
    ok = (rows < shape[0]) & (cols < shape[1])
    rows, cols = rows[ok], cols[ok]
    rc, ccn = rows // factor, cols // factor
    cand = np.stack([coarse[rc, ccn], lo[rc, ccn], hi[rc, ccn]])          # (3, m)
    dist = np.zeros(cand.shape, np.float32)
    for c in range(features.shape[0]):  # a few channels; each step vectorised over band pixels
        if factor == 1:
            v = features[c][rows, cols] / noise[c]
        else:
            v = _bilinear(features[c], rows, cols, factor) / noise[c]
        dist += (v[None, :] - means[c][cand]) ** 2
    best = cand[np.argmin(dist, axis=0), np.arange(len(rows))]
    labels[rows, cols] = best
    band = np.zeros(shape, bool)
    band[rows, cols] = True
    return remove_islands(labels, band, min_island_px)


def _bilinear(ch: np.ndarray, rows: np.ndarray, cols: np.ndarray, factor: int) -> np.ndarray:
    y = (rows - (factor - 1) / 2.0) / factor
    x = (cols - (factor - 1) / 2.0) / factor
    return ndi.map_coordinates(ch, [y, x], order=1, mode="nearest")


def remove_islands(labels: np.ndarray, band: np.ndarray | None = None, min_island_px: int = 0) -> np.ndarray:
    """Give every connected piece of a label that is not that label's largest piece (and is smaller
    than ``min_island_px`` when given, else any size) to the neighbouring label it borders most.

    Only the bounding box of ``band`` is examined when given (islands arise there only).
    """
    if band is not None and band.any():
        rr = np.nonzero(band.any(1))[0]
        cc = np.nonzero(band.any(0))[0]
        r0, r1 = max(rr[0] - 1, 0), min(rr[-1] + 2, labels.shape[0])
        c0, c1 = max(cc[0] - 1, 0), min(cc[-1] + 2, labels.shape[1])
        sub = labels[r0:r1, c0:c1]
    else:
        r0 = c0 = 0
        sub = labels
    from skimage.measure import label as cc_label

    comp = cc_label(sub, background=-1, connectivity=1)
    ncomp = int(comp.max()) + 1
    comp_label = np.zeros(ncomp, np.int64)
    comp_label[comp.ravel()] = sub.ravel()
    size = np.bincount(comp.ravel(), minlength=ncomp)
    # largest piece of each label (within the examined window, plus pieces touching the window edge)
    order = np.lexsort((-size, comp_label))
    first = np.ones(len(order), bool)
    first[1:] = comp_label[order][1:] != comp_label[order][:-1]
    main = np.zeros(ncomp, bool)
    main[order[first]] = True
    main[0] = True
    if band is not None:
        edge_comps = np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]]))
        if (r0, c0) != (0, 0) or sub.shape != labels.shape:
            main[edge_comps] = True
    bad = ~main
    if min_island_px:
        bad &= size < min_island_px
    if not bad.any():
        return labels
    # neighbour votes: for each bad component, the most frequent different label across its border
    votes_a, votes_b = [], []
    for sa, sb in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                   ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        ca, cb = comp[sa], comp[sb]
        m = ca != cb
        votes_a += [ca[m], cb[m]]
        votes_b += [sub[sb][m], sub[sa][m]]
    va = np.concatenate(votes_a)
    vb = np.concatenate(votes_b)
    keep = bad[va] & (vb != comp_label[va])
    va, vb = va[keep], vb[keep]
    if len(va) == 0:
        return labels
    key = va * (int(labels.max()) + 1) + vb
    uk, cnt = np.unique(key, return_counts=True)
    kc, kl = uk // (int(labels.max()) + 1), uk % (int(labels.max()) + 1)
    o = np.lexsort((-cnt, kc))
    firstk = np.ones(len(o), bool)
    firstk[1:] = kc[o][1:] != kc[o][:-1]
    new = comp_label.copy()
    new[kc[o][firstk]] = kl[o][firstk]
    out = labels.copy()
    out[r0:r0 + sub.shape[0], c0:c0 + sub.shape[1]] = new[comp]
    return out
