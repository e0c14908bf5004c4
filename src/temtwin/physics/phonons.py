"""Vibrational local density of states from the Keating force-constant matrix.

* :func:`hessian` — analytic second derivatives of the Keating energy, sparse 3N x 3N (eV/Å^2),
  assembled from each atom's local (bond-vector) Hessian.
* :class:`KeatingDynamicalOperator` — the same D applied matrix-free from the per-atom bond-space
  Hessians (large models: ~1.2 kB per atom, no sparse assembly).
* :func:`dynamical_matrix` — mass-weighted ``D = M^-1/2 H M^-1/2`` (eV/(Å^2 amu)); its eigenvalues
  are omega^2, and the phonon energy is ``E = hbar omega = 64.654 meV * sqrt(lambda)``
  (negative lambda, unstable modes of an unrelaxed structure, are shown at negative energies).
* :func:`kpm_ldos` — kernel polynomial method: Chebyshev moments of D (linear in N, never a
  diagonalisation), stochastic trace with random-sign vectors over the whole model projected on any
  number of atom groups (regions, slabs) at once, or exact unit-vector probes for small cells.  The
  LDOS is reconstructed directly with a **Gaussian broadening of constant width sigma in energy**:
  ``LDOS_G(E) = sum_n g_n mu_n^G c_n(E)`` where ``c_n(E)`` are the Chebyshev coefficients of
  ``x -> Gauss_sigma(E - E(lambda(x)))`` and ``g_n`` the Jackson damping, so it converges to the exact
  Gaussian-broadened LDOS of :func:`exact_ldos` as the number of moments grows.
* :func:`exact_ldos` — the same quantity by dense diagonalisation (small cells, tests).

The spectral bounds, the Chebyshev recursion and the reconstruction are the one KPM engine's
(:func:`.kpm.lanczos_extremes`, :func:`.kpm.chebyshev_recursion` with a :class:`.kpm.ProjectionMeasure`,
:func:`.kpm.reconstruct`); this module supplies the operators and their fused product + per-atom
projection kernels (the recursion's ``step``, :class:`_ProjectedSteps`).

The LDOS of a group is normalised per degree of freedom: it integrates to 1 over energy
(units ``1/meV``); multiply by 3 for states per atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import scipy.sparse as sp

from . import kpm
from .keating import EV_A2_AMU_TO_MEV, KeatingModel
from .kpm import jackson_kernel as jackson  # noqa: F401  (the one Jackson kernel)

MEV_PER_SQRT_LAMBDA = float(EV_A2_AMU_TO_MEV)  # E (meV) = this * sqrt(lambda [eV/(Å^2 amu)])
_EXACT_BOUNDS_MAX = 600  # matrices up to this size get exact spectral bounds (dense eigvalsh)


def hessian(model: KeatingModel, positions_A, cell_A=None) -> sp.csr_matrix:
    """Sparse 3N x 3N Hessian d^2E/dx_a dx_b (eV/Å^2) of the Keating energy at ``positions_A``."""
    n = len(model)
    h = model.local_hessians(positions_A, cell_A)  # (N, K, K, 3, 3) w.r.t. bond vectors
    k = h.shape[1]
    loc = np.empty((n, k + 1, k + 1, 3, 3))
    loc[:, 1:, 1:] = h
    loc[:, 0, 1:] = -h.sum(axis=1)
    loc[:, 1:, 0] = -h.sum(axis=2)
    loc[:, 0, 0] = h.sum(axis=(1, 2))
    del h
    nbr = model.table.nbr
    atoms = np.concatenate([np.arange(n)[:, None], np.where(nbr >= 0, nbr, np.arange(n)[:, None])], axis=1)
    valid = np.concatenate([np.ones((n, 1), bool), nbr >= 0], axis=1)
    blk = valid[:, :, None] & valid[:, None, :]
    ii, pp, qq = np.nonzero(blk)
    data = loc[ii, pp, qq].reshape(-1, 3, 3)
    ra = atoms[ii, pp].astype(np.int64)
    ca = atoms[ii, qq].astype(np.int64)
    e3 = np.arange(3)
    rows = (3 * ra[:, None, None] + e3[None, :, None]) * np.ones((1, 1, 3), np.int64)
    cols = (3 * ca[:, None, None] + e3[None, None, :]) * np.ones((1, 3, 1), np.int64)
    idx_dtype = np.int32 if 3 * n < 2 ** 31 else np.int64
    mat = sp.coo_matrix((data.ravel(), (rows.ravel().astype(idx_dtype), cols.ravel().astype(idx_dtype))),
                        shape=(3 * n, 3 * n)).tocsr()
    mat.sum_duplicates()
    return mat


def dynamical_matrix(model: KeatingModel, positions_A, cell_A=None, masses_amu=None) -> sp.csr_matrix:
    """Mass-weighted dynamical matrix M^-1/2 H M^-1/2 (eV/(Å^2 amu)); masses default to ase.data."""
    from ase.data import atomic_masses

    h = hessian(model, positions_A, cell_A)
    m = atomic_masses[model.numbers] if masses_amu is None else np.asarray(masses_amu, float)
    w = np.repeat(1.0 / np.sqrt(m), 3)
    h = h.tocoo()
    data = h.data * w[h.row] * w[h.col]
    d = sp.csr_matrix((data, (h.row, h.col)), shape=h.shape)
    return 0.5 * (d + d.T)


def energy_of_lambda(lam) -> np.ndarray:
    """Phonon energy (meV) of eigenvalues lambda = omega^2 (eV/(Å^2 amu)); negative for lambda < 0."""
    lam = np.asarray(lam, float)
    return np.sign(lam) * MEV_PER_SQRT_LAMBDA * np.sqrt(np.abs(lam))


def _gauss(x, sigma):
    return np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def exact_ldos(d: sp.spmatrix | np.ndarray, groups: np.ndarray, energies_meV, sigma_meV: float):
    """Gaussian-broadened LDOS per group by dense diagonalisation (small systems).

    ``groups``: (N,) atom group index (0..G-1, -1 = none).  Returns (G, n_E) in 1/meV per dof.
    """
    dense = d.toarray() if sp.issparse(d) else np.asarray(d)
    lam, u = np.linalg.eigh(0.5 * (dense + dense.T))
    e_k = energy_of_lambda(lam)
    gdof = np.repeat(np.asarray(groups), 3)
    ng = int(gdof.max()) + 1
    w = np.zeros((ng, len(lam)))
    for g in range(ng):
        sel = gdof == g
        w[g] = (u[sel] ** 2).sum(axis=0) / max(sel.sum(), 1)
    kern = _gauss(np.asarray(energies_meV)[None, :] - e_k[:, None], sigma_meV)
    return w @ kern


@nb.njit(parallel=True, cache=True)
def _bsr_apply(indptr, indices, data, x, x_prev, a, b, c, out, v0, w_atom):  # pragma: no cover
    """out = a * (D @ x) + b * x + c * x_prev for a 3x3-block CSR (BSR) matrix D and x (n, m).

    Also ``w_atom[i] = sum over the 3 dofs of atom i and the m columns of v0 * out`` (the
    per-atom contribution to the stochastic trace).
    """
    nb_rows = len(indptr) - 1
    m = x.shape[1]
    for i in nb.prange(nb_rows):
        r0 = 3 * i
        w = 0.0
        for j in range(m):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for kk in range(indptr[i], indptr[i + 1]):
                col = 3 * indices[kk]
                x0 = x[col, j]
                x1 = x[col + 1, j]
                x2 = x[col + 2, j]
                a0 += data[kk, 0, 0] * x0 + data[kk, 0, 1] * x1 + data[kk, 0, 2] * x2
                a1 += data[kk, 1, 0] * x0 + data[kk, 1, 1] * x1 + data[kk, 1, 2] * x2
                a2 += data[kk, 2, 0] * x0 + data[kk, 2, 1] * x1 + data[kk, 2, 2] * x2
            o0 = a * a0 + b * x[r0, j] + c * x_prev[r0, j]
            o1 = a * a1 + b * x[r0 + 1, j] + c * x_prev[r0 + 1, j]
            o2 = a * a2 + b * x[r0 + 2, j] + c * x_prev[r0 + 2, j]
            out[r0, j] = o0
            out[r0 + 1, j] = o1
            out[r0 + 2, j] = o2
            w += v0[r0, j] * o0 + v0[r0 + 1, j] * o1 + v0[r0 + 2, j] * o2
        w_atom[i] = w


@nb.njit(parallel=True, cache=True)
def _mf_bond_products(h, nbr, w, x, y):  # pragma: no cover - compiled
    """y[i, s, :, j] = sum_t h[i, s, t] @ (w_j x_j - w_i x_i)[column j] (bond-space Hessian product)."""
    n, k = nbr.shape
    m = x.shape[1]
    chunk = 512
    n_chunks = (n + chunk - 1) // chunk
    for ch in nb.prange(n_chunks):
        u = np.zeros((k, 3, m))  # one workspace per chunk of atoms
        for i in range(ch * chunk, min(n, (ch + 1) * chunk)):
            wi = w[i]
            for t in range(k):
                jt = nbr[i, t]
                if jt < 0:
                    for a in range(3):
                        for c in range(m):
                            u[t, a, c] = 0.0
                    continue
                wj = w[jt]
                for a in range(3):
                    for c in range(m):
                        u[t, a, c] = wj * x[3 * jt + a, c] - wi * x[3 * i + a, c]
            for s in range(k):
                if nbr[i, s] < 0:
                    continue
                for a in range(3):
                    for c in range(m):
                        y[i, s, a, c] = 0.0
                for t in range(k):
                    if nbr[i, t] < 0:
                        continue
                    for a in range(3):
                        h0 = h[i, s, t, a, 0]
                        h1 = h[i, s, t, a, 1]
                        h2 = h[i, s, t, a, 2]
                        for c in range(m):
                            y[i, s, a, c] += h0 * u[t, 0, c] + h1 * u[t, 1, c] + h2 * u[t, 2, c]


@nb.njit(parallel=True, cache=True)
def _mf_gather(y, nbr, rev, w, x, x_prev, a, b, c, out, v0, w_atom):  # pragma: no cover - compiled
    """out = a * D x + b * x + c * x_prev with (D x)_m = w_m sum_s (y[j_s, rev_s] - y[m, s]); trace terms."""
    n, k = nbr.shape
    m = x.shape[1]
    chunk = 512
    n_chunks = (n + chunk - 1) // chunk
    for ch in nb.prange(n_chunks):
        hx = np.zeros((3, m))
        for i in range(ch * chunk, min(n, (ch + 1) * chunk)):
            for p in range(3):
                for col in range(m):
                    hx[p, col] = 0.0
            for s in range(k):
                j = nbr[i, s]
                if j < 0:
                    continue
                r = rev[i, s]
                for p in range(3):
                    for col in range(m):
                        hx[p, col] += y[j, r, p, col] - y[i, s, p, col]
            acc = 0.0
            wi = a * w[i]
            for p in range(3):
                row = 3 * i + p
                for col in range(m):
                    o = wi * hx[p, col] + b * x[row, col] + c * x_prev[row, col]
                    out[row, col] = o
                    acc += v0[row, col] * o
            w_atom[i] = acc


class _KPMInterface:
    """What the one KPM engine (:mod:`.kpm`) needs of a dynamical-matrix operator, on top of ``apply``
    (the fused product + per-atom projection) and ``matvec``: ``matmat``/``vdot`` for
    :func:`.kpm.lanczos_extremes`.  The recursion's ``step`` is :class:`_ProjectedSteps`."""

    def matmat(self, x):
        return self.matvec(x)

    @staticmethod
    def vdot(x, y) -> float:
        return float(np.dot(np.ravel(x), np.ravel(y)))


class _ProjectedSteps:
    """``op.step`` for :func:`.kpm.chebyshev_recursion` on real (3N, m) blocks of a phonon operator.

    Each step is one call of the operator's fused kernel ``apply`` (product, recursion and the per-atom
    projection ``Σ v0 · y`` at once); it returns ``(y, w_atom)`` for a :class:`.kpm.ProjectionMeasure`.
    Outputs rotate through three blocks (the recursion's start block, which must not be ``v0``, and two
    more), so the recursion holds four blocks in all, ``v0`` included.
    """

    def __init__(self, op, v0: np.ndarray):
        self.op = op
        self.v0 = v0
        self.w_atom = np.empty(op.n_atoms)
        self._pool: list = []

    def step(self, cur, prev, scale, shift, mode):
        if mode == 1:
            self._pool = [cur if cur is not self.v0 else np.empty_like(cur), np.empty_like(cur),
                          np.empty_like(cur)]
            out = self._pool[1]
            self.op.apply(cur, cur, scale, -shift * scale, 0.0, out, self.v0, self.w_atom)
        else:
            out = next(b for b in self._pool if b is not cur and b is not prev)
            self.op.apply(cur, prev, 2.0 * scale, -2.0 * shift * scale, -1.0, out, self.v0, self.w_atom)
        return out, self.w_atom


class KeatingDynamicalOperator(_KPMInterface):
    """Matrix-free mass-weighted dynamical matrix of a Keating model (eV/(Å^2 amu)).

    ``D x = M^-1/2 H M^-1/2 x`` applied from the per-atom bond-space Hessians (N, K, K, 3, 3):
    memory ~1.2 kB per atom and no sparse assembly, so 10^6-atom models fit in a few GB.
    """

    def __init__(self, model: KeatingModel, positions_A, cell_A=None, masses_amu=None,
                 precision: str = "double"):
        from ase.data import atomic_masses

        self.h = model.local_hessians(positions_A, cell_A)
        if precision == "single":  # half the memory traffic; vectors stay float64
            self.h = self.h.astype(np.float32)
        self.nbr = model.table.nbr
        self.rev = model.table.rev
        m = atomic_masses[model.numbers] if masses_amu is None else np.asarray(masses_amu, float)
        self.w = 1.0 / np.sqrt(m)
        self.n_atoms = len(m)
        self.shape = (3 * self.n_atoms, 3 * self.n_atoms)
        self._y = None  # bond-space work array, reused between applications

    def apply(self, x, x_prev, a, b, c, out, v0, w_atom):
        """out = a * D x + b * x + c * x_prev; w_atom[i] = sum over atom i's dofs and columns of v0 * out."""
        k = self.nbr.shape[1]
        if self._y is None or self._y.shape[3] != x.shape[1]:
            self._y = np.zeros((self.n_atoms, k, 3, x.shape[1]))
        y = self._y
        _mf_bond_products(self.h, self.nbr, self.w, x, y)
        _mf_gather(y, self.nbr, self.rev, self.w, x, x_prev, a, b, c, out, v0, w_atom)

    def matvec(self, x):
        x2 = np.ascontiguousarray(np.reshape(x, (self.shape[0], -1)), dtype=float)
        out = np.empty_like(x2)
        self.apply(x2, x2, 1.0, 0.0, 0.0, out, x2, np.empty(self.n_atoms))
        return out.reshape(np.shape(x))

    def toarray(self) -> np.ndarray:
        return self.matvec(np.eye(self.shape[0]))


class _BSROperator(_KPMInterface):
    """A sparse dynamical matrix (any scipy format) as a 3x3-block operator with the same interface."""

    def __init__(self, d, precision: str = "double"):
        bsr = d if sp.isspmatrix_bsr(d) and d.blocksize == (3, 3) else sp.bsr_matrix(d, blocksize=(3, 3))
        bsr.sort_indices()
        self.indptr, self.indices = bsr.indptr, bsr.indices
        self.data = np.ascontiguousarray(bsr.data, dtype=np.float32 if precision == "single" else np.float64)
        self.shape = bsr.shape
        self.n_atoms = bsr.shape[0] // 3
        self._csr = sp.csr_matrix(d)

    def apply(self, x, x_prev, a, b, c, out, v0, w_atom):
        _bsr_apply(self.indptr, self.indices, self.data, x, x_prev, a, b, c, out, v0, w_atom)

    def matvec(self, x):
        return self._csr @ x

    def toarray(self) -> np.ndarray:
        return self._csr.toarray()


def as_operator(d, precision: str = "double"):
    """A dynamical-matrix operator: a :class:`KeatingDynamicalOperator` as is, a sparse matrix as BSR."""
    if isinstance(d, (KeatingDynamicalOperator, _BSROperator)):
        return d
    return _BSROperator(d, precision)


def spectral_bounds(d, rng: np.random.Generator, n_iter: int = 60) -> tuple[float, float]:
    """Estimated (lambda_min, lambda_max) by :func:`.kpm.lanczos_extremes` (the one Lanczos): exact
    (dense eigvalsh) for matrices up to ``_EXACT_BOUNDS_MAX``, else the extreme Ritz values after
    ``n_iter`` steps from a standard-normal start vector drawn from ``rng``."""
    d = as_operator(d)
    n = d.shape[0]
    start = None if n <= _EXACT_BOUNDS_MAX else rng.standard_normal(n)
    lo, hi, _, _ = kpm.lanczos_extremes(d, min(n_iter, n), start=start, exact_max=_EXACT_BOUNDS_MAX,
                                        breakdown=1e-12)
    return lo, hi


def reconstruction_matrix(energies_meV, sigma_meV: float, lam_bounds: tuple[float, float],
                          n_moments: int, n_nodes: int | None = None) -> np.ndarray:
    """(n_E, M) matrix c_n(E): Chebyshev coefficients of Gauss_sigma(E - E(lambda(x))) on [-1, 1]
    (:func:`.kpm.smooth_coefficients`)."""
    lo, hi = lam_bounds
    e = np.asarray(energies_meV, float)

    def f(x):
        e_x = energy_of_lambda(0.5 * (hi - lo) * x + 0.5 * (hi + lo))
        return _gauss(e[:, None] - e_x[None, :], sigma_meV)

    return kpm.smooth_coefficients(f, n_moments, n_nodes)


@dataclass
class KPMResult:
    """LDOS per partition group and the method's parameters."""

    energies_meV: np.ndarray
    ldos: list[np.ndarray]  # one (G_p, n_E) array per partition, 1/meV per dof
    moments: list[np.ndarray]  # one (G_p, M) array per partition
    lam_bounds: tuple[float, float]
    n_moments: int
    n_vectors: int
    sigma_meV: float
    probe: str


def _kpm_moments(d, partitions, lo, hi, n_moments, n_vectors, rng, probe, precision, progress):
    """Normalised local Chebyshev moments (one (G_p, M) array per partition) of D scaled by [lo, hi]."""
    n = d.shape[0]
    scale, shift = kpm.rescaling((lo, hi), epsilon=0.0)     # D̃ = (D - shift) / scale on [lo, hi]
    if probe == "exact":
        v0 = np.eye(n)
    elif probe == "random":
        v0 = rng.choice(np.array([-1.0, 1.0]), size=(n, int(n_vectors)))
    else:
        raise ValueError(f"unknown probe {probe!r} (random or exact)")
    n_atoms = n // 3
    # group indicator (all partitions stacked): proj (G_total x N), per partition a row range
    rows_l, cols_l, offsets = [], [], [0]
    for part in partitions:
        part = np.asarray(part, np.int64)
        sel = np.nonzero(part >= 0)[0]
        rows_l.append(part[sel] + offsets[-1])
        cols_l.append(sel)
        offsets.append(offsets[-1] + int(part.max(initial=-1)) + 1)
    proj = sp.csr_matrix((np.ones(sum(len(c) for c in cols_l)),
                          (np.concatenate(rows_l), np.concatenate(cols_l))), shape=(offsets[-1], n_atoms))
    norm = proj @ (v0 * v0).sum(axis=1).reshape(n_atoms, 3).sum(axis=1)
    # T_1 = (D - shift)/scale v0 ; T_{n+1} = 2 (D - shift)/scale T_n - T_{n-1}: the one KPM driver,
    # per-atom projections from the operator's fused kernel, gathered into groups by proj
    measure = kpm.ProjectionMeasure(proj, norm, n_moments)
    mom = kpm.chebyshev_recursion(_ProjectedSteps(as_operator(d, precision), v0), v0.copy(), scale, shift,
                                  measure, progress)
    mom = [mom[offsets[q]:offsets[q + 1]] / np.maximum(norm[offsets[q]:offsets[q + 1]], 1e-300)[:, None]
           for q in range(len(partitions))]
    return mom


def kpm_ldos(d, partitions: list[np.ndarray], energies_meV=None, sigma_meV: float = 1.0,
             n_moments: int = 1024, n_vectors: int = 4, rng: np.random.Generator | None = None,
             probe: str = "random", kernel: str = "jackson", precision: str = "double",
             energy_step_meV: float = 0.1, margin: float = 0.03, progress=None) -> KPMResult:
    """LDOS of atom groups by the kernel polynomial method on the dynamical matrix ``d``.

    ``d``: a :class:`KeatingDynamicalOperator` (matrix-free, large models) or a sparse matrix.

    Parameters
    ----------
    partitions: list of (N,) int arrays of atom group indices (-1 = not in any group); all
        partitions (e.g. segmented regions and slabs along growth) come out of one recursion.
    energies_meV: energy grid (meV); None = from the spectrum's bounds (0, or the lowest unstable
        mode, to the highest mode + 4 sigma) in steps of ``energy_step_meV``.
    sigma_meV: Gaussian broadening (constant in energy).
    n_moments: Chebyshev moments M (resolution in lambda ~ pi (lambda_max - lambda_min) / (2 M)).
    n_vectors: random-sign probe vectors (stochastic trace; error ~ 1/sqrt(dofs in group x vectors)).
    probe: ``"random"`` or ``"exact"`` (unit vectors on every dof, exact trace; small systems only).
    margin: relative widening of the spectral bounds used to scale D into [-1, 1].
    precision: ``"double"`` or ``"single"`` for a sparse ``d`` (stored in float32: half the memory
        traffic; vectors stay float64); the matrix-free operator takes it at construction.
    progress: optional ``progress(i, n)`` callback.
    """
    rng = rng or np.random.default_rng(0)
    d = as_operator(d, precision)
    n = d.shape[0]
    lam_lo, lam_hi = spectral_bounds(d, rng)
    if n <= _EXACT_BOUNDS_MAX:  # bounds are exact eigenvalues: a tiny margin suffices
        margin = min(margin, 0.002)
    width = lam_hi - min(lam_lo, 0.0)
    if energies_meV is None:
        e_lo = 0.0 if lam_lo > -1e-4 * width else float(energy_of_lambda(lam_lo)) - 4 * sigma_meV
        e_hi = float(energy_of_lambda(lam_hi)) + 4 * sigma_meV
        energies_meV = np.arange(np.floor(e_lo / energy_step_meV), np.ceil(e_hi / energy_step_meV) + 1) \
            * energy_step_meV
    for _attempt in range(4):
        lo, hi = min(lam_lo, 0.0) - margin * width, lam_hi + margin * width
        mom = _kpm_moments(d, partitions, lo, hi, n_moments, n_vectors, rng, probe, precision, progress)
        # moments of a normalised spectral measure are bounded by 1; a recursion outside [-1, 1] explodes
        if all(np.isfinite(m).all() and np.abs(m).max() < 10.0 for m in mom):
            break
        margin *= 4.0
    else:  # pragma: no cover - needs a grossly wrong spectral estimate
        raise RuntimeError("kernel polynomial recursion diverged: spectral bounds too narrow")
    c = reconstruction_matrix(energies_meV, sigma_meV, (lo, hi), n_moments)
    ldos = [kpm.reconstruct(p, c, "jackson" if kernel == "jackson" else "none") for p in mom]
    return KPMResult(np.asarray(energies_meV, float), ldos, mom, (lo, hi), n_moments,
                     n if probe == "exact" else int(n_vectors), float(sigma_meV), probe)


def find_peaks_meV(energies_meV, ldos, min_energy_meV: float = 0.0, prominence: float = 0.05,
                   max_peaks: int = 6) -> list[float]:
    """Energies (meV) of the most prominent LDOS maxima above ``min_energy_meV``, sorted by energy.

    ``prominence`` is relative to the LDOS maximum above ``min_energy_meV``.
    """
    from scipy.signal import find_peaks

    e = np.asarray(energies_meV)
    y = np.asarray(ldos)
    sel = e >= min_energy_meV
    if not sel.any() or not np.isfinite(y[sel]).all() or y[sel].max() <= 0:
        return []
    ys = y[sel]
    idx, props = find_peaks(ys, prominence=prominence * ys.max())
    order = np.argsort(props["prominences"])[::-1][:max_peaks]
    return sorted(float(e[sel][i]) for i in idx[order])
