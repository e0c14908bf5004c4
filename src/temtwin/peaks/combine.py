"""Combination of the detectors: merging, Friedel pairs, lattice completion, sub-pixel refinement,
SNR per peak and the amorphous / crystalline decision.

Merging (tuned for recall with controlled precision): the detectors' peaks are clustered (within
``merge_px``); a cluster is accepted when two detectors found it, or when one did and its
significance reaches the single-detector noise threshold (every detector's own threshold leaves
``false_alarms`` noise peaks per spectrum, so the union stays controlled), or when the U-Net found
it and its significance reaches ``unet_min_snr`` (the U-Net sees the lattice context and finds
reflections below the noise threshold; the floor guards against hallucinations).

Friedel pairs: the power spectrum of a real image is centrosymmetric, so every reflection g has its
partner -g.  An accepted peak is kept when its partner is accepted too (the partner is searched among
all candidates first), or when the partner falls outside the measured area (near the edge); a pair's
positions are then made exactly symmetric (which cancels any odd error of the fits).

Lattice completion: the strongest peaks are indexed by a 2D lattice (the smallest cell indexing most
of them, refined by least squares; a second lattice for what remains, e.g. a second grain); at every
predicted lattice point not yet found, the best pixel within 1 px is accepted when its significance
exceeds the threshold for ``lattice_false_alarms`` expected false completions over all the points
tested (a weak reflection where the lattice predicts one is far more likely than anywhere).  These
peaks carry detector bit 8.

Crystalline: a region is crystalline when at least one Friedel pair reaches the significance that
leaves ``crystalline_false_alarms`` expected noise peaks per spectrum, or when two non-collinear
pairs reach the detection threshold; and, when five or more significant pairs were detected, only
if they form a lattice (:func:`lattice_order`): an isotropic ring or a random scatter of spots (an
amorphous speckle pattern) is not a crystal however significant its spots.

Detector bits: 1 = gaussian (blob + 2D Gaussian fit), 2 = unet, 4 = profile, 8 = lattice completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, special
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .fftprep import Spectrum
from .gaussian import detect_gaussian, detection_map, fit_gaussians, noise_threshold, refine_positions
from .profile import detect_profile

BITS = {"gaussian": 1, "unet": 2, "profile": 4, "lattice": 8}


@dataclass
class PeakSet:
    """Peaks of one spectrum (float grid positions) and the region's decision.

    rows, cols: refined grid positions; kx, ky (nm^-1); snr (significance at the peak pixel);
    intensity (integrated excess power, a.u.); detectors (uint8 bitmask); paired (bool, Friedel
    partner found); crystalline; thresholds and per-detector raw results in ``info``.
    """

    rows: np.ndarray
    cols: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    snr: np.ndarray
    intensity: np.ndarray
    detectors: np.ndarray
    paired: np.ndarray
    crystalline: bool
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def g(self) -> np.ndarray:
        return np.hypot(self.kx, self.ky)

    @property
    def d(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 1.0 / self.g

    @property
    def angle_deg(self) -> np.ndarray:
        return np.mod(np.degrees(np.arctan2(self.ky, self.kx)), 360.0)

    def spots(self):
        """The peaks as the one spots type, :class:`temtwin.peaks.spots.Spots` (one per Friedel pair,
        strength = integrated intensity), as downstream stages read them from peaks.h5."""
        from .spots import Spots

        return Spots.from_peakset(self)


def _clusters(pts: np.ndarray, radius: float) -> np.ndarray:
    """Cluster labels of points closer than ``radius`` (single linkage)."""
    n = len(pts)
    if n == 0:
        return np.zeros(0, int)
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else \
        coo_matrix((n, n))
    _, lab = connected_components(g, directed=False)
    return lab


def merge_detections(sp: Spectrum, found: dict, merge_px: float = 1.5):
    """Cluster the detectors' peaks.  ``found``: name -> (rows, cols).  Returns (rows, cols, bits,
    votes) of the clusters, positions = mean of the members."""
    pts, bits = [], []
    for name, (r, c) in found.items():
        pts.append(np.c_[r, c])
        bits.append(np.full(len(r), BITS[name], np.uint8))
    if not pts or sum(len(p) for p in pts) == 0:
        z = np.zeros(0)
        return z, z, np.zeros(0, np.uint8), np.zeros(0, int)
    P = np.vstack(pts)
    B = np.concatenate(bits)
    lab = _clusters(P, merge_px)
    n = lab.max() + 1
    cnt = np.bincount(lab, minlength=n)
    rows = np.bincount(lab, P[:, 0], n) / cnt
    cols = np.bincount(lab, P[:, 1], n) / cnt
    cb = np.zeros(n, np.uint8)
    np.bitwise_or.at(cb, lab, B)
    votes = np.array([bin(int(b)).count("1") for b in cb])
    return rows, cols, cb, votes


def _peak_q(sp: Spectrum, rows, cols) -> np.ndarray:
    """Largest significance within 1 px of each position (the peak pixel)."""
    S = sp.size
    best = np.full(len(rows), -np.inf)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            i = np.rint(rows).astype(int) + dr
            j = np.rint(cols).astype(int) + dc
            ok = (i >= 0) & (i < S) & (j >= 0) & (j < S)
            v = np.full(len(rows), -np.inf)
            v[ok] = sp.q[i[ok], j[ok]]
            v[ok & ((i - rows) ** 2 + (j - cols) ** 2 > 2.0)] = -np.inf
            best = np.maximum(best, v)
    return best


def friedel_pairs(sp: Spectrum, rows, cols, tol: float = 1.5, edge_px: float = 2.0):
    """(partner index or -1, partner outside the measured area) for each peak."""
    c = sp.center
    n = len(rows)
    partner = np.full(n, -1)
    if n == 0:
        return partner, np.zeros(0, bool)
    pr, pc = 2 * c - np.asarray(rows), 2 * c - np.asarray(cols)
    tree = cKDTree(np.c_[rows, cols])
    d, j = tree.query(np.c_[pr, pc], k=1)
    ok = d <= tol
    partner[ok] = j[ok]
    S = sp.size
    ri, ci = np.rint(pr).astype(int), np.rint(pc).astype(int)
    inside = (ri >= 0) & (ri < S) & (ci >= 0) & (ci < S)
    outside = ~inside
    near_edge = ndimage.binary_dilation(~sp.inner(), iterations=int(np.ceil(edge_px))) & ~_dc_zone(sp)
    outside[inside] = near_edge[ri[inside], ci[inside]]
    return partner, outside


def _dc_zone(sp: Spectrum) -> np.ndarray:
    r = sp.radius_px()
    return r < sp.info.get("r_min_px", 3.0) + 0.5


def _symmetrise_pairs(sp: Spectrum, rows, cols, partner, tol: float = 0.5):
    """Positions of Friedel pairs (closer than ``tol`` to exact symmetry) made exactly centrosymmetric
    (average of g and -g')."""
    c = sp.center
    rows = rows.copy()
    cols = cols.copy()
    has = partner >= 0
    pj = np.where(has, partner, 0)
    has &= np.hypot(rows + rows[pj] - 2 * c, cols + cols[pj] - 2 * c) <= tol
    i = np.nonzero(has)[0]
    j = partner[i]
    dr = 0.5 * ((rows[i] - c) - (rows[j] - c))
    dc = 0.5 * ((cols[i] - c) - (cols[j] - c))
    rows[i], cols[i] = c + dr, c + dc
    return rows, cols


def fit_lattice(vecs: np.ndarray, tol_px: float = 1.0, min_inliers: int = 4, n_short: int = 10):
    """2D lattice basis (2, 2) [rows = basis vectors in (drow, dcol)] indexing most of ``vecs``.

    Candidates are pairs of the shortest vectors (and their differences); the pair indexing the most
    vectors within ``tol_px`` wins (smaller cell on ties), then least squares over its inliers.
    Returns (basis or None, inlier mask).
    """
    vecs = np.asarray(vecs, float).reshape(-1, 2)
    if len(vecs) < min_inliers:
        return None, np.zeros(len(vecs), bool)
    order = np.argsort(np.hypot(vecs[:, 0], vecs[:, 1]))
    short = vecs[order[:n_short]]
    cand = [short]
    diffs = (short[:, None, :] - short[None, :, :]).reshape(-1, 2)
    cand.append(diffs[np.hypot(diffs[:, 0], diffs[:, 1]) > 2.0])
    cand = np.vstack(cand)
    # unique up to sign
    key = np.where((cand[:, 0] > 1e-9) | ((np.abs(cand[:, 0]) <= 1e-9) & (cand[:, 1] > 0)), 1, -1)[:, None] * cand
    key = np.unique(np.round(key, 1), axis=0)
    key = key[np.argsort(np.hypot(key[:, 0], key[:, 1]))][:24]
    best = (0, np.inf, None, None)
    for a in range(len(key)):
        for b in range(a + 1, len(key)):
            B = np.array([key[a], key[b]])
            area = abs(np.linalg.det(B))
            la, lb = np.hypot(*key[a]), np.hypot(*key[b])
            if area < 0.2 * la * lb or area < 4.0:
                continue
            coef = vecs @ np.linalg.inv(B)
            res = np.hypot(*(vecs - np.rint(coef) @ B).T)
            inl = res <= tol_px
            n_in = int(inl.sum())
            if n_in > best[0] or (n_in == best[0] and area < best[1]):
                best = (n_in, area, B, inl)
    if best[2] is None or best[0] < min_inliers:
        return None, np.zeros(len(vecs), bool)
    B, inl = best[2], best[3]
    N = np.rint(vecs[inl] @ np.linalg.inv(B))
    if np.linalg.matrix_rank(N) == 2:
        B = np.linalg.lstsq(N, vecs[inl], rcond=None)[0]
    res = np.hypot(*(vecs - np.rint(vecs @ np.linalg.inv(B)) @ B).T)
    return B, res <= tol_px


def complete_lattice(sp: Spectrum, rows, cols, strong, false_alarms: float = 0.2, max_lattices: int = 2):
    """Weak reflections at lattice points predicted from the strong peaks.

    Returns (rows, cols) of the added peaks (positions = lattice prediction, refined by a Gaussian
    fit when it converges within 0.75 px), and the bases found (list of (2, 2) arrays, grid px).
    """
    c = sp.center
    vec = np.c_[rows - c, cols - c][strong]
    bases = []
    inner = sp.inner()
    remaining = np.ones(len(vec), bool)
    for _ in range(max_lattices):
        B, inl = fit_lattice(vec[remaining])
        if B is None:
            break
        bases.append(B)
        idx = np.nonzero(remaining)[0]
        remaining[idx[inl]] = False
        if remaining.sum() < 4:
            break
    if not bases:
        return np.zeros(0), np.zeros(0), []
    S = sp.size
    have = cKDTree(np.c_[rows, cols]) if len(rows) else None
    preds = []
    for B in bases:
        span = S / max(np.min(np.linalg.svd(B, compute_uv=False)), 1.0)
        nmax = int(np.ceil(span)) + 1
        ij = np.stack(np.meshgrid(np.arange(-nmax, nmax + 1), np.arange(-nmax, nmax + 1), indexing="ij"), -1)
        ij = ij.reshape(-1, 2)
        p = ij @ B + c
        ok = (p[:, 0] >= 0) & (p[:, 0] <= S - 1) & (p[:, 1] >= 0) & (p[:, 1] <= S - 1)
        p = p[ok]
        ri, ci = np.rint(p[:, 0]).astype(int), np.rint(p[:, 1]).astype(int)
        p = p[inner[ri, ci]]
        preds.append(p)
    P = np.vstack(preds)
    if have is not None and len(P):
        d, _ = have.query(P, k=1)
        P = P[d > 2.5]
    if len(P) == 0:
        return np.zeros(0), np.zeros(0), bases
    # best pixel within 1 px of each prediction
    best_q = np.full(len(P), -np.inf)
    best_r = np.zeros(len(P), int)
    best_c = np.zeros(len(P), int)
    n_px = np.zeros(len(P))
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            i = np.floor(P[:, 0]).astype(int) + dr
            j = np.floor(P[:, 1]).astype(int) + dc
            ok = (i >= 0) & (i < S) & (j >= 0) & (j < S)
            ok &= (i - P[:, 0]) ** 2 + (j - P[:, 1]) ** 2 <= 1.0
            n_px += ok
            v = np.full(len(P), -np.inf)
            v[ok] = np.where(inner[i[ok], j[ok]], sp.q[i[ok], j[ok]], -np.inf)
            upd = v > best_q
            best_q[upd], best_r[upd], best_c[upd] = v[upd], i[upd], j[upd]
    n_tests = max(0.5 * n_px.sum(), 1.0)  # a point and its Friedel partner are one test
    t = float(-special.ndtri(min(0.5, false_alarms / n_tests)))
    # the best pixel must pass the threshold and be a local maximum (not the flank of a neighbour)
    qv = np.where(sp.valid, sp.q, -np.inf)
    mx = ndimage.maximum_filter(qv, size=3, mode="constant", cval=-np.inf)
    acc = (best_q >= t) & (qv[best_r, best_c] >= mx[best_r, best_c])
    P = P[acc]
    if len(P) == 0:
        return np.zeros(0), np.zeros(0), bases
    fr, fc, _, ok = refine_positions(sp, P[:, 0], P[:, 1])
    use = ok & (np.hypot(fr - P[:, 0], fc - P[:, 1]) <= 0.75)
    return fr[use], fc[use], bases


def find_peaks(sp: Spectrum, detectors=("gaussian", "unet", "profile"), false_alarms: float = 0.05,
               unet_net=None, unet_threshold: float = 0.5, merge_px: float = 1.5, friedel_px: float = 1.5,
               lattice_completion: bool = True, lattice_false_alarms: float = 0.2,
               crystalline_false_alarms: float = 0.002, unet_min_snr: float | None = 2.0) -> PeakSet:
    """Run the detectors on a spectrum and combine them (see module docstring)."""
    raw = {}
    found = {}
    if "gaussian" in detectors:
        raw["gaussian"] = detect_gaussian(sp, false_alarms=false_alarms)
    if "unet" in detectors:
        from .unet import detect_unet

        raw["unet"] = detect_unet(sp, net=unet_net, threshold=unet_threshold)
    if "profile" in detectors:
        raw["profile"] = detect_profile(sp, false_alarms=false_alarms)
    for k, v in raw.items():
        found[k] = (v["rows"], v["cols"])
    _, par = detection_map(sp)
    t_det = noise_threshold(par["area"], par["roughness"], false_alarms)
    t_cry = noise_threshold(par["area"], par["roughness"], crystalline_false_alarms)
    rows, cols, bits, votes = merge_detections(sp, found, merge_px)
    inner = sp.inner()
    ok = inner[np.clip(np.rint(rows).astype(int), 0, sp.size - 1), np.clip(np.rint(cols).astype(int), 0, sp.size - 1)]
    rows, cols, bits, votes = rows[ok], cols[ok], bits[ok], votes[ok]
    qpk = _peak_q(sp, rows, cols)
    accept = (votes >= 2) | (qpk >= t_det)
    if unet_min_snr is not None:
        accept |= ((bits & BITS["unet"]) > 0) & (qpk >= unet_min_snr)
    if len(raw) == 1:
        accept = np.ones(len(rows), bool)
    # refine every candidate, then Friedel-check the accepted ones against all candidates
    fr, fc, fit, fok = refine_positions(sp, rows, cols)
    partner_all, _ = friedel_pairs(sp, fr, fc, friedel_px)
    # a rejected candidate whose partner was accepted joins (the spectrum is centrosymmetric)
    join = ~accept & (partner_all >= 0)
    join[join] = accept[partner_all[join]]
    keep = accept | join
    fr, fc, bits = fr[keep], fc[keep], bits[keep]
    partner, outside = friedel_pairs(sp, fr, fc, friedel_px)
    keep = (partner >= 0) | outside
    fr, fc, bits = fr[keep], fc[keep], bits[keep]
    # lattice completion
    bases = []
    if lattice_completion and len(fr) >= 4:
        q_here = _peak_q(sp, fr, fc)
        strong = q_here >= t_det
        lr, lc, bases = complete_lattice(sp, fr, fc, strong, lattice_false_alarms)
        if len(lr):
            fr = np.r_[fr, lr]
            fc = np.r_[fc, lc]
            bits = np.r_[bits, np.full(len(lr), BITS["lattice"], np.uint8)]
            partner, outside = friedel_pairs(sp, fr, fc, friedel_px)
            keep = (partner >= 0) | outside
            fr, fc, bits = fr[keep], fc[keep], bits[keep]
    partner, outside = friedel_pairs(sp, fr, fc, friedel_px)
    fr, fc = _symmetrise_pairs(sp, fr, fc, partner)
    order = np.lexsort((fc, fr))
    fr, fc, bits = fr[order], fc[order], bits[order]
    partner, _ = friedel_pairs(sp, fr, fc, friedel_px)
    snr = sp.snr_at(fr, fc)
    # intensity: integrated excess power of a Gaussian fit (3x3 sum when the fit fails)
    ex = np.maximum(sp.power - sp.mu, 0.0)
    f2 = fit_gaussians(ex, np.rint(fr).astype(int), np.rint(fc).astype(int), half=2)
    S = sp.size
    s3 = np.zeros(len(fr))
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            i = np.clip(np.rint(fr).astype(int) + dr, 0, S - 1)
            j = np.clip(np.rint(fc).astype(int) + dc, 0, S - 1)
            s3 += ex[i, j]
    gi = 2 * np.pi * f2["amp"] * f2["sr"] * f2["sc"]
    intensity = np.where(f2["ok"] & (gi > 0) & (gi < 10 * s3 + 1e-30), gi, s3) * sp.sampling ** 2
    kx, ky = sp.to_k(fr, fc)
    paired = partner >= 0
    crystalline = _decide(sp, fr, fc, snr, partner, t_det, t_cry)
    detected = (bits & (BITS["gaussian"] | BITS["unet"] | BITS["profile"])) > 0
    order_info = lattice_order(sp, fr, fc, (partner >= 0) & (snr >= t_det) & detected)
    if crystalline and not order_info["lattice"]:
        crystalline = False
    info = {"threshold_detect": t_det, "threshold_crystalline": t_cry, "raw": raw,
            "lattice_bases_px": [b.tolist() for b in bases], "lattice_order": order_info}
    return PeakSet(fr, fc, kx, ky, snr, intensity, bits.astype(np.uint8), paired, crystalline, info)


def lattice_order(sp: Spectrum, rows, cols, sel, tol_px: float = 1.5, false_alarms: float = 0.01,
                  min_pairs: int = 3) -> dict:
    """Whether the selected spots form a 2D lattice rather than a ring or a random scatter.

    The best lattice of :func:`fit_lattice` indexes ``k`` of the ``n`` selected Friedel pairs within
    ``tol_px``.  Two pairs span the basis and are indexed whatever they are; each other pair falls
    within ``tol_px`` of a lattice point of a cell of area ``A`` px^2 by chance with probability
    ``p = pi tol^2 / A``.  With five or more pairs, the binomial tail ``P(X >= k - 2 | n - 2, p)``,
    times the number of candidate bases tried (276), is the false-alarm probability of the order found,
    and the spots form a lattice when it is below ``false_alarms`` or when at least half the pairs are
    indexed (by one of up to two lattices: a second grain).  With three or four pairs, three
    must be indexed (a third pair is a sum or difference of the first two in a lattice, but at a
    random angle on a ring).  With fewer than ``min_pairs`` (3) pairs the test has no power and the
    spots are accepted (``tested`` False).

    Returns a dict: ``lattice`` (bool), ``tested``, ``n_pairs``, ``indexed_pairs``, ``p_false``.
    """
    from scipy.stats import binom

    c = sp.center
    v = np.c_[np.asarray(rows)[sel] - c, np.asarray(cols)[sel] - c]
    # one vector per Friedel pair (the half-plane with drow > 0, or drow = 0 and dcol > 0)
    half = (v[:, 0] > 1e-9) | ((np.abs(v[:, 0]) <= 1e-9) & (v[:, 1] > 0))
    n = int(half.sum())
    out = {"lattice": True, "tested": False, "n_pairs": n, "indexed_pairs": 0, "p_false": None}
    if n < min_pairs:
        return out
    out["tested"] = True
    remaining = np.ones(len(v), bool)
    best_k, best_p = 0, 1.0
    for _ in range(2):  # a second lattice for a second grain
        B, inl = fit_lattice(v[remaining], tol_px=tol_px)
        if B is None:
            break
        idx = np.nonzero(remaining)[0]
        hit = np.zeros(len(v), bool)
        hit[idx[inl]] = True
        k, m = int((hit & half).sum()), int((remaining & half).sum())
        if m < 5:  # three or four pairs: three must be indexed
            p_false = 0.0 if k >= 3 and k >= m - 1 else 1.0
        else:
            p = min(1.0, np.pi * tol_px ** 2 / max(abs(float(np.linalg.det(B))), 1e-9))
            p_false = 1.0 if k <= 2 else min(1.0, float(binom.sf(k - 3, m - 2, p)) * 2 * 276.0)
        if p_false < best_p or k > best_k:
            best_k, best_p = max(best_k, k), min(best_p, p_false)
        remaining &= ~hit
        if int((remaining & half).sum()) < 3:
            break
    # order: significant, or at least half the pairs on one lattice (fit_lattice may miss the best
    # basis of a sparse low-symmetry pattern; a ring's or a scatter's best lattice holds far fewer)
    lattice = best_p < false_alarms or (n >= 5 and best_k >= 0.5 * n)
    out.update(lattice=bool(lattice), indexed_pairs=best_k, p_false=best_p)
    return out


def _decide(sp: Spectrum, rows, cols, snr, partner, t_det: float, t_cry: float) -> bool:
    """Crystalline: a Friedel pair at the crystalline threshold, or two non-collinear pairs at the
    detection threshold."""
    has = partner >= 0
    if not has.any():
        return False
    if np.any(has & (snr >= t_cry)):
        return True
    c = sp.center
    sel = has & (snr >= t_det)
    v = np.c_[rows[sel] - c, cols[sel] - c]
    if len(v) < 4:
        return False
    u = v / np.maximum(np.hypot(v[:, 0], v[:, 1])[:, None], 1e-9)
    cross = np.abs(u[:, None, 0] * u[None, :, 1] - u[:, None, 1] * u[None, :, 0])
    return bool((cross > 0.2).any())
