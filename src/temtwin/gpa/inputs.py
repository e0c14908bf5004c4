"""Readers of the gpa stage's inputs: segmentation.h5, peaks.h5 and phases.h5 (layouts in
docs/DEVELOPING.md).  Missing or empty files read as "nothing known" (GPA then picks its own spots);
a file that exists but cannot be read as HDF5 is a UserError naming it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..results.peaks import Peaks
from ..results.phases import Phases
from ..results.segmentation import Segmentation


def _path(value) -> Path | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        if value is None:
            return None
    p = Path(os.fspath(value))
    return p if p.is_file() else None


def read_labels(path, shape) -> np.ndarray:
    """``/labels`` of segmentation.h5 (int32), or all ones (one region) when absent/mismatched."""
    p = _path(path)
    if p is None:
        return np.ones(shape, np.int32)
    lab = Segmentation.read_labels(p, shape)
    if not (lab > 0).any():
        return np.ones(shape, np.int32)
    return lab


def read_peaks(path) -> dict[int, dict]:
    """peaks.h5 -> {label: {"crystalline": bool, "table": {kx, ky, intensity, snr, ...} or None}}."""
    p = _path(path)
    if p is None:
        return {}
    return {lab: {"crystalline": bool(r.attrs.get("crystalline", r.table is not None)), "table": r.table}
            for lab, r in Peaks.read(p).regions.items()}


def read_phases(path) -> dict:
    """phases.h5 -> {"regions": {label: {phase, identified, rotation_deg, zone_axis, spots}},
    "phases": {name: {lattice_abc_nm, lattice_angles_deg, space_group}}}."""
    p = _path(path)
    out: dict = {"regions": {}, "phases": {}}
    if p is None:
        return out
    ph = Phases.read(p, parts=("regions", "phases"))   # not /bragg: one image-sized map per crystal
    for label, r in ph.regions.items():
        a = r.attrs
        out["regions"][label] = {
            "phase": str(a.get("phase", "")),
            "identified": bool(a.get("identified", False)),
            "rotation_deg": float(a["rotation_deg"]) if "rotation_deg" in a else None,
            "zone_axis": [int(v) for v in np.ravel(a.get("zone_axis", []))],
            "spots": r.spots,
        }
    for name, a in ph.phases.items():
        if "lattice_abc_nm" not in a:
            continue
        out["phases"][name] = {
            "lattice_abc_nm": [float(v) for v in np.ravel(a["lattice_abc_nm"])],
            "lattice_angles_deg": [float(v) for v in np.ravel(a.get("lattice_angles_deg", [90, 90, 90]))],
            "space_group": str(a.get("space_group", "")),
        }
    return out
