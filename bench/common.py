"""Shared helpers for bench scripts: validation data, timing, memory, result sections.

Each ``bench/bench_<stage>.py`` measures accuracy (on ../shared/validation when present, and on
temtwin.testing.synth data) and speed, then writes ``bench/results/<stage>.md``; ``make bench`` runs them all
and ``bench/collect.py`` concatenates the sections into ``bench/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_DIR = BENCH / "results"


def validation_root() -> Path | None:
    """``../shared/validation`` (or $TEMTWIN_VALIDATION) if present, else None."""
    env = os.environ.get("TEMTWIN_VALIDATION")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared" / "validation"]:
        if p.is_dir():
            return p
    return None


def load_truth(case_dir: Path) -> tuple[dict, dict]:
    """(truth.json, truth.npz arrays) of a validation sample folder."""
    js = json.loads((case_dir / "truth.json").read_text())
    npz = dict(np.load(case_dir / "truth.npz"))
    return js, npz


@contextmanager
def timer(out: dict, key: str):
    """Store the wall time of the block (s) in ``out[key]``."""
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


def best_time(fn, repeat: int = 3) -> float:
    """Best wall time (s) of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def md_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats formatted with 4 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(stage: str, title: str, body: str) -> Path:
    """Write ``bench/results/<stage>.md`` (a section of RESULTS.md)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    p = RESULTS_DIR / f"{stage}.md"
    p.write_text(f"## {title}\n\n{body.strip()}\n")
    return p


def run_pipeline(case_dir: Path, workdir: Path, until: str, sample_yaml: str = "", config_yaml: str = "",
                 files: tuple[str, ...] = ("hrtem.hspy", "hrtem.tif")) -> Path:
    """Run the temtwin workflow (``snakemake --until <until>``) on a copy of a validation case's images
    (and its ``eels/`` maps) in ``workdir``; returns ``workdir/results/<sample>``. Nothing from the truth
    is given beyond ``sample_yaml`` (e.g. the elements) and ``config_yaml``."""
    import shutil
    import subprocess
    import sys

    sample = case_dir.name
    sdir = workdir / "data" / sample
    sdir.mkdir(parents=True, exist_ok=True)
    for name in files:
        if (case_dir / name).is_file():
            shutil.copy2(case_dir / name, sdir / name)
    if (case_dir / "eels").is_dir():
        shutil.copytree(case_dir / "eels", sdir / "eels", dirs_exist_ok=True)
    if sample_yaml:
        (sdir / "sample.yaml").write_text(sample_yaml)
    (workdir / "bench.yaml").write_text(config_yaml or "{}\n")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--until", until, "--configfile", str(workdir / "bench.yaml"),
           "--config", f"dataset={workdir / 'data'}", f"results={workdir / 'results'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if r.returncode != 0:
        raise RuntimeError(f"workflow failed on {case_dir}: {r.stderr[-3000:]}")
    return workdir / "results" / sample
