"""Spin splitting of the top heavy-hole doublet of a sheared Ge/Si superlattice in sp3d5s* tight binding
(the cross-check of temtwin.spin_orbit's k·p linear-in-k coefficient).

Structure: [001] superlattice of ``n_well`` Ge monolayers and ``n_barrier`` Si monolayers, all on the Ge
lattice (Si barrier pseudomorphic in all directions: a barrier only), in the tetragonal cell
a1 = (a/2, a/2, 0), a2 = (−a/2, a/2, 0), a3 = (0, 0, L) (one atom per monolayer, periodic in 3D so the
Bloch sums of :func:`.bulk.bloch_hamiltonians` apply; no surfaces, no passivation).  Crystal axes
x = [100], y = [010], z = [001] (growth), Å.

Shear: ε_xz(z) = g (z − z_c) in the well (z_c its centre) and the opposite, zero-mean ramp in the barrier,
so the profile is continuous and periodic; atoms are displaced by u_x(z) = 2 ∫ ε_xz dz (u_z = 0; no
internal relaxation).  g in 1/nm as in :mod:`temtwin.spin_orbit.kp`.

Signed splitting: at in-plane k (rad/nm, crystal axes) the two highest valence states (4 electrons per
atom fill 4N spin-orbitals) are the heavy-hole doublet; ΔE_s = E(⇑) − E(⇓), ⇑ = the state with ⟨σ_z⟩ > 0
(heavy hole |3/2, +3/2⟩ = |(X + iY)↑⟩ has spin up along +z); α_s = (8 ΔE_s(k) − ΔE_s(2k)) / (12 k)
eV nm, the convention of :func:`temtwin.spin_orbit.kp.linear_soi`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bulk import bloch_hamiltonians
from .parameters import load_parameters
from .structure import prepare_structure


def superlattice(n_well: int, n_barrier: int, g_per_nm: float, a_A: float | None = None):
    """(positions Å, numbers, cell Å, well centre z Å) of the sheared Ge/Si superlattice."""
    if n_well % 4 or n_barrier % 4:
        raise ValueError("n_well and n_barrier must be multiples of 4 monolayers (whole cubic cells)")
    a = float(a_A) if a_A is not None else 5.658
    n = n_well + n_barrier
    ml = np.arange(n)
    # diamond along [001] in the a/√2 cell: monolayer m at z = m a/4, in-plane offset cycles every 4
    offs = np.array([[0, 0], [0.25, 0.25], [0.5, 0.0], [0.75, 0.25]]) * a
    pos = np.column_stack([offs[ml % 4], ml * a / 4]).astype(float)
    numbers = np.where(ml < n_well, 32, 14)
    cell = np.array([[a / 2, a / 2, 0.0], [-a / 2, a / 2, 0.0], [0.0, 0.0, n * a / 4]])
    L, Lw = n * a / 4, n_well * a / 4
    zc = (n_well - 1) * a / 8                        # centre of the well's monolayers
    g = g_per_nm / 10.0                              # 1/Å
    z = pos[:, 2]
    # ε_xz: g(z − zc) in the well, linear back to the start value across the barrier (zero mean, periodic)
    zw0, zw1 = zc - Lw / 2, zc + Lw / 2
    eps_top = g * Lw / 2
    Lb = L - Lw

    def eps(zz):
        zz = np.asarray(zz, float)
        return np.where(zz < zw1, g * (zz - zc), eps_top - 2 * eps_top * (zz - zw1) / Lb)

    zz = np.linspace(zw0, zw0 + L, 4001)
    ux = 2 * np.concatenate([[0.0], np.cumsum(0.5 * (eps(zz[1:]) + eps(zz[:-1])) * np.diff(zz))])
    pos[:, 0] += np.interp(z, zz, ux, period=L)
    return pos, numbers, cell, zc


@dataclass
class TBSplitting:
    """α_s (eV nm) of the top doublet, the splittings (eV) at k and 2k, ⟨σ_z⟩ of the two states at k."""

    alpha_signed_eV_nm: float
    splitting_k_eV: float
    splitting_2k_eV: float
    sz_k: tuple[float, float]
    n_atoms: int


def _top_doublet(H: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    e, v = np.linalg.eigh(H)
    top = [4 * n_atoms - 1, 4 * n_atoms - 2]
    w = np.abs(v[:, top]) ** 2
    sz = w[0::2].sum(0) - w[1::2].sum(0)
    return e[top], sz


def sheared_well_alpha(n_well: int = 28, n_barrier: int = 20, g_per_nm: float = 2e-3,
                       direction=(0.0, 1.0, 0.0), k_per_nm: float = 0.05) -> TBSplitting:
    """Signed linear-in-k coefficient α_s (eV nm) of the sheared superlattice's top heavy-hole doublet."""
    params = load_parameters()
    pos, numbers, cell, _ = superlattice(n_well, n_barrier, g_per_nm)
    st = prepare_structure(pos, numbers, params, cell_A=cell, pbc=(True, True, True), passivation="none",
                           min_coordination=1)
    u = np.asarray(direction, float)
    u = u / np.linalg.norm(u)
    kk = np.array([k_per_nm, 2 * k_per_nm])[:, None] * u[None] / 10.0     # rad/Å
    Hk = bloch_hamiltonians(st, params, kk, strain=True, spin_orbit=True)
    d, szs = [], []
    for H in Hk:
        e, sz = _top_doublet(H, len(pos))
        d.append((e[0] - e[1]) * np.sign(sz[0] - sz[1]))
        szs.append(sz)
    a = (8 * d[0] - d[1]) / (12 * k_per_nm)
    return TBSplitting(float(a), float(abs(d[0])), float(abs(d[1])), (float(szs[0][0]), float(szs[0][1])),
                       len(pos))
