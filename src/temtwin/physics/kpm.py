"""Kernel polynomial method (KPM): Chebyshev moments, Jackson kernel, stochastic (local) DOS.

The one KPM engine of temtwin for electrons (tight binding, :mod:`temtwin.stages.tb_moments`) and
phonons (:mod:`.phonons`).  Shared here: the spectral bounds (one Lanczos, :func:`lanczos_extremes` /
:func:`spectral_bounds`, with an exact-diagonalisation option for small matrices), the rescaling
(:func:`rescaling`), the one Chebyshev recursion driver (:func:`chebyshev_recursion`: the loop over
products, the moment bookkeeping, progress and checkpoint hooks), the damping kernel
(:func:`jackson_kernel`, :func:`damped`) and the density reconstruction (:func:`density` for point
densities, :func:`smooth_coefficients` + :func:`reconstruct` for Gaussian-broadened ones).

An operator supplies only its fused product ``op.step(cur, prev, scale, shift, mode) -> (next, d)``
(complex spin-orbital blocks for electrons, real 3N-dof blocks for phonons) and, for Lanczos,
``matmat`` (and optionally ``vdot``, ``to_backend``); what is measured per product is a small
strategy passed to the driver:

* :class:`DoublingMeasure` (electrons) — ``d`` = (m, 2) ``[<y|y>, Re<y|x>]``: two moments per product,
  ``<x|T_n|x>`` of every column (:func:`chebyshev_moments`);
* :class:`ProjectionMeasure` (phonons) — ``d`` = a per-atom local projection ``<v0|T_n|v0>`` summed over
  each atom's dofs and the columns (computed inside the operator's fused kernel), one moment per
  product, gathered into atom groups by a sparse projector.

Conventions
-----------
* The Hamiltonian is rescaled as ``H̃ = (H − b)/a`` so its spectrum lies inside (−1, 1):
  ``a = (E_max − E_min)/(2 − ε)``, ``b = (E_max + E_min)/2`` (eV) from spectral bounds computed by
  Lanczos (:func:`spectral_bounds`).  The driver passes ``scale = 1/a`` and ``shift = b`` to ``op.step``;
  mode 1: ``y = scale (H − shift) x``; mode 2: ``y = 2 scale (H − shift) x − x_prev``.
* Moments ``μ_n = Σ_v <v|T_n(H̃)|v>`` over random-phase vectors ``v`` whose entries are
  ``exp(2πi φ)`` on the spin-orbitals of one region and zero elsewhere, so ``E[μ_n] = Tr(P_r T_n(H̃))``
  with ``P_r`` the projector on the region (``μ_0`` = number of spin-orbitals of the region).  Two
  moments per product: ``μ_2k = 2<α_k|α_k> − μ_0``, ``μ_2k−1 = 2<α_k|α_k−1> − μ_1``.
* Densities: ``ρ(E) = [g_0 μ_0 + 2 Σ_n g_n μ_n T_n(x)] / (π a √(1 − x²))`` with ``x = (E − b)/a`` and
  the Jackson kernel ``g_n`` (Weiße et al., Rev. Mod. Phys. 78, 275 (2006)), in states/eV for the
  given moments (divide by the number of vectors and of atoms for states/eV/atom).  The Jackson
  kernel broadens a δ peak into a near-Gaussian of width ``σ ≈ π a / N``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.linalg import eigh_tridiagonal


def jackson_kernel(n_moments: int) -> np.ndarray:
    """Jackson damping factors g_n, n = 0..N−1."""
    N = int(n_moments)
    n = np.arange(N)
    q = np.pi / (N + 1)
    return ((N - n + 1) * np.cos(q * n) + np.sin(q * n) / np.tan(q)) / (N + 1)


def jackson_sigma_eV(a: float, n_moments: int) -> float:
    """Approximate Gaussian width (eV) of the Jackson kernel at the band centre: π a / N."""
    return float(np.pi * a / n_moments)


def rescaling(bounds: Sequence[float], epsilon: float = 0.01) -> tuple[float, float]:
    """``(a, b)`` eV mapping the interval ``bounds`` into (−1 + ε/2, 1 − ε/2)."""
    lo, hi = float(bounds[0]), float(bounds[1])
    return (hi - lo) / (2.0 - epsilon), (hi + lo) / 2.0


def _vdot_plain(x, y) -> complex:
    return complex((x.conj() * y).sum())


def lanczos_extremes(op, n_steps: int = 100, seed: int = 0, start=None, exact_max: int = 0,
                     breakdown: float = 1e-10) -> tuple[float, float, float, float]:
    """Lowest and highest Ritz values of ``op`` after ``n_steps`` Lanczos steps, with residuals.

    Returns ``(θ_min, θ_max, r_min, r_max)`` (operator units, eV for electrons): Ritz extremes lie
    inside the spectrum and each is within its residual ``r`` of an eigenvalue, so once the extremes
    have converged the spectrum lies inside ``[θ_min − r_min, θ_max + r_max]``.

    ``op`` needs ``matmat(v)``; optional ``vdot(x, y)`` (default: plain conjugated sum; distributed
    operators sum over ranks), ``to_backend`` (default: identity) and ``local_random_vector(rng)``.
    ``start``: the start vector (any shape ``matmat`` takes; default a random-phase block
    ``(n_rows, n_spin, 1)`` from ``seed``).  ``exact_max``: operators with ``op.shape[0] <= exact_max``
    and a ``toarray()`` get their exact extreme eigenvalues (dense ``eigvalsh``, residuals 0) instead.
    ``breakdown``: stop when the next Lanczos β falls below it (invariant subspace found).
    """
    n_dim = getattr(op, "shape", (None,))[0]
    if exact_max and n_dim is not None and n_dim <= exact_max and hasattr(op, "toarray"):
        lam = np.linalg.eigvalsh(op.toarray())
        return float(lam[0]), float(lam[-1]), 0.0, 0.0
    _vdot = getattr(op, "vdot", _vdot_plain)          # distributed operators sum over ranks
    if start is not None:
        v = np.asarray(start)
    else:
        rng = np.random.default_rng(seed)
        if hasattr(op, "local_random_vector"):
            v = op.local_random_vector(rng)
        else:
            v = np.exp(2j * np.pi * rng.random((op.n_rows, op.n_spin, 1)))
    v = v / np.sqrt(_vdot(v, v).real)
    v = op.to_backend(v) if hasattr(op, "to_backend") else v
    v_old = None
    alphas, betas = [], []
    beta = 0.0
    for _ in range(int(n_steps)):
        w = op.matmat(v)
        alpha = _vdot(v, w).real
        w = w - alpha * v
        if v_old is not None:
            w = w - beta * v_old
        alphas.append(alpha)
        beta = float(np.sqrt(max(_vdot(w, w).real, 0.0)))
        if beta < breakdown:
            break
        betas.append(beta)
        v_old, v = v, w / beta
    k = len(alphas)
    theta, S = eigh_tridiagonal(np.array(alphas), np.array(betas[:k - 1]))
    last = betas[k - 1] if len(betas) >= k else 0.0
    res = np.abs(last * S[-1, :])
    return float(theta[0]), float(theta[-1]), float(res[0]), float(res[-1])


def spectral_bounds(op, n_steps: int = 100, seed: int = 0, margin: float = 0.02,
                    round_eV: float = 0.05, exact_max: int = 0) -> tuple[float, float]:
    """Spectral bounds (eV) for KPM rescaling, padded and rounded outward.

    Lanczos extremes widened by ``max(residual, margin × width)`` and rounded outward to multiples
    of ``round_eV``, so that independent jobs (chunks) get identical bounds.  ``exact_max``: see
    :func:`lanczos_extremes`.
    """
    lo, hi, rlo, rhi = lanczos_extremes(op, n_steps, seed, exact_max=exact_max)
    pad = margin * (hi - lo)
    lo -= max(rlo, pad)
    hi += max(rhi, pad)
    if round_eV > 0:
        lo = np.floor(lo / round_eV) * round_eV
        hi = np.ceil(hi / round_eV) * round_eV
    return float(lo), float(hi)


def random_phase_block(n_rows: int, n_spin: int, row_sets: Sequence[np.ndarray],
                       rngs: Sequence[np.random.Generator], dtype=np.complex64) -> np.ndarray:
    """Block ``(n_rows, n_spin, m)`` of random-phase vectors, column t supported on ``row_sets[t]``.

    Column t's phases come only from ``rngs[t]`` (so a vector does not depend on its block).
    """
    X = np.zeros((n_rows, n_spin, len(row_sets)), dtype)
    for t, (rows, g) in enumerate(zip(row_sets, rngs)):
        X[rows, :, t] = np.exp(2j * np.pi * g.random((len(rows), n_spin)))
    return X


def _sq_norms(op, X) -> np.ndarray:
    """``<x_t|x_t>`` (m,) float64; the operator's blocked sum when it has one (MPI-exact)."""
    if hasattr(op, "sq_norms"):
        return op.sq_norms(X)
    x0 = np.asarray(op.to_numpy(X))
    return (x0.real.astype(np.float64) ** 2 + x0.imag.astype(np.float64) ** 2).sum(axis=(0, 1))


class DoublingMeasure:
    """Per-product measurement of the electron recursion: two moments per product.

    ``op.step`` returns ``d`` (m, 2) = ``[<y|y>, Re<y|x>]`` per column; the moments
    ``<x_t|T_n(H̃)|x_t>`` (m, N) follow from ``μ_2k = 2<α_k|α_k> − μ_0``, ``μ_2k−1 = 2<α_k|α_k−1> − μ_1``.
    """

    def __init__(self, n_moments: int):
        self.n_moments = int(n_moments)
        self.n_products = (self.n_moments + 1) // 2
        self.mu = None

    def start(self, op, X) -> None:
        self.mu = np.zeros((X.shape[2], 2 * self.n_products + 2))
        self.mu[:, 0] = _sq_norms(op, X)

    def resume(self, mu: np.ndarray) -> None:
        self.mu = np.array(mu, copy=True)

    def record(self, k: int, d) -> None:
        mu = self.mu
        if k == 1:
            mu[:, 1] = d[:, 1]
            mu[:, 2] = 2 * d[:, 0] - mu[:, 0]
        else:
            mu[:, 2 * k - 1] = 2 * d[:, 1] - mu[:, 1]
            mu[:, 2 * k] = 2 * d[:, 0] - mu[:, 0]

    @property
    def state(self) -> np.ndarray:
        """What a checkpoint saves (and :meth:`resume` takes): the moments so far."""
        return self.mu

    def result(self) -> np.ndarray:
        return self.mu[:, :self.n_moments]


class ProjectionMeasure:
    """Per-product measurement of the phonon recursion: one moment per product, local projections.

    ``op.step`` returns ``d`` (n_atoms,) = ``Σ_{dofs of atom i, columns} v0 · T_n(D̃) v0`` (the
    operator's fused kernel computes it in the same pass as the product); the moments of the atom
    groups are ``proj @ d`` (G, N) with ``proj`` a sparse (G, n_atoms) group indicator.  ``norm`` (G,)
    are the zeroth moments ``<v0|v0>`` of the groups.  Projections are gathered ``chunk`` products
    at a time (one sparse product per chunk).
    """

    def __init__(self, proj, norm: np.ndarray, n_moments: int, chunk: int = 64):
        self.proj = proj
        self.norm = np.asarray(norm, float)
        self.n_moments = int(n_moments)
        self.n_products = self.n_moments - 1
        self.chunk = int(chunk)
        self.mu = None

    def start(self, op, X) -> None:
        self.mu = np.zeros((self.proj.shape[0], self.n_moments))
        self.mu[:, 0] = self.norm
        self._buf = np.zeros((self.chunk, self.proj.shape[1]))
        self._first = 1

    def resume(self, mu) -> None:
        raise ValueError("the projection (phonon) recursion has no checkpoints to resume from")

    def record(self, k: int, d) -> None:
        row = k - self._first
        self._buf[row] = d
        if row == self.chunk - 1 or k == self.n_products:
            self.mu[:, self._first:k + 1] = self.proj @ self._buf[:row + 1].T
            self._first = k + 1

    @property
    def state(self) -> np.ndarray:
        return self.mu

    def result(self) -> np.ndarray:
        return self.mu


def chebyshev_recursion(op, X, a: float, b: float, measure,
                        progress: Callable[[int, int], None] | None = None,
                        state: dict | None = None,
                        on_step: Callable[[int, np.ndarray, object, object], None] | None = None):
    """The one Chebyshev recursion of temtwin: ``α_1 = H̃ x``, ``α_k = 2 H̃ α_{k−1} − α_{k−2}``.

    ``op.step(cur, prev, 1/a, b, mode)`` does each product (mode 1 first, then mode 2) and returns
    ``(next, d)``; ``measure`` (:class:`DoublingMeasure`, :class:`ProjectionMeasure`) turns each ``d``
    into moments and gives the result (``measure.result()``).  ``progress(k, K)`` is called after each
    product k ≥ 2 of ``K = measure.n_products``.  ``on_step(k, mu, cur, prev)`` (checkpointing) is
    called after product k with the recursion state; ``state`` = a dict with ``k``, ``mu``, ``cur``,
    ``prev`` resumes from it (``X`` is then unused), giving bit-identical moments since every product
    is deterministic.
    """
    K = int(measure.n_products)
    scale = 1.0 / a
    if state is None:
        measure.start(op, X)
        k0 = 1
        if K >= 1:
            cur, d = op.step(X, None, scale, b, mode=1)
            measure.record(1, d)
            prev = X
            k0 = 2
            if on_step is not None:
                on_step(1, measure.state, cur, prev)
    else:
        measure.resume(state["mu"])
        cur, prev, k0 = state["cur"], state["prev"], int(state["k"]) + 1
    for k in range(k0, K + 1):
        nxt, d = op.step(cur, prev, scale, b, mode=2)
        measure.record(k, d)
        prev, cur = cur, nxt
        if on_step is not None:
            on_step(k, measure.state, cur, prev)
        if progress is not None:
            progress(k, K)
    return measure.result()


def chebyshev_moments(op, X, a: float, b: float, n_moments: int,
                      progress: Callable[[int, int], None] | None = None,
                      state: dict | None = None,
                      on_step: Callable[[int, np.ndarray, object, object], None] | None = None
                      ) -> np.ndarray:
    """Moments ``<x_t|T_n(H̃)|x_t>`` (m, N) float64 of the columns of block ``X`` (backend array).

    :func:`chebyshev_recursion` with a :class:`DoublingMeasure` (two moments per product).
    ``progress(k, K)`` is called after each of the K = N/2 products.  ``on_step(k, mu, cur, prev)``
    (checkpointing) is called after product k with the recursion state; ``state`` = a dict with
    ``k``, ``mu``, ``cur``, ``prev`` (backend arrays) resumes from it (``X`` is then unused), giving
    bit-identical moments since every product is deterministic.
    """
    return chebyshev_recursion(op, X, a, b, DoublingMeasure(n_moments), progress, state, on_step)


class MomentCheckpoint:
    """Atomic on-disk state of a :func:`stochastic_moments` run, written every ``every`` moments.

    The file (NumPy ``.npz``, written to a temporary name and renamed) holds the finished vectors'
    moments, the current block's index, product count, moments and the two recursion vectors.  It
    is used only when its ``key`` (a digest of everything that determines the result: settings,
    vectors, bounds, backend, precision) equals the running job's, and removed after success.
    Memory on disk ≈ 2 × block (``2 · n_spin_orbitals · m · 8`` bytes in single precision).
    """

    def __init__(self, path, key: str, every_moments: int, log=None):
        from pathlib import Path

        self.path = Path(path)
        self.key = str(key)
        self.every = max(1, int(every_moments) // 2)       # products (two moments each)
        self.log = log
        self.n_saved = 0

    def load(self) -> dict | None:
        """The saved state, or None (absent, unreadable or written for other settings)."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    if self.log is not None:
                        self.log.warning("checkpoint %s is for other settings; starting over", self.path)
                    return None
                st = {k: z[k] for k in z.files if k != "key"}
        except Exception as err:          # truncated by a kill during a write of an older version
            if self.log is not None:
                self.log.warning("checkpoint %s unreadable (%s); starting over", self.path, err)
            return None
        st["block"] = int(st["block"])
        st["k"] = int(st["k"])
        if self.log is not None:
            self.log.info("resuming from checkpoint %s (vector %d, product %d)", self.path,
                          st["block"], st["k"])
        return st

    def save(self, block: int, k: int, out: np.ndarray, mu=None, cur=None, prev=None) -> None:
        from ..io.h5 import atomic_path

        arrays = {"key": np.array(self.key), "block": np.array(block), "k": np.array(k), "out": out}
        if mu is not None:
            arrays.update(mu=mu, cur=cur, prev=prev)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                import os

                os.fsync(fh.fileno())
        self.n_saved += 1

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def stochastic_moments(op, row_sets: Sequence[np.ndarray], rngs: Sequence[np.random.Generator],
                       a: float, b: float, n_moments: int, block_size: int = 16,
                       progress: Callable[[int, int], None] | None = None,
                       step_progress: Callable[[int, int], None] | None = None,
                       checkpoint: MomentCheckpoint | None = None) -> np.ndarray:
    """Moments (n_vectors, N) of one random-phase vector per ``(row_set, rng)``, in blocks.

    ``progress(done, n)`` after each block; ``step_progress(k, K)`` after each product.  With a
    ``checkpoint``, the state is saved every ``checkpoint.every`` products and at each block's end,
    and a saved state is resumed (bit-identical result); the caller clears it after success.
    """
    n = len(row_sets)
    bs = max(1, int(block_size))
    out = np.zeros((n, int(n_moments)))
    state = checkpoint.load() if checkpoint is not None else None
    if hasattr(op, "comm") and checkpoint is not None:       # MPI: resume only if all ranks agree
        where = op.comm.allgather(None if state is None else (state["block"], state["k"]))
        if any(w != where[0] for w in where) or where[0] is None:
            state = None
    first = 0
    if state is not None:
        out = state["out"].copy()
        first = state["block"]
    for s in range(first, n, bs):
        e = min(n, s + bs)
        inner, on_step = None, None
        if checkpoint is not None:
            def on_step(k, mu, cur, prev, s=s):
                if k % checkpoint.every == 0:
                    checkpoint.save(s, k, out, mu, op.to_numpy(cur), op.to_numpy(prev))
        if state is not None and state["block"] == s and state["k"] > 0:
            inner = {"k": state["k"], "mu": state["mu"], "cur": op.to_backend(state["cur"]),
                     "prev": op.to_backend(state["prev"])}
            Xb = None
        else:
            if hasattr(op, "local_phase_block"):            # distributed: this rank's rows
                X = op.local_phase_block(row_sets[s:e], rngs[s:e])
            else:
                X = random_phase_block(op.n_rows, op.n_spin, row_sets[s:e], rngs[s:e], op.cdtype)
            Xb = op.to_backend(X)
            del X
        state = None
        out[s:e] = chebyshev_moments(op, Xb, a, b, n_moments, step_progress, state=inner,
                                     on_step=on_step)
        if checkpoint is not None:
            checkpoint.save(e, 0, out)
        if progress is not None:
            progress(e, n)
    return out


def moments_from_eigenvalues(evals: np.ndarray, a: float, b: float, n_moments: int,
                             weights: np.ndarray | None = None) -> np.ndarray:
    """Exact moments ``Σ_k w_k T_n((E_k − b)/a)`` (N,) from eigenvalues (and weights, default 1)."""
    x = np.clip((np.asarray(evals, float) - b) / a, -1.0, 1.0)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    th = np.arccos(x)
    n = np.arange(int(n_moments))
    out = np.zeros(len(n))
    for s in range(0, len(x), 4096):
        out += np.cos(n[:, None] * th[None, s:s + 4096]) @ w[s:s + 4096]
    return out


def damped(moments: np.ndarray, kernel: str | np.ndarray | None = "jackson") -> np.ndarray:
    """Moments (…, N) times the damping kernel g_n: ``"jackson"`` (default, also None), ``"none"``
    (Dirichlet, g_n = 1) or an explicit (N,) array.  The one kernel step of the phonon and electron
    densities."""
    mu = np.asarray(moments, float)
    N = mu.shape[-1]
    if kernel is None or (isinstance(kernel, str) and kernel == "jackson"):
        g = jackson_kernel(N)
    elif isinstance(kernel, str):
        g = np.ones(N)
    else:
        g = np.asarray(kernel, float)
    return mu * g


def smooth_coefficients(f_of_x: Callable[[np.ndarray], np.ndarray], n_moments: int,
                        n_nodes: int | None = None) -> np.ndarray:
    """Chebyshev coefficients c_n (…, N) on [−1, 1] of a smooth function ``f_of_x(x) -> (…, K)``
    evaluated on the K Chebyshev nodes ``x_k = cos(π (k + ½)/K)`` (K = ``n_nodes``, default
    max(4N, 4096)), by a type-II DCT, with c_0 halved, so that ``Σ_n g_n μ_n c_n`` is the
    kernel-damped spectral average of f (μ_n: moments normalised by μ_0).  Used by the phonon LDOS,
    where f(x) is a Gaussian of the energy ``E(λ(x))`` (constant broadening in meV)."""
    from scipy.fft import dct

    k = int(n_nodes or max(4 * n_moments, 4096))
    x = np.cos(np.pi * (np.arange(k) + 0.5) / k)
    c = dct(np.asarray(f_of_x(x), float), type=2, axis=-1)[..., :n_moments] / k
    c[..., 0] *= 0.5
    return c


def reconstruct(moments: np.ndarray, coefficients: np.ndarray,
                kernel: str | np.ndarray | None = "jackson") -> np.ndarray:
    """Kernel-damped spectral averages ``Σ_n g_n μ_n c_n(E)`` (…, n_E) from moments (…, N) and
    coefficients (n_E, N) (:func:`smooth_coefficients`)."""
    return damped(moments, kernel) @ np.asarray(coefficients).T


def density(moments: np.ndarray, energies: np.ndarray, a: float, b: float,
            kernel: np.ndarray | None = None) -> np.ndarray:
    """KPM density (…, n_E) in states/eV from moments (…, N) on ``energies`` (eV).

    Energies outside the rescaled interval get 0.
    """
    mu = np.asarray(moments, float)
    N = mu.shape[-1]
    E = np.asarray(energies, float)
    x = (E - b) / a
    inside = np.abs(x) < 1.0
    th = np.arccos(np.clip(x, -1.0, 1.0))
    coef = damped(mu, kernel)
    coef[..., 1:] *= 2.0
    T = np.cos(np.arange(N)[:, None] * th[None, :])
    rho = coef @ T
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(inside, rho / (np.pi * a * np.sqrt(np.clip(1 - x * x, 1e-300, None))), 0.0)
    return rho
