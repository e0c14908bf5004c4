"""MPI launch of ``tb_moments``: ``python -m temtwin.physics.tb_mpi <spec.json>`` on every rank.

:func:`launch` (called by :func:`temtwin.stages.tb_moments.run` when ``tb_moments.mpi_ranks`` > 1)
writes the job's inputs, outputs, configuration and wildcards to a JSON file beside the output,
starts ``mpi_ranks`` processes with ``srun`` (inside a SLURM allocation: the rule requests
``tasks = mpi_ranks``) or ``mpirun -n`` (locally), forwards rank 0's log lines into the job's log,
and turns a failure into one error line.  Each rank rebuilds the stage context and runs
:func:`temtwin.stages.tb_moments.run` with ``MPI.COMM_WORLD``; rank 0 writes the output atomically.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from ..errors import UserError


def launch(ctx, n_ranks: int, kind: str = "auto") -> None:
    """Run this ``tb_moments`` job on ``n_ranks`` MPI processes (see module doc)."""
    from .tightbinding.distributed import launcher, mpi_available

    reason = mpi_available()
    if reason:
        raise UserError(f"tb_moments.mpi_ranks = {n_ranks} needs MPI: {reason} "
                        "(or set tb_moments.mpi_ranks: 1)", "config")
    out = Path(ctx.output["h5"])
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_path = out.with_name(f".{out.name}.mpi.json")
    spec = {"rule": ctx.rule, "input": _plain(ctx.input), "output": _plain(ctx.output),
            "config": ctx.config, "wildcards": dict(ctx.wildcards), "threads": ctx.threads}
    spec_path.write_text(json.dumps(spec, default=str))
    cmd = launcher(n_ranks, kind) + [sys.executable, "-m", "temtwin.physics.tb_mpi", str(spec_path)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if cmd[0] == "mpirun" and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    ctx.log.info("starting %d MPI ranks: %s", n_ranks, " ".join(cmd))
    tail: list[str] = []
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) as proc:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    ctx.log.info("[mpi] %s", line)
                    tail = (tail + [line])[-20:]
            rc = proc.wait()
    finally:
        spec_path.unlink(missing_ok=True)
    if rc != 0:
        raise RuntimeError(f"MPI tb_moments failed (exit {rc}): " + " | ".join(tail[-5:]))
    if not out.exists():
        raise RuntimeError(f"MPI tb_moments finished without writing {out}")


def _plain(d) -> dict:
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, (list, tuple))
                else v) for k, v in dict(d).items()}


def main(argv=None) -> int:
    from mpi4py import MPI

    from ..workflow.context import StageContext
    from ..stages.tb_moments import run as run_moments

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    comm = MPI.COMM_WORLD
    log = logging.getLogger(f"temtwin.tb_mpi.{comm.Get_rank()}")
    if comm.Get_rank() == 0:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)
    ctx = StageContext(rule=spec["rule"], input=spec["input"], output=spec["output"],
                       config=spec["config"], wildcards=spec["wildcards"], threads=int(spec["threads"]),
                       log=log)
    try:
        run_moments(ctx, comm=comm)
    except BaseException as err:                 # one rank failing must not leave the others waiting
        import traceback

        print(f"rank {comm.Get_rank()}: {err}", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        comm.Abort(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# --------------------------------------------------------------------------- per-domain job (no whole model)
def run_domain(ctx, cfg: dict, comm, sample: str, chunk: int) -> bool:
    """The MPI ``tb_moments`` job with per-domain structure preparation (:mod:`.tightbinding.domain`).

    Each rank reads its domain of ``model.h5`` plus a halo, prepares and assembles its rows; partitions
    and random vectors are known per rank (:class:`.tightbinding.domain.DomainRows`).  Rank 0 writes the
    output as :func:`temtwin.stages.tb_moments.run` does (for chunk 0 it reads the kept atoms' positions to store
    the structure).  Returns False, having read nothing large, where the per-domain path does not apply
    (relaxed structure, periodic model, explicit H, tiny model): the caller then prepares the whole
    structure on every rank.
    """
    import numpy as np

    from ..errors import NotApplicable
    from ..results.model import Model
    from ..stages import tb_moments as S
    from .tightbinding import load_parameters
    from .tightbinding.distributed import DistributedOperator
    from .tightbinding.domain import DomainFallback, prepare_domain

    rank0 = comm.Get_rank() == 0
    if os.environ.get("TEMTWIN_TB_MPI_WHOLE"):           # for comparisons (bench): the whole-structure path
        return False
    if cfg["structure"] == "relaxed" and ctx.paths("relaxed"):
        ctx.log.info("tb: the relaxed structure is read whole; every rank prepares the whole structure")
        return False
    if cfg["backend"] not in ("auto", "numba"):
        return False                                     # the whole-structure path raises the error
    path = ctx.input["model"]
    meta = Model.read(path, only=("cell", "pbc"))
    try:
        if not meta.applicable or not meta.info.get("applicable", True):
            raise NotApplicable(f"atomic model not applicable: {meta.reason or meta.info.get('reason', '')}")
        params = load_parameters(valence_band_offset=bool(cfg["valence_band_offset"]))
        ctx.log.info("tb setup: model read (per domain; peak RSS %.0f MB before reading)", _peak_mb())
        dom = prepare_domain(comm, path, params, cfg["passivation"], int(cfg["min_coordination"]), log=ctx.log,
                             progress=ctx.progress)
    except DomainFallback as err:
        ctx.log.info("tb: per-domain preparation not used (%s); every rank prepares the whole structure", err)
        return False
    except NotApplicable as err:
        if rank0:
            ctx.not_applicable(str(err), None)
        return True
    ctx.log.info("tb setup: structure prepared (rank 0: %d own sites + %d neighbours of %d sites, %d atoms "
                 "read of %d; peak RSS %.0f MB)", dom.own1 - dom.own0, dom.structure.n_sites - (dom.own1 - dom.own0),
                 dom.n_host_total, dom.n_read, dom.n_input, _peak_mb())
    mk = dict(strain=bool(cfg["strain"]), spin_orbit=bool(cfg["spin_orbit"]),
              sp3_shift_eV=float(cfg["sp3_shift_eV"]),
              dtype=np.float32 if cfg["precision"] == "single" else np.float64)
    if cfg.get("spectral_bounds_eV"):
        bounds = S._bounds(ctx, cfg, None, sample)
    else:                                                # Lanczos in double precision, as one process
        lop = DistributedOperator(comm, None, params, complex_dtype=np.complex128, domain=dom, **mk)
        bounds = S._bounds(ctx, cfg, lop, sample)
        del lop
    op = DistributedOperator(comm, None, params, domain=dom, complex_dtype=np.complex64
                             if cfg["precision"] == "single" else np.complex128, **mk)
    info = {"n_sites": dom.n_host_total, "n_host": dom.n_host_total, "n_orbitals": op.n_rows,
            "n_spin_orbitals": 2 * op.n_rows, "strain": mk["strain"], "spin_orbit": mk["spin_orbit"],
            "passivation": cfg["passivation"], "mpi_ranks": op.size, "nnz": int(comm.allreduce(len(op.data))),
            "per_domain": True}
    ctx.log.info("tight binding (MPI, %d ranks, per-domain structure): %d atoms (%d removed, %d dangling "
                 "bonds), %d spin-orbitals, nnz %d; rank 0 holds %d rows + %d ghost rows, %.2f GB matrix "
                 "(peak RSS %.0f MB)", op.size, dom.n_host_total, dom.n_removed_total, dom.n_dangling_total,
                 2 * op.n_rows, info["nnz"], op.n_own, op.n_low + op.n_high, op.memory_bytes() / 1e9, _peak_mb())
    parts, rows_of = domain_partitions(comm, dom, op, cfg, meta.info)
    n_vec = int(cfg["vectors_per_region"])
    tasks = S._tasks(parts, n_vec)
    mine = tasks[chunk::int(cfg["n_chunks"])]
    mu, row_sets, ckpt = S.chunk_moments(ctx, cfg, sample, chunk, mine, len(tasks), bounds, op, rows_of)
    S._log_mpi(ctx, op)
    peaks = comm.gather(_peak_mb(), root=0)
    reads = comm.gather(dom.n_read, root=0)
    if rank0:
        ctx.log.info("MPI per-domain: peak RSS per rank %s MB; atoms read per rank %s of %d",
                     ", ".join(f"{p:.0f}" for p in peaks), ", ".join(str(r) for r in reads), dom.n_input)
    keep = comm.gather(dom.pass1_keep, root=0) if chunk == 0 else None
    backend = op.backend
    del op, dom                                          # the chunk-0 record below is read after freeing them
    if not rank0:
        comm.Barrier()                                   # rank 0 has written the output
        if ckpt is not None:
            ckpt.clear()
        return True
    atoms, st = _kept_structure(path, meta, np.concatenate(keep)) if chunk == 0 else (None, None)
    out = S.moments_result(cfg, sample=sample, chunk=chunk, seed=ctx.seed, bounds=bounds, backend=backend,
                           source="as_built", tasks=tasks, mine=mine, row_sets=row_sets, mu=mu, parts=parts,
                           rows_of=rows_of, params=params, info=info, atoms=atoms, st=st,
                           n_saved=ckpt.n_saved if ckpt is not None else 0)
    with ctx.h5("h5") as f:
        out.write(f)
    comm.Barrier()
    if ckpt is not None:
        ckpt.clear()
    return True


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _kept_structure(path, meta, keep):
    """(atoms-like, structure-like) for the chunk-0 record of the structure (``moments_result`` reads
    ``atoms.get_positions()[st.atom_index]``, ``atoms.numbers[…]``, ``atoms.cell``, ``atoms.pbc``,
    ``atoms.info``): the kept atoms' rows are streamed from the model on rank 0, never the whole model."""
    from types import SimpleNamespace

    import numpy as np

    atom_index = np.nonzero(keep)[0]
    atoms = SimpleNamespace(get_positions=lambda: _KeptRows(path, "positions", 10.0),
                            numbers=_KeptRows(path, "numbers", None), cell=np.asarray(meta.data["cell"]) * 10.0,
                            pbc=np.asarray(meta.data["pbc"], bool), info=meta.info)
    return atoms, SimpleNamespace(atom_index=atom_index)


class _KeptRows:
    """``rows[index]`` of a per-atom model.h5 dataset (sorted ``index``), read in slabs; × ``scale`` (nm → Å)
    applied before the selection as :meth:`Model.to_atoms` does."""

    def __init__(self, path, name: str, scale):
        self.path, self.name, self.scale = path, name, scale

    def __getitem__(self, index):
        import numpy as np

        from ..results.model import Model
        from .tightbinding.domain import READ_CHUNK

        index = np.asarray(index, np.int64)
        out = []
        with Model.slabs(self.path) as f:
            d = f[self.name]
            empty = np.zeros((0,) + tuple(d.shape[1:]), d.dtype)
            for c0 in range(0, int(d.shape[0]), READ_CHUNK):
                c1 = min(int(d.shape[0]), c0 + READ_CHUNK)
                sel = index[(index >= c0) & (index < c1)] - c0
                if len(sel):
                    v = np.asarray(d[c0:c1])
                    out.append((v * self.scale if self.scale is not None else v)[sel])
        return np.concatenate(out) if out else empty


def domain_partitions(comm, dom, op, cfg: dict, model_info: dict):
    """Partitions as :func:`temtwin.stages.tb_moments._partitions` (labels, per-label atom counts in
    ``extra["n_atoms"]``) and, per (family, label), this rank's :class:`.tightbinding.domain.DomainRows`."""
    from types import SimpleNamespace

    import numpy as np
    from mpi4py import MPI

    from .growth import growth_direction
    from .tightbinding.domain import ORB, DomainRows

    st = dom.structure
    own = slice(dom.own0, dom.own1)
    gsite = dom.global_site[own]
    counted = (ORB * gsite >= op.r0) & (ORB * gsite < op.r1)       # each site counted by one rank
    rows = np.arange(op.r0, op.r1)
    site_of_row = rows // ORB - dom.s0                              # index into the own sites
    fams = {}
    want = cfg["partitions"]
    if want in ("both", "regions"):
        vals = sorted(set().union(*comm.allgather(set(np.unique(dom.region).tolist()))))
        lab = np.array([str(v) for v in dom.region], dtype=object)
        fams["region"] = ([str(v) for v in vals], lab, {})
    if want in ("both", "slabs"):
        g = growth_direction(SimpleNamespace(info=model_info))
        t = float(cfg["slab_thickness_nm"])
        s = st.positions_A[own] @ g / 10.0
        smin = comm.allreduce(float(s.min()) if len(s) else np.inf, op=MPI.MIN)
        coord = s - smin
        span = comm.allreduce(float(coord.max()) if len(coord) else -np.inf, op=MPI.MAX)
        k = np.minimum(np.floor(coord / t).astype(np.int64), max(int(np.floor(span / t)), 0))
        vals = sorted(set().union(*comm.allgather(set(np.unique(k).tolist()))))
        fams["slab"] = ([str(v) for v in vals], np.array([str(v) for v in k], dtype=object),
                        {"center_nm": {str(v): float((v + 0.5) * t) for v in vals},
                         "growth_direction": g.tolist()})
    keys = [(fam, lab) for fam, (labels, _, _) in fams.items() for lab in labels]
    own_rows, n_rows, n_atoms = [], [], []
    for fam, lab in keys:
        lab_site = fams[fam][1]
        own_rows.append(rows[lab_site[site_of_row] == lab])
        n_rows.append(len(own_rows[-1]))
        n_atoms.append(int(np.sum(counted & (lab_site == lab))))
    n_rows = np.array(n_rows, np.int64)
    before = comm.exscan(n_rows)                                    # collective; None on rank 0
    before = before if comm.Get_rank() else np.zeros_like(n_rows)
    total = comm.allreduce(n_rows)
    n_atoms = comm.allreduce(np.array(n_atoms, np.int64))
    rows_of = {key: DomainRows(total[i], before[i], own_rows[i]) for i, key in enumerate(keys)}
    parts = {}
    for fam, (labels, lab_site, extra) in fams.items():
        parts[fam] = (labels, lab_site, {**extra, "n_atoms": {lab: int(n_atoms[keys.index((fam, lab))])
                                                              for lab in labels}})
    return parts, rows_of
