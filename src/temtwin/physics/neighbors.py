"""Nearest-neighbour (bond) lists for tetrahedral crystals, periodic or with open surfaces.

Conventions
-----------
* Lengths in Å (ASE convention); ``positions_A`` (N, 3), ``cell_A`` rows are the lattice vectors.
* A bond ``i -> j`` has the vector ``vec_A = r_j + image @ cell - r_i`` (``image`` the integer
  periodic image of ``j``), i.e. the minimum-image / periodic shift is applied.
* Bonds are *directed*: every bond appears as ``i -> j`` and ``j -> i``.
* Each atom takes at most ``n_neighbors`` nearest atoms closer than ``max_bond_A``; a bond is kept
  only when it is *mutual* (each atom is among the other's ``n_neighbors`` nearest), so the list is
  symmetric and no atom has more than ``n_neighbors`` bonds.  Surface (under-coordinated) atoms
  simply have fewer bonds.
* Periodicity only along the cell vectors whose ``pbc`` flag is True (any, also non-orthogonal,
  cell): periodic images are added as ghost points within ``max_bond_A`` of the cell faces, and a
  single ``scipy.spatial.cKDTree`` is queried.  Open surfaces elsewhere.

``max_bond_A`` defaults to 1.2 x the median nearest-neighbour distance, so that at a surface the
fourth "neighbour" at second-shell distance (1.63 x d for diamond) is not taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy.spatial import cKDTree

_SUBSAMPLE = 20000  # atoms used to estimate the typical first-neighbour distance


@dataclass
class Bonds:
    """Directed bond list (each bond as ``i -> j`` and ``j -> i``), sorted by ``i``.

    Attributes
    ----------
    i, j: int64 (n_bonds,) atom indices.
    vec_A: (n_bonds, 3) float64, ``r_j - r_i`` with the periodic shift applied (Å).
    dist_A: (n_bonds,) bond lengths (Å).
    coordination: (N,) int64 number of bonds of each atom.
    image: (n_bonds, 3) int periodic image of ``j`` (``vec = r_j + image @ cell - r_i``).
    max_bond_A: the cutoff used (Å).
    """

    i: np.ndarray
    j: np.ndarray
    vec_A: np.ndarray
    dist_A: np.ndarray
    coordination: np.ndarray
    image: np.ndarray | None = None
    max_bond_A: float = 0.0


@dataclass
class NeighborTable:
    """Padded neighbour table (the form the force-field kernels use).

    Attributes
    ----------
    nbr: (N, K) int64, neighbour index or -1 (empty slot).
    image: (N, K, 3) int16 periodic image of the neighbour.
    rev: (N, K) int64, slot of the reverse bond in ``nbr[nbr[i, s]]`` (-1 for empty slots).
    max_bond_A: cutoff used (Å).
    """

    nbr: np.ndarray
    image: np.ndarray
    rev: np.ndarray
    max_bond_A: float

    @property
    def coordination(self) -> np.ndarray:
        return (self.nbr >= 0).sum(axis=1).astype(np.int64)

    def bond_vectors(self, positions_A, cell_A=None) -> np.ndarray:
        """(N, K, 3) bond vectors (Å) for the current positions (zeros in empty slots)."""
        pos = np.asarray(positions_A, float)
        cell = np.zeros((3, 3)) if cell_A is None else np.asarray(cell_A, float)
        j = np.where(self.nbr >= 0, self.nbr, np.arange(len(pos))[:, None])
        vec = pos[j] - pos[:, None, :] + self.image.astype(float) @ cell
        vec[self.nbr < 0] = 0.0
        return vec

    def bonds(self, positions_A, cell_A=None) -> Bonds:
        """The flat directed :class:`Bonds` list."""
        pos = np.asarray(positions_A, float)
        cell = np.zeros((3, 3)) if cell_A is None else np.asarray(cell_A, float)
        valid = self.nbr >= 0
        ii, ss = np.nonzero(valid)
        jj = self.nbr[ii, ss]
        img = self.image[ii, ss].astype(np.int64)
        vec = pos[jj] - pos[ii] + img.astype(float) @ cell
        return Bonds(i=ii.astype(np.int64), j=jj.astype(np.int64), vec_A=vec,
                     dist_A=np.sqrt(np.einsum("ij,ij->i", vec, vec)),
                     coordination=valid.sum(axis=1).astype(np.int64), image=img,
                     max_bond_A=float(self.max_bond_A))


def _full_cell(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """A full-rank frame whose periodic rows are the periodic cell vectors.

    Non-periodic rows are replaced by unit vectors orthogonal to the periodic ones, so that the
    fractional coordinates along the periodic vectors are well defined for any cell.
    """
    full = np.array(cell, float)
    per = [d for d in range(3) if pbc[d]]
    if len(per) == 3:
        return full
    p = full[per]
    if len(per) == 0:
        return np.eye(3)
    if len(per) == 2:
        n = np.cross(p[0], p[1])
        comp = [n / np.linalg.norm(n)]
    else:
        u = p[0] / np.linalg.norm(p[0])
        trial = np.eye(3)[np.argmin(np.abs(u))]
        v = np.cross(u, trial)
        v /= np.linalg.norm(v)
        comp = [v, np.cross(u, v)]
    for d, c in zip([d for d in range(3) if not pbc[d]], comp):
        full[d] = c
    return full


def _ghosts(frac: np.ndarray, pbc: np.ndarray, recip_norm: np.ndarray, cut: float):
    """Indices and integer shifts of periodic ghost images within ``cut`` of the cell faces."""
    per = [d for d in range(3) if pbc[d]]
    if not per:
        return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    t = cut * recip_norm  # cutoff in fractional units, per direction
    ranges = [np.arange(-int(np.ceil(t[d])), int(np.ceil(t[d])) + 1) if pbc[d] else np.array([0])
              for d in range(3)]
    idx_list, shift_list = [], []
    for sx in ranges[0]:
        for sy in ranges[1]:
            for sz in ranges[2]:
                s = np.array([sx, sy, sz])
                if not s.any():
                    continue
                mask = np.ones(len(frac), bool)
                for d in per:
                    if s[d] != 0:
                        f = frac[:, d] + s[d]
                        mask &= (f >= -t[d]) & (f <= 1.0 + t[d])
                sel = np.nonzero(mask)[0]
                idx_list.append(sel)
                shift_list.append(np.broadcast_to(s, (len(sel), 3)))
    if not idx_list:
        return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    return np.concatenate(idx_list).astype(np.int64), np.concatenate(shift_list).astype(np.int64)


@nb.njit(parallel=True, cache=True)
def _select(idx, dist, owner, pshift, wrap, n_points, k):  # pragma: no cover - compiled
    """First k non-self hits per atom -> (nbr (n, k), image (n, k, 3)) relative to unwrapped positions."""
    n, kq = idx.shape
    nbr = np.full((n, k), -1, np.int64)
    img = np.zeros((n, k, 3), np.int64)
    for i in nb.prange(n):
        s = 0
        for q in range(kq):
            p = idx[i, q]
            if p >= n_points or not np.isfinite(dist[i, q]):
                break
            j = owner[p]
            if j == i and pshift[p, 0] == 0 and pshift[p, 1] == 0 and pshift[p, 2] == 0:
                continue
            if s == k:
                break
            nbr[i, s] = j
            for a in range(3):
                img[i, s, a] = wrap[j, a] + pshift[p, a] - wrap[i, a]
            s += 1
    return nbr, img


@nb.njit(parallel=True, cache=True)
def _mutual(nbr, img):  # pragma: no cover - compiled
    """Reverse slot of each bond; bonds without a reverse (j does not list i) are removed in place."""
    n, k = nbr.shape
    rev = np.full((n, k), -1, np.int64)
    for i in nb.prange(n):
        for s in range(k):
            j = nbr[i, s]
            if j < 0:
                continue
            for t in range(k):
                if (nbr[j, t] == i and img[j, t, 0] == -img[i, s, 0] and img[j, t, 1] == -img[i, s, 1]
                        and img[j, t, 2] == -img[i, s, 2]):
                    rev[i, s] = t
                    break
    for i in nb.prange(n):
        for s in range(k):
            if rev[i, s] < 0:
                nbr[i, s] = -1
                img[i, s, 0] = 0
                img[i, s, 1] = 0
                img[i, s, 2] = 0
    return rev


def _typical_nn(points: np.ndarray, tree: cKDTree, queries: np.ndarray, workers: int) -> float:
    """Median distance from ``queries`` to their nearest other point in ``tree`` (Å)."""
    if len(points) < 2 or len(queries) == 0:
        return np.inf
    d, _ = tree.query(queries, k=2, workers=workers)
    d = d[:, 1]
    d = d[np.isfinite(d) & (d > 1e-8)]
    return float(np.median(d)) if len(d) else np.inf


def neighbor_table(positions_A, cell_A=None, pbc=(False, False, False), n_neighbors: int = 4,
                   max_bond_A: float | None = None, workers: int = -1) -> NeighborTable:
    """Padded mutual nearest-neighbour table; see the module docstring for the conventions."""
    pos = np.ascontiguousarray(np.asarray(positions_A, float).reshape(-1, 3))
    n = len(pos)
    k = int(n_neighbors)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,)).copy()
    cell = np.zeros((3, 3)) if cell_A is None else np.asarray(cell_A, float).reshape(3, 3)
    for d in range(3):
        if pbc[d] and np.linalg.norm(cell[d]) < 1e-9:
            raise ValueError(f"pbc along cell vector {d} but the cell vector is zero")
    if n == 0:
        return NeighborTable(np.zeros((0, k), np.int64), np.zeros((0, k, 3), np.int16),
                             np.zeros((0, k), np.int64), float(max_bond_A or 0.0))

    full = _full_cell(cell, pbc)
    inv = np.linalg.inv(full)
    recip_norm = np.linalg.norm(inv, axis=0)  # |b_d| = 1 / interplanar spacing of direction d
    frac = pos @ inv
    wrap = np.where(pbc[None, :], -np.floor(frac), 0.0).astype(np.int64)
    frac = frac + wrap
    per_cell = cell * pbc[:, None]
    wpos = pos + wrap.astype(float) @ per_cell

    sub = np.linspace(0, n - 1, min(n, _SUBSAMPLE)).astype(np.int64)
    if max_bond_A is None:
        tree0 = cKDTree(wpos, balanced_tree=False, compact_nodes=False)
        d1 = _typical_nn(wpos, tree0, wpos[sub], workers)
        if not np.isfinite(d1):  # e.g. one atom in a periodic cell: look through the faces
            d1 = float(np.max(1.0 / recip_norm[pbc])) if pbc.any() else 0.0
        cut = 1.2 * d1
    else:
        cut = float(max_bond_A)

    gidx, gshift = _ghosts(frac, pbc, recip_norm, cut)
    points = np.concatenate([wpos, wpos[gidx] + gshift.astype(float) @ per_cell]) if len(gidx) else wpos
    owner = np.concatenate([np.arange(n), gidx])
    pshift = np.concatenate([np.zeros((n, 3), np.int64), gshift])
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    if max_bond_A is None and len(gidx):
        d1 = _typical_nn(points, tree, wpos[sub], workers)
        if np.isfinite(d1) and 1.2 * d1 < cut:
            cut = 1.2 * d1

    kq = min(k + 1, len(points))
    dist, idx = tree.query(wpos, k=kq, distance_upper_bound=cut, workers=workers)
    nbr, img = _select(np.asarray(idx, np.int64).reshape(n, kq), np.asarray(dist).reshape(n, kq),
                       owner.astype(np.int64), pshift, wrap, len(points), k)
    rev = _mutual(nbr, img)  # drops non-mutual bonds from nbr/img in place
    if np.abs(img).max(initial=0) > np.iinfo(np.int16).max:
        raise ValueError("periodic image index out of range: positions far outside the cell")
    return NeighborTable(nbr=nbr, image=img.astype(np.int16), rev=rev, max_bond_A=float(cut))


def bond_list(positions_A, cell_A=None, pbc=(False, False, False), n_neighbors: int = 4,
              max_bond_A: float | None = None) -> Bonds:
    """Directed nearest-neighbour bonds (KD-tree); see the module docstring.

    Parameters
    ----------
    positions_A: (N, 3) positions in Å.
    cell_A: (3, 3) cell vectors as rows (Å); needed along periodic directions only.
    pbc: periodicity along each cell vector.
    n_neighbors: maximum bonds per atom (4 for tetrahedral crystals).
    max_bond_A: bond cutoff (Å); default 1.2 x the median first-neighbour distance.

    Returns
    -------
    :class:`Bonds` with ``i``, ``j``, ``vec_A`` (= r_j - r_i, periodic shift applied), ``dist_A``,
    ``coordination``, ``image``.
    """
    table = neighbor_table(positions_A, cell_A, pbc, n_neighbors, max_bond_A)
    return table.bonds(positions_A, cell_A)
