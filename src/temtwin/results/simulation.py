"""``simulation.h5``, written by rule ``simulate_image``: the image simulated from the atomic model and its
comparison with the micrograph.

Maps are (rows, cols) on the image's pixels, in the image's units (offset + scale · simulation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._tree import TreeResult
from .base import Entry


@dataclass
class Simulation(TreeResult):
    """The simulated image of one image (the file's tree)."""

    FILE: ClassVar[str] = "simulation.h5"
    RULE: ClassVar[str] = "simulate_image"
    WRITES_FLAG: ClassVar[bool] = True
    LAYOUT: ClassVar[tuple[Entry, ...]] = (
        Entry("@applicable", "attr", "bool", "", "False with `reason` when no simulation applies"),
        Entry("@mode", "attr", "str", "", "`hrtem`, `haadf`, `abf` or `bf`"),
        Entry("@model", "attr", "str", "", "`as_built` or `relaxed`: the model fitted"),
        Entry("@ambiguous", "attr", "bool", "", "the fit does not decide between parameter sets"),
        Entry("@noise_sigma", "attr", "float", "", "image noise, image units"),
        Entry("@fit_box_px", "attr", "int (4,)", "", "the fitted crop [row0, col0, row1, col1)"),
        Entry("@refine_reason", "attr", "str", "", "why the column refinement stopped (optional)"),
        Entry("/simulated", "dataset", "float32 (rows, cols)", "image units", "the fitted simulation"),
        Entry("/residual", "dataset", "float32 (rows, cols)", "image units", "image − simulation"),
        Entry("/mask", "dataset", "bool (rows, cols)", "1", "pixels compared"),
        Entry("/ssim_map", "dataset", "float32 (rows, cols)", "1", "local structural similarity"),
        Entry("/<other model>/simulated", "dataset", "float32 (rows, cols)", "image units", "the other model"),
        Entry("/fit", "table", "(n,) per column", "", "`parameter`, `value`, `sigma` (NaN = not determined), "
              "`sigma_stat`, `sigma_sys` (sigma = their quadrature sum), `units`"),
        Entry("/regions", "table", "(n,) per column", "", "`label`, `coverage`, `ncc`, `ssim`, `rms_noise`"),
        Entry("/fit_scan/{ncc, cs_um, thickness_nm, defocus_nm}", "dataset", "(n,)", "1, um, nm, nm",
              "HRTEM parameter scan"),
        Entry("/multislice/{simulated, raw}", "dataset", "float32 (crop rows, cols)", "image units, 1",
              "STEM abTEM multislice crop: fitted, and detector fraction of the probe (optional)"),
        Entry("/multislice/fit", "table", "(n,) per column", "", "`parameter`, `value`, `sigma`, `units` of the "
              "crop fit; group attrs `box_px`, `detector_mrad`, `detector_source`, `convergence_mrad`"),
        Entry("/refine/history", "table", "(n,) per column", "", "`iteration`, `residual_rms`"),
        Entry("/refine/columns", "table", "(n,) per column", "", "`x_nm`, `y_nm`, `dx_nm`, `dy_nm`, `n_atoms`, "
              "`fraction_start`, `fraction`"),
    )
