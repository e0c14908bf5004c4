"""Readers of the upstream result files the twin stages use (layouts in docs/DEVELOPING.md).

Per image: ``image.h5`` (pixel size), ``segmentation.h5`` (labels), ``phases.h5`` (per-region phase,
zone axis, orientation matrix, CIF text per phase), ``gpa.h5`` (reference g vectors, displacement,
strain, amplitude, mask).  Per sample: ``stack.h5`` is read with :class:`temtwin.results.stack.Stack`.
Missing optional parts (no gpa.h5, GPA not applicable, a region without orientation) read as None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..results.gpa import Gpa as GpaResult
from ..results.image import Image
from ..results.phases import Phases
from ..results.segmentation import Segmentation


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class RegionPhase:
    """Phase identification of one region (phases.h5 /regions/<label>)."""

    label: int
    phase: str = ""
    space_group: str = ""
    zone_axis: list[int] | None = None
    zone_axis_4: list[int] | None = None
    rotation_deg: float | None = None
    scale_factor: float | None = None
    identified: bool = False
    orientation_matrix: np.ndarray | None = None

    @property
    def crystalline(self) -> bool:
        return bool(self.identified and self.phase and self.orientation_matrix is not None
                    and self.zone_axis is not None)


@dataclass
class Gpa:
    """The parts of gpa.h5 the twins use (None when GPA does not apply)."""

    applicable: bool
    reason: str = ""
    reference_label: int | None = None
    g_vectors: np.ndarray | None = None         # (2, 2) rows g1, g2 [kx, ky] nm^-1
    displacement: np.ndarray | None = None      # (2, rows, cols) nm [ux, uy]
    mask: np.ndarray | None = None              # (rows, cols) bool
    strain: dict[str, np.ndarray] = field(default_factory=dict)   # exx, eyy, exy, rotation
    amplitude: np.ndarray | None = None         # (2, rows, cols)
    g_hkl: np.ndarray | None = None             # (2, 3) hkl of g1, g2 (phase_id's indexing), if indexed
    g_phase: str = ""                           # the phase those hkl belong to


@dataclass
class ImageInputs:
    """Everything known about one image of the sample."""

    name: str
    pixel_size_nm: tuple[float, float]
    shape: tuple[int, int]
    labels: np.ndarray | None = None
    regions: dict[int, RegionPhase] = field(default_factory=dict)
    cifs: dict[str, str] = field(default_factory=dict)
    gpa: Gpa | None = None
    image_path: str = ""
    seg_path: str = ""
    phases_path: str = ""
    gpa_path: str = ""

    @property
    def field_of_view_nm2(self) -> float:
        return self.shape[0] * self.pixel_size_nm[1] * self.shape[1] * self.pixel_size_nm[0]

    @property
    def pixel_size(self) -> float:
        return float(np.sqrt(self.pixel_size_nm[0] * self.pixel_size_nm[1]))

    def structure(self, phase: str):
        """pymatgen Structure of a phase: the CIF in phases.h5, else temtwin's phase library (both through
        the one loader, :mod:`temtwin.phase.database`)."""
        from ..phase.database import load_structure, structure_from_cif

        cif = self.cifs.get(phase)
        if cif:       # the one CIF policy (phase.database), on the text phase_id stored
            return structure_from_cif(cif, self.phases_path, f"phase {phase!r} in phases.h5 (from the "
                                      "dataset's phases/ folder)")

        try:
            return load_structure(phase)
        except KeyError:
            raise UserError(f"phase {phase!r} has no CIF in phases.h5 nor in resources/phases; add "
                            f"phases/{phase}.cif to the sample", self.phases_path) from None

    def load_image(self) -> np.ndarray:
        return Image.read(self.image_path).data


def read_pixel_size(image_h5: str | Path) -> tuple[tuple[float, float], tuple[int, int]]:
    """(pixel size (x, y) nm, shape) of an image.h5."""
    im = Image.read(image_h5, header_only=True)
    return im.pixel_size_nm, im.attrs["shape"]


def read_labels(seg_h5: str | Path) -> np.ndarray:
    return Segmentation.read_labels(seg_h5)


def read_phases(phases_h5: str | Path) -> tuple[dict[int, RegionPhase], dict[str, str]]:
    """Per-region phases and the CIF text of each phase."""
    regions: dict[int, RegionPhase] = {}
    cifs: dict[str, str] = {}
    p = Path(phases_h5)
    if not p.is_file():
        return regions, cifs
    ph = Phases.read(p, parts=("regions", "phases"))   # not /bragg: one image-sized map per crystal
    for label, r in ph.regions.items():
        a = r.attrs
        M = r.orientation_matrix
        if M is not None and (np.shape(M) != (3, 3) or not np.all(np.isfinite(M))):
            M = None
        za = a.get("zone_axis")
        za = [int(round(float(v))) for v in np.ravel(za)] if za is not None and np.size(za) == 3 else None
        z4 = a.get("zone_axis_4")
        z4 = [int(round(float(v))) for v in np.ravel(z4)] if z4 is not None and np.size(z4) == 4 else None
        regions[label] = RegionPhase(
            label, str(a.get("phase", "") or ""), str(a.get("space_group", "") or ""), za, z4,
            _float(a.get("rotation_deg")), _float(a.get("scale_factor")), bool(a.get("identified", False)), M)
    for name, a in ph.phases.items():
        cif = str(a.get("cif", "") or "")
        if cif:
            cifs[name] = cif
    return regions, cifs


def _float(v) -> float | None:
    try:
        x = float(np.ravel(v)[0]) if v is not None else None
    except (TypeError, ValueError, IndexError):
        return None
    return x if x is not None and np.isfinite(x) else None


def read_gpa(gpa_h5: str | Path) -> Gpa:
    p = Path(gpa_h5)
    if not p.is_file():
        return Gpa(False, "no gpa.h5")
    g = GpaResult.read(p, parts=("g_vectors", "displacement", "mask", "strain", "rotation", "amplitude",
                                 "lattice@"))
    if not g.applicable or g.displacement is None or g.g_vectors is None:
        return Gpa(False, g.reason or "GPA not applicable")
    strain = dict(g.strain)
    if g.rotation is not None:
        strain["rotation"] = g.rotation
    return Gpa(True, "", g.reference_label, g.g_vectors, g.displacement, g.mask, strain, g.amplitude, g.g_hkl,
               g.g_phase)


def image_name(path: str | Path) -> str:
    """Image name of a per-image result file results/<sample>/<image>/<stage>.h5."""
    return Path(path).parent.name


def read_image_inputs(image_h5, seg_h5, phases_h5, gpa_h5, with_gpa: bool = True) -> ImageInputs:
    px, shape = read_pixel_size(image_h5)
    labels = read_labels(seg_h5)
    if labels.shape != tuple(shape):
        raise UserError(f"label map shape {labels.shape} differs from the image's {shape}; rerun segment",
                        seg_h5)
    regions, cifs = read_phases(phases_h5)
    gpa = read_gpa(gpa_h5) if with_gpa else None
    if gpa is not None and gpa.applicable and gpa.displacement is not None \
            and gpa.displacement.shape[1:] != tuple(shape):
        raise UserError(f"GPA displacement shape {gpa.displacement.shape[1:]} differs from the image's "
                        f"{shape}; rerun gpa", gpa_h5)
    return ImageInputs(image_name(image_h5), px, shape, labels, regions, cifs, gpa, str(image_h5),
                       str(seg_h5), str(phases_h5), str(gpa_h5))


def named_image(images: list[ImageInputs], name: str | None, key: str) -> ImageInputs | None:
    """The image called ``name`` (config key ``key``, e.g. ``fem.image``); None when no name is set;
    a UserError naming the key when no image has that name."""
    if not name:
        return None
    for im in images:
        if im.name == name:
            return im
    raise UserError(f"{key} = {name!r} is not an image of this sample (images: "
                    f"{', '.join(im.name for im in images)})", "config")


def all_images(ctx, with_gpa: bool = True) -> list[ImageInputs]:
    """ImageInputs of every image of the sample, in the rule's input order."""
    imgs, segs, phs, gps = (ctx.paths(k) for k in ("images", "segmentations", "phases", "gpas"))
    if not (len(imgs) == len(segs) == len(phs)):
        raise UserError("inputs images/segmentations/phases differ in length; rerun the workflow", "rule inputs")
    gps = gps if len(gps) == len(imgs) else [""] * len(imgs)
    return [read_image_inputs(i, s, p, g, with_gpa) for i, s, p, g in zip(imgs, segs, phs, gps)]


def to_json(obj: Any) -> str:
    from ..io.h5 import to_jsonable

    return json.dumps(to_jsonable(obj), indent=1, sort_keys=True)
