"""MPI domain decomposition: 2 ranks reproduce the single-process moments bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temtwin.physics import kpm
from temtwin.physics.tightbinding import TBOperator, build_hamiltonian, load_parameters, prepare_structure
from temtwin.physics.tightbinding.distributed import launcher, mpi_available, split_rows

REASON = mpi_available()
WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from mpi4py import MPI
    sys.path.insert(0, sys.argv[2])
    from test_tb_mpi import case
    from temtwin.physics import kpm
    from temtwin.physics.tightbinding.distributed import DistributedOperator

    try:
        st, P, row_sets, rngs = case()
        op = DistributedOperator(MPI.COMM_WORLD, st, P)
        bounds = kpm.spectral_bounds(op, n_steps=40, seed=5)
        a, b = kpm.rescaling((-16.0, 42.0))
        mu = kpm.stochastic_moments(op, row_sets, rngs, a, b, 96, block_size=2)
    except BaseException:
        import traceback
        traceback.print_exc()
        MPI.COMM_WORLD.Abort(1)
    if op.rank == 0:
        np.savez(sys.argv[1], mu=mu, bounds=bounds, n_low=op.n_low, n_high=op.n_high, n_own=op.n_own,
                 comm_s=op.comm_s, step_s=op.step_s)
""")


def case():
    """A 1536-atom Si/Ge slab (open surfaces, strained, SO), three random vectors on two regions."""
    from temtwin.physics.tightbinding import diamond_cubic

    rng = np.random.default_rng(3)
    pos, _, z = diamond_cubic(5.5, (4, 4, 12), lambda p: np.where(p[:, 2] > 30, 32, 14))
    pos = pos + rng.normal(scale=0.04, size=pos.shape)
    P = load_parameters()
    st = prepare_structure(pos, z, P)
    norb = np.asarray(P.n_orb)[st.species]
    site_of_row = np.repeat(np.arange(st.n_sites), norb)
    top = st.positions_A[st.parent[site_of_row], 2] > 30
    row_sets = [np.nonzero(top)[0], np.nonzero(~top)[0], np.arange(len(top))]
    rngs = [np.random.default_rng([7, k]) for k in range(3)]
    return st, P, row_sets, rngs


def test_split_rows_on_block_boundaries():
    b = split_rows(10_000, 3)
    assert b[0] == 0 and b[-1] == 10_000 and np.all(b[1:-1] % 256 == 0) and np.all(np.diff(b) > 0)


@pytest.mark.skipif(bool(REASON), reason=REASON or "mpi")
def test_two_ranks_equal_single_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "mu.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    r = subprocess.run(launcher(2, "mpirun") + [sys.executable, str(script), str(out),
                                                 os.path.dirname(__file__)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out)
    st, P, row_sets, rngs = case()
    op = TBOperator(build_hamiltonian(st, P), backend="numba")
    a, b = kpm.rescaling((-16.0, 42.0))
    ref = kpm.stochastic_moments(op, row_sets, rngs, a, b, 96, block_size=2)
    np.testing.assert_array_equal(got["mu"], ref)            # bit for bit
    assert got["n_low"] == 0 and 0 < got["n_high"] < got["n_own"] / 4    # a halo, not a copy
    bounds = kpm.spectral_bounds(TBOperator(build_hamiltonian(st, P), complex_dtype=np.complex128),
                                 n_steps=40, seed=5)
    assert tuple(got["bounds"]) == bounds


FAKE_SRUN = """#!/bin/sh
# stands in for SLURM's srun: records its arguments, then starts the ranks with mpirun
echo "$@" > "$FAKE_SRUN_LOG"
n=1
if [ "$1" = "--ntasks" ]; then n=$2; shift 2; fi
if [ "$1" = "--mpi=pmix" ]; then shift; fi
exec mpirun -n "$n" --oversubscribe "$@"
"""


@pytest.mark.skipif(bool(REASON), reason=REASON or "mpi")
def test_stage_with_two_ranks_writes_same_moments(tmp_path, monkeypatch):
    """The stage under SLURM (SLURM_JOB_ID set, launcher auto) starts its ranks with ``srun``: here a
    fake srun on PATH that execs mpirun; the 2-rank moments equal the one-process moments."""
    import h5py

    from temtwin.stages import tb_moments
    from temtwin.workflow.context import StageContext

    from test_tb_checkpoint import _write_model

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(FAKE_SRUN)
    (bindir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("FAKE_SRUN_LOG", str(tmp_path / "srun_args.txt"))
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    _write_model(tmp_path / "model.h5")
    out = {}
    for ranks in (1, 2):
        cfg = {"tb_moments": {"n_chunks": 1, "n_moments": 64, "vectors_per_region": 2,
                               "structure": "as_built", "partitions": "regions", "mpi_ranks": ranks,
                               "mpi_launcher": "auto", "checkpoint_every_moments": 32}}
        out[ranks] = tmp_path / f"r{ranks}" / "moments_0.h5"
        ctx = StageContext.create("tb_moments", {"model": tmp_path / "model.h5"}, {"h5": out[ranks]},
                                  config=cfg, wildcards={"sample": "s1", "chunk": "0"})
        tb_moments.run(ctx)
    with h5py.File(out[1]) as a, h5py.File(out[2]) as b:
        assert b["parameters"].attrs["mpi_ranks"] == 2
        np.testing.assert_array_equal(a.attrs["bounds_eV"], b.attrs["bounds_eV"])
        np.testing.assert_array_equal(a["moments"][()], b["moments"][()])
    assert not list((tmp_path / "r2").glob("*.ckpt*")) and not list((tmp_path / "r2").glob(".*json"))
    srun_args = (tmp_path / "srun_args.txt").read_text().split()
    assert srun_args[:2] == ["--ntasks", "2"] and "temtwin.physics.tb_mpi" in srun_args


def test_launcher_uses_srun_inside_slurm(monkeypatch):
    import shutil

    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert launcher(4)[:3] == ["srun", "--ntasks", "4"]
    monkeypatch.delenv("SLURM_JOB_ID")
    cmd = launcher(2)
    assert cmd[0] == "mpirun" and cmd[cmd.index("-n") + 1] == "2"


def test_mpi_ranks_without_mpi_is_one_clear_error(tmp_path, monkeypatch):
    from temtwin.errors import UserError
    from temtwin.stages import tb_moments
    from temtwin.physics.tightbinding import distributed
    from temtwin.workflow.context import StageContext

    monkeypatch.setattr(distributed, "mpi_available", lambda: "no mpirun/srun on PATH")
    ctx = StageContext.create("tb_moments", {"model": tmp_path / "model.h5"}, {"h5": tmp_path / "m.h5"},
                              config={"tb_moments": {"n_chunks": 1, "mpi_ranks": 2}},
                              wildcards={"sample": "s", "chunk": "0"})
    with pytest.raises(UserError, match="mpi_ranks"):
        tb_moments.run(ctx)
    assert not (tmp_path / "m.h5").exists()
