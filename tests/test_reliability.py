"""Reliability under bad input, big input and faults (issue 22): one test per defect.

Each test failed before its fix.  Big inputs are generated lazily and kept small enough for CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, write_tif

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


# ------------------------------------------------------------------ defect 11: start-up cost
def test_ingest_job_does_not_import_torch_or_numba(tmp_path, lattice_image):
    """The ingest job (adapter + thread set-up + stage) never imports torch or numba (about 2 s)."""
    tif = write_tif(tmp_path / "s" / "a.tif", lattice_image)
    out = tmp_path / "image.h5"
    code = f"""
import sys
from types import SimpleNamespace
class N(list):
    def __init__(self, d): super().__init__(d.values()); self._d = d
    def items(self): return self._d.items()
from temtwin.workflow.context import run_stage
smk = SimpleNamespace(rule="ingest", input=N({{"image": {str(tif)!r}, "settings": []}}),
                      output=N({{"h5": {str(out)!r}}}), params=N({{}}), config={{}},
                      wildcards=N({{"sample": "s", "image": "a"}}), threads=2, log=[{str(tmp_path / 'l.log')!r}])
run_stage(smk, "temtwin.stages.ingest:run")
print(sorted(m for m in ("torch", "numba") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert out.is_file()


# ------------------------------------------------------------------ defect 4: stale lock after kill -9
def test_temtwin_run_removes_a_stale_lock_but_not_a_live_one(tmp_path, monkeypatch, tiny_dataset):
    from temtwin import cli
    from temtwin.workflow.locks import stale_lock

    locks = tmp_path / "work" / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/x.h5\n")
    monkeypatch.chdir(tmp_path / "work")
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert cli.main(["run", "--dataset", str(tiny_dataset), "--cores", "1"]) == 0
    assert len(calls) == 2 and calls[0][-1] == "--unlock" and "--unlock" not in calls[1]
    calls.clear()
    assert cli.main(["run", "--dataset", str(tiny_dataset), "--keep-lock"]) == 1 and not calls
    # a live Snakemake process in that directory: the lock is not stale
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"],
                            cwd=tmp_path / "work")
    try:
        for _ in range(100):  # until the child's /proc/<pid>/cmdline is filled in (right after exec)
            if stale_lock(tmp_path / "work") == []:
                break
            time.sleep(0.05)
        assert stale_lock(tmp_path / "work") == []
    finally:
        live.kill()
        live.wait()
    assert stale_lock(tmp_path / "work") == [locks / "0.output.lock"]


# ------------------------------------------------------------------ defect 8: byte-identical reruns
def _gds_bgnlib(path):
    """The 12 int16 of the GDS BGNLIB record (modification and access year, month, day, h, min, s)."""
    b = Path(path).read_bytes()
    n = int.from_bytes(b[0:2], "big")  # HEADER record
    assert b[n + 2:n + 4] == b"\x01\x02"  # BGNLIB, int16 data
    return np.frombuffer(b[n + 4:n + 28], ">i2").tolist()


def test_reruns_store_no_clock_values(tmp_path, monkeypatch):
    """GDS files carry a fixed timestamp, and the atomic model's summary no wall-clock timings."""
    from temtwin.twin.boundaries import region_boundaries
    from temtwin.twin.fem import write_gds
    from temtwin.stages.atomic_model import run
    from temtwin.testing.twin_inputs import write_layered_inputs
    from temtwin.workflow.context import StageContext
    from temtwin.io.h5 import read_summary

    lab = np.ones((40, 50), np.int32)
    lab[20:] = 2
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    write_gds(tmp_path / "a.gds", region_boundaries(lab, (1.0, 1.0), 1.0), {1: "Si"}, {"Si": 1})
    assert _gds_bgnlib(tmp_path / "a.gds") == [100, 1, 1, 0, 0, 0] * 2  # GDSII years count from 1900
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    write_gds(tmp_path / "b.gds", region_boundaries(lab, (1.0, 1.0), 1.0), {1: "Si"}, {"Si": 1})
    assert _gds_bgnlib(tmp_path / "b.gds") == [123, 11, 14, 22, 13, 20] * 2

    _, paths = write_layered_inputs(tmp_path / "s" / "im", shape=(64, 64), thickness_nm=1.0)
    summaries, extxyz = [], []
    d = tmp_path / "run"
    for _ in range(2):  # a rerun into the same folder
        ctx = StageContext.create("atomic_model", {
            "stack": "", "images": [paths["image"]], "segmentations": [paths["segmentation"]],
            "phases": [paths["phases"]], "gpas": [paths["gpa"]], "eels": [], "settings": []},
            {"h5": d / "model.h5", "extxyz": d / "model.extxyz", "lammps": d / "model.lmp",
             "figures": d / "figures"}, {"atomic_model": {"thickness_nm": 1.0}}, wildcards={"sample": "s"})
        run(ctx)
        summaries.append(read_summary(d / "model.h5"))
        extxyz.append((d / "model.extxyz").read_bytes())
    assert summaries[0] == summaries[1] and extxyz[0] == extxyz[1]


# ------------------------------------------------------------------ defect 9: orphan temporary files
def test_stale_temporaries_are_removed_at_the_next_run(tmp_path):
    from temtwin.io.h5 import atomic_h5, atomic_path

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: the writer was killed
    out = tmp_path / "r" / "gpa.h5"
    out.parent.mkdir()
    orphan_h5 = out.with_name(f".gpa.h5.tmp-{dead.pid}")
    orphan_png = out.with_name(f".overlay.tmp-{dead.pid}.png")
    live = out.with_name(f".gpa.h5.tmp-{os.getppid()}")  # a live writer's file is kept
    other = out.with_name(f".gpa2.h5.tmp-{dead.pid}")    # another output's file is not touched
    for p in (orphan_h5, orphan_png, live, other):
        p.write_bytes(b"half")
    with atomic_h5(out) as f:
        f.attrs["x"] = 1
    with atomic_path(out.with_name("overlay.png")) as p:
        p.write_bytes(b"png")
    assert not orphan_h5.exists() and not orphan_png.exists()
    assert live.exists() and other.exists() and out.is_file()


# ------------------------------------------------------------------ defect 10: one line, not a traceback
def _smk(tmp_path, rule="demo"):
    from types import SimpleNamespace

    class N(list):
        def __init__(self, d):
            super().__init__(d.values())
            self._d = d

        def items(self):
            return self._d.items()

    return SimpleNamespace(rule=rule, input=N({}), output=N({"figures": str(tmp_path / "figs")}), params=N({}),
                           config={}, wildcards=N({"sample": "s"}), threads=1, log=[str(tmp_path / "l.log")])


def test_disk_full_while_saving_a_figure_is_one_line(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    from temtwin.plotting import new_figure, save_figure
    from temtwin.workflow.context import run_stage

    def savefig_on_full_disk(self, fname, **kw):
        with open("/dev/full", "wb") as fh:  # the kernel's always-full device: a real ENOSPC
            fh.write(b"x" * 65536)
            fh.flush()

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig_on_full_disk)

    def stage(ctx):
        fig, ax = new_figure()
        save_figure(fig, Path(ctx.output["figures"]) / "overlay.png")

    with pytest.raises(SystemExit) as e:
        run_stage(_smk(tmp_path), stage)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "overlay.png: cannot write: no space left" in err[0]
    assert not list((tmp_path / "figs").iterdir())  # nothing half-written


def test_unreadable_eels_npy_is_one_line(tmp_path):
    from temtwin.errors import UserError
    from temtwin.twin.composition import read_element_map

    bad = tmp_path / "Ge.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(UserError, match=r"Ge\.npy: cannot read this \.npy map"):
        read_element_map(bad, pixel_size_nm=0.1)
    np.save(tmp_path / "Si.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=r"Si\.npy: cannot read this \.npy map"):  # never unpickled
        read_element_map(tmp_path / "Si.npy", pixel_size_nm=0.1)


def test_dotted_config_key_is_one_line(tiny_dataset, capsys, monkeypatch):
    from temtwin import cli

    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: pytest.fail("snakemake must not start"))
    rc = cli.main(["run", "--dataset", str(tiny_dataset), "--", "--config", "segment.min_area_nm2=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "put `segment: {min_area_nm2: 5}` in a YAML file" in err[0]
    assert "temtwin run --set segment.min_area_nm2=5" in err[0]


# ------------------------------------------------------------------ defect 7: RGB images
def test_rgb_png_is_read_as_grey(tmp_path, lattice_image):
    import imageio.v3 as iio

    from temtwin.io.ingest import read_micrograph

    grey = (lattice_image.astype(float) / lattice_image.max() * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "g.png", np.dstack([grey] * 3))                      # grey saved as RGB
    colour = np.dstack([grey, 255 - grey, grey // 2])
    iio.imwrite(tmp_path / "c.png", np.dstack([colour, np.full_like(grey, 255)]))  # colour RGBA
    settings = {"pixel_size_nm": 0.02}
    g = read_micrograph(tmp_path / "g.png", settings=settings)
    assert np.array_equal(g.data, grey.astype(np.float32))
    c = read_micrograph(tmp_path / "c.png", settings=settings)
    want = 0.2125 * grey + 0.7154 * (255.0 - grey) + 0.0721 * (grey // 2)
    np.testing.assert_allclose(c.data, want, atol=1e-3)
    assert c.meta["rgb"] and c.pixel_size_nm == (0.02, 0.02)


# ------------------------------------------------------------------ defect 5: overflow, silent empty result
def test_huge_intensities_are_normalised_and_an_empty_segmentation_fails(tmp_path, lattice_image):
    from conftest import write_hspy
    from temtwin.errors import UserError
    from temtwin.io.h5 import atomic_h5
    from temtwin.io.image import Micrograph
    from temtwin.io.ingest import read_micrograph, write_image_h5
    from temtwin.stages import segment as seg
    from temtwin.workflow.context import StageContext

    base = lattice_image.astype(np.int64)
    cases = {"offset": base + 10 ** 18, "scaled": base.astype(np.float64) * 1e16}
    for name, data in cases.items():
        m = read_micrograph(write_hspy(tmp_path / f"{name}.hspy", data), settings={})
        f = base.astype(np.float64)
        # the image is an exact affine copy of the file's values: nothing lost to float32
        sc, off = m.meta["intensity_scale"], m.meta["intensity_offset"]
        if name == "offset":  # integers: the minimum is subtracted exactly
            np.testing.assert_allclose(m.data / sc, (data - data.min()).astype(float), atol=1e-3)
        else:
            np.testing.assert_allclose(m.data / sc + off, data, rtol=1e-6)
        assert np.corrcoef(m.data.ravel(), f.ravel())[0, 1] > 0.999999
        assert 100 < np.abs(m.data).max() < 1e4 and m.meta["units"] == "a.u."
    # an image.h5 that bypassed ingest's normalisation: segmentation finds nothing -> one clear error
    raw = Micrograph(data=(base * 1e16).astype(np.float32), pixel_size_nm=(0.02, 0.02), name="a", sample="s",
                     meta={"source_file": "a.hspy", "units": "a.u."})
    with atomic_h5(tmp_path / "image.h5") as fh:
        write_image_h5(fh, raw)
    ctx = StageContext.create("segment", {"image": str(tmp_path / "image.h5"), "override": []},
                              {"h5": tmp_path / "segmentation.h5", "figures": tmp_path / "figs"})
    with pytest.raises(UserError, match="image.h5: segmentation found no region"):
        seg.run(ctx)
    assert not (tmp_path / "segmentation.h5").exists()


# ------------------------------------------------------------------ defect 6: sample.yaml checked at the start
def test_sample_yaml_elements_and_phase_names_checked_at_start(tiny_dataset):
    from temtwin.errors import UserError
    from temtwin.workflow.snake import Workflow

    sy = tiny_dataset / "s1" / "sample.yaml"
    sy.write_text("elements: [Si, Xx]\n")
    with pytest.raises(UserError, match=r"sample\.yaml: elements: 'Xx' is not a chemical element symbol"):
        Workflow({"dataset": str(tiny_dataset)})
    sy.write_text("elements: [Si]\nphases: [Si, Sii]\n")
    with pytest.raises(UserError, match=r"sample\.yaml: phases: unknown phase\(s\) Sii for sample s1"):
        Workflow({"dataset": str(tiny_dataset)})
    (tiny_dataset / "s1" / "phases").mkdir()
    (tiny_dataset / "s1" / "phases" / "Sii.cif").write_text((REPO / "resources" / "phases" / "Si.cif").read_text())
    assert list(Workflow({"dataset": str(tiny_dataset)}).samples) == ["s1"]   # the sample's own CIF counts
    sy.write_text("description: no restriction\n")
    with pytest.raises(UserError, match=r"config: phase_id\.elements: 'Qq' is not a chemical element"):
        Workflow({"dataset": str(tiny_dataset), "phase_id": {"elements": ["Qq"]}})


# ------------------------------------------------------------------ defect 2: duplicate CIFs split the confidence
def test_duplicate_cifs_are_pooled_with_a_warning(tmp_path, caplog):
    from temtwin.phase.database import load_phases
    from temtwin.phase.library import build_library
    from temtwin.phase.matching import MatchSettings, Spots, identify
    from temtwin.testing.phase_spots import simulate_spots

    phases_dir = REPO / "resources" / "phases"
    base = [phases_dir / f"{n}.cif" for n in ("InSb", "InP", "GaSb", "InAs")]
    copies = []
    for k in range(3):  # three extra copies of a shipped CIF, as a user may drop into <sample>/phases/
        copies.append(tmp_path / f"InSb_copy{k}.cif")
        copies[-1].write_text((phases_dir / "InSb.cif").read_text())
    strained = tmp_path / "InSb_strained.cif"  # 2 % larger lattice: a different candidate, kept
    strained.write_text((phases_dir / "InSb.cif").read_text().replace("6.47940000", "6.60900000"))
    with caplog.at_level("WARNING", logger="temtwin"):
        pooled = load_phases(base + copies + [strained])
    assert [p.name for p in pooled] == ["InSb", "InP", "GaSb", "InAs", "InSb_strained"]
    pooled = pooled[:4]
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "pooled as phase 'InSb'" in msg and all(c.name in msg for c in copies)

    # the confidence of a correctly matched InSb pattern no longer depends on the copies
    rng = np.random.default_rng(7)
    sim = simulate_spots(pooled[0], (1, 1, 0), 17.0, rng)
    sp = Spots.from_arrays(sim.kx, sim.ky, sim.snr, sampling=0.05)
    ref = identify(build_library(load_phases(base), 3, 18.0), sp, MatchSettings())[0]
    got = identify(build_library(pooled, 3, 18.0), sp, MatchSettings())[0]
    assert ref.phase == got.phase == "InSb" and ref.identified and got.identified
    assert got.confidence == pytest.approx(ref.confidence, abs=1e-9)


# ------------------------------------------------------------------ defect 1: amorphous speckle gets strain maps
def _speckle(n, px, seed, kind, k0=4.0):
    """Noise-free amorphous speckle: random phases (``phase``) or Gaussian noise (``gauss``) band-passed
    to a narrow ring |k| = k0 (nm^-1) of the power spectrum."""
    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(n, px)[None, :], np.fft.fftfreq(n, px)[:, None])
    if kind == "phase":
        F = np.exp(2j * np.pi * rng.random((n, n))) * (np.abs(k - k0) <= 0.6)
    else:
        F = np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-0.5 * ((k - k0) / 0.15) ** 2)
    img = np.fft.ifft2(F).real
    return ((img - img.min()) / np.ptp(img)).astype(np.float32)


def test_speckle_rings_are_not_crystals_and_get_no_strain_maps(tmp_path):
    import h5py
    from test_gpa_stage import image_h5, peaks_h5, phases_h5, seg_h5

    from temtwin.stages.gpa import run as gpa_run
    from temtwin.peaks.analysis import analyse_region
    from temtwin.testing.synth import crystal_scene
    from temtwin.workflow.context import StageContext

    # a family of speckle rings that the spot detectors alone call crystalline (issue 22, defect 1)
    for n, px, seed, kind in [(1024, 0.01, 1, "phase"), (1024, 0.03, 1, "phase"), (1024, 0.03, 1, "gauss")]:
        res = analyse_region(_speckle(n, px, seed, kind), (px, px))
        assert not res.crystalline, (n, px, seed, kind, res.peaks.info["lattice_order"])
    # a real lattice stays crystalline
    sc = crystal_scene("Si", (1, 1, 0), 10.0, shape=(256, 256), pixel_size_nm=(0.02, 0.02), dose=500, seed=3)
    assert analyse_region(sc.image, (0.02, 0.02)).crystalline

    # GPA on a region with spots whose phase phase_id could not identify: not applicable, no strain maps
    lab = np.ones((256, 256), np.int32)
    spots = [(3.0, 0.5, 1.0), (-3.0, -0.5, 1.0), (0.7, 3.2, 1.0), (-0.7, -3.2, 1.0)]
    inputs = {"image": str(image_h5(tmp_path / "image.h5", sc.image)),
              "segmentation": str(seg_h5(tmp_path / "s.h5", lab)),
              "peaks": str(peaks_h5(tmp_path / "p.h5", {1: (True, spots)})),
              "phases": str(phases_h5(tmp_path / "ph.h5", {1: ("", 0.0, [(3.0, 0.5, 1, 1, 1)])}, {}))}
    ctx = StageContext.create("gpa", inputs, {"h5": str(tmp_path / "gpa.h5"), "figures": str(tmp_path / "f")})
    gpa_run(ctx)
    with h5py.File(tmp_path / "gpa.h5") as f:
        assert not f.attrs["applicable"] and "identified phase" in f.attrs["reason"]
        assert "strain" not in f


# ------------------------------------------------------------------ defect 3: size guard, memory, region cap
def test_size_guard_scaled_memory_and_region_cap(tmp_path, caplog, tiny_dataset):
    from conftest import write_hspy
    from temtwin.errors import UserError
    from temtwin.io.ingest import check_size, image_pixels
    from temtwin.stages.segment import cap_regions
    from temtwin.workflow.snake import Workflow, mem_mb_for

    # the pixel count comes from the header (all frames), without reading the data
    f = write_hspy(tmp_path / "series.hspy", np.zeros((3, 200, 300), np.uint16), nav=1)
    assert image_pixels(f) == 3 * 200 * 300
    with caplog.at_level("WARNING", logger="temtwin"):
        assert check_size(f, 100_000, "warn") == 180_000
    assert "exceeds ingest.max_pixels" in caplog.text
    with pytest.raises(UserError, match=r"series\.hspy: image of 0\.18 Mpx exceeds ingest\.max_pixels"):
        check_size(f, 100_000, "refuse")
    # memory declared to Snakemake/SLURM grows with the pixel count (former fixed values are the floor)
    assert mem_mb_for("gpa", 256 ** 2) == 6000 and mem_mb_for("ingest", 256 ** 2) == 2000
    assert mem_mb_for("gpa", 12_000 ** 2) > 7800           # measured 7.8 GB (issue 22)
    assert mem_mb_for("ingest", 30_000 ** 2) > 7000         # measured 7 GB (issue 22)
    W = Workflow({"dataset": str(tiny_dataset)})
    wc = type("WC", (), {"sample": "s1", "image": "a"})()
    assert W.mem_mb("segment")(wc) == mem_mb_for("segment", 128 * 128)
    # the region count is capped: the largest regions are kept, the rest unassigned
    lab = np.zeros((40, 60), np.int32)
    sizes = {}
    for k in range(1, 13):
        r0, c0 = divmod(k - 1, 4)
        h = 2 + k % 5
        lab[r0 * 12: r0 * 12 + h, c0 * 15: c0 * 15 + 10] = k
        sizes[k] = int((lab == k).sum())
    capped, dropped = cap_regions(lab, 5)
    assert dropped == 7 and capped.max() == 5
    kept = sorted(sizes, key=lambda k: -sizes[k])[:5]
    assert sorted(int((capped == i).sum()) for i in range(1, 6)) == sorted(sizes[k] for k in kept)
    assert np.array_equal(capped > 0, np.isin(lab, kept))
