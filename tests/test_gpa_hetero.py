"""GPA of mismatched heterostructures (issue 17): each crystal its own g vectors when no pair is
shared, strain still relative to the reference lattice; artefact flags."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.config import load_config
from temtwin.gpa.choices import Spots, corresponding_pair, match_spot
from temtwin.stages.gpa import _summary, analyse
from temtwin.io.image import Micrograph
from temtwin.testing.heterostructure import heterostructure

PX = (0.02, 0.02)
CFG = load_config({}, require_dataset=False)["gpa"]


@pytest.fixture(scope="module")
def insb_inp():
    return heterostructure("InSb/InP", (320, 320), PX, rotation_deg=33.0, thickness_nm=6.0, defocus_nm=4.0,
                           dose=500.0, seed=2)


def test_corresponding_pair_finds_the_planes_of_a_rotated_mismatched_crystal():
    g = np.array([[4.8, 0.3], [1.0, -6.7]])
    t = np.radians(10.0)                       # 10 % larger lattice rotated by 10 deg: no match_spot
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    p = (g / 1.104) @ R.T
    other = np.array([[3.0, 3.1], [6.2, 1.4]])  # unrelated spots
    k = np.vstack([p[0], -p[1], other])
    sp = Spots(k[:, 0], k[:, 1], np.ones(4), np.array([1.0, 0.9, 0.8, 0.7]))
    assert match_spot(g[0], sp) < 0 or match_spot(g[1], sp) < 0
    pair, info = corresponding_pair(g, sp)
    assert np.allclose(pair, p, atol=1e-9)
    assert info["scale"] == pytest.approx(1 / 1.104, rel=1e-6) and info["rotation_deg"] == pytest.approx(10.0)
    assert corresponding_pair(g, Spots(other[:, 0], other[:, 1], np.ones(2))) is None


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_ten_percent_mismatch_with_separate_g(insb_inp, mode):
    """InSb on InP (10.4 %): the layer's mean strain relative to InP within 0.3 % with its own g
    vectors (and with the shared pair); the reference stays at 0; flags tell the user."""
    img, clean, labels, truth = insb_inp
    cfg = dict(CFG)
    cfg["separate_g"] = mode
    an = analyse(Micrograph(img, PX, name="x", sample="s", meta={}), labels, {}, {}, cfg)
    if mode == "always":
        assert list(an.separate) == [2]
        assert an.separate[2]["scale"] == pytest.approx(1 / 1.104, abs=0.01)
    st = an.regions[2]
    for k in ("exx", "eyy", "exy"):
        assert st[k][0] == pytest.approx(truth[2][k], abs=3e-3), k
        assert st["se"][k] > 0
        assert abs(an.regions[1][k][0]) < 5e-4
    codes = {f["code"] for f in an.flags[2]}
    assert "composition_interface" in codes and "large_strain" in codes
    assert ("separate_g" in codes) == (mode == "always")
    summ = _summary(an)
    assert summ["regions"]["2"]["strain"]["eyy"]["mean"] == pytest.approx(truth[2]["eyy"], abs=3e-3)
    assert "composition_interface" in summ["regions"]["2"]["gpa_flags"]


def test_never_masks_a_crystal_without_shared_reflections(insb_inp):
    """With the layer's peaks (as another tool might report them) rotated away from every shared g
    and separate_g: never, the layer is masked (reason code 2) and has no mean, with the reason."""
    img, clean, labels, truth = insb_inp
    cfg = dict(CFG)
    an0 = analyse(Micrograph(img, PX, name="x", sample="s", meta={}), labels, {}, {}, cfg)
    g = an0.result.g_vectors
    t = np.radians(10.0)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    fake = (g / 1.104) @ R.T                    # the layer's spots as another tool might report them
    peaks = {2: {"crystalline": True, "table": {"kx": fake[:, 0], "ky": fake[:, 1],
                                                 "intensity": np.ones(2), "snr": np.full(2, 50.0)}}}
    cfg["separate_g"] = "never"
    an = analyse(Micrograph(img, PX, name="x", sample="s", meta={}), labels, peaks, {}, cfg)
    assert (an.invalid_reason[labels == 2] > 0).all() and (an.invalid_reason[labels == 2] == 2).mean() > 0.8
    assert an.regions[2]["reason"] and np.isnan(an.regions[2]["eyy"][0])
