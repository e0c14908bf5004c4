"""Moment checkpoints: a tb_moments job killed mid-recursion resumes and gives bit-identical moments."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from temtwin.io.h5 import atomic_h5
from temtwin.physics import kpm
from temtwin.stages import tb_moments
from temtwin.physics.tightbinding import TBOperator, diamond_cubic
from temtwin.twin.model_io import atoms_from_arrays
from temtwin.results.model import Model
from temtwin.workflow.context import StageContext

CFG = {"n_chunks": 1, "n_moments": 96, "vectors_per_region": 3, "structure": "as_built",
       "slab_thickness_nm": 0.5, "block_size": 4, "checkpoint_every_moments": 16,
       "partitions": "regions", "spectral_bounds_eV": [-16.0, 42.0]}


def _write_model(path):
    """Open-surface Ge/Si slab (Ge below image y = 8 Å, Si above), two regions."""
    pos, _, _ = diamond_cubic(5.5, (3, 4, 2))
    z = np.where(pos[:, 1] > 8.0, 32, 14)
    atoms = atoms_from_arrays(pos / 10, z, region=(pos[:, 1] > 8.0).astype(int),
                              info={"image": "img", "pixel_size_nm": [0.05, 0.05]})
    with atomic_h5(path) as f:
        Model.from_atoms(atoms).write(f)


class Killed(Exception):
    """Stands for SIGTERM from SLURM (preemption, time limit)."""


def _ctx(tmp, out, extra=None):
    return StageContext.create("tb_moments", {"model": tmp / "model.h5"}, {"h5": out},
                               config={"tb_moments": {**CFG, **(extra or {})}},
                               wildcards={"sample": "s1", "chunk": "0"})


def _count_steps(monkeypatch):
    calls = {"n": 0}
    orig = TBOperator.step

    def step(self, *a, **k):
        calls["n"] += a[3] >= 1                      # Chebyshev products (not Lanczos)
        return orig(self, *a, **k)

    monkeypatch.setattr(TBOperator, "step", step)
    return calls


def test_killed_job_resumes_bit_identical(tmp_path, monkeypatch):
    _write_model(tmp_path / "model.h5")
    ref = tmp_path / "ref" / "moments_0.h5"
    tb_moments.run(_ctx(tmp_path, ref, {"checkpoint_every_moments": 0}))
    calls = _count_steps(monkeypatch)

    out = tmp_path / "run" / "moments_0.h5"
    ctx = _ctx(tmp_path, out)
    seen = {"n": 0}

    def progress(i, n, what="", every=None):      # kill the job in the 2nd block, product 37
        if "Chebyshev" in what:
            seen["n"] += 1
            if seen["n"] == 47 + 36:
                raise Killed()

    ctx.progress = progress
    with pytest.raises(Killed):
        tb_moments.run(ctx)
    assert not out.exists()                           # nothing half-written
    ck = tb_moments.checkpoint_path(out)
    assert np.load(ck)["k"] == 32 and np.load(ck)["block"] == 4   # last multiple of 8 products
    n_before = calls["n"]

    tb_moments.run(_ctx(tmp_path, out))       # the rerun
    resumed_steps = calls["n"] - n_before
    assert resumed_steps == 48 - 32                  # only the rest of the 2nd block
    assert not Path(ck).exists()                      # removed after success
    with h5py.File(ref) as a, h5py.File(out) as b:
        assert np.array_equal(a["moments"][()], b["moments"][()])
        assert b.attrs["checkpoints_written"] > 0


def test_checkpoint_for_other_settings_is_ignored(tmp_path):
    rng = np.random.default_rng(0)
    H = rng.normal(size=(40, 40))
    op = TBOperator(matrix=(H + H.T) / 2)
    rows = [np.arange(40)] * 3

    def run(ck):
        rngs = [np.random.default_rng(k) for k in range(3)]
        return kpm.stochastic_moments(op, rows, rngs, 20.0, 0.0, 32, block_size=2, checkpoint=ck)

    ref = run(None)
    ck = kpm.MomentCheckpoint(tmp_path / "c.npz", "A", 8)
    np.testing.assert_array_equal(run(ck), ref)
    assert (tmp_path / "c.npz").exists() and ck.n_saved > 0
    # a finished state under another key must not be reused
    kpm.MomentCheckpoint(tmp_path / "c.npz", "A", 8).save(3, 0, np.zeros_like(ref))
    np.testing.assert_array_equal(run(kpm.MomentCheckpoint(tmp_path / "c.npz", "B", 8)), ref)
    kpm.MomentCheckpoint(tmp_path / "c.npz", "A", 8).save(3, 0, np.zeros_like(ref))
    assert np.all(run(kpm.MomentCheckpoint(tmp_path / "c.npz", "A", 8)) == 0)   # same key: reused
