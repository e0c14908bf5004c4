"""``tb/moments_<chunk>.h5`` (rule ``tb_moments``) and ``tb.h5`` (rule ``tb_ldos``): electronic local
densities of states of the atomic model (sp3d5s* tight binding, kernel polynomial method).

Chunk files hold the per-vector Chebyshev moments of their random vectors; ``tb_ldos`` sums them in
canonical task order. Energies in eV; positions of the stored structure in nm.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class Tb(TreeResult):
    """``tb.h5`` (see the layout)."""

    FILE: ClassVar[str] = "tb.h5"
    RULE: ClassVar[str] = "tb_ldos"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason", "attr", "bool, str", "", "not applicable when the model is not"),
        Entry("@n_moments, @bounds_eV, @a_eV, @b_eV, @broadening_eV, @n_random, @kernel, @band_edge_estimator",
              "attr", "", "", "KPM record"),
        Entry("/energies", "dataset", "float64 (E,)", "eV", "energy grid"),
        Entry("/dos_total", "dataset", "float64 (E,)", "states/eV/atom", "total density of states"),
        Entry("/regions/<label>/{moments, ldos}", "dataset", "(N,) / (E,)", "1, states/eV/atom",
              "region moments (attr `n_vectors`) and LDOS; group attrs band edges (eV), `n_atoms`"),
        Entry("/slabs/<i>/{moments, ldos}", "dataset", "(N,) / (E,)", "1, states/eV/atom",
              "the same per slab along the growth direction"),
        Entry("/band_edges_region, /band_edges_slab", "table", "(n,) per column", "", "`label`, `center_nm` (nm), "
              "`n_atoms`, `valence_band_edge_eV`, `conduction_band_edge_eV` (eV)"),
        Entry("/parameters", "group", "", "", "Hamiltonian options"),
        Entry("/states", "group", "", "", "optional eigenstates mapped on the image"),
    )
