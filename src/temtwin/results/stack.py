"""``stack.h5``, written by rule ``register_stack``: each image's placement in the sample's overview.

Overview frame: x right, y down, nm, origin at the centre of the overview's top-left pixel; transforms map
image pixels (col, row, 1) to overview pixels (col, row).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Entry
from ._tree import TreeResult


class Stack(TreeResult):
    """The registered image stack of one sample (see the layout)."""

    FILE: ClassVar[str] = "stack.h5"
    RULE: ClassVar[str] = "register_stack"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@overview", "attr", "str", "", "name of the overview image (the registration frame)"),
        Entry("@pixel_size_nm", "attr", "float (2,)", "nm", "overview pixel size [x, y]"),
        Entry("@frame, @n_images, @n_accepted", "attr", "str, int", "", "frame description, image counts"),
        Entry("/images/<image>", "group", "", "", "attrs `parent`, `basis` (content / stage / content+stage / "
              "overview), `offset_nm` [x, y], `scale`, `rotation_deg`, `confidence`, `accepted`, `reason`, "
              "`pixel_size_nm`, `attempts`, `link` (JSON), ..."),
        Entry("/images/<image>/transform", "dataset", "float64 (2, 3)", "1",
              "affine image pixel (col, row, 1) -> overview pixel (col, row)"),
        Entry("/images/<image>/footprint", "dataset", "float64 (4, 2)", "1",
              "image outline (outer pixel edges) in overview pixels (col, row)"),
        Entry("/phase_map", "dataset", "int32 (rows, cols)", "label",
              "index into /phase_names per overview pixel (0 = no phase)"),
        Entry("/phase_names", "dataset", "str (n,)", "1", "phase names (index 0 = none)"),
        Entry("/regions/<label>", "group", "", "", "overview region attrs `phase`, `phase_score`, `area_nm2`, "
              "`covered_fraction`, `n_sources`, `sources` (JSON), `strain` (JSON)"),
    )

    @property
    def overview(self) -> str:
        return str(self.group_attrs().get("overview", ""))

    @property
    def images(self) -> dict[str, dict]:
        """image name -> its attributes plus ``transform`` (2, 3) (and ``footprint``) when present."""
        out = {}
        for name in self.children("images"):
            d = dict(self.group_attrs(f"images/{name}"))
            for k in ("transform", "footprint"):
                v = self.get(f"images/{name}/{k}")
                if v is not None:
                    d[k] = np.asarray(v, float)
            out[name] = d
        return out

    def as_dict(self) -> dict:
        """{'overview': name, 'images': {name: attrs + transform}, 'regions': {label: attrs}}."""
        return {"overview": self.overview, "images": self.images, "regions": self.regions}

    @property
    def regions(self) -> dict[str, dict]:
        """overview region label (str) -> its attributes."""
        return {name: dict(self.group_attrs(f"regions/{name}")) for name in self.children("regions")}
