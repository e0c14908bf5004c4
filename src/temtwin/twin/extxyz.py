"""Extended XYZ export of the atomic model (Å), written fast; readable by ASE and OVITO.

``Properties=species:S:1:pos:R:3:region:I:1:displacement:R:3:source_pixel:R:2`` (displacement in Å,
source pixel [row, col] of the model image), ``Lattice`` = the model cell, ``pbc``, plus scalar info
keys (image, thickness_nm, ...).
"""

from __future__ import annotations

import json
import os

import numpy as np

from .lammps import _symbols, _write_rows


def write_extxyz(path: str | os.PathLike, atoms, info: dict | None = None) -> None:
    """Extended XYZ (Å) with per-atom ``region``, ``displacement`` (Å) and ``source_pixel``."""
    n = len(atoms)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.cell[:], float)
    region = np.asarray(atoms.arrays.get("region", np.zeros(n, np.int32)), int)
    disp = np.asarray(atoms.arrays.get("displacement_nm", np.zeros((n, 3))), float) * 10.0
    src = np.asarray(atoms.arrays.get("source_pixel", np.full((n, 2), -1.0)), float)
    lattice = " ".join(f"{v:.8f}" for v in cell.ravel())
    pbc = " ".join("T" if b else "F" for b in atoms.pbc)
    extra = []
    for k, v in (info or {}).items():
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)):
            extra.append(f"{k}={'T' if v else 'F'}")
        elif isinstance(v, (int, float, np.integer, np.floating)):
            extra.append(f"{k}={v}")
        elif isinstance(v, (list, tuple, np.ndarray)) and np.asarray(v).dtype.kind in "if" and np.ndim(v) == 1:
            extra.append(f'{k}="' + " ".join(str(float(x)) for x in np.ravel(v)) + '"')
        else:
            s = v if isinstance(v, str) else json.dumps(v)
            extra.append(f'{k}="' + s.replace('"', "'") + '"')
    header = (f'Lattice="{lattice}" Properties=species:S:1:pos:R:3:region:I:1:displacement:R:3:'
              f'source_pixel:R:2 pbc="{pbc}" displacement_units=A ' + " ".join(extra))
    with open(path, "w") as fh:
        fh.write(f"{n}\n{header.strip()}\n")
        _write_rows(fh, "%s %.6f %.6f %.6f %d %.6f %.6f %.6f %.2f %.2f\n",
                    [_symbols(atoms.get_atomic_numbers()), pos[:, 0], pos[:, 1], pos[:, 2], region,
                     disp[:, 0], disp[:, 1], disp[:, 2], src[:, 0], src[:, 1]])
