"""Fast products of the tight-binding Hamiltonian with blocks of vectors (numba, SciPy, torch).

Vectors are blocks of shape ``(n_rows, n_spin, m)`` (row = spatial orbital, spin 2 for the TB
Hamiltonian or 1 for a plain matrix, ``m`` columns), complex64 or complex128, C order.

Backends
--------
``numba``  fused row-parallel CSR kernel: one pass computes ``Y = 2 (H − b) X / a − X_prev`` (a
           Chebyshev step) including spin–orbit and the two dot products KPM needs.  Row blocks
           of fixed size and per-block partial sums make the result independent of the number of
           threads, and each column is computed independently of the others, so a vector's
           moments do not depend on which other vectors share its block.
``scipy``  ``csr @ dense`` (single-threaded) plus NumPy for spin–orbit and the recursion.
``torch``  ``torch.sparse_csr_tensor @ dense`` on CPU threads or CUDA (complex blocks as real
           columns), spin–orbit with ``index_add``.
``auto``   torch on CUDA when a GPU is visible, else numba (measured fastest on CPU, see
           bench/results/tight_binding.md).
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import scipy.sparse as sp
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .slater_koster import spin_orbit_matrix

ROW_BLOCK = 256   # rows per partial sum (fixed: results do not depend on the thread count)
BACKENDS = ("auto", "numba", "scipy", "torch", "cuda")


@numba.njit(parallel=True, cache=True)
def _kernel(indptr, indices, data, X, Xprev, Y, scale, shift, mode, so_lam, so_base, so_comp, M,
            partial, block, m, row0):
    """Flattened blocks: X[row, s*m + v].  See :meth:`TBOperator.step` for the modes.

    Matrix row ``i`` (``len(indptr) − 1`` rows) is vector row ``row0 + i`` (``row0`` > 0 for the
    halo layout of :mod:`.distributed`); ``so_lam``/``so_base``/``so_comp`` are per matrix row.
    """
    n = indptr.shape[0] - 1
    w = X.shape[1]
    nblk = (n + block - 1) // block
    for ib in numba.prange(nblk):
        acc = np.empty(w, dtype=X.dtype)
        pyy = np.zeros(m)
        pyx = np.zeros(m)
        r1 = min(n, (ib + 1) * block)
        for i in range(ib * block, r1):
            r = row0 + i
            for q in range(w):
                acc[q] = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                c = indices[k]
                h = data[k]
                for q in range(w):
                    acc[q] += h * X[c, q]
            lam = so_lam[i]
            if lam != 0.0:
                a = so_comp[i]
                base = so_base[i]
                for s in range(2):
                    for b in range(3):
                        if b == a:
                            continue
                        for t in range(2):
                            coef = lam * M[2 * a + s, 2 * b + t]
                            if coef != 0.0:
                                for v in range(m):
                                    acc[s * m + v] += coef * X[base + b, t * m + v]
            for q in range(w):
                x = X[r, q]
                if mode == 0:
                    Y[r, q] = acc[q]
                elif mode == 1:
                    Y[r, q] = (acc[q] - shift * x) * scale
                else:
                    Y[r, q] = 2.0 * scale * (acc[q] - shift * x) - Xprev[r, q]
                y = Y[r, q]
                v = q % m
                pyy[v] += y.real * y.real + y.imag * y.imag
                pyx[v] += y.real * x.real + y.imag * x.imag
        for v in range(m):
            partial[ib, v, 0] = pyy[v]
            partial[ib, v, 1] = pyx[v]


@numba.njit(inline="always", cache=True)
def add_spin_orbit_real(acc, X, lam, a, base, Mr, Mi, m):
    """Add the on-site spin–orbit term of one p row (component ``a``, p block at ``base``) to ``acc``.

    Complex blocks are seen as reals (``X[row, 2q + re/im]``); shared by the CSR and matrix-free kernels
    so both give bit-identical products.
    """
    for s in range(2):
        for b in range(3):
            if b == a:
                continue
            for t in range(2):
                cr = lam * Mr[2 * a + s, 2 * b + t]
                ci = lam * Mi[2 * a + s, 2 * b + t]
                if cr != 0.0 or ci != 0.0:
                    for v in range(m):
                        xr = X[base + b, 2 * (t * m + v)]
                        xi = X[base + b, 2 * (t * m + v) + 1]
                        acc[2 * (s * m + v)] += cr * xr - ci * xi
                        acc[2 * (s * m + v) + 1] += cr * xi + ci * xr


@numba.njit(inline="always", cache=True)
def finish_row_real(acc, X, Xprev, Y, r, w, m, mode, scale, shift, pyy, pyx):
    """Write row ``r`` of the product (``mode`` 0: H X, 1: (H − b) X / a, 2: Chebyshev step
    2 (H − b) X / a − X_prev) from its accumulated ``acc`` and add its terms of <Y, Y> and <Y, X>."""
    two_scale = 2.0 * scale
    for q in range(w):
        xr = X[r, 2 * q]
        xi = X[r, 2 * q + 1]
        if mode == 0:
            Y[r, 2 * q] = acc[2 * q]
            Y[r, 2 * q + 1] = acc[2 * q + 1]
        elif mode == 1:
            Y[r, 2 * q] = (acc[2 * q] - shift * xr) * scale
            Y[r, 2 * q + 1] = (acc[2 * q + 1] - shift * xi) * scale
        else:
            Y[r, 2 * q] = two_scale * (acc[2 * q] - shift * xr) - Xprev[r, 2 * q]
            Y[r, 2 * q + 1] = two_scale * (acc[2 * q + 1] - shift * xi) - Xprev[r, 2 * q + 1]
        yr = Y[r, 2 * q]
        yi = Y[r, 2 * q + 1]
        v = q % m
        pyy[v] += yr * yr + yi * yi
        pyx[v] += yr * xr + yi * xi


@numba.njit(inline="always", cache=True)
def _real_rows(acc, width, ib, block, n, row0, indptr, indices, data, X, Xprev, Y, scale, shift, mode,
               so_lam, so_base, so_comp, Mr, Mi, partial, w, m):
    """Rows of row block ``ib`` of the real-CSR product, accumulated in ``acc`` (``width`` reals), and
    the block's partial dot products: the one row loop of :func:`_kernel_real` and of the
    compiled-width kernels (:func:`real_kernel`, where ``width`` is a compile-time constant)."""
    pyy = np.zeros(m)
    pyx = np.zeros(m)
    for i in range(ib * block, min(n, (ib + 1) * block)):
        r = row0 + i
        for q in range(width):
            acc[q] = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            c = indices[k]
            h = data[k]
            for q in range(width):
                acc[q] += h * X[c, q]
        lam = so_lam[i]
        if lam != 0.0:
            add_spin_orbit_real(acc, X, lam, so_comp[i], so_base[i], Mr, Mi, m)
        finish_row_real(acc, X, Xprev, Y, r, w, m, mode, scale, shift, pyy, pyx)
    for v in range(m):
        partial[ib, v, 0] = pyy[v]
        partial[ib, v, 1] = pyx[v]


@numba.njit(parallel=True, cache=True)
def _kernel_real(indptr, indices, data, X, Xprev, Y, scale, shift, mode, so_lam, so_base, so_comp,
                 Mr, Mi, partial, block, m, row0):
    """:func:`_kernel` for a real matrix on complex blocks seen as reals (``X[row, 2q + re/im]``).

    The hopping sum is a plain real multiply-add over contiguous reals (vectorised by LLVM), half
    the arithmetic of the complex form; spin–orbit and the recursion repeat the complex kernel's
    operations component by component, so the values are identical (up to the sign of zeros).
    """
    n = indptr.shape[0] - 1
    w2 = X.shape[1]
    w = w2 // 2
    nblk = (n + block - 1) // block
    for ib in numba.prange(nblk):
        acc = np.empty(w2, dtype=X.dtype)
        _real_rows(acc, w2, ib, block, n, row0, indptr, indices, data, X, Xprev, Y, scale, shift, mode,
                   so_lam, so_base, so_comp, Mr, Mi, partial, w, m)


@intrinsic
def _stack_buffer(typingctx, size, dtype):
    """Pointer to ``size`` (a compile-time integer) elements of ``dtype`` on the stack (alloca)."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    n = size.literal_value

    def impl(context, builder, signature, args):
        ty = context.get_value_type(dtype.dtype)
        return cgutils.alloca_once(builder, ty, size=context.get_constant(types.intp, n))

    return types.CPointer(dtype.dtype)(size, dtype), impl


_REAL_KERNELS: dict = {}
MAX_SPECIALISED_WIDTH = 512     # reals per row (2 spins x re/im x m: m <= 128) with a compiled-width kernel


def real_kernel(width: int):
    """:func:`_kernel_real` specialised for blocks of ``width`` reals per row (compiled once per width).

    With the width a compile-time constant the row accumulator lives on the stack (registers) and
    the multiply–add over a row of X is unrolled into full SIMD vectors; the arithmetic and its
    order are those of :func:`_kernel_real`, so the products are bit-identical (tested), 2–3x
    faster at m = 1–32 (bench/results/tight_binding_kernels.md).  Widths above
    :data:`MAX_SPECIALISED_WIDTH` use the generic kernel.
    """
    width = int(width)
    if width > MAX_SPECIALISED_WIDTH:
        return _kernel_real
    k = _REAL_KERNELS.get(width)
    if k is None:
        k = _REAL_KERNELS[width] = _make_real_kernel(width)
    return k


def _make_real_kernel(W: int):
    @numba.njit(parallel=True, cache=True)
    def kernel(indptr, indices, data, X, Xprev, Y, scale, shift, mode, so_lam, so_base, so_comp,
               Mr, Mi, partial, block, m, row0):
        n = indptr.shape[0] - 1
        w = W // 2
        nblk = (n + block - 1) // block
        for ib in numba.prange(nblk):
            acc = numba.carray(_stack_buffer(W, X.dtype), W)
            _real_rows(acc, W, ib, block, n, row0, indptr, indices, data, X, Xprev, Y, scale, shift, mode,
                       so_lam, so_base, so_comp, Mr, Mi, partial, w, m)

    return kernel


@numba.njit(cache=True)
def sq_norm_partials(X, block, m):
    """Per row block (nblk, m) float64 sums of ``|X[r, q]|²`` (column ``q % m``), fixed order."""
    n, w = X.shape
    nblk = (n + block - 1) // block
    out = np.zeros((nblk, m))
    for ib in range(nblk):
        for r in range(ib * block, min(n, (ib + 1) * block)):
            for q in range(w):
                x = X[r, q]
                out[ib, q % m] += np.float64(x.real) ** 2 + np.float64(x.imag) ** 2
    return out


@numba.njit(parallel=True, cache=True)
def vdot_partials(x, y, block):
    """Per block of ``block`` entries, ``Σ conj(x) y`` (complex128) of flat arrays; fixed blocks, so the
    sum of the partials in order does not depend on the thread count or the MPI split."""
    n = x.shape[0]
    nblk = (n + block - 1) // block
    out = np.zeros(nblk, np.complex128)
    for ib in numba.prange(nblk):
        s = 0j
        for i in range(ib * block, min(n, (ib + 1) * block)):
            s += np.complex128(x[i]).conjugate() * np.complex128(y[i])
        out[ib] = s
    return out


class TBOperator:
    """``H`` acting on vector blocks, for a :class:`TBHamiltonian` or any Hermitian matrix.

    Parameters
    ----------
    ham: a :class:`..hamiltonian.TBHamiltonian` (spin 2, spin–orbit included), or None.
    matrix: a Hermitian scipy sparse matrix or array (spin 1), when ``ham`` is None.
    backend: one of :data:`BACKENDS`.
    complex_dtype: complex64 (default) or complex128 for the vectors.
    """

    def __init__(self, ham=None, matrix=None, backend: str = "auto", complex_dtype=np.complex64):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.cdtype = np.dtype(complex_dtype)
        rdtype = np.float32 if self.cdtype == np.complex64 else np.float64
        if ham is not None:
            H = ham.H
            self.n_spin = 2
            self.so_rows = np.asarray(ham.so_rows, np.int64)
            self.so_lambda = np.asarray(ham.so_lambda, np.float64)
            # numba: a float32 matrix serves complex128 vectors as is (exact upcast in the kernel,
            # same results), so double-precision Lanczos does not copy the matrix
            resolved = ("cuda" if _cuda_available() else "numba") if backend == "auto" else backend
            if not (resolved == "numba" and H.dtype == np.float32):
                H = H.astype(rdtype)
        else:
            H = sp.csr_matrix(matrix)
            self.n_spin = 1
            self.so_rows = np.zeros((0, 3), np.int64)
            self.so_lambda = np.zeros(0)
            H = H.astype(self.cdtype if np.iscomplexobj(H.data) else rdtype)
        self.H = H
        self.n_rows = H.shape[0]
        if backend == "auto":
            backend = "cuda" if _cuda_available() else "numba"
        self.backend = backend
        self._M = spin_orbit_matrix().astype(self.cdtype)
        n = self.n_rows
        self._so_lam = np.zeros(n, np.float64)
        self._so_base = np.zeros(n, np.int64)
        self._so_comp = np.zeros(n, np.int64)
        if len(self.so_rows):
            self._so_lam[self.so_rows.ravel()] = np.repeat(self.so_lambda, 3)
            self._so_base[self.so_rows.ravel()] = np.repeat(self.so_rows[:, 0], 3)
            self._so_comp[self.so_rows.ravel()] = np.tile(np.arange(3), len(self.so_rows))
        self._so_lam = self._so_lam.astype(rdtype)
        self._torch = None
        if backend in ("torch", "cuda"):
            self._setup_torch("cuda" if backend == "cuda" else "cpu")

    # ----------------------------------------------------------------- helpers
    @property
    def is_torch(self) -> bool:
        return self._torch is not None

    def memory_bytes(self) -> int:
        """Bytes held by the matrix (data + indices + indptr)."""
        H = self.H
        return int(H.data.nbytes + H.indices.nbytes + H.indptr.nbytes)

    def zeros(self, m: int):
        """A zero block ``(n_rows, n_spin, m)`` on the backend's device."""
        if self.is_torch:
            t = self._torch
            return t["torch"].zeros((self.n_rows, self.n_spin, m), dtype=t["cdtype"], device=t["device"])
        return np.zeros((self.n_rows, self.n_spin, m), self.cdtype)

    def to_backend(self, X: np.ndarray):
        """Copy a NumPy block to the backend (no copy for NumPy backends when dtype matches)."""
        X = np.ascontiguousarray(X, self.cdtype)
        if self.is_torch:
            t = self._torch
            return t["torch"].from_numpy(X).to(t["device"])
        return X

    def to_numpy(self, X) -> np.ndarray:
        if self.is_torch:
            return X.detach().cpu().numpy()
        return X

    def sq_norms(self, X) -> np.ndarray:
        """``<x_t|x_t>`` (m,) float64 summed in fixed row blocks (same on any number of ranks)."""
        if self.is_torch:
            x = X.detach()
            return (x.real.double() ** 2 + x.imag.double() ** 2).sum(dim=(0, 1)).cpu().numpy()
        n, ns, m = X.shape
        return sq_norm_partials(X.reshape(n, ns * m), ROW_BLOCK, m).sum(axis=0)

    def vdot(self, x, y) -> complex:
        """``<x|y>`` (complex) in one pass without temporaries, summed in fixed row blocks (Lanczos)."""
        if self.is_torch:
            return complex((x.conj() * y).sum())
        n, ns, m = x.shape
        return complex(vdot_partials(x.reshape(-1), y.reshape(-1), ROW_BLOCK * ns * m).sum())

    # ------------------------------------------------------------------ products
    def matmat(self, X):
        """``H X`` for a block ``(n_rows, n_spin, m)``."""
        Y, _ = self.step(X, None, 1.0, 0.0, mode=0)
        return Y

    def step(self, X, Xprev, scale: float, shift: float, mode: int):
        """One product; returns ``(Y, dots)`` with dots (m, 2) = [<Y|Y>, Re <Y|X>] (float64).

        mode 0: ``Y = H X``; 1: ``Y = scale (H − shift) X``; 2: ``Y = 2 scale (H − shift) X − Xprev``.
        """
        if self.is_torch:
            return self._step_torch(X, Xprev, scale, shift, mode)
        if self.backend == "scipy":
            return self._step_scipy(X, Xprev, scale, shift, mode)
        return self._step_numba(X, Xprev, scale, shift, mode)

    def _step_numba(self, X, Xprev, scale, shift, mode):
        n, ns, m = X.shape
        Y = np.empty_like(X)
        nblk = (n + ROW_BLOCK - 1) // ROW_BLOCK
        partial = np.zeros((nblk, m, 2))
        H = self.H
        rd = self._so_lam.dtype.type
        Xp = X if Xprev is None else Xprev
        if np.iscomplexobj(H.data):
            _kernel(H.indptr, H.indices, H.data, X.reshape(n, ns * m), Xp.reshape(n, ns * m),
                    Y.reshape(n, ns * m), rd(scale), rd(shift), int(mode), self._so_lam, self._so_base,
                    self._so_comp, self._M, partial, ROW_BLOCK, m, 0)
        else:
            rv = X.real.dtype
            real_kernel(2 * ns * m)(H.indptr, H.indices, H.data, X.reshape(n, ns * m).view(rv),
                         Xp.reshape(n, ns * m).view(rv), Y.reshape(n, ns * m).view(rv), rd(scale),
                         rd(shift), int(mode), self._so_lam, self._so_base, self._so_comp,
                         np.ascontiguousarray(self._M.real), np.ascontiguousarray(self._M.imag),
                         partial, ROW_BLOCK, m, 0)
        return Y, partial.sum(axis=0)

    def _so_numpy(self, X, Y):
        if not len(self.so_rows):
            return
        nh = len(self.so_rows)
        m = X.shape[2]
        Xp = X[self.so_rows].reshape(nh, 6, m)
        Yp = np.einsum("ij,njm->nim", self._M, Xp) * self.so_lambda[:, None, None].astype(X.real.dtype)
        Y[self.so_rows.ravel()] += Yp.reshape(nh * 3, 2, m)

    def _step_scipy(self, X, Xprev, scale, shift, mode):
        n, ns, m = X.shape
        Y = np.asarray(self.H @ X.reshape(n, ns * m)).reshape(n, ns, m).astype(self.cdtype, copy=False)
        self._so_numpy(X, Y)
        if mode >= 1:
            Y -= shift * X
            Y *= scale
            if mode == 2:
                Y *= 2
                Y -= Xprev
        dots = _dots_blocked(Y, X)
        return Y, dots

    # ------------------------------------------------------------------ torch
    def _setup_torch(self, device: str):
        import torch

        H = self.H
        rd = torch.float32 if self.cdtype == np.complex64 else torch.float64
        cd = torch.complex64 if self.cdtype == np.complex64 else torch.complex128
        dev = torch.device(device)
        real = not np.iscomplexobj(H.data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # "sparse CSR support is in beta"
            Ht = torch.sparse_csr_tensor(torch.from_numpy(H.indptr.astype(np.int64)),
                                         torch.from_numpy(H.indices.astype(np.int64)),
                                         torch.from_numpy(H.data), size=H.shape,
                                         check_invariants=False).to(dev)
        self._torch = {
            "torch": torch, "device": dev, "H": Ht, "real": real, "rdtype": rd, "cdtype": cd,
            "so_rows": torch.from_numpy(self.so_rows).to(dev),
            "so_lambda": torch.from_numpy(self.so_lambda).to(dev, rd),
            "M": torch.from_numpy(self._M).to(dev),
        }

    def _step_torch(self, X, Xprev, scale, shift, mode):
        t = self._torch
        torch = t["torch"]
        n, ns, m = X.shape
        if t["real"]:
            Xr = torch.view_as_real(X).reshape(n, ns * m * 2)
            Y = torch.view_as_complex((t["H"] @ Xr).reshape(n, ns, m, 2).contiguous())
        else:
            Y = (t["H"] @ X.reshape(n, ns * m)).reshape(n, ns, m)
        if len(self.so_rows):
            nh = len(self.so_rows)
            Xp = X[t["so_rows"]].reshape(nh, 6, m)
            Yp = torch.einsum("ij,njm->nim", t["M"], Xp) * t["so_lambda"][:, None, None]
            Y.index_add_(0, t["so_rows"].reshape(-1), Yp.reshape(nh * 3, 2, m))
        if mode >= 1:
            Y = (Y - shift * X) * scale
            if mode == 2:
                Y = 2 * Y - Xprev
        yy = (Y.real.double() ** 2 + Y.imag.double() ** 2).sum(dim=(0, 1))
        yx = (Y.real.double() * X.real.double() + Y.imag.double() * X.imag.double()).sum(dim=(0, 1))
        dots = torch.stack([yy, yx], dim=1).cpu().numpy()
        return Y, dots


def _dots_blocked(Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """[<Y|Y>, Re <Y|X>] per column (m, 2) in float64, with fixed-size row blocks."""
    yy = (Y.real.astype(np.float64) ** 2 + Y.imag.astype(np.float64) ** 2).sum(axis=(0, 1))
    yx = (Y.real.astype(np.float64) * X.real + Y.imag.astype(np.float64) * X.imag).sum(axis=(0, 1))
    return np.stack([yy, yx], axis=1)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False
