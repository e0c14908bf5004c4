"""Numba kernels of the Keating valence force field (energy, bond gradients, forces, Hessian blocks).

All kernels work on a padded neighbour table (see :mod:`temtwin.physics.neighbors`):
``nbr`` (N, K) neighbour index or -1, ``vec`` (N, K, 3) bond vectors r_j - r_i (Å), ``rev`` (N, K)
slot of the reverse bond.  Per-slot parameters are looked up from (T, T) tables indexed by the
atom types: ``kb`` = 3 alpha / (16 d0^2) (eV/Å^4), ``d0`` (Å), ``beta`` (eV/Å^2).

Energy (each bond counted from both of its atoms, as in Keating's and the reference's form)::

    E = sum_i sum_s kb_s (r_s.r_s - d_s^2)^2
      + sum_i sum_{s<t} 3 beta_st / (8 d_s d_t) (r_s.r_t + d_s d_t / 3)^2,   beta_st = (beta_s + beta_t)/2

The bond gradient ``g[i, s] = dE_i / d r_s`` of atom i's local energy gives the forces
``F_m = sum_s (g[m, s] - g[nbr[m, s], rev[m, s]])`` without write conflicts (two parallel passes).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def angle_term(vec, nbr, types, d0, beta, i, s, t, ti, tj, dd):  # pragma: no cover - compiled
    """Angle term of bonds s, t of atom i (bond s to type tj, length dd): (present, constant
    3 beta_st / (8 d_s d_t), x = r_s.r_t + d_s d_t / 3); present is False for an empty slot t."""
    m = nbr[i, t]
    if m < 0:
        return False, 0.0, 0.0
    tm = types[m]
    dt = d0[ti, tm]
    beta_st = 0.5 * (beta[ti, tj] + beta[ti, tm])
    x = vec[i, s, 0] * vec[i, t, 0] + vec[i, s, 1] * vec[i, t, 1] + vec[i, s, 2] * vec[i, t, 2] + dd * dt / 3.0
    return True, 3.0 * beta_st / (8.0 * dd * dt), x


@nb.njit(parallel=True, cache=True, fastmath=False)
def energy_gradient(vec, nbr, types, kb, d0, beta):  # pragma: no cover - compiled
    """Per-atom energies (N,) eV and bond gradients g (N, K, 3) eV/Å."""
    n, k = nbr.shape
    e_atom = np.zeros(n)
    g = np.zeros((n, k, 3))
    for i in nb.prange(n):
        ti = types[i]
        e = 0.0
        for s in range(k):
            j = nbr[i, s]
            if j < 0:
                continue
            tj = types[j]
            rx, ry, rz = vec[i, s, 0], vec[i, s, 1], vec[i, s, 2]
            dd = d0[ti, tj]
            diff = rx * rx + ry * ry + rz * rz - dd * dd
            kk = kb[ti, tj]
            e += kk * diff * diff
            c = 4.0 * kk * diff
            g[i, s, 0] += c * rx
            g[i, s, 1] += c * ry
            g[i, s, 2] += c * rz
            for t in range(s + 1, k):
                present, cst, x = angle_term(vec, nbr, types, d0, beta, i, s, t, ti, tj, dd)
                if not present:
                    continue
                e += cst * x * x
                c2 = 2.0 * cst * x
                g[i, s, 0] += c2 * vec[i, t, 0]
                g[i, s, 1] += c2 * vec[i, t, 1]
                g[i, s, 2] += c2 * vec[i, t, 2]
                g[i, t, 0] += c2 * rx
                g[i, t, 1] += c2 * ry
                g[i, t, 2] += c2 * rz
        e_atom[i] = e
    return e_atom, g


@nb.njit(parallel=True, cache=True)
def gather_forces(g, nbr, rev):  # pragma: no cover - compiled
    """Forces (N, 3) eV/Å from bond gradients: F_m = sum_s g[m, s] - g[j_s, rev_s]."""
    n, k = nbr.shape
    f = np.zeros((n, 3))
    for m in nb.prange(n):
        fx = 0.0
        fy = 0.0
        fz = 0.0
        for s in range(k):
            j = nbr[m, s]
            if j < 0:
                continue
            r = rev[m, s]
            fx += g[m, s, 0] - g[j, r, 0]
            fy += g[m, s, 1] - g[j, r, 1]
            fz += g[m, s, 2] - g[j, r, 2]
        f[m, 0] = fx
        f[m, 1] = fy
        f[m, 2] = fz
    return f


@nb.njit(parallel=True, cache=True)
def bond_vectors(pos, cell, nbr, image):  # pragma: no cover - compiled
    """(N, K, 3) bond vectors r_j + image @ cell - r_i (Å); zeros in empty slots."""
    n, k = nbr.shape
    vec = np.zeros((n, k, 3))
    for i in nb.prange(n):
        for s in range(k):
            j = nbr[i, s]
            if j < 0:
                continue
            for a in range(3):
                sh = image[i, s, 0] * cell[0, a] + image[i, s, 1] * cell[1, a] + image[i, s, 2] * cell[2, a]
                vec[i, s, a] = pos[j, a] + sh - pos[i, a]
    return vec


@nb.njit(parallel=True, cache=True)
def local_hessians(vec, nbr, types, kb, d0, beta):  # pragma: no cover - compiled
    """Second derivatives of each atom's local energy w.r.t. its bond vectors.

    Returns ``h`` (N, K, K, 3, 3) eV/Å^2 with ``h[i, s, t] = d^2 E_i / d r_s d r_t`` (zero for
    empty slots).
    """
    n, k = nbr.shape
    h = np.zeros((n, k, k, 3, 3))
    for i in nb.prange(n):
        ti = types[i]
        for s in range(k):
            j = nbr[i, s]
            if j < 0:
                continue
            tj = types[j]
            dd = d0[ti, tj]
            kk = kb[ti, tj]
            rr = vec[i, s, 0] ** 2 + vec[i, s, 1] ** 2 + vec[i, s, 2] ** 2
            diff = rr - dd * dd
            for a in range(3):
                h[i, s, s, a, a] += 4.0 * kk * diff
                for b in range(3):
                    h[i, s, s, a, b] += 8.0 * kk * vec[i, s, a] * vec[i, s, b]
            for t in range(s + 1, k):
                present, cst, x = angle_term(vec, nbr, types, d0, beta, i, s, t, ti, tj, dd)
                if not present:
                    continue
                for a in range(3):
                    for b in range(3):
                        h[i, s, s, a, b] += 2.0 * cst * vec[i, t, a] * vec[i, t, b]
                        h[i, t, t, a, b] += 2.0 * cst * vec[i, s, a] * vec[i, s, b]
                        # d/d r_t,b of 2c x r_t,a ... : H_st[a, b] = 2c (r_t,a r_s,b + x delta_ab)
                        v = 2.0 * cst * vec[i, t, a] * vec[i, s, b]
                        h[i, s, t, a, b] += v
                        h[i, t, s, b, a] += v
                    h[i, s, t, a, a] += 2.0 * cst * x
                    h[i, t, s, a, a] += 2.0 * cst * x
    return h
