"""Stage-guided placement (temtwin.stack.prior): a stage prior refined by content on generated stacks.

The scene is analytic (nm): a horizontal interface (y = 30 nm), optionally a vertical trench wall
(x = 40 nm, below the interface) that makes a corner.  The parent (0.5 nm/px) and the child
(0.1 nm/px, rotated 1°) are rendered from it with independent noise; the truth is known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from temtwin.io.image import Micrograph
from temtwin.stack.chain import place_stack
from temtwin.stack.prior import register_with_prior, stage_prior


def scene(x, y, corner: bool):
    v = 1.0 + 0.8 * (0.5 + 0.5 * erf((y - 30.0) / 0.6))
    if corner:
        v = v - 0.6 * (0.5 + 0.5 * erf((y - 30.0) / 0.6)) * (0.5 + 0.5 * erf((x - 40.0) / 0.6))
    return v


def render(shape, px, centre, rot_deg, corner, noise, rng):
    """Image of ``shape`` whose centre (between outer pixel centres) is at ``centre`` (nm), rotated."""
    r, c = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    u = (c - 0.5 * (shape[1] - 1)) * px
    v = (r - 0.5 * (shape[0] - 1)) * px
    t = math.radians(rot_deg)
    x = centre[0] + math.cos(t) * u - math.sin(t) * v
    y = centre[1] + math.sin(t) * u + math.cos(t) * v
    img = scene(x, y, corner) * 100.0
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32)


PARENT = dict(shape=(160, 160), px=0.5)          # 79.5 nm field of view, centre (39.75, 39.75)
CHILD_CENTRE, CHILD_ROT = (41.5, 31.0), 1.0


def _stack(corner: bool, seed=0):
    rng = np.random.default_rng(seed)
    par = render(PARENT["shape"], PARENT["px"], (39.75, 39.75), 0.0, corner, 2.0, rng)
    ch = render((128, 128), 0.1, CHILD_CENTRE, CHILD_ROT, corner, 4.0, rng)
    return par, ch


def _corner_error_nm(pl, child_shape=(128, 128)):
    """Largest corner error (nm) of a placement's matrix against the truth."""
    n = child_shape[0]
    t = math.radians(CHILD_ROT)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    err = []
    for c, r in [(0, 0), (n - 1, 0), (0, n - 1), (n - 1, n - 1)]:
        true = np.array(CHILD_CENTRE) + R @ ((np.array([c, r]) - 0.5 * (n - 1)) * 0.1)
        est = (pl.matrix @ np.array([c, r, 1.0]))[:2] * PARENT["px"]
        err.append(np.hypot(*(true - est)))
    return max(err), est - true


def _prior(dx_nm, dy_nm):
    parent_stage = (0.0, 0.0, 0.0)
    child_stage = ((CHILD_CENTRE[0] - 39.75 + dx_nm) / 1e3, (CHILD_CENTRE[1] - 39.75 + dy_nm) / 1e3, CHILD_ROT)
    return stage_prior(child_stage, parent_stage, (79.5, 79.5))


def test_stage_prior_geometry():
    """A child centred at the parent's centre + (10, -5) nm with the parent rotated by 90°."""
    p = stage_prior((0.010, -0.005, 95.0), (0.0, 0.0, 90.0), (100.0, 60.0))
    # stage vector (10, -5) nm seen in parent axes rotated by 90°: R(-90°) (10, -5) = (-5, -10)
    assert p[:2] == pytest.approx([50.0 - 5.0, 30.0 - 10.0], abs=1e-9)
    assert math.degrees(math.atan2(p[3], p[2])) == pytest.approx(5.0)


def test_interface_only_rests_on_content_and_stage():
    """Across the interface the content corrects the stage error; along it the stage prior stays."""
    par, ch = _stack(corner=False)
    sigma = 0.03 * 79.5
    pl = register_with_prior(ch, 0.1, par, 0.5, _prior(1.2, 1.5), sigma_pos_nm=sigma)
    assert pl.accepted, pl.reason
    assert pl.info["basis"] == "content+stage"
    _, d = _corner_error_nm(pl)
    # the interface fixes y (stage error 1.5 nm corrected to < 0.1 nm); x keeps the stage's 1.2 nm error
    centre_err = (pl.matrix @ np.array([63.5, 63.5, 1.0]))[:2] * 0.5 - np.array(CHILD_CENTRE)
    assert abs(centre_err[1]) < 0.1
    assert abs(centre_err[0] - 1.2) < 0.5
    assert pl.info["stage_limited_error_pct"] > pl.info["precision_pct"]


def test_corner_rests_on_content():
    """A corner fixes both directions: the stage error is corrected in x and y."""
    par, ch = _stack(corner=True)
    pl = register_with_prior(ch, 0.1, par, 0.5, _prior(1.2, 1.5), sigma_pos_nm=0.03 * 79.5)
    assert pl.accepted, pl.reason
    assert pl.info["basis"] == "content"
    err, _ = _corner_error_nm(pl)
    assert err < 0.01 * 12.7 * 1.5          # ~1 % of the child's field of view


def test_no_shared_structure_rests_on_stage():
    """A child with no structure in common (pure noise): the placement is the stage prior itself."""
    par, _ = _stack(corner=False)
    ch = np.random.default_rng(3).normal(100, 4, (128, 128)).astype(np.float32)
    prior = _prior(0.0, 0.0)
    pl = register_with_prior(ch, 0.1, par, 0.5, prior, sigma_pos_nm=0.03 * 79.5, stage_confidence=0.5)
    assert pl.info["basis"] == "stage"
    assert pl.confidence == pytest.approx(0.5)
    err, _ = _corner_error_nm(pl)
    assert err < 1e-6


def test_place_stack_uses_stage_metadata_and_refuses_without():
    par, ch = _stack(corner=False, seed=1)
    ov = Micrograph(par, (0.5, 0.5), "overview", meta={"stage_x_um": 0.0, "stage_y_um": 0.0,
                                                       "scan_rotation_deg": 0.0})
    st = ((CHILD_CENTRE[0] - 39.75) / 1e3, (CHILD_CENTRE[1] - 39.75) / 1e3)
    hr = Micrograph(ch, (0.1, 0.1), "hrtem", meta={"stage_x_um": st[0], "stage_y_um": st[1],
                                                   "scan_rotation_deg": CHILD_ROT})
    p = place_stack([ov, hr], "overview", {})["hrtem"]
    assert p.accepted, p.reason
    assert p.link.info["basis"] in ("content+stage", "content")
    assert _corner_error_nm(p.link)[0] < 0.01 * 12.7        # within 1 % of its field of view
    hr0 = Micrograph(ch, (0.1, 0.1), "hrtem")
    p0 = place_stack([ov, hr0], "overview", {})["hrtem"]
    assert not p0.accepted and "no stage position for hrtem" in p0.reason


def _disc_pair(seed: int = 0):
    """A round wire (radius 70 nm, transmission 0.4 in 0.9) in a 300 nm parent at 1 nm/px and a 192 nm
    child at 0.75 nm/px centred 2 nm off the wire's centre that sees its whole edge; independent
    Poisson noise at 3 counts/px and independent 2 nm texture of 10 % in each image (as two exposures
    of a specimen whose fine mass-thickness detail differs)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)

    def img(shape, px, origin):
        r, c = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
        x, y = origin[0] + c * px, origin[1] + r * px
        t = np.where(np.hypot(x - 150.0, y - 150.0) <= 70.0, 0.4, 0.9)
        tex = ndi.gaussian_filter(rng.standard_normal(shape), 2.0 / px)
        t = ndi.gaussian_filter(t * (1 + 0.1 * tex / tex.std()), 0.7 / px)
        return rng.poisson(3.0 * t).astype(np.float32)

    centre = (152.0, 149.0)
    par = img((301, 301), 1.0, (0.0, 0.0))
    ch = img((257, 257), 0.75, (centre[0] - 96.0, centre[1] - 96.0))
    return par, ch, centre


def test_round_wire_rotation_follows_the_stage():
    """Content with rotational symmetry fixes the position, not the rotation: the rotation stays at the
    stage prior's (0.6° here, truth 0°), the centre follows the content (stage 6 nm off), and the
    confidence is judged where the noise is averaged out (the parent-resolution correlation is low)."""
    par, ch, centre = _disc_pair()
    t = math.radians(0.6)
    prior = np.array([centre[0] + 6.0, centre[1] - 4.0, math.cos(t), math.sin(t)])
    pl = register_with_prior(ch, 0.75, par, 1.0, prior, sigma_pos_nm=9.0)
    assert pl.accepted, pl.reason
    assert pl.info["rotation_from_content"] is False
    assert pl.rotation_deg == pytest.approx(0.6, abs=0.3)       # the content alone drifts to the 4° bound
    c = (pl.matrix @ np.array([128.0, 128.0, 1.0]))[:2]
    assert np.hypot(*(c - centre)) < 0.01 * 192           # within 1 % of the child's field of view
    assert pl.info["confidence_pixel_nm"] > 1.0            # decided on the coarse level
