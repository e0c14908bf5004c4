"""The whole workflow through the Snakemake command line on the embedded SiGe quantum-well demo.

One run (module fixture) of every rule, from the micrographs to the electronic LDOS, with small
physics settings, checked against the demo's ground truth (``resources/demo/truth_demo.json``,
written by ``resources/demo/make_demo.py`` from :mod:`temtwin.testing.synth.device`):

* the layers of the atomic-resolution image are Si/Ge-family crystals seen along <110>, all
  parallel (cube-on-cube), the trench fill is not crystalline;
* GPA finds the Ge well's tetragonal strain relative to the Si0.3Ge0.7 buffer (truth +2.31 %);
* the stack stage never uses an unreliable placement of the HRTEM in the overview;
* the atomic model carries the EELS composition (buffer x_Ge = 0.7) and relaxes to Keating's
  bond lengths; phonon and electronic LDOS show the Si-Si/Ge-Ge optical modes and hole
  confinement in the Ge well;
* every HDF5 dataset has units, every file provenance; a second run has nothing to do and a
  forced rerun reproduces the results exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO

from temtwin.io.h5 import missing_units

pytestmark = pytest.mark.workflow

DEMO = REPO / "resources" / "demo"
TRUTH = json.loads((DEMO / "truth_demo.json").read_text())

# Small physics for a test: the demo's model has ~12 000 atoms.
SMALL = {
    "phonons": {"n_moments": 256, "n_vectors": 2},
    "tb_moments": {"n_moments": 384, "vectors_per_region": 2, "n_chunks": 2, "threads": 1,
                   "backend": "numba"},
}


def snakemake(workdir: Path, *args, results: Path | None = None, profile: str | None = None,
              dataset: Path | None = None):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "small.yaml"),
           "--config", f"dataset={dataset or workdir / 'data'}", f"results={results or workdir / 'results'}"]
    if profile:
        cmd += ["--workflow-profile", str(REPO / "profiles" / profile)]
    else:
        cmd += ["--cores", "2"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=workdir)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    shutil.copytree(DEMO / "sige_qw_device", work / "data" / "sige_qw_device")
    (work / "small.yaml").write_text(yaml.safe_dump(SMALL))
    r = snakemake(work)
    assert r.returncode == 0, r.stderr[-4000:]
    res = work / "results"
    return {"work": work, "results": res, "summary": json.loads((res / "sige_qw_device" / "summary.json").read_text())}


def _hrtem_regions(summary):
    return summary["images"]["hrtem"]["regions"]


def test_layers_identified_along_110_and_parallel(demo_run):
    regs = _hrtem_regions(demo_run["summary"])
    crystalline = {k: r for k, r in regs.items() if r.get("crystalline")}
    assert len(crystalline) >= 3                          # buffer, well, cap
    for r in crystalline.values():
        assert r["identified"] and r["phase"] in ("Ge", "Si")
        assert sorted(abs(v) for v in r["zone_axis"]) == [0, 1, 1]
    # the trench (amorphous fill, right of x = trench - hrtem offset) is not crystalline
    x_trench = TRUTH["trench_x_nm"] - TRUTH["hrtem"]["offset_nm"][0]
    right = [r for r in regs.values() if r["centroid_nm"][0] > x_trench]
    assert right and not any(r.get("crystalline") for r in right)
    rel = demo_run["summary"]["images"]["hrtem"]["relative_orientations"]
    assert rel and all(o["angle_deg"] < 0.5 and "cube-on-cube" in o["relation"] for o in rel)


def test_quantum_well_strain_matches_truth(demo_run):
    regs = _hrtem_regions(demo_run["summary"])
    y0 = TRUTH["hrtem"]["offset_nm"][1]
    top, bottom = TRUTH["interfaces_y_nm_overview"]["qw_top"] - y0, TRUTH["interfaces_y_nm_overview"]["qw_bottom"] - y0
    well = [r for r in regs.values() if r.get("crystalline") and top < r["centroid_nm"][1] < bottom]
    assert len(well) == 1
    # growth direction is image y: the well is stretched along y relative to the buffer (reference)
    assert well[0]["strain"]["eyy"]["mean"] == pytest.approx(TRUTH["eyy_qw_rel_buffer"], abs=3e-3)
    assert abs(well[0]["strain"]["exx"]["mean"]) < 2e-3     # pseudomorphic: no in-plane strain
    gpa = demo_run["summary"]["images"]["hrtem"]["gpa"]
    ref = regs[str(gpa["reference_label"])]
    assert ref["centroid_nm"][1] > bottom                  # the reference is the buffer below the well


def test_stack_never_uses_an_unreliable_placement(demo_run):
    """The demo HRTEM is a pure phase-contrast image: low-passed, it has almost no mean-intensity
    contrast between the layers and the trench, so its place in the overview is not determined by
    the image content.  It must then be refused with a reason (never silently used); if it is
    accepted, it must be right (issue 7 targets: < 1 % of its field of view, < 0.3 deg)."""
    p = demo_run["summary"]["images"]["hrtem"]["placement"]
    ov = demo_run["summary"]["images"]["overview"]["placement"]
    assert ov["accepted"] and ov["offset_nm"] == [0.0, 0.0] and ov["scale"] == 1.0
    stack = demo_run["summary"]["register_stack"]
    if p["accepted"]:
        fov = 512 * 0.025
        assert np.hypot(*(np.subtract(p["offset_nm"], TRUTH["hrtem"]["offset_nm"]))) < 0.01 * fov
        assert p["rotation_deg"] == pytest.approx(TRUTH["hrtem"]["rotation_deg"], abs=0.3)
    else:
        assert p["reason"] and p["offset_nm"] is None and p["confidence"] < 0.3
        assert stack["n_placed"] == 1
        assert all(r["sources"] == [] and r["phase"] == "" for r in stack["regions"].values())


def test_model_composition_and_relaxed_bonds(demo_run):
    s = demo_run["summary"]
    regions = s["atomic_model"]["regions"]
    fractions = {k: r["species"].get("Ge", 0) / r["n_atoms"] for k, r in regions.items()}
    assert sorted(fractions.values())[0] == pytest.approx(0.7, abs=0.03)     # Si0.3Ge0.7 buffer
    assert max(fractions.values()) > 0.9                                     # the Ge well
    bonds = s["keating"]["bond_length_A"]
    # relaxed bond lengths close to the Keating equilibrium ones (Si 2.352, Ge 2.450 Å)
    assert bonds["Si-Si"]["relaxed"] < bonds["Si-Ge"]["relaxed"] < bonds["Ge-Ge"]["relaxed"]
    assert bonds["Si-Si"]["relaxed"] == pytest.approx(2.352, abs=0.025)
    assert bonds["Ge-Ge"]["relaxed"] == pytest.approx(2.450, abs=0.01)
    assert s["keating"]["relax_converged"]
    assert (demo_run["results"] / "sige_qw_device" / "relaxed.extxyz").exists()


def test_phonon_and_electronic_ldos(demo_run):
    s = demo_run["summary"]
    sp = s["phonons"]["species"]
    assert any(55 < p < 64 for p in sp["Si"]["peak_meV"])                    # Si-Si optical mode
    assert any(32 < p < 38 for p in sp["Ge"]["peak_meV"])                    # Ge-Ge optical mode
    tb = s["tb_ldos"]["regions"]
    frac = {k: r["species"].get("Ge", 0) / r["n_atoms"] for k, r in s["atomic_model"]["regions"].items()}
    well = max(frac, key=frac.get)
    others = [k for k in tb if k != well]
    # holes are confined in the Ge well: its valence-band edge is above the buffer's and cap's
    assert all(tb[well]["valence_band_edge_eV"] > tb[k]["valence_band_edge_eV"] + 0.05 for k in others)
    # gaps: bulk Ge 0.74 / Si0.3Ge0.7 ~0.9 eV, opened by the 2 nm confinement along the beam and
    # narrowed by the KPM resolution of 384 moments (~0.15 eV)
    for r in tb.values():
        assert 0.4 < r["conduction_band_edge_eV"] - r["valence_band_edge_eV"] < 2.0
    with h5py.File(demo_run["results"] / "sige_qw_device" / "tb.h5") as f:
        assert f.attrs["rule"] == "tb_ldos"


def test_every_file_has_units_and_provenance(demo_run):
    files = sorted(demo_run["results"].rglob("*.h5"))
    assert len(files) >= 15
    for path in files:
        assert missing_units(path) == [], path
        with h5py.File(path) as f:
            assert f.attrs["temtwin_version"] and f.attrs["rule"] and "config_digest" in f.attrs, path
    rows = (demo_run["results"] / "summary.tsv").read_text().splitlines()
    n_regions = sum(len(im["regions"]) for im in demo_run["summary"]["images"].values())
    assert len(rows) == 1 + n_regions
    figures = list((demo_run["results"] / "sige_qw_device").rglob("*.png"))
    assert len(figures) >= 12


#: summary.json keys that describe data rather than name a stage (every other key is a rule's name)
DESCRIPTIVE_KEYS = {"sample", "temtwin_version", "images", "pixel_size_nm", "shape", "mode", "source_file",
                    "field_of_view_nm", "regions", "calibration", "elements", "relative_orientations", "placement"}
#: the stages' former names (config sections and summary keys before issue 15)
FORMER_NAMES = {"segmentation", "peaks", "phases", "stack", "fem", "model", "tight_binding", "simulation",
                "scan_correction", "tb", "relax"}


def test_summary_keys_are_rule_names(demo_run):
    from temtwin.workflow.stages import BY_RULE

    s = demo_run["summary"]
    levels = {"sample": set(s), **{f"images.{im}": set(e) for im, e in s["images"].items()}}
    for where, keys in levels.items():
        stage_keys = keys - DESCRIPTIVE_KEYS
        assert stage_keys <= set(BY_RULE), (where, stage_keys - set(BY_RULE))
    assert {"register_stack", "fem_geometry", "fem_relax", "atomic_model", "keating", "phonons", "tb_ldos"} <= set(s)
    assert "gpa" in s["images"]["hrtem"] and "scan_correct" in s["images"]["hrtem"]
    region_keys = {k for e in s["images"].values() for r in e["regions"].values() for k in r}
    assert not region_keys & FORMER_NAMES, region_keys & FORMER_NAMES


@pytest.mark.slurm
@pytest.mark.skipif(os.environ.get("TEMTWIN_SLURM") != "1" or shutil.which("sbatch") is None,
                    reason="needs a running SLURM (TEMTWIN_SLURM=1, set by .ci/run after .ci/slurm/setup.sh)")
def test_tight_binding_on_slurm_reproduces_the_local_run(demo_run, tmp_path):
    """The costly electronic stage fanned out over SLURM (profiles/slurm) gives the same LDOS as the
    local run: copy the local results (mtimes kept), drop the tight-binding outputs, rerun them as
    SLURM jobs, compare."""
    work = tmp_path / "slurm"
    shutil.copytree(demo_run["work"] / "data", work / "data")
    shutil.copy2(demo_run["work"] / "small.yaml", work / "small.yaml")
    res = work / "results"
    shutil.copytree(demo_run["results"], res)
    shutil.rmtree(res / "sige_qw_device" / "tb")
    (res / "sige_qw_device" / "tb.h5").unlink()
    shutil.rmtree(res / "sige_qw_device" / "figures" / "tb_ldos")
    r = snakemake(work, str(res / "sige_qw_device" / "tb.h5"), "--rerun-triggers", "mtime", "--jobs", "2",
                  "--set-threads", "tb_moments=1", "--set-resources", "tb_moments:mem_mb=3000",
                  "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs",
                  profile="slurm", results=res)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    ran = {line.split("(Rule: ")[1].rstrip(")") for line in out.splitlines() if "(Rule: " in line}
    assert ran == {"tb_moments", "tb_ldos"}, ran                  # nothing upstream was redone
    slurm_logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))    # one per SLURM job
    assert sum("rule_tb_moments" in p.parts for p in slurm_logs) == SMALL["tb_moments"]["n_chunks"]
    assert sum("rule_tb_ldos" in p.parts for p in slurm_logs) == 1
    local, cluster = demo_run["results"] / "sige_qw_device" / "tb.h5", res / "sige_qw_device" / "tb.h5"
    a, b = _datasets(local), _datasets(cluster)
    assert a.keys() == b.keys() and len(a) > 3
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k


def test_rerun_is_a_no_op_and_forced_rerun_reproduces(demo_run):
    work, res = demo_run["work"], demo_run["results"]
    r = snakemake(work, "-n")
    assert r.returncode == 0 and "Nothing to be done" in (r.stdout + r.stderr)
    target = res / "sige_qw_device" / "hrtem" / "gpa.h5"
    before = _datasets(target)
    r = snakemake(work, "--forcerun", "phase_id", "--until", "gpa")
    assert r.returncode == 0, r.stderr[-3000:]
    after = _datasets(target)
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k], equal_nan=before[k].dtype.kind == "f"), k


def _datasets(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_a_gpa_setting_reruns_gpa_and_its_dependents_only(demo_run):
    """Issue 15: the rules declare their config sections, so `snakemake -n` plans exactly the affected jobs."""
    from test_workflow_ingest import _planned_jobs

    work = demo_run["work"]
    changed = work / "changed.yaml"
    changed.write_text(yaml.safe_dump({**SMALL, "gpa": {"resolution_nm": 1.7}}))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(changed), "--config", f"dataset={work / 'data'}", f"results={work / 'results'}",
           "--cores", "2", "-n"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = _planned_jobs(r.stdout)
    jobs.pop("all", None)      # the target rule
    n_images = len(demo_run["summary"]["images"])
    assert jobs.pop("gpa") == n_images
    assert set(jobs) == {"register_stack", "fem_geometry", "fem_relax", "spin_orbit", "atomic_model", "keating",
                         "simulate_image", "phonons", "tb_moments", "tb_ldos", "summarize", "summary_table",
                         "viewer", "viewer_index"}, jobs


def test_demo_viewer_pages_load_in_a_browser(demo_run):
    """The demo's viewer.html and index.html load from file:// without console errors (screenshots
    go to $TEMTWIN_ARTEFACTS when set)."""
    from browser import launch, need_browser, open_page

    need_browser()
    from playwright.sync_api import sync_playwright

    res = demo_run["results"]
    art = Path(os.environ.get("TEMTWIN_ARTEFACTS") or demo_run["work"] / "screenshots")
    art.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = launch(p)
        page, errors = open_page(b, (res / "sige_qw_device" / "viewer.html").as_uri())
        page.click('button[data-region="hrtem/1"]')
        assert page.inner_text("#region-phase").startswith(_hrtem_regions(demo_run["summary"])["1"]["phase"])
        page.screenshot(path=str(art / "demo_viewer.png"))
        page2, errors2 = open_page(b, (res / "index.html").as_uri())
        page2.screenshot(path=str(art / "demo_index.png"))
        b.close()
    assert errors == [] and errors2 == []
