"""Atomic structure prepared for tight binding: bonds, pruning, dangling bonds, H passivation.

Lengths in Å.  Sites are the kept host atoms (Si, Ge) first, then explicit H atoms (if any).
Bonds come from :func:`temtwin.physics.neighbors.bond_list` (directed, both directions, periodic
shift applied).

Under-coordinated atoms
-----------------------
Atoms with fewer than ``min_coordination`` host neighbours are removed (repeatedly, since removing
one lowers its neighbours' coordination).  The missing tetrahedral directions of the remaining
surface atoms ("dangling bonds") are reconstructed from the existing bonds:

* 3 bonds: ``u = −(b1 + b2 + b3)/|…|``;
* 2 bonds: ``u± ∝ −(b1 + b2)/2 ± n̂ |b1 − b2|/2`` with ``n̂ ∥ b1 × b2`` (exact for a tetrahedron);
* 1 bond: three directions at the tetrahedral angle around ``−b1`` (azimuth arbitrary but fixed).

Passivation: ``"explicit_h"`` puts an H atom (one s orbital) on each dangling bond at the Si–H /
Ge–H bond length; ``"sp3_shift"`` (Lee et al., PRB 69, 045316 (2004)) raises the sp3 hybrid pointing
along each dangling bond by ``sp3_shift_eV`` on the host atom; ``"none"`` leaves them.  In every
mode the dangling directions enter the on-site strain sums as unstrained virtual bonds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..neighbors import bond_list
from .parameters import TBParameters
from .slater_koster import environment_sums

PASSIVATIONS = ("sp3_shift", "explicit_h", "none")


@dataclass
class TBStructure:
    """Sites, bonds and on-site environment sums of a structure ready for assembly.

    Attributes
    ----------
    positions_A: (n_sites, 3) Å, host atoms then H.
    species: (n_sites,) species index (0 Si, 1 Ge, 2 H).
    parent: (n_sites,) host site each site belongs to (itself for hosts, the bonded host for H).
    atom_index: (n_host,) index of each host site in the input atoms.
    bond_i, bond_j: (n_bonds,) directed hopping bonds between sites (host–host and host–H).
    bond_vec: (n_bonds, 3) ``r_j − r_i`` (Å, periodic shift applied).
    env: (n_host, 38) environment sums (see :func:`..slater_koster.environment_sums`).
    n_host: number of host sites; n_removed: input atoms removed as under-coordinated.
    n_dangling: dangling bonds; passivation: the mode used.
    """

    positions_A: np.ndarray
    species: np.ndarray
    parent: np.ndarray
    atom_index: np.ndarray
    bond_i: np.ndarray
    bond_j: np.ndarray
    bond_vec: np.ndarray
    env: np.ndarray
    n_host: int
    n_removed: int
    n_dangling: int
    passivation: str

    @property
    def n_sites(self) -> int:
        return len(self.species)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def dangling_directions(bond_i: np.ndarray, unit_vec: np.ndarray, coordination: np.ndarray):
    """Unit dangling-bond directions of atoms with 1–3 bonds.

    ``bond_i`` sorted ascending; ``unit_vec`` unit bond vectors.  Returns (atom, direction).
    """
    n = len(coordination)
    start = np.zeros(n + 1, np.int64)
    np.cumsum(coordination, out=start[1:])
    slot = np.arange(len(bond_i)) - start[bond_i]
    pad = np.zeros((n, 4, 3))
    keep = slot < 4
    pad[bond_i[keep], slot[keep]] = unit_vec[keep]
    atoms, dirs = [], []
    a3 = np.nonzero(coordination == 3)[0]
    if len(a3):
        atoms.append(a3)
        dirs.append(_unit(-pad[a3, :3].sum(axis=1)))
    a2 = np.nonzero(coordination == 2)[0]
    if len(a2):
        b1, b2 = pad[a2, 0], pad[a2, 1]
        m = -(b1 + b2) / 2
        nrm = _unit(np.cross(b1, b2))
        w = np.linalg.norm(b1 - b2, axis=1, keepdims=True) / 2
        atoms += [a2, a2]
        dirs += [_unit(m + nrm * w), _unit(m - nrm * w)]
    a1 = np.nonzero(coordination == 1)[0]
    if len(a1):
        b1 = pad[a1, 0]
        axis = np.eye(3)[np.argmin(np.abs(b1), axis=1)]
        e1 = _unit(np.cross(b1, axis))
        e2 = np.cross(b1, e1)
        for phi in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
            atoms.append(a1)
            dirs.append(_unit(-b1 / 3 + np.sqrt(8.0) / 3 * (np.cos(phi) * e1 + np.sin(phi) * e2)))
    if not atoms:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    return np.concatenate(atoms).astype(np.int64), np.concatenate(dirs)


def bond_environment(n_sites: int, bi, bj, vec, dist, species, params: TBParameters):
    """Bonds sorted by (i, j) and what each site's Hamiltonian needs from its own bonds: environment
    sums (:func:`.slater_koster.environment_sums`) and dangling-bond directions.  ``bi``/``bj`` site
    indices (< ``n_sites``), ``vec`` (Å) from i to j, ``dist`` (Å), ``species`` per site.  The (i, j)
    order does not depend on how the KD-tree broke distance ties, so that a domain prepared on its own
    (:mod:`.domain`) sums every environment in the same order as the whole structure.

    Returns (bi, bj, vec, env, dangling_atom, dangling_dir)."""
    order = np.lexsort((bj, bi))
    bi, bj, vec, dist = bi[order], bj[order], vec[order], dist[order]
    coord = np.bincount(bi, minlength=n_sites)
    unit = vec / dist[:, None]
    datom, ddir = dangling_directions(bi, unit, coord)
    d0 = params.d0[species[bi], species[bj]]
    env = environment_sums(n_sites, bi, unit, (dist - d0) / d0, datom, ddir)
    return bi, bj, vec, env, datom, ddir


def prepare_structure(positions_A, numbers, params: TBParameters, cell_A=None,
                      pbc=(False, False, False), passivation: str = "sp3_shift",
                      min_coordination: int = 2, max_bond_A: float | None = None) -> TBStructure:
    """Bonds, pruning and passivation of a Si/Ge structure (see the module docstring).

    Raises ``ValueError`` if an atom is not Si or Ge or the passivation mode is unknown.
    """
    if passivation not in PASSIVATIONS:
        raise ValueError(f"passivation must be one of {PASSIVATIONS}, got {passivation!r}")
    pos = np.asarray(positions_A, float).reshape(-1, 3)
    spec = params.species_index(numbers)
    if np.any((spec < 0) | (spec > 1)):
        bad = sorted(set(np.asarray(numbers)[(spec < 0) | (spec > 1)].tolist()))
        raise ValueError(f"tight binding needs Si and Ge only; found atomic numbers {bad}")
    b = bond_list(pos, cell_A, pbc, n_neighbors=4, max_bond_A=max_bond_A)
    n = len(pos)
    keep = np.ones(n, bool)
    bi, bj = b.i, b.j
    while True:
        ok = keep[bi] & keep[bj]
        coord = np.bincount(bi[ok], minlength=n)
        drop = keep & (coord < max(1, int(min_coordination)))
        if not drop.any():
            break
        keep &= ~drop
    ok = keep[bi] & keep[bj]
    new = -np.ones(n, np.int64)
    atom_index = np.nonzero(keep)[0]
    new[atom_index] = np.arange(len(atom_index))
    n_host = len(atom_index)
    hs = spec[atom_index]
    bi, bj, vec, env, datom, ddir = bond_environment(n_host, new[bi[ok]], new[bj[ok]], b.vec_A[ok],
                                                     b.dist_A[ok], hs, params)

    hpos = pos[atom_index]
    species = hs.copy()
    parent = np.arange(n_host)
    if passivation == "explicit_h" and len(datom):
        hidx = n_host + np.arange(len(datom))
        dh = params.d0[hs[datom], 2][:, None] * ddir
        hpos = np.concatenate([hpos, hpos[datom] + dh])
        species = np.concatenate([species, np.full(len(datom), 2)])
        parent = np.concatenate([parent, datom])
        bi = np.concatenate([bi, datom, hidx])
        bj = np.concatenate([bj, hidx, datom])
        vec = np.concatenate([vec, dh, -dh])
        order = np.argsort(bi, kind="stable")
        bi, bj, vec = bi[order], bj[order], vec[order]
    return TBStructure(positions_A=hpos, species=species.astype(np.int64), parent=parent,
                       atom_index=atom_index, bond_i=bi, bond_j=bj, bond_vec=vec, env=env,
                       n_host=n_host, n_removed=int(n - n_host), n_dangling=len(datom),
                       passivation=passivation)
