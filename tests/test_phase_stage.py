"""Rule `phase_id` end to end: phases.h5 layout, summary, relative orientation, Bragg maps, figures,
candidate selection from sample.yaml / config, broken CIFs and empty candidate lists."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, missing_units, read_summary, read_table, write_array, write_table
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.phase.database import builtin_phase_files, load_builtin
from temtwin.phase.orientation import misorientation
from temtwin.testing.phase_spots import simulate_spots
from temtwin.stages.phase_id import run
from temtwin.phase.zones import same_zone
from temtwin.testing.synth.crystal import load_structure, orientation_matrix, oriented_atoms
from temtwin.testing.synth.render import add_noise, render_atoms
from temtwin.workflow.context import StageContext

SHAPE, PX, ROT = (192, 192), (0.025, 0.025), 6.5


def _orientation(phase: str):
    st = load_structure(phase)
    return orientation_matrix(st, (1, 1, 0), ROT, reference=(1, -1, 0))


def _write_peaks(path, regions: dict, shape=SHAPE) -> None:
    """peaks.h5 in the documented layout from {label: (kx, ky, snr, crystalline)} (image ``shape``)."""
    with atomic_h5(path) as f:
        rg = f.require_group("regions")
        for label, (kx, ky, snr, cryst) in regions.items():
            g = rg.require_group(str(label))
            g.attrs["crystalline"] = bool(cryst)
            g.attrs["window_px"] = np.array([0, 0, shape[0], shape[1]])
            g.attrs["fft_sampling_nm-1"] = 0.1
            kx, ky = np.asarray(kx, float), np.asarray(ky, float)
            write_table(g, "peaks", {"kx": (kx, "nm^-1"), "ky": (ky, "nm^-1"), "g": (np.hypot(kx, ky), "nm^-1"),
                                     "d": (1 / np.maximum(np.hypot(kx, ky), 1e-9), "nm"),
                                     "angle_deg": (np.degrees(np.arctan2(ky, kx)), "deg"),
                                     "intensity": (np.asarray(snr, float), "a.u."),
                                     "snr": (np.asarray(snr, float), "1"),
                                     "detectors": (np.ones(len(kx), np.uint8), "1")})
            z = np.random.default_rng(label).normal(size=(64, 64)).astype(np.float32)
            write_array(g, "fft", z, "1", **{"k_extent_nm-1": np.array([-12.5, 12.5, -12.5, 12.5])})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """InP (bottom, label 1) / InSb (top, label 2), both [110] cube-on-cube; label 3 an amorphous strip."""
    tmp = tmp_path_factory.mktemp("phase_scene")
    W, H = SHAPE[1] * PX[0], SHAPE[0] * PX[1]
    pos_all, Z_all = [], []
    for ph, y0, y1 in (("InP", H / 2, H), ("InSb", 0.0, H / 2)):
        pos, Z = oriented_atoms(load_structure(ph), _orientation(ph), (W + 2, H + 2, 2.5))
        pos[:, :2] -= 1
        k = (pos[:, 1] >= y0) & (pos[:, 1] < y1)
        pos_all.append(pos[k])
        Z_all.append(Z[k])
    clean = render_atoms(np.vstack(pos_all), np.concatenate(Z_all), SHAPE, PX, mode="haadf", sigma_nm=0.05,
                         background=0.05)
    img = add_noise(clean, np.random.default_rng(0), 600)
    labels = np.where(np.arange(SHAPE[0])[:, None] >= SHAPE[0] // 2, 1, 2) * np.ones(SHAPE, np.int32)
    labels[:, :16] = 3
    m = Micrograph(img.astype(np.float32), PX, name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0", "mode": "TEM"})
    with atomic_h5(tmp / "image.h5") as f:
        write_image_h5(f, m)
    with atomic_h5(tmp / "segmentation.h5") as f:
        write_array(f, "labels", labels, "label")
    db = {p.name: p for p in load_builtin(["InP", "InSb"])}
    rng = np.random.default_rng(4)
    regions = {}
    for label, ph in ((1, "InP"), (2, "InSb")):
        sim = simulate_spots(db[ph], (1, 1, 0), 0.0, rng, g_max=9.0, missing=0.15, n_spurious=1,
                             orientation=_orientation(ph))
        regions[label] = (sim.kx, sim.ky, sim.snr, True)
    v = np.array([2.1 + 0.4j, -2.1 - 0.4j])
    regions[3] = (v.real, v.imag, [3.0, 3.0], False)
    _write_peaks(tmp / "peaks.h5", regions)
    return tmp, labels


def _ctx(tmp, out, cifs=None, settings=(), config=None):
    cifs = [str(p) for p in builtin_phase_files()] if cifs is None else [str(c) for c in cifs]
    return StageContext.create(
        "phase_id", {"image": str(tmp / "image.h5"), "segmentation": str(tmp / "segmentation.h5"),
                     "peaks": str(tmp / "peaks.h5"), "cifs": cifs, "settings": [str(s) for s in settings]},
        {"h5": str(out / "phases.h5"), "figures": str(out / "figs")}, {"phase_id": config or {}},
        wildcards={"sample": "s", "image": "img"})


def test_stage_layout_summary_orientation_and_bragg(scene, tmp_path):
    tmp, labels = scene
    yml = tmp_path / "sample.yaml"
    yml.write_text("elements: [In, P, Sb]\n")
    run(_ctx(tmp, tmp_path, settings=[yml]))
    out = tmp_path / "phases.h5"
    assert missing_units(out) == []
    db = {p.name: p for p in load_builtin(["InP", "InSb"])}
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["candidates"]) == ["InP", "InSb"]
        for label, ph in (("1", "InP"), ("2", "InSb")):
            g = f["regions"][label]
            assert g.attrs["phase"] == ph and bool(g.attrs["identified"])
            assert g.attrs["space_group"] == "F-43m"
            assert same_zone(db[ph], g.attrs["zone_axis"], (1, 1, 0))
            assert len(g.attrs["zone_axis_4"]) == 0
            assert g.attrs["scale_factor"] == pytest.approx(1.0, abs=0.01)
            M = g["orientation_matrix"][()]
            assert misorientation(db[ph], M, db[ph], _orientation(ph)).angle_deg < 0.3
            # rotation_deg: smallest image angle of the {111} reflections (largest d allowed)
            h = np.array([[1, -1, 1], [1, -1, -1], [-1, 1, 1], [-1, 1, -1]])
            gi = (h @ db[ph].reciprocal_nm) @ _orientation(ph).T
            true_rot = (np.degrees(np.arctan2(gi[:, 1], gi[:, 0])) % 360).min()
            assert g.attrs["rotation_deg"] == pytest.approx(true_rot, abs=0.3)
            cand = read_table(g["candidates"])
            assert cand["rank"].tolist()[:2] == [1, 2] and cand["phase"][0] == ph
            assert np.all(np.diff(cand["score"]) <= 1e-12)
            spots = read_table(g["spots"])
            hkl = np.c_[spots["h"], spots["k"], spots["l"]]
            gm = np.hypot(spots["kx"], spots["ky"])
            gt = np.linalg.norm(hkl @ db[ph].reciprocal_nm, axis=1)
            assert len(gm) >= 8 and np.allclose(gm, gt, rtol=0.02)
            assert np.all(hkl @ np.asarray(g.attrs["zone_axis"]) == 0)      # zone law
            assert f["phases"][ph].attrs["cif"].startswith("#") or "data_" in f["phases"][ph].attrs["cif"]
            assert np.allclose(f["phases"][ph].attrs["lattice_abc_nm"], db[ph].abc_nm)
        g3 = f["regions"]["3"]
        assert not bool(g3.attrs["identified"]) and g3.attrs["phase"] == "" and g3.attrs["reason"]
        assert np.all(np.isnan(g3["orientation_matrix"][()]))
        # Bragg maps: each crystal's map is high in its own half, the crystal map matches the labels
        cmap = f["bragg"]["crystal_map"][()]
        tab = read_table(f["bragg"]["crystals"])
        assert sorted(tab["region"].tolist()) == [1, 2]
        rows = np.arange(SHAPE[0])
        far = np.abs(rows - SHAPE[0] // 2) > 1.5 / PX[1]     # more than 1.5 nm from the interface
        sel = far[:, None] & (labels != 3)
        want = np.zeros_like(labels)
        for i, r in enumerate(tab["region"].tolist()):
            want[labels == r] = i + 1
        assert np.mean(cmap[sel] == want[sel]) >= 0.9
        a1 = f["bragg"]["1"][()]
        assert np.median(a1[labels == 1]) > 1.8 * np.median(a1[(labels == 2) & far[:, None]])
    s = read_summary(out)
    r1 = s["regions"]["1"]
    assert set(r1) >= {"phase", "space_group", "zone_axis", "orientation_matrix", "scale_factor", "phase_score",
                       "candidates", "rotation_deg"}
    assert r1["phase"] == "InP" and len(r1["candidates"]) >= 2
    assert set(r1["candidates"][0]) == {"phase", "zone_axis", "score", "confidence"}
    rel = s["relative_orientations"]
    pair = [r for r in rel if sorted(r["phases"]) == ["InP", "InSb"]]
    assert pair and pair[0]["angle_deg"] < 0.5 and pair[0]["relation"].startswith("cube-on-cube")
    assert (tmp_path / "figs" / "region_1.png").is_file() and (tmp_path / "figs" / "bragg.png").is_file()


def test_stage_skips_broken_cif_and_honours_config_phases(scene, tmp_path, caplog):
    tmp, _ = scene
    bad = tmp_path / "Broken.cif"
    bad.write_text("data_x\n_cell_length_a abc\nloop_\n_atom_site_label\n")
    cifs = [bad, *builtin_phase_files()]
    ctx = _ctx(tmp, tmp_path, cifs=cifs, config={"phases": ["InP", "InSb", "GaAs"], "bragg": {"enabled": False},
                                                 "figures": False})
    with caplog.at_level(logging.WARNING, logger="temtwin"):
        run(ctx)
    assert any("Broken.cif" in r.getMessage() for r in caplog.records)
    with h5py.File(tmp_path / "phases.h5", "r") as f:
        assert set(json.loads(f.attrs["candidates"])) == {"InP", "InSb", "GaAs"}
        assert f["regions"]["1"].attrs["phase"] == "InP" and "bragg" not in f


def test_empty_candidate_list_is_a_clear_user_error(scene, tmp_path):
    tmp, _ = scene
    yml = tmp_path / "sample.yaml"
    yml.write_text("elements: [Xe]\n")
    with pytest.raises(UserError) as e:
        run(_ctx(tmp, tmp_path, settings=[yml]))
    msg = str(e.value)
    assert "sample.yaml" in msg and "`elements`" in msg and "\n" not in msg
    with pytest.raises(UserError) as e:
        run(_ctx(tmp, tmp_path, config={"phases": ["Kryptonite"]}))
    assert "phase_id.phases" in str(e.value)
    with pytest.raises(UserError) as e:
        run(_ctx(tmp, tmp_path, cifs=[]))
    assert "use_builtin_phases" in str(e.value) and "phase_id.cif_folders" in str(e.value)
    assert not (tmp_path / "phases.h5").exists()


def test_with_the_fft_peak_finder(tmp_path):
    """Integration: a simulated HAADF GaAs [001] crystal through rule fft_peaks, then phase_id."""
    pytest.importorskip("temtwin.stages.fft_peaks")
    from temtwin.stages.fft_peaks import run as run_peaks
    from temtwin.testing.synth import crystal_scene

    s = crystal_scene("GaAs", (0, 0, 1), 23.0, shape=(256, 256), pixel_size_nm=(0.02, 0.02), dose=800, seed=2)
    m = Micrograph(np.asarray(s.image, np.float32), (0.02, 0.02), name="img", sample="s",
                   meta={"units": "counts", "source_file": "x.tif", "source_sha256": "0", "mode": "STEM"})
    with atomic_h5(tmp_path / "image.h5") as f:
        write_image_h5(f, m)
    with atomic_h5(tmp_path / "segmentation.h5") as f:
        write_array(f, "labels", np.ones((256, 256), np.int32), "label")
    run_peaks(StageContext.create("fft_peaks", {"image": str(tmp_path / "image.h5"),
                                                "segmentation": str(tmp_path / "segmentation.h5")},
                                  {"h5": str(tmp_path / "peaks.h5"), "figures": str(tmp_path / "fp")},
                                  {"fft_peaks": {"detectors": ["gaussian", "profile"]}}))
    run(_ctx(tmp_path, tmp_path, config={"elements": ["Ga", "As", "Si", "Au", "In", "P"]}))
    db = {p.name: p for p in load_builtin(["GaAs"])}
    with h5py.File(tmp_path / "phases.h5", "r") as f:
        g = f["regions"]["1"]
        assert g.attrs["phase"] in ("GaAs",) and same_zone(db["GaAs"], g.attrs["zone_axis"], (0, 0, 1))
        M_true = np.asarray(s.truth["orientation_matrix"])
        assert misorientation(db["GaAs"], g["orientation_matrix"][()], db["GaAs"], M_true).angle_deg < 0.5


def test_stage_shares_the_calibration_between_regions(scene, tmp_path):
    """Two regions of one image whose spots all lie 3 % too far out (stated pixel size 3 % too small): a Cu
    [110] contact and InP [001], candidates Cu, GaAs, InP.  InP alone is GaAs seen 0.8 % large; the
    stage estimates the image's calibration (1.03) from both regions and identifies InP; with
    ``shared_calibration: false`` the region keeps the answer it gets alone."""
    tmp, _ = scene
    db = {p.name: p for p in load_builtin(["Cu", "GaAs", "InP"])}
    rng = np.random.default_rng(1)
    regions = {}
    for label, (ph, zone) in ((1, ("Cu", (1, 1, 0))), (2, ("InP", (0, 0, 1)))):
        sim = simulate_spots(db[ph], zone, rng.uniform(0, 360), rng, scale=1.03, g_max=9.0, missing=0.2)
        regions[label] = (sim.kx, sim.ky, sim.snr, True)
    _write_peaks(tmp_path / "peaks.h5", regions)
    found = {}
    for shared in (True, False):
        out = tmp_path / f"out_{shared}"
        out.mkdir()
        ctx = StageContext.create(
            "phase_id", {"image": str(tmp / "image.h5"), "segmentation": str(tmp / "segmentation.h5"),
                         "peaks": str(tmp_path / "peaks.h5"), "cifs": [str(p) for p in builtin_phase_files()],
                         "settings": []},
            {"h5": str(out / "phases.h5"), "figures": str(out / "figs")},
            {"phase_id": {"phases": ["Cu", "GaAs", "InP"], "shared_calibration": shared, "figures": False,
                          "bragg": {"enabled": False}}},
            wildcards={"sample": "s", "image": "img"})
        run(ctx)
        found[shared] = read_summary(out / "phases.h5")
    on, off = found[True], found[False]
    assert on["calibration"]["shared"] and on["calibration"]["scale_factor"] == pytest.approx(1.03, abs=0.006)
    assert on["regions"]["1"]["phase"] == "Cu" and on["regions"]["2"]["phase"] == "InP"
    assert on["regions"]["2"]["scale_factor"] == pytest.approx(1.03, abs=0.005)
    assert off["regions"]["2"]["phase"] == "GaAs" and not off["calibration"]["shared"]
