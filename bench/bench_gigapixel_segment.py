"""Bench of `segment` on large generated device overviews (issue 20, gigapixel target).

Target (issue 20): a 16 384² overview (uint16, a generated device) through ``segment`` in <= 3 min and
<= 8 GB peak memory on 2 cores.  This script measures the default ``segment_auto`` on generated
overviews (temtwin.testing.synth.scenes.lowmag_device, 1 nm/px, Poisson noise at 200 e⁻/px, stored as uint16
and converted as ingest does) of the sizes given (default 2048 and 4096), each in a fresh process
(peak RSS of that process), so the scaling can be read off; ``--sizes 16384`` runs the target size
(needs > 8 GB free memory: do not run it on a shared machine with less).

Run: ``.venv/bin/python bench/bench_gigapixel_segment.py [--sizes 2048 4096]``; writes
bench/results/gigapixel_segment.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, md_table, write_section  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np
from temtwin.segment.canny import segment_auto
from temtwin.testing.synth.scenes import lowmag_device
n = int(sys.argv[1])
H = float(n)
layers = [("vacuum", 0.1 * H, 0.95), ("Pt", 0.1 * H, 0.3), ("W", 0.08 * H, 0.45), ("TiN", 0.02 * H, 0.7),
          ("HfO2", 0.01 * H, 0.5), ("SiO2", 0.004 * H, 0.9), ("Si", 0.1 * H, 0.72), ("BOX", 0.12 * H, 0.9),
          ("Si-sub", 1e12, 0.7)]
sc = lowmag_device((n, n), (1.0, 1.0), layers=layers, seed=0, wire=True, blur_nm=0.7)
img = np.clip(sc.image, 0, 65535).astype(np.uint16)
truth = sc.labels
del sc
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
lab = segment_auto(img.astype(np.float32), (1.0, 1.0)).labels
dt = time.perf_counter() - t0
from temtwin.segment.metrics import matched_iou
miou, _ = matched_iou(truth.astype(np.int64), lab)
print(json.dumps({"n": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": rss0, "segments": int(lab.max()), "mean_iou": float(miou)}))
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    a = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="2", NUMBA_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    rows = []
    for n in a.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append([f"{n}²", "failed", "-", "-", "-", (out.stderr.strip().splitlines() or ["?"])[-1][:80]])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append([f"{n}²", round(r["seconds"], 1), round(r["peak_rss_mb"] / 1024, 2), r["segments"],
                     round(r["mean_iou"], 3), f"{r['rss_before_mb'] / 1024:.2f} GB held before segment"])
    body = (__doc__.split("\n\n")[1].strip() + f"\n\nMachine: {machine()} (2 threads).\n\n"
            + md_table(["size", "segment time (s)", "peak RSS (GB, whole process)", "segments", "mean IoU",
                        "note"], rows)
            + "\n\nEach size runs in a fresh process: its time includes loading (and, on the first run, numba "
              "compiling) the segmentation kernels; the peak RSS includes the generator's arrays.  segment "
              "analyses at a reduced resolution (``analysis_factor``), so its own memory grows with the image "
              "copies only.  The 16 384² target is not measured here unless a row says so.\n")
    write_section("gigapixel_segment", "Segmentation of large overviews", body)


if __name__ == "__main__":
    main()
