"""``tb/moments_<chunk>.h5`` (rule ``tb_moments``; summed into ``tb.h5`` by ``tb_ldos``, :mod:`.tb`): electronic local
densities of states of the atomic model (sp3d5s* tight binding, kernel polynomial method).

Chunk files hold the per-vector Chebyshev moments of their random vectors; ``tb_ldos`` sums them in
canonical task order. Energies in eV; positions of the stored structure in nm.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class TbMoments(TreeResult):
    """``tb/moments_<chunk>.h5`` (see the layout)."""

    FILE: ClassVar[str] = "tb/moments_{chunk}.h5"
    RULE: ClassVar[str] = "tb_moments"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason", "attr", "bool, str", "", "not applicable when the model is not"),
        Entry("@sample, @chunk, @n_chunks, @seed, @n_tasks_total, @settings", "attr", "", "", "the chunk's place"),
        Entry("@n_moments, @bounds_eV, @a_eV, @b_eV", "attr", "int, float", "eV", "Chebyshev expansion: "
              "spectral bounds, H~ = (H − b)/a"),
        Entry("@backend, @structure_source, @checkpoints_written", "attr", "str, int", "", "run record"),
        Entry("/moments", "dataset", "float64 (tasks, N)", "1", "per-vector moments <v|T_n(H~)|v>, rows as /tasks"),
        Entry("/tasks", "table", "(tasks,) per column", "", "`family`, `label`, `vector`, `n_spin_orbitals`"),
        Entry("/sums/<family>/<label>", "dataset", "float64 (N,)", "1", "moment sums of this chunk (attr "
              "`n_vectors`)"),
        Entry("/partitions/{region, slab}", "table", "(n,) per column", "", "`label`, `n_atoms`, "
              "`n_spin_orbitals` (slab: `center_nm`, attr `growth_direction`)"),
        Entry("/structure/{positions, numbers, cell, pbc, atom_index}", "dataset", "(M, 3) ...", "nm, 1",
              "the structure used (chunk 0; attrs `image`, `pixel_size_nm`)"),
        Entry("/parameters", "group", "", "", "Hamiltonian options (attrs: table, passivation, strain, "
              "spin_orbit, nnz, n_spin_orbitals, ...)"),
    )
    REQUIRED: ClassVar[tuple[str, ...]] = ("moments",)
