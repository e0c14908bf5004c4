"""2D finite-element mesh of the region polygons with gmsh (physical groups, interface refinement).

The geometry is built from the conformal boundary chains of :mod:`.boundaries`: every chain vertex
is one gmsh point and every chain one run of straight lines shared by the two regions it separates,
so the mesh is conformal across interfaces.  Physical groups: one 2D group per region (tag = label,
name ``region_<label>_<phase>``), one 1D group per interface (``interface_<a>_<b>``) and per outer
boundary of a region (``boundary_<label>``).  Element size: ``mesh_size_nm`` far from interfaces,
``mesh_size_nm / refinement`` on them, growing linearly over ``refinement_distance_nm`` (gmsh
Distance + Threshold background field).  Coordinates in the model axes (x right, y up; nm).
"""

from __future__ import annotations

import numpy as np

from .boundaries import EXTERIOR, Boundaries, simplify_chains
from .fem import to_model_xy


def build_mesh(bnd: Boundaries, path, mesh_size_nm: float, refinement: float = 4.0,
               refinement_distance_nm: float | None = None, phases: dict[int, str] | None = None,
               element_order: int = 1, threads: int = 1) -> dict:
    """Mesh the regions with gmsh and write ``path`` (.msh 4.1).

    Returns statistics: n_nodes, n_elements (triangles), per-region mesh area (nm²), physical groups
    {regions: {label: tag}, interfaces: {"a-b": tag}}, sizes, and ``arrays`` (nodes (n, 2) model
    axes nm, triangles (m, 3) row indices into nodes, triangle_region (m,)).
    """
    import gmsh

    phases = phases or {}
    dist = 2.0 * mesh_size_nm if refinement_distance_nm is None else refinement_distance_nm
    fine = mesh_size_nm / max(refinement, 1.0)
    if not gmsh.isInitialized():
        gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.Verbosity", 1)
        gmsh.option.setNumber("General.NumThreads", int(threads))
        gmsh.option.setNumber("Mesh.RandomSeed", 1)
        gmsh.clear()
        gmsh.model.add("temtwin")
        geo = gmsh.model.geo
        # points: chain end nodes are shared; interior vertices belong to one chain
        node_tag: dict[int, int] = {}
        chain_lines: list[list[int]] = []
        next_pt = 1
        for ch in bnd.chains:
            v = to_model_xy(ch.simplified)
            tags = []
            for k, (x, y) in enumerate(v):
                key = ch.start if k == 0 else (ch.end if k == len(v) - 1 else None)
                if key is not None and key in node_tag:
                    tags.append(node_tag[key])
                    continue
                geo.addPoint(float(x), float(y), 0.0, mesh_size_nm, next_pt)
                if key is not None:
                    node_tag[key] = next_pt
                tags.append(next_pt)
                next_pt += 1
            lines = [geo.addLine(a, b) for a, b in zip(tags[:-1], tags[1:])]
            chain_lines.append(lines)
        surfaces: dict[int, list[int]] = {}
        for label, rp in sorted(bnd.regions.items()):
            loops = {}
            for k, ring in enumerate(rp.rings):
                tags = []
                for i, fwd in ring:
                    ls = chain_lines[i]
                    tags += ls if fwd else [-t for t in ls[::-1]]
                loops[k] = geo.addCurveLoop(tags, reorient=True)
            surfaces[label] = [geo.addPlaneSurface([loops[o]] + [loops[h] for h in rp.holes.get(o, [])])
                               for o in rp.outer]
        geo.synchronize()
        groups: dict = {"regions": {}, "interfaces": {}, "boundaries": {}}
        for label, surf in surfaces.items():
            name = f"region_{label}" + (f"_{phases[label]}" if phases.get(label) else "")
            gmsh.model.addPhysicalGroup(2, surf, tag=label, name=name)
            groups["regions"][label] = {"tag": label, "name": name}
        tag1 = 1
        interface_lines = []
        for (a, b), idx in sorted(bnd.interfaces().items()):
            lines = sorted({abs(t) for i in idx for t in chain_lines[i]})
            if a == EXTERIOR:
                name = f"boundary_{b}"
                groups["boundaries"][b] = {"tag": tag1, "name": name}
            else:
                name = f"interface_{a}_{b}"
                groups["interfaces"][f"{a}-{b}"] = {"tag": tag1, "name": name}
                interface_lines += lines
            gmsh.model.addPhysicalGroup(1, lines, tag=tag1, name=name)
            tag1 += 1
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.MeshSizeMax", mesh_size_nm)
        if interface_lines and refinement > 1.0:
            f1 = gmsh.model.mesh.field.add("Distance")
            gmsh.model.mesh.field.setNumbers(f1, "CurvesList", interface_lines)
            gmsh.model.mesh.field.setNumber(f1, "Sampling", 20)
            f2 = gmsh.model.mesh.field.add("Threshold")
            gmsh.model.mesh.field.setNumber(f2, "InField", f1)
            gmsh.model.mesh.field.setNumber(f2, "SizeMin", fine)
            gmsh.model.mesh.field.setNumber(f2, "SizeMax", mesh_size_nm)
            gmsh.model.mesh.field.setNumber(f2, "DistMin", 0.0)
            gmsh.model.mesh.field.setNumber(f2, "DistMax", dist)
            gmsh.model.mesh.field.setAsBackgroundMesh(f2)
        else:
            f0 = gmsh.model.mesh.field.add("MathEval")
            gmsh.model.mesh.field.setString(f0, "F", repr(float(mesh_size_nm)))
            gmsh.model.mesh.field.setAsBackgroundMesh(f0)
        gmsh.option.setNumber("Mesh.Algorithm", 6)   # Frontal-Delaunay
        gmsh.model.mesh.generate(2)
        if element_order > 1:
            gmsh.model.mesh.setOrder(element_order)
        stats = _mesh_stats(gmsh, surfaces)
        gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
        gmsh.option.setNumber("Mesh.Binary", 0)
        gmsh.write(str(path))
    finally:
        gmsh.clear()
    stats["groups"] = groups
    stats.update({"mesh_size_nm": mesh_size_nm, "interface_size_nm": fine, "refinement_distance_nm": dist})
    return stats


def _mesh_stats(gmsh, surfaces: dict[int, list[int]]) -> dict:
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    xyz = np.asarray(coords).reshape(-1, 3)
    lookup = _tag_lookup(node_tags)
    areas = {}
    n_el = 0
    q_min = []
    tris, tri_region = [], []
    for label, surf in surfaces.items():
        a = 0.0
        for s in surf:
            types, _, enodes = gmsh.model.mesh.getElements(2, s)
            for t, en in zip(types, enodes):
                nn = gmsh.model.mesh.getElementProperties(t)[3]
                tri = lookup[np.asarray(en, np.int64).reshape(-1, nn)[:, :3]]
                p = xyz[tri][:, :, :2]
                e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
                ar = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
                a += float(ar.sum())
                n_el += len(tri)
                tris.append(tri)
                tri_region.append(np.full(len(tri), label, np.int32))
                # radius-ratio quality 4√3 A / Σ l²
                l2 = (e1 ** 2).sum(1) + (e2 ** 2).sum(1) + ((p[:, 2] - p[:, 1]) ** 2).sum(1)
                q_min.append(float((4 * np.sqrt(3) * ar / np.maximum(l2, 1e-30)).min()) if len(ar) else 1.0)
        areas[label] = a
    return {"n_nodes": int(len(node_tags)), "n_elements": int(n_el), "region_area_nm2": areas,
            "min_quality": min(q_min) if q_min else None,
            "arrays": {"nodes": xyz[:, :2], "triangles": np.vstack(tris) if tris else np.zeros((0, 3), np.int64),
                       "triangle_region": np.concatenate(tri_region) if tri_region else np.zeros(0, np.int32)}}


def read_msh_areas(path) -> dict[str, float]:
    """Area (nm²) of each 2D physical group of a .msh file, by group name (independent re-read)."""
    import gmsh

    if not gmsh.isInitialized():
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.clear()
    gmsh.open(str(path))
    try:
        out = {}
        node_tags, coords, _ = gmsh.model.mesh.getNodes()
        xyz = np.asarray(coords).reshape(-1, 3)
        lookup = _tag_lookup(node_tags)
        for dim, tag in gmsh.model.getPhysicalGroups(2):
            name = gmsh.model.getPhysicalName(dim, tag)
            a = 0.0
            for ent in gmsh.model.getEntitiesForPhysicalGroup(dim, tag):
                types, _, enodes = gmsh.model.mesh.getElements(2, ent)
                for t, en in zip(types, enodes):
                    nn = gmsh.model.mesh.getElementProperties(t)[3]
                    p = xyz[lookup[np.asarray(en, np.int64).reshape(-1, nn)[:, :3]]][:, :, :2]
                    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
                    a += float(0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum())
            out[name] = a
        return out
    finally:
        gmsh.clear()


def _tag_lookup(node_tags) -> np.ndarray:
    """Array mapping gmsh node tag -> row in the node coordinate array."""
    t = np.asarray(node_tags, np.int64)
    lookup = np.zeros(int(t.max()) + 1 if len(t) else 1, np.int64)
    lookup[t] = np.arange(len(t))
    return lookup


def mesh_regions(bnd: Boundaries, path, mesh_size_nm: float, refinement: float = 4.0,
                 refinement_distance_nm: float | None = None, phases: dict[int, str] | None = None,
                 element_order: int = 1, threads: int = 1, max_area_error: float = 0.005,
                 max_retries: int = 6) -> dict:
    """:func:`build_mesh`, retried with finer boundary simplification where gmsh fails.

    Simplification can make two nearly touching boundaries cross; gmsh then cannot recover an edge and
    leaves the surface empty.  Every region whose mesh area differs from its polygon area by more
    than ``max_area_error`` has its chains re-simplified with half the tolerance (down to the exact
    pixel boundary, which never crosses) and the mesh is rebuilt.  ``stats["retries"]`` counts them.
    """
    for attempt in range(max_retries + 1):
        st = build_mesh(bnd, path, mesh_size_nm, refinement, refinement_distance_nm, phases, element_order, threads)
        bad = [lab for lab in bnd.regions
               if abs(st["region_area_nm2"].get(lab, 0.0) - bnd.area(lab)) > max_area_error * max(bnd.area(lab), 1e-12)]
        if not bad or attempt == max_retries:
            st["retries"] = attempt
            st["failed_regions"] = bad
            return st
        redo = sorted({i for lab in bad for r in bnd.regions[lab].rings for i, _ in r})
        min_tol = 0.25 * min(bnd.pixel_size_nm)
        tol = np.array([bnd.chains[i].tol for i in redo]) / 2
        tol[(tol < min_tol) | (attempt == max_retries - 1)] = 0.0
        simplify_chains([bnd.chains[i] for i in redo], bnd.pixel_size_nm, tol)
    return st  # pragma: no cover
