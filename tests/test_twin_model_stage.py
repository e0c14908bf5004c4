"""The atomic_model stage end to end on synthetic upstream results with exact truth."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.spatial import cKDTree

from temtwin.config import load_config
from temtwin.errors import UserError
from temtwin.io.h5 import missing_units, read_summary
from temtwin.testing.synth.crystal import load_structure, orientation_matrix
from temtwin.stages import atomic_model
from temtwin.results.model import Model
from temtwin.testing.twin_inputs import write_image_results, write_layered_inputs
from temtwin.workflow.context import StageContext

from conftest import write_hspy


def _run(tmp_path, paths, config=None, eels=(), settings=()):
    d = tmp_path / "s"
    out = {"h5": d / "model.h5", "extxyz": d / "model.extxyz", "lammps": d / "model.lmp",
           "figures": d / "figures" / "atomic_model"}
    ctx = StageContext.create("atomic_model", {
        "stack": "", "images": [paths["image"]], "segmentations": [paths["segmentation"]],
        "phases": [paths["phases"]], "gpas": [paths["gpa"]], "eels": [str(e) for e in eels],
        "settings": [str(s) for s in settings]}, out, config or {}, wildcards={"sample": "s"})
    atomic_model.run(ctx)
    return out


def test_layered_round_trip_positions_counts_and_outputs(tmp_path):
    """Virtual cell from the g vectors + the exact displacement + image registration → true atoms."""
    sc, paths = write_layered_inputs(tmp_path / "s" / "im", shape=(200, 200), thickness_nm=2.0)
    out = _run(tmp_path, paths, {"atomic_model": {"thickness_nm": 2.0, "periodic_along_beam": True}})
    atoms = Model.core(out["h5"]).to_atoms()
    s = read_summary(out["h5"])["model"]
    # in-plane: every model column sits on a true column (projection removes the z gauge)
    p = atoms.positions / 10.0
    tree = cKDTree(sc.positions_nm[:, :2])
    d, k = tree.query(p[:, :2])
    assert d.max() < 5e-3                                # image registration of the origin: < 5 pm
    offset = np.median(sc.positions_nm[k, :2] - p[:, :2], axis=0)
    d, _ = tree.query(p[:, :2] + offset)
    assert d.max() < 1e-4                                # relative positions (strain): < 0.1 pm
    # periodic along the beam: thickness = 5 periods a/sqrt(2) of the virtual (SiGe) cell
    a = sc.truth["reference_a_A"] / 10.0
    t = 5 * a / np.sqrt(2)
    assert s["thickness_nm"] == pytest.approx(t, rel=1e-9) and s["periodic_along_beam"]
    assert atoms.pbc.tolist() == [False, False, True] and atoms.cell[2, 2] == pytest.approx(10 * t)
    # count: the true columns whose position falls in a region's pixels, 5 atoms each (one per period)
    cols = np.unique(np.round(sc.positions_nm[:, :2], 6), axis=0)
    j, i = np.rint(cols[:, 0] / 0.02).astype(int), np.rint(cols[:, 1] / 0.02).astype(int)
    ok = (i >= 0) & (i < 200) & (j >= 0) & (j < 200)
    lab = np.zeros(len(cols), int)
    lab[ok] = sc.labels[i[ok], j[ok]]
    for r in (1, 2, 3):
        assert s["regions"][str(r)]["n_atoms"] == pytest.approx(5 * (lab == r).sum(), rel=0.005)
    assert s["regions"]["2"]["kind"] == "epitaxial" and s["regions"]["2"]["phase"] == "Ge"
    assert s["n_atoms"] == len(atoms)
    assert s["registration"]["1"]["contrast"] == "bright"
    assert s["quality"]["flagged_fraction"] == 0.0 and s["removed_close_atoms"] == 0
    # Model.core(...).to_atoms() contract used by the physics stages
    assert set(atoms.arrays) >= {"region", "displacement_nm", "source_pixel"}
    assert atoms.info["image"] == "im" and atoms.info["applicable"] and atoms.info["thickness_nm"] == pytest.approx(t)
    assert np.allclose(atoms.info["growth_direction"], [0, -1, 0], atol=1e-6)
    assert np.allclose(atoms.info["pixel_size_nm"], [0.02, 0.02])
    # displacement applied = true one: uy at the top of the QW = -(1.5 nm QW) * eyy/(1+eyy)
    top = atoms.arrays["region"] == 3
    assert np.allclose(atoms.arrays["displacement_nm"][top, 1], -1.5 * 0.0231 / 1.0231, atol=1e-6)
    assert missing_units(out["h5"]) == []
    # extxyz and LAMMPS readable by ASE, same atoms
    import ase.io

    x = ase.io.read(out["extxyz"])
    assert len(x) == len(atoms) and np.allclose(x.positions, atoms.positions, atol=1e-5)
    assert np.array_equal(x.arrays["region"], atoms.arrays["region"])
    assert np.allclose(x.arrays["displacement"], atoms.arrays["displacement_nm"] * 10, atol=1e-5)
    lmp = ase.io.read(out["lammps"], format="lammps-data", atom_style="atomic", units="metal")
    assert len(lmp) == len(atoms)
    assert sorted(f.name for f in out["figures"].iterdir()) == ["displacement.png", "quality.png", "species.png"]


def test_composition_from_eels_maps_and_determinism(tmp_path):
    """Ge map over a Si-phase model: fractions per layer, sublattice (group IV) kept, rerun identical."""
    sc, paths = write_layered_inputs(tmp_path / "s" / "im", shape=(160, 160), thickness_nm=1.5)
    pe = 0.2
    # Ge fraction map from the design (0.7 / 1.0 / 0.7), map pixel (0,0) at image (0.1, 0.1) nm
    lab = sc.labels
    ge = np.where(lab == 2, 1.0, 0.7)
    m = ge[:150, :150].reshape(15, 10, 15, 10).mean((1, 3))
    write_hspy(tmp_path / "eels" / "Ge.hspy", m.astype(np.float32), scale=(pe, pe))
    sy = tmp_path / "sample.yaml"
    sy.write_text("eels:\n  offset_nm: [0.09, 0.09]\n")
    cfg = {"atomic_model": {"thickness_nm": 1.5}}
    out = _run(tmp_path, paths, cfg, eels=[tmp_path / "eels" / "Ge.hspy"], settings=[sy])
    a = Model.core(out["h5"]).to_atoms()
    s = read_summary(out["h5"])["model"]
    assert s["composition"]["applied"] and s["composition"]["offset_source"] == "given"
    Z = a.numbers
    reg = a.arrays["region"]
    inner = (a.positions[:, 0] > 1.0) & (a.positions[:, 0] < 29.0) & (a.positions[:, 1] < 29.0)
    sel = (reg == 1) & inner
    # each site is drawn from the local fraction: binomial scatter of the layer mean (4 sigma)
    assert (Z[sel] == 32).mean() == pytest.approx(0.7, abs=4 * np.sqrt(0.7 * 0.3 / sel.sum()) + 0.01)
    assert (Z[(reg == 2) & inner] == 32).mean() > 0.93          # map blur at the interfaces only
    assert set(np.unique(Z)) <= {14, 32}
    with h5py.File(out["h5"]) as f:
        assert set(np.unique(f["host_numbers"][()])) == {14, 32}    # Si sites (layers 1, 3), Ge sites (QW)
    first = (a.positions.copy(), Z.copy())
    out2 = _run(tmp_path, paths, cfg, eels=[tmp_path / "eels" / "Ge.hspy"], settings=[sy])
    b = Model.core(out2["h5"]).to_atoms()
    assert np.array_equal(b.numbers, first[1]) and np.array_equal(b.positions, first[0])


def test_mismatched_region_gets_its_own_cell(tmp_path):
    """InSb on InP (10 % mismatch): two cells, each with its own ideal bonds; no atoms too close."""
    shape, px = (160, 160), 0.02
    lab = np.ones(shape, np.int32)
    lab[:80] = 2
    regions = {}
    for k, ph in ((1, "InP"), (2, "InSb")):
        st = load_structure(ph)
        M = orientation_matrix(st, (1, 1, 0), 0.0, reference=(1, -1, 0))
        regions[k] = dict(phase=ph, zone_axis=[1, 1, 0], orientation_matrix=M, space_group="F-43m")
    st = load_structure("InP")
    from temtwin.testing.twin_inputs import reciprocal_g

    g = reciprocal_g(st, regions[1]["orientation_matrix"], [[1, -1, -1], [2, -2, 0]])
    paths = write_image_results(tmp_path / "s" / "im", np.random.default_rng(0).random(shape), (px, px), lab,
                                regions, displacement=np.zeros((2, *shape)), g_vectors=g, reference_label=1)
    out = _run(tmp_path, paths, {"atomic_model": {"thickness_nm": 1.5, "origin": "zero"}})
    s = read_summary(out["h5"])["model"]
    assert s["regions"]["1"]["kind"] == "reference" and s["regions"]["2"]["kind"] == "mismatched"
    q = s["quality"]["regions"]
    assert q["1"]["ideal_nn_nm"] == pytest.approx(0.58687 * np.sqrt(3) / 4, rel=1e-6)
    assert q["2"]["ideal_nn_nm"] == pytest.approx(0.64794 * np.sqrt(3) / 4, rel=1e-6)
    a = Model.core(out["h5"]).to_atoms()
    nn, _ = cKDTree(a.positions).query(a.positions, k=2)
    assert nn[:, 1].min() >= s["min_distance_nm"] * 10 - 1e-9
    assert s["removed_close_atoms"] > 0              # the incoherent interface had clashes
    assert set(s["species"]) == {"In", "P", "Sb"}


def test_not_applicable_without_crystalline_regions(tmp_path):
    shape = (64, 64)
    paths = write_image_results(tmp_path / "s" / "im", np.zeros(shape), (0.05, 0.05), np.ones(shape, np.int32), {})
    out = _run(tmp_path, paths)
    a = Model.core(out["h5"]).to_atoms()
    assert len(a) == 0 and not a.info["applicable"] and "no image" in a.info["reason"]
    import ase.io

    assert len(ase.io.read(out["extxyz"])) == 0
    assert read_summary(out["h5"])["model"]["n_atoms"] == 0


def test_config_defaults_and_errors(tmp_path):
    cfg = load_config({}, require_dataset=False)
    assert cfg["atomic_model"]["thickness_nm"] == 2.0 and cfg["atomic_model"]["origin"] == "image"
    assert cfg["fem_geometry"]["interface_refinement"] == 4.0 and cfg["fem_geometry"]["simplify_tolerance_nm"] is None
    with pytest.raises(UserError, match="model.thicknes"):
        load_config({"atomic_model": {"thicknes_nm": 3}}, require_dataset=False)
    _, paths = write_layered_inputs(tmp_path / "s" / "im", shape=(100, 100), dose=None)
    with pytest.raises(UserError, match="max_atoms"):
        _run(tmp_path, paths, {"atomic_model": {"max_atoms": 100}})
    with pytest.raises(UserError, match="not an image"):
        _run(tmp_path, paths, {"atomic_model": {"image": "nope"}})
