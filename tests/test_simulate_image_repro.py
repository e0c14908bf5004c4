"""simulate_image reruns are bit-identical: the same stage on the same inputs, twice in one process (with an
FFTW_MEASURE plan of the same grid made in between, whose wisdom used to change the FFTW_ESTIMATE plans) and
once in a fresh process, gives exactly equal datasets.  Small generated HRTEM case (abTEM, 0.1 Å)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np

from temtwin.simulate_image import multislice as ms
from temtwin.simulate_image.hrtem import HRTEMImager
from temtwin.testing.sige_atoms import sige110_atoms

CFG = dict(sampling_A=0.1, fit_size_px=64, edge_margin_nm=0.0, cs_um=[15.0], fit_cs=True,
           defocus_range_nm=[-8.0, 8.0], defocus_step_nm=2.0, max_thickness_factor=1.0)


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def _assert_identical(a, b) -> None:
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        x, y = np.asarray(da[k]), np.asarray(db[k])
        if x.dtype.kind in "fc":
            assert np.array_equal(x, y, equal_nan=True), k
        else:
            assert np.array_equal(x, y), k


def _case(tmp_path):
    from test_simulate_image import _write_inputs

    at = sige110_atoms((1.6, 1.7), 2.0, 0.3, np.random.default_rng(0))
    shape = (64, 64)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    ew = ms.exit_waves(at, 300e3, sampling_A=0.1, slice_A=2.0, every_slices=2)
    clean = HRTEMImager(ew, shape, px, aperture_mrad=25.0).image(len(ew.thickness_nm) - 1, 4.0, 12.0, 3.0, 0.01)
    data = np.random.default_rng(2).poisson(400 * clean).astype(float)
    _write_inputs(tmp_path, at, shape, px, mode="TEM", detector="", data=data)
    return at


def _run(d, tmp_path, threads):
    from test_simulate_image import _ctx

    from temtwin.stages.simulate_image import run

    ctx = _ctx(tmp_path, **CFG)
    ctx.output["h5"] = str(d / "simulation.h5")
    ctx.output["figures"] = str(d / "figs")
    ctx.threads = threads
    run(ctx)
    return d / "simulation.h5"


def test_hrtem_stage_reruns_are_bit_identical(tmp_path):
    at = _case(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    a = _run(tmp_path / "a", tmp_path, 2)
    # an FFTW_MEASURE plan of the same grid in the same process: its wisdom must not leak into the next run
    old = ms.FFTW_PLANNING
    try:
        ms.FFTW_PLANNING = "FFTW_MEASURE"
        ms.exit_waves(at, 300e3, sampling_A=0.1, slice_A=2.0, every_slices=2, threads=2)
    finally:
        ms.FFTW_PLANNING = old
    b = _run(tmp_path / "b", tmp_path, 2)
    _assert_identical(a, b)
    # a fresh process, same threads
    code = ("import sys, pathlib; sys.path.insert(0, sys.argv[2]); import test_simulate_image_repro as t; "
            "p = pathlib.Path(sys.argv[1]); t._run(p / 'c', p, 2)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(__import__("pathlib").Path(__file__).parent)],
                   check=True, timeout=600)
    _assert_identical(a, tmp_path / "c" / "simulation.h5")
