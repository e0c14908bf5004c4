"""The whole workflow on the demo dataset: wall time and per-rule timings (Snakemake benchmark files)."""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import REPO, md_table, write_section


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(d),
               "--cores", "2", "--config", f"dataset={REPO / 'resources' / 'demo'}", f"results={d / 'results'}"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            body = f"The demo workflow FAILED (exit {r.returncode}):\n\n```\n{r.stderr[-3000:]}\n```\n"
            write_section("workflow", "Whole workflow (demo dataset)", body)
            raise SystemExit(1)
        per_rule: dict[str, list[float]] = defaultdict(list)
        rss: dict[str, float] = defaultdict(float)
        for f in (d / "results" / "benchmarks").rglob("*.tsv"):
            rule = f.stem.split("_")[0] if f.stem.startswith("tb_moments") else f.stem
            rule = "tb_moments" if f.stem.startswith("tb_moments") else rule
            with open(f) as fh:
                row = next(csv.DictReader(fh, delimiter="\t"))
            per_rule[rule].append(float(row["s"]))
            try:
                rss[rule] = max(rss[rule], float(row["max_rss"]))
            except (KeyError, ValueError):
                pass
    order = ["ingest", "scan_correct", "segment", "fft_peaks", "phase_id", "gpa", "register_stack", "fem_geometry",
             "atomic_model",
             "keating", "phonons", "tb_moments", "tb_ldos", "summarize"]
    rows = [[r, len(per_rule[r]), f"{sum(per_rule[r]):.1f}", f"{max(per_rule[r]):.1f}", f"{rss[r]:.0f}"]
            for r in order if r in per_rule]
    body = (f"`snakemake --cores 2` on `resources/demo` (2 samples, 3 images) from scratch: **{wall:.0f} s** wall "
            "time, including Python start-up of every job.\n\n"
            + md_table(["rule", "jobs", "total s", "max s per job", "max RSS MB"], rows))
    write_section("workflow", "Whole workflow (demo dataset)", body)


if __name__ == "__main__":
    main()
