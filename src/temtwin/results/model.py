"""``model.h5``, written by rule ``atomic_model`` (beside it ``model.extxyz`` and ``model.lmp`` in Å): the 3D
atomic model of one image of the sample.

Positions in nm in the image frame: x right, y down (image rows), z along the beam. In memory
:meth:`Model.to_atoms` gives ``ase.Atoms`` in Å (ASE convention) with arrays ``region``,
``displacement_nm`` and ``source_pixel`` and ``atoms.info`` = the file's root attributes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from .base import Entry, open_result
from ._tree import TreeResult

#: the per-atom core of the model (read by the physics stages)
CORE = ("positions", "numbers", "region", "displacement", "source_pixel", "cell", "pbc")


class Model(TreeResult):
    """``model.h5`` (see the layout). ``Model.read(path, only=("positions",))`` reads only what is named."""

    FILE: ClassVar[str] = "model.h5"
    RULE: ClassVar[str] = "atomic_model"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("/positions", "dataset", "float64 (N, 3)", "nm", "atom positions, image frame (z along the beam)"),
        Entry("/numbers", "dataset", "int16 (N,)", "1", "atomic numbers Z"),
        Entry("/host_numbers", "dataset", "int16 (N,)", "1", "Z of the host lattice site (before composition)"),
        Entry("/region", "dataset", "int32 (N,)", "label", "region label per atom"),
        Entry("/displacement", "dataset", "float64 (N, 3)", "nm", "displacement applied from the GPA field"),
        Entry("/source_pixel", "dataset", "float64 (N, 2)", "px", "image pixel [row, col] of the atom (-1 none)"),
        Entry("/cell", "dataset", "float64 (3, 3)", "nm", "model cell (rows = cell vectors)"),
        Entry("/pbc", "dataset", "bool (3,)", "1", "periodic boundary conditions"),
        Entry("/cells/<label>", "dataset", "float64 (3, 3)", "nm", "columns = lattice vectors a, b, c of the "
              "region in the image frame; attrs `phase`, `kind`"),
        Entry("/regions", "table", "(n,) per column", "", "`label`, `phase`, `kind`, `n_atoms`, `ideal_nn_nm` "
              "(nm), `origin_nm` (n, 3) nm"),
        Entry("/quality/nearest_neighbour", "dataset", "float32 (N,)", "nm", "nearest-neighbour distance"),
        Entry("/quality/{flagged_fraction_map, max_deviation_map}", "dataset", "float64 (rows, cols)", "1",
              "quality screen on a grid (attrs `bin_nm`, `extent_nm`)"),
        Entry("/composition@info", "attr", "str (JSON)", "", "composition assignment record"),
        Entry("@image, @sample, @thickness_nm, @pixel_size_nm, @reference_label", "attr", "str, float", "",
              "source image, model thickness (nm), image pixel size (nm), reference region"),
        Entry("@growth_direction", "attr", "float (3,)", "1", "image-frame unit vector (optional)"),
        Entry("@registration, @virtual_cell", "attr", "str (JSON)", "", "lattice registration records"),
    )
    REQUIRED: ClassVar[tuple[str, ...]] = CORE

    @classmethod
    def core(cls, path: str | os.PathLike) -> "Model":
        """Only the per-atom core (positions, numbers, region, displacement, source_pixel, cell, pbc)."""
        return cls.read(path, only=CORE)

    @classmethod
    @contextmanager
    def slabs(cls, path: str | os.PathLike) -> Iterator[Any]:
        """``model.h5`` opened for reading by slabs, nothing loaded: ``f["positions"][a0:a1]`` (nm),
        ``f["numbers"][a0:a1]``, ``f["cell"]``, ``f["pbc"]`` as in the layout.  For jobs that hold one domain
        of a model bigger than their memory (tight binding under MPI); the missing/corrupt-file errors are
        those of every result file."""
        with open_result(path, cls) as f:
            yield f

    @property
    def n_atoms(self) -> int:
        return 0 if not self.applicable or "positions" not in self.data else len(self.data["positions"])

    @property
    def info(self) -> dict[str, Any]:
        """The root attributes as stored (provenance included; ``applicable``, ``reason``)."""
        return dict(self.file_attrs)

    def to_atoms(self):
        """``ase.Atoms`` in Å; an empty Atoms carrying ``info`` when the model is not applicable."""
        from ..twin.model_io import atoms_from_arrays

        if not self.applicable or "positions" not in self.data:
            return atoms_from_arrays(np.zeros((0, 3)), np.zeros(0, int), info=self.info)
        d = self.data
        return atoms_from_arrays(d["positions"], d["numbers"], d["cell"], tuple(bool(b) for b in d["pbc"]),
                                 d["region"], d["displacement"], d["source_pixel"], self.info)

    @classmethod
    def from_atoms(cls, atoms) -> "Model":
        """The per-atom core of ``atoms`` (Å) in the model.h5 layout (nm); root attrs from ``atoms.info``."""
        n = len(atoms)
        m = cls()
        m.put("positions", atoms.get_positions() / 10.0, "nm")
        m.put("numbers", atoms.get_atomic_numbers().astype(np.int16), "1")
        m.put("region", np.asarray(atoms.arrays.get("region", np.zeros(n, np.int32)), np.int32), "label")
        m.put("displacement", atoms.arrays.get("displacement_nm", np.zeros((n, 3))), "nm")
        m.put("source_pixel", atoms.arrays.get("source_pixel", np.full((n, 2), -1.0)), "px")
        m.put("cell", np.asarray(atoms.cell[:]) / 10.0, "nm")
        m.put("pbc", np.asarray(atoms.pbc, bool), "1")
        m.attrs[""] = {k: v for k, v in atoms.info.items() if v is not None}
        return m
