"""Finite-element geometry: region polygons to GDS, and the per-region materials sidecar.

Polygons come from :mod:`.boundaries` (conformal: neighbouring regions share their boundary
vertices).  Model axes of the FEM geometry: x right, y **up**, z towards the viewer (right-handed;
the image frame rotated by 180° about x), lengths in nm.  So a layout viewer shows the sample as
the micrograph does (growth up), and an image point (x, y) maps to the model point (x, −y).

GDS (gdstk): unit 1 nm, precision 1 pm; one cell ``TEMTWIN``; each region on its own layer
(layer = region label), datatype = phase index (0 = no identified phase, 1.. in the order of
``regions.json``'s ``phases``); a text label ``<label>:<phase>`` at a point inside each region.
Polygons with holes are written as gdstk boolean results (keyhole polygons).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .boundaries import Boundaries

#: image frame -> model axes (x, y up, z towards the viewer)
IMAGE_TO_MODEL = np.diag([1.0, -1.0, -1.0])


def to_model_xy(xy_nm: np.ndarray) -> np.ndarray:
    """Image-frame points (x, y down) → model axes (x, y up)."""
    p = np.asarray(xy_nm, float)
    return np.column_stack([p[:, 0], -p[:, 1]])


def interior_point(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """A point inside a polygon with holes (image frame, nm): the deepest point of a coarse raster."""
    from matplotlib.path import Path as MPath

    lo, hi = outer.min(0), outer.max(0)
    n = 64
    xs = np.linspace(lo[0], hi[0], n + 2)[1:-1]
    ys = np.linspace(lo[1], hi[1], n + 2)[1:-1]
    X, Y = np.meshgrid(xs, ys)
    pts = np.column_stack([X.ravel(), Y.ravel()])
    inside = MPath(outer).contains_points(pts)
    for h in holes:
        inside &= ~MPath(h).contains_points(pts)
    if not inside.any():
        return outer.mean(0)
    from scipy import ndimage

    grid = inside.reshape(n, n)
    d = ndimage.distance_transform_edt(grid)
    k = int(np.argmax(d))
    return pts[k]


def write_gds(path, bnd: Boundaries, phases: dict[int, str], phase_index: dict[str, int],
              cell_name: str = "TEMTWIN") -> dict[int, dict]:
    """Write the region polygons to GDS; returns per label {layer, datatype, n_polygons, label_xy}.

    The file's modification/access timestamp is fixed (:func:`gds_timestamp`), so a rerun writes the same
    bytes.
    """
    import gdstk

    lib = gdstk.Library("temtwin", unit=1e-9, precision=1e-12)
    cell = lib.new_cell(cell_name)
    info: dict[int, dict] = {}
    for label in sorted(bnd.regions):
        ph = phases.get(label, "")
        dt = phase_index.get(ph, 0)
        n = 0
        text_at = None
        for outer, holes in bnd.polygons(label):
            o = gdstk.Polygon(to_model_xy(outer), layer=label, datatype=dt)
            if holes:
                hs = [gdstk.Polygon(to_model_xy(h)) for h in holes]
                polys = gdstk.boolean(o, hs, "not", layer=label, datatype=dt)
            else:
                polys = [o]
            for p in polys:
                cell.add(p)
                n += 1
            if text_at is None:
                text_at = interior_point(outer, holes)
        if text_at is not None:
            cell.add(gdstk.Label(f"{label}:{ph or 'unidentified'}", tuple(to_model_xy(text_at[None])[0]),
                                 layer=label, texttype=dt))
        info[label] = {"layer": int(label), "datatype": int(dt), "n_polygons": n,
                       "label_xy_nm": None if text_at is None else [float(text_at[0]), float(text_at[1])]}
    lib.write_gds(str(path), timestamp=gds_timestamp())
    return info


def gds_timestamp():
    """The timestamp stored in GDS files: ``SOURCE_DATE_EPOCH`` (UTC) when set, else 2000-01-01 00:00.

    GDSII requires one; a fixed value keeps reruns byte-identical (reproducible-builds convention).
    """
    import datetime as dt
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).replace(tzinfo=None)
    return dt.datetime(2000, 1, 1)


def read_gds_polygons(path) -> dict[int, list[np.ndarray]]:
    """Polygons per layer of a GDS file, back in the image frame (nm)."""
    import gdstk

    lib = gdstk.read_gds(str(path), unit=1e-9)
    out: dict[int, list[np.ndarray]] = {}
    for cell in lib.top_level():
        for p in cell.polygons:
            pts = np.asarray(p.points, float)
            out.setdefault(int(p.layer), []).append(np.column_stack([pts[:, 0], -pts[:, 1]]))
    return out


def region_sidecar(bnd: Boundaries, img, gds_info: dict[int, dict], phase_index: dict[str, int],
                   mean_strain: dict[int, dict], mesh_groups: dict | None = None) -> dict:
    """The regions.json document: frame, phases and one record per region."""
    regions = {}
    structures: dict[str, object] = {}
    for label in sorted(bnd.regions):
        rp = img.regions.get(label)
        rec: dict = {"label": label, "phase": "", "identified": False,
                     "area_nm2": bnd.area(label), "area_label_map_nm2": float((bnd.labels == label).sum())
                     * img.pixel_size_nm[0] * img.pixel_size_nm[1],
                     "gds": gds_info.get(label, {})}
        if rp is not None and rp.phase:
            rec.update({"phase": rp.phase, "identified": bool(rp.identified), "space_group": rp.space_group,
                        "zone_axis": rp.zone_axis, "zone_axis_4": rp.zone_axis_4,
                        "in_plane_rotation_deg": rp.rotation_deg})
            try:
                st = structures.get(rp.phase) or img.structure(rp.phase)
                structures[rp.phase] = st
                lat = st.lattice
                rec["lattice"] = {"a_nm": lat.a / 10, "b_nm": lat.b / 10, "c_nm": lat.c / 10,
                                  "alpha_deg": lat.alpha, "beta_deg": lat.beta, "gamma_deg": lat.gamma,
                                  "formula": st.composition.reduced_formula}
                if not rec.get("space_group"):
                    rec["space_group"] = st.get_space_group_info(symprec=0.01)[0]
            except Exception as e:  # a missing CIF must not break the geometry export
                rec["lattice"] = None
                rec["lattice_error"] = str(e)
            if rp.orientation_matrix is not None:
                M = np.asarray(rp.orientation_matrix, float)
                rec["orientation_matrix_image"] = M.tolist()
                rec["orientation_matrix"] = (IMAGE_TO_MODEL @ M).tolist()
        s = mean_strain.get(label)
        if s:
            rec["mean_strain_image_axes"] = s
            rec["mean_strain"] = {"exx": s.get("exx"), "eyy": s.get("eyy"),
                                  "exy": None if s.get("exy") is None else -s["exy"],
                                  "rotation_deg": None if s.get("rotation_deg") is None else -s["rotation_deg"],
                                  "n_pixels": s.get("n_pixels"), "source": s.get("source")}
        else:
            rec["mean_strain"] = None
        if mesh_groups:
            rec["mesh_physical_group"] = mesh_groups.get("regions", {}).get(label)
        regions[str(label)] = rec
    doc = {
        "frame": "model axes: x right, y up, z towards the viewer (image frame rotated 180 deg about x); nm; "
                 "image point (x, y) -> model (x, -y)",
        "orientation_matrix": "v_model = orientation_matrix @ v_crystal (columns: crystal Cartesian axes of "
                              "the CIF standard setting); orientation_matrix_image: v_image = M @ v_crystal",
        "strain": "mean_strain in model axes (exy and rotation change sign from the image axes); "
                  "mean_strain_image_axes as measured (x right, y down)",
        "image": img.name, "pixel_size_nm": list(img.pixel_size_nm),
        "gds": {"unit_m": 1e-9, "layer": "region label", "datatype": "phase index (0 = none)"},
        "phases": {name: idx for name, idx in sorted(phase_index.items(), key=lambda kv: kv[1])},
        "regions": regions,
    }
    if mesh_groups:
        doc["mesh_physical_groups"] = mesh_groups
    return doc


def write_json(path, doc: dict) -> None:
    from ..io.h5 import to_jsonable

    Path(path).write_text(json.dumps(to_jsonable(doc), indent=1, sort_keys=True) + "\n")
