"""``phonons.h5``, written by rule ``phonons``: vibrational local densities of states (kernel polynomial
method on the Keating dynamical matrix) per region, per species and per slab along the growth direction.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class Phonons(TreeResult):
    """``phonons.h5`` (see the layout)."""

    FILE: ClassVar[str] = "phonons.h5"
    RULE: ClassVar[str] = "phonons"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason", "attr", "bool, str", "", "not applicable when Keating is not"),
        Entry("@method, @kernel, @n_moments, @n_vectors, @probe, @operator, @sigma_meV, @lambda_bounds, "
              "@structure, @region_mode, @slab_nm, @growth_direction", "attr", "", "", "KPM settings and record"),
        Entry("/energy_meV", "dataset", "float64 (E,)", "meV", "energy grid"),
        Entry("/regions_ldos", "dataset", "float64 (regions, E)", "1/meV", "LDOS per region (per degree of freedom)"),
        Entry("/regions", "table", "(regions,) per column", "", "`label`, `n_atoms`"),
        Entry("/species/ldos", "dataset", "float64 (species, E)", "1/meV", "LDOS per species (group attr "
              "`species`)"),
        Entry("/slabs/{ldos, position_nm, n_atoms}", "dataset", "(slabs, E) / (slabs,)", "1/meV, nm, 1",
              "LDOS per slab along the growth direction"),
    )
