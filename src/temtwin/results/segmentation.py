"""``segmentation.h5``, written by rule ``segment``: the region label map, the region table and contours.

Pixel (i, j) is the image point (x, y) = (j·px, i·py) nm; rows = y (down). Region labels are 1..n; 0 is
unassigned. Contours are closed polygons [x, y] in nm (first point not repeated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

import h5py
import numpy as np

from ..io.h5 import read_table, write_array, write_table
from .base import Entry, Result, applicability, attr, content_attrs, open_result


@dataclass
class Segmentation(Result):
    """The segmentation of one image.

    labels: int32 (rows, cols), 0 = unassigned; table: region table columns (``label``, ``area_nm2``,
    ``centroid_nm`` (n, 2) [x, y] nm, ``bbox_px`` (n, 4) [row0, col0, row1, col1), ``mean_intensity``,
    ``touches_border``); contours: label -> (m, 2) [x, y] nm; holes: label -> list of (m, 2) polygons;
    attrs: method attributes (``method``, ``source``, ...); intensity_units: units of ``mean_intensity``.
    """

    FILE: ClassVar[str] = "segmentation.h5"
    RULE: ClassVar[str] = "segment"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("/labels", "dataset", "int32 (rows, cols)", "label", "region label per pixel, 0 = unassigned"),
        Entry("/regions", "table", "(n,) per column", "", "region table: `label`, `area_nm2` (nm^2), "
              "`centroid_nm` (n, 2) [x, y] nm, `bbox_px` (n, 4) [row0, col0, row1, col1) px, "
              "`mean_intensity` (image units), `touches_border` (1)"),
        Entry("/contours/<label>", "dataset", "float64 (m, 2)", "nm", "closed outer polygon [x, y] of the "
              "region's largest part"),
        Entry("/holes/<label>/<k>", "dataset", "float64 (m, 2)", "nm", "polygons of the region's holes"),
        Entry("@method", "attr", "str", "", "`canny`, `layers`, `sam`, `override`, ..."),
        Entry("@source", "attr", "str", "", "`automatic` or `override`"),
    )

    labels: np.ndarray | None = None
    table: dict[str, np.ndarray] = field(default_factory=dict)
    contours: dict[int, np.ndarray] = field(default_factory=dict)
    holes: dict[int, list[np.ndarray]] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    intensity_units: str = "a.u."

    @property
    def region_labels(self) -> np.ndarray:
        """The labels of the regions in the table (int)."""
        return np.asarray(self.table.get("label", np.unique(self.labels[self.labels > 0])
                                         if self.labels is not None else []), int)

    @classmethod
    def read(cls, path: str | os.PathLike, labels_only: bool = False) -> "Segmentation":
        """Read ``path``; ``labels_only`` skips the table and contours (for large images)."""
        with open_result(path, cls) as f:
            ok, reason = applicability(f)
            if not ok:
                return cls.not_applicable(reason)
            if "labels" not in f:
                from ..errors import UserError
                raise UserError("segmentation result has no /labels; delete it and rerun the `segment` rule",
                                path)
            out = cls(labels=np.asarray(f["labels"][()], np.int32),
                      attrs=content_attrs(f))
            if labels_only:
                return out
            if "regions" in f:
                out.table = read_table(f["regions"])
                if "mean_intensity" in f["regions"]:
                    out.intensity_units = str(attr(f["regions"]["mean_intensity"], "units", "a.u."))
            if "contours" in f:
                out.contours = {int(k): np.asarray(v[()], float) for k, v in f["contours"].items()}
            if "holes" in f:
                out.holes = {int(k): [np.asarray(g[str(i)][()], float) for i in range(len(g))]
                             for k, g in f["holes"].items()}
            return out

    @classmethod
    def read_labels(cls, path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
        """``/labels`` of ``path`` (int32); with ``shape``, a UserError naming the file when the label map
        does not match the image's shape."""
        labels = cls.read(path, labels_only=True).labels
        if shape is not None and labels.shape != tuple(shape):
            from ..errors import UserError

            raise UserError(f"label map shape {labels.shape} differs from the image's {tuple(shape)}; rerun the "
                            "`segment` rule (or fix the label override)", path)
        return labels

    def write(self, f: h5py.File) -> None:
        """Write into an open result file (opened with ``ctx.h5``: provenance and atomic rename)."""
        write_array(f, "labels", np.asarray(self.labels, np.int32), "label")
        t = self.table
        units = {"label": "label", "area_nm2": "nm^2", "centroid_nm": "nm", "bbox_px": "px",
                 "mean_intensity": self.intensity_units, "touches_border": "1"}
        write_table(f, "regions", {k: (t[k], units.get(k, "1")) for k in units if k in t})
        g = f.require_group("contours")
        for lab in np.asarray(t.get("label", []), int):
            write_array(g, str(int(lab)), self.contours.get(int(lab), np.zeros((0, 2))), "nm")
        if self.holes:
            h = f.require_group("holes")
            for lab, polys in self.holes.items():
                hg = h.require_group(str(lab))
                for k, p in enumerate(polys):
                    write_array(hg, str(k), p, "nm")
        for k, v in self.attrs.items():
            f.attrs[k] = v
