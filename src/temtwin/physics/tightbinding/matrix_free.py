"""Matrix-free sp3d5s* products: Slater–Koster blocks computed on the fly from the bond list.

Instead of the CSR matrix (about 4 kB per Si/Ge atom in float32: 10 rows × 50 entries × (value +
column index)), the operator keeps only the geometry: per site its species, first orbital and
environment sums (38 float64, for the on-site strain block), and per neighbour entry (the site
itself included) the neighbour index (int32) and bond vector (3 float64).  That is about 460 bytes
per atom (:meth:`MatrixFreeOperator.memory_bytes`).  Each product recomputes the 10×10 two-centre
and on-site blocks (a few hundred flops per bond, small against the 6400 multiply–adds per bond of
a 16-column block) with the same numba functions as the CSR build.

Equality with CSR
-----------------
The blocks are evaluated in float64 exactly as :func:`..hamiltonian.build_hamiltonian` does, rounded
to the matrix precision (float32 for ``precision: single``), and accumulated row by row in the CSR
column order (entries sorted by neighbour index), with the same spin–orbit terms and fixed
256-row partial sums for the dot products.  The moments therefore equal the CSR numba path
bit for bit on structures without duplicate neighbour entries (a periodic cell smaller than twice
the cut-off, where the CSR build sums duplicates first: then they agree to float32 round-off).

Vectors: blocks ``(n_orbitals, 2, m)`` complex64/complex128 as for :class:`.operator.TBOperator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from .operator import (
    MAX_SPECIALISED_WIDTH, ROW_BLOCK, _stack_buffer, add_spin_orbit_real, finish_row_real,
    sq_norm_partials, vdot_partials,
)
from .parameters import N_ORB, TBParameters
from .slater_koster import onsite_block_into, scaled_integrals_into, sk_block_into, spin_orbit_matrix
from .structure import TBStructure

MAX_ENTRIES = 16   # neighbour entries per site (self + bonds) the kernel's stack buffer holds


@dataclass
class MatrixFreeHamiltonian:
    """Geometry and parameters from which the Hamiltonian's blocks are computed on demand.

    Attributes mirror :class:`..hamiltonian.TBHamiltonian` (``site_start``, ``so_rows``,
    ``so_lambda``, ``structure``, ``info``) so that the stages can use either.
    """

    site_start: np.ndarray          # (n_sites + 1,) int64 first orbital row of each site
    species: np.ndarray             # (n_sites,) int8
    entry_ptr: np.ndarray           # (n_sites + 1,) int64 entries of site i
    entry_j: np.ndarray             # (n_entries,) int32 neighbour site (sorted within a site)
    entry_vec: np.ndarray           # (n_entries, 3) float64 bond vector r_j − r_i (Å), 0 for self
    env: np.ndarray                 # (n_host, 38) float64 environment sums
    so_lambda: np.ndarray           # (n_host,) eV
    params: TBParameters
    strain: bool
    shift: float
    matrix_dtype: np.dtype
    structure: TBStructure
    info: dict = field(default_factory=dict)

    @property
    def n_orbitals(self) -> int:
        return int(self.site_start[-1])

    @property
    def n_spin_orbitals(self) -> int:
        return 2 * self.n_orbitals

    @property
    def orbital_site(self) -> np.ndarray:
        """(n_orb,) site of each orbital row (computed on demand)."""
        return np.repeat(np.arange(len(self.species)), np.diff(self.site_start))

    @property
    def so_rows(self) -> np.ndarray:
        n_host = len(self.so_lambda)
        return self.site_start[:n_host, None] + np.arange(1, 4)[None, :]

    def memory_bytes(self) -> int:
        """Bytes of the per-site and per-entry arrays the products read."""
        return int(sum(a.nbytes for a in (self.site_start, self.species, self.entry_ptr, self.entry_j,
                                          self.entry_vec, self.env, self.so_lambda)))


def build_matrix_free(structure: TBStructure, params: TBParameters, strain: bool = True,
                      spin_orbit: bool = True, sp3_shift_eV: float = 10.0,
                      dtype=np.float32) -> MatrixFreeHamiltonian:
    """The matrix-free form of :func:`..hamiltonian.build_hamiltonian` (same arguments).

    ``dtype`` is the precision the blocks are rounded to (as the CSR matrix's values).
    """
    st = structure
    ns = st.n_sites
    norb = np.asarray(params.n_orb, np.int64)[st.species]
    site_start = np.zeros(ns + 1, np.int64)
    np.cumsum(norb, out=site_start[1:])
    ei = np.concatenate([np.arange(ns), st.bond_i])
    ej = np.concatenate([np.arange(ns), st.bond_j])
    order = np.lexsort((ej, ei))
    entry_ptr = np.zeros(ns + 1, np.int64)
    np.cumsum(np.bincount(ei, minlength=ns), out=entry_ptr[1:])
    per_site = np.diff(entry_ptr)
    if per_site.max(initial=0) > MAX_ENTRIES:
        raise ValueError(f"a site has {per_site.max()} neighbour entries (> {MAX_ENTRIES}); "
                         "use the CSR backend for this structure")
    entry_vec = np.concatenate([np.zeros((ns, 3)), st.bond_vec])[order]
    entry_j = ej[order].astype(np.int32)
    del ei, ej, order
    shift = float(sp3_shift_eV) if st.passivation == "sp3_shift" else 0.0
    lam = params.lambda_so[st.species[:st.n_host]] if spin_orbit else np.zeros(st.n_host)
    env = np.ascontiguousarray(st.env if len(st.env) else np.zeros((0, 38)), np.float64)
    info = {"n_sites": ns, "n_host": st.n_host, "n_orbitals": int(site_start[-1]),
            "n_spin_orbitals": 2 * int(site_start[-1]), "nnz": int((norb[st.bond_i] * norb[st.bond_j]).sum()
                                                                 + (norb ** 2).sum()),
            "strain": bool(strain), "spin_orbit": bool(spin_orbit), "passivation": st.passivation,
            "sp3_shift_eV": shift, "matrix_free": True}
    return MatrixFreeHamiltonian(
        site_start=site_start, species=st.species.astype(np.int8), entry_ptr=entry_ptr,
        entry_j=entry_j, entry_vec=np.ascontiguousarray(entry_vec), env=env,
        so_lambda=np.asarray(lam, np.float64), params=params, strain=bool(strain), shift=shift,
        matrix_dtype=np.dtype(dtype), structure=st, info=info)


_MF_KERNELS: dict = {}


def mf_kernel(width: int):
    """The matrix-free product kernel for blocks of ``width`` reals per row: compiled for that width
    (stack accumulator, unrolled SIMD multiply–adds, as :func:`.operator.real_kernel`) up to
    :data:`.operator.MAX_SPECIALISED_WIDTH`, else the generic one.  Same arithmetic either way."""
    width = int(width) if 0 < int(width) <= MAX_SPECIALISED_WIDTH else 0
    k = _MF_KERNELS.get(width)
    if k is None:
        k = _MF_KERNELS[width] = _make_mf_kernel(width)
    return k


def _make_mf_kernel(W: int):
    WS = W if W > 0 else 1

    @numba.njit(parallel=True, cache=True)
    def kernel(site_start, species, norb_of, entry_ptr, entry_j, entry_vec, env, n_host,
               onsite, alpha, beta, V0, nexp, d0, strain, shift, blk_proto,
               X, Xprev, Y, scale, shift_e, mode, so_lam, Mr, Mi, partial, first_site, block, m):
        """One product over row blocks of ``block`` rows (``first_site[ib]`` = site holding its first row).

        Complex blocks are seen as reals (``X[row, 2q + re/im]``); row order, entry order, spin–orbit,
        recursion and partial dot products follow :func:`.operator._kernel_real` exactly.
        """
        n, wx = X.shape
        w = W if W > 0 else wx
        wc = w // 2
        nblk = (n + block - 1) // block
        for ib in numba.prange(nblk):
            r0 = ib * block
            r1 = min(n, r0 + block)
            if W > 0:
                acc = numba.carray(_stack_buffer(WS, X.dtype), WS)
            else:
                acc = np.empty(w, dtype=X.dtype)
            blks = np.zeros((MAX_ENTRIES, N_ORB, N_ORB), dtype=blk_proto.dtype)
            b64 = np.zeros((N_ORB, N_ORB))
            vv = np.zeros(V0.shape[2])
            c = np.zeros(3)
            pyy = np.zeros(m)
            pyx = np.zeros(m)
            i = first_site[ib]
            while i < site_start.shape[0] - 1 and site_start[i] < r1:
                si = species[i]
                ni = norb_of[si]
                e0 = entry_ptr[i]
                ne = entry_ptr[i + 1] - e0
                for k in range(ne):
                    j = entry_j[e0 + k]
                    sj = species[j]
                    vx, vy, vz = entry_vec[e0 + k, 0], entry_vec[e0 + k, 1], entry_vec[e0 + k, 2]
                    if j == i and vx == 0.0 and vy == 0.0 and vz == 0.0:
                        if i < n_host:
                            onsite_block_into(onsite[si], alpha[si], beta[si], env[i], strain, shift, b64)
                        else:
                            b64[0, 0] = onsite[si, 0]
                    else:
                        d = np.sqrt(vx * vx + vy * vy + vz * vz)
                        c[0] = vx / d
                        c[1] = vy / d
                        c[2] = vz / d
                        scaled_integrals_into(V0[si, sj], nexp[si, sj], d0[si, sj], d, vv)
                        sk_block_into(c, vv, b64)
                    for a in range(ni):
                        for bb in range(norb_of[sj]):
                            blks[k, a, bb] = b64[a, bb]
                lam = so_lam[i]
                for a in range(ni):
                    r = site_start[i] + a
                    if r < r0 or r >= r1:
                        continue
                    for q in range(w):
                        acc[q] = 0.0
                    for k in range(ne):
                        j = entry_j[e0 + k]
                        cj = site_start[j]
                        for bb in range(norb_of[species[j]]):
                            h = blks[k, a, bb]
                            for q in range(w):
                                acc[q] += h * X[cj + bb, q]
                    if lam != 0.0 and 1 <= a <= 3:
                        add_spin_orbit_real(acc, X, lam, a - 1, site_start[i] + 1, Mr, Mi, m)
                    finish_row_real(acc, X, Xprev, Y, r, wc, m, mode, scale, shift_e, pyy, pyx)
                i += 1
            for v in range(m):
                partial[ib, v, 0] = pyy[v]
                partial[ib, v, 1] = pyx[v]

    return kernel


class MatrixFreeOperator:
    """``H`` acting on vector blocks without storing the matrix (API of :class:`.TBOperator`).

    Parameters
    ----------
    ham: a :class:`MatrixFreeHamiltonian`.
    complex_dtype: complex64 (default) or complex128 for the vectors.
    """

    backend = "matrix_free"
    n_spin = 2
    is_torch = False

    def __init__(self, ham: MatrixFreeHamiltonian, complex_dtype=np.complex64):
        self.ham = ham
        self.cdtype = np.dtype(complex_dtype)
        rdtype = np.float32 if self.cdtype == np.complex64 else np.float64
        self.n_rows = ham.n_orbitals
        M = spin_orbit_matrix().astype(self.cdtype)
        self._Mr, self._Mi = np.ascontiguousarray(M.real), np.ascontiguousarray(M.imag)
        self._so_lam = np.zeros(len(ham.species), rdtype)      # per site, 0 for H
        self._so_lam[:len(ham.so_lambda)] = ham.so_lambda
        p = ham.params
        self._par = (np.asarray(p.n_orb, np.int64), np.ascontiguousarray(p.onsite, np.float64),
                     np.ascontiguousarray(p.alpha, np.float64), np.ascontiguousarray(p.beta, np.float64),
                     np.ascontiguousarray(p.V0, np.float64), np.ascontiguousarray(p.n, np.float64),
                     np.ascontiguousarray(p.d0, np.float64))
        nblk = (self.n_rows + ROW_BLOCK - 1) // ROW_BLOCK
        self._first_site = (np.searchsorted(ham.site_start, np.arange(nblk) * ROW_BLOCK, side="right")
                            - 1).astype(np.int64)
        self._proto = np.zeros(1, ham.matrix_dtype)

    def memory_bytes(self) -> int:
        """Bytes held by the geometry the blocks are computed from."""
        return self.ham.memory_bytes()

    def zeros(self, m: int):
        return np.zeros((self.n_rows, 2, m), self.cdtype)

    def to_backend(self, X):
        return np.ascontiguousarray(X, self.cdtype)

    def to_numpy(self, X):
        return X

    def sq_norms(self, X) -> np.ndarray:
        n, ns, m = X.shape
        return sq_norm_partials(X.reshape(n, ns * m), ROW_BLOCK, m).sum(axis=0)

    def vdot(self, x, y) -> complex:
        """``<x|y>`` as :meth:`.TBOperator.vdot` (same blocks, same sum)."""
        n, ns, m = x.shape
        return complex(vdot_partials(x.reshape(-1), y.reshape(-1), ROW_BLOCK * ns * m).sum())

    def matmat(self, X):
        Y, _ = self.step(X, None, 1.0, 0.0, mode=0)
        return Y

    def step(self, X, Xprev, scale: float, shift: float, mode: int):
        """As :meth:`.TBOperator.step`."""
        n, ns, m = X.shape
        Y = np.empty_like(X)
        nblk = (n + ROW_BLOCK - 1) // ROW_BLOCK
        partial = np.zeros((nblk, m, 2))
        h = self.ham
        rd = self._so_lam.dtype.type
        rv = X.real.dtype
        norb_of, onsite, alpha, beta, V0, nexp, d0 = self._par
        Xp = X if Xprev is None else Xprev
        mf_kernel(ns * m * 2)(h.site_start, h.species, norb_of, h.entry_ptr, h.entry_j, h.entry_vec, h.env,
                              len(h.so_lambda), onsite, alpha, beta, V0, nexp, d0, h.strain, h.shift,
                              self._proto, X.reshape(n, ns * m).view(rv), Xp.reshape(n, ns * m).view(rv),
                              Y.reshape(n, ns * m).view(rv), rd(scale), rd(shift), int(mode), self._so_lam,
                              self._Mr, self._Mi, partial, self._first_site, ROW_BLOCK, m)
        return Y, partial.sum(axis=0)
