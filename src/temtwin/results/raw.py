"""``raw.h5``, written by rule ``ingest``: the calibrated micrograph (``image.h5``,
:mod:`temtwin.results.image`, has the same layout plus ``/scan_correction``). Rows = y (down), columns = x (right);
``pixel_size_nm`` = [x, y] nm (non-square pixels kept).
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from dataclasses import dataclass, field
from typing import ClassVar

import h5py
import numpy as np

from ..io.h5 import write_array
from ._tree import TreeResult
from .base import Entry, Result, applicability, attr, content_attrs, open_result

_IMAGE_LAYOUT = (
    Entry("/image", "dataset", "float32 (rows, cols)", "counts or a.u.", "the micrograph"),
    Entry("@pixel_size_nm", "attr", "float64 (2,)", "", "[x, y] nm per pixel"),
    Entry("@sample", "attr", "str", "", "sample name"),
    Entry("@image", "attr", "str", "", "image name"),
    Entry("@source_file", "attr", "str", "", "the micrograph file read"),
    Entry("@source_sha256", "attr", "str", "", "its SHA-256"),
    Entry("@mode", "attr", "str", "", "`TEM`, `STEM` or `unknown`"),
    Entry("@voltage_kV", "attr", "float", "", "accelerating voltage, kV (NaN when unknown)"),
    Entry("@detector", "attr", "str", "", "detector name from the metadata"),
    Entry("@title", "attr", "str", "", "title from the metadata"),
    Entry("@magnification", "attr", "float", "", "nominal magnification (NaN when unknown)"),
    Entry("@n_frames", "attr", "int", "", "frames averaged after alignment"),
    Entry("@elements", "attr", "str", "", "JSON list of the elements the file's metadata lists (optional)"),
    Entry("@intensity_offset", "attr", "float", "", "file value = image / intensity_scale + intensity_offset"),
    Entry("@intensity_scale", "attr", "float", "", "see `intensity_offset`"),
    Entry("@stage_x_um", "attr", "float", "", "stage x of the image centre, µm (NaN when unknown)"),
    Entry("@stage_y_um", "attr", "float", "", "stage y of the image centre, µm (NaN when unknown)"),
    Entry("@scan_rotation_deg", "attr", "float", "", "scan rotation, degrees"),
    Entry("@stage_source", "attr", "str", "", "where the stage values come from (`temtwin.io.stage_metadata`)"),
)

@dataclass
class Raw(Result):
    """The calibrated micrograph of one image.

    data: float32 (rows, cols); units: ``counts`` or ``a.u.``; pixel_size_nm: (x, y) nm; sample, image:
    names; attrs: the other content attributes (acquisition metadata, see LAYOUT); scan_correction: the
    ``/scan_correction`` group as a tree (image.h5 only), else None.
    """

    FILE: ClassVar[str] = "raw.h5"
    RULE: ClassVar[str] = "ingest"
    LAYOUT: ClassVar[tuple[Entry, ...]] = _IMAGE_LAYOUT

    data: np.ndarray | None = None
    units: str = "a.u."
    pixel_size_nm: tuple[float, float] = (1.0, 1.0)
    sample: str = "sample"
    image: str = "image"
    attrs: dict = field(default_factory=dict)
    scan_correction: TreeResult | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)  # type: ignore[union-attr,return-value]

    @classmethod
    def from_micrograph(cls, m) -> "Raw":
        """The result of a :class:`temtwin.io.image.Micrograph` (the attributes ingest writes)."""
        from ..io.stage_metadata import write_stage_attrs

        a: dict = {}
        for k in ("source_file", "source_sha256", "mode", "detector", "title"):
            a[k] = str(m.meta.get(k, ""))
        for k in ("voltage_kV", "magnification"):
            a[k] = float(m.meta.get(k, float("nan")))
        a["n_frames"] = int(m.meta.get("n_frames", 1))
        els = m.meta.get("elements")
        if isinstance(els, str):          # read back from an earlier result file (JSON text)
            els = json.loads(els)
        if els:
            a["elements"] = json.dumps(list(els))   # listed by the file's metadata
        a["intensity_offset"] = float(m.meta.get("intensity_offset", 0.0))
        a["intensity_scale"] = float(m.meta.get("intensity_scale", 1.0))
        write_stage_attrs(SimpleNamespace(attrs=a), m.meta)      # stage_x_um, stage_y_um, ...
        return cls(data=np.asarray(m.data, np.float32), units=str(m.meta.get("units", "a.u.")),
                   pixel_size_nm=(float(m.pixel_size_nm[0]), float(m.pixel_size_nm[1])), sample=m.sample,
                   image=m.name, attrs=a)

    def micrograph(self):
        """The image as a :class:`temtwin.io.image.Micrograph` (meta = the content attributes)."""
        from ..io.image import Micrograph

        return Micrograph(data=self.data, pixel_size_nm=self.pixel_size_nm, name=self.image, sample=self.sample,
                          meta=dict(self.attrs))

    @classmethod
    def read(cls, path: str | os.PathLike, header_only: bool = False) -> "Raw":
        """Read ``path``; ``header_only`` leaves ``data`` None (shape in ``attrs['shape']``)."""
        from ..errors import UserError

        with open_result(path, cls) as f:
            ok, reason = applicability(f)
            if not ok:
                return cls.not_applicable(reason)
            if "image" not in f or "pixel_size_nm" not in f.attrs:
                raise UserError(f"{cls.FILE} has no /image or pixel_size_nm; delete it and rerun the "
                                f"`{cls.RULE}` rule", path)
            a = content_attrs(f)
            px = np.ravel(np.asarray(a.pop("pixel_size_nm"), float))
            out = cls(units=str(attr(f["image"], "units", "a.u.")), pixel_size_nm=(float(px[0]), float(px[-1])),
                      sample=str(a.pop("sample", "sample")), image=str(a.pop("image", "image")), attrs=a)
            if header_only:
                out.attrs["shape"] = tuple(int(v) for v in f["image"].shape)
            else:
                out.data = np.asarray(f["image"][()], np.float32)
            if "scan_correction" in f:
                out.scan_correction = TreeResult.read_group(f["scan_correction"])
            return out

    def write(self, f: h5py.File) -> None:
        """Write into an open result file (opened with ``ctx.h5``: provenance and atomic rename)."""
        write_array(f, "image", np.asarray(self.data, np.float32), self.units,
                    description="micrograph, rows = y (down), columns = x (right)")
        f.attrs["pixel_size_nm"] = np.asarray(self.pixel_size_nm, float)
        f.attrs["sample"] = self.sample
        f.attrs["image"] = self.image
        for k, v in self.attrs.items():
            f.attrs[k] = v
        if self.scan_correction is not None:
            self.scan_correction.write_part(f.require_group("scan_correction"))
