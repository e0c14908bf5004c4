"""``peaks.h5``, written by rule ``fft_peaks``: the FFT of each region and its reflections.

Reciprocal coordinates kx (along image x, right) and ky (along image y, down) in nm⁻¹; the FFT image has its
zero frequency at pixel (S/2, S/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._tree import TreeResult
from .base import Entry


@dataclass
class PeakRegion:
    """The FFT peaks of one region (a view of ``/regions/<label>``).

    crystalline: a lattice was found; table: the peak table columns (``kx``, ``ky`` nm⁻¹, ``snr``, ...),
    None when the region has none; sampling: nm⁻¹ per FFT pixel (0 when unknown); fft: standardised
    log-power spectrum or None; extent: [kx_min, kx_max, ky_min, ky_max] nm⁻¹ or None; reason: why there is
    no FFT ("" otherwise); attrs: every attribute of the region group.
    """

    label: int
    crystalline: bool
    table: dict | None
    sampling: float
    fft: np.ndarray | None
    extent: np.ndarray | None
    reason: str
    attrs: dict


@dataclass
class Peaks(TreeResult):
    """The FFT peaks of every region of one image (the file's tree; ``regions``: typed views)."""

    FILE: ClassVar[str] = "peaks.h5"
    RULE: ClassVar[str] = "fft_peaks"
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@detectors", "attr", "str", "", "JSON list of the detectors used"),
        Entry("@n_regions", "attr", "int", "", "regions analysed"),
        Entry("/regions/<label>", "group", "", "", "attrs `crystalline` (bool), `window_px` [row0, col0, row1, "
              "col1], `window_mode`, `n_peaks`, `fft_sampling_nm-1` (nm⁻¹ per FFT pixel; NaN with `reason` when "
              "the region is too small), `fft_sampling_xy_nm-1`, `n_tiles`, `tile_px`, `threshold_detect`, "
              "`threshold_crystalline`, `lattice_bases_nm-1` (JSON)"),
        Entry("/regions/<label>/peaks", "table", "(n,) per column", "", "`kx`, `ky`, `g` (nm^-1), `d` (nm), "
              "`angle_deg` (deg), `intensity` (a.u.), `snr` (1), `detectors` uint8 bitmask (1 gaussian, 2 unet, "
              "4 profile, 8 lattice completion), `paired` (1), `row_px`, `col_px` (px)"),
        Entry("/regions/<label>/fft", "dataset", "float32 (S, S)", "1", "standardised log-power spectrum; attr "
              "`k_extent_nm-1` [kx_min, kx_max, ky_min, ky_max]"),
        Entry("/regions/<label>/detectors/<name>", "table", "(m,) per column", "", "raw candidates of each "
              "detector: `kx`, `ky` (nm^-1), `score` (1)"),
    )

    @property
    def regions(self) -> dict[int, PeakRegion]:
        """label -> :class:`PeakRegion`, in file order (non-integer group names skipped)."""
        out: dict[int, PeakRegion] = {}
        for label, p in self.labelled("regions"):
            a = self.group_attrs(p)
            table = self.table(f"{p}/peaks") if self.has(f"{p}/peaks") else None
            fft = self.get(f"{p}/fft")
            fa = self.dataset_attrs.get(f"{p}/fft", {})
            samp = float(a.get("fft_sampling_nm-1", np.nan))
            out[label] = PeakRegion(
                label, bool(a.get("crystalline", table is not None and len(table.get("kx", [])) > 0)),
                table, samp if np.isfinite(samp) else 0.0, fft,
                np.asarray(fa["k_extent_nm-1"], float) if fft is not None and "k_extent_nm-1" in fa else None,
                str(a.get("reason", "")), dict(a))
        return out
