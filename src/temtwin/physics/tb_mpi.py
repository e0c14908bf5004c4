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
