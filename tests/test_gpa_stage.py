"""Rule `gpa` end to end with hand-written segmentation/peaks/phases files that follow the
documented layouts: result layout and units, automatic choices, strain of a layer, absolute lattice
and relaxed strain, rotated grain, frames, amorphous image (not applicable), config errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from temtwin.config import load_config
from temtwin.errors import UserError
from temtwin.stages.gpa import run
from temtwin.io.h5 import atomic_h5, missing_units, read_summary, read_table, write_array, write_table
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.testing.synth import crystal_scene, layered_scene, load_structure, render_atoms
from temtwin.workflow.context import StageContext

PX = (0.02, 0.02)
HKL = [(1, -1, 1), (1, -1, -1), (2, -2, 0), (0, 0, 4), (1, -1, 3), (1, -1, -3)]
INTENSITY = [1.0, 1.0, 0.8, 0.3, 0.4, 0.4]


def image_h5(path, data, px=PX):
    m = Micrograph(np.asarray(data, np.float32), px, name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0"})
    with atomic_h5(path) as f:
        write_image_h5(f, m)
    return path


def seg_h5(path, labels):
    with atomic_h5(path) as f:
        write_array(f, "labels", labels.astype(np.int32), "label")
    return path


def g_of(M, hkl, scale_y=1.0, phase="Si"):
    B = load_structure(phase).lattice.reciprocal_lattice_crystallographic.matrix * 10.0
    g = (np.asarray(M) @ (np.asarray(hkl, float) @ B))[:2]
    return np.array([g[0], g[1] / scale_y])


def peaks_h5(path, regions):
    """regions: {label: (crystalline, [(kx, ky, intensity), ...])}."""
    with atomic_h5(path) as f:
        for lab, (cryst, spots) in regions.items():
            g = f.require_group(f"regions/{lab}")
            g.attrs["crystalline"] = bool(cryst)
            if spots:
                k = np.array(spots, float)
                write_table(g, "peaks", {"kx": (k[:, 0], "nm^-1"), "ky": (k[:, 1], "nm^-1"),
                                         "g": (np.hypot(k[:, 0], k[:, 1]), "nm^-1"),
                                         "d": (1 / np.hypot(k[:, 0], k[:, 1]), "nm"),
                                         "angle_deg": (np.degrees(np.arctan2(k[:, 1], k[:, 0])), "deg"),
                                         "intensity": (k[:, 2], "a.u."), "snr": (50 * k[:, 2], "1"),
                                         "detectors": (np.ones(len(k), np.uint8), "1")})
    return path


def phases_h5(path, regions, phases):
    """regions: {label: (phase, rotation_deg, [(kx, ky, h, k, l), ...])}; phases: {name: a_nm}."""
    with atomic_h5(path) as f:
        for lab, (ph, rot, spots) in regions.items():
            g = f.require_group(f"regions/{lab}")
            g.attrs["phase"] = ph
            g.attrs["identified"] = bool(ph)
            g.attrs["zone_axis"] = np.array([1, 1, 0])
            g.attrs["rotation_deg"] = float(rot)
            s = np.array(spots, float)
            write_table(g, "spots", {"kx": (s[:, 0], "nm^-1"), "ky": (s[:, 1], "nm^-1"),
                                     "h": (s[:, 2].astype(int), "1"), "k": (s[:, 3].astype(int), "1"),
                                     "l": (s[:, 4].astype(int), "1"),
                                     "residual_nm-1": (np.zeros(len(s)), "nm^-1")})
        for name, a in phases.items():
            g = f.require_group(f"phases/{name}")
            g.attrs["lattice_abc_nm"] = np.array([a, a, a])
            g.attrs["lattice_angles_deg"] = np.array([90.0, 90.0, 90.0])
            g.attrs["space_group"] = "Fd-3m"
            g.attrs["cif"] = ""
    return path


def ctx_for(tmp_path, image, seg=None, peaks=None, phases=None, config=None):
    inputs = {"image": str(image), "segmentation": str(seg or tmp_path / "none1.h5"),
              "peaks": str(peaks or tmp_path / "none2.h5"), "phases": str(phases or tmp_path / "none3.h5")}
    return StageContext.create("gpa", inputs, {"h5": str(tmp_path / "gpa.h5"), "figures": str(tmp_path / "figs")},
                               {"gpa": config or {}}, threads=2)


LAYERS = [dict(thickness_nm=3.2), dict(thickness_nm=3.0, eyy=0.02), dict(thickness_nm=1.9)]


@pytest.fixture(scope="module")
def stack():
    return layered_scene(layers=LAYERS, shape=(410, 300), pixel_size_nm=PX, dose=2000, seed=7)


def test_layered_stack_with_peaks_and_phases(tmp_path, stack):
    s = stack
    M = s.truth["orientation_matrix"]
    img = image_h5(tmp_path / "image.h5", s.image)
    seg = seg_h5(tmp_path / "segmentation.h5", s.labels)
    scale = {1: 1.0, 2: 1.02, 3: 1.0}
    pk = {lab: (True, [(*g_of(M, h, scale[lab]), i) for h, i in zip(HKL, INTENSITY)]) for lab in (1, 2, 3)}
    pk[0] = (False, [])
    peaks = peaks_h5(tmp_path / "peaks.h5", pk)
    # the middle layer is identified as a phase 2 % larger: it is relaxed along y, compressed along x
    ph = {lab: ("Si" if lab != 2 else "Ge2", 0.0, [(*g_of(M, h, scale[lab]), *h) for h in HKL]) for lab in (1, 2, 3)}
    phases = phases_h5(tmp_path / "phases.h5", ph, {"Si": 0.5431, "Ge2": 0.5431 * 1.02})
    run(ctx_for(tmp_path, img, seg, peaks, phases, {"frame": "interface"}))
    out = tmp_path / "gpa.h5"
    assert missing_units(out) == []
    with h5py.File(out) as f:
        assert f.attrs["applicable"] and f.attrs["reason"] == ""
        assert f.attrs["reference_label"] == 1                        # bottom layer = substrate
        assert 0.5 < f.attrs["resolution_nm"] < 2.0
        g = f["g_vectors"][()]
        assert g.shape == (2, 2)
        want = [g_of(M, h) for h in HKL]
        for gi in g:                                                 # g are lattice reflections
            assert min(min(np.hypot(*(gi - w)), np.hypot(*(gi + w))) for w in want) < 0.01
        for k in ("exx", "eyy", "exy"):
            assert f["strain"][k].shape == s.image.shape and f["strain"][k].attrs["units"] == "1"
        assert f["rotation"].attrs["units"] == "rad"
        assert f["displacement"].shape == (2, *s.image.shape) and f["displacement"].attrs["units"] == "nm"
        assert f["amplitude"].shape == (2, *s.image.shape)
        code = f["invalid_reason"][()]
        # valid inside, except within half a resolution of the interfaces (reason code 3)
        assert f["mask"].dtype == bool and (f["mask"][()] | (code == 3))[50:-50, 50:-50].all()
        assert (code == 3).any() and not f["mask"][()][code == 3].any()
        assert f["strain_sigma"]["eyy"].attrs["units"] == "1" and f["rotation_sigma"].attrs["units"] == "rad"
        t = read_table(f["regions"])
        lat = f["lattice"]
        assert lat.attrs["reference_phase"] == "Si"
        assert lat.attrs["calibration"] == pytest.approx(1.0, abs=2e-3)
        a = lat["a_from_g"][()]
        rel = {k: f["strain_relaxed"][k][()] for k in ("exx", "eyy", "exy")}
        fr = f["strain_frame"]
        assert fr.attrs["frame"] == "interface" and abs(fr.attrs["angle_deg"]) < 2.0
    row = {int(l): i for i, l in enumerate(t["label"])}
    i2 = row[2]
    assert t["eyy_mean"][i2] == pytest.approx(0.02, abs=1.5e-3)
    assert abs(t["exx_mean"][i2]) < 1e-3 and abs(t["exy_mean"][i2]) < 1e-3
    assert abs(t["eyy_mean"][row[1]]) < 5e-4
    # relaxed strain of the middle layer: F * a_Si / a_Ge2 - 1 = (1/1.02 - 1, 1.02/1.02 - 1)
    assert t["exx_relaxed_mean"][i2] == pytest.approx(1 / 1.02 - 1, abs=1.5e-3)
    assert t["eyy_relaxed_mean"][i2] == pytest.approx(0.0, abs=1.5e-3)
    assert t["eyy_relaxed_mean"][row[1]] == pytest.approx(0.0, abs=5e-4)
    # absolute lattice parameter of the layer along [001] from a reflection with l != 0
    mid = (s.labels == 2)
    mid[:, :60] = False
    mid[:, -60:] = False
    ys = np.nonzero(mid.any(1))[0]
    mid[: ys[0] + 60] = False
    mid[ys[-1] - 60:] = False
    summ = read_summary(out)
    hkl = summ["gpa"]["hkl"]
    j = [i for i, h in enumerate(hkl) if h[2] != 0][0]
    aj = np.nanmean(a[j][mid])
    assert 0.5431 < aj < 0.5431 * 1.021
    assert np.isfinite(rel["eyy"][mid]).all()
    # summary fragment
    assert set(summ["gpa"]) >= {"reference_label", "g_vectors_nm-1", "resolution_nm"}
    st = summ["regions"]["2"]["strain"]
    assert set(st) == {"exx", "eyy", "exy", "rotation_deg"} and set(st["eyy"]) == {"mean", "std", "se"}
    assert 0 < st["eyy"]["se"] < 1e-3
    assert st["eyy"]["mean"] == pytest.approx(0.02, abs=1.5e-3)
    json.dumps(summ)
    figs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert {"strain.png", "strain_sigma.png", "rotation.png", "displacement.png", "choices.png",
            "strain_interface.png"} <= set(figs)


def test_own_spot_finding_and_a_rotated_grain(tmp_path):
    """No peaks/phases: GPA finds its own spots; the upper grain is rotated by 2 degrees."""
    kw = dict(shape=(400, 256), pixel_size_nm=PX, dose=3000)
    a = crystal_scene("Si", (1, 1, 0), 10.0, seed=1, **kw)
    b = crystal_scene("Si", (1, 1, 0), 12.0, seed=2, **kw)
    img = a.image.copy()
    img[:200] = b.image[:200]
    labels = np.ones(img.shape, np.int32)
    labels[:200] = 2
    run(ctx_for(tmp_path, image_h5(tmp_path / "image.h5", img), seg_h5(tmp_path / "seg.h5", labels)))
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert f.attrs["reference_label"] == 1
        t = read_table(f["regions"])
    row = {int(l): i for i, l in enumerate(t["label"])}
    assert t["rotation_mean"][row[2]] == pytest.approx(np.radians(2.0), abs=5e-4)
    assert abs(t["rotation_mean"][row[1]]) < 5e-4
    for k in ("exx", "eyy", "exy"):
        assert abs(t[f"{k}_mean"][row[2]]) < 1e-3, k


def amorphous(shape, seed=0, dose=500):
    rng = np.random.default_rng(seed)
    W, H = shape[1] * PX[0], shape[0] * PX[1]
    pos = rng.random((int(100 * W * H * 3), 3)) * [W, H, 3.0]
    img = render_atoms(pos, np.full(len(pos), 6), shape, PX, mode="hrtem")
    return rng.poisson(np.clip(img, 0, None) * dose).astype(np.float32)


def test_amorphous_region_beside_a_crystal_is_masked(tmp_path):
    c = crystal_scene("Si", (1, 1, 0), 5.0, shape=(320, 256), pixel_size_nm=PX, mode="hrtem", dose=500, seed=3)
    img = c.image.astype(np.float32)
    img[:140] = amorphous((140, 256), seed=4)
    labels = np.ones(img.shape, np.int32)
    labels[:140] = 2
    run(ctx_for(tmp_path, image_h5(tmp_path / "image.h5", img), seg_h5(tmp_path / "seg.h5", labels)))
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert f.attrs["applicable"] and f.attrs["reference_label"] == 1
        mask = f["mask"][()]
        exx = f["strain"]["exx"][()]
        t = read_table(f["regions"])
    assert not mask[:140].any() and np.isnan(exx[:140]).all()
    row = {int(l): i for i, l in enumerate(t["label"])}
    assert t["n_pixels"][row[2]] == 0 and np.isnan(t["exx_mean"][row[2]])
    assert abs(t["exx_mean"][row[1]]) < 1e-3 and mask[200:300, 60:200].all()


def test_amorphous_image_is_not_applicable(tmp_path):
    run(ctx_for(tmp_path, image_h5(tmp_path / "image.h5", amorphous((256, 256)))))
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert not f.attrs["applicable"]
        assert "crystalline" in f.attrs["reason"]
    assert read_summary(tmp_path / "gpa.h5")["gpa"]["applicable"] is False
    assert (tmp_path / "figs" / "not_applicable.png").is_file()


def test_over_segmented_image_says_so(tmp_path, stack):
    """A crystal cut into 100 small regions (each 1 % of the image, below gpa.min_area_fraction = 2 %): GPA is
    not applicable, and the reason names the region size, not a missing crystal."""
    img = stack.image
    labels = (np.arange(img.shape[0])[:, None] * 10 // img.shape[0]) * 10 \
        + np.arange(img.shape[1])[None, :] * 10 // img.shape[1] + 1
    run(ctx_for(tmp_path, image_h5(tmp_path / "image.h5", img), seg=seg_h5(tmp_path / "seg.h5", labels)))
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert not f.attrs["applicable"]
        assert "min_area_fraction" in f.attrs["reason"] and "over-segmented" in f.attrs["reason"]


def test_config_defaults_overrides_and_errors(tmp_path, stack):
    cfg = load_config({}, require_dataset=False)["gpa"]
    assert cfg["reference"] == "auto" and cfg["g_vectors"] is None and cfg["frame"] == "image"
    load_config({"gpa": {"reference": [0, 0, 2, 2], "g_vectors": [[1, 0], [0, 1]], "resolution_nm": 1.5}},
                require_dataset=False)
    with pytest.raises(UserError):
        load_config({"gpa": {"resolution": 1.0}}, require_dataset=False)
    with pytest.raises(UserError):
        load_config({"gpa": {"frame": "sample"}}, require_dataset=False)
    img = image_h5(tmp_path / "image.h5", stack.image)
    seg = seg_h5(tmp_path / "seg.h5", stack.labels)
    with pytest.raises(UserError, match="region 9"):
        run(ctx_for(tmp_path, img, seg, config={"reference": 9}))
    assert not (tmp_path / "gpa.h5").exists()
    # a reference box and a fixed resolution are used as given
    run(ctx_for(tmp_path, img, seg, config={"reference": [1.0, 6.0, 5.0, 7.5], "resolution_nm": 1.2}))
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert f.attrs["reference_label"] == -1 and f.attrs["resolution_nm"] == pytest.approx(1.2)
        assert f.attrs["resolution_rule"] == "config"
        eyy = f["strain"]["eyy"][()]
    assert np.nanmean(eyy[(stack.labels == 1)][:]) == pytest.approx(0.0, abs=2e-3)
