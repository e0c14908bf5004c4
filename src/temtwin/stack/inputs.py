"""Readers of the per-image results the stack stage combines (segmentation, phases, GPA).

Every reader tolerates a missing file, a missing group or a stage that did not apply: it returns
``None`` / ``{}`` and the stack stage works with what there is (layouts in docs/DEVELOPING.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..results.gpa import Gpa
from ..results.phases import Phases
from ..results.segmentation import Segmentation


def _s(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class ImageResults:
    """What the per-image stages found in one image.

    labels: segmentation label map (int32, 0 = unassigned) or None.
    regions: label -> phase attributes (``phase``, ``identified``, ``confidence``, ``zone_axis``,
    ``rotation_deg``, ``space_group``, ...) from phases.h5.
    strain: ``exx``, ``eyy``, ``exy`` (image axes, 1) and ``rotation`` (rad) maps, or None; mask: valid
    GPA pixels (bool) or None (all valid).
    """

    name: str
    labels: np.ndarray | None = None
    regions: dict[int, dict] = field(default_factory=dict)
    strain: dict[str, np.ndarray] | None = None
    mask: np.ndarray | None = None


def _exists(p) -> bool:
    return p is not None and str(p) != "" and os.path.isfile(p)


def read_labels(path) -> np.ndarray | None:
    """``/labels`` of segmentation.h5 (None when absent)."""
    if not _exists(path):
        return None
    return Segmentation.read_labels(path)


def read_phases(path) -> dict[int, dict]:
    """Per region label, the attributes of phases.h5 ``/regions/<label>`` ({} when absent)."""
    out: dict[int, dict] = {}
    if not _exists(path):
        return out
    for lab, r in Phases.read(path, parts=("regions",)).regions.items():   # not the /bragg maps
        a = {k: _s(v) for k, v in r.attrs.items()}
        a["phase"] = str(a.get("phase", "") or "")
        a["identified"] = bool(a.get("identified", bool(a["phase"])))
        out[lab] = a
    return out


def read_strain(path) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """(strain maps, mask) of gpa.h5, or (None, None) when GPA did not apply or is absent."""
    if not _exists(path):
        return None, None
    g = Gpa.read(path, parts=("strain", "rotation", "mask"))
    if not g.applicable or g.content.sub("strain") is None:
        return None, None
    st = {k: np.asarray(v, np.float64) for k, v in g.strain.items()}
    if len(st) < 3:
        return None, None
    if g.rotation is not None:
        st["rotation"] = np.asarray(g.rotation, np.float64)
    return st, g.mask


def read_image_results(name: str, segmentation=None, phases=None, gpa=None,
                       shape: tuple[int, int] | None = None) -> ImageResults:
    """All per-image results of one image; maps whose shape differs from ``shape`` are dropped."""
    labels = read_labels(segmentation)
    if labels is not None and shape is not None and labels.shape != tuple(shape):
        labels = None
    strain, mask = read_strain(gpa)
    if strain is not None and shape is not None and any(v.shape != tuple(shape) for v in strain.values()):
        strain, mask = None, None
    if mask is not None and shape is not None and mask.shape != tuple(shape):
        mask = None
    return ImageResults(Path(str(name)).name, labels, read_phases(phases), strain, mask)
