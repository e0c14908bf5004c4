"""Bench of the one KPM engine (issue 15): CPU time per Chebyshev product of the phonon and electron
recursions through the shared driver (``kpm.chebyshev_recursion``), optionally against an earlier commit.

Writes bench/results/kpm_engine.md.  Run: ``python bench/bench_kpm_engine.py [--before COMMIT] [--repeat R]``.
With ``--before``, ``git archive COMMIT src resources`` is unpacked in a temporary folder and both code
versions are timed alternately in fresh processes (same inputs), so machine load affects both alike; the
moments of the two versions are compared too (bit-identical or their largest difference).
Target: the shared driver is not slower than the two recursions it replaced (issue 15, "one KPM engine").
Timings use one numba thread and process CPU time (the shared 2-core machine is loaded; wall time there is
several times the CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, md_table, write_section  # noqa: E402

CHILD = r"""
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
sys.path.insert(0, BENCH)
from bench_keating import diamond
from temtwin.physics import kpm, phonons
from temtwin.physics.keating import KeatingModel
from temtwin.physics.tightbinding import (TBOperator, build_hamiltonian, diamond_cubic, load_parameters,
                                          prepare_structure)

out = {}
pos, numbers, cell = diamond(5.575, (11, 11, 11), x_ge=0.7)             # 10648 atoms
m = KeatingModel.from_arrays(pos, numbers, cell, (True, True, False))
reg = np.minimum((pos[:, 2] / cell[2, 2] * 10).astype(int), 9)
for name, d in (("phonon sparse", phonons.as_operator(phonons.dynamical_matrix(m, pos, cell))),
                ("phonon matrix-free", phonons.KeatingDynamicalOperator(m, pos, cell))):
    run = lambda n: phonons._kpm_moments(d, [reg], -0.05, 1.3, n, 4, np.random.default_rng(0), "random",
                                         "double", None)
    run(8)
    ts = []
    for _ in range(REPEAT):
        t0 = time.process_time(); mom = run(NM); ts.append(time.process_time() - t0)
    out[name] = [min(ts) / (NM - 1), np.asarray(mom[0]).tolist()]
P = load_parameters()
rng = np.random.default_rng(1)
p, _, z = diamond_cubic(5.6, (8, 8, 8), lambda q: np.where(rng.random(len(q)) < 0.7, 32, 14))   # 4096 atoms
op = TBOperator(build_hamiltonian(prepare_structure(p, z, P), P), backend="numba")
a, b = kpm.rescaling((-16.0, 48.0))                         # contains the spectrum
X = np.exp(2j * np.pi * np.random.default_rng(3).random((op.n_rows, 2, 8))).astype(op.cdtype)
kpm.chebyshev_moments(op, X, a, b, 8)
ts = []
for _ in range(REPEAT):
    t0 = time.process_time(); mu = kpm.chebyshev_moments(op, X, a, b, NM); ts.append(time.process_time() - t0)
out["electron CSR numba complex64"] = [min(ts) / (NM // 2), mu.tolist()]
print("RESULT" + json.dumps(out))
"""

SIZES = {"phonon sparse": "10 648 atoms, 4 vectors", "phonon matrix-free": "10 648 atoms, 4 vectors",
         "electron CSR numba complex64": "4 096 atoms (81 920 spin-orbitals), 8 vectors"}


def run_child(src_root: Path, repeat: int, n_moments: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src_root / "src"), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    code = f"BENCH = {str(Path(__file__).resolve().parent)!r}\nREPEAT = {repeat}\nNM = {n_moments}\n" + CHILD
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default=None, help="commit to compare with (e.g. the parent of the change)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per process (the minimum is kept)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating process rounds per version")
    ap.add_argument("--moments", type=int, default=512)
    args = ap.parse_args()
    versions = {"now": REPO}
    tmp = None
    if args.before:
        tmp = tempfile.TemporaryDirectory(prefix="kpm_engine_")
        arch = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "src", "resources"],
                              capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp.name], input=arch, check=True)
        versions = {f"before ({args.before[:9]})": Path(tmp.name), "now": REPO}
    per = {v: {} for v in versions}
    moments = {}
    for _ in range(args.rounds):
        for v, root in versions.items():
            r = run_child(root, args.repeat, args.moments)
            for k, (t, mu) in r.items():
                per[v][k] = min(per[v].get(k, np.inf), t)
                moments.setdefault(k, {})[v] = np.asarray(mu)
            print(v, {k: f"{1e3 * t:.2f} ms" for k, t in per[v].items()}, flush=True)
    rows = []
    for k in SIZES:
        row = [k, SIZES[k]] + [1e3 * per[v][k] for v in versions]
        if len(versions) == 2:
            a, b = (moments[k][v] for v in versions)
            assert np.isfinite(a).all() and np.isfinite(b).all(), k
            row += [per["now"][k] / per[list(versions)[0]][k],
                    "bit-identical" if np.array_equal(a, b) else f"max |Δμ| {np.abs(a - b).max():.1e}"]
        rows.append(row)
    head = ["recursion", "size"] + [f"ms per product ({v})" for v in versions]
    if len(versions) == 2:
        head += ["now / before", "moments"]
    body = f"""Machine: {machine()}; one numba thread, process CPU time per Chebyshev product (best of {args.repeat}
runs x {args.rounds} alternating processes, {args.moments} moments; phonon products give one moment each,
electron products two).  Command: `python bench/bench_kpm_engine.py {' '.join(sys.argv[1:])}`.
Both recursions run through the one driver `kpm.chebyshev_recursion` (phonons: `ProjectionMeasure` with the
fused per-atom projection kernels as the operator's step; electrons: `DoublingMeasure`).  On this shared
machine, separate processes of identical code differ by up to ~20 % per product (memory placement of the
force-constant and work arrays; control: `--before HEAD`), so ratios inside that band are noise; an
in-process interleaved A/B of the old and new phonon loops on the same operator agreed within 5 %.

{md_table(head, rows)}
"""
    print(write_section("kpm_engine", "One KPM engine: recursion cost", body))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
