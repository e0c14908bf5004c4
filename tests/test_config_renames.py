"""One name per stage (issue 15): config sections take their rule's name, the tight-binding section is split
into ``tb_moments`` and ``tb_ldos``, and a former name stops the run with one line naming the file, the old
and the new name."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from temtwin.config import RENAMED_SECTIONS, load_config
from temtwin.errors import UserError

REPO = Path(__file__).resolve().parents[1]
OLD_NEW = [(o, n if isinstance(n, str) else n[0]) for o, n in RENAMED_SECTIONS.items()]


@pytest.mark.parametrize("old,new", OLD_NEW)
def test_old_section_in_a_config_file_names_file_old_and_new(tmp_path, old, new):
    p = tmp_path / "my.yaml"
    p.write_text(yaml.safe_dump({old: {}}))
    with pytest.raises(UserError) as e:
        load_config(p, require_dataset=False)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and f"`{old}`" in msg and f"`{new}`" in msg and "\n" not in msg
    with pytest.raises(UserError, match=f"`{old}`.*`{new}`"):           # a mapping (Snakemake's merged config)
        load_config({old: {}}, require_dataset=False)


def test_tight_binding_names_both_new_sections():
    with pytest.raises(UserError) as e:
        load_config({"tight_binding": {"n_moments": 64}}, require_dataset=False)
    assert "`tb_moments`" in str(e.value) and "`tb_ldos`" in str(e.value)


def test_old_section_in_sample_yaml_overrides(tmp_path, tiny_dataset):
    from temtwin.workflow.snake import Workflow

    sy = tiny_dataset / "s1" / "sample.yaml"
    sy.write_text(yaml.safe_dump({"overrides": {"segmentation": {"min_area_nm2": 0.5}}}))
    with pytest.raises(UserError) as e:
        Workflow({"dataset": str(tiny_dataset), "results": str(tmp_path / "r")})
    msg = str(e.value)
    assert msg.startswith(f"{sy}: ") and "`overrides.segmentation`" in msg and "`overrides.segment`" in msg


def test_old_section_in_temtwin_set_and_run_config(tmp_path):
    import argparse

    from temtwin.cli import _user_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"thickness_nm": 2}}))
    with pytest.raises(UserError, match=rf"^{cfg}: config section `model` is now called `atomic_model`"):
        _user_config(argparse.Namespace(config=str(cfg), set=None, dataset=None))
    with pytest.raises(UserError, match=r"^--set: config section `peaks` is now called `fft_peaks`"):
        _user_config(argparse.Namespace(config=str(tmp_path / "none.yaml"), set=["peaks.max_figures=2"],
                                        dataset=None))


def test_every_config_section_is_a_stage_name():
    from temtwin.workflow.stages import STAGES

    sections = {k for k, v in load_config({}, require_dataset=False).items() if isinstance(v, dict)}
    assert sections - {"stages"} == {s.section for s in STAGES if s.section}
    files = {p.stem for p in (REPO / "config" / "schema").glob("*.yaml")}
    assert files - {"sample", "overrides"} == sections - {"stages"}


def test_an_ldos_key_reruns_tb_ldos_only_and_a_moments_key_both(tmp_path):
    """Snakemake's params trigger with the split sections: every job up to tb.h5 is recorded as finished
    (``--touch`` on placeholder outputs), then ``-n`` with one changed key lists exactly the affected jobs."""
    from test_workflow_ingest import _planned_jobs
    from conftest import write_hspy

    write_hspy(tmp_path / "dataset" / "s1" / "a.hspy", np.zeros((32, 32), np.float32), scale=(0.02, 0.02))

    def sm(*args, check=True):
        cmd = [sys.executable, "-m", "snakemake", "results/s1/tb.h5", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--cores", "1", *args,
               "--config", f"dataset={tmp_path / 'dataset'}", "results=results"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0 or not check, r.stderr[-3000:]
        return r.stdout

    for line in sm("--summary", check=False).splitlines()[1:]:   # rc 1: files missing
        f = tmp_path / line.split("\t")[0]
        if f.parent.name == "figures":
            f.mkdir(parents=True, exist_ok=True)
        else:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
    sm("--touch")
    assert _planned_jobs(sm("-n")) == {}
    for change, expect in (({"tb_ldos": {"energy_step_eV": 0.01}}, {"tb_ldos": 1}),
                           ({"tb_moments": {"n_moments": 256}}, {"tb_moments": 2, "tb_ldos": 1})):
        p = tmp_path / f"{next(iter(change))}.yaml"
        p.write_text(yaml.safe_dump(change))
        assert _planned_jobs(sm("-n", "--configfile", str(p))) == expect
