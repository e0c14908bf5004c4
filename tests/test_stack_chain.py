"""Registration chain and overview choice (temtwin.stack.chain)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.image import Micrograph
from temtwin.stack.chain import choose_overview, place_stack
from temtwin.testing.synth.stack import device_stack


def _corner_error_pct(pl, shape, t: dict, px_ov: float) -> float:
    """Worst-corner error (% of the image's field of view) of a placement in the overview frame."""
    rows, cols = shape
    a = math.radians(t["rotation_deg"])
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * t["pixel_size_nm"]
    pts = np.array([[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]], float).T
    truth = R @ pts + np.asarray(t["offset_nm"])[:, None]
    found = (pl.to_overview[:2, :2] @ pts + pl.to_overview[:2, 2:]) * px_ov
    return 100 * float(np.hypot(*(found - truth)).max()) / (cols * t["pixel_size_nm"])


def test_chain_places_high_magnification_through_its_parent():
    """overview -> 4x -> 16x: the 16x image is registered into the 4x one and composed into the overview."""
    st = device_stack(ratios=(4.0, 4.0), shape=(192, 192), overview_shape=(256, 256), seed=4)
    pls = place_stack(st.micrographs, "overview", {})
    tr = st.truth()
    assert pls["overview"].accepted and np.allclose(pls["overview"].to_overview, np.eye(3))
    for name in ("mag1", "mag2"):
        pl = pls[name]
        assert pl.accepted, pl.reason
        assert _corner_error_pct(pl, (192, 192), tr[name], 0.5) < 1.0
        assert abs(pl.scale / tr[name]["scale_ratio"] - 1) < 0.005
        assert abs(pl.rotation_deg - tr[name]["rotation_deg"]) < 0.3
        assert abs(pl.offset_nm[0] - pl.to_overview[0, 2] * 0.5) < 1e-9
    assert pls["mag1"].parent == "overview" and pls["mag2"].parent == "mag1"
    # the wrong image is refused with a reason, and nothing else is placed on it
    assert not pls["wrong"].accepted and pls["wrong"].reason
    assert all(p.parent != "wrong" for p in pls.values())


def test_imprecise_placement_is_refused_not_used():
    """A 16x image whose only feature sits at its edge (seed 2): the best fit is 9 % of its field of view
    off; the fits of its halves disagree, so it is refused (and reported) instead of being used."""
    st = device_stack(ratios=(4.0, 4.0), shape=(192, 192), overview_shape=(256, 256), seed=2)
    pls = place_stack(st.micrographs, "overview", {})
    assert pls["mag1"].accepted
    assert not pls["mag2"].accepted and "not precise" in pls["mag2"].reason


def test_overview_choice():
    a = Micrograph(np.zeros((100, 100), np.float32), (1.0, 1.0), "a")
    b = Micrograph(np.zeros((400, 400), np.float32), (0.1, 0.1), "b")
    c = Micrograph(np.zeros((100, 100), np.float32), (1.0, 1.0), "c")
    assert choose_overview([a, b, c]) == "c"          # largest field of view; ties by name
    assert choose_overview([a, b, c], "b") == "b"
    with pytest.raises(UserError, match="register_stack.overview"):
        choose_overview([a, b], "nope")


def test_single_image_is_its_own_overview():
    m = Micrograph(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), (0.5, 0.5), "solo")
    pls = place_stack([m], choose_overview([m]), {})
    assert list(pls) == ["solo"] and pls["solo"].accepted and pls["solo"].scale == 1.0


def test_image_without_coarser_parent_is_reported():
    rng = np.random.default_rng(1)
    ov = Micrograph(rng.normal(size=(64, 64)).astype(np.float32), (1.0, 1.0), "ov")
    same = Micrograph(rng.normal(size=(32, 32)).astype(np.float32), (2.0, 2.0), "coarser_but_smaller")
    pls = place_stack([ov, same], "ov", {})
    assert not pls["coarser_but_smaller"].accepted
    assert "to register into" in pls["coarser_but_smaller"].reason
