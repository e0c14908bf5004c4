"""Tight-binding eigenstates near chosen energies, their weight per atom and in image coordinates.

Two methods:

* ``shift_invert``: ARPACK (``scipy.sparse.linalg.eigsh``) in shift-invert mode around the target
  energy on the complex spin-orbital CSR matrix (exact; sparse LU, so for models up to ~10⁴ atoms);
* ``filter``: Chebyshev-filtered subspace iteration: a block of random vectors is multiplied by a
  Jackson-damped expansion of δ(H − E) of degree ``degree`` (resolution ≈ π a / degree), then
  Rayleigh–Ritz, keeping the Ritz pairs with the smallest ``(θ − E)² + ‖Hψ − θψ‖²``; repeated until
  the residuals fall below ``tol`` (linear in the model size; suited to states in a gap such as
  mid-gap peaks).

Weights: ``w_i = Σ |ψ|²`` over the spin-orbitals of atom i (explicit H added to its host), summing
to 1.  Image coordinates: x right, y down (Å → nm via the model frame), pixel ``(row, col) =
(y/py, x/px)``, summed along the beam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from . import kpm
from .tightbinding.operator import TBOperator

METHODS = ("auto", "shift_invert", "filter")


@dataclass
class States:
    """Eigenstates near a target energy.

    energies_eV (k,), vectors (n_spin_orbitals, k) complex (index ``2·orbital + spin``),
    residuals_eV (k,) = ‖Hψ − Eψ‖, method.
    """

    target_eV: float
    energies_eV: np.ndarray
    vectors: np.ndarray
    residuals_eV: np.ndarray
    method: str


def _residuals(H, vecs, vals) -> np.ndarray:
    return np.linalg.norm(H @ vecs - vecs * vals[None, :], axis=0)


def states_shift_invert(ham, energy_eV: float, n_states: int = 4, seed: int = 0) -> States:
    """Exact eigenpairs closest to ``energy_eV`` by shift-invert Lanczos."""
    H = ham.to_csr(np.complex128)
    v0 = np.exp(2j * np.pi * np.random.default_rng(seed).random(H.shape[0]))
    k = int(min(n_states, H.shape[0] - 2))
    vals, vecs = spla.eigsh(H, k=k, sigma=float(energy_eV), which="LM", v0=v0)
    order = np.argsort(np.abs(vals - energy_eV))
    vals, vecs = vals[order], vecs[:, order]
    return States(float(energy_eV), vals, vecs, _residuals(H, vecs, vals), "shift_invert")


def states_filter(ham, energy_eV: float, n_states: int = 4, degree: int = 400, n_iter: int = 6,
                  tol_eV: float = 1e-3, bounds=None, seed: int = 0, backend: str = "auto",
                  op: TBOperator | None = None) -> States:
    """Eigenpairs near ``energy_eV`` by Chebyshev-filtered subspace iteration (see module doc)."""
    op = op or TBOperator(ham, backend=backend, complex_dtype=np.complex128)
    if bounds is None:
        bounds = kpm.spectral_bounds(op, seed=seed)
    a, b = kpm.rescaling(bounds)
    x0 = np.clip((energy_eV - b) / a, -1 + 1e-9, 1 - 1e-9)
    g = kpm.jackson_kernel(degree)
    c = g * np.cos(np.arange(degree) * np.arccos(x0))
    c[1:] *= 2
    p = int(n_states) + 8
    rng = np.random.default_rng(seed)
    n, ns = op.n_rows, op.n_spin
    V = np.exp(2j * np.pi * rng.random((n, ns, p))).astype(op.cdtype)
    vals = vecs = res = None
    for _ in range(int(n_iter)):
        Vb = op.to_backend(V)
        t0 = Vb
        acc = c[0] * t0
        t1, _ = op.step(t0, None, 1.0 / a, b, mode=1)
        acc = acc + c[1] * t1
        for k in range(2, degree):
            t2, _ = op.step(t1, t0, 1.0 / a, b, mode=2)
            acc = acc + c[k] * t2
            t0, t1 = t1, t2
        W = op.to_numpy(acc).reshape(n * ns, p)
        Q, _ = np.linalg.qr(W)
        HQ = op.to_numpy(op.matmat(op.to_backend(Q.reshape(n, ns, p)))).reshape(n * ns, p)
        Hs = Q.conj().T @ HQ
        theta, S = np.linalg.eigh(0.5 * (Hs + Hs.conj().T))
        vecs_all = Q @ S
        res_all = np.linalg.norm(HQ @ S - vecs_all * theta[None, :], axis=0)
        # rank by <(H - E)^2> = (θ - E)^2 + r^2, which a spurious Ritz value inside a gap cannot win
        order = np.argsort((theta - energy_eV) ** 2 + res_all ** 2)[:n_states]
        vals, vecs, res = theta[order], vecs_all[:, order], res_all[order]
        V = vecs_all.reshape(n, ns, p)
        if res.max() < tol_eV:
            break
    return States(float(energy_eV), vals, vecs, res, "filter")


def states_near(ham, energy_eV: float, n_states: int = 4, method: str = "auto",
                max_shift_invert_orbitals: int = 200_000, **kw) -> States:
    """Eigenstates nearest ``energy_eV``; ``auto`` = shift-invert for small models, else filter."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if method == "auto":
        method = "shift_invert" if ham.n_spin_orbitals <= max_shift_invert_orbitals else "filter"
    if method == "shift_invert":
        return states_shift_invert(ham, energy_eV, n_states, seed=kw.get("seed", 0))
    return states_filter(ham, energy_eV, n_states, **kw)


def atom_weights(ham, vectors: np.ndarray) -> np.ndarray:
    """Weight per host site (k, n_host): Σ|ψ|² over its spin-orbitals plus its H atoms' orbitals."""
    v = np.asarray(vectors)
    if v.ndim == 1:
        v = v[:, None]
    prob = (np.abs(v) ** 2).reshape(ham.n_orbitals, 2, -1).sum(axis=1)        # (n_orb, k)
    site = ham.structure.parent[ham.orbital_site]
    out = np.zeros((v.shape[1], ham.structure.n_host))
    for k in range(v.shape[1]):
        out[k] = np.bincount(site, weights=prob[:, k], minlength=ham.structure.n_host)
    return out


def weight_maps(positions_A: np.ndarray, weights: np.ndarray, pixel_size_nm, shape=None,
                bin_px: int = 1):
    """Project atom weights (k, n) into image pixels (k, rows, cols), summing along the beam.

    ``positions_A`` in the image frame (x right, y down, Å); pixel (row, col) = (y/py, x/px)
    binned by ``bin_px``.  Returns (maps, pixel_size_nm of a map pixel).
    """
    px, py = (float(pixel_size_nm[0]), float(pixel_size_nm[1])) if np.ndim(pixel_size_nm) else (
        float(pixel_size_nm),) * 2
    pos_nm = np.asarray(positions_A, float) / 10.0
    col = np.floor(pos_nm[:, 0] / px / bin_px + 0.5).astype(np.int64)
    row = np.floor(pos_nm[:, 1] / py / bin_px + 0.5).astype(np.int64)
    if shape is None:
        rows, cols = int(max(row.max(initial=0), 0)) + 1, int(max(col.max(initial=0), 0)) + 1
    else:
        rows, cols = -(-int(shape[0]) // bin_px), -(-int(shape[1]) // bin_px)
    ok = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    w = np.atleast_2d(weights)
    maps = np.zeros((w.shape[0], rows, cols))
    flat = row[ok] * cols + col[ok]
    for k in range(w.shape[0]):
        maps[k] = np.bincount(flat, weights=w[k, ok], minlength=rows * cols).reshape(rows, cols)
    return maps, (px * bin_px, py * bin_px)
