"""The one KPM engine (physics/kpm.py) drives both recursions: phonon LDOS of a Keating cluster against exact
diagonalisation, electron DOS of a random Hamiltonian against its eigenvalues' histogram, one Lanczos."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from temtwin.physics import kpm, phonons
from temtwin.physics.keating import KeatingModel
from temtwin.physics.tightbinding import TBOperator


@pytest.fixture
def driver_calls(monkeypatch):
    """Records the measure of every call of the shared recursion driver."""
    calls = []
    real = kpm.chebyshev_recursion

    def spy(op, X, a, b, measure, *args, **kw):
        calls.append(type(measure).__name__)
        return real(op, X, a, b, measure, *args, **kw)

    monkeypatch.setattr(kpm, "chebyshev_recursion", spy)
    return calls


def _keating_cluster(reps, seed):
    """Open (non-periodic) random Si/Ge Keating cluster with displaced atoms."""
    at = bulk("Si", "diamond", 5.5, cubic=True).repeat(reps)
    rng = np.random.default_rng(seed)
    at.numbers = np.where(rng.random(len(at)) < 0.5, 32, 14)
    at.positions += rng.normal(0, 0.04, at.positions.shape)
    at.pbc = False
    return at, KeatingModel.from_atoms(at)


@pytest.mark.parametrize("matrix_free", [False, True])
def test_phonon_ldos_from_shared_driver_equals_exact_diagonalisation(driver_calls, matrix_free):
    at, m = _keating_cluster((2, 2, 1), 11)
    d = phonons.dynamical_matrix(m, at.positions)
    lam, u = np.linalg.eigh(d.toarray())
    groups = (at.numbers == 32).astype(int)
    op = phonons.KeatingDynamicalOperator(m, at.positions) if matrix_free else d
    N, sigma = 512, 1.5
    e = np.arange(0.0, 80.0, 0.2)
    res = phonons.kpm_ldos(op, [groups], e, sigma, n_moments=N, probe="exact")
    assert driver_calls == ["ProjectionMeasure"]
    # exact probes: the per-atom-group moments are the exact spectral moments Σ_k w_gk T_n(λ̃_k) / dofs
    a, b = kpm.rescaling(res.lam_bounds, epsilon=0.0)
    for g in range(2):
        dof = np.repeat(groups == g, 3)
        w = (u[dof] ** 2).sum(axis=0)
        want = kpm.moments_from_eigenvalues(lam, a, b, N, w) / dof.sum()
        np.testing.assert_allclose(res.moments[0][g], want, rtol=0, atol=1e-11)
    # and the LDOS is the exact Gaussian-broadened LDOS within the kernel's resolution
    # (Jackson width in lambda π (λ_hi − λ_lo) / N, ~0.3 meV at 60 meV, below sigma = 1.5 meV)
    ref = phonons.exact_ldos(d, groups, e, sigma)
    for g in range(2):
        l1 = np.abs(res.ldos[0][g] - ref[g]).sum() / ref[g].sum()
        assert l1 < 0.02, (g, l1)


def test_phonon_bounds_are_the_shared_lanczos(monkeypatch):
    """Above the exact-diagonalisation size the phonon bounds come from kpm.lanczos_extremes, and its
    Ritz extremes lie inside, and within 0.1 % of the width of, the exact spectrum."""
    at, m = _keating_cluster((3, 3, 3), 12)               # 216 atoms, 648 dof > the exact-bounds size
    d = phonons.dynamical_matrix(m, at.positions)
    lam = np.linalg.eigvalsh(d.toarray())
    calls = []
    real = kpm.lanczos_extremes
    monkeypatch.setattr(kpm, "lanczos_extremes", lambda *a, **k: calls.append(1) or real(*a, **k))
    lo, hi = phonons.spectral_bounds(d, np.random.default_rng(0))
    assert calls == [1]
    width = lam[-1] - lam[0]
    assert lam[0] - 1e-9 <= lo <= lam[0] + 1e-3 * width
    assert lam[-1] - 1e-3 * width <= hi <= lam[-1] + 1e-9
    # small matrices: exact extreme eigenvalues, as an option of the same function
    small = phonons.dynamical_matrix(*(lambda a, mm: (mm, a.positions))(*_keating_cluster((1, 1, 1), 3)))
    ev = np.linalg.eigvalsh(small.toarray())
    assert phonons.spectral_bounds(small, np.random.default_rng(0)) == (ev[0], ev[-1])


def _counting(mu, x, kernel):
    """Kernel-damped integrated density ∫_{-1}^{x} ρ dx' of moments mu (analytic: T_n / √(1 − x²))."""
    th = np.arccos(x)
    n = np.arange(1, len(mu))
    gm = kernel * mu
    return (gm[0] * (np.pi - th) - 2 * (gm[1:, None] * np.sin(n[:, None] * th[None, :]) / n[:, None]).sum(0)) \
        / np.pi


def test_electron_dos_from_shared_driver_equals_eigenvalue_histogram(driver_calls):
    n, N = 60, 1024
    rng = np.random.default_rng(5)
    A = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    H = (A + A.conj().T) / np.sqrt(8 * n)                 # random Hermitian (GUE), spectrum ~ [-1, 1] eV
    ev = np.linalg.eigvalsh(H)
    op = TBOperator(matrix=H, backend="numba", complex_dtype=np.complex128)
    bounds = kpm.spectral_bounds(op, n_steps=n)
    assert bounds[0] < ev[0] and bounds[1] > ev[-1]
    a, b = kpm.rescaling(bounds)
    X = np.eye(n, dtype=np.complex128).reshape(n, 1, n)   # exact trace: every unit vector
    mu = kpm.chebyshev_moments(op, X, a, b, N).sum(axis=0)
    assert driver_calls == ["DoublingMeasure"]
    np.testing.assert_allclose(mu, kpm.moments_from_eigenvalues(ev, a, b, N), rtol=0, atol=1e-9 * n)
    # histogram with bin edges in the gaps wider than 10 kernel widths (σ = π a / N)
    sigma = kpm.jackson_sigma_eV(a, N)
    gaps = np.nonzero(np.diff(ev) > 10 * sigma)[0]
    edges = np.concatenate([[bounds[0] + 1e-9], (ev[gaps] + ev[gaps + 1]) / 2, [bounds[1] - 1e-9]])
    assert len(edges) >= 10
    counts = np.diff(_counting(mu, (edges - b) / a, kpm.jackson_kernel(N)))
    want = np.histogram(ev, edges)[0]
    np.testing.assert_allclose(counts, want, rtol=0, atol=0.01)
    assert counts.sum() == pytest.approx(n, abs=1e-6)
