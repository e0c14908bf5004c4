"""Oriented crystal fill: the (virtual) unit cell in the image frame, atom columns along the beam.

Frame: image frame, nm: x right, y down, z along the beam (into the screen), right-handed.  A crystal
is described by :class:`CrystalCell`: its lattice vectors as the *columns* of ``lattice_nm``
(image frame), the fractional coordinates of its basis atoms, their atomic numbers and sublattice
index (one sublattice per distinct host species of the CIF, e.g. cation and anion sites of GaAs).

The fill works on atom *columns*: the lattice is re-expressed in a basis (b1, b2, b3) whose third
vector is the shortest lattice translation along the zone axis (the beam).  Projected along the
beam the crystal is then the 2D lattice spanned by b1, b2 plus the projected basis, and every
projected site carries a column of atoms spaced by |b3| along z.  In-plane operations
(displacement, region membership, composition lookup) are done once per column, and the columns
are expanded into atoms over the slab thickness at the end: cost is linear in the atom count with a
small constant.

The *virtual unit cell* (:func:`virtual_cell`) is the reference phase's cell deformed so that its
reciprocal vectors equal the g vectors measured by GPA in the reference region: displacements
measured relative to that lattice are then applied to the right lattice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

from ..lattice_reduction import gauss_reduce


@dataclass
class CrystalCell:
    """A crystal in the image frame.

    lattice_nm: (3, 3) columns = lattice vectors a, b, c (nm, image frame).
    frac: (k, 3) fractional coordinates of the basis atoms in [0, 1).
    numbers: (k,) atomic numbers of the host species.
    sublattice: (k,) sublattice index of each basis atom (index into ``hosts``).
    hosts: atomic number of each sublattice's host species.
    zone: [u, v, w] integer lattice direction along the beam (+z).
    phase, space_group: names for bookkeeping.
    """

    lattice_nm: np.ndarray
    frac: np.ndarray
    numbers: np.ndarray
    sublattice: np.ndarray
    hosts: list[int]
    zone: np.ndarray
    phase: str = ""
    space_group: int = 0
    info: dict = field(default_factory=dict)

    @property
    def volume_nm3(self) -> float:
        return float(abs(np.linalg.det(self.lattice_nm)))

    @property
    def density_nm3(self) -> float:
        """Atoms per nm³."""
        return len(self.numbers) / self.volume_nm3

    def reciprocal_nm(self) -> np.ndarray:
        """(3, 3) columns = reciprocal basis vectors b_i (a_i · b_j = δ_ij, nm⁻¹, no 2π)."""
        return np.linalg.inv(self.lattice_nm).T

    def positions_nm(self) -> np.ndarray:
        """Basis atom positions (k, 3) in the image frame."""
        return self.frac @ self.lattice_nm.T

    def nearest_neighbour_nm(self) -> float:
        """Shortest interatomic distance of the perfect crystal (nm)."""
        return float(nearest_neighbour_distances(self).min())


def nearest_neighbour_distances(cell: CrystalCell) -> np.ndarray:
    """Per basis atom, the distance (nm) to its nearest neighbour in the perfect crystal."""
    A = cell.lattice_nm
    shifts = np.array(list(product((-1, 0, 1), repeat=3)), float)
    pos = cell.positions_nm()
    others = (pos[None, :, :] + (shifts @ A.T)[:, None, :]).reshape(-1, 3)
    d = np.linalg.norm(pos[:, None, :] - others[None, :, :], axis=2)
    d[d < 1e-9] = np.inf
    return d.min(1)


def structure_arrays(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(lattice rows a, b, c in nm, fractional coords, Z, sublattice, hosts) of a pymatgen Structure.

    Disordered sites take their majority species.  Sublattices are the distinct host species in
    order of first appearance.
    """
    L = np.asarray(structure.lattice.matrix, float) / 10.0
    frac = np.array([s.frac_coords for s in structure.sites], float) % 1.0
    Z = []
    for s in structure.sites:
        comp = s.species
        el = max(comp.items(), key=lambda kv: kv[1])[0]
        Z.append(int(el.Z))
    Z = np.array(Z, int)
    hosts: list[int] = []
    for z in Z:
        if int(z) not in hosts:
            hosts.append(int(z))
    sub = np.array([hosts.index(int(z)) for z in Z], int)
    return L, frac, Z, sub, hosts


def cell_from_structure(structure, M: np.ndarray, zone, deformation: np.ndarray | None = None,
                        phase: str = "", space_group: int = 0) -> CrystalCell:
    """The crystal of ``structure`` (pymatgen, Å) oriented by M (v_image = M @ v_crystal).

    ``deformation`` (3×3, image frame) is applied to the oriented lattice (A = F @ M @ Lᵀ).  The
    orientation is corrected by the smallest rotation that puts the zone axis exactly along +z
    (the fill assumes on-zone crystals; the correction is recorded in ``info["zone_tilt_deg"]``).
    """
    L, frac, Z, sub, hosts = structure_arrays(structure)
    M = np.asarray(M, float)
    zone = _primitive_int(zone)
    A = M @ L.T
    v = A @ zone
    tilt = np.degrees(np.arccos(np.clip(abs(v[2]) / np.linalg.norm(v), -1, 1)))
    if v[2] < 0:
        zone = -zone
        v = -v
    R = _rotation_onto_z(v)
    A = R @ A
    if deformation is not None:
        A = np.asarray(deformation, float) @ A
    return CrystalCell(A, frac, Z, sub, hosts, zone, phase, space_group, {"zone_tilt_deg": float(tilt)})


def _primitive_int(v) -> np.ndarray:
    v = np.rint(np.asarray(v, float)).astype(int)
    if not v.any():
        raise ValueError("zone axis [0 0 0]")
    g = np.gcd.reduce(np.abs(v[v != 0]))
    return v // g


def _rotation_onto_z(v: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction v onto +z (identity when already aligned)."""
    a = v / np.linalg.norm(v)
    z = np.array([0.0, 0.0, 1.0])
    c = float(a @ z)
    k = np.cross(a, z)
    s = np.linalg.norm(k)
    if s < 1e-15:
        return np.eye(3)
    k /= s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * K @ K


def zone_reflections(cell: CrystalCell, hkl_max: int = 6, g_max_nm: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal lattice vectors in the zone (g ⟂ beam): (hkl (n, 3) int, g (n, 2) nm⁻¹ [kx, ky])."""
    r = np.arange(-hkl_max, hkl_max + 1)
    hkl = np.array(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T
    hkl = hkl[np.any(hkl != 0, axis=1)]
    hkl = hkl[hkl @ cell.zone == 0]
    g = hkl @ cell.reciprocal_nm().T
    ok = np.linalg.norm(g, axis=1) <= g_max_nm
    return hkl[ok], g[ok, :2]


def match_reflections(cell: CrystalCell, g_measured: np.ndarray, tol: float = 0.1):
    """Index measured g vectors (rows [kx, ky] nm⁻¹) on the cell's zone reflections.

    Returns (hkl (n, 3), g_nominal (n, 2), relative mismatch (n,)); mismatch = |g − g_nom| / |g|.
    """
    hkl, g = zone_reflections(cell)
    gm = np.asarray(g_measured, float).reshape(-1, 2)
    d = np.linalg.norm(gm[:, None, :] - g[None, :, :], axis=2) / np.linalg.norm(gm, axis=1)[:, None]
    k = np.argmin(d, axis=1)
    return hkl[k], g[k], d[np.arange(len(gm)), k]


def virtual_cell(cell: CrystalCell, g_measured: np.ndarray, tol: float = 0.1,
                 hkl: np.ndarray | None = None) -> tuple[CrystalCell, dict]:
    """The cell deformed in-plane so that its reciprocal vectors match the measured ``g_measured``.

    ``g_measured``: (2, 2) rows g1, g2 [kx, ky] nm⁻¹ (GPA reference g vectors, refined in the reference
    region).  ``hkl``: (2, 3) their Miller indices as stored in gpa.h5 (``/lattice`` attr ``hkl``, from
    phase_id's indexing): used as given, never re-indexed.  Without them (GPA could not index its g)
    each g is indexed on the nearest zone reflection of ``cell``.  The nominal g of those hkl must lie
    within ``tol`` (relative) of the measured g.  The in-plane deformation F₂ with
    g_meas = F₂⁻ᵀ g_nom is applied; along the beam the cell is scaled by √|det F₂| (isotropic guess:
    the beam direction is not measured).  Raises ValueError if the g vectors do not match.
    """
    if hkl is not None:
        hkl = np.asarray(hkl, int).reshape(2, 3)
        gm = np.asarray(g_measured, float).reshape(2, 2)
        g3 = hkl @ cell.reciprocal_nm().T                 # image frame (nm⁻¹); z ≈ 0 for hkl in the zone
        gn = g3[:, :2]
        mis = np.linalg.norm(g3 - np.c_[gm, np.zeros(2)], axis=1) / np.linalg.norm(gm, axis=1)
    else:
        hkl, gn, mis = match_reflections(cell, g_measured, tol)
    if np.any(mis > tol):
        raise ValueError(f"measured g vectors do not match the phase's reflections {hkl.tolist()} "
                         f"(mismatch {mis.max():.1%})")
    Gm = np.asarray(g_measured, float).reshape(2, 2).T   # columns
    Gn = gn.T
    if abs(np.linalg.det(Gn)) < 1e-9 * np.linalg.norm(Gn) ** 2:
        raise ValueError("measured g vectors index on parallel reflections")
    F2 = np.linalg.inv(Gm @ np.linalg.inv(Gn)).T
    F = np.eye(3)
    F[:2, :2] = F2
    F[2, 2] = np.sqrt(abs(np.linalg.det(F2)))
    out = replace(cell, lattice_nm=F @ cell.lattice_nm, info={**cell.info, "virtual_cell_F": F.tolist(),
                                                              "g_hkl": hkl.tolist(), "g_mismatch": mis.tolist()})
    return out, {"F": F, "hkl": hkl, "mismatch": mis}


def zone_basis(cell: CrystalCell) -> tuple[np.ndarray, np.ndarray]:
    """Integer unimodular Q (rows q1, q2, zone) and B = A Qᵀ (columns b1, b2, b3 with b3 ∥ +z).

    b1, b2 are chosen short (Gauss-reduced in projection) so the projected cell is compact.
    """
    p = cell.zone
    r = np.arange(-3, 4)
    Q = np.array(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T
    A = cell.lattice_nm
    cr = np.cross(Q, p)                       # q2 × p for every q2
    det = Q @ cr.T                            # det[i, j] = q1_i · (q2_j × p)
    i, j = np.nonzero(np.abs(det) == 1)
    if len(i) == 0:
        raise ValueError(f"cannot complete zone {p} to a lattice basis")
    proj = (Q @ A.T)[:, :2]
    cost = np.linalg.norm(proj[i], axis=1) + np.linalg.norm(proj[j], axis=1)
    k = np.argmin(cost)
    # Gauss (Lagrange) reduction of the projected 2D basis
    q1, q2 = gauss_reduce(Q[i[k]], Q[j[k]], lambda q: (A @ q)[:2])
    Qm = np.array([q1, q2, p])
    if np.linalg.det(Qm) < 0:
        Qm[0] = -Qm[0]
    return Qm, A @ Qm.T


def beam_classes(cell: CrystalCell) -> tuple[int, np.ndarray]:
    """(n, representative mask): the largest n ≤ 6 such that zone/n is a translation of the crystal
    (centred lattices), and one basis atom per class of atoms related by that translation."""
    p = cell.zone.astype(float)
    frac = cell.frac
    same = cell.numbers[:, None] == cell.numbers[None, :]
    for n in range(6, 1, -1):
        shift = (frac + p / n) % 1.0
        d = np.abs(((shift[:, None, :] - frac[None, :, :]) + 0.5) % 1.0 - 0.5).max(axis=2)
        if np.all(np.any((d < 1e-4) & same, axis=1)):
            break
    else:
        return 1, np.ones(len(frac), bool)
    rep = np.ones(len(frac), bool)
    for k in range(len(frac)):
        if not rep[k]:
            continue
        for m in range(1, n):
            s = (frac[k] + m * p / n) % 1.0
            dd = np.abs(((s - frac) + 0.5) % 1.0 - 0.5).max(axis=1)
            j = np.nonzero((dd < 1e-4) & same[k])[0]
            rep[j[j != k]] = False
    return n, rep


def beam_period(cell: CrystalCell) -> float:
    """Repeat distance (nm) of the crystal along the beam (zone axis), allowing centred lattices."""
    n, _ = beam_classes(cell)
    return float(np.linalg.norm(cell.lattice_nm @ cell.zone)) / n


@dataclass
class Columns:
    """Atom columns of a crystal projected along the beam (before expansion into atoms).

    xy: (n, 2) reference (undeformed) in-plane positions, nm.
    zphase: (n,) z of the first atom of each column above the slab bottom (0 ≤ zphase < period).
    basis: (n,) index of the basis atom of the cell.
    period: spacing of the atoms along the beam in each column (nm).
    """

    xy: np.ndarray
    zphase: np.ndarray
    basis: np.ndarray
    period: float

    def __len__(self) -> int:
        return len(self.xy)

    def take(self, keep) -> "Columns":
        return Columns(self.xy[keep], self.zphase[keep], self.basis[keep], self.period)

    def counts(self, thickness_nm: float) -> np.ndarray:
        """Atoms per column in a slab [0, thickness)."""
        return np.maximum(np.ceil((thickness_nm - self.zphase) / self.period - 1e-9), 0).astype(np.int64)


def crystal_columns(cell: CrystalCell, window_nm, origin_nm=(0.0, 0.0, 0.0)) -> Columns:
    """All atom columns whose in-plane reference position falls in ``window_nm`` [x0, y0, x1, y1].

    ``origin_nm``: image-frame position of the lattice origin (fractional 0, 0, 0); its z component
    sets the phase of the atomic planes relative to the slab bottom z = 0.
    """
    Q, B = zone_basis(cell)
    nsub, rep = beam_classes(cell)
    period = float(B[2, 2]) / nsub
    # basis positions in the new basis, wrapped into one cell (one atom per class along the beam)
    fnew = (np.linalg.inv(Q).T @ cell.frac[rep].T).T % 1.0
    d = fnew @ B.T
    site = np.nonzero(rep)[0]
    P = B[:2, :2]
    Pinv = np.linalg.inv(P)
    x0, y0, x1, y1 = window_nm
    o = np.asarray(origin_nm, float)
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) - o[:2]
    nb = corners @ Pinv.T
    dproj = d[:, :2] @ Pinv.T
    lo = np.floor(nb.min(0) - dproj.max(0)).astype(np.int64) - 1
    hi = np.ceil(nb.max(0) - dproj.min(0)).astype(np.int64) + 1
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    n = np.column_stack([n1.ravel(), n2.ravel()]).astype(float)
    xy = ((n @ P.T + o[:2])[:, None, :] + d[None, :, :2]).reshape(-1, 2)
    z = ((n @ B[2, :2] + o[2])[:, None] + d[None, :, 2]).reshape(-1)
    basis = np.tile(site, len(n))
    inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
    # atoms within 1e-9 nm below a plane boundary count as on it (round-off of exact lattice planes)
    return Columns(xy[inside], np.mod(z[inside] + 1e-9, period) - 1e-9, basis[inside], period)


def expand_columns(cols: Columns, thickness_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of the columns in the slab 0 ≤ z < thickness: (column index (N,), z (N,) nm)."""
    cnt = cols.counts(thickness_nm)
    idx = np.repeat(np.arange(len(cols), dtype=np.int64), cnt)
    start = np.cumsum(cnt) - cnt
    m = np.arange(idx.size, dtype=np.int64) - np.repeat(start, cnt)
    z = cols.zphase[idx] + m * cols.period
    return idx, z


def commensurate_thickness(cell: CrystalCell, thickness_nm: float) -> float:
    """The slab thickness rounded to a whole number (≥ 1) of repeat periods along the beam."""
    p = beam_period(cell)
    return max(1, int(round(thickness_nm / p))) * p
