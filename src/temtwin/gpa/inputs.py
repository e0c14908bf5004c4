"""Readers of the gpa stage's inputs: segmentation.h5, peaks.h5 and phases.h5 (layouts in
docs/DEVELOPING.md).  Missing or empty files read as "nothing known" (GPA then picks its own spots);
a file that exists but cannot be read as HDF5 is a UserError naming it."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import UserError
from ..io.h5 import read_table
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


def _open(p: Path):
    try:
        return h5py.File(p, "r")
    except OSError as err:
        raise UserError(f"cannot read HDF5 ({err}); rerun the stage that writes it", p) from None


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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
    out: dict[int, dict] = {}
    if p is None:
        return out
    with _open(p) as f:
        if "regions" not in f:
            return out
        for name, g in f["regions"].items():
            try:
                label = int(name)
            except ValueError:
                continue
            table = read_table(g["peaks"]) if "peaks" in g and isinstance(g["peaks"], h5py.Group) else None
            out[label] = {"crystalline": bool(g.attrs.get("crystalline", table is not None)), "table": table}
    return out


def read_phases(path) -> dict:
    """phases.h5 -> {"regions": {label: {phase, identified, rotation_deg, zone_axis, spots}},
    "phases": {name: {lattice_abc_nm, lattice_angles_deg, space_group}}}."""
    p = _path(path)
    out: dict = {"regions": {}, "phases": {}}
    if p is None:
        return out
    with _open(p) as f:
        for name, g in (f["regions"].items() if "regions" in f else []):
            try:
                label = int(name)
            except ValueError:
                continue
            spots = read_table(g["spots"]) if "spots" in g and isinstance(g["spots"], h5py.Group) else None
            out["regions"][label] = {
                "phase": _s(g.attrs.get("phase", "")),
                "identified": bool(g.attrs.get("identified", False)),
                "rotation_deg": float(g.attrs["rotation_deg"]) if "rotation_deg" in g.attrs else None,
                "zone_axis": [int(v) for v in np.ravel(g.attrs.get("zone_axis", []))],
                "spots": spots,
            }
        for name, g in (f["phases"].items() if "phases" in f else []):
            if "lattice_abc_nm" not in g.attrs:
                continue
            out["phases"][name] = {
                "lattice_abc_nm": [float(v) for v in np.ravel(g.attrs["lattice_abc_nm"])],
                "lattice_angles_deg": [float(v) for v in np.ravel(g.attrs.get("lattice_angles_deg", [90, 90, 90]))],
                "space_group": _s(g.attrs.get("space_group", "")),
            }
    return out
