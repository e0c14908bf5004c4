"""Bulk band structures from the same Slater–Koster code (Bloch sums on a periodic cell).

``H(k)_{iα, jβ} = Σ_bonds B_{αβ}(bond) exp(i k·(r_j + T − r_i)) + on-site``, with ``k`` in rad/Å
(``2π`` included).  Spin-orbitals are indexed ``2·orbital + spin`` as in
:meth:`..hamiltonian.TBHamiltonian.to_csr`.  Used by the tests to check the parameter tables against
the reference band gaps, spin–orbit splittings and the Si/Ge valence-band offset.
"""

from __future__ import annotations

import numpy as np

from .parameters import N_ORB, TBParameters, Z_OF
from .slater_koster import onsite_blocks, sk_blocks, spin_orbit_matrix
from .structure import TBStructure, prepare_structure


def diamond_primitive(a_A: float, species=("Si", "Si")):
    """(positions Å, cell Å, atomic numbers) of the 2-atom fcc primitive cell of diamond."""
    cell = 0.5 * a_A * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], float)
    pos = np.array([[0, 0, 0], [0.25, 0.25, 0.25]]) * a_A
    return pos, cell, np.array([Z_OF[s] for s in species])


def diamond_cubic(a_A: float, reps=(1, 1, 1), species_fn=None):
    """8-atom conventional cubic diamond cell repeated ``reps`` times (positions, cell, numbers).

    ``species_fn(positions) -> atomic numbers`` chooses the species (default all Si).
    """
    basis = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    g = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1).reshape(-1, 3)
    pos = ((g[:, None, :] + basis[None]) * a_A).reshape(-1, 3)
    cell = np.diag(np.asarray(reps, float) * a_A)
    z = np.full(len(pos), 14) if species_fn is None else np.asarray(species_fn(pos))
    return pos, cell, z


def k_path(a_A: float, points: dict, n: int):
    """``n`` k-points (rad/Å) on the straight segment between two named fractional points.

    ``points`` maps a name to a vector in units of 2π/a, e.g. ``{"G": (0,0,0), "X": (1,0,0)}``.
    """
    (_, p0), (_, p1) = list(points.items())
    t = np.linspace(0.0, 1.0, n)[:, None]
    return 2 * np.pi / a_A * ((1 - t) * np.asarray(p0, float) + t * np.asarray(p1, float))


def bloch_hamiltonians(structure: TBStructure, params: TBParameters, kpts, strain: bool = True,
                       spin_orbit: bool = True) -> np.ndarray:
    """Dense Bloch Hamiltonians (K, 20 n, 20 n) complex128 of a periodic host-only structure."""
    st = structure
    if st.n_sites != st.n_host:
        raise ValueError("Bloch sums need a host-only (fully periodic) structure")
    n = st.n_host
    spec = st.species
    V = params.V0[spec[st.bond_i], spec[st.bond_j]]
    nexp = params.n[spec[st.bond_i], spec[st.bond_j]]
    d0 = params.d0[spec[st.bond_i], spec[st.bond_j]]
    d = np.linalg.norm(st.bond_vec, axis=1)
    V = V * (d0 / d)[:, None] ** nexp
    blocks = sk_blocks(st.bond_vec / d[:, None], V)
    onsite = onsite_blocks(spec, params, st.env, strain=strain)
    kpts = np.atleast_2d(np.asarray(kpts, float))
    nb = N_ORB * n
    Hk = np.zeros((len(kpts), nb, nb), complex)
    idx = np.arange(N_ORB)
    for i in range(n):
        Hk[:, i * N_ORB + idx[:, None], i * N_ORB + idx[None, :]] += onsite[i]
    phase = np.exp(1j * kpts @ st.bond_vec.T)          # (K, B)
    for b in range(len(blocks)):
        i, j = st.bond_i[b], st.bond_j[b]
        Hk[:, i * N_ORB:(i + 1) * N_ORB, j * N_ORB:(j + 1) * N_ORB] += (
            phase[:, b, None, None] * blocks[b][None])
    full = np.einsum("kab,st->kasbt", Hk, np.eye(2)).reshape(len(kpts), 2 * nb, 2 * nb)
    if spin_orbit:
        M = spin_orbit_matrix()
        for i in range(n):
            rows = 2 * (i * N_ORB + np.arange(1, 4))
            sidx = (rows[:, None] + np.arange(2)[None, :]).ravel()
            full[:, sidx[:, None], sidx[None, :]] += params.lambda_so[spec[i]] * M
    return full


def bands(positions_A, numbers, cell_A, params: TBParameters, kpts, strain: bool = True,
          spin_orbit: bool = True) -> np.ndarray:
    """Band energies (K, 20 n) eV, ascending, of a periodic Si/Ge crystal at ``kpts`` (rad/Å)."""
    st = prepare_structure(positions_A, numbers, params, cell_A=cell_A, pbc=(True, True, True),
                           passivation="none", min_coordination=1)
    return np.linalg.eigvalsh(bloch_hamiltonians(st, params, kpts, strain, spin_orbit))
