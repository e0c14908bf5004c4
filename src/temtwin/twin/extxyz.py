"""The one extended-XYZ dialect of temtwin (Å), written fast; readable by ASE and OVITO.

Used for ``model.extxyz`` (atomic_model) and ``relaxed.extxyz`` (keating).
``Properties=species:S:1:pos:R:3:region:I:1:displacement:R:3:source_pixel:R:2[:asbuilt_force:R:3][:forces:R:3]``:
positions and ``displacement`` (from the ideal crystal, measured) in Å, source pixel [row, col] of the model
image, forces in eV/Å (ASE reads ``forces`` and the ``energy`` info key, eV, as a calculator result);
``Lattice`` = the model cell, ``pbc``, ``displacement_units=A``, plus scalar info keys (image, thickness_nm, ...).
"""

from __future__ import annotations

import json
import os

import numpy as np

from .lammps import _symbols, _write_rows


def write_extxyz(path: str | os.PathLike, atoms, info: dict | None = None, *, forces=None,
                 energy: float | None = None) -> None:
    """Extended XYZ (Å) with per-atom ``region``, ``displacement`` (Å), ``source_pixel``, optional forces.

    ``atoms.arrays["displacement_nm"]`` (nm) is written as ``displacement`` in Å; an
    ``atoms.arrays["asbuilt_force"]`` (eV/Å) is written when present; ``forces`` (n, 3) eV/Å and
    ``energy`` (eV) are written as ASE's calculator results.
    """
    n = len(atoms)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.cell[:], float)
    region = np.asarray(atoms.arrays.get("region", np.zeros(n, np.int32)), int)
    disp = np.asarray(atoms.arrays.get("displacement_nm", np.zeros((n, 3))), float) * 10.0
    src = np.asarray(atoms.arrays.get("source_pixel", np.full((n, 2), -1.0)), float)
    props = "species:S:1:pos:R:3:region:I:1:displacement:R:3:source_pixel:R:2"
    fmt = "%s %.8f %.8f %.8f %d %.6f %.6f %.6f %.2f %.2f"
    cols = [_symbols(atoms.get_atomic_numbers()), pos[:, 0], pos[:, 1], pos[:, 2], region,
            disp[:, 0], disp[:, 1], disp[:, 2], src[:, 0], src[:, 1]]
    for name, arr in (("asbuilt_force", atoms.arrays.get("asbuilt_force")), ("forces", forces)):
        if arr is not None:
            arr = np.asarray(arr, float).reshape(n, 3)
            props += f":{name}:R:3"
            fmt += " %.8g %.8g %.8g"
            cols += [arr[:, 0], arr[:, 1], arr[:, 2]]
    info = dict(info or {})
    if energy is not None:
        info["energy"] = float(energy)
    lattice = " ".join(f"{v:.8f}" for v in cell.ravel())
    pbc = " ".join("T" if b else "F" for b in atoms.pbc)
    extra = []
    for k, v in info.items():
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
    header = f'Lattice="{lattice}" Properties={props} pbc="{pbc}" displacement_units=A ' + " ".join(extra)
    with open(path, "w") as fh:
        fh.write(f"{n}\n{header.strip()}\n")
        _write_rows(fh, fmt + "\n", cols)
