"""Viewer page size and build time for a 2048² sample (targets: <= 5 MB per page, <= 10 s per sample).

The sample is generated (fixed seed): a 2048² noisy lattice image (Poisson noise at 200 counts/px, the
worst case for JPEG), 12 regions in layers, each with a 256² FFT, 150 peaks, 5 ranked candidates and
120 indexed spots, GPA strain, rotation and σ maps at full resolution (2048²), and a 2048² simulated
image and residual.  The page is built with the default ``viewer`` config; the time is the best of
two builds (reading the HDF5 files, encoding, writing), in one process on this machine's CPU.

Optional: ``python bench/bench_viewer.py RESULTS`` also measures the pages of an existing results
folder (e.g. the demo's).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS_DIR, machine, peak_rss_mb

from temtwin.config import load_config
from temtwin.io.h5 import atomic_h5, set_summary, write_array, write_table
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.report.summary import region_rows, sample_summary, write_tsv
from temtwin.stages.segment import write_segmentation
from temtwin.viewer.pages import build_index, build_sample_page
from temtwin.workflow.seeds import rng

N, PX, NREG = 2048, 0.02, 12


def make_sample(res: Path) -> None:
    g = rng(20261124, "bench_viewer")
    d = res / "big" / "img"
    d.mkdir(parents=True)
    y, x = np.mgrid[0:N, 0:N] * PX
    lat = 2 + np.cos(2 * np.pi * x / 0.384) + np.cos(2 * np.pi * (x + y) / 0.384)
    img = g.poisson(200 * lat / 4).astype(np.float32)
    m = Micrograph(img, (PX, PX), name="img", sample="big",
                   meta={"units": "counts", "source_file": str(res / "data" / "big" / "img.tif"),
                         "source_sha256": "0", "mode": "STEM"})
    with atomic_h5(d / "image.h5") as f:
        write_image_h5(f, m)
    labels = (np.minimum(np.arange(N) * NREG // N, NREG - 1) + 1)[:, None].repeat(N, 1).astype(np.int32)
    with atomic_h5(d / "segmentation.h5") as f:
        write_segmentation(f, m, labels, {"method": "bench", "source": "automatic"}, 0.05)
    with atomic_h5(d / "peaks.h5") as f:
        for lab in range(1, NREG + 1):
            gr = f.require_group(f"regions/{lab}")
            gr.attrs["crystalline"] = True
            k = g.normal(size=(150, 2)) * 6
            write_table(gr, "peaks", {"kx": (k[:, 0], "nm^-1"), "ky": (k[:, 1], "nm^-1")})
            write_array(gr, "fft", g.normal(size=(256, 256)).astype(np.float32), "1",
                        **{"k_extent_nm-1": np.array([-25.0, 25.0, -25.0, 25.0])})
    with atomic_h5(d / "phases.h5") as f:
        summ = {"regions": {}}
        for lab in range(1, NREG + 1):
            gr = f.require_group(f"regions/{lab}")
            ph = ["Si", "Ge"][lab % 2]
            gr.attrs.update(phase=ph, zone_axis=np.array([1, 1, 0]), identified=True, confidence=0.9, reason="")
            write_table(gr, "candidates", {
                "rank": (np.arange(1, 6), "1"), "phase": (np.array([ph, "Ge", "Si", "GaAs", "InP"], object), "1"),
                "space_group": (np.array(["Fd-3m"] * 5, object), "1"),
                "zone_u": (np.ones(5, int), "1"), "zone_v": (np.array([1, 1, 0, 1, 1]), "1"),
                "zone_w": (np.array([0, 0, 1, 2, 0]), "1"), "rotation_deg": (g.uniform(0, 90, 5), "deg"),
                "scale_factor": (g.normal(1, 0.02, 5), "1"), "score": (np.sort(g.uniform(0, 1, 5))[::-1], "1"),
                "confidence": (np.array([0.9, 0.05, 0.03, 0.01, 0.01]), "1")})
            k = g.normal(size=(120, 2)) * 6
            hkl = g.integers(-4, 5, size=(120, 3))
            write_table(gr, "spots", {"kx": (k[:, 0], "nm^-1"), "ky": (k[:, 1], "nm^-1"), "h": (hkl[:, 0], "1"),
                                      "k": (hkl[:, 1], "1"), "l": (hkl[:, 2], "1")})
            summ["regions"][str(lab)] = {"phase": ph, "zone_axis": [1, 1, 0], "confidence": 0.9, "identified": True}
        set_summary(f, summ)
    with atomic_h5(d / "gpa.h5") as f:
        f.attrs.update(applicable=True, reason="", reference_label=1)
        write_array(f, "mask", np.ones((N, N), bool), "1")
        for c in ("exx", "eyy", "exy"):
            write_array(f, f"strain/{c}", (g.normal(size=(N, N)) * 1e-3).astype(np.float32), "1")
            write_array(f, f"strain_sigma/{c}", np.abs(g.normal(size=(N, N)) * 1e-4).astype(np.float32), "1")
        write_array(f, "rotation", (g.normal(size=(N, N)) * 1e-3).astype(np.float32), "rad")
    with atomic_h5(d / "simulation.h5") as f:
        write_array(f, "simulated", img * 0.9, "counts")
        write_array(f, "residual", img * 0.1, "counts")
    s = sample_summary(res, "big", ["img"])
    (res / "big" / "summary.json").write_text(json.dumps(s))
    write_tsv(region_rows([s]), res / "summary.tsv")


def measure(res: Path, sample: str, images: list[str], cfg: dict) -> tuple[float, float]:
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        out = build_sample_page(res, sample, images, cfg, Path(tempfile.mkdtemp()) / "viewer.html")
        best = min(best, time.perf_counter() - t0)
    return best, out.stat().st_size / 1e6


def main() -> None:
    cfg = load_config({}, require_dataset=False)["viewer"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp)
        make_sample(res)
        t, mb = measure(res, "big", ["img"], cfg)
        t0 = time.perf_counter()
        build_index(res)
        ti = time.perf_counter() - t0
        rows.append(("generated 2048² sample, 12 regions, strain + σ + simulation maps", t, mb))
    extra = []
    if len(sys.argv) > 1:
        res = Path(sys.argv[1])
        for sj in sorted(res.glob("*/summary.json")):
            ims = [p.parent.name for p in sorted((sj.parent).glob("*/image.h5"))]
            t2, mb2 = measure(res, sj.parent.name, ims, cfg)
            extra.append((f"demo {sj.parent.name} ({len(ims)} image(s), `make demo` results)", t2, mb2))
    lines = ["## viewer", "",
             "Interactive pages (`viewer.html` per sample, `index.html`): size and build time. Targets: ≤ 5 MB "
             "per sample page for a 2048² image, ≤ 10 s per sample. plotly.js (4.8 MB) is shipped once per "
             "results folder (`viewer_assets/plotly.min.js`), not counted in a page.", "",
             f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} during the run (shared machine: "
             "times are upper bounds); single process, best of 2 builds; `python bench/bench_viewer.py`.", "",
             "| sample | build time (s) | page size (MB) | target |", "| --- | --- | --- | --- |"]
    for name, t, mb in rows + extra:
        lines.append(f"| {name} | {t:.2f} | {mb:.2f} | ≤ 10 s, ≤ 5 MB: "
                     f"{'met' if t <= 10 and mb <= 5 else 'NOT met'} |")
    lines += ["", f"Index page over the generated summary.tsv: {ti:.2f} s. Peak memory {peak_rss_mb():.0f} MB.",
              "Build time is I/O + downsampling + PNG/JPEG encoding on the CPU (no GPU involved); "
              "the micrograph is shown downsampled to 1024 px (config `viewer.display_px`)."]
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "viewer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
