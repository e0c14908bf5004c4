"""Reliability under bad input, big input and faults (issue 22): one test per defect.

Each test failed before its fix.  Big inputs are generated lazily and kept small enough for CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, write_tif

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


# ------------------------------------------------------------------ defect 11: start-up cost
def test_ingest_job_does_not_import_torch_or_numba(tmp_path, lattice_image):
    """The ingest job (adapter + thread set-up + stage) never imports torch or numba (about 2 s)."""
    tif = write_tif(tmp_path / "s" / "a.tif", lattice_image)
    out = tmp_path / "image.h5"
    code = f"""
import sys
from types import SimpleNamespace
class N(list):
    def __init__(self, d): super().__init__(d.values()); self._d = d
    def items(self): return self._d.items()
from temtwin.workflow.context import run_stage
smk = SimpleNamespace(rule="ingest", input=N({{"image": {str(tif)!r}, "settings": []}}),
                      output=N({{"h5": {str(out)!r}}}), params=N({{}}), config={{}},
                      wildcards=N({{"sample": "s", "image": "a"}}), threads=2, log=[{str(tmp_path / 'l.log')!r}])
run_stage(smk, "temtwin.io.ingest:run")
print(sorted(m for m in ("torch", "numba") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert out.is_file()


# ------------------------------------------------------------------ defect 4: stale lock after kill -9
def test_temtwin_run_removes_a_stale_lock_but_not_a_live_one(tmp_path, monkeypatch, tiny_dataset):
    from temtwin import cli
    from temtwin.workflow.locks import stale_lock

    locks = tmp_path / "work" / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/x.h5\n")
    monkeypatch.chdir(tmp_path / "work")
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert cli.main(["run", "--dataset", str(tiny_dataset), "--cores", "1"]) == 0
    assert len(calls) == 2 and calls[0][-1] == "--unlock" and "--unlock" not in calls[1]
    calls.clear()
    assert cli.main(["run", "--dataset", str(tiny_dataset), "--keep-lock"]) == 1 and not calls
    # a live Snakemake process in that directory: the lock is not stale
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"],
                            cwd=tmp_path / "work")
    try:
        assert stale_lock(tmp_path / "work") == []
    finally:
        live.kill()
        live.wait()
    assert stale_lock(tmp_path / "work") == [locks / "0.output.lock"]
