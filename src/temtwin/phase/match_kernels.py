"""Compiled kernels of the orientation search (:mod:`temtwin.phase.matching`).

* :func:`match_pairs`: measured seed-spot pairs against the library's pairs of low-order reflections
  (the numpy form materialises every (measured pair, library pair) combination in range of |P|);
* :func:`nearest_lattice_points`: nearest zone-lattice point of every spot under every hypothesis
  (the numpy form builds (hypotheses x spots x 4 corners x 2) temporaries).

Both do the same arithmetic as the numpy form in one pass, parallel where the work is large.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(parallel=True, cache=True)
def nearest_lattice_points(u, p, basis, binv, kind, weight, NP, absent):  # pragma: no cover - compiled
    """For pattern coordinates ``u`` (H, N) complex of hypotheses with patterns ``p`` (H,):

    the nearest of the four lattice points around u (corners of its cell in the basis of pattern p),
    ties to the first corner in the order (0, 0), (1, 0), (0, 1), (1, 1).  Returns
    ``n`` (H, N, 2) int64 lattice indices, ``G`` (H, N) complex point, ``knd`` (H, N) int8 kind and
    ``wt`` (H, N) float64 weight from the pattern grids (``absent`` / 0 outside the grid).
    """
    H, N = u.shape
    S = 2 * NP + 1
    n = np.empty((H, N, 2), np.int64)
    G = np.empty((H, N), np.complex128)
    knd = np.empty((H, N), np.int8)
    wt = np.empty((H, N), np.float64)
    for h in nb.prange(H):
        q = p[h]
        b00, b01, b10, b11 = basis[q, 0, 0], basis[q, 0, 1], basis[q, 1, 0], basis[q, 1, 1]
        i00, i01, i10, i11 = binv[q, 0, 0], binv[q, 0, 1], binv[q, 1, 0], binv[q, 1, 1]
        for k in range(N):
            x, y = u[h, k].real, u[h, k].imag
            f0 = np.floor(x * i00 + y * i10)
            f1 = np.floor(x * i01 + y * i11)
            best = np.inf
            bn0 = 0
            bn1 = 0
            for c in range(4):
                c0 = f0 + (c & 1)
                c1 = f1 + (c >> 1)
                gx = c0 * b00 + c1 * b10
                gy = c0 * b01 + c1 * b11
                d = (gx - x) ** 2 + (gy - y) ** 2
                if d < best:
                    best = d
                    bn0 = int(c0)
                    bn1 = int(c1)
            n[h, k, 0] = bn0
            n[h, k, 1] = bn1
            G[h, k] = complex(bn0 * b00 + bn1 * b10, bn0 * b01 + bn1 * b11)
            i = bn0 + NP
            j = bn1 + NP
            if 0 <= i < S and 0 <= j < S:
                knd[h, k] = kind[q, i, j]
                wt[h, k] = weight[q, i, j]
            else:
                knd[h, k] = absent
                wt[h, k] = 0.0
    return n, G, knd, wt


@nb.njit(cache=True)
def match_pairs(a, b, lo, hi, lib_P, lib_Q, lib_p, d_tol, max_scale_error, angle_tol_rad):  # pragma: no cover
    """Library pairs (P, Q) (rows lo[m]..hi[m]-1 for measured pair m = (a[m], b[m]), complex nm^-1)
    that match: |a|/|P| and |b|/|Q| agree within ``d_tol`` (relative), their geometric mean s is within
    ``max_scale_error`` of 1, and the signed angles a -> b and P -> Q agree within ``angle_tol_rad``.

    Returns (pattern index, z) of every match, z = (a P* + b Q*) / (|P|^2 + |Q|^2) the least-squares
    complex factor (scale and rotation) that maps (P, Q) onto (a, b).
    """
    M = len(a)
    cap = 0
    for m in range(M):
        cap += hi[m] - lo[m]
    out_p = np.empty(cap, np.int64)
    out_z = np.empty(cap, np.complex128)
    k = 0
    for m in range(M):
        A = a[m]
        B = b[m]
        la = abs(A)
        lb = abs(B)
        rab = B / A
        for r in range(lo[m], hi[m]):
            P = lib_P[r]
            Q = lib_Q[r]
            sa = la / abs(P)
            sb = lb / abs(Q)
            if abs(sa / sb - 1.0) > d_tol:
                continue
            if abs(np.sqrt(sa * sb) - 1.0) > max_scale_error:
                continue
            d = rab / (Q / P)
            if abs(np.arctan2(d.imag, d.real)) > angle_tol_rad:
                continue
            out_p[k] = lib_p[r]
            out_z[k] = (A * P.conjugate() + B * Q.conjugate()) / (abs(P) ** 2 + abs(Q) ** 2)
            k += 1
    return out_p[:k], out_z[:k]
