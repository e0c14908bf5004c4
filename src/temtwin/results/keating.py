"""``keating.h5``, written by rule ``keating`` (beside it ``relaxed.extxyz``, Å, :mod:`temtwin.twin.extxyz`):
Keating valence-force-field forces of the as-built model and its relaxation.

Per-atom arrays in the order of model.h5; lengths nm unless stated, forces eV/Å.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class Keating(TreeResult):
    """``keating.h5`` (see the layout)."""

    FILE: ClassVar[str] = "keating.h5"
    RULE: ClassVar[str] = "keating"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason", "attr", "bool, str", "", "not applicable for species without parameters"),
        Entry("@energy_eV, @relaxed_energy_eV", "attr", "float", "eV", "total elastic energy before/after"),
        Entry("@relax_converged, @relax_steps, @relax_fmax_eV_per_A, @relax_method", "attr", "", "",
              "relaxation record"),
        Entry("@max_bond_A", "attr", "float", "A", "bond cut-off of the neighbour list"),
        Entry("@growth_direction, @parameters", "attr", "float (3,), str (JSON)", "", "growth axis; parameters"),
        Entry("/forces, /relaxed_forces", "dataset", "float64 (N, 3)", "eV/A", "force per atom (as built, relaxed)"),
        Entry("/force_magnitude", "dataset", "float64 (N,)", "eV/A", "|force| per atom (as built)"),
        Entry("/energy_per_atom, /relaxed_energy_per_atom", "dataset", "float64 (N,)", "eV", "energy per atom"),
        Entry("/coordination", "dataset", "int8 (N,)", "1", "number of bonds"),
        Entry("/fixed", "dataset", "bool (N,)", "1", "atoms held fixed in the relaxation"),
        Entry("/relax_displacement", "dataset", "float64 (N, 3)", "nm", "relaxed − as-built position"),
        Entry("/force_map, /relax_map", "dataset", "float64 (rows, cols)", "eV/A, nm",
              "mean |force| / relax displacement per x-y bin (attrs `origin_nm`, `pixel_size_nm`)"),
        Entry("/profile/{position_nm, mean_force, max_force, n_atoms}", "dataset", "float64 (n,)", "nm, eV/A, 1",
              "profile along the growth direction (group attr `bin_nm`)"),
        Entry("/regions", "table", "(n,) per column", "", "`label`, `n_atoms`, `mean_force`, `rms_force`, "
              "`max_force` (eV/A), `energy_per_atom` (eV), `mean_relax_displacement` (nm)"),
        Entry("/bonds", "table", "(n,) per column", "", "`pair`, `n_bonds`, `ideal_A`, `as_built_A`, "
              "`relaxed_A` (A)"),
    )

    @property
    def max_bond_A(self) -> float | None:
        v = self.group_attrs().get("max_bond_A")
        return None if v is None else float(v)
