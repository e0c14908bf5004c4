"""Rule ``fem_geometry``: region polygons → GDS, regions.json sidecar, gmsh 2D mesh, fem.h5, figures.

The geometry is taken from one image of the sample (config ``fem_geometry.image``, default the largest field
of view).  Polygons are built from the label map's shared boundaries (conformal, see
:mod:`.boundaries`), simplified with ``fem_geometry.simplify_tolerance_nm`` (default one pixel).  Phases come
from the image's phases.h5 (or, for the stack's overview, from stack.h5 ``/regions``); the mean
measured strain of each region from the image's own GPA and from every accepted higher-resolution
image registered into it (stack.h5 transforms).

fem.h5: ``/polygons/<label>/outer_<k>`` and ``hole_<k>_<j>`` (m, 2) nm image frame; tables
``/regions`` (label, phase, areas, vertices, GDS layer/datatype, mesh tag) and ``/interfaces``
(a, b, length_nm, mesh tag); ``/mesh`` (nodes (n, 2) nm model axes, triangles, triangle_region)
with statistics attributes.  Summary fragment: ``fem`` = {files, n_regions, mesh: {n_nodes,
n_elements}, image, regions}.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..twin.boundaries import EXTERIOR, region_boundaries
from ..twin.fem import region_sidecar, write_gds, write_json
from ..results.fem import FemGeometry
from ..results.stack import Stack
from ..twin.inputs import ImageInputs, all_images, named_image
from ..twin.mesh import mesh_regions


def choose_image(images: list[ImageInputs], name: str | None, prefer_phased: bool = False) -> ImageInputs:
    """The configured image, else the image with the largest field of view; ``prefer_phased`` (fem_geometry):
    among those whose own phases.h5 identifies at least one region's phase when any does (regions.json, hence
    fem_relax's materials, carries those; phases the stack propagates to an overview have no orientation
    and are not exported), so an overview without lattice fringes loses to the HRTEM of the same stack."""
    named = named_image(images, name, "fem_geometry.image")
    if named is not None:
        return named
    if not images:
        raise UserError("the sample has no images", "rule inputs")
    phased = [im for im in images if any(rp.phase and rp.identified for rp in im.regions.values())] \
        if prefer_phased else []
    return max(phased or images, key=lambda im: (im.field_of_view_nm2, im.name))


def region_phases(img: ImageInputs, stack: dict) -> dict[int, str]:
    """Phase name per region: the image's phases.h5, else stack.h5 /regions (overview only)."""
    out = {lab: rp.phase for lab, rp in img.regions.items() if rp.phase and rp.identified}
    if stack and stack.get("overview") == img.name:
        for key, attrs in stack.get("regions", {}).items():
            try:
                lab = int(key)
            except ValueError:
                continue
            ph = str(attrs.get("phase", "") or "")
            if ph and lab not in out:
                out[lab] = ph
    return out


def mean_strains(img: ImageInputs, images: list[ImageInputs], stack: dict, labels: np.ndarray) -> dict[int, dict]:
    """Mean measured strain (image axes of ``img``) per region label, from all usable GPA maps."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    sources: dict[int, set] = {}
    nlab = int(labels.max()) + 1 if labels.size else 1

    def add(lab_idx: np.ndarray, comps: np.ndarray, name: str):
        # comps: (4, n) exx, eyy, exy, rotation; lab_idx (n,)
        ok = (lab_idx > 0) & np.all(np.isfinite(comps), axis=0)
        if not ok.any():
            return
        cnt = np.bincount(lab_idx[ok], minlength=nlab)
        tot = np.stack([np.bincount(lab_idx[ok], weights=c[ok], minlength=nlab) for c in comps])
        for lab in np.nonzero(cnt)[0]:
            sums[lab] = sums.get(lab, np.zeros(4)) + tot[:, lab]
            counts[lab] = counts.get(lab, 0) + int(cnt[lab])
            sources.setdefault(int(lab), set()).add(name)

    def comps_of(g, sel=None):
        zero = np.zeros_like(g.strain["exx"])
        c = np.stack([g.strain.get("exx", zero), g.strain.get("eyy", zero), g.strain.get("exy", zero),
                      g.strain.get("rotation", zero)])
        return c

    for other in images:
        g = other.gpa
        if g is None or not g.applicable or "exx" not in g.strain:
            continue
        mask = g.mask if g.mask is not None else np.ones(g.strain["exx"].shape, bool)
        c = comps_of(g)
        if other.name == img.name:
            add(labels[mask], c[:, mask], other.name)
            continue
        st = stack.get("images", {}).get(other.name) if stack else None
        if not st or stack.get("overview") != img.name or "transform" not in st or not bool(st.get("accepted", True)):
            continue
        T = np.asarray(st["transform"], float)
        r, cc = np.nonzero(mask)
        step = max(1, len(r) // 200_000)
        r, cc = r[::step], cc[::step]
        xo = T[0, 0] * cc + T[0, 1] * r + T[0, 2]
        yo = T[1, 0] * cc + T[1, 1] * r + T[1, 2]
        jo, io = np.rint(xo).astype(np.int64), np.rint(yo).astype(np.int64)
        inside = (io >= 0) & (io < labels.shape[0]) & (jo >= 0) & (jo < labels.shape[1])
        lab_idx = np.zeros(len(r), np.int64)
        lab_idx[inside] = labels[io[inside], jo[inside]]
        # rotate the strain tensor of the other image's axes into this image's axes
        lin = T[:, :2]
        th = np.arctan2(lin[1, 0], lin[0, 0])
        R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        e = c[:, r, cc]
        E = np.array([[e[0], e[2]], [e[2], e[1]]])            # (2, 2, n)
        Er = np.einsum("ij,jkn,lk->iln", R, E, R)
        add(lab_idx, np.stack([Er[0, 0], Er[1, 1], Er[0, 1], e[3]]), other.name)
    out = {}
    for lab, s in sums.items():
        m = s / counts[lab]
        out[int(lab)] = {"exx": float(m[0]), "eyy": float(m[1]), "exy": float(m[2]),
                         "rotation_deg": float(np.degrees(m[3])), "n_pixels": int(counts[lab]),
                         "source": sorted(sources[int(lab)])}
    return out


def run(ctx) -> None:
    cfg = ctx.section("fem_geometry")
    t0 = time.perf_counter()
    images = all_images(ctx)
    sp = ctx.input.get("stack")
    stack = Stack.read(sp).as_dict() if sp and Path(sp).is_file() else {}
    img = choose_image(images, cfg.get("image"), prefer_phased=True)
    labels = img.labels
    px = img.pixel_size_nm
    tol = cfg.get("simplify_tolerance_nm")
    tol = float(tol) if tol is not None else img.pixel_size
    bnd = region_boundaries(labels, px, tol, float(cfg["max_area_error"]))
    phases = region_phases(img, stack)
    names = sorted({p for lab, p in phases.items() if lab in bnd.regions})
    phase_index = {n: i + 1 for i, n in enumerate(names)}
    ctx.log.info("fem geometry of image %s: %d regions, %d boundary chains", img.name, len(bnd.regions),
                 len(bnd.chains))
    mesh_size = cfg.get("mesh_size_nm")
    if mesh_size is None:
        W = labels.shape[1] * px[0]
        H = labels.shape[0] * px[1]
        mesh_size = max(np.hypot(W, H) / 60.0, 2.0 * img.pixel_size)
    mesh_size = float(mesh_size)
    with ctx.file("mesh") as p:
        if bnd.regions:
            mstats = mesh_regions(bnd, p, mesh_size, float(cfg["interface_refinement"]),
                                  cfg.get("refinement_distance_nm"), phases, int(cfg["element_order"]),
                                  max(1, int(ctx.threads)), float(cfg["max_area_error"]))
            if mstats["retries"]:
                ctx.log.info("mesh: boundaries of %d region(s) re-simplified finer (%d retries)",
                             len(mstats["failed_regions"]) or 1, mstats["retries"])
            if mstats["failed_regions"]:
                ctx.log.warning("mesh: regions %s could not be meshed faithfully", mstats["failed_regions"])
        else:
            mstats = _empty_mesh(p)
    arrays = mstats.pop("arrays")
    # GDS after the mesh: meshing may have refined some boundaries (the GDS shows the meshed geometry)
    out_gds = ctx.output["gds"]
    with ctx.file("gds") as p:
        gds_info = write_gds(p, bnd, phases, phase_index)
    strain = mean_strains(img, images, stack, labels)
    doc = region_sidecar(bnd, img, gds_info, phase_index, strain, mstats["groups"])
    for lab, rec in doc["regions"].items():
        ma = mstats["region_area_nm2"].get(int(lab))
        rec["mesh_area_nm2"] = ma
        rec["mesh_area_error"] = None if ma is None or not rec["area_label_map_nm2"] else \
            ma / rec["area_label_map_nm2"] - 1.0
    doc["mesh"] = {k: v for k, v in mstats.items() if k not in ("groups", "region_area_nm2")}
    doc["simplify_tolerance_nm"] = tol
    with ctx.file("regions") as p:
        write_json(p, doc)
    files = {k: str(ctx.output[k]) for k in ("h5", "gds", "mesh", "regions")}
    geo = fem_result(bnd, doc, mstats, arrays, tol, img)
    geo.summary = {"fem": {
        "files": files, "image": img.name, "n_regions": len(bnd.regions),
        "mesh": {"n_nodes": mstats["n_nodes"], "n_elements": mstats["n_elements"],
                 "mesh_size_nm": mesh_size, "min_quality": mstats.get("min_quality")},
        "regions": {lab: {"phase": rec["phase"], "area_nm2": rec["area_nm2"],
                          "mesh_area_error": rec["mesh_area_error"]} for lab, rec in doc["regions"].items()},
    }}
    with ctx.h5("h5") as f:
        geo.write(f)
    from ..twin.fem_figures import fem_figures

    fem_figures(ctx.output["figures"], img, bnd, arrays, phases)
    ctx.log.info("fem geometry: %d regions, mesh %d nodes / %d triangles, in %.2f s (gds %s)",
                 len(bnd.regions), mstats["n_nodes"], mstats["n_elements"], time.perf_counter() - t0,
                 Path(out_gds).name)


def _empty_mesh(path) -> dict:
    import gmsh

    if not gmsh.isInitialized():
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.clear()
    gmsh.model.add("temtwin")
    gmsh.write(str(path))
    gmsh.clear()
    return {"n_nodes": 0, "n_elements": 0, "region_area_nm2": {}, "min_quality": None,
            "groups": {"regions": {}, "interfaces": {}, "boundaries": {}},
            "arrays": {"nodes": np.zeros((0, 2)), "triangles": np.zeros((0, 3), np.int64),
                       "triangle_region": np.zeros(0, np.int32)}}


def fem_result(bnd, doc, mstats, arrays, tol, img) -> FemGeometry:
    """The fem.h5 content (:class:`temtwin.results.fem.FemGeometry`): polygons, region and interface tables,
    the mesh (model axes)."""
    m = FemGeometry()
    m.attrs["polygons"] = {}
    labs = sorted(bnd.regions)
    nvert, nholes = [], []
    for lab in labs:
        m.attrs[f"polygons/{lab}"] = {}
        nv = nh = 0
        for k, (outer, holes) in enumerate(bnd.polygons(lab)):
            m.put(f"polygons/{lab}/outer_{k}", outer, "nm")
            nv += len(outer)
            for j, h in enumerate(holes):
                m.put(f"polygons/{lab}/hole_{k}_{j}", h, "nm")
                nv += len(h)
                nh += 1
        nvert.append(nv)
        nholes.append(nh)
    recs = [doc["regions"][str(lab)] for lab in labs]
    m.put_table("regions", {
        "label": (np.array(labs, np.int32), "label"),
        "phase": (np.array([r["phase"] for r in recs], object), "1"),
        "area_nm2": (np.array([r["area_nm2"] for r in recs], float), "nm^2"),
        "area_label_map_nm2": (np.array([r["area_label_map_nm2"] for r in recs], float), "nm^2"),
        "mesh_area_nm2": (np.array([np.nan if r["mesh_area_nm2"] is None else r["mesh_area_nm2"]
                                    for r in recs]), "nm^2"),
        "n_vertices": (np.array(nvert, np.int64), "1"),
        "n_holes": (np.array(nholes, np.int64), "1"),
        "gds_layer": (np.array([r["gds"].get("layer", lab) for r, lab in zip(recs, labs)], np.int32), "1"),
        "gds_datatype": (np.array([r["gds"].get("datatype", 0) for r in recs], np.int32), "1"),
    })
    inter = bnd.interfaces()
    keys = sorted(inter)
    lengths = []
    for key in keys:
        L = 0.0
        for i in inter[key]:
            v = bnd.chains[i].simplified
            L += float(np.linalg.norm(np.diff(v, axis=0), axis=1).sum())
        lengths.append(L)
    groups = mstats.get("groups", {})
    tags = []
    for a, b in keys:
        if a == EXTERIOR:
            tags.append(groups.get("boundaries", {}).get(b, {}).get("tag", -1))
        else:
            tags.append(groups.get("interfaces", {}).get(f"{a}-{b}", {}).get("tag", -1))
    m.put_table("interfaces", {
        "a": (np.array([k[0] for k in keys], np.int32), "label"),
        "b": (np.array([k[1] for k in keys], np.int32), "label"),
        "length_nm": (np.array(lengths), "nm"),
        "mesh_tag": (np.array(tags, np.int32), "1"),
    }, description="a = -1: outer boundary of region b")
    m.put("mesh/nodes", arrays["nodes"], "nm", frame="model axes: x right, y up")
    m.put("mesh/triangles", np.asarray(arrays["triangles"], np.int64), "1")
    m.put("mesh/triangle_region", np.asarray(arrays["triangle_region"], np.int32), "label")
    m.attrs["mesh"] = {k: mstats[k] for k in ("n_nodes", "n_elements", "mesh_size_nm", "interface_size_nm",
                                               "refinement_distance_nm", "min_quality") if mstats.get(k) is not None}
    m.attrs[""] = {"image": img.name, "simplify_tolerance_nm": tol,
                   "frame": "polygons: image frame (x right, y down) nm; mesh and GDS: model axes (x right, y up)"}
    return m
