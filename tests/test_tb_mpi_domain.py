"""Per-domain structure preparation under MPI: each of 2 ranks reads and prepares only its domain plus a
halo, and the moments equal the one-process moments (whole structure) bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from temtwin.physics import kpm
from temtwin.physics.tightbinding import TBOperator, build_hamiltonian, load_parameters, prepare_structure
from temtwin.physics.tightbinding.distributed import launcher, mpi_available

REASON = mpi_available()
WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from mpi4py import MPI
    sys.path.insert(0, sys.argv[3])
    from test_tb_mpi_domain import domain_row_sets
    from temtwin.physics import kpm
    from temtwin.physics.tightbinding import load_parameters
    from temtwin.physics.tightbinding.distributed import DistributedOperator
    from temtwin.physics.tightbinding.domain import prepare_domain

    comm = MPI.COMM_WORLD
    try:
        P = load_parameters()
        dom = prepare_domain(comm, sys.argv[1], P)
        op = DistributedOperator(comm, None, P, domain=dom)
        bounds = kpm.spectral_bounds(DistributedOperator(comm, None, P, domain=dom,
                                                         complex_dtype=np.complex128), n_steps=20, seed=5)
        row_sets, rngs = domain_row_sets(comm, dom, op)
        a, b = kpm.rescaling((-16.0, 42.0))
        mu = kpm.stochastic_moments(op, row_sets, rngs, a, b, 48, block_size=2)
    except BaseException:
        import traceback
        traceback.print_exc()
        comm.Abort(1)
    st = dom.structure
    np.savez(f"{sys.argv[2]}.{op.rank}.npz", mu=mu, bounds=bounds, n_read=dom.n_read,
             n_read1=dom.n_read_pass1, n_input=dom.n_input, n_local=st.n_sites, n_bonds=len(st.bond_i),
             n_env=len(st.env), own=dom.own1 - dom.own0, n_ghost=op.n_low + op.n_high, n_own_rows=op.n_own,
             n_host=dom.n_host_total, n_removed=dom.n_removed_total, n_dangling=dom.n_dangling_total,
             atom_index=st.atom_index[dom.own0:dom.own1], halo=dom.halo_A, cut=dom.max_bond_A)
""")


def model_arrays():
    """A 2157-atom Si/Ge bar along z (3 × 3 × 32 cells, positions jittered, 6 % vacancies so that atoms
    across the domain boundary are pruned and bonds dangle), atoms ordered by z as the atomic-model stage
    writes them (Å)."""
    from temtwin.physics.tightbinding import diamond_cubic

    rng = np.random.default_rng(11)
    pos, _, z = diamond_cubic(5.5, (3, 3, 32), lambda p: np.where(p[:, 2] > 80, 32, 14))
    pos = pos + rng.normal(scale=0.05, size=pos.shape)
    keep = rng.random(len(z)) > 0.06
    pos, z = pos[keep], z[keep]
    order = np.argsort(pos[:, 2], kind="stable")
    return pos[order], z[order]


def write_model(path):
    from temtwin.io.h5 import atomic_h5
    from temtwin.results.model import Model
    from temtwin.twin.model_io import atoms_from_arrays

    pos, z = model_arrays()
    atoms = atoms_from_arrays(pos / 10.0, z, region=(pos[:, 2] > 80).astype(int),
                              info={"image": "t", "growth_direction": [0.0, 0.0, 1.0]})
    with atomic_h5(path) as f:
        Model.from_atoms(atoms).write(f)
    return atoms


def _top(z_A):
    return z_A > 60.0


def domain_row_sets(comm, dom, op):
    """Row sets (top, bottom, all) as :class:`DomainRows` of this rank, and their generators."""
    from temtwin.physics.tightbinding.domain import DomainRows

    rows = np.arange(op.r0, op.r1)
    site = dom.own0 + rows // 10 - dom.s0
    top = _top(dom.structure.positions_A[site, 2])
    own = [rows[top], rows[~top], rows]
    counts = np.array([len(r) for r in own])
    before = comm.exscan(counts)                      # collective; None on rank 0
    before = before if comm.Get_rank() else np.zeros(3, np.int64)
    total = comm.allreduce(counts)
    sets = [DomainRows(total[k], before[k], own[k]) for k in range(3)]
    return sets, [np.random.default_rng([7, k]) for k in range(3)]


@pytest.mark.skipif(bool(REASON), reason=REASON or "mpi")
def test_domain_preparation_two_ranks_bit_identical(tmp_path):
    atoms = write_model(tmp_path / "model.h5")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    r = subprocess.run(launcher(2, "mpirun") + [sys.executable, str(script), str(tmp_path / "model.h5"),
                                                 str(tmp_path / "out"), os.path.dirname(__file__)],
                       capture_output=True, text=True, env=env, timeout=150)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    got = [np.load(tmp_path / f"out.{k}.npz") for k in range(2)]

    # the one-process reference: the whole structure, the whole matrix
    P = load_parameters()
    st = prepare_structure(atoms.get_positions(), atoms.numbers, P, cell_A=np.asarray(atoms.cell[:]),
                           pbc=(False, False, False))
    assert st.n_removed > 0 and st.n_dangling > 0
    ham = build_hamiltonian(st, P)
    site_of_row = np.repeat(np.arange(st.n_sites), 10)
    top = _top(st.positions_A[site_of_row, 2])
    row_sets = [np.nonzero(top)[0], np.nonzero(~top)[0], np.arange(len(top))]
    rngs = [np.random.default_rng([7, k]) for k in range(3)]
    a, b = kpm.rescaling((-16.0, 42.0))
    ref = kpm.stochastic_moments(TBOperator(ham, backend="numba"), row_sets, rngs, a, b, 48, block_size=2)
    np.testing.assert_array_equal(got[0]["mu"], ref)                      # bit for bit
    np.testing.assert_array_equal(got[1]["mu"], ref)
    bounds = kpm.spectral_bounds(TBOperator(ham, complex_dtype=np.complex128), n_steps=20, seed=5)
    assert tuple(got[0]["bounds"]) == bounds

    # the same structure: counts, and together the ranks' own sites are every kept atom once
    for g in got:
        assert (g["n_host"], g["n_removed"], g["n_dangling"]) == (st.n_host, st.n_removed, st.n_dangling)
    own = np.concatenate([g["atom_index"] for g in got])
    np.testing.assert_array_equal(np.unique(own), st.atom_index)
    # each rank prepared its domain + halo only: halo = 3 nearest-neighbour distances ≥ 2 bond cut-offs
    n = len(atoms)
    for g in got:
        assert 2 * g["cut"] <= g["halo"] < 8.0
        assert g["n_read"] < 0.65 * n and g["n_read1"] < 0.65 * n          # half the bar + a 7 Å halo
        assert g["n_local"] <= g["own"] + 3 * 9 * 4                        # own sites + one bond shell
        assert g["n_env"] == g["n_local"] and g["n_bonds"] <= 4 * g["own"]
        assert 0 < g["n_ghost"] < g["n_own_rows"] / 3


@pytest.mark.skipif(bool(REASON), reason=REASON or "mpi")
def test_stage_two_ranks_per_domain_equals_one_process(tmp_path, monkeypatch):
    """The ``tb_moments`` stage with ``mpi_ranks: 2`` prepares per domain and writes what one process
    writes: the moments bit for bit, the partitions (regions and slabs) and the chunk-0 structure."""
    import h5py

    from temtwin.stages import tb_moments
    from temtwin.workflow.context import StageContext

    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    write_model(tmp_path / "model.h5")
    out = {}
    for ranks in (1, 2):
        cfg = {"tb_moments": {"n_chunks": 1, "n_moments": 32, "vectors_per_region": 1, "lanczos_steps": 30,
                               "structure": "as_built", "partitions": "both", "slab_thickness_nm": 4.0,
                               "mpi_ranks": ranks, "mpi_launcher": "mpirun", "checkpoint_every_moments": 16}}
        out[ranks] = tmp_path / f"r{ranks}" / "moments_0.h5"
        ctx = StageContext.create("tb_moments", {"model": tmp_path / "model.h5"}, {"h5": out[ranks]},
                                  config=cfg, wildcards={"sample": "s1", "chunk": "0"})
        tb_moments.run(ctx)
    with h5py.File(out[1]) as a, h5py.File(out[2]) as b:
        assert b["parameters"].attrs["per_domain"] and b["parameters"].attrs["mpi_ranks"] == 2
        np.testing.assert_array_equal(a.attrs["bounds_eV"], b.attrs["bounds_eV"])
        np.testing.assert_array_equal(a["moments"][()], b["moments"][()])
        for name in ("partitions/region", "partitions/slab", "tasks", "structure"):
            for key in a[name]:
                np.testing.assert_array_equal(a[name][key][()], b[name][key][()], err_msg=f"{name}/{key}")
        assert len(b["partitions/slab/label"]) >= 4                     # slabs along the bar
    assert not list((tmp_path / "r2").glob("*.ckpt*"))


@pytest.mark.skipif(bool(REASON), reason=REASON or "mpi")
def test_stage_two_ranks_explicit_h_falls_back_to_whole_structure(tmp_path, monkeypatch):
    """``explicit_h`` numbers H sites after all hosts: the ranks prepare the whole structure (as before the
    per-domain path) and still write the one-process moments."""
    import h5py

    from temtwin.stages import tb_moments
    from temtwin.workflow.context import StageContext

    from test_tb_checkpoint import _write_model

    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    _write_model(tmp_path / "model.h5")
    out = {}
    for ranks in (1, 2):
        cfg = {"tb_moments": {"n_chunks": 1, "n_moments": 32, "vectors_per_region": 1, "lanczos_steps": 20,
                               "structure": "as_built", "partitions": "regions", "passivation": "explicit_h",
                               "mpi_ranks": ranks, "mpi_launcher": "mpirun", "checkpoint_every_moments": 0}}
        out[ranks] = tmp_path / f"r{ranks}" / "moments_0.h5"
        ctx = StageContext.create("tb_moments", {"model": tmp_path / "model.h5"}, {"h5": out[ranks]},
                                  config=cfg, wildcards={"sample": "s1", "chunk": "0"})
        tb_moments.run(ctx)
    with h5py.File(out[1]) as a, h5py.File(out[2]) as b:
        assert b["parameters"].attrs["mpi_ranks"] == 2 and "per_domain" not in b["parameters"].attrs
        np.testing.assert_array_equal(a["moments"][()], b["moments"][()])
