"""``image.h5``, written by rule ``scan_correct``: the scan-corrected micrograph.

The layout of ``raw.h5`` (:mod:`temtwin.results.raw`) with the scan-corrected image (identical to
``raw.h5``'s when nothing was corrected), plus the group ``/scan_correction``. Rows = y (down), columns = x
(right); the scan frame: x = fast scan (columns), y = slow scan (rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Entry
from .raw import Raw

_SCAN_LAYOUT = (
    Entry("/scan_correction", "group", "", "", "attrs `applicable`, `reason`, `method`, `changed`, "
          "`lattice_assumption`, `jitter_rms_px`, `jitter_rms_nm`, `convention`, (`scan_pair`, `scan_role`)"),
    Entry("/scan_correction@valid_region_px", "attr", "int64 (4,)", "", "[row0, col0, row1, col1) outside "
          "which the corrected image is extrapolated"),
    Entry("/scan_correction/drift", "dataset", "float64 (2,)", "1", "[dx, dy] drift per frame / frame height "
          "(0 when not applied)"),
    Entry("/scan_correction/drift_sigma", "dataset", "float64 (2,)", "1", "its standard deviation"),
    Entry("/scan_correction/drift_measured", "dataset", "float64 (2,)", "1", "drift that would restore the "
          "assumed lattice (applied only when significant)"),
    Entry("/scan_correction/drift_px", "dataset", "float64 (2,)", "px", "drift over the frame [x, y]"),
    Entry("/scan_correction/drift_nm", "dataset", "float64 (2,)", "nm", "drift over the frame [x, y]"),
    Entry("/scan_correction/jitter_px", "dataset", "float64 (rows,)", "px", "fast-scan offset of each row"),
    Entry("/scan_correction/jitter_nm", "dataset", "float64 (rows,)", "nm", "fast-scan offset of each row"),
    Entry("/scan_correction/jitter_sigma_px", "dataset", "float64 (rows,)", "px", "its standard deviation"),
    Entry("/scan_correction/g_basis_px", "dataset", "float64 (2, 2)", "1/px", "reduced reciprocal basis "
          "[kx, ky] (optional)"),
)



@dataclass
class Image(Raw):
    """The scan-corrected micrograph (layout of ``raw.h5`` plus ``/scan_correction``)."""

    FILE: ClassVar[str] = "image.h5"
    RULE: ClassVar[str] = "scan_correct"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("(as raw.h5)", "", "", "", "every entry of `raw.h5`, with the scan-corrected `/image`"),) + _SCAN_LAYOUT
