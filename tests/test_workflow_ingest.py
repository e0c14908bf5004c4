"""End to end through the Snakemake command line: ingest on a tiny dataset, errors at start."""

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
