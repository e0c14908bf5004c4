"""The atomic model as ``ase.Atoms`` (``model.h5`` is read and written by :class:`temtwin.results.model.Model`:
``Model.core(path).to_atoms()``, ``Model.from_atoms(atoms).write(f)``).

HDF5 layout (lengths in nm, per DEVELOPING.md): ``/positions`` (N, 3), ``/numbers`` (N,),
``/region`` (N,), ``/displacement`` (N, 3), ``/source_pixel`` (N, 2) [row, col], ``/cell`` (3, 3),
``/pbc`` (3,); root attrs ``image``, ``thickness_nm``, ``pixel_size_nm``, ``growth_direction``
(image-frame unit vector, optional), ``applicable``.

In memory: ``ase.Atoms`` in Å (ASE convention) with arrays ``region`` (int), ``displacement_nm``
(N, 3) and ``source_pixel`` (N, 2), and ``atoms.info`` holding the root attributes.
Frame: x right, y down (image rows), z along the beam.
"""

from __future__ import annotations

from typing import Any

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
