"""Generated test cases: a SiGe slab seen along [110] (image x = [1-10]... up to the cell choice, y = [001]).

Used by the tests and ``bench/bench_simulate_image.py``; deterministic from the ``rng`` passed in.
"""

from __future__ import annotations

import numpy as np


def sige110_atoms(extent_nm=(3.0, 3.0), thickness_nm: float = 2.0, ge_fraction: float = 0.3, rng=None,
                  a_nm: float = 0.5543, column_fraction_sd: float = 0.0):
    """``ase.Atoms`` (Å) of a diamond Si(1−x)Ge(x) slab along [110], orthogonal cell = extent × thickness.

    Cell: x = a/√2 period, y = a (the [001] growth direction), z (beam) = a/√2.  With
    ``column_fraction_sd`` > 0 each column gets its own Ge fraction (normal around ``ge_fraction``), so
    the columns' compositions differ as in a real alloy image.
    """
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(0) if rng is None else rng
    a = a_nm * 10.0
    base = bulk("Si", "diamond", a=a, orthorhombic=True)  # cell (a/√2, a/√2, a), x along [110]
    pos = base.get_positions()[:, [1, 2, 0]]
    c = np.diag(base.cell[:])[[1, 2, 0]]
    nx = max(1, int(round(extent_nm[0] * 10 / c[0])))
    ny = max(1, int(round(extent_nm[1] * 10 / c[1])))
    nz = max(1, int(round(thickness_nm * 10 / c[2])))
    g = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1).reshape(-1, 3)
    p = (g[:, None, :] * c[None, None, :] + pos[None, :, :]).reshape(-1, 3)
    cell = np.array([nx, ny, nz]) * c
    # per-column fraction
    key = np.round(p[:, :2] / 0.05).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    frac = np.clip(ge_fraction + column_fraction_sd * rng.standard_normal(inv.max() + 1), 0, 1)
    z = np.where(rng.random(len(p)) < frac[inv], 32, 14)
    return Atoms(numbers=z, positions=p, cell=np.diag(cell), pbc=(True, True, False))
