"""``fem/fem.h5`` and ``fem/regions.json``, written by rule ``fem_geometry``: region polygons, the
interfaces and the 2D mesh of the FEM geometry (beside them ``geometry.gds`` and ``mesh.msh``).

Polygons are in the geometry image's frame (x right, y down, nm); the mesh and the GDS are in model axes
(x right, y up, nm).
"""

from __future__ import annotations

import json
import os
from typing import ClassVar

import numpy as np

from ..errors import UserError
from .base import Entry
from ._tree import TreeResult


class FemGeometry(TreeResult):
    """``fem/fem.h5`` (see the layout)."""

    FILE: ClassVar[str] = "fem/fem.h5"
    RULE: ClassVar[str] = "fem_geometry"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@image", "attr", "str", "", "the geometry image"),
        Entry("@simplify_tolerance_nm", "attr", "float", "nm", "polygon simplification tolerance"),
        Entry("/polygons/<label>/outer_<k>", "dataset", "float64 (m, 2)", "nm",
              "outer polygon k of the region [x, y], image frame"),
        Entry("/polygons/<label>/hole_<k>_<j>", "dataset", "float64 (m, 2)", "nm", "hole j of polygon k"),
        Entry("/regions", "table", "(n,) per column", "", "`label`, `phase`, `area_nm2`, `area_label_map_nm2`, "
              "`mesh_area_nm2` (nm^2), `n_vertices`, `n_holes`, `gds_layer`, `gds_datatype`"),
        Entry("/interfaces", "table", "(n,) per column", "", "`a`, `b` (labels; a = -1: outer boundary of "
              "region b), `length_nm` (nm), `mesh_tag`"),
        Entry("/mesh/nodes", "dataset", "float64 (n, 2)", "nm", "mesh nodes, model axes (x right, y up)"),
        Entry("/mesh/triangles", "dataset", "int64 (m, 3)", "1", "node indices per triangle"),
        Entry("/mesh/triangle_region", "dataset", "int32 (m,)", "label", "region label per triangle"),
        Entry("/mesh", "group", "", "", "attrs `mesh_size_nm`, `interface_size_nm`, `refinement_distance_nm`, "
              "`min_quality`, `n_nodes`, `n_elements`"),
    )
    REQUIRED: ClassVar[tuple[str, ...]] = ("mesh/nodes", "mesh/triangles", "mesh/triangle_region")

    @property
    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nodes (n, 2) nm model axes, triangles (m, 3) int64, triangle_region (m,) int64)."""
        return (self.data["mesh/nodes"], self.data["mesh/triangles"].astype(np.int64),
                self.data["mesh/triangle_region"].astype(np.int64))


def read_regions_json(path: str | os.PathLike) -> dict:
    """``fem/regions.json`` (written by ``fem_geometry``, :func:`temtwin.twin.fem.regions_document`): the
    frame, the phases and one record per region; one error line naming the file when unreadable."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise UserError("fem/regions.json is missing; run the `fem_geometry` rule first", p)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read fem/regions.json ({e}); delete it and rerun the `fem_geometry` rule",
                        p) from None
