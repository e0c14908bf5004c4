"""LAMMPS data file (``atom_style atomic``, Å) of the atomic model, written fast.

Rows: id type x y z; types numbered by increasing atomic number, with a ``Masses`` section and the
element symbols in the title line; orthogonal box = the model cell (non-periodic directions are
widened to hold every atom, periodic ones wrap the atoms into the box).  Whole chunks of rows are
formatted with one ``%`` operation (about 5x faster than ``ase.io.write`` for millions of atoms); the
file is read back by ``ase.io.read(format="lammps-data")`` in the tests.
"""

from __future__ import annotations

import os

import numpy as np

_CHUNK = 200_000


def _symbols(numbers: np.ndarray) -> np.ndarray:
    from ase.data import chemical_symbols

    return np.array(chemical_symbols, dtype=object)[np.asarray(numbers, int)]


def _write_rows(fh, fmt: str, columns: list[np.ndarray]) -> None:
    n = len(columns[0]) if columns else 0
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        obj = np.empty((e - s, len(columns)), dtype=object)
        for k, c in enumerate(columns):
            obj[:, k] = c[s:e]
        fh.write((fmt * (e - s)) % tuple(obj.ravel().tolist()))


def write_lammps_data(path: str | os.PathLike, atoms, title: str = "temtwin atomic model") -> None:
    """LAMMPS data file (atomic style, Å) of ``atoms`` (ase.Atoms, orthogonal cell)."""
    from ase.data import atomic_masses, chemical_symbols

    pos = atoms.get_positions()
    Z = atoms.get_atomic_numbers()
    cell = np.asarray(atoms.cell[:], float)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-9:
        raise ValueError("write_lammps_data needs an orthogonal cell")
    species = np.unique(Z) if len(Z) else np.array([14])
    types = np.searchsorted(species, Z) + 1
    lo = np.zeros(3)
    hi = np.diag(cell).copy()
    for k in range(3):
        if not atoms.pbc[k] and len(pos):
            lo[k] = min(0.0, float(pos[:, k].min()) - 0.5)
            hi[k] = max(hi[k], float(pos[:, k].max()) + 0.5)
        if hi[k] <= lo[k]:
            hi[k] = lo[k] + 1.0
    if len(pos):
        p = pos.copy()
        for k in range(3):
            if atoms.pbc[k]:
                p[:, k] = lo[k] + np.mod(p[:, k] - lo[k], hi[k] - lo[k])
    else:
        p = pos
    with open(path, "w") as fh:
        fh.write(f"{title} (units metal: Angstrom; types: "
                 + " ".join(f"{i + 1}={chemical_symbols[z]}" for i, z in enumerate(species)) + ")\n\n")
        fh.write(f"{len(Z)} atoms\n{len(species)} atom types\n\n")
        for k, ax in enumerate("xyz"):
            fh.write(f"{lo[k]:.6f} {hi[k]:.6f} {ax}lo {ax}hi\n")
        fh.write("\nMasses\n\n")
        for i, z in enumerate(species):
            fh.write(f"{i + 1} {atomic_masses[z]:.4f}  # {chemical_symbols[z]}\n")
        fh.write("\nAtoms  # atomic\n\n")
        _write_rows(fh, "%d %d %.6f %.6f %.6f\n",
                    [np.arange(1, len(Z) + 1), types, p[:, 0], p[:, 1], p[:, 2]])
