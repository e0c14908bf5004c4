"""Automatic GPA choices: spots from the image, g pair, shared spots of mismatched phases, mask
centres and resolution, reference region rule; an amorphous image has no spots."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.gpa.choices import (Spots, auto_resolution, choose_reference, fft_spots, mask_centres,
                                 match_spot, pick_g_pair, region_spots)
from temtwin.testing.synth import crystal_scene, load_structure, render_atoms

PX = (0.02, 0.02)


def test_fft_spots_find_the_lattice_reflections():
    s = crystal_scene("Si", (1, 1, 0), 20.0, shape=(256, 256), pixel_size_nm=PX, dose=2000, seed=0)
    sp = fft_spots(s.image, PX)
    st = load_structure("Si")
    B = st.lattice.reciprocal_lattice_crystallographic.matrix * 10.0
    M = np.array(s.truth["orientation_matrix"])
    hkls = [(1, -1, 1), (1, -1, -1), (2, -2, 0), (0, 0, 4), (1, -1, 3), (1, -1, -3)]
    want = np.array([(M @ (np.array(h, float) @ B))[:2] for h in hkls])
    dk = 1.0 / (256 * PX[0])
    for w in want:                          # every strong low-order reflection is found
        d = np.minimum(np.hypot(*(sp.k - w).T), np.hypot(*(sp.k + w).T))
        assert d.min() < 0.5 * dk
    g, info = pick_g_pair(sp)
    for gi in g:                            # the pair is made of lattice reflections, non-collinear
        assert min(min(np.hypot(*(gi - w)), np.hypot(*(gi + w))) for w in want) < 0.5 * dk
    sin = abs(np.cross(np.r_[g[0], 0], np.r_[g[1], 0])[2]) / np.prod(np.hypot(*g.T))
    assert sin > np.sin(np.radians(35))


def test_amorphous_film_has_no_bragg_spots():
    rng = np.random.default_rng(1)
    W = 256 * PX[0]
    pos = rng.random((int(100 * W * W * 3), 3)) * [W, W, 3.0]
    img = render_atoms(pos, np.full(len(pos), 6), (256, 256), PX, mode="hrtem")
    img = rng.poisson(np.clip(img, 0, None) * 500).astype(np.float32)
    sp = fft_spots(img, PX)
    with pytest.raises(ValueError):
        pick_g_pair(sp)


def _spots(k, s):
    k = np.asarray(k, float)
    return Spots(k[:, 0], k[:, 1], np.asarray(s, float), np.asarray(s, float))


def test_pair_prefers_strong_precise_reflections_and_skips_weak_low_k_spots():
    # two strong inner spots at 60 deg, a weak layer-contrast spot at low k, a strong outer spot
    sp = _spots([[3.0, 0.0], [1.5, 2.6], [0.0, 0.5], [6.0, 0.0], [3.0, 5.2]], [1.0, 1.0, 0.03, 0.05, 0.05])
    g, info = pick_g_pair(sp)
    assert {tuple(np.round(x, 3)) for x in g} == {(3.0, 0.0), (1.5, 2.6)}
    assert info["reason"] == "strongest pair"


def test_shared_spots_mask_centres_and_mismatch_resolution():
    ref = _spots([[3.0, 0.0], [0.0, 3.2], [1.5, 2.6]], [1.0, 0.9, 0.2])
    # other phase: 10 % larger lattice (spots 10 % closer), the [1.5, 2.6] spot is missing there
    other = _spots([[-3.0 / 1.1, 0.0], [0.0, 3.2 / 1.1]], [1.0, 1.0])
    g, info = pick_g_pair(ref, [other])
    assert info["reason"] == "shared by all crystalline regions"
    assert {tuple(np.round(x, 3)) for x in g} == {(3.0, 0.0), (0.0, 3.2)}
    C, spread = mask_centres(g, info["matched"])
    for i in range(2):
        assert np.allclose(C[i], g[i] * (1 + 1 / 1.1) / 2)             # midway, sign-aligned
        assert spread[i] == pytest.approx(np.hypot(*g[i]) * (1 - 1 / 1.1))
    r, why = auto_resolution(g, spread, ref.k, C, periods=10.0, limits=(1.0, 4.0))
    assert r == pytest.approx(0.75 / spread.max()) and "mismatch" in why      # 2.58 < 3.33 nm
    r0, why0 = auto_resolution(g, None, ref.k, None, periods=5.0, limits=(1.0, 4.0))
    assert r0 == pytest.approx(5.0 / 3.0) and "spacing" in why0
    assert match_spot([3.0, 0.1], other) == 0 and match_spot([2.0, 2.0], other) == -1


def test_reference_rule():
    lab = np.zeros((100, 80), np.int32)
    lab[70:] = 1           # substrate (bottom), smaller than the layer above
    lab[20:70] = 2
    lab[:20] = 3
    assert choose_reference(lab)[0] == 1
    assert choose_reference(lab, substrate_side="none")[0] == 2
    assert choose_reference(lab, substrate_side="top")[0] == 3
    # an amorphous bottom region is skipped: the substrate-like region is the next crystalline one
    assert choose_reference(lab, crystalline={1: False, 2: True, 3: True})[0] in (2, 3)
    assert choose_reference(lab, crystalline={1: False, 2: False, 3: False})[0] == 0
    # same identified phase on both sides of a layer: the one touching the substrate side wins
    lab2 = lab.copy()
    lab2[:20] = 3
    lab2[20:70] = 2
    r, why = choose_reference(lab2, phase_of={1: "SiGe", 2: "Ge", 3: "SiGe"})
    assert r == 1 and "SiGe" in why
    # nothing touches the bottom: the largest region of the most extended phase
    lab3 = np.zeros((100, 80), np.int32)
    lab3[10:40, 10:40] = 1
    lab3[50:90, 10:70] = 2
    assert choose_reference(lab3)[0] == 2


def test_region_spots_see_only_their_region():
    kw = dict(shape=(256, 256), pixel_size_nm=PX, dose=None)
    a = crystal_scene("Si", (1, 1, 0), 0.0, **kw).image
    b = crystal_scene("Si", (0, 0, 1), 0.0, **kw).image
    img = a.copy()
    img[128:] = b[128:]
    top = np.zeros(img.shape, bool)
    top[:128] = True
    sa = region_spots(img, PX, top)
    sb = region_spots(img, PX, ~top)
    # [110] has the (111) family (d = 0.314 nm); [001] does not

    def has111(s):
        return np.any(np.abs(np.hypot(s.kx, s.ky) - 1 / 0.3136) < 0.1)
    assert has111(sa) and not has111(sb)
