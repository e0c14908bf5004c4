"""``fem/relax.h5``, written by rule ``fem_relax`` (beside it ``fem/device.vtu``): elastic relaxation of
the FEM geometry, as a device and as a thin lamella, and its fit to the measured GPA strain.

Mesh and per-triangle strains in model axes (x right, y up, z along the beam); ``/image_grid`` maps on
the geometry image's pixels in image axes (rows = y down). Strains are total strains relative to the
reference lattice.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Entry
from ._tree import TreeResult


class FemRelax(TreeResult):
    """``fem/relax.h5`` (see the layout)."""

    FILE: ClassVar[str] = "fem/relax.h5"
    RULE: ClassVar[str] = "fem_relax"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable, @reason", "attr", "bool, str", "", "not applicable without identified phases"),
        Entry("@thickness_nm, @thickness_sigma_nm, @thickness_source, @reference_label", "attr",
              "float, float, str, int", "", "lamella thickness and its σ (nm), where it comes from (simulate_image "
              "or config), reference region"),
        Entry("/mesh/{nodes, triangles, triangle_region}", "dataset", "(n, 2) / (m, 3) / (m,)", "nm / 1 / label",
              "the mesh, model axes (y up)"),
        Entry("/{device,lamella,device_fit,lamella_fit}/strain/{exx,eyy,ezz,eyz,exz,exy}", "dataset",
              "float64 (m,)", "1", "strain per triangle vs the reference lattice, model axes"),
        Entry("/device_fit/strain_sigma/<c>", "dataset", "float64 (m,)", "1", "σ of the fitted strain"),
        Entry("/device/displacement, /lamella/displacement_midplane", "dataset", "float64 (n, 3)", "nm",
              "nodal displacements"),
        Entry("/image_grid/{gpa,device,lamella,device_fit,lamella_fit,device_fit_sigma}/{exx,eyy,exy}", "dataset",
              "float64 (rows, cols)", "1", "strains on the geometry image's pixels, image axes"),
        Entry("/image_grid/device_fit_elastic/{exx,eyy,ezz,exy}", "dataset", "float64 (rows, cols)", "1",
              "elastic part of the fitted device strain"),
        Entry("/image_grid/region", "dataset", "int (rows, cols)", "label", "region per pixel"),
        Entry("/image_grid@pixel_size_nm", "attr", "float (2,)", "nm", "pixel size [x, y] of the image grid"),
        Entry("/regions", "table", "(n,) per column", "", "`label`, `phase`, `reference`, `delta_table`, "
              "`delta_fit`, `delta_sigma`, ..."),
    )
