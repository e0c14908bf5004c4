"""Reading and writing the atomic model (``model.h5``) as ``ase.Atoms``.

HDF5 layout (lengths in nm, per DEVELOPING.md): ``/positions`` (N, 3), ``/numbers`` (N,),
``/region`` (N,), ``/displacement`` (N, 3), ``/source_pixel`` (N, 2) [row, col], ``/cell`` (3, 3),
``/pbc`` (3,); root attrs ``image``, ``thickness_nm``, ``pixel_size_nm``, ``growth_direction``
(image-frame unit vector, optional), ``applicable``.

In memory: ``ase.Atoms`` in Å (ASE convention) with arrays ``region`` (int), ``displacement_nm``
(N, 3) and ``source_pixel`` (N, 2), and ``atoms.info`` holding the root attributes.
Frame: x right, y down (image rows), z along the beam.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np



def atoms_from_arrays(positions_nm, numbers, cell_nm=None, pbc=(False, False, False), region=None,
                      displacement_nm=None, source_pixel=None, info: dict[str, Any] | None = None):
    """Build an ``ase.Atoms`` (Å) from nm arrays."""
    from ase import Atoms

    n = len(numbers)
    atoms = Atoms(numbers=np.asarray(numbers, int), positions=np.asarray(positions_nm, float) * 10.0,
                  cell=None if cell_nm is None else np.asarray(cell_nm, float) * 10.0, pbc=pbc)
    atoms.set_array("region", np.zeros(n, np.int32) if region is None else np.asarray(region, np.int32))
    atoms.set_array("displacement_nm", np.zeros((n, 3)) if displacement_nm is None
                    else np.asarray(displacement_nm, float))
    atoms.set_array("source_pixel", np.full((n, 2), -1.0) if source_pixel is None
                    else np.asarray(source_pixel, float))
    atoms.info.update(info or {})
    return atoms


def write_model_h5(f: h5py.File, atoms) -> None:
    """Write ``atoms`` (Å) into an open result file in the model.h5 layout (nm), through
    :class:`temtwin.results.model.Model`."""
    from ..results.model import Model

    Model.from_atoms(atoms).write(f)


def read_model(path: str | os.PathLike):
    """Read ``model.h5`` as ``ase.Atoms`` (Å) through :class:`temtwin.results.model.Model` (its per-atom core
    only); ``atoms.info`` holds the root attributes."""
    from ..results.model import Model

    return Model.core(path).to_atoms()
