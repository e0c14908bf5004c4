"""``gpa.h5``, written by rule ``gpa``: strain, rotation and displacement maps by geometric phase analysis.

Maps are (rows, cols) on the image's pixels; strain components in the image axes (x right, y down),
rotation in rad from +x towards +y, displacement [ux, uy] in nm, g vectors [kx, ky] in nm⁻¹.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._tree import TreeResult
from .base import Entry

STRAIN = ("exx", "eyy", "exy")


@dataclass
class Gpa(TreeResult):
    """The GPA of one image (the file's tree; typed views of the parts the other stages read)."""

    FILE: ClassVar[str] = "gpa.h5"
    RULE: ClassVar[str] = "gpa"
    WRITES_FLAG: ClassVar[bool] = True
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable", "attr", "bool", "", "False with `reason` when GPA does not apply (no maps then)"),
        Entry("@reference_label", "attr", "int", "", "the reference region (0 when not applicable)"),
        Entry("@resolution_nm", "attr", "float", "", "mask resolution, nm"),
        Entry("@reference_rule", "attr", "str", "", "how the reference was chosen; also `resolution_rule`, "
              "`g_rule`, `sigma_k_nm-1`, `frame`"),
        Entry("/g_vectors", "dataset", "float64 (2, 2)", "nm^-1", "refined reference g, rows g1, g2 [kx, ky]"),
        Entry("/g_vectors_input", "dataset", "float64 (2, 2)", "nm^-1", "g before refinement"),
        Entry("/mask_centers", "dataset", "float64 (2, 2)", "nm^-1", "centres of the Fourier masks"),
        Entry("/strain/{exx, eyy, exy}", "dataset", "float64 (rows, cols)", "1", "strain vs the reference, image "
              "axes"),
        Entry("/rotation", "dataset", "float64 (rows, cols)", "rad", "lattice rotation from +x towards +y"),
        Entry("/displacement", "dataset", "float64 (2, rows, cols)", "nm", "[ux, uy]"),
        Entry("/amplitude", "dataset", "float64 (2, rows, cols)", "a.u.", "Bragg-filtered amplitudes of g1, g2"),
        Entry("/mask", "dataset", "bool (rows, cols)", "1", "valid pixels"),
        Entry("/reference", "dataset", "bool (rows, cols)", "1", "reference-region pixels"),
        Entry("/strain_sigma/{exx, eyy, exy}", "dataset", "float64 (rows, cols)", "1", "standard deviations "
              "propagated from the image noise"),
        Entry("/rotation_sigma", "dataset", "float64 (rows, cols)", "rad", "standard deviation of the rotation"),
        Entry("/invalid_reason", "dataset", "uint8 (rows, cols)", "1", "0 valid, 1 low amplitude, 2 outside a "
              "crystal showing the g reflections, 3 within the mask resolution of an interface; strain, "
              "rotation and σ maps are NaN wherever it is not 0, the displacement only for 1 and 2"),
        Entry("/separate_g/<label>", "dataset", "float64 (2, 2)", "nm^-1", "own g vectors of regions measured "
              "without a shared pair"),
        Entry("/lattice/{d_spacing, a_from_g}", "dataset", "float64 (2, rows, cols)", "nm", "local spacing of the "
              "g1, g2 planes; lattice parameter from g"),
        Entry("/lattice/g_relaxed", "dataset", "float64", "nm^-1", "each region's relaxed g"),
        Entry("/strain_relaxed/{exx, eyy, exy}", "dataset", "float64 (rows, cols)", "1", "strain relative to "
              "each region's own relaxed lattice"),
        Entry("/strain_frame/*", "dataset", "float64 (rows, cols)", "1", "strain in the configured tensor frame"),
        Entry("/regions", "table", "(n,) per column", "", "per-region mean, median, std of every component, "
              "`*_se` standard error of the mean, `valid_fraction` (NaN with too few valid pixels)"),
    )

    @property
    def reference_label(self) -> int | None:
        try:
            v = self.group_attrs().get("reference_label")
            return int(v) if v is not None and str(v) != "" else None
        except (TypeError, ValueError):
            return None

    @property
    def resolution_nm(self) -> float:
        return float(self.group_attrs().get("resolution_nm", 0) or 0)

    @property
    def g_vectors(self) -> np.ndarray | None:
        v = self.get("g_vectors")
        return None if v is None else np.asarray(v, float)

    @property
    def displacement(self) -> np.ndarray | None:
        v = self.get("displacement")
        return None if v is None else np.asarray(v, float)

    @property
    def amplitude(self) -> np.ndarray | None:
        return self.get("amplitude")

    @property
    def mask(self) -> np.ndarray | None:
        v = self.get("mask")
        return None if v is None else np.asarray(v, bool)

    @property
    def rotation(self) -> np.ndarray | None:
        return self.get("rotation")

    @property
    def g_hkl(self) -> np.ndarray | None:
        """Miller indices (2, 3) of g1, g2 as GPA indexed them (``/lattice`` attr ``hkl``), None when absent."""
        v = self.group_attrs("lattice").get("hkl")
        return None if v is None else np.asarray(v, int).reshape(2, 3)

    @property
    def g_phase(self) -> str:
        """The phase the hkl refer to (``/lattice`` attr ``reference_phase``; "" when absent)."""
        return str(self.group_attrs("lattice").get("reference_phase", "") or "")

    @property
    def strain(self) -> dict[str, np.ndarray]:
        """The strain components present (``exx``, ``eyy``, ``exy``), as stored."""
        return {k: self.data[f"strain/{k}"] for k in STRAIN if f"strain/{k}" in self.data}

    @property
    def strain_sigma(self) -> dict[str, np.ndarray]:
        return {k: self.data[f"strain_sigma/{k}"] for k in STRAIN if f"strain_sigma/{k}" in self.data}
