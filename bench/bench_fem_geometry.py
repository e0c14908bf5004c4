"""FEM geometry: polygon/mesh area fidelity, GDS round trip, sizes and timings.

Cases: the label maps of the validation set (stack overview with 11 materials, the SiGe quantum well)
when present, and synthetic Voronoi label maps of growing size (timing).  Each case runs the whole
``fem_geometry`` stage (temtwin.stages.fem_geometry.run) on upstream files written from the label map,
then checks the outputs: mesh region areas vs label-map areas, GDS read back vs the polygons.

Run: ``.venv/bin/python bench/bench_fem_geometry.py`` → bench/results/fem_geometry.md
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_truth, machine, md_table, peak_rss_mb, validation_root, write_section  # noqa: E402

from temtwin.twin.boundaries import shoelace  # noqa: E402
from temtwin.twin.fem import read_gds_polygons  # noqa: E402
from temtwin.twin.mesh import read_msh_areas  # noqa: E402
from temtwin.testing.twin_inputs import write_image_results  # noqa: E402
from temtwin.workflow.context import StageContext  # noqa: E402


def voronoi_labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    pts = rng.random((k, 2)) * n
    yy, xx = np.mgrid[0:n, 0:n]
    _, lab = cKDTree(pts).query(np.column_stack([yy.ravel(), xx.ravel()]))
    return (lab.reshape(n, n) + 1).astype(np.int32)


def run_case(name: str, labels: np.ndarray, px: float, image=None, cfg=None) -> list:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        img = np.zeros(labels.shape, np.float32) if image is None else image
        paths = write_image_results(d / "s" / "im", img, (px, px), labels, {})
        out = {"h5": d / "s/fem/fem.h5", "gds": d / "s/fem/geometry.gds", "mesh": d / "s/fem/mesh.msh",
               "regions": d / "s/fem/regions.json", "figures": d / "s/figures/fem_geometry"}
        ctx = StageContext.create("fem_geometry", {"stack": "", "images": [paths["image"]],
                                                   "segmentations": [paths["segmentation"]],
                                                   "phases": [paths["phases"]], "gpas": [paths["gpa"]]},
                                  out, {"fem_geometry": cfg or {}}, wildcards={"sample": "s"})
        from temtwin.stages import fem_geometry

        t0 = time.perf_counter()
        fem_geometry.run(ctx)
        t = time.perf_counter() - t0
        doc = json.loads(out["regions"].read_text())
        regs = doc["regions"]
        area_err = max(abs(r["area_nm2"] / r["area_label_map_nm2"] - 1) for r in regs.values())
        mesh_err = max(abs(r["mesh_area_error"]) for r in regs.values())
        back = read_msh_areas(out["mesh"])
        file_err = max(abs(back[r["mesh_physical_group"]["name"]] / r["area_label_map_nm2"] - 1)
                       for r in regs.values())
        gds = read_gds_polygons(out["gds"])
        gds_err = max(abs(sum(abs(shoelace(p)) for p in gds[int(k)]) / r["area_nm2"] - 1) for k, r in regs.items())
        import h5py

        with h5py.File(out["h5"]) as f:
            nv = int(f["regions/n_vertices"][()].sum())
        m = doc["mesh"]
        return [name, f"{labels.shape[0]}x{labels.shape[1]}", len(regs), nv, f"{area_err:.2e}", f"{mesh_err:.2e}",
                f"{file_err:.2e}", f"{gds_err:.1e}", m["n_nodes"], m["n_elements"], f"{m['min_quality']:.2f}",
                f"{t:.2f}"]


def main() -> None:
    rows = []
    v = validation_root()
    notes = []
    if v is not None:
        case = v / "stack" / "device_dev"
        if case.is_dir():
            tj, tz = load_truth(case)
            lab = tz["overview_labels"].astype(np.int32) + 1
            px = float(tj.get("images", {}).get("overview.hspy", {}).get("pixel_size_nm", 0.25))
            rows.append(run_case("stack overview (11 materials)", lab, px, tz["overview_noisefree"]))
            lab = tz["medium_1_labels"].astype(np.int32) + 1
            rows.append(run_case("stack medium_1", lab, 0.08, tz["medium_1_noisefree"]))
        case = v / "sige_qw" / "qw_dev"
        if case.is_dir():
            tj, tz = load_truth(case)
            rows.append(run_case("sige_qw (3 layers)", tz["labels"].astype(np.int32) + 1, 0.024, tz["hrtem_noisefree"]))
    else:
        notes.append("Validation set not found: validation cases skipped.")
    for n, k in ((512, 30), (1024, 100), (2048, 300)):
        rows.append(run_case(f"Voronoi {k} regions", voronoi_labels(n, k), 1.0, cfg={"mesh_size_nm": n / 40}))
    body = (f"Whole `fem_geometry` stage per label map (machine: {machine()}; timings taken under load from "
            "other jobs). Columns: polygon area error = max over regions |simplified polygon area / "
            "label-map area − 1| (tolerance 1 px); mesh area error = same for the gmsh mesh (target ≤ 1 %); "
            "re-read = areas of the written .msh read back with gmsh; GDS = area of the polygons read back "
            "with gdstk vs the polygons.\n\n")
    body += md_table(["case", "pixels", "regions", "vertices", "polygon area err", "mesh area err",
                      "re-read .msh err", "GDS round-trip err", "nodes", "triangles", "min quality", "time (s)"], rows)
    body += f"\n\nPeak memory of the bench process: {peak_rss_mb():.0f} MB.\n"
    if notes:
        body += "\n" + "\n".join(notes) + "\n"
    write_section("fem_geometry", "FEM geometry (fem_geometry)", body)
    print(body)


if __name__ == "__main__":
    main()
