"""Gauss (Lagrange) reduction of a 2D lattice basis given by integer vectors.

Used for the zero-order Laue zone of a zone axis (reciprocal lattice, :mod:`temtwin.phase.zones`) and
for the projected cell of an atomic model (direct lattice, :mod:`temtwin.twin.fill`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def gauss_reduce(q1: np.ndarray, q2: np.ndarray, to_vector: Callable[[np.ndarray], np.ndarray],
                 max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Reduce the basis (q1, q2) of integer vectors so that their images ``to_vector(q)`` (Cartesian,
    any dimension) are as short and as orthogonal as the lattice allows: |v1| <= |v2| and
    |v1 · v2| <= |v1|² / 2.  The same integer operations are applied to q1, q2, so the pair spans the
    same lattice.  Returns the reduced (q1, q2)."""
    q1, q2 = np.array(q1), np.array(q2)
    for _ in range(max_iter):
        u, v = to_vector(q1), to_vector(q2)
        if u @ u > v @ v:
            q1, q2 = q2, q1
            u, v = v, u
        m = int(np.rint((u @ v) / (u @ u)))
        if m == 0:
            break
        q2 = q2 - m * q1
    return q1, q2
