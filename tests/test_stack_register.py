"""Pairwise registration (temtwin.stack.register) against generated stacks with exact truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from temtwin.stack.lattice import auto_lowpass_nm, lattice_spacing_nm
from temtwin.stack.register import register_pair
from temtwin.testing.synth.stack import device_field, device_stack


def truth_matrix(truth: dict, child: str, parent: str) -> np.ndarray:
    """(3, 3) child pixel -> parent pixel from the generator's truth (true pixel sizes)."""
    def to_frame(t):
        a = math.radians(t["rotation_deg"])
        M = np.eye(3)
        M[:2, :2] = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * t["pixel_size_nm"]
        M[:2, 2] = t["offset_nm"]
        return M
    return np.linalg.inv(to_frame(truth[parent])) @ to_frame(truth[child])


def errors(P, truth: dict, child: str, parent: str, shape) -> dict:
    """Worst-corner position error (% of the child's field of view), scale error (%), rotation error (deg)."""
    rows, cols = shape
    Mt = truth_matrix(truth, child, parent)
    pts = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1]], float).T
    d = (P.matrix @ pts - Mt @ pts)[:2] * truth[parent]["pixel_size_nm"]
    fov = cols * truth[child]["pixel_size_nm"]
    ratio = truth[child]["scale_ratio"] / truth[parent]["scale_ratio"]
    return {"pos_pct": 100 * float(np.hypot(*d).max()) / fov, "scale_pct": 100 * (P.scale / ratio - 1),
            "rot_deg": P.rotation_deg - (truth[child]["rotation_deg"] - truth[parent]["rotation_deg"])}


@pytest.fixture(scope="module")
def stacks():
    """Two small generated stacks: overview 256² at 0.5 nm, a 5x image 192² (3 % calibration error,
    rotation up to 3°) and a wrong image from another device."""
    return [device_stack(ratios=(5.0,), shape=(192, 192), overview_shape=(256, 256), seed=s) for s in (0, 1)]


def test_placement_accuracy_on_generated_stacks(stacks):
    for st in stacks:
        tr = st.truth()
        m, f = st.images["mag1"].micrograph, st.images["overview"].micrograph
        # the calibration really is off, and the image really is rotated
        assert abs(m.pixel_size_nm[0] / tr["mag1"]["pixel_size_nm"] - 1) > 1e-3
        P = register_pair(m.data, m.pixel_size_nm, f.data, f.pixel_size_nm)
        assert P.accepted, P.reason
        e = errors(P, tr, "mag1", "overview", m.shape)
        assert e["pos_pct"] < 1.0, e
        assert abs(e["scale_pct"]) < 0.5, e
        assert abs(e["rot_deg"]) < 0.3, e
        assert P.info["sigma_scale_pct"] < 0.5 and P.info["sigma_rotation_deg"] < 0.3


def test_wrong_image_is_refused(stacks):
    for st in stacks:
        w, f = st.images["wrong"].micrograph, st.images["overview"].micrograph
        P = register_pair(w.data, w.pixel_size_nm, f.data, f.pixel_size_nm)
        assert not P.accepted
        assert P.confidence < 0.3 and P.reason


def test_translation_only_exact_case():
    """Noise-free, no rotation, exact calibration: translation to 0.05 parent pixel, scale to 0.2 %."""
    fld = device_field((96.0, 96.0), seed=4)
    F, _ = fld.render((0.0, 0.0), 0.0, (192, 192), 0.5, None)
    off = (31.3, 40.7)
    M, _ = fld.render(off, 0.0, (160, 160), 0.125, None)
    P = register_pair(M, 0.125, F, 0.5)
    assert P.accepted
    expect = np.array([[0.25, 0, off[0] / 0.5], [0, 0.25, off[1] / 0.5]])
    assert np.abs(P.matrix[:2, 2] - expect[:, 2]).max() < 0.05
    assert np.abs(P.matrix[:2, :2] - expect[:, :2]).max() < 0.002 * 0.25


def test_rotation_outside_search_range_is_not_accepted():
    fld = device_field((96.0, 96.0), seed=5)
    F, _ = fld.render((0.0, 0.0), 0.0, (192, 192), 0.5, 2000.0, np.random.default_rng(0))
    M, _ = fld.render((30.0, 35.0), 12.0, (160, 160), 0.125, 2000.0, np.random.default_rng(1))
    P = register_pair(M, 0.125, F, 0.5, rotation_search_deg=3.0)
    assert not P.accepted


def test_refusals_without_search():
    rng = np.random.default_rng(0)
    F = rng.normal(100, 10, (128, 128)).astype(np.float32)
    small = register_pair(rng.normal(100, 10, (64, 64)), 0.05, F, 0.5)      # 6.4 px footprint
    assert not small.accepted and "min_footprint_px" in small.reason
    big = register_pair(rng.normal(100, 10, (64, 64)), 2.0, F, 0.5)         # larger than the parent
    assert not big.accepted and "larger" in big.reason
    flat = register_pair(np.full((96, 96), 5.0), 0.25, F, 0.5)
    assert not flat.accepted and "contrast" in flat.reason


def test_lattice_detection_sets_the_lowpass():
    from temtwin.testing.synth import crystal_scene, lowmag_device

    s = crystal_scene("Si", (1, 1, 0), 7.0, shape=(256, 256), pixel_size_nm=(0.02, 0.02), mode="hrtem",
                      dose=500, seed=1)
    d = lattice_spacing_nm(s.image, s.pixel_size_nm)
    assert d is not None and abs(d - 0.5431 / math.sqrt(3)) < 0.02      # Si (111), 0.3136 nm
    assert abs(auto_lowpass_nm((s.image, s.pixel_size_nm)) - 0.55 * d) < 1e-9
    low = lowmag_device(shape=(256, 256), pixel_size_nm=(0.5, 0.5), seed=2)
    assert lattice_spacing_nm(low.image, low.pixel_size_nm) is None
    assert lattice_spacing_nm(low.image, (0.6, 0.6)) is None     # lattice not resolvable at all


def test_refinement_climbs_back_to_the_correlation_maximum():
    """The final-level refinement (correlation-maximising Gauss-Newton steps) returns to the
    correlation maximum from starts displaced by 1 parent pixel, 1 % in scale or 0.5° in rotation
    (noise-free, content-rich field), to 0.02 parent pixel and 0.02 % / 0.01°; that maximum is the
    true similarity to 0.05 parent pixel, 0.1 % and 0.15° (the parent is sampled at 0.5 nm)."""
    from temtwin.stack.register import _level_sigma, _lk_level
    from temtwin.stack.sampling import features

    fld = device_field((96.0, 96.0), seed=4)
    F, _ = fld.render((0.0, 0.0), 0.0, (192, 192), 0.5, None)
    rot = math.radians(1.2)
    M, _ = fld.render((30.0, 38.0), 1.2, (160, 160), 0.125, None)
    c_M = np.array([159 * 0.125 / 2, 159 * 0.125 / 2])
    R = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    centre = np.array([30.0, 38.0]) + R @ c_M
    truth = np.array([centre[0], centre[1], math.cos(rot), math.sin(rot)])
    sig = _level_sigma(0.5, 0.0)
    T = features(M, 0.125, 0.5, sig, 0.0, True)
    Ff = features(F, 0.5, 0.5, sig, 0.0, True)

    def refine(start):
        return _lk_level(T, Ff, 0.5, np.zeros(2), c_M, start, 30, margin=3)

    best, v_best, _ = refine(truth)
    assert np.hypot(*(best[:2] - truth[:2])) < 0.5 * 0.05
    assert abs(math.hypot(best[2], best[3]) - 1) < 1e-3
    assert abs(math.degrees(math.atan2(best[3], best[2]) - rot)) < 0.15
    for d in ([0.5, 0, 0, 0], [0, -0.5, 0, 0], [0, 0, 0.01, 0], [0, 0, 0, -0.009]):
        start = truth + np.array(d)
        q, v, _ = refine(start)
        assert v >= v_best - 1e-4, d
        assert np.hypot(*(q[:2] - best[:2])) < 0.5 * 0.02, (d, q - best)
        assert abs(math.hypot(q[2], q[3]) - math.hypot(best[2], best[3])) < 2e-4, (d, q - best)
        assert abs(math.degrees(math.atan2(q[3], q[2]) - math.atan2(best[3], best[2]))) < 0.01, (d, q - best)
