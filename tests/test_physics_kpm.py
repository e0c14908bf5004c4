"""KPM moments, DOS/LDOS against exact diagonalisation, backends, eigenstates, and the tb stages."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from temtwin.io.h5 import atomic_h5, missing_units, read_summary
from temtwin.physics import kpm, tb_states
from temtwin.physics.band_edges import band_edges
from temtwin.stages import tb_ldos, tb_moments
from temtwin.physics.tightbinding import (
    TBOperator, build_hamiltonian, diamond_cubic, load_parameters, prepare_structure,
)
from temtwin.twin.model_io import atoms_from_arrays
from temtwin.results.model import Model
from temtwin.workflow.context import StageContext

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
P = load_parameters()


@pytest.fixture(scope="module")
def sige_cell():
    """64-atom periodic random Si0.5Ge0.5 cell: Hamiltonian, exact eigenpairs, two regions."""
    rng = np.random.default_rng(1)
    pos, cell, z = diamond_cubic(5.55, (2, 2, 2), lambda p: np.where(rng.random(len(p)) < 0.5, 14, 32))
    pos = pos + rng.normal(scale=0.03, size=pos.shape)           # some internal strain
    st = prepare_structure(pos, z, P, cell_A=cell, pbc=(True, True, True))
    ham = build_hamiltonian(st, P, dtype=np.float64)
    H = ham.to_csr(np.complex128).toarray()
    ev, vec = np.linalg.eigh(H)
    region = (pos[:, 2] > 5.55).astype(int)
    return ham, ev, vec, region


@pytest.fixture(scope="module")
def small_cell():
    """16-atom periodic Si/Ge cell with exact eigenpairs (for exact-trace and eigenstate checks)."""
    pos, cell, z = diamond_cubic(5.55, (1, 1, 2), lambda p: np.where(np.arange(len(p)) % 3 == 0, 32, 14))
    pos = pos + np.random.default_rng(2).normal(scale=0.03, size=pos.shape)
    st = prepare_structure(pos, z, P, cell_A=cell, pbc=(True, True, True))
    ham = build_hamiltonian(st, P, dtype=np.float64)
    ev, vec = np.linalg.eigh(ham.to_csr(np.complex128).toarray())
    return ham, ev, vec, None


def test_jackson_kernel():
    g = kpm.jackson_kernel(64)
    assert g[0] == pytest.approx(1.0)
    assert np.all(np.diff(g) < 0) and g[-1] > 0


def test_bounds_contain_spectrum(sige_cell):
    ham, ev, _, _ = sige_cell
    lo, hi = kpm.spectral_bounds(TBOperator(ham), n_steps=100, seed=3)
    assert lo < ev.min() and hi > ev.max()
    assert (hi - lo) < 1.1 * (ev.max() - ev.min()) + 0.2        # tight, unlike Gershgorin
    g = ham.gershgorin()
    assert g[0] <= ev.min() and g[1] >= ev.max()


def test_backends_agree(sige_cell):
    ham, _, _, _ = sige_cell
    Hc = ham.to_csr(np.complex128)
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(ham.n_orbitals, 2, 3)) + 1j * rng.normal(size=(ham.n_orbitals, 2, 3)))
    ref = (Hc @ X.reshape(-1, 3)).reshape(X.shape)
    for backend in ("numba", "scipy", "torch"):
        op = TBOperator(ham, backend=backend, complex_dtype=np.complex128)
        Y = op.to_numpy(op.matmat(op.to_backend(X)))
        np.testing.assert_allclose(Y, ref, atol=1e-10, err_msg=backend)


def test_kpm_exact_trace_equals_diagonalisation(small_cell):
    ham, ev, _, _ = small_cell
    op = TBOperator(ham, complex_dtype=np.complex128)
    a, b = kpm.rescaling(kpm.spectral_bounds(op))
    n = ham.n_orbitals
    eye = np.eye(2 * n, dtype=np.complex128).reshape(n, 2, 2 * n)
    mu = kpm.chebyshev_moments(op, eye, a, b, 200).sum(axis=0)
    np.testing.assert_allclose(mu, kpm.moments_from_eigenvalues(ev, a, b, 200), atol=1e-7 * len(ev))


def test_kpm_stochastic_dos_within_one_percent_of_diagonalisation(sige_cell):
    ham, ev, _, _ = sige_cell
    op = TBOperator(ham)                                          # complex64, numba
    bounds = kpm.spectral_bounds(op)
    a, b = kpm.rescaling(bounds)
    N, R = 256, 256
    rows = [np.arange(op.n_rows)] * R
    mu = kpm.stochastic_moments(op, rows, [np.random.default_rng(100 + k) for k in range(R)],
                                a, b, N, block_size=64).mean(axis=0)
    E = np.linspace(bounds[0] + 0.05, bounds[1] - 0.05, 3000)
    rho = kpm.density(mu, E, a, b)
    rho_ed = kpm.density(kpm.moments_from_eigenvalues(ev, a, b, N), E, a, b)   # same broadening
    l1 = np.abs(rho - rho_ed).sum() / rho_ed.sum()
    assert l1 < 0.01, l1
    assert np.trapezoid(rho, E) == pytest.approx(len(ev), rel=2e-3)


def test_region_ldos_sum_to_total_and_match_projected_diagonalisation(sige_cell):
    ham, ev, vec, region = sige_cell
    op = TBOperator(ham)
    bounds = kpm.spectral_bounds(op)
    a, b = kpm.rescaling(bounds)
    N, R = 128, 96
    site = ham.orbital_site
    E = np.linspace(-14, 8, 1500)
    ldos, ldos_ed = [], []
    for lab in (0, 1):
        rows = np.nonzero(region[site] == lab)[0]
        mu = kpm.stochastic_moments(op, [rows] * R, [np.random.default_rng(k + 7 * lab) for k in range(R)],
                                    a, b, N, block_size=48).mean(axis=0)
        ldos.append(kpm.density(mu, E, a, b))
        so = (2 * rows[:, None] + np.arange(2)).ravel()
        w = (np.abs(vec[so]) ** 2).sum(axis=0)
        ldos_ed.append(kpm.density(kpm.moments_from_eigenvalues(ev, a, b, N, w), E, a, b))
    total_ed = kpm.density(kpm.moments_from_eigenvalues(ev, a, b, N), E, a, b)
    # exact projections partition the trace
    np.testing.assert_allclose(ldos_ed[0] + ldos_ed[1], total_ed, atol=1e-8 * total_ed.max())
    for r, r_ed in zip(ldos, ldos_ed):
        assert np.abs(r - r_ed).sum() / r_ed.sum() < 0.03
    assert np.abs(ldos[0] + ldos[1] - total_ed).sum() / total_ed.sum() < 0.02


@pytest.mark.parametrize("method", ["shift_invert", "filter"])
def test_states_near_energy(small_cell, method):
    ham, ev, vec, _ = small_cell
    target = 0.9
    res = tb_states.states_near(ham, target, n_states=2, method=method, degree=300, n_iter=8,
                                tol_eV=1e-4)
    nearest = ev[np.argsort(np.abs(ev - target))[:2]]
    np.testing.assert_allclose(np.sort(res.energies_eV), np.sort(nearest), atol=1e-4)
    assert res.residuals_eV.max() < 1e-3
    w = tb_states.atom_weights(ham, res.vectors)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-8)
    maps, _ = tb_states.weight_maps(ham.structure.positions_A, w, (0.05, 0.05))
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-8)


# ----------------------------------------------------------------------------- stages
def _write_model(path, numbers_fn=None, info=None):
    """Open-surface Ge/Si slab model: Ge below (image y > 8 Å, growth up the image), Si above."""
    pos, _, z = diamond_cubic(5.5, (3, 4, 2))
    z = np.where(pos[:, 1] > 8.0, 32, 14) if numbers_fn is None else numbers_fn(pos)
    region = (pos[:, 1] > 8.0).astype(int)
    atoms = atoms_from_arrays(pos / 10, z, region=region,
                              info={"image": "img", "pixel_size_nm": [0.05, 0.05], "thickness_nm": 1.1,
                                    **(info or {})})
    with atomic_h5(path) as f:
        Model.from_atoms(atoms).write(f)


def _run(tmp, n_chunks, ldos=None):
    cfg = {"tb_moments": {"n_chunks": n_chunks, "n_moments": 128, "vectors_per_region": 3,
                          "structure": "as_built", "slab_thickness_nm": 0.5}, "tb_ldos": dict(ldos or {})}
    files = []
    for c in range(n_chunks):
        out = tmp / f"n{n_chunks}" / f"moments_{c}.h5"
        ctx = StageContext.create("tb_moments", {"model": tmp / "model.h5"}, {"h5": out}, config=cfg,
                                  wildcards={"sample": "s1", "chunk": str(c)})
        tb_moments.run(ctx)
        files.append(out)
    ctx = StageContext.create("tb_ldos", {"model": tmp / "model.h5", "moments": files},
                              {"h5": tmp / f"n{n_chunks}" / "tb.h5", "figures": tmp / f"n{n_chunks}" / "fig"},
                              config=cfg, wildcards={"sample": "s1"})
    tb_ldos.run(ctx)
    return tmp / f"n{n_chunks}"


def test_stages_chunking_invariant_and_outputs(tmp_path):
    _write_model(tmp_path / "model.h5")
    d1 = _run(tmp_path, 1, {"state_energies_eV": [0.6], "n_states": 2})
    d3 = _run(tmp_path, 3)
    with h5py.File(d1 / "tb.h5") as f1, h5py.File(d3 / "tb.h5") as f3:
        for fam in ("regions", "slabs"):
            for lab in f1[fam]:
                a, b = f1[f"{fam}/{lab}/moments"][()], f3[f"{fam}/{lab}/moments"][()]
                assert np.array_equal(a, b), (fam, lab)            # bitwise, whatever the chunking
        total = f1["dos_total"][()]
        regs = [(f1[f"regions/{k}/ldos"][()], f1[f"regions/{k}"].attrs["n_atoms"]) for k in f1["regions"]]
        n = sum(c for _, c in regs)
        np.testing.assert_allclose(sum(r * c for r, c in regs) / n, total, atol=1e-12)
        # mu_0 per vector = spin-orbitals of the region = 20 per atom (sp3 passivation adds none)
        for k in f1["regions"]:
            g = f1[f"regions/{k}"]
            assert g["moments"][0] / g["moments"].attrs["n_vectors"] == pytest.approx(20 * g.attrs["n_atoms"])
        assert np.all(total >= -1e-3) and total.max() > 0.5
        assert f1["states/0/energies"].shape == (2,)
        assert f1["states/0/weight_map"].ndim == 3
    assert missing_units(d1 / "tb.h5") == [] and missing_units(d3 / "moments_0.h5") == []
    s = read_summary(d1 / "tb.h5")["tight_binding"]
    assert set(s) == {"regions", "n_orbitals", "n_moments", "n_random"}
    assert set(s["regions"]) == {"0", "1"}
    assert s["n_moments"] == 128 and s["n_orbitals"] > 0
    assert set(s["regions"]["0"]) == {"valence_band_edge_eV", "conduction_band_edge_eV"}
    figs = sorted(p.name for p in (d1 / "fig").iterdir())
    assert {"ldos_regions.png", "ldos_gap_zoom.png", "band_edge_profile.png", "state_0.png"} <= set(figs)
    json.dumps(s)


def test_stage_not_applicable_for_other_elements(tmp_path):
    _write_model(tmp_path / "model.h5", numbers_fn=lambda p: np.where(np.arange(len(p)) % 2, 49, 15))
    d = _run(tmp_path, 1)
    with h5py.File(d / "moments_0.h5") as f:
        assert not f.attrs["applicable"] and "Si and Ge only" in f.attrs["reason"]
    with h5py.File(d / "tb.h5") as f:
        assert not f.attrs["applicable"]
    assert read_summary(d / "tb.h5")["tight_binding"]["applicable"] is False


def test_band_edges_estimator_on_synthetic_ldos():
    # parabolic edges rho = C sqrt(E_v - E): states within dE of the edge = 2/3 C dE^1.5
    E = np.linspace(-2, 3, 50001)
    C = 0.5
    rho = C * (np.sqrt(np.clip(-E, 0, None)) + np.sqrt(np.clip(E - 1.1, 0, None)))
    q = 0.002
    d = (1.5 * q / C) ** (2 / 3)
    ev, ec, mid = band_edges(E, rho, (-0.5, 2.0), states=q)
    assert ev == pytest.approx(-d, abs=2e-4) and ec == pytest.approx(1.1 + d, abs=2e-4)
    assert 0.0 <= mid <= 1.1
    # a rigid shift of the LDOS shifts the edges by the same amount
    ev2, ec2, _ = band_edges(E, np.interp(E - 0.2, E, rho), (-0.5, 2.0), states=q)
    assert ev2 - ev == pytest.approx(0.2, abs=2e-4) and ec2 - ec == pytest.approx(0.2, abs=2e-4)


def test_config_defaults_and_validation():
    from temtwin.config import load_config
    from temtwin.errors import UserError

    full = load_config({}, require_dataset=False)
    cfg, ldos = full["tb_moments"], full["tb_ldos"]
    assert cfg["n_moments"] == 512 and cfg["passivation"] == "sp3_shift" and cfg["structure"] == "relaxed"
    assert cfg["n_chunks"] == 2 and ldos["gap_window_eV"] == [-0.5, 2.0]
    with pytest.raises(UserError):
        load_config({"tb_moments": {"passivation": "hydrogen"}}, require_dataset=False)
    with pytest.raises(UserError, match="tb_ldos.n_moments"):   # a moments key is not an LDOS key
        load_config({"tb_ldos": {"n_moments": 64}}, require_dataset=False)
