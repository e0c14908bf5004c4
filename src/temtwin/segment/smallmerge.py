"""Merging the smallest regions of a label map into their most similar neighbour.

Used by the region cap of rule ``segment`` (``segmentation.max_regions``: an over-segmented image is
brought under the cap by merging, not by dropping regions) and by the multilayer-device mode (regions
smaller than the minimum area).  Similarity = the difference of the regions' mean intensities; ties
go to the neighbour sharing the longest boundary.  Label 0 (unassigned) is never merged nor merged
into.  The work is a loop over regions (not pixels) on the region adjacency graph.
"""

from __future__ import annotations

import heapq

import numpy as np


def region_adjacency(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, length): every pair of different labels ≥ 1 that touch (4-connectivity, a < b) and the
    number of pixel edges they share."""
    lab = np.asarray(labels, np.int64)
    n = int(lab.max()) + 1
    pa = np.concatenate([lab[:, :-1].ravel(), lab[:-1, :].ravel()])
    pb = np.concatenate([lab[:, 1:].ravel(), lab[1:, :].ravel()])
    keep = (pa != pb) & (pa > 0) & (pb > 0)
    a, b = np.minimum(pa[keep], pb[keep]), np.maximum(pa[keep], pb[keep])
    key, cnt = np.unique(a * n + b, return_counts=True)
    return key // n, key % n, cnt


def merge_smallest(labels: np.ndarray, image: np.ndarray, max_regions: int | None = None,
                   min_px: float = 0) -> tuple[np.ndarray, int]:
    """Merge the smallest region into its most similar neighbour, repeatedly, until there are at most
    ``max_regions`` regions and none smaller than ``min_px`` pixels (a region without neighbours is
    left as it is).  Returns (labels renumbered 1..n in their previous order, number of merges)."""
    lab = np.asarray(labels)
    n = int(lab.max()) + 1 if lab.size else 1
    area = np.bincount(lab.ravel(), minlength=n).astype(np.int64)
    isum = np.bincount(lab.ravel(), weights=np.asarray(image, np.float64).ravel(), minlength=n)
    live = area > 0
    live[0] = False
    count = int(live.sum())
    cap = count if max_regions is None else int(max_regions)
    if count <= cap and (min_px <= 0 or not np.any(area[live] < min_px)):
        return lab, 0
    a, b, ln = region_adjacency(lab)
    nbrs: dict[int, dict[int, int]] = {int(r): {} for r in np.nonzero(live)[0]}
    for i, j, k in zip(a.tolist(), b.tolist(), ln.tolist()):
        nbrs[i][j] = k
        nbrs[j][i] = k
    parent = np.arange(n)
    heap = [(int(area[r]), int(r)) for r in np.nonzero(live)[0]]
    heapq.heapify(heap)
    merges = 0
    while heap:
        ar, r = heapq.heappop(heap)
        if not live[r] or ar != area[r]:
            continue                                  # stale entry
        if count <= cap and ar >= min_px:
            break
        if not nbrs[r]:
            continue                                  # isolated: nothing to merge into
        mr = isum[r] / area[r]
        cand = list(nbrs[r].items())
        best = min(cand, key=lambda q: (abs(isum[q[0]] / area[q[0]] - mr), -q[1], q[0]))[0]
        # merge r into best
        area[best] += area[r]
        isum[best] += isum[r]
        live[r] = False
        parent[r] = best
        for q, k in nbrs.pop(r).items():
            d = nbrs[q]
            d.pop(r, None)
            if q != best:
                d[best] = d.get(best, 0) + k
                nbrs[best][q] = nbrs[best].get(q, 0) + k
        count -= 1
        merges += 1
        heapq.heappush(heap, (int(area[best]), int(best)))
    # resolve merge chains, renumber survivors 1..n in their previous order
    root = parent.copy()
    for _ in range(64):
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    lut = np.zeros(n, np.int32)
    surv = np.nonzero(live)[0]
    lut[surv] = np.arange(1, len(surv) + 1, dtype=np.int32)
    out = lut[root][lab]
    return out.astype(np.int32), merges
