"""Bench of tight binding at scale (issue 23): stage memory end to end, matrix-free footprint, MPI
communication share, CPU kernel roofline, and a side-by-side with kwant's KPM.

Each measured job runs in its own process (peak RSS = that process's ``ru_maxrss``):

* ``stage``: the ``tb_moments`` stage function end to end (read model.h5, structure, build, operator,
  Lanczos bounds, moments) for each backend, then ``tb_ldos``, on a random Si0.3Ge0.7 cube of
  ``--atoms`` atoms with 4 regions (1 vector per region, ``--moments`` moments, block of 4).
  Phases from the stage's own log lines, each with the peak RSS reached by then.
* ``footprint``: CSR build peak vs the matrix, matrix-free bytes per atom, s/step of both kernels.
* ``mpi``: the stage with ``mpi_ranks: 2`` (``mpirun -n 2``) and the communication share it logs.
* ``roofline``: copy bandwidth and fp32 peak (SGEMM) measured in the same run, the kernels' bytes and
  flops per step at m = 16 and 32, achieved fractions.
* ``kwant``: the same spinful complex CSR Hamiltonian (exported to .npz), same bounds, moments and
  random vectors, with ``kwant.kpm.SpectralDensity`` run by ``--kwant-python`` (a separate
  environment: kwant does not build against NumPy 2) — time ratio and density agreement.

Usage (as run for bench/RESULTS.md, two sections)::

    python bench/bench_tight_binding_scale.py --parts footprint,roofline,kwant --section tight_binding_kernels \
        --kwant-python /path/to/venv-with-kwant/bin/python
    python bench/bench_tight_binding_scale.py --parts stage,mpi --atoms 2.5e5

Writes bench/results/<section>.md.  No data files needed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numba
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, md_table, write_section  # noqa: E402

LINES: list[str] = []


def say(s=""):
    print(s, flush=True)
    LINES.append(s)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) / 2**20
    return 8.0


# ----------------------------------------------------------------------------- model
def cube(n_atoms: float, seed=0, x_ge=0.7):
    from temtwin.physics.tightbinding import diamond_cubic

    r = int(round((n_atoms / 8) ** (1 / 3)))
    rng = np.random.default_rng(seed)
    pos, _, z = diamond_cubic(5.6, (r, r, r), lambda p: np.where(rng.random(len(p)) < x_ge, 32, 14))
    return pos, z


def write_model(path: Path, n_atoms: float, n_regions=4):
    from temtwin.io.h5 import atomic_h5
    from temtwin.twin.model_io import atoms_from_arrays
    from temtwin.results.model import Model

    pos, z = cube(n_atoms)
    edges = np.quantile(pos[:, 2], np.linspace(0, 1, n_regions + 1))
    reg = np.clip(np.searchsorted(edges, pos[:, 2], side="right") - 1, 0, n_regions - 1)
    atoms = atoms_from_arrays(pos / 10, z, region=reg, info={"image": "bench", "pixel_size_nm": [0.05, 0.05]})
    with atomic_h5(path) as f:
        Model.from_atoms(atoms).write(f)
    return len(z)


# ----------------------------------------------------------------------------- children
class PhaseLog(logging.Handler):
    """Records (seconds since start, peak RSS MB, message) of each log record."""

    def __init__(self):
        super().__init__()
        self.t0 = time.perf_counter()
        self.rows = []

    def emit(self, record):
        self.rows.append((time.perf_counter() - self.t0, rss_mb(), record.getMessage()))


def child_stage(d: Path, rule: str, backend: str, moments: int, ranks: int = 1, lanczos: int = 100) -> dict:
    from temtwin.stages import tb_ldos, tb_moments
    from temtwin.workflow.context import StageContext

    cfg = {"tb_moments": {"n_chunks": 1, "n_moments": moments, "vectors_per_region": 1,
                          "structure": "as_built", "partitions": "regions", "block_size": 4,
                          "backend": backend, "checkpoint_every_moments": 0, "mpi_ranks": ranks,
                          "mpi_launcher": "mpirun", "lanczos_steps": lanczos},
           "tb_ldos": {"energy_step_eV": 0.01}}
    log = logging.getLogger(f"bench.{rule}.{backend}")
    h = PhaseLog()
    log.addHandler(h)
    log.setLevel(logging.INFO)
    out = d / f"{backend}_r{ranks}" / "moments_0.h5"
    if rule == "tb_moments":
        ctx = StageContext.create(rule, {"model": d / "model.h5"}, {"h5": out}, config=cfg,
                                  wildcards={"sample": "b", "chunk": "0"}, log=log)
        tb_moments.run(ctx)
    else:
        ctx = StageContext.create(rule, {"model": d / "model.h5", "moments": [out]},
                                  {"h5": out.parent / "tb.h5", "figures": out.parent / "fig"},
                                  config=cfg, wildcards={"sample": "b"}, log=log)
        tb_ldos.run(ctx)
    return {"total_s": time.perf_counter() - h.t0, "peak_mb": rss_mb(), "log": h.rows}


def run_child(args: list[str], env=None) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child"] + args, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def phases(rows) -> str:
    """Phase summary from the stage log: setup (read + structure + build), bounds, moments."""
    out = []
    for t, mb, msg in rows:
        if msg.startswith("tb setup: model read"):
            out.append(f"model read {t:.0f} s ({mb:.0f} MB)")
        elif msg.startswith("tb setup: structure"):
            out.append(f"+structure {t:.0f} s ({mb:.0f} MB)")
        elif msg.startswith("tight binding"):
            out.append(f"+build {t:.0f} s ({mb:.0f} MB)")
        elif msg.startswith("spectral bounds"):
            out.append(f"+Lanczos {t:.0f} s ({mb:.0f} MB)")
        elif msg.startswith("tb moments done"):
            out.append(f"+moments {t:.0f} s ({mb:.0f} MB)")
        elif msg.startswith("MPI: communication"):
            out.append(msg.split("MPI: ")[1])
    return "; ".join(out)


# ----------------------------------------------------------------------------- parts
def part_stage(d: Path, n_atoms: float, moments: int, lanczos: int = 100, backends=("numba", "matrix_free")):
    nat = write_model(d / "model.h5", n_atoms)
    rows = []
    for backend in backends:
        r = run_child(["stage", str(d), "tb_moments", backend, str(moments), "1", str(lanczos)])
        rows.append([nat, f"tb_moments ({backend})", f"{r['total_s']:.0f}", f"{r['peak_mb'] / 1024:.2f}",
                     phases(r["log"])])
    r = run_child(["stage", str(d), "tb_ldos", backends[0], str(moments)])
    rows.append([nat, "tb_ldos", f"{r['total_s']:.0f}", f"{r['peak_mb'] / 1024:.2f}", "gather + LDOS + figures"])
    say(f"### Stages end to end ({nat} atoms, each job in its own process)\n")
    say(f"Random Si0.3Ge0.7 cube, open surfaces, sp3 passivation, 4 regions x 1 vector, {moments} moments "
        f"(block of 4 vectors), {lanczos} Lanczos steps (the moment and step counts change only the time, not "
        "the memory).  Peak RSS = the job process's maximum resident set (ru_maxrss); each phase with the "
        "peak reached by its end.\n")
    say(md_table(["atoms", "job", "time (s)", "peak RSS (GB)", "phases (time since start, peak RSS then)"], rows))
    say()


def part_footprint(n_atoms: float):
    import gc

    from temtwin.physics.tightbinding import (
        MatrixFreeOperator, TBOperator, build_hamiltonian, build_matrix_free, load_parameters,
        prepare_structure,
    )

    P = load_parameters()
    pos, z = cube(n_atoms, seed=2)
    st = prepare_structure(pos, z, P)
    del pos
    gc.collect()
    build_hamiltonian(prepare_structure(*cube(500), P), P)        # compile outside the measurement
    gc.collect()
    base = _rss_now_mb()
    with RSSSampler() as smp:
        t0 = time.perf_counter()
        ham = build_hamiltonian(st, P)
        t_build = time.perf_counter() - t0
    mat = ham.H.data.nbytes + ham.H.indices.nbytes + ham.H.indptr.nbytes
    build_peak = smp.peak - base          # resident-set growth at its highest during the build (MB)
    csr = TBOperator(ham, backend="numba")
    t0 = time.perf_counter()
    mf = MatrixFreeOperator(build_matrix_free(st, P))
    t_mf = time.perf_counter() - t0
    n = st.n_host
    rows = []
    for name, op in (("CSR (numba)", csr), ("matrix-free", mf)):
        X = np.exp(2j * np.pi * np.random.default_rng(0).random((op.n_rows, 2, 16))).astype(np.complex64)
        op.step(X, X, 0.05, 10.0, 2)
        t = time.perf_counter()
        for _ in range(2):
            op.step(X, X, 0.05, 10.0, 2)
        dt = (time.perf_counter() - t) / 2
        rows.append([name, f"{op.memory_bytes() / n:.0f}", f"{op.memory_bytes() / 1e9:.3f}", f"{dt:.3f}",
                     f"{16 / dt:.1f}"])
    say(f"### Model footprint and build memory ({n} atoms)\n")
    say(f"CSR build: {t_build:.1f} s, matrix {mat / 1e9:.3f} GB; peak resident-set growth during the build "
        f"(sampled every 5 ms from /proc) {build_peak / 1e3:.3f} GB = **{build_peak * 1.048576e6 / mat:.2f}x "
        f"the matrix** (target <= 1.5x).  "
        f"Matrix-free set-up {t_mf:.1f} s.\n")
    say(md_table(["backend", "bytes/atom", "GB", "s/step (m = 16)", "vector-products/s"], rows))
    struct = sum(getattr(st, k).nbytes for k in ("positions_A", "species", "parent", "atom_index", "bond_i",
                                                  "bond_j", "bond_vec", "env"))
    vec = 3 * ham.n_orbitals * 2 * 8 / n                      # X, X_prev, Y per column (complex64)
    say(f"\nPrepared structure (positions, bonds, environment sums): {struct / n:.0f} B/atom; vector block: "
        f"{vec:.0f} B/atom per column (X, X_prev and Y).  Projected to 4·10^6 atoms (linear): CSR "
        f"{float(rows[0][1]) * 4e6 / 1e9:.1f} GB, matrix-free {float(rows[1][1]) * 4e6 / 1e9:.1f} GB; "
        f"+ vectors {vec * 4 * 4e6 / 1e9:.1f} GB (m = 4) or {vec * 16 * 4e6 / 1e9:.1f} GB (m = 16); + structure "
        f"{struct / n * 4e6 / 1e9:.1f} GB; matrix-free s/step at m = 16: {float(rows[1][3]) * 4e6 / n:.0f} s "
        f"(CSR {float(rows[0][3]) * 4e6 / n:.0f} s).\n")


def part_big(n_atoms: float, m: int = 4, steps: int = 2):
    """Matrix-free s/step on a large model in this process: structure, geometry, one vector block."""
    from temtwin.physics.tightbinding import MatrixFreeOperator, build_matrix_free, load_parameters, prepare_structure

    P = load_parameters()
    t0 = time.perf_counter()
    pos, z = cube(n_atoms, seed=6)
    st = prepare_structure(pos, z, P)
    del pos, z
    t_prep, rss_prep = time.perf_counter() - t0, rss_mb()
    t0 = time.perf_counter()
    op = MatrixFreeOperator(build_matrix_free(st, P))
    t_build = time.perf_counter() - t0
    X = np.zeros((op.n_rows, 2, m), np.complex64)
    rng = np.random.default_rng(0)
    for s in range(0, op.n_rows, 1 << 20):                      # random phases, drawn in chunks
        e = min(op.n_rows, s + (1 << 20))
        X[s:e] = np.exp(2j * np.pi * rng.random((e - s, 2, m)))
    Y, _ = op.step(X, None, 0.05, 10.0, 1)                      # compile / warm up
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        Y2, _ = op.step(Y, X, 0.05, 10.0, 2)
        ts.append(time.perf_counter() - t0)
        X, Y = Y, Y2
    say(f"### Matrix-free at {st.n_host} atoms (one process, {m} vectors per block)\n")
    say(f"{st.n_host} atoms ({2 * op.n_rows} spin-orbitals): prepare structure {t_prep:.0f} s (peak RSS then "
        f"{rss_prep / 1024:.1f} GB), matrix-free set-up {t_build:.0f} s, geometry {op.memory_bytes() / 1e9:.2f} GB "
        f"({op.memory_bytes() / st.n_host:.0f} B/atom); Chebyshev step on {m} vectors: **{min(ts):.1f} s/step** "
        f"(best of {steps}; {m / min(ts):.2f} vector-products/s); peak RSS of the process "
        f"**{rss_mb() / 1024:.1f} GB** (structure + geometry + 3 vector blocks + the step's work arrays).\n")


class RSSSampler:
    """Highest VmRSS (MB) of this process while the ``with`` block runs (a 5 ms sampling thread)."""

    def __enter__(self):
        import threading

        self.peak = _rss_now_mb()
        self._stop = threading.Event()

        def run():
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, _rss_now_mb())

        self._th = threading.Thread(target=run, daemon=True)
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()
        self.peak = max(self.peak, _rss_now_mb())


def _rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def part_mpi(d: Path, n_atoms: float, moments: int, lanczos: int = 100):
    from temtwin.physics.tightbinding.distributed import mpi_available

    reason = mpi_available()
    if reason:
        say(f"### MPI\n\nNot measured: {reason}.\n")
        return
    nat = write_model(d / "model_mpi.h5", n_atoms)
    (d / "mpi").mkdir(exist_ok=True)
    os.replace(d / "model_mpi.h5", d / "mpi" / "model.h5")
    r1 = run_child(["stage", str(d / "mpi"), "tb_moments", "numba", str(moments), "1", str(lanczos)])
    r2 = run_child(["stage", str(d / "mpi"), "tb_moments", "numba", str(moments), "2", str(lanczos)],
                   env={"NUMBA_NUM_THREADS": "1"})
    rw = run_child(["stage", str(d / "mpi"), "tb_moments", "numba", str(moments), "2", str(lanczos)],
                   env={"NUMBA_NUM_THREADS": "1", "TEMTWIN_TB_MPI_WHOLE": "1"})

    def grab(r, key):
        lines = [m for _, _, m in r["log"] if key in m]
        return lines[0].split("] ", 1)[-1] if lines else ""

    def comm_share(r):
        m = re.search(r"\(([\d.]+) % communication\)", grab(r, "MPI: communication"))
        return float(m.group(1)) if m else float("nan")

    m = re.search(r"peak RSS per rank ([\d, ]+) MB", grab(r2, "peak RSS per rank"))
    per_rank = [float(x) for x in m.group(1).split(",")] if m else []
    whole0 = re.search(r"peak RSS rank 0 (\d+) MB", grab(rw, "MPI: communication"))
    say(f"### MPI, 2 ranks on this machine ({nat} atoms, {moments} moments, {lanczos} Lanczos steps)\n")
    say(md_table(["run", "time (s)", "peak RSS per process (GB)", "communication share", "detail"],
                 [["1 process, 2 threads", f"{r1['total_s']:.0f}", f"{r1['peak_mb'] / 1024:.2f}", "",
                   phases(r1["log"])],
                  ["mpirun -n 2, per-domain structure", f"{r2['total_s']:.0f}",
                   " / ".join(f"{p / 1024:.2f}" for p in per_rank), f"{comm_share(r2):.0f} %",
                   grab(r2, "tb setup: structure prepared") + "; " + grab(r2, "atoms read per rank")],
                  ["mpirun -n 2, whole structure on every rank (before)", f"{rw['total_s']:.0f}",
                   f"{int(whole0.group(1)) / 1024:.2f} (rank 0)" if whole0 else "", f"{comm_share(rw):.0f} %",
                   grab(rw, "MPI: communication")]]))
    base = re.search(r"peak RSS (\d+) MB before reading", grab(r2, "tb setup: model read"))
    if per_rank and base:
        bpa = (max(per_rank) - float(base.group(1))) / (nat / 2) * 2**20
        one = [mb for _, mb, msg in r1["log"] if msg.startswith("tb setup: model read")]
        bpa1 = (r1["peak_mb"] - one[0]) * 2**20 / nat if one else float("nan")
        say(f"\nGrowth of the peak resident set per atom (peak minus the process before reading the model, "
            f"divided by the atoms per rank): **{bpa:.0f} B per atom** per rank at 2 ranks, "
            f"{bpa1:.0f} B per atom in one process (the process itself: {float(base.group(1)) / 1024:.2f} GB).")
    say("\nThe communication share is the halo exchange (Alltoallv) plus the allgather of the "
        "partial dot products per Chebyshev step, from rank 0's timers, on two shared cores.  The moments "
        "equal the one-process moments bit for bit (tests/test_tb_mpi.py, tests/test_tb_mpi_domain.py).\n")


def part_roofline(n_atoms: float):
    from threadpoolctl import threadpool_limits

    from temtwin.physics.tightbinding import (
        MatrixFreeOperator, TBOperator, build_hamiltonian, build_matrix_free, load_parameters,
        prepare_structure,
    )
    from temtwin.physics.tightbinding import operator as tbop

    threads = numba.get_num_threads()
    src = np.ones(512 * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    _par_copy(dst, src)
    bw_w, bw_c = _best(lambda: _par_copy(dst, src), 3)
    bw_w, bw_c = 2 * src.nbytes / bw_w / 1e9, 2 * src.nbytes / bw_c * threads / 1e9
    np_w, np_c = _best(lambda: np.copyto(dst, src), 3)          # one thread: per CPU-second as is
    np_w, np_c = 2 * src.nbytes / np_w / 1e9, 2 * src.nbytes / np_c / 1e9
    bw_w, bw_c = max(bw_w, np_w), max(bw_c, np_c)              # the higher copy rate seen (conservative)
    src = dst = None
    A = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        A @ A
        pk_w, pk_c = _best(lambda: A @ A, 3)
    pk_w, pk_c = 2 * 2048**3 / pk_w / 1e9, 2 * 2048**3 / pk_c * threads / 1e9
    P = load_parameters()
    pos, z = cube(n_atoms, seed=3)
    st = prepare_structure(pos, z, P)
    ham = build_hamiltonian(st, P)
    nnz, nrow = ham.H.nnz, ham.n_orbitals
    csr = TBOperator(ham, backend="numba")
    mf = MatrixFreeOperator(build_matrix_free(st, P))
    rows = []
    for m in (1, 16, 32):
        X = np.exp(2j * np.pi * np.random.default_rng(0).random((nrow, 2, m))).astype(np.complex64)
        flops = nnz * 2 * m * 4 + nrow * 2 * m * 10            # real x complex multiply-add = 4 flops; recursion
        for name, op in (("CSR, compiled width (default)", csr), ("CSR, generic width (before)", "generic"),
                         ("matrix-free", mf)):
            if op == "generic":
                saved = tbop.MAX_SPECIALISED_WIDTH
                tbop.MAX_SPECIALISED_WIDTH = 0
                op = csr
            op.step(X, X, 0.05, 10.0, 2)
            tw, tc = _best(partial(op.step, X, X, 0.05, 10.0, 2), 3)
            if name.startswith("CSR, generic"):
                tbop.MAX_SPECIALISED_WIDTH = saved
            mat = nnz * 8 + nrow * 8 if op is csr else op.memory_bytes()
            byts = mat + 3 * nrow * 2 * m * 8                      # matrix (or geometry) + X, X_prev, Y
            gf_w = flops / tw / 1e9
            gf_c, gb_c = flops / tc * threads / 1e9, byts / tc * threads / 1e9
            rows.append([name, m, f"{tw:.3f}", f"{tc / threads:.3f}", f"{flops / 1e9:.2f}", f"{byts / 1e9:.3f}",
                         f"{flops / byts:.1f}", f"{gf_c:.1f}", f"{gb_c:.1f}", f"**{gf_c / pk_c:.2f}**",
                         f"{gb_c / bw_c:.2f}", f"{gf_w / pk_w:.2f}"])
        X = None
    say(f"### CPU kernel roofline ({st.n_host} atoms, {threads} threads)\n")
    say(f"Measured in the same run, {threads} threads: copy bandwidth (read + write; the higher of a numba "
        f"parallel float32 copy on {threads} threads and NumPy's one-thread copy) **{bw_c:.1f} GB/s** per "
        f"CPU-second basis ({bw_w:.1f} GB/s wall clock); fp32 peak (2048² "
        f"SGEMM, OpenBLAS, {threads} threads) **{pk_c:.0f} GFLOP/s** per {threads} CPU-seconds ({pk_w:.0f} "
        "GFLOP/s wall clock).  The development machine is shared by ~8 jobs on 2 cores, so wall-clock rates "
        "are diluted by time slicing; rates per CPU-second of this process (user + system time of all its "
        "threads, times the thread count) measure what the code does on the cores it gets, for the kernels "
        "and for the peak alike.  Flops per step: 4 per stored matrix entry and vector column (a real × "
        "complex multiply-add) plus the recursion; bytes: the matrix (CSR: value + column index; "
        "matrix-free: its geometry) plus X, X_prev and Y once.  The matrix-free kernel also spends ~1-2 "
        "kflop per bond computing its block (not counted).  Best of 3 steps.\n")
    say(md_table(["kernel", "m", "s/step (wall)", "CPU-s/step per thread", "GFLOP/step", "GB/step", "flop/byte",
                  "GFLOP/s (CPU time)", "GB/s (CPU time)", "fraction of fp32 peak", "fraction of copy BW",
                  "fraction of peak (wall clock)"], rows))
    say()


@numba.njit(parallel=True, cache=True)
def _par_copy(dst, src):
    n = src.shape[0]
    nb = 64
    for b in numba.prange(nb):
        for i in range(b * n // nb, (b + 1) * n // nb):
            dst[i] = src[i]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _best(fn, n: int) -> tuple[float, float]:
    """(best wall-clock seconds, best CPU seconds of the process) of ``n`` calls of ``fn``."""
    tw, tc = [], []
    for _ in range(n):
        c0, t0 = _cpu_s(), time.perf_counter()
        fn()
        tw.append(time.perf_counter() - t0)
        tc.append(_cpu_s() - c0)
    return min(tw), min(tc)


def _t(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


KWANT_SCRIPT = r"""
import sys, time, json
import numpy as np, scipy.sparse as sp, kwant
z = np.load(sys.argv[1])
H = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
V = z["vectors"]
def vf():
    for k in range(V.shape[1]):
        yield V[:, k]
t0 = time.perf_counter()
sd = kwant.kpm.SpectralDensity(H, num_vectors=V.shape[1], num_moments=int(z["n_moments"]),
                               vector_factory=vf(), bounds=tuple(z["bounds"]), eps=float(z["eps"]))
t = time.perf_counter() - t0
e = z["energies"]
rho = np.real(sd(e))
np.save(sys.argv[2], rho)
print(json.dumps({"time_s": t, "kwant": kwant.__version__}))
"""


def part_kwant(n_atoms: float, kwant_python: str, d: Path):
    import scipy.sparse as sp  # noqa: F401

    from temtwin.physics import kpm
    from temtwin.physics.tightbinding import TBOperator, build_hamiltonian, load_parameters, prepare_structure

    if not kwant_python or not Path(kwant_python).exists():
        say("### Side by side with kwant\n\nNot measured: no Python with kwant given (--kwant-python).\n")
        return
    P = load_parameters()
    pos, z = cube(n_atoms, seed=4)
    st = prepare_structure(pos, z, P)
    ham = build_hamiltonian(st, P)
    Hc = ham.to_csr(np.complex128)            # spinful complex CSR, index 2*orbital + spin
    n_vec, N, eps = 4, 256, 0.05
    lo, hi = kpm.spectral_bounds(TBOperator(ham, backend="numba", complex_dtype=np.complex128))
    a = (hi - lo) / (2 - eps)
    b = (hi + lo) / 2
    rng = np.random.default_rng(5)
    V = np.exp(2j * np.pi * rng.random((Hc.shape[0], n_vec)))
    E = np.linspace(lo + 0.5, hi - 0.5, 2001)
    np.savez(d / "kw.npz", data=Hc.data, indices=Hc.indices, indptr=Hc.indptr, shape=Hc.shape, vectors=V,
             n_moments=N, bounds=(lo, hi), eps=eps, energies=E)
    r = subprocess.run([kwant_python, "-c", KWANT_SCRIPT, str(d / "kw.npz"), str(d / "kw_rho.npy")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if r.returncode != 0:
        say(f"### Side by side with kwant\n\nkwant run failed: {r.stderr[-500:]}\n")
        return
    kw = json.loads(r.stdout.strip().splitlines()[-1])
    rho_kw = np.load(d / "kw_rho.npy")
    res = {}
    for prec, cd in (("complex128", np.complex128), ("complex64", np.complex64)):
        op = TBOperator(ham, backend="numba", complex_dtype=cd)
        X = V.reshape(ham.n_orbitals, 2, n_vec).astype(cd)
        kpm.chebyshev_moments(op, op.to_backend(X), a, b, 4)     # compile / load every kernel first
        t0 = time.perf_counter()
        mu = kpm.chebyshev_moments(op, op.to_backend(X), a, b, N)
        res[prec] = (time.perf_counter() - t0, kpm.density(mu.mean(axis=0), E, a, b))
    say(f"### Side by side with kwant ({st.n_host} atoms, {Hc.shape[0]} spin-orbitals, same run)\n")
    say(f"kwant {kw['kwant']} `kwant.kpm.SpectralDensity` on the spinful complex128 CSR exported from temtwin "
        f"(nnz {Hc.nnz}), {n_vec} random-phase vectors given through `vector_factory`, {N} moments, "
        f"bounds {lo:.2f}..{hi:.2f} eV with eps = {eps}, Jackson kernel (both).  temtwin: the fused numba "
        "kernel on the real spin-less CSR + on-the-fly spin–orbit, same vectors.\n")
    rows = []
    for prec, (t, rho) in res.items():
        l1 = np.abs(rho - rho_kw).sum() / np.abs(rho_kw).sum()
        rows.append([f"temtwin numba ({prec})", f"{t:.2f}", f"{kw['time_s'] / t:.1f}x", f"{l1:.2e}"])
    rows.append(["kwant", f"{kw['time_s']:.2f}", "1", "-"])
    say(md_table(["code", "moments time (s)", "kwant time / this", "relative L1 of the density vs kwant"], rows))
    say()


def _carry_kwant(section: str) -> None:
    """Keep the kwant side-by-side of an earlier run of this section when kwant is not run now (it
    needs a separate environment), marked as such."""
    p = HERE / "results" / f"{section}.md"
    if not p.exists() or "### Side by side with kwant" not in p.read_text():
        return
    old = p.read_text().split("### Side by side with kwant", 1)[1]
    old = old.split("\n### ", 1)[0].split("\n## ", 1)[0]
    say("### Side by side with kwant" + old.split("\n", 1)[0] + " — from an earlier run of this script "
        "(kwant not given now)\n" + old.split("\n", 1)[1].rstrip() + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs="*")
    ap.add_argument("--atoms", type=float, default=2.5e5)
    ap.add_argument("--footprint-atoms", type=float, default=1e5)
    ap.add_argument("--mpi-atoms", type=float, default=5e4)
    ap.add_argument("--roofline-atoms", type=float, default=1e5)
    ap.add_argument("--kwant-atoms", type=float, default=2e4)
    ap.add_argument("--kwant-python", default="")
    ap.add_argument("--moments", type=int, default=64)
    ap.add_argument("--big-atoms", type=float, default=4e6, help="atoms of the 'big' part (matrix-free s/step)")
    ap.add_argument("--lanczos-steps", type=int, default=100)
    ap.add_argument("--backends", default="numba,matrix_free", help="tb_moments backends of the stage part")
    ap.add_argument("--parts", default="footprint,roofline,stage,mpi,kwant")
    ap.add_argument("--section", default="tight_binding_scale",
                    help="results section (bench/results/<section>.md); split long runs in two")
    args = ap.parse_args(argv)
    if args.child:
        kind, d, rule, backend, moments, *rest = args.child
        r = child_stage(Path(d), rule, backend, int(moments), int(rest[0]) if rest else 1,
                        int(rest[1]) if len(rest) > 1 else 100)
        print(json.dumps(r))
        return
    parts = args.parts.split(",")
    say(f"Machine: {machine()}; shared with other jobs, so times are upper bounds; "
        f"MemAvailable at start {mem_available_gb():.0f} GB.\n")
    with tempfile.TemporaryDirectory(prefix="tbscale") as tmp:
        d = Path(tmp)
        if "big" in parts:
            part_big(args.big_atoms)
        if "footprint" in parts:
            part_footprint(args.footprint_atoms)
        if "roofline" in parts:
            part_roofline(args.roofline_atoms)
        if "stage" in parts:
            part_stage(d, args.atoms, args.moments, args.lanczos_steps, tuple(args.backends.split(",")))
        if "mpi" in parts:
            part_mpi(d, args.mpi_atoms, args.moments, args.lanczos_steps)
        if "kwant" in parts and args.kwant_python:
            part_kwant(args.kwant_atoms, args.kwant_python, d)
        else:
            _carry_kwant(args.section)
    titles = {"tight_binding_scale": "Tight binding at scale (stage memory end to end, MPI)",
              "tight_binding_kernels": "Tight-binding kernels (footprint, roofline, kwant side by side)",
              "tight_binding_1e6": "Tight binding: stages end to end at 10^6 atoms",
              "tight_binding_mpi": "Tight binding under MPI: per-domain structure, memory per rank",
              "tight_binding_4e6": "Tight binding: matrix-free products at 4·10^6 atoms on the 24 GB machine"}
    write_section(args.section, titles.get(args.section, args.section), "\n".join(LINES))


if __name__ == "__main__":
    main()
