"""Human corrections (overrides.yaml): schema, per-job slices, and how segment / phase_id honour them.

Ground truth: a pick must give exactly the picked candidate's phase and zone axis, with spots
re-indexed in that zone (zone law h·u = 0); merges and exclusions are checked pixel by pixel.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from test_phase_stage import _write_peaks as write_peaks

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, read_summary, read_table, write_array
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.phase.database import builtin_phase_files, load_builtin
from temtwin.testing.phase_spots import simulate_spots
from temtwin.stages.phase_id import run as run_phase
from temtwin.testing.synth.crystal import load_structure, orientation_matrix
from temtwin.workflow.context import StageContext
from temtwin.workflow.overrides import apply_segment, read_overrides, stage_actions

DOC = {"sample": "s", "images": {
    "img": {"regions": {"1": {"action": "pick", "phase": "InSb", "zone_axis": [1, 1, 0]},
                        "2": {"action": "amorphous"}, "4": {"action": "exclude"}},
            "merge": [[3, 5]]},
    "other": {"regions": {"7": {"action": "amorphous"}}}}}


def _write(tmp_path, doc) -> str:
    p = tmp_path / "overrides.yaml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return str(p)


def test_schema_and_slices(tmp_path):
    doc = read_overrides(_write(tmp_path, DOC), "s")
    assert stage_actions(doc, "img", "segment") == {"exclude": [4], "merge": [[3, 5]]}
    assert stage_actions(doc, "img", "phase_id") == {"regions": {
        "1": {"action": "pick", "phase": "InSb", "zone_axis": [1, 1, 0]}, "2": {"action": "amorphous"}}}
    assert stage_actions(doc, "other", "segment") == {}
    assert stage_actions(doc, "none", "phase_id") == {}


@pytest.mark.parametrize("bad, words", [
    ({"images": {"img": {"regions": {"1": {"action": "pick", "phase": "Ge"}}}}}, "zone_axis"),
    ({"images": {"img": {"regions": {"1": {"action": "delete"}}}}}, "action"),
    ({"images": {"img": {"regions": {"x": {"action": "exclude"}}}}}, "x"),
    ({"images": {"img": {"merge": [[2, 2]]}}}, "itself"),
    ({"sample": "t", "images": {}}, "sample 't'"),
    ("images: [1,", "YAML"),
])
def test_bad_files_give_one_line_naming_the_file(tmp_path, bad, words):
    p = _write(tmp_path, bad)
    with pytest.raises(UserError) as e:
        read_overrides(p, "s")
    msg = str(e.value)
    assert "overrides.yaml" in msg and words in msg and "\n" not in msg


def test_segment_merge_chain_and_exclude():
    labels = np.repeat(np.arange(1, 7, dtype=np.int32), 4)[None, :].repeat(3, 0)
    out, info = apply_segment(labels, {"merge": [[2, 3], [3, 5]], "exclude": [6]})
    want = {1: 1, 2: 2, 3: 2, 4: 4, 5: 2, 6: 0}
    assert np.array_equal(out, np.vectorize(want.get)(labels))
    assert json.loads(info["overrides"])["exclude"] == [6]
    with pytest.raises(UserError, match="region 9"):
        apply_segment(labels, {"exclude": [9]})


# ------------------------------------------------------------------ phase_id honours picks
SHAPE, PX, ROT = (64, 64), (0.025, 0.025), 6.5


@pytest.fixture(scope="module")
def peaks_scene(tmp_path_factory):
    """Regions 1, 2: InP [110] spots (simulated, 15 % missing, one spurious)."""
    tmp = tmp_path_factory.mktemp("ovr_phase")
    m = Micrograph(np.zeros(SHAPE, np.float32) + 1, PX, name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0", "mode": "TEM"})
    with atomic_h5(tmp / "image.h5") as f:
        write_image_h5(f, m)
    with atomic_h5(tmp / "segmentation.h5") as f:
        write_array(f, "labels", np.ones(SHAPE, np.int32), "label")
    inp = load_builtin(["InP"])[0]
    M = orientation_matrix(load_structure("InP"), (1, 1, 0), ROT, reference=(1, -1, 0))
    regions = {}
    for label in (1, 2):
        sim = simulate_spots(inp, (1, 1, 0), 0.0, np.random.default_rng(label), g_max=9.0, missing=0.15,
                             n_spurious=1, orientation=M)
        regions[label] = (sim.kx, sim.ky, sim.snr, True)
    write_peaks(tmp / "peaks.h5", regions, SHAPE)
    return tmp


def _phase_ctx(tmp, out, overrides=()):
    return StageContext.create(
        "phase_id", {"image": str(tmp / "image.h5"), "segmentation": str(tmp / "segmentation.h5"),
                     "peaks": str(tmp / "peaks.h5"), "cifs": [str(p) for p in builtin_phase_files()],
                     "settings": [], "overrides": [str(p) for p in overrides]},
        {"h5": str(out / "phases.h5"), "figures": str(out / "figs")},
        {"phase_id": {"bragg": {"enabled": False}, "figures": False, "shared_calibration": False,
                      "elements": ["In", "P", "Ga", "As"], "calibration": {"uncertainty": 0.005}}},
        wildcards={"sample": "s", "image": "img"})


def test_phase_id_honours_pick_and_amorphous(peaks_scene, tmp_path):
    auto = tmp_path / "auto"
    run_phase(_phase_ctx(peaks_scene, auto))
    with h5py.File(auto / "phases.h5", "r") as f:
        assert f["regions/1"].attrs["phase"] == "InP"
        cand = read_table(f["regions/1/candidates"])
    # pick the runner-up candidate of region 1 (a different phase or zone than the automatic call)
    other = next(i for i in range(len(cand["phase"]))
                 if (cand["phase"][i], cand["zone_u"][i], cand["zone_v"][i], cand["zone_w"][i])
                 != (cand["phase"][0], cand["zone_u"][0], cand["zone_v"][0], cand["zone_w"][0]))
    want_phase = str(cand["phase"][other])
    want_zone = [int(cand["zone_u"][other]), int(cand["zone_v"][other]), int(cand["zone_w"][other])]
    ov = _write(tmp_path, {"sample": "s", "images": {"img": {"regions": {
        "1": {"action": "pick", "phase": want_phase, "zone_axis": want_zone},
        "2": {"action": "amorphous", "note": "checked by hand"}}}}})
    out = tmp_path / "ovr"
    run_phase(_phase_ctx(peaks_scene, out, [ov]))
    summ = read_summary(out / "phases.h5")["regions"]
    assert summ["1"]["phase"] == want_phase and summ["1"]["zone_axis"] == want_zone
    assert summ["1"]["override"] == "pick" and summ["1"]["automatic_phase"] == "InP"
    assert summ["1"]["identified"] is True
    assert summ["2"]["phase"] == "" and summ["2"]["amorphous"] is True and summ["2"]["identified"] is False
    with h5py.File(out / "phases.h5", "r") as f:
        g = f["regions/1"]
        assert g.attrs["source"] == "override" and g.attrs["phase"] == want_phase
        sp = read_table(g["spots"])
        hkl = np.c_[sp["h"], sp["k"], sp["l"]]
        assert len(hkl) >= 2 and np.all(hkl @ np.asarray(want_zone) == 0)   # re-indexed in the picked zone
        assert want_phase in f["phases"]
        assert not bool(f["regions/2"].attrs["identified"])
    # a candidate the region does not have: one clear line
    bad = _write(tmp_path, {"images": {"img": {"regions": {"1": {"action": "pick", "phase": "InP",
                                                                 "zone_axis": [9, 7, 5]}}}}})
    with pytest.raises(UserError, match="not among its candidates"):
        run_phase(_phase_ctx(peaks_scene, tmp_path / "bad", [bad]))


def test_segment_stage_honours_exclude_and_merge(tmp_path):
    """Rule segment with a hand-drawn label map (4 horizontal bands) and overrides: band 4 excluded,
    band 3 merged into band 2; the other labels keep their numbers."""
    from temtwin.stages.segment import run as run_segment

    img = np.random.default_rng(0).normal(100, 5, (64, 48)).astype(np.float32)
    m = Micrograph(img, (0.05, 0.05), name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0", "mode": "TEM"})
    with atomic_h5(tmp_path / "image.h5") as f:
        write_image_h5(f, m)
    bands = np.repeat(np.arange(1, 5, dtype=np.int32), 16)[:, None].repeat(48, 1)
    np.save(tmp_path / "img.npy", bands)
    ov = _write(tmp_path, {"images": {"img": {"regions": {"4": {"action": "exclude"}}, "merge": [[3, 2]]}}})
    ctx = StageContext.create("segment", {"image": str(tmp_path / "image.h5"), "override": [str(tmp_path / "img.npy")],
                                          "overrides": [ov]},
                              {"h5": str(tmp_path / "segmentation.h5"), "figures": str(tmp_path / "figs")},
                              wildcards={"sample": "s", "image": "img"})
    run_segment(ctx)
    with h5py.File(tmp_path / "segmentation.h5", "r") as f:
        labels = f["labels"][()]
        assert f.attrs["source"] == "override+overrides" and json.loads(f.attrs["overrides"])["exclude"] == [4]
        assert sorted(f["contours"]) == ["1", "2"]
        assert read_table(f["regions"])["area_nm2"].tolist() == pytest.approx([16 * 48 * 0.0025, 32 * 48 * 0.0025])
    assert np.array_equal(labels, np.vectorize({1: 1, 2: 2, 3: 2, 4: 0}.get)(bands))
    assert set(read_summary(tmp_path / "segmentation.h5")["regions"]) == {"1", "2"}
