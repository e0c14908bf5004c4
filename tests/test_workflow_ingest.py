"""End to end through the Snakemake command line: ingest on a tiny dataset, errors at start."""

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO

from temtwin.io.h5 import missing_units


def snakemake(tmp_path, *args, dataset=None):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "2", "--config", f"dataset={dataset}", f"results={tmp_path / 'results'}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)


def test_ingest_through_snakemake(tmp_path, tiny_dataset, lattice_image):
    r = snakemake(tmp_path, "--until", "ingest", dataset=tiny_dataset)
    assert r.returncode == 0, r.stderr[-3000:]
    a = tmp_path / "results" / "s1" / "a" / "raw.h5"
    b = tmp_path / "results" / "s1" / "b" / "raw.h5"
    with h5py.File(a) as f:
        assert np.array_equal(f["image"][()], lattice_image.astype(np.float32))
        assert np.allclose(f.attrs["pixel_size_nm"], [0.02, 0.02])
        assert f.attrs["rule"] == "ingest" and f.attrs["temtwin_version"]
    with h5py.File(b) as f:
        assert np.allclose(f.attrs["pixel_size_nm"], [0.025, 0.025])   # 0.25 Å
        assert np.array_equal(f["image"][()], lattice_image[:100, :120].astype(np.float32))
    assert missing_units(a) == [] and missing_units(b) == []
    assert (tmp_path / "results" / "logs" / "s1" / "a" / "ingest.log").read_text().count("done") == 1
    # scan_correct turns raw.h5 into image.h5; a TEM (or unknown-mode) image is copied unchanged
    r = snakemake(tmp_path, "--until", "scan_correct", dataset=tiny_dataset)
    assert r.returncode == 0, r.stderr[-3000:]
    with h5py.File(tmp_path / "results" / "s1" / "a" / "image.h5") as f:
        assert np.array_equal(f["image"][()], lattice_image.astype(np.float32))
        assert f.attrs["rule"] == "scan_correct" and not f["scan_correction"].attrs["applicable"]
        assert "TEM" in f["scan_correction"].attrs["reason"]


@pytest.mark.parametrize("case", ["unknown_key", "empty_dataset", "missing_calibration"])
def test_errors_at_start_are_one_line(tmp_path, tiny_dataset, case):
    extra = []
    ds = tiny_dataset
    if case == "unknown_key":
        extra = ["--config", "segmentaton={}"]
    elif case == "empty_dataset":
        ds = tmp_path / "empty"
        (ds / "s").mkdir(parents=True)
    else:
        from PIL import Image
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tiny_dataset / "s1" / "raw.png")
    r = snakemake(tmp_path, *extra, dataset=ds)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.startswith("temtwin: error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    expect = {"unknown_key": "segmentaton", "empty_dataset": "no images found",
              "missing_calibration": "raw.png"}[case]
    assert expect in lines[0]
    assert not (tmp_path / "results").exists()


def test_one_failing_sample_hides_no_other_summary(tmp_path, tiny_dataset):
    """--keep-going: the good sample gets its summary.json; summary.tsv lists the bad one with its reason."""
    (tiny_dataset / "s2").mkdir()
    (tiny_dataset / "s2" / "c.tif").write_bytes(b"II*\x00" + b"\x00" * 12)   # a truncated TIFF
    r = snakemake(tmp_path, "--keep-going", "--configfile", _image_stages_only(tmp_path), dataset=tiny_dataset)
    assert r.returncode != 0
    res = tmp_path / "results"
    good = json.loads((res / "s1" / "summary.json").read_text())
    assert set(good["images"]) == {"a", "b"}
    assert not (res / "s2" / "summary.json").exists()
    rows = list(csv.DictReader(open(res / "summary.tsv"), delimiter="\t"))
    assert {x["sample"] for x in rows} == {"s1", "s2"}
    (bad,) = [x for x in rows if x["sample"] == "s2"]
    assert bad["error"].startswith("ingest:") and "c.tif" in bad["error"], bad


def test_a_config_change_reruns_its_stage_and_dependents_only(tmp_path, tiny_dataset):
    """Snakemake's params trigger: each rule declares its config section (W.settings)."""
    base = _image_stages_only(tmp_path)
    r = snakemake(tmp_path, "--until", "fft_peaks", "--configfile", base, dataset=tiny_dataset)
    assert r.returncode == 0, r.stderr[-3000:]
    r = snakemake(tmp_path, "-n", "--until", "fft_peaks", "--configfile", base, dataset=tiny_dataset)
    assert _planned_jobs(r.stdout) == {}
    for change, expect in (({"fft_peaks": {"max_figures": 3}}, {"fft_peaks": 2}),
                           ({"segment": {"min_area_nm2": 0.9}}, {"segment": 2, "fft_peaks": 2})):
        r = snakemake(tmp_path, "-n", "--until", "fft_peaks", "--configfile", _image_stages_only(tmp_path, change),
                      dataset=tiny_dataset)
        assert r.returncode == 0, r.stderr[-3000:]
        assert _planned_jobs(r.stdout) == expect, r.stdout[-2000:]


def _image_stages_only(tmp_path, extra: dict | None = None) -> str:
    """A config file switching the per-sample physics off (plus ``extra`` keys)."""
    import yaml

    cfg = {"stages": {k: False for k in ("fem_geometry", "atomic_model", "keating", "phonons", "tight_binding")}}
    cfg.update(extra or {})
    p = tmp_path / f"cfg{len(list(tmp_path.glob('cfg*.yaml')))}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _planned_jobs(out: str) -> dict[str, int]:
    """The 'Job stats' table of ``snakemake -n`` as {rule: count}."""
    lines = out.splitlines()
    if "Nothing to be done" in out:
        return {}
    i = next(k for k, line in enumerate(lines) if line.startswith("Job stats"))
    jobs = {}
    for line in lines[i + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs
