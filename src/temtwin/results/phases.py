"""``phases.h5``, written by rule ``phase_id``: phase, zone axis and orientation of each region.

Zone axes [u, v, w] in the phase's direct lattice; orientation matrices map crystal Cartesian axes to the
image frame (x right, y down, z along the beam); reciprocal coordinates in nm⁻¹.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._tree import TreeResult
from .base import Entry


@dataclass
class PhaseRegion:
    """The phase identification of one region (a view of ``/regions/<label>``).

    attrs: every attribute (``phase``, ``identified``, ``zone_axis``, ``rotation_deg``, ``state``, ...);
    orientation_matrix: (3, 3) or None; candidates, spots, alternatives: tables or None.
    """

    label: int
    attrs: dict
    orientation_matrix: np.ndarray | None
    candidates: dict | None
    spots: dict | None
    alternatives: dict | None

    @property
    def phase(self) -> str:
        return str(self.attrs.get("phase", "") or "")

    @property
    def identified(self) -> bool:
        return bool(self.attrs.get("identified", False))


@dataclass
class Phases(TreeResult):
    """The phases of every region of one image (the file's tree; typed views ``regions``, ``phases``)."""

    FILE: ClassVar[str] = "phases.h5"
    RULE: ClassVar[str] = "phase_id"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@candidates", "attr", "str", "", "JSON list of the candidate phases"),
        Entry("@n_patterns", "attr", "int", "", "zone-axis patterns in the library"),
        Entry("@calibration_scale_factor", "attr", "float", "", "the image's calibration, shared by its regions"),
        Entry("@calibration_uncertainty", "attr", "float", "", "its standard uncertainty"),
        Entry("@calibration_status", "attr", "str", "", "`recovered`, `reference`, `ambiguous` or `assumed`"),
        Entry("@elements", "attr", "str", "", "JSON list of the elements restricting the candidates"),
        Entry("@elements_source", "attr", "str", "", "where they come from"),
        Entry("/regions/<label>", "group", "", "", "attrs `phase` (CIF stem or \"\"), `space_group`, `zone_axis` "
              "[u, v, w], `zone_axis_4` (hexagonal, else empty), `rotation_deg`, `scale_factor`, `score`, "
              "`confidence`, `identified` (bool), `state` (`identified`/`ambiguous`/`not_identified`), "
              "`group_confidence`; with an override `source`, `override`, `automatic_phase`"),
        Entry("/regions/<label>/orientation_matrix", "dataset", "float64 (3, 3)", "1", "crystal -> image axes"),
        Entry("/regions/<label>/candidates", "table", "(n,) per column", "", "`rank`, `phase`, `space_group`, "
              "`zone_u`, `zone_v`, `zone_w`, `rotation_deg`, `scale_factor`, `score`, `confidence`"),
        Entry("/regions/<label>/spots", "table", "(n,) per column", "", "`kx`, `ky` (nm^-1), `h`, `k`, `l`, "
              "`residual_nm-1`"),
        Entry("/regions/<label>/alternatives", "table", "(n,) per column", "", "`phase`, `zone_u/v/w`, "
              "`scale_factor`, `fit`, `confidence`, `lattice_identical`"),
        Entry("/phases/<name>", "group", "", "", "attrs `cif` (CIF text), `space_group`, `lattice_abc_nm`, "
              "`lattice_angles_deg`, `formula`"),
        Entry("/bragg/<label>[_<k>]", "dataset", "float (rows, cols)", "1", "normalised Bragg amplitude of "
              "each identified crystal of the region (`_<k>` for the k-th crystal of one FFT); when attr "
              "`computed_box` [r0, r1, c0, c1] is present, computed only in that box (the region grown by the "
              "filter's reach) and 0 outside"),
        Entry("/bragg/crystal_map", "dataset", "(rows, cols)", "label", "1-based row of `/bragg/crystals` with "
              "the largest normalised amplitude, 0 = none; group attr `sigma_k_nm-1`"),
        Entry("/bragg/crystals", "table", "(n,) per column", "", "`region` (label), `crystal` (1), ..."),
        Entry("/regions/<label>/orientation_matrices", "dataset", "float64 (n, 3, 3)", "1", "orientation of "
              "each candidate shown"),
    )

    #: ``Phases.read(path, only=Phases.CALLS)``: the per-region calls and the phases, without the Bragg maps
    #: (one full-size map per crystal) that no downstream stage reads
    CALLS: ClassVar[tuple[str, ...]] = ("regions", "phases")

    @property
    def regions(self) -> dict[int, PhaseRegion]:
        """label -> :class:`PhaseRegion`, in file order (non-integer group names skipped)."""
        out: dict[int, PhaseRegion] = {}
        for label, p in self.labelled("regions"):

            def tab(t: str, p: str = p) -> dict | None:
                return self.table(f"{p}/{t}") if self.has(f"{p}/{t}") else None

            out[label] = PhaseRegion(label, dict(self.group_attrs(p)), self.get(f"{p}/orientation_matrix"),
                                     tab("candidates"), tab("spots"), tab("alternatives"))
        return out

    @property
    def phases(self) -> dict[str, dict]:
        """phase name -> its attributes (``cif``, ``space_group``, ``lattice_abc_nm``, ...)."""
        return {k: dict(self.group_attrs(f"phases/{k}")) for k in self.children("phases")}
