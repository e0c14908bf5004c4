"""Per-domain structure preparation for the MPI ``tb_moments`` path: no rank holds the whole model.

Each MPI rank reads from ``model.h5`` only the atoms of its domain plus a halo (HDF5 slab reads of the
``positions`` dataset in chunks; an atom enters the halo when it lies within ``halo_A`` of a domain
atom), finds their bonds, prunes, reconstructs dangling bonds and computes the on-site environment sums
of its own sites — the same arithmetic, in the same order, as :func:`.structure.prepare_structure` on
the whole model, so the distributed Hamiltonian rows are bit-identical to the one-process ones.

Which quantities need which shell
---------------------------------
* Bonds of an own atom ``i`` (mutual nearest neighbours within the cut-off ``d_c``): ``i``'s neighbours
  and *their* neighbours, i.e. every atom within ``2 d_c`` of ``i``.  Hence ``halo_A ≥ 2 d_c``
  (``halo_A = 3 d_nn`` from a first estimate, checked against the final cut-off ``d_c = 1.2 d_nn``).
* Pruning (atoms with fewer than ``min_coordination`` bonds are removed, repeatedly) is a cascade of
  unbounded reach: it is *not* done on the halo.  It runs distributed: every sweep, each rank drops
  its under-coordinated atoms and receives the keep flags of its halo neighbours from their owners
  (the same synchronous sweeps as the one-process loop, so the same fixed point).
* Dangling-bond directions and the 38 environment sums of a site use only that site's own bonds;
  the hoppings use the bond vector and the two species.  No quantity needs the environment of a
  neighbour: the second shell is needed only for the mutuality of the bonds (above).
* The default cut-off is ``1.2 ×`` the median nearest-neighbour distance of a fixed subsample of the
  whole model (:func:`..neighbors.neighbor_table`); each rank measures the subsample atoms of its
  domain and the median of the gathered distances is the one-process value.

Two passes
----------
Pass 1 splits the input atoms into equal contiguous index ranges, prunes and numbers the kept atoms
(exclusive scan of the kept counts: a site's global number is its rank among kept atoms in input
order, as in one process).  The orbital rows are then split at multiples of 256 rows
(:func:`.distributed.split_rows`); pass 2 re-reads, for each rank, the atoms of the sites overlapping
its rows plus their halo, asks the pass-1 owners for the global number (or removal) of every atom read,
and prepares the local structure: own sites, then nothing but their bonded neighbours, numbered in
global order (so the CSR column order is the one-process order).

Scope: open boundaries (``pbc`` all False), passivation ``sp3_shift`` or ``none``, the as-built model.
Otherwise (:class:`DomainFallback`) the caller prepares the whole structure on every rank, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..neighbors import _SUBSAMPLE, bond_list
from .parameters import TBParameters
from .structure import TBStructure, bond_environment

READ_CHUNK = 1 << 20           # atoms per HDF5 slab read
ORB = 10                       # spatial orbitals of a Si/Ge site (sp3d5s*)


class DomainFallback(Exception):
    """The per-domain preparation does not apply (the reason is the message); prepare the whole model."""


@dataclass
class DomainStructure:
    """This rank's share of the prepared structure.

    Attributes
    ----------
    structure: local :class:`.structure.TBStructure`: local sites = own sites (``own0 ≤ k < own1``) and
        their bonded neighbours, in global order; bonds and environment sums valid for own sites only.
    global_site: (n_local,) global site number of each local site (a host site owns rows ``10 g … 10 g + 9``).
    s0, s1: global sites overlapping this rank's rows ``[r0, r1)``; own0, own1 their local numbers.
    n_host_total, n_removed_total, n_dangling_total: over the whole model.
    n_input: atoms in the model; n_read: atoms this rank read in pass 2 (domain + halo);
    n_read_pass1: atoms read in pass 1; halo_A, max_bond_A: Å.
    region: (n_own,) region label of each own site (model ``/region``).
    pass1_range: (a0, a1) input atoms of pass 1; pass1_keep: (a1 − a0,) bool, kept.
    """

    structure: TBStructure
    global_site: np.ndarray
    s0: int
    s1: int
    own0: int
    own1: int
    r0: int
    r1: int
    row_bounds: np.ndarray
    n_host_total: int
    n_removed_total: int
    n_dangling_total: int
    n_input: int
    n_read: int
    n_read_pass1: int
    halo_A: float
    max_bond_A: float
    region: np.ndarray
    pass1_range: tuple[int, int]
    pass1_keep: np.ndarray


def _split(n: int, size: int) -> np.ndarray:
    return np.round(np.linspace(0, n, size + 1)).astype(np.int64)


class _Plan:
    """Ask the owners (contiguous input ranges ``bounds``) for values at sorted global indices ``want``."""

    def __init__(self, comm, bounds: np.ndarray, want: np.ndarray):
        from mpi4py import MPI

        self.comm, self.MPI = comm, MPI
        size, rank = comm.Get_size(), comm.Get_rank()
        want = np.asarray(want, np.int64)
        owner = np.searchsorted(bounds, want, side="right") - 1
        self.order = np.argsort(owner, kind="stable")
        self.recv_counts = np.bincount(owner, minlength=size).astype(np.int64)
        self.send_counts = np.empty(size, np.int64)
        comm.Alltoall(self.recv_counts, self.send_counts)
        req = np.empty(int(self.send_counts.sum()), np.int64)
        comm.Alltoallv([want[self.order], (self.recv_counts, _displs(self.recv_counts)), MPI.INT64_T],
                       [req, (self.send_counts, _displs(self.send_counts)), MPI.INT64_T])
        self.send_local = req - int(bounds[rank])
        self.n = len(want)

    def exchange(self, own_values: np.ndarray) -> np.ndarray:
        """Values (int64) at ``want`` from the owners' ``own_values`` (indexed from their range start)."""
        MPI = self.MPI
        send = np.ascontiguousarray(np.asarray(own_values, np.int64)[self.send_local])
        recv = np.empty(self.n, np.int64)
        self.comm.Alltoallv([send, (self.send_counts, _displs(self.send_counts)), MPI.INT64_T],
                            [recv, (self.recv_counts, _displs(self.recv_counts)), MPI.INT64_T])
        out = np.empty(self.n, np.int64)
        out[self.order] = recv
        return out


def _displs(counts: np.ndarray) -> np.ndarray:
    d = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=d[1:])
    return d


def _region(dpos, dnum, n: int, a0: int, a1: int, own_pos: np.ndarray, halo_A: float, progress=None):
    """(indices, positions Å, atomic numbers) of atoms ``a0 ≤ k < a1`` and of every atom within ``halo_A``
    of one of them, sorted by index; the model's datasets are streamed in slabs of :data:`READ_CHUNK`."""
    if len(own_pos) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0, np.int64)
    tree = cKDTree(own_pos)
    lo, hi = own_pos.min(axis=0) - halo_A, own_pos.max(axis=0) + halo_A
    idx, pos, num = [], [], []
    for c0 in range(0, n, READ_CHUNK):
        c1 = min(n, c0 + READ_CHUNK)
        p = np.asarray(dpos[c0:c1], float) * 10.0              # nm -> Å as Model.to_atoms
        g = np.arange(c0, c1)
        inside = (g >= a0) & (g < a1)
        cand = np.nonzero(~inside & np.all((p >= lo) & (p <= hi), axis=1))[0]
        if len(cand):
            d, _ = tree.query(p[cand], k=1, distance_upper_bound=halo_A)
            cand = cand[np.isfinite(d)]
        sel = np.union1d(np.nonzero(inside)[0], cand)
        idx.append(g[sel])
        pos.append(p[sel])
        num.append(np.asarray(dnum[c0:c1], np.int64)[sel] if len(sel) else np.zeros(0, np.int64))
        if progress is not None:
            progress(c1, n)
    return np.concatenate(idx), np.concatenate(pos), np.concatenate(num)


def _bonds(pos: np.ndarray, cell, pbc, cut: float):
    """:func:`..neighbors.bond_list` (mutual 4 nearest within ``cut``), also for an empty region."""
    if len(pos) == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros((0, 3)), np.zeros(0)
    b = bond_list(pos, cell, tuple(bool(x) for x in pbc), n_neighbors=4, max_bond_A=cut)
    return b.i, b.j, b.vec_A, b.dist_A


def _nn_estimate(pos: np.ndarray) -> float:
    """Median nearest-neighbour distance (Å) of up to 2000 atoms of ``pos`` among ``pos``."""
    if len(pos) < 2:
        return 0.0
    q = pos[np.linspace(0, len(pos) - 1, min(len(pos), 2000)).astype(np.int64)]
    d = cKDTree(pos).query(q, k=2)[0][:, 1]
    d = d[np.isfinite(d) & (d > 1e-8)]
    return float(np.median(d)) if len(d) else 0.0


def prepare_domain(comm, model_path, params: TBParameters, passivation: str = "sp3_shift",
                   min_coordination: int = 2, log=None, progress=None) -> DomainStructure:
    """This rank's :class:`DomainStructure` (collective over ``comm``; see the module doc).

    ``progress(i, n, what)`` is called while the model is streamed (atoms scanned of ``n``).

    Raises :class:`DomainFallback` (on every rank alike) where the per-domain path does not apply, and
    :class:`temtwin.errors.NotApplicable` (every rank) when the model holds atoms other than Si and Ge.
    """
    from mpi4py import MPI

    from ...results.model import Model
    from .distributed import split_rows

    rank, size = comm.Get_rank(), comm.Get_size()
    if passivation not in ("sp3_shift", "none"):
        raise DomainFallback(f"passivation {passivation!r} numbers H sites after all hosts")
    if any(int(params.n_orb[k]) != ORB for k in (0, 1)):
        raise DomainFallback("Si/Ge sites without 10 orbitals")
    with Model.slabs(model_path) as f:
        pbc = np.asarray(f["pbc"][()], bool)
        cell = np.asarray(f["cell"][()], float) * 10.0
        if pbc.any():
            raise DomainFallback("periodic model (the halo search is for open boundaries)")
        # ``_model_setup`` passes the cell when it is full rank or periodic (it only adds 0·cell here)
        cell_arg = cell if np.linalg.matrix_rank(cell) == 3 else None
        dpos, dnum = f["positions"], f["numbers"]
        n = int(dpos.shape[0])
        if n < 2 * size:
            raise DomainFallback(f"{n} atoms for {size} ranks")

        # ---------------------------------------------------------------- pass 1: prune and number
        A = _split(n, size)
        a0, a1 = int(A[rank]), int(A[rank + 1])
        own_pos = np.asarray(dpos[a0:a1], float) * 10.0
        spec = params.species_index(np.asarray(dnum[a0:a1]))
        bad = sorted(set(np.asarray(dnum[a0:a1])[(spec < 0) | (spec > 1)].tolist()))
        bad = sorted(set().union(*comm.allgather(set(bad))))
        if bad:
            from ase.data import chemical_symbols

            from ...errors import NotApplicable

            raise NotApplicable("sp3d5s* parameters exist for Si and Ge only; model contains "
                                + ", ".join(chemical_symbols[k] for k in bad))
        d_est = comm.allreduce(_nn_estimate(own_pos), op=MPI.MAX)
        halo = 3.0 * d_est
        for _attempt in range(2):
            idx1, pos1, _ = _region(dpos, dnum, n, a0, a1, own_pos, halo, progress and (
                lambda i, m: progress(i, m, "tb domain: atoms scanned for the halo (pass 1)")))
            o0 = int(np.searchsorted(idx1, a0))
            sub = np.linspace(0, n - 1, min(n, _SUBSAMPLE)).astype(np.int64)
            mine = sub[(sub >= a0) & (sub < a1)]
            dd = np.zeros(0)
            if len(mine) and len(pos1) >= 2:
                dd = cKDTree(pos1, balanced_tree=False, compact_nodes=False).query(
                    pos1[o0 + mine - a0], k=2)[0][:, 1]
            if comm.allreduce(bool(np.any(~np.isfinite(dd) | (dd > halo))), op=MPI.LOR):
                raise DomainFallback("an atom's nearest neighbour lies beyond the halo")
            dd = np.concatenate(comm.allgather(dd))
            dd = dd[np.isfinite(dd) & (dd > 1e-8)]
            if not len(dd):
                raise DomainFallback("no nearest-neighbour distance")
            cut = 1.2 * float(np.median(dd))
            if 2.0 * cut <= halo:
                break
            halo = 2.05 * cut
        else:
            raise DomainFallback("halo narrower than two bond cut-offs")
        bi, bj, _, _ = _bonds(pos1, cell_arg, pbc, cut)
        mine_b = (bi >= o0) & (bi < o0 + (a1 - a0))
        bi, bj = bi[mine_b], bj[mine_b]
        halo_nb = np.unique(bj[(bj < o0) | (bj >= o0 + (a1 - a0))])
        plan = _Plan(comm, A, idx1[halo_nb])
        keep_reg = np.ones(len(idx1), bool)
        n_own1 = a1 - a0
        while True:
            ok = keep_reg[bj]
            coord = np.bincount(bi[ok] - o0, minlength=n_own1)
            drop = keep_reg[o0:o0 + n_own1] & (coord < max(1, int(min_coordination)))
            if not comm.allreduce(bool(drop.any()), op=MPI.LOR):
                break
            keep_reg[o0:o0 + n_own1] &= ~drop
            keep_reg[halo_nb] = plan.exchange(keep_reg[o0:o0 + n_own1].astype(np.int64)) > 0
        keep1 = keep_reg[o0:o0 + n_own1].copy()
        n_read1 = len(idx1)
        del idx1, pos1, bi, bj, keep_reg, plan
        k_own = int(keep1.sum())
        first = comm.exscan(k_own)                        # collective; None on rank 0
        first = int(first or 0) if rank else 0
        n_host = int(comm.allreduce(k_own))
        if n_host == 0:
            from ...errors import NotApplicable

            raise NotApplicable("no Si/Ge atom left after removing under-coordinated atoms")
        gsite1 = np.full(n_own1, -1, np.int64)
        gsite1[keep1] = first + np.arange(k_own)
        kept_idx1 = a0 + np.nonzero(keep1)[0]

        # ---------------------------------------------------------------- rows -> sites -> atoms
        rb = split_rows(ORB * n_host, size)
        S0 = rb[:-1] // ORB
        S1 = -(-rb[1:] // ORB)
        want_first = np.full(size, -1, np.int64)
        want_last = np.full(size, -1, np.int64)
        for q in range(size):
            if S1[q] > S0[q]:
                if first <= S0[q] < first + k_own:
                    want_first[q] = kept_idx1[S0[q] - first]
                if first <= S1[q] - 1 < first + k_own:
                    want_last[q] = kept_idx1[S1[q] - 1 - first]
        comm.Allreduce(MPI.IN_PLACE, want_first, op=MPI.MAX)
        comm.Allreduce(MPI.IN_PLACE, want_last, op=MPI.MAX)
        s0, s1 = int(S0[rank]), int(S1[rank])
        if s1 > s0:
            c0, c1 = int(want_first[rank]), int(want_last[rank]) + 1
        else:
            c0 = c1 = 0

        # ---------------------------------------------------------------- pass 2: own sites + halo
        own2 = np.asarray(dpos[c0:c1], float) * 10.0
        idx2, pos2, num2 = _region(dpos, dnum, n, c0, c1, own2, halo, progress and (
            lambda i, m: progress(i, m, "tb domain: atoms scanned for the halo (pass 2)")))
        del own2
        gs2 = _Plan(comm, A, idx2).exchange(gsite1)          # global site, −1 = removed
        p0 = int(np.searchsorted(idx2, c0))
        p1 = p0 + (c1 - c0)
        reg_own = np.asarray(f["region"][c0:c1], np.int64) if c1 > c0 else np.zeros(0, np.int64)
    bi, bj, vec, dist = _bonds(pos2, cell_arg, pbc, cut)
    sel = (bi >= p0) & (bi < p1) & (gs2[bi] >= 0) & (gs2[bj] >= 0)
    bi, bj, vec, dist = bi[sel], bj[sel], vec[sel], dist[sel]
    own_kept = p0 + np.nonzero(gs2[p0:p1] >= 0)[0]
    sites = np.union1d(own_kept, bj)                       # region indices, = global order
    loc = -np.ones(len(idx2), np.int64)
    loc[sites] = np.arange(len(sites))
    n_loc = len(sites)
    hs = params.species_index(num2[sites]).astype(np.int64)
    bi, bj, vec, env, datom, ddir = bond_environment(n_loc, loc[bi], loc[bj], vec, dist, hs, params)
    gsite = gs2[sites]
    own0 = int(np.searchsorted(gsite, s0))
    own1 = int(np.searchsorted(gsite, s1))
    r0, r1 = int(rb[rank]), int(rb[rank + 1])
    first_row_mine = (ORB * gsite[datom] >= r0) & (ORB * gsite[datom] < r1)
    n_dangling = int(comm.allreduce(int(first_row_mine.sum())))
    st = TBStructure(positions_A=pos2[sites], species=hs, parent=np.arange(n_loc), atom_index=idx2[sites],
                     bond_i=bi, bond_j=bj, bond_vec=vec, env=env, n_host=n_loc, n_removed=n - n_host,
                     n_dangling=n_dangling, passivation=passivation)
    own_input = idx2[sites[own0:own1]]
    region = reg_own[own_input - c0] if len(own_input) else np.zeros(0, np.int64)
    if log is not None:
        log.info("tb domain (rank %d of %d): pass 1 read %d atoms for %d, pass 2 read %d atoms (domain + "
                 "%.1f Å halo) for %d own sites; cut-off %.3f Å", rank, size, n_read1, n_own1, len(idx2),
                 halo, own1 - own0, cut)
    return DomainStructure(structure=st, global_site=gsite, s0=s0, s1=s1, own0=own0, own1=own1, r0=r0, r1=r1,
                           row_bounds=rb, n_host_total=n_host, n_removed_total=n - n_host,
                           n_dangling_total=n_dangling, n_input=n, n_read=len(idx2), n_read_pass1=n_read1,
                           halo_A=float(halo), max_bond_A=float(cut), region=region,
                           pass1_range=(a0, a1), pass1_keep=keep1)


class DomainRows:
    """One random vector's support as this rank sees it: ``n_total`` rows in all, ``n_before`` of them
    below this rank's rows, ``own`` (sorted global rows) in this rank's range.  ``len()`` = ``n_total``."""

    def __init__(self, n_total: int, n_before: int, own: np.ndarray):
        self.n_total, self.n_before, self.own = int(n_total), int(n_before), np.asarray(own, np.int64)

    def __len__(self) -> int:
        return self.n_total
