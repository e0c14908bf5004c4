"""Upstream result files with known content, for the twin stages' tests and benchmarks.

:func:`write_image_results` writes ``image.h5``, ``segmentation.h5``, ``phases.h5`` and ``gpa.h5`` of
one image following the layouts of docs/DEVELOPING.md from exact inputs (label map, per-region
phase and orientation, displacement maps, g vectors), so the twins can be built and checked before
(and independently of) the real upstream stages.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..io.h5 import write_array, write_table


def reciprocal_g(structure, M: np.ndarray, hkl, lattice_scale: float = 1.0) -> np.ndarray:
    """Image-frame g vectors [kx, ky] (nm⁻¹) of reflections ``hkl`` of a structure oriented by M."""
    L = np.asarray(structure.lattice.matrix, float) / 10.0 * lattice_scale
    rec = np.linalg.inv(L).T                    # rows: reciprocal vectors of a, b, c (crystal frame)
    g = np.asarray(hkl, float) @ rec            # (n, 3) crystal Cartesian
    return (g @ np.asarray(M, float).T)[:, :2]


def write_image_results(folder, image: np.ndarray, pixel_size_nm, labels: np.ndarray, regions: dict,
                        cifs: dict[str, str] | None = None, displacement: np.ndarray | None = None,
                        g_vectors: np.ndarray | None = None, reference_label: int | None = None,
                        strain: dict | None = None, mode: str = "TEM", name: str | None = None) -> dict:
    """Write the four per-image result files into ``folder`` (= results/<sample>/<image>).

    regions: {label: dict(phase=..., zone_axis=[u, v, w], orientation_matrix=M, space_group=...,
    identified=True)} (missing labels are unidentified).  cifs: {phase: CIF text} (default: written
    from temtwin's phase library).  displacement: (2, rows, cols) nm; with ``g_vectors`` (2, 2) and
    ``reference_label`` GPA is applicable, else gpa.h5 says not applicable.
    Returns the paths {image, segmentation, phases, gpa}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or folder.name
    px = np.asarray(pixel_size_nm, float).reshape(-1)
    px = np.array([px[0], px[-1]])
    labels = np.asarray(labels, np.int32)
    rows, cols = labels.shape
    paths = {k: folder / f"{k}.h5" for k in ("image", "segmentation", "phases", "gpa")}
    with h5py.File(paths["image"], "w") as f:
        write_array(f, "image", np.asarray(image, np.float32), "counts")
        f.attrs["pixel_size_nm"] = px
        f.attrs["sample"] = folder.parent.name
        f.attrs["image"] = name
        f.attrs["mode"] = mode
    with h5py.File(paths["segmentation"], "w") as f:
        write_array(f, "labels", labels, "label")
        labs = [int(v) for v in np.unique(labels) if v > 0]
        area = [float((labels == v).sum() * px[0] * px[1]) for v in labs]
        write_table(f, "regions", {"label": (np.array(labs, np.int32), "label"), "area_nm2": (np.array(area), "nm^2")})
        f.attrs["method"] = "synthetic"
        f.attrs["source"] = "override"
    if cifs is None:
        cifs = {}
        from pymatgen.io.cif import CifWriter

        from .synth.crystal import load_structure

        for r in regions.values():
            if r.get("phase") and r["phase"] not in cifs:
                cifs[r["phase"]] = str(CifWriter(load_structure(r["phase"])))
    with h5py.File(paths["phases"], "w") as f:
        rg = f.require_group("regions")
        for lab in sorted({int(v) for v in np.unique(labels) if v > 0} | set(regions)):
            g = rg.require_group(str(lab))
            r = regions.get(lab, {})
            g.attrs["phase"] = r.get("phase", "")
            g.attrs["space_group"] = r.get("space_group", "")
            g.attrs["zone_axis"] = np.asarray(r.get("zone_axis", [0, 0, 0]), int)
            g.attrs["zone_axis_4"] = np.asarray(r.get("zone_axis_4", []), int)
            g.attrs["rotation_deg"] = float(r.get("rotation_deg", 0.0))
            g.attrs["scale_factor"] = float(r.get("scale_factor", 1.0))
            g.attrs["identified"] = bool(r.get("identified", bool(r.get("phase"))))
            if r.get("orientation_matrix") is not None:
                write_array(g, "orientation_matrix", np.asarray(r["orientation_matrix"], float), "1")
        pg = f.require_group("phases")
        for ph, cif in cifs.items():
            g = pg.require_group(ph)
            g.attrs["cif"] = cif
    with h5py.File(paths["gpa"], "w") as f:
        ok = displacement is not None and g_vectors is not None
        f.attrs["applicable"] = bool(ok)
        f.attrs["reason"] = "" if ok else "synthetic: no displacement given"
        if ok:
            f.attrs["reference_label"] = int(reference_label if reference_label is not None else 1)
            write_array(f, "g_vectors", np.asarray(g_vectors, float), "nm^-1")
            write_array(f, "displacement", np.asarray(displacement, float), "nm")
            write_array(f, "mask", np.ones((rows, cols), bool), "1")
            sg = f.require_group("strain")
            for k in ("exx", "eyy", "exy"):
                write_array(sg, k, np.asarray((strain or {}).get(k, np.zeros((rows, cols))), float), "1")
            write_array(f, "rotation", np.asarray((strain or {}).get("rotation", np.zeros((rows, cols))), float), "rad")
    return {k: str(v) for k, v in paths.items()}


def layered_displacement(truth: dict, shape, pixel_size_nm) -> np.ndarray:
    """Eulerian displacement maps (2, rows, cols) nm of :func:`temtwin.testing.synth.layered_scene`'s truth.

    The scene strains each layer along y (and x) relative to the bottom layer (u = 0 at the bottom
    edge of the image); returns u at every pixel's (deformed) position.
    """
    rows, cols = shape
    px, py = pixel_size_nm
    H = rows * py
    layers = truth["layers"]
    eyy = np.array([l["eyy"] for l in layers])
    exx = np.array([l["exx"] for l in layers])
    tdef = np.array([l["y_bottom_nm"] - l["y_top_nm"] for l in layers])
    zdef = np.concatenate([[0.0], np.cumsum(tdef)])
    zref = np.concatenate([[0.0], np.cumsum(tdef / (1 + eyy))])
    y = np.arange(rows) * py
    x = np.arange(cols) * px
    up = H - y
    li = np.clip(np.searchsorted(zdef, up, side="right") - 1, 0, len(layers) - 1)
    up_ref = zref[li] + (up - zdef[li]) / (1 + eyy[li])
    uy = -(up - up_ref)
    ux = x[None, :] * (1 - 1 / (1 + exx[li]))[:, None]
    return np.stack([ux, np.repeat(uy[:, None], cols, axis=1)])


def write_layered_inputs(folder, shape=(200, 200), pixel_size_nm: float = 0.02, layers=None, seed: int = 1,
                         mode: str = "haadf", dose: float | None = 2000.0, thickness_nm: float = 2.0,
                         phases=("Si", "Ge", "Si")):
    """A Si(1-x)Ge(x)/Ge/Si(1-x)Ge(x) stack from :func:`temtwin.testing.synth.layered_scene` with exact
    upstream results: labels, per-layer phase and orientation, GPA g vectors of the bottom layer and
    its exact displacement and strain maps.  Returns (scene, paths)."""
    from .synth import layered_scene
    from .synth.crystal import load_structure

    if layers is None:
        layers = [dict(thickness_nm=1.5, ge_fraction=0.7), dict(thickness_nm=1.5, ge_fraction=1.0, eyy=0.0231),
                  dict(thickness_nm=1.0, ge_fraction=0.7)]
    px = (pixel_size_nm, pixel_size_nm)
    sc = layered_scene(layers=layers, shape=shape, pixel_size_nm=px, dose=dose, mode=mode, seed=seed,
                       thickness_nm=thickness_nm)
    tr = sc.truth
    M = np.array(tr["orientation_matrix"])
    st = load_structure("Si")
    zone = [1, 1, 0] if (M @ st.lattice.matrix.T @ np.array([1, 1, 0]))[2] > 0 else [-1, -1, 0]
    g = reciprocal_g(st, M, [[1, -1, -1], [2, -2, 0]], tr["reference_a_A"] / 5.431)
    regions = {k + 1: dict(phase=phases[k % len(phases)], zone_axis=zone, orientation_matrix=M, space_group="Fd-3m")
               for k in range(len(layers))}
    u = layered_displacement(tr, sc.labels.shape, px)
    strain = {"eyy": tr["eyy"], "exx": tr["exx"]}
    paths = write_image_results(Path(folder), sc.image, px, sc.labels, regions, displacement=u, g_vectors=g,
                                reference_label=1, strain=strain, mode="STEM" if mode == "haadf" else "TEM")
    return sc, paths
