"""Phonons from the Keating model: Hessian, Gamma optical modes, KPM LDOS vs exact diagonalisation, stage."""

import h5py
import numpy as np
import pytest
from ase.build import bulk

from temtwin.io.h5 import missing_units, read_summary
from temtwin.physics.keating import KeatingModel, central_differences
from temtwin.physics.phonons import (KeatingDynamicalOperator, dynamical_matrix, energy_of_lambda,
                                     exact_ldos, find_peaks_meV, hessian, kpm_ldos)
from temtwin.workflow.context import StageContext

A = {"Si": 5.431, "Ge": 5.658}
GAMMA_OPTICAL_MEV = {"Si": 68.0, "Ge": 37.9}  # reference keating.yaml checks (Keating model values)


def l1(a, b):
    return float(np.abs(a - b).sum() / np.abs(b).sum())


def test_hessian_equals_force_finite_differences():
    at = bulk("Si", "diamond", 5.5, cubic=True)
    rng = np.random.default_rng(0)
    at.numbers = np.where(rng.random(len(at)) < 0.5, 32, 14)
    at.positions += rng.normal(0, 0.05, at.positions.shape)
    m = KeatingModel.from_atoms(at)
    h = hessian(m, at.positions).toarray()
    num = -central_differences(lambda p: m.evaluate(p).forces.ravel(), at.positions).reshape(h.shape)
    assert np.abs(h - num).max() / np.abs(h).max() < 1e-8
    np.testing.assert_allclose(h, h.T, atol=1e-12)


def test_matrix_free_operator_equals_assembled_dynamical_matrix():
    at = bulk("Si", "diamond", 5.5, cubic=True).repeat((2, 2, 1))
    rng = np.random.default_rng(4)
    at.numbers = np.where(rng.random(len(at)) < 0.5, 32, 14)
    at.positions += rng.normal(0, 0.05, at.positions.shape)
    at.pbc = (True, False, True)  # periodic images and an open surface
    m = KeatingModel.from_atoms(at)
    d = dynamical_matrix(m, at.positions).toarray()
    op = KeatingDynamicalOperator(m, at.positions)
    x = rng.normal(size=(3 * len(at), 3))
    np.testing.assert_allclose(op.matvec(x), d @ x, atol=1e-12 * np.abs(d).max())
    e = np.arange(0.0, 80.0, 0.2)
    groups = (at.numbers == 32).astype(int)
    ref = exact_ldos(d, groups, e, 1.5)
    res = kpm_ldos(op, [groups], e, 1.5, n_moments=512, probe="exact")
    for g in range(2):
        assert l1(res.ldos[0][g], ref[g]) < 0.02


@pytest.mark.parametrize("el", ["Si", "Ge"])
def test_gamma_optical_mode_matches_keating(el):
    at = bulk(el, "diamond", A[el], cubic=True)
    m = KeatingModel.from_atoms(at)
    lam = np.linalg.eigvalsh(dynamical_matrix(m, at.positions).toarray())
    e = energy_of_lambda(lam)
    assert np.abs(e[:3]).max() < 1e-3  # acoustic sum rule: three zero modes
    # the optical mode at Gamma is the highest mode of the Keating crystal (triply degenerate)
    assert e[-1] == pytest.approx(GAMMA_OPTICAL_MEV[el], abs=0.1)
    assert e[-3] == pytest.approx(e[-1], abs=1e-6)


@pytest.mark.parametrize("case", ["Si", "Ge", "SiGe"])
def test_kpm_ldos_matches_exact_diagonalisation(case):
    if case == "SiGe":
        at = bulk("Si", "diamond", 5.575, cubic=True).repeat(2)
        rng = np.random.default_rng(5)
        at.numbers = np.where(rng.random(len(at)) < 0.7, 32, 14)
        groups = (at.numbers == 32).astype(int)  # group 0 = Si atoms, 1 = Ge atoms
    else:
        at = bulk(case, "diamond", A[case], cubic=True).repeat(2)
        groups = np.zeros(len(at), int)
    m = KeatingModel.from_atoms(at)
    d = dynamical_matrix(m, at.positions)
    e = np.arange(0.0, 80.0, 0.1)
    sigma = 1.0
    ref = exact_ldos(d, groups, e, sigma)
    res = kpm_ldos(d, [groups], e, sigma, n_moments=512, probe="exact")
    for g in range(ref.shape[0]):
        assert l1(res.ldos[0][g], ref[g]) < 0.02
    # normalised per degree of freedom
    assert res.ldos[0].sum(axis=1) * 0.1 == pytest.approx(np.ones(ref.shape[0]), abs=0.01)


def _alloy_cell(seed: int):
    """Random Si0.3Ge0.7 on a 3x3x3 cubic diamond cell (216 atoms) and its dynamical matrix."""
    at = bulk("Si", "diamond", 5.575, cubic=True).repeat(3)
    rng = np.random.default_rng(seed)
    at.numbers = np.where(rng.random(len(at)) < 0.7, 32, 14)
    return at, dynamical_matrix(KeatingModel.from_atoms(at), at.positions)


def test_stochastic_kpm_converges_to_exact_on_larger_cell():
    at, d = _alloy_cell(seed=1)
    e = np.arange(0.0, 75.0, 0.1)
    ref = exact_ldos(d, np.zeros(len(at), int), e, 1.5)
    res = kpm_ldos(d, [np.zeros(len(at), int)], e, 1.5, n_moments=512, n_vectors=16,
                   rng=np.random.default_rng(0))
    assert l1(res.ldos[0][0], ref[0]) < 0.05


def test_alloy_shows_three_optical_bands():
    at, d = _alloy_cell(seed=2)
    e = np.arange(0.0, 75.0, 0.1)
    ldos = exact_ldos(d, np.zeros(len(at), int), e, 1.0)[0]
    peaks = find_peaks_meV(e, ldos, 30.0, prominence=0.02)
    # Ge-Ge (~35), Si-Ge (~50) and Si-Si (~60-64) optical bands of the Keating alloy
    for lo, hi in [(32, 39), (46, 54), (57, 66)]:
        assert any(lo <= p <= hi for p in peaks), peaks


def test_phonons_stage_writes_ldos_per_region_and_slab(tmp_path):
    from temtwin.stages import keating, phonons
    from test_physics_keating import device_model, keating_ctx, write_model

    at, region, _ = device_model(seed=3)
    write_model(tmp_path / "model.h5", at, region, (True, False, True))
    keating.run(keating_ctx(tmp_path))
    ctx = StageContext.create(
        "phonons", {"model": tmp_path / "model.h5", "keating": tmp_path / "keating.h5",
                    "relaxed": tmp_path / "relaxed.extxyz"},
        {"h5": tmp_path / "phonons.h5", "figures": tmp_path / "figures" / "phonons"},
        config={"phonons": {"n_moments": 512, "n_vectors": 4, "operator": "matrix_free"}},
        wildcards={"sample": "s"})
    phonons.run(ctx)
    assert missing_units(tmp_path / "phonons.h5") == []
    s = read_summary(tmp_path / "phonons.h5")["phonons"]
    assert s["method"]["name"] == "kpm" and set(s["regions"]) == {"1", "2"}
    # pure Ge region (2): its optical peak near the Ge Keating value, no Si-Si band
    ge = s["regions"]["2"]["peak_meV"]
    assert any(33 <= p <= 39 for p in ge) and not any(p > 55 for p in ge)
    buf = s["regions"]["1"]["peak_meV"]
    assert any(46 <= p <= 54 for p in buf)  # Si-Ge band of the alloy buffer
    with h5py.File(tmp_path / "phonons.h5") as f:
        e = f["energy_meV"][()]
        de = e[1] - e[0]
        np.testing.assert_allclose(f["regions_ldos"][()].sum(axis=1) * de, 1.0, atol=0.03)
        assert f["slabs/ldos"].shape == (len(f["slabs/position_nm"]), len(e))
        assert f.attrs["probe"] == "random" and f.attrs["n_moments"] == 512
    figs = sorted(p.name for p in (tmp_path / "figures" / "phonons").iterdir())
    assert figs == ["ldos_growth_map.png", "ldos_regions.png"]
