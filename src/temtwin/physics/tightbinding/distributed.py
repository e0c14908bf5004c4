"""Distributed KPM products with MPI (mpi4py): domain decomposition of the atoms, halo exchange.

Decomposition
-------------
The orbital rows are split into ``size`` contiguous ranges at multiples of
:data:`.operator.ROW_BLOCK` (256 rows), balanced by count; the sites are in the model's order, so a
spatially ordered model (the atomic-model stage writes atoms layer by layer) gives compact domains
and small halos.  Each rank assembles only the CSR rows of its range
(:func:`..hamiltonian.assemble_rows`; the prepared structure — positions, bonds, environment sums,
about 0.5 kB per atom — is still held whole by every rank) and relabels the columns as

    ``[ghost rows below the range | own rows | ghost rows above the range]``

(ghosts sorted by global row), which keeps the CSR entry order and makes every contiguous run of
global rows contiguous locally.  Per Chebyshev step the ghost rows of the vector block are refreshed
by one ``Alltoallv`` (``MPI.Alltoallv`` of float32/float64 views), then the fused numba kernel of
:class:`.operator.TBOperator` runs on the own rows.

Exactness
---------
Every own row is accumulated in the same order as in one process, and the per-256-row partial dot
products are gathered (``allgather``) and summed in the global block order, so the moments equal
the single-process numba moments bit for bit (tested with 2 ranks), for any number of ranks.

Random vectors are drawn with the same per-vector generators in streaming chunks (PCG64 doubles:
chunked draws equal one draw), each rank keeping its own rows only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .hamiltonian import assemble_rows
from .operator import ROW_BLOCK, real_kernel, sq_norm_partials, vdot_partials
from .slater_koster import spin_orbit_matrix

DRAW_CHUNK = 1 << 20
RELABEL_CHUNK = 1 << 20        # CSR entries relabelled per slab


def split_rows(n_rows: int, size: int) -> np.ndarray:
    """Row boundaries (size + 1,) at multiples of ROW_BLOCK, balanced by row count."""
    nblk = (n_rows + ROW_BLOCK - 1) // ROW_BLOCK
    b = np.round(np.linspace(0, nblk, size + 1)).astype(np.int64) * ROW_BLOCK
    b[-1] = n_rows
    return np.minimum(b, n_rows)


class DistributedOperator:
    """This rank's part of ``H`` (spin 2, spin–orbit) acting on local vector blocks.

    Local blocks have shape ``(n_local, 2, m)`` with ``n_local = n_low + n_own + n_high`` (see the
    module doc); only the own rows are meaningful after a product, the ghosts are refreshed at the
    start of each :meth:`step`.

    Parameters
    ----------
    comm: an ``mpi4py.MPI.Comm``.
    structure, params, strain, spin_orbit, sp3_shift_eV, dtype: as
        :func:`..hamiltonian.build_hamiltonian`.
    complex_dtype: complex64 or complex128 vectors.
    domain: a :class:`.domain.DomainStructure` (this rank's share of the structure; ``structure`` is then
        ignored), or None: ``structure`` is the whole prepared structure.
    """

    backend = "numba_mpi"
    n_spin = 2
    is_torch = False

    def __init__(self, comm, structure, params, strain=True, spin_orbit=True, sp3_shift_eV=10.0,
                 dtype=np.float32, complex_dtype=np.complex64, domain=None):
        from mpi4py import MPI

        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.cdtype = np.dtype(complex_dtype)
        rdtype = np.float32 if self.cdtype == np.complex64 else np.float64
        self._mpi_real = MPI.FLOAT if rdtype == np.float32 else MPI.DOUBLE
        t0 = time.perf_counter()
        if domain is not None:
            H, so, gcols = self._domain_rows(domain, params, strain, spin_orbit, sp3_shift_eV, dtype, rdtype)
        else:
            H, so = self._whole_rows(structure, params, strain, spin_orbit, sp3_shift_eV, dtype, rdtype)
            gcols = None
        r0, r1 = self.r0, self.r1
        # global columns -> [ghosts below | own | ghosts above], in slabs of entries: no nnz-sized int64
        # temporaries (they were 5-6x the matrix slice at the peak)
        nnz = len(H.indices)

        def cols_of(ind, s):
            c = ind[s:s + RELABEL_CHUNK].astype(np.int64)
            return gcols(c) if gcols is not None else c

        lo, hi = [], []
        for s in range(0, nnz, RELABEL_CHUNK):
            c = cols_of(H.indices, s)
            lo.append(np.unique(c[c < r0]))
            hi.append(np.unique(c[c >= r1]))
        lo = np.unique(np.concatenate(lo)) if lo else np.zeros(0, np.int64)
        hi = np.unique(np.concatenate(hi)) if hi else np.zeros(0, np.int64)
        self.n_low, self.n_own, self.n_high = len(lo), r1 - r0, len(hi)
        self.row0 = self.n_low
        itype = np.int32 if self.n_local < 2**31 - 1 else np.int64
        # in place where the dtype allows: each slab is read before it is overwritten
        self.indices = H.indices if H.indices.dtype == itype else np.empty(nnz, itype)
        for s in range(0, nnz, RELABEL_CHUNK):
            self.indices[s:s + RELABEL_CHUNK] = self._to_local(cols_of(H.indices, s), lo, hi)
        self.indptr = H.indptr.astype(np.int64)
        self.data = H.data
        del H
        # spin–orbit per own row (base row in local numbering)
        M = spin_orbit_matrix().astype(self.cdtype)
        self._Mr, self._Mi = np.ascontiguousarray(M.real), np.ascontiguousarray(M.imag)
        lam, comp, base_global, is_p = so
        self._so_lam = np.where(is_p, lam, 0.0).astype(rdtype)
        self._so_comp = np.where(is_p, comp, 0).astype(np.int64)
        self._so_base = np.where(is_p, self._to_local(base_global, lo, hi), 0).astype(np.int64)
        # halo plan: ask the owners for our ghosts
        ghosts = np.concatenate([lo, hi])
        owner = np.searchsorted(self.bounds, ghosts, side="right") - 1
        order = np.argsort(owner, kind="stable")
        self._recv_slots = np.concatenate([np.arange(self.n_low),
                                           self.n_low + self.n_own + np.arange(self.n_high)])[order]
        want = ghosts[order]
        self._recv_counts = np.bincount(owner, minlength=self.size).astype(np.int64)
        send_counts = np.empty(self.size, np.int64)
        comm.Alltoall(self._recv_counts, send_counts)
        sendreq = np.empty(int(send_counts.sum()), np.int64)
        comm.Alltoallv([want, (self._recv_counts, _displs(self._recv_counts)), MPI.INT64_T],
                       [sendreq, (send_counts, _displs(send_counts)), MPI.INT64_T])
        self._send_rows = (self.n_low + sendreq - r0).astype(np.int64)   # own rows to send
        self._send_counts = send_counts
        self.setup_s = time.perf_counter() - t0
        self.comm_s = 0.0
        self.step_s = 0.0

    def _whole_rows(self, st, params, strain, spin_orbit, sp3_shift_eV, dtype, rdtype):
        """Own rows (global columns) and spin–orbit terms from the whole prepared structure."""
        norb = np.asarray(params.n_orb, np.int64)[st.species]
        site_start = np.zeros(st.n_sites + 1, np.int64)
        np.cumsum(norb, out=site_start[1:])
        self.site_start = site_start
        self.n_rows = int(site_start[-1])                     # global spatial orbitals
        self.bounds = split_rows(self.n_rows, self.size)
        r0, r1 = int(self.bounds[self.rank]), int(self.bounds[self.rank + 1])
        self.r0, self.r1 = r0, r1
        # sites overlapping [r0, r1): build their rows, keep [r0, r1)
        s0 = int(np.searchsorted(site_start, r0, side="right") - 1) if r1 > r0 else 0
        s1 = int(np.searchsorted(site_start, r1, side="left")) if r1 > r0 else 0
        H, _ = assemble_rows(st, params, site_start, s0, s1, strain, sp3_shift_eV, dtype)
        H = _row_slice(H, r0 - int(site_start[s0]), r1 - r0)
        lam_site = params.lambda_so[st.species[:st.n_host]] if spin_orbit else np.zeros(st.n_host)
        rows = np.arange(r0, r1)
        site = np.searchsorted(site_start, rows, side="right") - 1
        comp = rows - site_start[np.minimum(site, st.n_sites - 1)] - 1
        is_p = (site < st.n_host) & (comp >= 0) & (comp < 3)
        lam = lam_site[np.minimum(site, max(st.n_host - 1, 0))] if st.n_host else np.zeros(len(rows))
        base_global = site_start[np.minimum(site, st.n_sites - 1)] + 1
        return H, (lam, comp, base_global, is_p)

    def _domain_rows(self, dom, params, strain, spin_orbit, sp3_shift_eV, dtype, rdtype):
        """Own rows (global columns) and spin–orbit terms from this rank's :class:`.domain.DomainStructure`
        (Si/Ge sites only, 10 orbitals each: site ``g`` owns global rows ``10 g … 10 g + 9``)."""
        from .domain import ORB

        st = dom.structure
        self.site_start = None                               # not held: no rank knows every site
        self.n_rows = ORB * dom.n_host_total
        self.bounds = np.asarray(dom.row_bounds)
        r0, r1 = int(self.bounds[self.rank]), int(self.bounds[self.rank + 1])
        self.r0, self.r1 = r0, r1
        loc_start = ORB * np.arange(st.n_sites + 1, dtype=np.int64)
        H, _ = assemble_rows(st, params, loc_start, dom.own0, dom.own1, strain, sp3_shift_eV, dtype)
        H = _row_slice(H, r0 - ORB * dom.s0, r1 - r0)
        gs = dom.global_site

        def gcols(c):                                       # local columns -> global (order kept)
            return ORB * gs[c // ORB] + c % ORB
        rows = np.arange(r0, r1)
        g = rows // ORB
        comp = rows % ORB - 1
        is_p = (comp >= 0) & (comp < 3)
        sp = st.species[np.clip(dom.own0 + g - dom.s0, 0, max(st.n_sites - 1, 0))] if st.n_sites else \
            np.zeros(len(rows), np.int64)
        lam = params.lambda_so[sp] if spin_orbit else np.zeros(len(rows))
        return H, (lam, comp, ORB * g + 1, is_p), gcols

    def _to_local(self, g, lo, hi):
        """Local row numbers of global rows ``g`` (own or ghost)."""
        g = np.asarray(g, np.int64)
        return np.where(g < self.r0, np.searchsorted(lo, g),
                        np.where(g >= self.r1, self.n_low + self.n_own + np.searchsorted(hi, g),
                                 self.n_low + g - self.r0))

    @property
    def n_local(self) -> int:
        return self.n_low + self.n_own + self.n_high

    def memory_bytes(self) -> int:
        """Bytes of this rank's matrix slice."""
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    # ----------------------------------------------------------------- vectors
    def local_phase_block(self, row_sets: Sequence[np.ndarray], rngs: Sequence[np.random.Generator]):
        """This rank's rows of :func:`..kpm.random_phase_block` (same phases, streamed draws).  A row set may
        be a :class:`.domain.DomainRows` (this rank's rows of the set and how many lie below them)."""
        from .domain import DomainRows

        X = np.zeros((self.n_local, 2, len(row_sets)), self.cdtype)
        for t, (rows, g) in enumerate(zip(row_sets, rngs)):
            if isinstance(rows, DomainRows):            # only this rank's rows known: skip the draws below
                _skip_doubles(g, 2 * rows.n_before)
                ph = np.exp(2j * np.pi * g.random((len(rows.own), 2)))
                X[self.row0 + rows.own - self.r0, :, t] = ph
                continue
            rows = np.asarray(rows)
            for s in range(0, len(rows), DRAW_CHUNK):
                r = rows[s:s + DRAW_CHUNK]
                ph = np.exp(2j * np.pi * g.random((len(r), 2)))
                keep = (r >= self.r0) & (r < self.r1)
                X[self.row0 + r[keep] - self.r0, :, t] = ph[keep]
        return X

    def local_random_vector(self, rng: np.random.Generator):
        """This rank's rows of ``exp(2πi rng.random((n_rows, 2, 1)))`` (Lanczos start)."""
        X = np.zeros((self.n_local, 2, 1), self.cdtype)
        for s in range(0, self.n_rows, DRAW_CHUNK):
            e = min(self.n_rows, s + DRAW_CHUNK)
            ph = np.exp(2j * np.pi * rng.random((e - s, 2, 1)))
            a, b = max(s, self.r0), min(e, self.r1)
            if b > a:
                X[self.row0 + a - self.r0:self.row0 + b - self.r0] = ph[a - s:b - s]
        return X

    def to_backend(self, X):
        return np.ascontiguousarray(X, self.cdtype)

    def to_numpy(self, X):
        return X

    # ----------------------------------------------------------------- products
    def _exchange(self, X):
        t0 = time.perf_counter()
        n, ns, m = X.shape
        w = ns * m * 2                                  # reals per row
        Xr = X.reshape(n, ns * m).view(X.real.dtype)    # (n, 2·ns·m) reals
        send = np.ascontiguousarray(Xr[self._send_rows])
        recv = np.empty((int(self._recv_counts.sum()), w), Xr.dtype)
        sc, rc = self._send_counts * w, self._recv_counts * w
        self.comm.Alltoallv([send, (sc, _displs(sc)), self._mpi_real],
                            [recv, (rc, _displs(rc)), self._mpi_real])
        Xr[self._recv_slots] = recv
        self.comm_s += time.perf_counter() - t0

    def _gather_sum(self, partial):
        parts = self.comm.allgather(partial)
        return np.concatenate(parts, axis=0).sum(axis=0)

    def sq_norms(self, X) -> np.ndarray:
        n, ns, m = X.shape
        own = X[self.row0:self.row0 + self.n_own].reshape(self.n_own, ns * m)
        return self._gather_sum(sq_norm_partials(own, ROW_BLOCK, m))

    def matmat(self, X):
        Y, _ = self.step(X, None, 1.0, 0.0, mode=0)
        return Y

    def step(self, X, Xprev, scale: float, shift: float, mode: int):
        """As :meth:`.TBOperator.step`, on local blocks; the dots are global."""
        self._exchange(X)
        t0 = time.perf_counter()
        n, ns, m = X.shape
        Y = np.zeros_like(X)
        nblk = (self.n_own + ROW_BLOCK - 1) // ROW_BLOCK
        partial = np.zeros((nblk, m, 2))
        rd = self._so_lam.dtype.type
        Xp = X if Xprev is None else Xprev
        rv = X.real.dtype
        real_kernel(2 * ns * m)(self.indptr, self.indices, self.data, X.reshape(n, ns * m).view(rv),
                                Xp.reshape(n, ns * m).view(rv), Y.reshape(n, ns * m).view(rv), rd(scale),
                                rd(shift), int(mode), self._so_lam, self._so_base, self._so_comp, self._Mr,
                                self._Mi, partial, ROW_BLOCK, m, self.row0)
        self.step_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        d = self._gather_sum(partial)
        self.comm_s += time.perf_counter() - t0
        return Y, d

    def vdot(self, x, y) -> complex:
        """Global ``<x|y>`` over own rows (for Lanczos): per-256-row partials gathered and summed in the
        global order, so it equals :meth:`.TBOperator.vdot` of one process bit for bit."""
        s = self.row0
        _, ns, m = x.shape
        loc = vdot_partials(x[s:s + self.n_own].reshape(-1), y[s:s + self.n_own].reshape(-1), ROW_BLOCK * ns * m)
        return complex(np.concatenate(self.comm.allgather(loc)).sum())


def _row_slice(H, off: int, n: int):
    """Rows ``off … off + n − 1`` of CSR ``H`` as (indptr from 0, indices, data) views — no copy (scipy's
    row slicing copies the slice: one more matrix at the build's peak)."""
    from types import SimpleNamespace

    a, b = int(H.indptr[off]), int(H.indptr[off + n])
    return SimpleNamespace(indptr=H.indptr[off:off + n + 1] - a, indices=H.indices[a:b], data=H.data[a:b])


def _skip_doubles(g: np.random.Generator, n: int) -> None:
    """Advance ``g`` past ``n`` ``random()`` doubles (one 64-bit output each for PCG64)."""
    if isinstance(g.bit_generator, np.random.PCG64):
        g.bit_generator.advance(int(n))
        return
    for s in range(0, int(n), DRAW_CHUNK):
        g.random(min(DRAW_CHUNK, int(n) - s))


def _displs(counts: np.ndarray) -> np.ndarray:
    d = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=d[1:])
    return d



def launcher(n_ranks: int, kind: str = "auto") -> list[str]:
    """Command prefix starting ``n_ranks`` MPI processes: ``srun`` inside a SLURM allocation
    (``kind`` auto with ``SLURM_JOB_ID`` set, or ``srun``), else Open MPI's ``mpirun``."""
    import os
    import shutil

    if kind == "auto":
        kind = "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "mpirun"
    if kind == "srun":
        return ["srun", "--ntasks", str(n_ranks), "--mpi=pmix"] if os.environ.get("TEMTWIN_SRUN_PMIX") \
            else ["srun", "--ntasks", str(n_ranks)]
    cmd = ["mpirun", "-n", str(n_ranks), "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def mpi_available() -> str:
    """'' when mpi4py imports and mpirun exists, else the reason (for skips and errors)."""
    import shutil

    try:
        import mpi4py  # noqa: F401
    except Exception as err:                      # pragma: no cover - depends on the machine
        return f"mpi4py not importable ({err}); pip install mpi4py (needs libopenmpi-dev)"
    if shutil.which("mpirun") is None and shutil.which("srun") is None:
        return "no mpirun/srun on PATH; apt-get install openmpi-bin"
    return ""
