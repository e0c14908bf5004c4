"""Conformal region polygons from a label map: shared boundary chains, simplified once.

The boundaries between pixels of different labels ("cracks" on the pixel-corner grid) form a planar
graph.  Its nodes are the corners where three or more boundary edges meet (junctions) and its edges
are *chains*: runs of cracks between two nodes separating exactly two labels.  Each chain is
simplified once (Douglas-Peucker with both end nodes fixed), and every region's polygon is
assembled from its chains, so neighbouring regions share exactly the same boundary vertices: the
geometry is conformal (no gaps, no overlaps) by construction.

Conventions: label map rows = y (down), columns = x (right); pixel (i, j) is centred at
(x, y) = (j·px, i·py) nm, so corner (r, c) of the pixel grid lies at ((c − ½)·px, (r − ½)·py).
Labels ≤ 0 (0 = unassigned) are outside every region (exterior, written as -1).  A chain's
``left``/``right`` labels are the regions on its left/right when walking from its first to its
last vertex in (x, y) coordinates taken as a mathematical frame (left of +x is +y); each region's
outer rings therefore have positive shoelace area and its holes negative area.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

EXTERIOR = -1


@dataclass
class Chain:
    """A boundary run between two nodes.

    corners: (m, 2) int [row, col] pixel-corner indices (first and last are nodes; m ≥ 2).
    left, right: labels on either side (EXTERIOR for outside).
    start, end: node ids (corner index r·(C+1)+c, or negative ids for split points of loops).
    simplified: (k, 2) float vertices in nm [x, y] after simplification (k ≥ 2, ends = nodes).
    """

    corners: np.ndarray
    left: int
    right: int
    start: int
    end: int
    simplified: np.ndarray | None = None
    tol: float = 0.0

    @property
    def labels(self) -> tuple[int, int]:
        return (min(self.left, self.right), max(self.left, self.right))

    @property
    def is_interface(self) -> bool:
        return self.left != EXTERIOR and self.right != EXTERIOR


@dataclass
class RegionPolygons:
    """A region's rings as indices of oriented chains: outer rings and their holes.

    rings: list of rings; each ring is a list of (chain_index, forward: bool).
    outer: list of ring indices (positive area); holes: dict outer ring index -> list of hole rings.
    """

    label: int
    rings: list[list[tuple[int, bool]]] = field(default_factory=list)
    outer: list[int] = field(default_factory=list)
    holes: dict[int, list[int]] = field(default_factory=dict)


def clean_labels(labels: np.ndarray, max_passes: int = 20) -> np.ndarray:
    """Labels ≤ 0 → EXTERIOR, and diagonal-only contacts removed so every junction is simple.

    A 2×2 block whose diagonal pixels share a label that neither other pixel has (a region touching
    itself through a corner) is resolved by giving the top-right pixel the top-left pixel's label;
    repeated until none is left (each pass is vectorised).
    """
    lab = np.where(labels > 0, labels, EXTERIOR).astype(np.int64)
    for _ in range(max_passes):
        tl, tr, bl, br = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
        bad = ((tl == br) & (tl != tr) & (tl != bl)) | ((tr == bl) & (tr != tl) & (tr != br))
        if not bad.any():
            break
        r, c = np.nonzero(bad)
        # take the first of several overlapping blocks per pass: fix top-right from top-left
        lab[r, c + 1] = lab[r, c]
    return lab


@njit(cache=True)
def _trace(H, V, node):
    """Walk the crack graph. H (R+1, C): edge corner (r,c)->(r,c+1); V (R, C+1): (r,c)->(r+1,c).

    Returns (seq, ptr): corner ids (r*(C+1)+c) of each chain, chain k = seq[ptr[k]:ptr[k+1]].
    Chains start and end at nodes; closed loops without any node start and end at one corner.
    """
    R1, C = H.shape
    C1 = C + 1
    n_edges = H.sum() + V.sum()
    seq = np.empty(2 * n_edges + 2, np.int64)
    ptr = np.zeros(n_edges + 2, np.int64)
    usedH = np.zeros(H.shape, np.bool_)
    usedV = np.zeros(V.shape, np.bool_)
    pos = 0
    nc = 0
    for pass_ in range(2):
        for r0 in range(R1):
            for c0 in range(C1):
                if pass_ == 0 and not node[r0, c0]:
                    continue
                # try the four edges leaving this corner
                for d in range(4):
                    r, c = r0, c0
                    # first step
                    if d == 0:
                        ok = c < C and H[r, c] and not usedH[r, c]
                    elif d == 1:
                        ok = c > 0 and H[r, c - 1] and not usedH[r, c - 1]
                    elif d == 2:
                        ok = r < R1 - 1 and V[r, c] and not usedV[r, c]
                    else:
                        ok = r > 0 and V[r - 1, c] and not usedV[r - 1, c]
                    if not ok:
                        continue
                    seq[pos] = r * C1 + c
                    pos += 1
                    dd = d
                    while True:
                        if dd == 0:
                            usedH[r, c] = True
                            c += 1
                        elif dd == 1:
                            usedH[r, c - 1] = True
                            c -= 1
                        elif dd == 2:
                            usedV[r, c] = True
                            r += 1
                        else:
                            usedV[r - 1, c] = True
                            r -= 1
                        seq[pos] = r * C1 + c
                        pos += 1
                        if node[r, c] or (r == r0 and c == c0):
                            break
                        # continue along the single unused edge of this degree-2 corner
                        if c < C and H[r, c] and not usedH[r, c]:
                            dd = 0
                        elif c > 0 and H[r, c - 1] and not usedH[r, c - 1]:
                            dd = 1
                        elif r < R1 - 1 and V[r, c] and not usedV[r, c]:
                            dd = 2
                        elif r > 0 and V[r - 1, c] and not usedV[r - 1, c]:
                            dd = 3
                        else:
                            break
                    nc += 1
                    ptr[nc] = pos
                    if pass_ == 1:
                        break
    return seq[:pos], ptr[:nc + 1]


def trace_chains(labels: np.ndarray) -> tuple[list[Chain], np.ndarray]:
    """Boundary chains of a label map (after :func:`clean_labels`).

    Returns the chains (corners only, not simplified) and the cleaned label map.  The image border
    is a boundary towards EXTERIOR.
    """
    lab = clean_labels(np.asarray(labels))
    R, C = lab.shape
    P = np.full((R + 2, C + 2), EXTERIOR, np.int64)
    P[1:-1, 1:-1] = lab
    # H[r, c]: between pixel (r-1, c) and (r, c) -> padded rows r, r+1, col c+1
    H = P[:-1, 1:-1] != P[1:, 1:-1]
    # V[r, c]: between pixel (r, c-1) and (r, c) -> padded row r+1, cols c, c+1
    V = P[1:-1, :-1] != P[1:-1, 1:]
    deg = np.zeros((R + 1, C + 1), np.int64)
    deg[:, :-1] += H
    deg[:, 1:] += H
    deg[:-1, :] += V
    deg[1:, :] += V
    node = deg >= 3
    seq, ptr = _trace(np.ascontiguousarray(H), np.ascontiguousarray(V), node)
    C1 = C + 1
    chains: list[Chain] = []
    for k in range(len(ptr) - 1):
        ids = seq[ptr[k]:ptr[k + 1]]
        rc = np.column_stack([ids // C1, ids % C1])
        (r0, c0), (r1, c1) = rc[0], rc[1]
        if r1 == r0:   # horizontal crack between pixel rows r0-1 (above) and r0 (below)
            cc = min(c0, c1)
            above, below = P[r0, cc + 1], P[r0 + 1, cc + 1]
            left, right = (below, above) if c1 > c0 else (above, below)
        else:          # vertical crack between pixel cols c0-1 (left) and c0 (right)
            rr = min(r0, r1)
            west, east = P[rr + 1, c0], P[rr + 1, c0 + 1]
            left, right = (west, east) if r1 > r0 else (east, west)
        chains.append(Chain(rc, int(left), int(right), int(ids[0]), int(ids[-1])))
    return _split_loops(chains), lab


def _split_loops(chains: list[Chain]) -> list[Chain]:
    """Split chains whose two ends are the same node at their farthest vertex (new node id < 0)."""
    out: list[Chain] = []
    new_id = -2
    for ch in chains:
        if ch.start != ch.end:
            out.append(ch)
            continue
        d = ((ch.corners - ch.corners[0]) ** 2).sum(1)
        k = int(np.argmax(d))
        out.append(Chain(ch.corners[:k + 1], ch.left, ch.right, ch.start, new_id))
        out.append(Chain(ch.corners[k:], ch.left, ch.right, new_id, ch.end))
        new_id -= 1
    return out


def corners_to_nm(corners: np.ndarray, pixel_size_nm) -> np.ndarray:
    """Pixel-corner indices [row, col] → (x, y) nm."""
    px, py = pixel_size_nm
    return np.column_stack([(corners[:, 1] - 0.5) * px, (corners[:, 0] - 0.5) * py])


def _dp(points_px: np.ndarray, tol_px: float) -> np.ndarray:
    """Douglas-Peucker of an open polyline with both ends kept (OpenCV)."""
    if tol_px <= 0 or len(points_px) <= 2:
        return _drop_collinear(points_px)
    import cv2

    pts = np.ascontiguousarray(points_px, np.float32).reshape(-1, 1, 2)
    s = cv2.approxPolyDP(pts, float(tol_px), False).reshape(-1, 2).astype(float)
    return s


def _drop_collinear(p: np.ndarray) -> np.ndarray:
    """Keep only the turning points of a crack polyline (exact, no simplification)."""
    if len(p) <= 2:
        return p.astype(float)
    d = np.diff(p, axis=0)
    turn = np.any(d[1:] != d[:-1], axis=1)
    keep = np.concatenate([[True], turn, [True]])
    return p[keep].astype(float)


def simplify_chains(chains: list[Chain], pixel_size_nm, tol_nm: float | np.ndarray) -> None:
    """Set ``chain.simplified`` (nm) with tolerance ``tol_nm`` (scalar or one per chain)."""
    px, py = pixel_size_nm
    tols = np.broadcast_to(np.asarray(tol_nm, float), (len(chains),))
    for ch, tol in zip(chains, tols):
        xy_px = np.column_stack([ch.corners[:, 1] - 0.5, (ch.corners[:, 0] - 0.5) * py / px])
        s = _dp(xy_px, tol / px)
        ch.tol = float(tol)
        ch.simplified = np.column_stack([s[:, 0] * px, s[:, 1] * px])


def assemble_regions(chains: list[Chain]) -> dict[int, RegionPolygons]:
    """Rings of every region (label > 0) from its chains, outer rings with their holes."""
    by_label: dict[int, list[tuple[int, bool]]] = {}
    for i, ch in enumerate(chains):
        if ch.left != EXTERIOR:
            by_label.setdefault(ch.left, []).append((i, True))
        if ch.right != EXTERIOR:
            by_label.setdefault(ch.right, []).append((i, False))
    regions: dict[int, RegionPolygons] = {}
    for label in sorted(by_label):
        items = by_label[label]
        # node -> oriented chain items starting at that node
        starts: dict[int, list[tuple[int, bool]]] = {}
        for i, fwd in items:
            s = chains[i].start if fwd else chains[i].end
            starts.setdefault(s, []).append((i, fwd))
        used: set[int] = set()
        rp = RegionPolygons(label)
        for i, fwd in items:
            if i in used:
                continue
            ring = []
            cur = (i, fwd)
            first_node = chains[i].start if fwd else chains[i].end
            while True:
                used.add(cur[0])
                ring.append(cur)
                end = chains[cur[0]].end if cur[1] else chains[cur[0]].start
                if end == first_node:
                    break
                nxt = [c for c in starts.get(end, []) if c[0] not in used]
                if not nxt:
                    raise RuntimeError(f"region {label}: open boundary at node {end}")
                cur = nxt[0]
            rp.rings.append(ring)
        regions[label] = rp
    return regions


def ring_vertices(chains: list[Chain], ring: list[tuple[int, bool]], simplified: bool = True,
                  pixel_size_nm=(1.0, 1.0)) -> np.ndarray:
    """Vertices (m, 2) nm of a ring (closed, first vertex not repeated)."""
    parts = []
    for i, fwd in ring:
        p = chains[i].simplified if simplified else corners_to_nm(chains[i].corners, pixel_size_nm)
        p = p if fwd else p[::-1]
        parts.append(p[:-1])
    return np.vstack(parts)


def shoelace(p: np.ndarray) -> float:
    """Signed area of a closed polygon (first vertex not repeated), + for counter-clockwise in (x, y)."""
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def classify_rings(chains: list[Chain], regions: dict[int, RegionPolygons]) -> None:
    """Fill ``outer``/``holes`` of each region from the ring areas (raw, unsimplified geometry)."""
    from matplotlib.path import Path

    for rp in regions.values():
        rp.outer, rp.holes = [], {}
        areas = [shoelace(ring_vertices(chains, r, simplified=False)) for r in rp.rings]
        outers = [k for k, a in enumerate(areas) if a > 0]
        rp.outer = outers
        rp.holes = {k: [] for k in outers}
        for k, a in enumerate(areas):
            if a > 0:
                continue
            v = ring_vertices(chains, rp.rings[k], simplified=False)
            probe = v[0] + 1e-6 * (v[1] - v[0])
            host = None
            for o in sorted(outers, key=lambda j: areas[j]):
                if Path(ring_vertices(chains, rp.rings[o], simplified=False)).contains_point(probe):
                    host = o
                    break
            if host is None and outers:
                host = max(outers, key=lambda j: areas[j])
            if host is not None:
                rp.holes[host].append(k)


def region_area(chains: list[Chain], rp: RegionPolygons, simplified: bool = True,
                pixel_size_nm=(1.0, 1.0)) -> float:
    """Area (nm²) of a region: outer rings minus holes (signed ring areas summed)."""
    return float(sum(shoelace(ring_vertices(chains, r, simplified, pixel_size_nm)) for r in rp.rings))


@dataclass
class Boundaries:
    """The conformal polygon set of a label map."""

    chains: list[Chain]
    regions: dict[int, RegionPolygons]
    labels: np.ndarray
    pixel_size_nm: tuple[float, float]

    def polygons(self, label: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """[(outer (m,2) nm, [hole (k,2) nm, ...]), ...] of a region (simplified)."""
        rp = self.regions[label]
        return [(ring_vertices(self.chains, rp.rings[o]),
                 [ring_vertices(self.chains, rp.rings[h]) for h in rp.holes.get(o, [])])
                for o in rp.outer]

    def area(self, label: int, simplified: bool = True) -> float:
        return region_area(self.chains, self.regions[label], simplified, self.pixel_size_nm)

    def interfaces(self) -> dict[tuple[int, int], list[int]]:
        """(a, b) label pair (a < b; a = -1 for the exterior) -> chain indices."""
        out: dict[tuple[int, int], list[int]] = {}
        for i, ch in enumerate(self.chains):
            out.setdefault(ch.labels, []).append(i)
        return out


def region_boundaries(labels: np.ndarray, pixel_size_nm, tol_nm: float,
                      max_area_error: float = 0.005, min_tol_nm: float | None = None) -> Boundaries:
    """Conformal simplified polygons of every region of ``labels``.

    Chains are simplified with ``tol_nm``; a region whose simplified area differs from its pixel area
    by more than ``max_area_error`` (relative) has its chains re-simplified with half the tolerance,
    down to the exact pixel boundary (``tol`` below ``min_tol_nm``, default ¼ pixel).
    """
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    chains, lab = trace_chains(labels)
    regions = assemble_regions(chains)
    classify_rings(chains, regions)
    tol = np.full(len(chains), float(tol_nm))
    min_tol = 0.25 * min(px, py) if min_tol_nm is None else min_tol_nm
    simplify_chains(chains, (px, py), tol)
    raw = {k: float((lab == k).sum()) * px * py for k in regions}
    member: dict[int, list[int]] = {k: sorted({i for r in rp.rings for i, _ in r}) for k, rp in regions.items()}
    for _ in range(12):
        bad = [k for k in regions
               if abs(region_area(chains, regions[k]) - raw[k]) > max_area_error * raw[k]]
        redo = sorted({i for k in bad for i in member[k] if tol[i] > 0})
        if not redo:
            break
        for i in redo:
            tol[i] = tol[i] / 2 if tol[i] / 2 >= min_tol else 0.0
        simplify_chains([chains[i] for i in redo], (px, py), tol[redo])
    return Boundaries(chains, regions, lab, (px, py))
