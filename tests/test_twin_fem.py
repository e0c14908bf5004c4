"""FEM geometry: conformal polygons, GDS round trip, gmsh mesh areas, the fem_geometry stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from temtwin.io.h5 import missing_units, read_summary
from temtwin.testing.synth import lowmag_device
from temtwin.twin.boundaries import region_boundaries, shoelace
from temtwin.twin.fem import read_gds_polygons, write_gds
from temtwin.twin.mesh import build_mesh, read_msh_areas
from temtwin.testing.twin_inputs import write_layered_inputs
from temtwin.workflow.context import StageContext


@pytest.fixture(scope="module")
def device_labels():
    """A low-magnification device: rough layers, a round wire inside a layer (a hole), unassigned corner."""
    sc = lowmag_device(shape=(160, 200), pixel_size_nm=(1.0, 1.0), dose=None, seed=2)
    lab = sc.labels.copy()
    lab[:6, :9] = 0
    return lab


def _areas(lab, px):
    return {int(k): float((lab == k).sum()) * px[0] * px[1] for k in np.unique(lab) if k > 0}


def test_polygons_are_conformal_and_keep_areas(device_labels):
    px = (1.0, 1.0)
    b = region_boundaries(device_labels, px, 1.0)
    areas = _areas(device_labels, px)
    assert set(b.regions) == set(areas)
    for k, a in areas.items():
        assert b.area(k, simplified=False) == pytest.approx(a, rel=1e-12)   # exact pixel boundary
        assert b.area(k) == pytest.approx(a, rel=0.005)                     # simplified
    # conformal: each interface chain's vertices occur in both neighbours' rings
    for (a_, b_), idx in b.interfaces().items():
        if a_ < 0:
            continue
        verts = {tuple(np.round(v, 9)) for i in idx for v in b.chains[i].simplified}
        for lab in (a_, b_):
            ring_v = {tuple(np.round(v, 9)) for outer, holes in b.polygons(lab) for r in [outer, *holes] for v in r}
            assert verts <= ring_v
    # the wire (last label) is a hole in its host layer
    assert any(len(holes) for lab in b.regions for _, holes in b.polygons(lab))
    # simplification removes most vertices of the rough boundaries
    raw = sum(len(c.corners) for c in b.chains)
    kept = sum(len(c.simplified) for c in b.chains)
    assert kept < 0.5 * raw


def test_gds_round_trip(tmp_path, device_labels):
    px = (1.0, 1.0)
    b = region_boundaries(device_labels, px, 1.0)
    phases = {1: "Pt", 4: "Si"}
    info = write_gds(tmp_path / "g.gds", b, phases, {"Pt": 1, "Si": 2})
    back = read_gds_polygons(tmp_path / "g.gds")
    assert set(back) == set(b.regions)
    for lab in b.regions:
        polys = b.polygons(lab)
        got = back[lab]
        # total area (holes subtracted by gdstk's keyhole polygons) is the same
        assert sum(abs(shoelace(p)) for p in got) == pytest.approx(b.area(lab), rel=1e-9, abs=1e-6)
        if not any(h for _, h in polys):
            # no hole: the same vertices (to the 1 pm GDS precision), up to start point/orientation
            assert len(got) == len(polys)
            for g, outer in zip(sorted(got, key=len), sorted([o for o, _ in polys], key=len)):
                assert len(g) == len(outer)
                d = np.linalg.norm(g[:, None, :] - outer[None, :, :], axis=2).min(1)
                assert d.max() < 2e-3
    assert info[4]["datatype"] == 2 and info[1]["layer"] == 1 and info[2]["datatype"] == 0
    import gdstk

    labels = [lb.text for lb in gdstk.read_gds(str(tmp_path / "g.gds")).cells[0].labels]
    assert "1:Pt" in labels and "4:Si" in labels


def test_mesh_region_areas_match_label_map(tmp_path, device_labels):
    px = (1.0, 1.0)
    b = region_boundaries(device_labels, px, 1.0)
    st = build_mesh(b, tmp_path / "m.msh", 8.0, 4.0)
    areas = _areas(device_labels, px)
    for k, a in areas.items():
        assert st["region_area_nm2"][k] == pytest.approx(a, rel=0.01)
    # the written file, read back independently, has the same physical groups and areas
    back = read_msh_areas(tmp_path / "m.msh")
    for k, a in areas.items():
        assert back[f"region_{k}"] == pytest.approx(a, rel=0.01)
    # conformal mesh: no overlap, no gap -> total = labelled area
    assert sum(st["region_area_nm2"].values()) == pytest.approx(sum(areas.values()), rel=1e-9)
    assert len(st["groups"]["interfaces"]) >= 5 and st["min_quality"] > 0.2
    # refinement: elements touching interfaces are smaller than the far-field ones
    nodes, tri = st["arrays"]["nodes"], st["arrays"]["triangles"]
    e = np.linalg.norm(nodes[tri[:, 1]] - nodes[tri[:, 0]], axis=1)
    assert e.min() < 3.0 and np.percentile(e, 95) > 5.0


def test_fem_stage_outputs(tmp_path):
    sc, p = write_layered_inputs(tmp_path / "s" / "im")
    d = tmp_path / "s"
    out = {"h5": d / "fem/fem.h5", "gds": d / "fem/geometry.gds", "mesh": d / "fem/mesh.msh",
           "regions": d / "fem/regions.json", "figures": d / "figures/fem_geometry"}
    ctx = StageContext.create("fem_geometry", {"stack": "", "images": [p["image"]],
                                               "segmentations": [p["segmentation"]],
                                               "phases": [p["phases"]], "gpas": [p["gpa"]]}, out,
                              {"fem_geometry": {"mesh_size_nm": 0.5}}, wildcards={"sample": "s"})
    from temtwin.stages import fem_geometry

    fem_geometry.run(ctx)
    s = read_summary(out["h5"])["fem"]
    assert s["n_regions"] == 3 and s["mesh"]["n_nodes"] > 50 and s["mesh"]["n_elements"] > 50
    assert set(s["files"]) == {"h5", "gds", "mesh", "regions"}
    assert missing_units(out["h5"]) == []
    doc = json.loads(out["regions"].read_text())
    qw = doc["regions"]["2"]
    assert qw["phase"] == "Ge" and qw["lattice"]["a_nm"] == pytest.approx(0.5658, abs=1e-4)
    assert qw["mean_strain"]["eyy"] == pytest.approx(0.0231, abs=1e-3)
    assert doc["regions"]["1"]["mean_strain"]["eyy"] == pytest.approx(0.0, abs=1e-9)
    assert abs(qw["mesh_area_error"]) < 0.01 and qw["zone_axis"] in ([1, 1, 0], [-1, -1, 0])
    # orientation matrix in model axes = image one with y and z flipped
    assert np.allclose(qw["orientation_matrix"], np.diag([1, -1, -1]) @ np.array(qw["orientation_matrix_image"]))
    assert doc["phases"] == {"Ge": 1, "Si": 2}
    assert sorted(x.name for x in out["figures"].iterdir()) == ["geometry.png", "mesh.png"]
    assert len(read_gds_polygons(out["gds"])) == 3


def test_mean_strain_from_a_registered_high_resolution_image():
    """Strain measured in a rotated high-resolution image lands in the right overview region, rotated."""
    from temtwin.stages.fem_geometry import mean_strains
    from temtwin.twin.inputs import Gpa, ImageInputs

    ov_labels = np.ones((100, 100), np.int32)
    ov_labels[:, 50:] = 2
    ov = ImageInputs("overview", (1.0, 1.0), (100, 100), ov_labels, gpa=Gpa(False))
    n = 50
    strain = {"exx": np.zeros((n, n)), "eyy": np.full((n, n), 0.02), "exy": np.full((n, n), 0.005),
              "rotation": np.full((n, n), 0.001)}
    hr = ImageInputs("hr", (0.1, 0.1), (n, n), np.ones((n, n), np.int32),
                     gpa=Gpa(True, strain=strain, mask=np.ones((n, n), bool)))
    th = np.pi / 2          # the high-resolution image's x axis is the overview's y axis
    T = np.array([[0.1 * np.cos(th), -0.1 * np.sin(th), 60.0], [0.1 * np.sin(th), 0.1 * np.cos(th), 20.0]])
    stack = {"overview": "overview", "images": {"hr": {"transform": T, "accepted": True}}}
    out = mean_strains(ov, [ov, hr], stack, ov_labels)
    assert set(out) == {2}
    s = out[2]
    assert s["exx"] == pytest.approx(0.02) and s["eyy"] == pytest.approx(0.0, abs=1e-12)
    assert s["exy"] == pytest.approx(-0.005) and s["rotation_deg"] == pytest.approx(np.degrees(0.001))
    assert s["n_pixels"] == n * n and s["source"] == ["hr"]
