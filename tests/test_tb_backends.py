"""Matrix-free products versus the CSR kernel: identical Chebyshev moments on a strained SiGe cluster."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.physics import kpm
from temtwin.physics.tightbinding import (
    MatrixFreeOperator, TBOperator, build_hamiltonian, build_matrix_free, diamond_cubic,
    load_parameters, prepare_structure,
)

P = load_parameters()


@pytest.fixture(scope="module")
def cluster():
    """Open 3×3×3-cell Si0.6Ge0.4 cluster with random displacements (surfaces, strain, SO)."""
    rng = np.random.default_rng(0)
    pos, _, z = diamond_cubic(5.5, (3, 3, 3), lambda p: np.where(rng.random(len(p)) < 0.4, 32, 14))
    return pos + rng.normal(scale=0.05, size=pos.shape), z


@pytest.mark.parametrize("passivation,cdtype", [("sp3_shift", np.complex64),
                                                 ("explicit_h", np.complex64),
                                                 ("sp3_shift", np.complex128)])
def test_matrix_free_moments_equal_csr(cluster, passivation, cdtype):
    pos, z = cluster
    st = prepare_structure(pos, z, P, passivation=passivation)
    csr = TBOperator(build_hamiltonian(st, P), backend="numba", complex_dtype=cdtype)
    mf = MatrixFreeOperator(build_matrix_free(st, P), complex_dtype=cdtype)
    rng = np.random.default_rng(1)
    X = np.exp(2j * np.pi * rng.random((csr.n_rows, 2, 3))).astype(cdtype)
    a, b = kpm.rescaling((-16.0, 42.0))
    mu_csr = kpm.chebyshev_moments(csr, X, a, b, 64)
    mu_mf = kpm.chebyshev_moments(mf, X, a, b, 64)
    # same blocks, same accumulation order: bit for bit (the target was float32 round-off)
    np.testing.assert_array_equal(mu_mf, mu_csr)
    # and the moments are those of the exact spectrum's trace estimate: |mu_n| <= mu_0
    assert np.all(np.abs(mu_csr) <= mu_csr[:, :1] * (1 + 1e-5))
    # the model's footprint: a few hundred bytes per atom, against kB for the CSR matrix
    per_atom = mf.memory_bytes() / st.n_host
    assert per_atom < 600 and csr.memory_bytes() / st.n_host > 3000


def test_matrix_free_matches_dense_hamiltonian(cluster):
    """Independent check: H X from the dense complex128 spinful matrix (to_csr)."""
    pos, z = cluster
    st = prepare_structure(pos[:120], z[:120], P, passivation="explicit_h", min_coordination=1)
    ham = build_hamiltonian(st, P, dtype=np.float64)
    mf = MatrixFreeOperator(build_matrix_free(st, P, dtype=np.float64), complex_dtype=np.complex128)
    X = np.random.default_rng(2).normal(size=(mf.n_rows, 2, 2)) + 0j
    Y = mf.matmat(X)
    H = ham.to_csr(np.complex128)
    ref = (H @ X.reshape(-1, 2)).reshape(Y.shape)
    np.testing.assert_allclose(Y, ref, atol=1e-12 * np.abs(ref).max())


def test_stage_matrix_free_backend_same_moments(tmp_path):
    import h5py

    from temtwin.stages import tb_moments
    from temtwin.workflow.context import StageContext

    from test_tb_checkpoint import _write_model

    _write_model(tmp_path / "model.h5")
    out = {}
    for backend in ("numba", "matrix_free"):
        cfg = {"tb_moments": {"n_chunks": 1, "n_moments": 64, "vectors_per_region": 2,
                              "structure": "as_built", "partitions": "regions", "backend": backend,
                              "checkpoint_every_moments": 0}}
        out[backend] = tmp_path / backend / "moments_0.h5"
        ctx = StageContext.create("tb_moments", {"model": tmp_path / "model.h5"}, {"h5": out[backend]},
                                  config=cfg, wildcards={"sample": "s1", "chunk": "0"})
        tb_moments.run(ctx)
    with h5py.File(out["numba"]) as a, h5py.File(out["matrix_free"]) as b:
        assert b.attrs["backend"] == "matrix_free"
        np.testing.assert_array_equal(a.attrs["bounds_eV"], b.attrs["bounds_eV"])   # Lanczos too
        np.testing.assert_array_equal(a["moments"][()], b["moments"][()])


@pytest.mark.parametrize("m,cdtype", [(1, np.complex64), (3, np.complex64), (16, np.complex64),
                                      (2, np.complex128)])
def test_specialised_kernel_equals_generic_and_reference(cluster, m, cdtype):
    """The compiled-width CSR kernel gives the generic kernel's products bit for bit, and both
    equal an independent complex128 SciPy product of the full spinful matrix to round-off."""
    from temtwin.physics.tightbinding.operator import ROW_BLOCK, _kernel_real, real_kernel

    pos, z = cluster
    ham = build_hamiltonian(prepare_structure(pos, z, P), P)
    op = TBOperator(ham, backend="numba", complex_dtype=cdtype)
    rng = np.random.default_rng(4)
    X = np.exp(2j * np.pi * rng.random((op.n_rows, 2, m))).astype(cdtype)
    Xp = np.exp(2j * np.pi * rng.random((op.n_rows, 2, m))).astype(cdtype)
    n, rv = op.n_rows, X.real.dtype
    out = []
    for kern in (_kernel_real, real_kernel(4 * m)):
        Y = np.empty_like(X)
        part = np.zeros(((n + ROW_BLOCK - 1) // ROW_BLOCK, m, 2))
        kern(ham.H.indptr, ham.H.indices, ham.H.data, X.reshape(n, 2 * m).view(rv), Xp.reshape(n, 2 * m).view(rv),
             Y.reshape(n, 2 * m).view(rv), rv.type(0.05), rv.type(10.0), 2, op._so_lam, op._so_base, op._so_comp,
             np.ascontiguousarray(op._M.real), np.ascontiguousarray(op._M.imag), part, ROW_BLOCK, m, 0)
        out.append((Y, part))
    np.testing.assert_array_equal(out[1][0], out[0][0])
    np.testing.assert_array_equal(out[1][1], out[0][1])
    H = ham.to_csr(np.complex128)
    X128, Xp128 = X.astype(np.complex128), Xp.astype(np.complex128)
    ref = 2 * 0.05 * ((H @ X128.reshape(-1, m)).reshape(X.shape) - 10.0 * X128) - Xp128
    tol = 1e-5 if cdtype == np.complex64 else 1e-12
    np.testing.assert_allclose(out[1][0], ref, atol=tol * np.abs(ref).max())
