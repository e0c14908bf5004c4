"""Stage register_stack end to end on a generated stack with per-image results written as the upstream
stages would (image.h5, segmentation.h5, phases.h5, gpa.h5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from temtwin.config import load_config
from temtwin.io.h5 import atomic_h5, missing_units, read_summary, write_array
from temtwin.io.ingest import write_image_h5
from temtwin.stages.register_stack import run
from temtwin.testing.synth.stack import device_stack
from temtwin.workflow.context import StageContext

PHASES = {7: "Si", 9: "Si", 3: "W"}      # truth labels of temtwin.testing.synth.stack: 7 Si channel, 9 substrate, 3 W


def write_inputs(root: Path, st, phases_for=("mag1",), gpa_for=("mag1",), strain=(0.01, -0.02)) -> dict:
    """Per-image result files of a generated stack (truth segmentation; phases and GPA where asked)."""
    paths: dict = {k: [] for k in ("images", "segmentations", "phases", "gpas")}
    for name, si in st.images.items():
        d = root / "results" / "s" / name
        d.mkdir(parents=True, exist_ok=True)
        m = si.micrograph
        m.meta["source_file"] = str(d / f"{name}.hspy")
        with atomic_h5(d / "image.h5") as f:
            write_image_h5(f, m)
        lab = st.labels(name)
        with atomic_h5(d / "segmentation.h5") as f:
            write_array(f, "labels", lab, "label")
        if name in phases_for:
            with atomic_h5(d / "phases.h5") as f:
                g = f.create_group("regions")
                for lb in np.unique(lab):
                    ph = PHASES.get(int(lb), "")
                    r = g.create_group(str(int(lb)))
                    r.attrs["phase"] = ph
                    r.attrs["identified"] = bool(ph)
                    r.attrs["confidence"] = 0.9
                    r.attrs["zone_axis"] = np.array([1, 1, 0])
                    r.attrs["rotation_deg"] = 5.0
        with atomic_h5(d / "gpa.h5") as f:
            if name in gpa_for:
                f.attrs["applicable"] = True
                s = f.create_group("strain")
                write_array(s, "exx", np.full(m.shape, strain[0]), "1")
                write_array(s, "eyy", np.full(m.shape, strain[1]), "1")
                write_array(s, "exy", np.zeros(m.shape), "1")
                write_array(f, "rotation", np.zeros(m.shape), "rad")
                write_array(f, "mask", np.isin(lab, [7, 9]), "1")
            else:
                f.attrs["applicable"] = False
                f.attrs["reason"] = "not crystalline"
        for k, fn in zip(paths, ("image.h5", "segmentation.h5", "phases.h5", "gpa.h5")):
            p = d / fn
            paths[k].append(str(p))
    return paths


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    st = device_stack(ratios=(5.0,), shape=(160, 160), overview_shape=(224, 224), seed=3)
    paths = write_inputs(root, st)
    out = {"h5": str(root / "results" / "s" / "stack.h5"), "figures": str(root / "results" / "s" / "figs")}
    ctx = StageContext.create("register_stack", paths, out, wildcards={"sample": "s"}, threads=2)
    run(ctx)
    return st, out


def test_stack_h5_layout_and_summary(stage_run):
    st, out = stage_run
    assert missing_units(out["h5"]) == []
    tr = st.truth()
    with h5py.File(out["h5"], "r") as f:
        assert f.attrs["overview"] == "overview"
        g = f["images/mag1"]
        assert bool(g.attrs["accepted"]) and g.attrs["parent"] == "overview"
        T = g["transform"][()]
        assert T.shape == (2, 3)
        # offset_nm = overview-frame point of pixel (0, 0) = transform @ (0, 0, 1) x overview pixel size
        assert np.allclose(g.attrs["offset_nm"], T[:, 2] * 0.5)
        fov = 160 * tr["mag1"]["pixel_size_nm"]
        assert np.hypot(*(g.attrs["offset_nm"] - np.array(tr["mag1"]["offset_nm"]))) < 0.01 * fov
        # 32-px footprint only: the precision targets are tested in test_stack_register
        assert abs(g.attrs["scale"] / tr["mag1"]["scale_ratio"] - 1) < 0.01
        assert abs(g.attrs["rotation_deg"] - tr["mag1"]["rotation_deg"]) < 0.3
        assert not bool(f["images/wrong"].attrs["accepted"]) and f["images/wrong"].attrs["reason"]
        assert np.allclose(f["images/overview/transform"][()], np.eye(3)[:2])
        names = [n.decode() if isinstance(n, bytes) else n for n in f["phase_names"][()]]
        pm = f["phase_map"][()]
        assert pm.shape == (224, 224) and names[0] == ""
        reg = {k: dict(v.attrs) for k, v in f["regions"].items()}
    s = read_summary(out["h5"])
    assert s["stack"]["overview"] == "overview"
    pl = s["images"]["mag1"]["placement"]
    assert set(pl) >= {"parent", "offset_nm", "scale", "rotation_deg", "confidence"}
    assert s["images"]["wrong"]["placement"]["accepted"] is False
    assert s["images"]["wrong"]["placement"]["offset_nm"] is None
    # the overview regions under the 5x image received the phases identified in it
    lab_ov = st.labels("overview")
    covered = {k: v for k, v in s["stack"]["regions"].items() if v["sources"]}
    assert covered, "no overview region received a phase"
    for k, v in covered.items():
        assert v["phase"] == PHASES[int(k)]          # the truth segmentations agree
        assert v["sources"][0]["image"] == "mag1"
        assert names[pm[lab_ov == int(k)][0]] == v["phase"]
        src = json.loads(reg[k]["sources"])
        assert abs(src[0]["rotation_deg_overview"] - (5.0 + tr["mag1"]["rotation_deg"])) < 0.3
    # strain from the 5x image's GPA, rotated into the overview axes (exx 0.01, eyy -0.02 there)
    strained = {k: json.loads(v["strain"]) for k, v in reg.items() if v["strain"] != "null"}
    assert set(strained) == {k for k in covered if int(k) in (7, 9)} and strained   # GPA mask: Si only
    t = math.radians(tr["mag1"]["rotation_deg"])
    for v in strained.values():
        assert abs(v["exx_mean"] - (0.01 * math.cos(t) ** 2 - 0.02 * math.sin(t) ** 2)) < 1e-5
        # exy = 0.03 sin t cos t: within 0.03 x the 0.3 deg rotation tolerance
        assert abs(v["exy_mean"] - 0.03 * math.cos(t) * math.sin(t)) < 0.03 * math.radians(0.3)
        assert v["images"] == ["mag1"]
    assert (Path(out["figures"]) / "stack_overview.png").stat().st_size > 5000
    assert (Path(out["figures"]) / "phase_map.png").stat().st_size > 5000     # labelled map, legend, scale bar


def test_single_image_sample(tmp_path):
    st = device_stack(ratios=(), shape=(64, 64), overview_shape=(96, 96), seed=1, wrong_image=False)
    paths = write_inputs(tmp_path, st, phases_for=("overview",), gpa_for=())
    out = {"h5": str(tmp_path / "stack.h5"), "figures": str(tmp_path / "figs")}
    run(StageContext.create("register_stack", paths, out, wildcards={"sample": "s"}))
    s = read_summary(out["h5"])
    assert s["stack"]["n_images"] == 1 and s["images"]["overview"]["placement"]["scale"] == 1.0
    lab = st.labels("overview")
    for k, v in s["stack"]["regions"].items():
        assert v["phase"] == PHASES.get(int(k), "")
        assert (int(k) in PHASES) == bool(v["sources"])
    assert int((lab > 0).sum()) == lab.size


def test_missing_upstream_results_are_tolerated(tmp_path):
    """No phases.h5/gpa.h5 at all (paths that do not exist): placements still written, no phases."""
    st = device_stack(ratios=(5.0,), shape=(96, 96), overview_shape=(160, 160), seed=5, wrong_image=False)
    paths = write_inputs(tmp_path, st, phases_for=(), gpa_for=())
    paths["phases"] = [p + ".missing" for p in paths["phases"]]
    paths["gpas"] = [p + ".missing" for p in paths["gpas"]]
    out = {"h5": str(tmp_path / "stack.h5"), "figures": str(tmp_path / "figs")}
    run(StageContext.create("register_stack", paths, out, wildcards={"sample": "s"}))
    s = read_summary(out["h5"])
    assert set(s["images"]) == {"overview", "mag1"}
    assert all(v["phase"] == "" for v in s["stack"]["regions"].values())


def test_config_section_defaults_and_validation():
    cfg = load_config({}, require_dataset=False)["register_stack"]
    assert cfg["min_confidence"] == 0.3 and cfg["lowpass_nm"] == "auto" and cfg["overview"] == ""
    assert cfg["scale_search_pct"] == 5.0 and cfg["rotation_search_deg"] == 4.0 and cfg["max_error_pct"] == 2.0
    from temtwin.errors import UserError

    with pytest.raises(UserError):
        load_config({"register_stack": {"min_confidence": 2}}, require_dataset=False)
    with pytest.raises(UserError):
        load_config({"register_stack": {"unknown_key": 1}}, require_dataset=False)
