"""The script adapter: one clear line for user errors, logs, progress lines."""

import logging
import os
from types import SimpleNamespace

import pytest

from temtwin.errors import UserError
from temtwin.workflow.context import StageContext, run_stage


class _Named(list):
    def __init__(self, d=None):
        super().__init__((d or {}).values())
        self._d = d or {}

    def items(self):
        return self._d.items()


def _smk(tmp_path, **kw):
    return SimpleNamespace(rule="demo", input=_Named({"a": "in"}), output=_Named({"h5": str(tmp_path / "o.h5")}),
                           params=_Named(), config={}, wildcards=_Named({"sample": "s"}), threads=1,
                           log=[str(tmp_path / "demo.log")], **kw)


def test_user_error_is_one_line(tmp_path, capsys):
    def stage(ctx):
        raise UserError("image too small; crop less", "data/s/a.tif")

    with pytest.raises(SystemExit) as e:
        run_stage(_smk(tmp_path), stage)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["temtwin: error: data/s/a.tif: image too small; crop less"]
    assert "image too small" in (tmp_path / "demo.log").read_text()
    assert not (tmp_path / "o.h5").exists()


def test_stage_runs_and_logs_progress(tmp_path):
    def stage(ctx):
        assert ctx.input["a"] == "in" and ctx.wildcards["sample"] == "s"
        for i in range(1, 41):
            ctx.progress(i, 40, "regions")
        with ctx.h5() as f:
            f.attrs["ok"] = 1

    run_stage(_smk(tmp_path), stage)
    log = (tmp_path / "demo.log").read_text()
    assert "progress: regions 40/40 (100%)" in log and log.count("progress:") <= 21
    assert (tmp_path / "o.h5").exists()
    logging.getLogger("temtwin").handlers.clear()


def test_create_fills_config_defaults():
    ctx = StageContext.create("x", {}, {}, config={"seed": 5})
    assert ctx.seed == 5 and ctx.section("ingest")["align_frames"] is True


def test_sample_overrides_reach_every_stage_through_settings(tmp_path, tiny_dataset):
    """sample.yaml `overrides.<section>` is merged into that sample's section for every rule, validated."""
    import types

    import yaml

    from temtwin.errors import UserError
    from temtwin.workflow.snake import Workflow

    (tiny_dataset / "s1" / "sample.yaml").write_text(yaml.safe_dump(
        {"overrides": {"gpa": {"resolution_nm": 1.7}, "segment": {"min_area_nm2": 0.5}}}))
    w = Workflow({"dataset": str(tiny_dataset), "results": str(tmp_path / "r")})
    wc = types.SimpleNamespace(sample="s1", image="a")
    gpa = w.settings("gpa")(wc)
    assert gpa["gpa"]["resolution_nm"] == 1.7 and gpa["seed"] == w.config["seed"]
    assert set(gpa["gpa"]) == set(w.config["gpa"])
    assert w.settings("segment")(wc)["segment"]["min_area_nm2"] == 0.5
    assert w.settings("fft_peaks")(wc)["fft_peaks"] == w.config["fft_peaks"]
    ctx = StageContext.create("gpa", {}, {}, params={"settings": gpa})
    assert ctx.section("gpa")["resolution_nm"] == 1.7
    (tiny_dataset / "s1" / "sample.yaml").write_text(yaml.safe_dump({"overrides": {"gpa": {"resolution": 1.7}}}))
    with pytest.raises(UserError) as e:
        Workflow({"dataset": str(tiny_dataset), "results": str(tmp_path / "r")})
    assert "sample.yaml" in str(e.value) and "resolution" in str(e.value)


def test_not_applicable_is_written_one_way(tmp_path):
    """ctx.not_applicable: applicable = False, the reason, the summary fragment and an empty figures folder."""
    import h5py

    from temtwin.io.h5 import read_summary

    ctx = StageContext.create("spin_orbit", {}, {"h5": str(tmp_path / "so.h5"), "figures": str(tmp_path / "figs")})
    ctx.not_applicable("no quantum well among the regions", "spin_orbit")
    with h5py.File(tmp_path / "so.h5") as f:
        assert not f.attrs["applicable"] and f.attrs["reason"] == "no quantum well among the regions"
        assert f.attrs["rule"] == "spin_orbit"
    assert read_summary(tmp_path / "so.h5") == {"spin_orbit": {"applicable": False,
                                                               "reason": "no quantum well among the regions"}}
    assert (tmp_path / "figs").is_dir() and not any((tmp_path / "figs").iterdir())


def test_thread_limits_never_change_numba_after_it_is_loaded(monkeypatch):
    """A stage run in a process where numba is already loaded must not change NUMBA_NUM_THREADS (numba
    raises 'Cannot set NUMBA_NUM_THREADS ... once the threads have been launched' at its next compile)."""
    import numba

    from temtwin.workflow.context import _set_threads

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    _set_threads(1)
    assert "NUMBA_NUM_THREADS" not in os.environ
    assert numba.get_num_threads() == 1
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
