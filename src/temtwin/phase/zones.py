"""Zone axes and their zero-order Laue-zone (ZOLZ) spot patterns.

Frames.  For a zone axis [uvw] (direct-lattice direction, the beam direction +z), the *zone frame*
``B`` (3x3, rows x0, y0, z) maps crystal Cartesian vectors (pymatgen lattice-matrix frame, nm or
nm^-1) to a right-handed frame with z along the beam and x0 along the zone's first reference
reflection.  A pattern point is ``(B @ g)[:2]`` (nm^-1).  An orientation with in-plane rotation θ is
``M = Rz(θ) @ B`` (v_image = M @ v_crystal), and the image spot of g is ``s Rz(θ) (B g)[:2]`` for a
calibration scale factor ``s``.

Symmetry.  Diffraction spot patterns obey the Laue group (the point group plus inversion, Friedel's
law).  Zone axes are enumerated up to the *proper* rotations of the Laue group (a rotation maps a
pattern onto an identical, rotated pattern; [uvw] and [-u-v-w] give mirror-image patterns and are kept
apart unless a proper rotation relates them).  Equivalence of reported zone axes uses the full Laue
group (any symmetry-equivalent direction, either sign, is the same zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from math import gcd

import numpy as np

from ..lattice_reduction import gauss_reduce
from .diffraction import ABSENT, ALLOWED, DYNAMICAL, allowed_mask, classify, g_cartesian, structure_factors


# ----------------------------------------------------------------------------------------- symmetry
def laue_rotations(phase) -> np.ndarray:
    """Proper rotations of the Laue group, integer (k, 3, 3) acting on fractional direct coordinates.

    Directions transform as ``W @ uvw``, Miller indices as ``hkl @ inv(W)``.  Cached on the phase.
    """
    if "laue_rot" in phase._cache:
        return phase._cache["laue_rot"]
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        ops = SpacegroupAnalyzer(phase.structure, symprec=0.01).get_symmetry_operations(cartesian=False)
        mats = [np.rint(op.rotation_matrix).astype(int) for op in ops]
    except Exception:  # pragma: no cover - spglib failure: identity only
        mats = [np.eye(3, dtype=int)]
    proper = []
    for W in mats:
        W = W if round(np.linalg.det(W)) == 1 else -W
        if not any(np.array_equal(W, P) for P in proper):
            proper.append(W)
    out = np.array(proper, int)
    phase._cache["laue_rot"] = out
    return out


def cartesian_rotations(phase) -> np.ndarray:
    """The Laue proper rotations in crystal Cartesian coordinates (k, 3, 3): v' = R v.

    With lattice rows L (r_cart = L^T f), R = L^T W L^-T.
    """
    if "cart_rot" in phase._cache:
        return phase._cache["cart_rot"]
    L = phase.lattice_nm
    W = laue_rotations(phase).astype(float)
    R = np.einsum("ij,kjl,lm->kim", L.T, W, np.linalg.inv(L.T))
    # clean numerical noise so that R is orthogonal to machine precision
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    phase._cache["cart_rot"] = R
    return R


def _primitive(v) -> np.ndarray:
    v = np.asarray(v, int)
    g = reduce(gcd, (abs(int(x)) for x in v))
    return v // g if g > 1 else v


def zone_key(uvw) -> tuple:
    """Sort key of a representative: small indices, few minus signs, zeros first ([001] before [100])."""
    u = np.asarray(uvw, int)
    return (int(np.abs(u).sum()), int((u < 0).sum()), tuple(int(x) for x in np.abs(u)), tuple(-u))


def equivalent_zones(phase, uvw, proper_only: bool = False) -> np.ndarray:
    """All directions symmetry-equivalent to ``uvw`` (Laue group; with ``proper_only`` only its proper
    rotations, which keep the pattern's handedness), as unique integer rows."""
    W = laue_rotations(phase)
    u = _primitive(uvw)
    orbit = W @ u
    if not proper_only:
        orbit = np.vstack([orbit, -orbit])
    return np.unique(orbit, axis=0)


def same_zone(phase, a, b) -> bool:
    """True when zone axes ``a`` and ``b`` are symmetry-equivalent (Laue group, either sign)."""
    b = _primitive(b)
    return bool(np.any(np.all(equivalent_zones(phase, a) == b[None, :], axis=1)))


def zone_classes(phase, max_index: int) -> list[np.ndarray]:
    """Representatives of the zone axes [uvw], |u|,|v|,|w| <= max_index, up to proper Laue rotations."""
    r = np.arange(-max_index, max_index + 1)
    cand = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    cand = cand[np.any(cand != 0, axis=1)]
    g = np.gcd.reduce(np.abs(cand), axis=1)
    cand = cand[g == 1]
    W = laue_rotations(phase)
    seen: set[tuple] = set()
    reps = []
    for u in sorted(cand.tolist(), key=zone_key):
        t = tuple(u)
        if t in seen:
            continue
        orbit = W @ np.asarray(u)
        for o in orbit:
            seen.add(tuple(int(x) for x in o))
        reps.append(np.asarray(u, int))
    return reps


def parse_zone_symbol(symbol: str) -> list[int]:
    """Zone or reflection symbol as printed in papers and truth files -> integer 3-index form.

    ``"[1-10]"`` -> [1, -1, 0]; ``"(11-1)"`` -> [1, 1, -1]; single digits, a minus sign before a
    negative index.  A four-index hexagonal direction ``"[UVTW]"`` becomes [U - T, V - T, W].
    """
    s = symbol.strip().strip("[]()<>{}")
    out, i = [], 0
    while i < len(s):
        if s[i] == "-":
            out.append(-int(s[i + 1]))
            i += 2
        else:
            out.append(int(s[i]))
            i += 1
    if len(out) == 4:
        out = [out[0] - out[2], out[1] - out[2], out[3]]
    return out


def four_index(uvw) -> np.ndarray:
    """Hexagonal direction [uvw] (3-index) -> [UVTW] (4-index, smallest integers)."""
    u, v, w = (int(x) for x in uvw)
    U, V, T, Wd = 2 * u - v, 2 * v - u, -(u + v), 3 * w
    g = reduce(gcd, (abs(U), abs(V), abs(T), abs(Wd)))
    return np.array([U, V, T, Wd]) // max(g, 1)


def four_index_plane(hkl) -> np.ndarray:
    """Hexagonal plane (hkl) -> (hkil), i = -(h + k)."""
    h, k, l = (int(x) for x in hkl)
    return np.array([h, k, -(h + k), l])


# ----------------------------------------------------------------------------------------- patterns
@dataclass
class ZonePattern:
    """The ZOLZ spot pattern of one zone axis of one phase (zone frame, nm^-1).

    Attributes
    ----------
    phase: phase name; uvw: zone axis; uvw4: 4-index form (hexagonal) or None.
    B: zone frame (3, 3), rows x0, y0, z in crystal Cartesian coordinates.
    basis: (2, 2) rows b1, b2: reduced 2D basis of the zone's reciprocal lattice (pattern coords).
    basis_hkl: (2, 3) Miller indices of b1, b2.
    N: half-size of the index grid; kind, weight: (2N+1, 2N+1) grids over n1, n2 in [-N, N] (kind
    ABSENT / ALLOWED / DYNAMICAL; weight = |F| / max |F| of the zone, dynamical ones a fixed fraction).
    points: (m, 2) pattern coords of allowed and dynamical points with |g| <= g_max; pts_n: (m, 2) their
    indices; pts_hkl: (m, 3); pts_kind, pts_w: (m,).
    ref_angles: (r,) angles (rad) in the zone frame of the reference shell (largest-d allowed
    reflections); ref_hkl: (r, 3).
    order: n-fold rotation symmetry of the weighted pattern (2, 3, 4 or 6; power spectra are
    centrosymmetric, so at least 2).
    seeds: (t, 2) pattern coords of the low-order strong reflections used for pair matching (one of
    each Friedel pair).
    """

    phase: str
    uvw: np.ndarray
    uvw4: np.ndarray | None
    B: np.ndarray
    basis: np.ndarray
    basis_hkl: np.ndarray
    N: int
    kind: np.ndarray
    weight: np.ndarray
    points: np.ndarray
    pts_n: np.ndarray
    pts_hkl: np.ndarray
    pts_kind: np.ndarray
    pts_w: np.ndarray
    ref_angles: np.ndarray
    ref_hkl: np.ndarray
    order: int
    seeds: np.ndarray

    @property
    def d_max_nm(self) -> float:
        """Largest allowed d-spacing of the zone (nm)."""
        g = np.hypot(*self.points[self.pts_kind == ALLOWED].T)
        return float(1.0 / g.min()) if g.size else np.nan


def _zone_basis(phase, uvw) -> tuple[np.ndarray, np.ndarray]:
    """Reduced integer basis (2, 3) of {hkl : hkl·uvw = 0} and its Cartesian vectors (2, 3) nm^-1."""
    R = phase.reciprocal_nm
    H = int(max(4, 2 * np.abs(uvw).max() + 1))
    r = np.arange(-H, H + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ uvw == 0) & np.any(hkl != 0, axis=1)]
    gc = g_cartesian(R, hkl)
    length = np.linalg.norm(gc, axis=1)
    i1 = int(np.argmin(length))
    area = np.linalg.norm(np.cross(gc[i1], gc), axis=1)
    pos = area > 1e-9 * length[i1] * length.max()
    amin = area[pos].min()
    ok = pos & (area < amin * (1 + 1e-6))
    i2 = int(np.flatnonzero(ok)[np.argmin(length[ok])])
    h1, h2 = gauss_reduce(hkl[i1], hkl[i2], lambda h: g_cartesian(R, h))
    return np.array([h1, h2]), g_cartesian(R, np.array([h1, h2]))


def _symmetry_order(points: np.ndarray, w: np.ndarray, tol: float) -> int:
    """Largest n in (6, 4, 3, 2) such that rotating the weighted point set by 360°/n maps it onto itself."""
    if len(points) < 2:
        return 2
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    for n in (6, 4, 3, 2):
        t = 2 * np.pi / n
        R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        d, j = tree.query(points @ R.T)
        if np.all(d < tol) and np.allclose(w[j], w, rtol=0.03, atol=0.01):
            return n
    return 2  # Friedel's law: power spectra always have 2-fold symmetry


def build_pattern(phase, uvw, g_max: float, keep_forbidden: bool = True, forbidden_weight: float = 0.3,
                  debye_waller_A2: float = 0.5, n_seeds: int = 16, n_max: int = 24,
                  min_weight: float = 0.02) -> ZonePattern | None:
    """ZOLZ pattern of ``phase`` along ``uvw`` with every reflection |g| <= g_max (nm^-1).

    Returns None when the zone has fewer than two non-collinear allowed reflections within g_max.
    ``min_weight``: allowed reflections weaker than this fraction of the strongest are treated as
    allowed for indexing but given no weight in the coverage score.
    """
    uvw = _primitive(uvw)
    L = phase.lattice_nm
    z = uvw @ L
    z = z / np.linalg.norm(z)
    bhkl, bc = _zone_basis(phase, uvw)
    # index range covering |g| <= g_max
    g1, g2 = bc
    sin = np.linalg.norm(np.cross(g1, g2)) / (np.linalg.norm(g1) * np.linalg.norm(g2))
    n1 = int(np.ceil(g_max / (np.linalg.norm(g1) * sin))) + 1
    n2 = int(np.ceil(g_max / (np.linalg.norm(g2) * sin))) + 1
    N = int(min(max(n1, n2), n_max))
    r = np.arange(-N, N + 1)
    nn = np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
    hkl = nn @ bhkl
    gc = g_cartesian(phase.reciprocal_nm, hkl)
    glen = np.linalg.norm(gc, axis=1)
    nonzero = np.any(nn != 0, axis=1)
    F = structure_factors(phase, hkl, debye_waller_A2)
    F[~nonzero] = 0.0
    allowed = allowed_mask(F) & nonzero
    kind = classify(nn, allowed, keep_forbidden)
    kind[~nonzero] = ABSENT
    within = glen <= g_max * (1 + 1e-9)
    sel_allowed = allowed & within
    if sel_allowed.sum() < 2:
        return None
    ga = gc[sel_allowed]
    if np.linalg.matrix_rank(ga, tol=1e-6 * glen[sel_allowed].max()) < 2:
        return None
    amp = np.abs(F)
    amax = amp[sel_allowed].max()
    w = np.where(kind == ALLOWED, amp / amax, 0.0)
    w[(kind == ALLOWED) & (w < min_weight)] = 0.0
    dyn = kind == DYNAMICAL
    if dyn.any():
        w[dyn] = forbidden_weight * float(np.median(w[sel_allowed]))
    # zone frame: x0 along the first reference reflection
    ga_len = glen.copy()
    ga_len[~(allowed & within)] = np.inf
    dmin = ga_len.min()
    shell = np.flatnonzero(np.isclose(ga_len, dmin, rtol=1e-6))
    x0 = gc[shell[0]] - z * (gc[shell[0]] @ z)
    x0 /= np.linalg.norm(x0)
    y0 = np.cross(z, x0)
    B = np.vstack([x0, y0, z])
    pc = gc @ B[:2].T                                      # pattern coords (all grid points)
    basis = bc @ B[:2].T
    keep = (kind != ABSENT) & within
    points, pts_n, pts_hkl, pts_kind, pts_w = pc[keep], nn[keep], hkl[keep], kind[keep], w[keep]
    order_pts = np.lexsort((np.arctan2(points[:, 1], points[:, 0]), np.round(np.hypot(*points.T), 9)))
    points, pts_n, pts_hkl, pts_kind, pts_w = (a[order_pts] for a in (points, pts_n, pts_hkl, pts_kind, pts_w))
    ref_angles = np.arctan2(pc[shell, 1], pc[shell, 0])
    small = np.hypot(*points.T) <= 3.5 * np.linalg.norm(basis, axis=1).max()
    order = _symmetry_order(points[small], pts_w[small] + 0.5 * (pts_kind[small] == DYNAMICAL),
                            1e-4 * np.linalg.norm(basis[0]))
    # seeds: low-order reflections with some weight (allowed or dynamical), one of each Friedel pair
    strong = (pts_w >= 0.02 * pts_w.max()) | (pts_kind == DYNAMICAL)
    ang = np.mod(np.arctan2(points[:, 1], points[:, 0]), 2 * np.pi)
    half = (ang < np.pi - 1e-9) | np.isclose(ang, 2 * np.pi)  # one of ±g
    cand = np.flatnonzero(strong & half)
    seeds = points[cand[:n_seeds]]
    grid_kind = kind.reshape(2 * N + 1, 2 * N + 1).copy()
    grid_kind[~within.reshape(2 * N + 1, 2 * N + 1)] = ABSENT
    grid_w = np.where(grid_kind != ABSENT, w.reshape(2 * N + 1, 2 * N + 1), 0.0)
    return ZonePattern(
        phase=phase.name, uvw=uvw, uvw4=four_index(uvw) if phase.is_hexagonal else None, B=B,
        basis=basis, basis_hkl=bhkl, N=N, kind=grid_kind, weight=grid_w.astype(np.float32),
        points=points, pts_n=pts_n, pts_hkl=pts_hkl, pts_kind=pts_kind, pts_w=pts_w,
        ref_angles=ref_angles, ref_hkl=hkl[shell], order=int(order), seeds=seeds,
    )


def zone_patterns(phase, max_index: int, g_max: float, **kw) -> list[ZonePattern]:
    """Patterns of every zone class of ``phase`` with |indices| <= max_index (observable ones only);
    a 2D crystal (:mod:`temtwin.phase.layers`) only along its normal [001]."""
    from .layers import is_two_dimensional, layer_zones

    out = []
    zones = layer_zones(phase) if is_two_dimensional(phase) else zone_classes(phase, max_index)
    for uvw in zones:
        p = build_pattern(phase, uvw, g_max, **kw)
        if p is not None:
            out.append(p)
    return out
