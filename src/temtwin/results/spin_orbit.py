"""``spin_orbit.h5``, written by rule ``spin_orbit``: the Rashba-type spin-orbit coupling of the quantum
well from the relaxed strain (profile across the well and a map on the well's pixels).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class SpinOrbit(TreeResult):
    """``spin_orbit.h5`` (see the layout)."""

    FILE: ClassVar[str] = "spin_orbit.h5"
    RULE: ClassVar[str] = "spin_orbit"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason, @strain_source", "attr", "bool, str, str", "",
              "applicability and the strain used (`device_fit`, `device`, ...)"),
        Entry("/profile", "table", "(n,) per column", "", "`x_nm` (nm), `column`, `alpha_eV_nm` (eV nm), "
              "`alpha_sigma`, `inv_lso_per_um` (1/um), `inv_lso_sigma`, `mass_m0`, `E0_eV` (eV), "
              "`dexz_dz_per_nm` (1/nm), `alpha_signed_eV_nm` (eV nm, E(up) - E(down) = 2 alpha k, up = J_z > 0 "
              "along growth)"),
        Entry("/map/inv_lso_per_um", "dataset", "float64 (rows, cols)", "1/um",
              "inverse spin-orbit length on the well pixels (NaN elsewhere)"),
    )
