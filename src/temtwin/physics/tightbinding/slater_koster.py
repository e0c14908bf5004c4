"""Slater–Koster two-centre blocks, on-site strain blocks and spin–orbit for the sp3d5s* basis.

Orbital order (spin-less): ``s, px, py, pz, dyz, dzx, dxy, dx2-y2, d3z2-r2, s*``.

Two-centre blocks
-----------------
``block[α, β] = <α on atom i | H | β on atom j>`` for the bond vector ``r_j − r_i`` with direction
cosines ``c = (l, m, n)``, written in a rotation-covariant form equivalent to the Slater–Koster table
(Phys. Rev. 94, 1498 (1954)).  Each d orbital is a traceless symmetric unit tensor ``T_t``
(``d_xy ↔ (e_x e_y + e_y e_x)/√2``, ``d_x²−y² ↔ diag(1,−1,0)/√2``, ``d_3z²−r² ↔ diag(−1,−1,2)/√6``), and
with ``q_t = c·T_t·c``:

* s–p_a: ``c_a V_spσ``;  p_a–s: ``−c_a V_psσ`` (the orbital with the higher l on atom i flips sign),
* s–d_t: ``√(3/2) q_t V_sdσ``;  d_t–s: ``√(3/2) q_t V_dsσ``,
* p_a–p_b: ``c_a c_b V_ppσ + (δ_ab − c_a c_b) V_ppπ``,
* p_a–d_t: ``√(3/2) c_a q_t V_pdσ + √2 (T_t c − c q_t)_a V_pdπ``;  d_t–p_a: minus the same with the
  dp integrals,
* d_t–d_u: ``Vσ S + Vπ P + Vδ (δ_tu − S − P)`` with ``S = 3/2 q_t q_u`` and
  ``P = 2 (T_t c·T_u c − q_t q_u)``.

The integrals are the *directed* ones of :mod:`.parameters` (first orbital on atom i), so a Si→Ge
bond and the Ge→Si bond give transposed blocks (checked in the tests).

On-site strain (Niquet et al., PRB 79, 245201 (2009))
------------------------------------------------------
With bond directions ``c_j`` and relative elongations ``e_j = (d_j − d0)/d0`` of atom i's bonds
(dangling bonds count as unstrained bonds along the missing tetrahedral directions):

* hydrostatic: ``E_x += α_x h`` with ``h = 3/4 Σ_j e_j`` (= ``3/4 (Σ d_j/d0 − 4)``) for x = s, p, d, s*;
* p shift: ``<p_a|H|p_b> += Σ_j (β_p0 + β_p1 e_j)(c_ja c_jb − δ_ab/3)``;
* s–p, s*–p: ``<s|H|p_a> = β_sp0 Σ_j c_ja`` (zero for a perfect tetrahedron);
* s–d, s*–d: ``<s|H|d_t> = β_sd0/√2 Σ_j c_j·T_t·c_j``;
* p–d: ``<p_a|H|d_t> = √2 Σ_j (β_pd0 + β_pd1 e_j) (T_t c_j)_a``;
* d–d: ``<d_t|H|d_u> = −2 β_d0 Tr(A T_t T_u)`` with ``A = Σ_j (c_j c_j − 1/3)``.

The reference file documents only the hydrostatic and p-shift terms; the cross terms are the
unique lowest-order rotation-covariant couplings with the stated parameters, normalised so that
for [001] layers they coincide with the public implementation the table was transcribed from
(bdw0010/Valley_Splitting_3D), except its s–d_3z²−r² term, whose form there (Σ n² − 4) does not vanish
in the unstrained crystal and is taken here as ``(3 Σ n² − 4)/(2√3)``.

Spin–orbit: ``H_SO = λ L·σ`` on the p shell (Δ_SO = 3λ), basis index ``2a + s`` (a = x, y, z;
s = ↑, ↓).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .parameters import IDX, N_ORB

_R2 = 1.0 / math.sqrt(2.0)
_R6 = 1.0 / math.sqrt(6.0)
#: d orbitals as traceless symmetric unit tensors, order dyz, dzx, dxy, dx2-y2, d3z2-r2
D_TENSORS = np.zeros((5, 3, 3))
D_TENSORS[0, 1, 2] = D_TENSORS[0, 2, 1] = _R2
D_TENSORS[1, 2, 0] = D_TENSORS[1, 0, 2] = _R2
D_TENSORS[2, 0, 1] = D_TENSORS[2, 1, 0] = _R2
D_TENSORS[3, 0, 0], D_TENSORS[3, 1, 1] = _R2, -_R2
D_TENSORS[4] = np.diag([-_R6, -_R6, 2 * _R6])
#: Tr(T_t T_u T_v...) helpers: DD[t, u] = sym(T_t T_u), (5, 5, 3, 3)
DD = np.einsum("tab,ubc->tuac", D_TENSORS, D_TENSORS)
DD = 0.5 * (DD + DD.transpose(0, 1, 3, 2))

_SQ32 = math.sqrt(1.5)
_SQ2 = math.sqrt(2.0)
_SQ3 = math.sqrt(3.0)

# integral indices as plain ints for numba
_ss, _sS, _Ss, _SS = IDX["ss_sigma"], IDX["sS_sigma"], IDX["Ss_sigma"], IDX["SS_sigma"]
_sp, _Sp, _ps, _pS = IDX["sp_sigma"], IDX["Sp_sigma"], IDX["ps_sigma"], IDX["pS_sigma"]
_sd, _Sd, _ds, _dS = IDX["sd_sigma"], IDX["Sd_sigma"], IDX["ds_sigma"], IDX["dS_sigma"]
_pps, _ppp = IDX["pp_sigma"], IDX["pp_pi"]
_pds, _pdp, _dps, _dpp = IDX["pd_sigma"], IDX["pd_pi"], IDX["dp_sigma"], IDX["dp_pi"]
_dds, _ddp, _ddd = IDX["dd_sigma"], IDX["dd_pi"], IDX["dd_delta"]


@numba.njit(cache=True)
def sk_block_into(c, V, out):
    """Fill ``out`` (10, 10) with the two-centre block for unit vector ``c`` and integrals ``V`` (21)."""
    T = D_TENSORS
    q = np.zeros(5)
    Tc = np.zeros((5, 3))
    for t in range(5):
        for a in range(3):
            acc = 0.0
            for b in range(3):
                acc += T[t, a, b] * c[b]
            Tc[t, a] = acc
            q[t] += c[a] * acc
    for a in range(N_ORB):
        for b in range(N_ORB):
            out[a, b] = 0.0
    out[0, 0] = V[_ss]
    out[0, 9] = V[_sS]
    out[9, 0] = V[_Ss]
    out[9, 9] = V[_SS]
    for a in range(3):
        out[0, 1 + a] = c[a] * V[_sp]
        out[9, 1 + a] = c[a] * V[_Sp]
        out[1 + a, 0] = -c[a] * V[_ps]
        out[1 + a, 9] = -c[a] * V[_pS]
        for b in range(3):
            cc = c[a] * c[b]
            out[1 + a, 1 + b] = cc * V[_pps] + ((1.0 if a == b else 0.0) - cc) * V[_ppp]
    for t in range(5):
        sd = _SQ32 * q[t]
        out[0, 4 + t] = sd * V[_sd]
        out[9, 4 + t] = sd * V[_Sd]
        out[4 + t, 0] = sd * V[_ds]
        out[4 + t, 9] = sd * V[_dS]
        for a in range(3):
            fs = _SQ32 * c[a] * q[t]
            fp = _SQ2 * (Tc[t, a] - c[a] * q[t])
            out[1 + a, 4 + t] = fs * V[_pds] + fp * V[_pdp]
            out[4 + t, 1 + a] = -(fs * V[_dps] + fp * V[_dpp])
        for u in range(5):
            s_ = 1.5 * q[t] * q[u]
            tt = 0.0
            for a in range(3):
                tt += Tc[t, a] * Tc[u, a]
            p_ = 2.0 * (tt - q[t] * q[u])
            out[4 + t, 4 + u] = (s_ * V[_dds] + p_ * V[_ddp]
                                 + ((1.0 if t == u else 0.0) - s_ - p_) * V[_ddd])


@numba.njit(cache=True)
def scaled_integrals_into(V0, nexp, d0, d, out):
    """``out = V0 (d0/d)**n`` (21 integrals)."""
    r = d0 / d
    for k in range(V0.shape[0]):
        out[k] = V0[k] * r ** nexp[k] if nexp[k] != 0.0 else V0[k]


@numba.njit(parallel=True, cache=True)
def _sk_blocks(C, V, out):
    for k in numba.prange(C.shape[0]):
        sk_block_into(C[k], V[k], out[k])


def sk_blocks(directions: np.ndarray, integrals: np.ndarray) -> np.ndarray:
    """Two-centre blocks (B, 10, 10) for unit bond vectors (B, 3) and integrals (B, 21), eV."""
    C = np.ascontiguousarray(directions, np.float64)
    V = np.ascontiguousarray(integrals, np.float64)
    out = np.empty((len(C), N_ORB, N_ORB))
    if len(C):
        _sk_blocks(C, V, out)
    return out


#: layout of the per-atom environment sums used by :func:`onsite_block_into`
ENV_FIELDS = ("h", "A1", "A2", "E1", "E2", "n_db", "U1", "U2")
ENV_SIZE = 1 + 3 + 9 + 3 + 9 + 1 + 3 + 9


@numba.njit(cache=True)
def onsite_block_into(E0, alpha, beta, env, strain, shift, out):
    """Fill ``out`` (10, 10) with the on-site block of one host atom.

    ``E0`` (10) bare energies, ``alpha`` (4), ``beta`` (9) strain parameters, ``env`` the
    :data:`ENV_FIELDS` sums (see :func:`environment_sums`), ``strain`` switches the strain terms,
    ``shift`` (eV) the sp3-hybrid passivation shift per dangling bond (0 = none).
    """
    T = D_TENSORS
    for a in range(N_ORB):
        for b in range(N_ORB):
            out[a, b] = 0.0
        out[a, a] = E0[a]
    h = env[0]
    A1 = env[1:4]
    A2 = env[4:13].reshape(3, 3)
    E1 = env[13:16]
    E2 = env[16:25].reshape(3, 3)
    if strain:
        out[0, 0] += alpha[0] * h
        for a in range(3):
            out[1 + a, 1 + a] += alpha[1] * h
        for t in range(5):
            out[4 + t, 4 + t] += alpha[2] * h
        out[9, 9] += alpha[3] * h
        bp0, bp1, bpd0, bpd1, bd0, bsp, bSp, bsd, bSd = (beta[0], beta[1], beta[2], beta[3],
                                                         beta[4], beta[5], beta[6], beta[7], beta[8])
        for a in range(3):
            out[0, 1 + a] += bsp * A1[a]
            out[1 + a, 0] += bsp * A1[a]
            out[9, 1 + a] += bSp * A1[a]
            out[1 + a, 9] += bSp * A1[a]
            for b in range(3):
                out[1 + a, 1 + b] += bp0 * A2[a, b] + bp1 * E2[a, b]
        for t in range(5):
            tr = 0.0
            for a in range(3):
                for b in range(3):
                    tr += T[t, a, b] * A2[b, a]
            out[0, 4 + t] += bsd / _SQ2 * tr
            out[4 + t, 0] += bsd / _SQ2 * tr
            out[9, 4 + t] += bSd / _SQ2 * tr
            out[4 + t, 9] += bSd / _SQ2 * tr
            for a in range(3):
                acc = 0.0
                for b in range(3):
                    acc += T[t, a, b] * (bpd0 * A1[b] + bpd1 * E1[b])
                out[1 + a, 4 + t] += _SQ2 * acc
                out[4 + t, 1 + a] += _SQ2 * acc
            for u in range(5):
                acc = 0.0
                for a in range(3):
                    for b in range(3):
                        acc += A2[a, b] * DD[t, u, b, a]
                out[4 + t, 4 + u] += -2.0 * bd0 * acc
    if shift != 0.0:
        ndb = env[25]
        U1 = env[26:29]
        U2 = env[29:38].reshape(3, 3)
        out[0, 0] += 0.25 * shift * ndb
        for a in range(3):
            out[0, 1 + a] += shift * _SQ3 / 4.0 * U1[a]
            out[1 + a, 0] += shift * _SQ3 / 4.0 * U1[a]
            for b in range(3):
                out[1 + a, 1 + b] += 0.75 * shift * U2[a, b]


def environment_sums(n_atoms: int, atom: np.ndarray, direction: np.ndarray, elongation: np.ndarray,
                     dangling_atom: np.ndarray, dangling_dir: np.ndarray) -> np.ndarray:
    """Per-atom sums (n_atoms, 38) over bonds for the on-site strain and passivation terms.

    ``atom``/``direction``/``elongation``: host–host bonds (atom i, unit vector, (d − d0)/d0).
    ``dangling_atom``/``dangling_dir``: dangling bonds (unstrained virtual bonds; also used by the
    sp3-hybrid shift).  Layout: ``h``, ``A1`` (3), ``A2`` (3×3), ``E1`` (3), ``E2`` (3×3), ``n_db``,
    ``U1`` (3), ``U2`` (3×3) — see :func:`onsite_block_into`.
    """
    env = np.zeros((n_atoms, ENV_SIZE))
    eye = np.eye(3) / 3.0

    def add(col, idx, w):
        for k in range(w.shape[1]):
            env[:, col + k] += np.bincount(idx, weights=w[:, k], minlength=n_atoms)

    c, e = np.asarray(direction, float), np.asarray(elongation, float)
    u = np.asarray(dangling_dir, float).reshape(-1, 3)
    cc = (c[:, :, None] * c[:, None, :] - eye).reshape(-1, 9)
    uu = (u[:, :, None] * u[:, None, :]).reshape(-1, 9)
    allc_idx = np.concatenate([atom, dangling_atom]).astype(np.int64)
    allc = np.concatenate([c, u])
    allcc = np.concatenate([cc, uu - eye.reshape(1, 9)])
    add(0, atom, 0.75 * e[:, None])
    add(1, allc_idx, allc)
    add(4, allc_idx, allcc)
    add(13, atom, e[:, None] * c)
    add(16, atom, e[:, None] * cc)
    add(25, dangling_atom, np.ones((len(u), 1)))
    add(26, dangling_atom, u)
    add(29, dangling_atom, uu)
    return env


@numba.njit(parallel=True, cache=True)
def _onsite_blocks(species, onsite, alpha, beta, env, strain, shift, out):
    for i in numba.prange(species.shape[0]):
        k = species[i]
        onsite_block_into(onsite[k], alpha[k], beta[k], env[i], strain, shift, out[i])


def onsite_blocks(species: np.ndarray, params, env: np.ndarray, strain: bool = True,
                  shift_eV: float = 0.0) -> np.ndarray:
    """On-site blocks (N, 10, 10) eV of host atoms with species indices ``species`` (0 Si, 1 Ge)."""
    out = np.empty((len(species), N_ORB, N_ORB))
    if len(species):
        _onsite_blocks(np.asarray(species, np.int64), params.onsite, params.alpha, params.beta,
                       np.ascontiguousarray(env, np.float64), bool(strain), float(shift_eV), out)
    return out


def spin_orbit_matrix() -> np.ndarray:
    """``L·σ`` on the p shell (6, 6) complex, index ``2a + s``; eigenvalues +1 (×4) and −2 (×2)."""
    eps = np.zeros((3, 3, 3))
    eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1.0
    eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1.0
    sigma = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], complex)
    M = np.zeros((6, 6), complex)
    for k in range(3):
        M += np.kron(-1j * eps[k], sigma[k])
    return M
