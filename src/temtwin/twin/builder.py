"""Building the 3D atomic model of an image: region plans, oriented fill, displacement, merge.

Steps (all vectorised, cost linear in the number of atoms):

1. *Plans* (:func:`plan_regions`): the GPA reference region's phase gives the **virtual unit cell**
   (its cell rescaled so that its reciprocal vectors equal the measured reference g vectors).
   Regions of the same structure (same space group and basis) whose reflections coincide with the
   reference g vectors within a tolerance are *epitaxial*: they share the virtual cell's lattice
   (and its origin) with their own species, and receive the measured displacement field.  Other
   crystalline regions are *mismatched*: their own cell in their own orientation, no GPA
   displacement (it is measured relative to another lattice).  Regions without an identified,
   oriented phase (amorphous, vacuum) stay empty.
2. *Fill* (:func:`build_model`): for each region, the atom columns of its crystal over the region's
   bounding box (in reference coordinates), the Lagrangian displacement of each column
   (:class:`~.displace.DisplacementField`), and membership decided at the *deformed* position by the
   label map (nearest pixel), so that the regions tile the image exactly.  Columns are expanded
   into atoms over the slab thickness 0 ≤ z < thickness along the beam.
3. *Merge*: atoms closer than the minimum distance are removed by the KD-tree rule (reference region
   first, then epitaxial, then mismatched regions).

Frame: image frame in nm (x right, y down, z along the beam); pixel (i, j) at (j·px, i·py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .displace import DisplacementField, remove_close_atoms
from .fill import (CrystalCell, cell_from_structure, commensurate_thickness, crystal_columns, expand_columns,
                   match_reflections, virtual_cell, zone_reflections)

log = logging.getLogger("temtwin")


class ModelTooLarge(ValueError):
    """The estimated model size exceeds ``max_atoms``."""


@dataclass
class RegionPlan:
    """How one region is filled."""

    label: int
    cell: CrystalCell
    kind: str                      # "reference", "epitaxial" or "mismatched"
    origin_nm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    displaced: bool = True         # apply the displacement field

    @property
    def priority(self) -> int:
        return {"reference": 0, "epitaxial": 1}.get(self.kind, 2)


@dataclass
class ModelResult:
    """The model as arrays (nm) with bookkeeping."""

    positions_nm: np.ndarray
    numbers: np.ndarray
    region: np.ndarray
    displacement_nm: np.ndarray
    source_pixel: np.ndarray
    host: np.ndarray                 # host species (Z) of each atom's site (its sublattice)
    cell_nm: np.ndarray
    pbc: tuple[bool, bool, bool]
    thickness_nm: float
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, keep) -> "ModelResult":
        return replace(self, positions_nm=self.positions_nm[keep], numbers=self.numbers[keep],
                       region=self.region[keep], displacement_nm=self.displacement_nm[keep],
                       source_pixel=self.source_pixel[keep], host=self.host[keep])


# ---------------------------------------------------------------------------------------------- plans
def _same_structure(a: CrystalCell, b: CrystalCell, tol: float = 1e-3) -> bool:
    if a.space_group != b.space_group or len(a.frac) != len(b.frac):
        return False
    d = np.abs(((a.frac[:, None, :] - b.frac[None, :, :]) + 0.5) % 1.0 - 0.5).max(axis=2)
    return bool(np.all(d.min(axis=1) < tol))


def coherent(ref_g: np.ndarray, cell: CrystalCell, tol: float) -> tuple[bool, float]:
    """Do the reference g vectors (rows [kx, ky] nm⁻¹) coincide with reflections of ``cell``?"""
    _, _, mis = match_reflections(cell, ref_g)
    return bool(np.all(mis <= tol)), float(mis.max())


def _space_group_number(structure) -> int:
    try:
        return int(structure.get_space_group_info(symprec=0.01)[1])
    except Exception:  # pragma: no cover - symmetry finder failure
        return 0


def plan_regions(img, cfg: dict, labels: np.ndarray | None = None) -> tuple[list[RegionPlan], dict]:
    """Region plans of an :class:`~.inputs.ImageInputs` (see module docstring).

    cfg keys used: ``coherence_tolerance``, ``g_match_tolerance``, ``apply_displacement``,
    ``regions`` (restrict to these labels, empty = all).
    Returns (plans, info) — info has ``reference_label``, ``virtual_cell`` details, ``empty_regions``.
    """
    labels = img.labels if labels is None else labels
    present = set(np.unique(labels).tolist()) - {0}
    only = {int(v) for v in (cfg.get("regions") or [])}
    crystalline = {lab: rp for lab, rp in img.regions.items()
                   if rp.crystalline and lab in present and (not only or lab in only)}
    info: dict = {"empty_regions": sorted(int(v) for v in present - set(crystalline))}
    if not crystalline:
        return [], info
    gpa = img.gpa if (img.gpa is not None and img.gpa.applicable) else None
    areas = {lab: int((labels == lab).sum()) for lab in crystalline}
    ref_label = gpa.reference_label if gpa is not None and gpa.reference_label in crystalline else None
    if ref_label is None:
        ref_label = max(areas, key=lambda k: (areas[k], -k))
    structures = {}
    cells = {}
    for lab, rp in crystalline.items():
        st = structures.get(rp.phase)
        if st is None:
            st = structures[rp.phase] = img.structure(rp.phase)
        cells[lab] = cell_from_structure(st, rp.orientation_matrix, rp.zone_axis, phase=rp.phase,
                                         space_group=_space_group_number(st))
    ref = cells[ref_label]
    vinfo: dict = {"phase": ref.phase, "nominal_lattice_nm": ref.lattice_nm.tolist()}
    ref_g = None
    if gpa is not None and gpa.g_vectors is not None:
        try:
            # the hkl GPA stored for its reference region (phase_id's indexing), when that is ours
            stored = gpa.g_hkl if (gpa.g_hkl is not None and gpa.g_phase == ref.phase
                                   and gpa.reference_label == ref_label) else None
            ref, vi = virtual_cell(ref, gpa.g_vectors, float(cfg.get("g_match_tolerance", 0.1)), hkl=stored)
            ref_g = np.asarray(gpa.g_vectors, float)
            vinfo.update({"deformation": vi["F"].tolist(), "g_hkl": vi["hkl"].tolist(),
                          "g_mismatch": vi["mismatch"].tolist(), "source": "gpa g_vectors",
                          "hkl_source": "gpa.h5" if stored is not None else "nearest zone reflection"})
        except ValueError as e:
            log.warning("virtual cell: %s; using the nominal cell of %s", e, ref.phase)
            vinfo["source"] = f"nominal ({e})"
    else:
        vinfo["source"] = "nominal (no GPA)"
    if ref_g is None:
        _, g = zone_reflections(ref)
        order = np.argsort(np.linalg.norm(g, axis=1), kind="stable")
        g = g[order]
        g2 = next((v for v in g[1:] if abs(np.cross(g[0], v)) > 1e-6 * np.linalg.norm(v) ** 2), g[1])
        ref_g = np.array([g[0], g2])
    vinfo["lattice_nm"] = ref.lattice_nm.tolist()
    info["reference_label"] = int(ref_label)
    info["virtual_cell"] = vinfo
    apply_u = bool(cfg.get("apply_displacement", True)) and gpa is not None
    tol = float(cfg.get("coherence_tolerance", 0.06))
    plans = [RegionPlan(ref_label, ref, "reference", displaced=apply_u)]
    info["coherence"] = {}
    for lab in sorted(crystalline):
        if lab == ref_label:
            continue
        c = cells[lab]
        ok, mis = coherent(ref_g, c, tol)
        same = _same_structure(ref, c)
        info["coherence"][str(lab)] = {"coherent_spots": ok, "g_mismatch": mis, "same_structure": same}
        if ok and same:
            shared = replace(ref, frac=c.frac, numbers=c.numbers, sublattice=c.sublattice, hosts=c.hosts,
                             phase=c.phase, space_group=c.space_group)
            plans.append(RegionPlan(lab, shared, "epitaxial", displaced=apply_u))
        else:
            plans.append(RegionPlan(lab, c, "mismatched", displaced=False))
    return plans, info


# ---------------------------------------------------------------------------------------------- build
def _region_windows(labels: np.ndarray, pixel_size_nm) -> dict[int, tuple[float, float, float, float]]:
    """Per label, the bounding box (x0, y0, x1, y1) nm of its pixels (pixel edges included)."""
    px, py = pixel_size_nm
    out = {}
    for lab, sl in enumerate(ndimage.find_objects(np.maximum(labels, 0)), start=0):
        if sl is None:
            continue
        lab += 1
        rs, cs = sl
        out[lab] = ((cs.start - 0.5) * px, (rs.start - 0.5) * py, (cs.stop - 0.5) * px, (rs.stop - 0.5) * py)
    return out


def build_model(labels: np.ndarray, pixel_size_nm, plans: list[RegionPlan], thickness_nm: float,
                field: DisplacementField | None = None, periodic_along_beam: bool = False,
                min_distance_nm: float | None = None, max_atoms: int | None = None,
                progress=None) -> ModelResult:
    """Fill every planned region of ``labels`` (see module docstring).

    ``min_distance_nm`` None → 0.75 × the shortest ideal nearest-neighbour distance of the cells.
    ``max_atoms``: refuse (:class:`ModelTooLarge`) when the estimated count exceeds it.
    """
    t0 = time.perf_counter()
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    rows, cols = labels.shape
    timing: dict[str, float] = {}
    if periodic_along_beam and plans:
        ref = next((p for p in plans if p.kind == "reference"), plans[0])
        thickness_nm = commensurate_thickness(ref.cell, thickness_nm)
    windows = _region_windows(labels, (px, py))
    if max_atoms:
        est = sum((labels == p.label).sum() * px * py * thickness_nm * p.cell.density_nm3 for p in plans)
        if est > max_atoms:
            raise ModelTooLarge(f"the model would hold about {est:.3g} atoms, more than atomic_model.max_atoms = "
                             f"{max_atoms}; reduce atomic_model.thickness_nm or select fewer atomic_model.regions")
    umax = 0.0
    if field is not None:
        umax = 1.5 * field.max_abs_nm + 0.1
    parts = []
    iters = {}
    for k, plan in enumerate(plans):
        if plan.label not in windows:
            continue
        x0, y0, x1, y1 = windows[plan.label]
        pad = (umax if plan.displaced and field is not None else 0.0) + 0.05
        cols_ = crystal_columns(plan.cell, (x0 - pad, y0 - pad, x1 + pad, y1 + pad), plan.origin_nm)
        if plan.displaced and field is not None and len(cols_):
            u, it = field.lagrangian(cols_.xy)
            iters[str(plan.label)] = it
        else:
            u = np.zeros_like(cols_.xy)
        x = cols_.xy + u
        j = np.rint(x[:, 0] / px).astype(np.int64)
        i = np.rint(x[:, 1] / py).astype(np.int64)
        ok = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
        ok[ok] = labels[i[ok], j[ok]] == plan.label
        c = cols_.take(ok)
        idx, z = expand_columns(c, thickness_nm)
        xs, us = x[ok][idx], u[ok][idx]
        n = len(idx)
        parts.append(dict(
            pos=np.column_stack([xs, z]), Z=plan.cell.numbers[c.basis][idx],
            region=np.full(n, plan.label, np.int32),
            disp=np.column_stack([us, np.zeros(n)]),
            src=np.column_stack([i[ok][idx], j[ok][idx]]).astype(float),
            prio=np.full(n, plan.priority * 1_000_000 + k, np.int64)))
        if progress:
            progress(k + 1, len(plans), "regions")
    timing["fill_displace_s"] = time.perf_counter() - t0
    if parts:
        cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    else:
        cat = dict(pos=np.zeros((0, 3)), Z=np.zeros(0, int), region=np.zeros(0, np.int32), disp=np.zeros((0, 3)),
                   src=np.zeros((0, 2)), prio=np.zeros(0, np.int64))
    t1 = time.perf_counter()
    if min_distance_nm is None:
        nn = [p.cell.nearest_neighbour_nm() for p in plans]
        min_distance_nm = 0.75 * min(nn) if nn else 0.0
    keep, npairs = remove_close_atoms(cat["pos"], min_distance_nm, cat["prio"],
                                      thickness_nm if periodic_along_beam else None)
    timing["remove_close_s"] = time.perf_counter() - t1
    n_removed = int((~keep).sum())
    cell = np.diag([cols * px, rows * py, thickness_nm])
    res = ModelResult(cat["pos"][keep], cat["Z"][keep].astype(np.int64), cat["region"][keep], cat["disp"][keep],
                      cat["src"][keep], cat["Z"][keep].astype(np.int64), cell,
                      (False, False, bool(periodic_along_beam)), float(thickness_nm),
                      {"min_distance_nm": float(min_distance_nm), "close_pairs": npairs, "removed": n_removed,
                       "lagrangian": iters, "timing": timing})
    return res


def growth_direction(labels: np.ndarray, reference_label: int, others: list[int], pixel_size_nm,
                     min_coherence: float = 0.8) -> np.ndarray | None:
    """Image-frame unit vector (3,) normal to the reference region's interfaces with ``others``,
    pointing from the reference towards them; None without a clear planar interface."""
    if not others:
        return None
    px, py = pixel_size_nm
    ref = (labels == reference_label).astype(float)
    oth = np.isin(labels, others)
    if not oth.any() or not ref.any():
        return None
    sm = ndimage.gaussian_filter(ref, 2.0)
    gy = ndimage.sobel(sm, 0) / py
    gx = ndimage.sobel(sm, 1) / px
    near = ndimage.binary_dilation(oth, iterations=3) & ndimage.binary_dilation(ref > 0, iterations=3)
    if near.sum() < 8:
        return None
    vx, vy = gx[near], gy[near]
    T = np.array([[np.sum(vx * vx), np.sum(vx * vy)], [np.sum(vx * vy), np.sum(vy * vy)]])
    w, V = np.linalg.eigh(T)
    if w[1] <= 0 or (w[1] - w[0]) / (w[1] + w[0]) < min_coherence:
        return None
    n = V[:, 1]
    rc = np.array(ndimage.center_of_mass(ref))[::-1] * (px, py)
    oc = np.array(ndimage.center_of_mass(oth))[::-1] * (px, py)
    if n @ (oc - rc) < 0:
        n = -n
    return np.array([n[0], n[1], 0.0])
