"""GPA core: recovered uniform strain, rotation, a strain step with interfaces and displacement,
10 % mismatch without wrapping artefacts, periodic decomposition, gradient integration."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.gpa.core import (gpa, integrate_gradient, periodic_component, polar_strain, resolution_to_sigma,
                              sigma_to_resolution)
from temtwin.testing.gpa_textbook import textbook_gpa
from temtwin.testing.synth import crystal_scene, layered_scene, load_structure

PX = (0.02, 0.02)


def lattice_g(M, hkl_list, phase="Si", scale=1.0):
    """Image-frame reciprocal vectors (nm^-1) of reflections of an oriented crystal."""
    st = load_structure(phase)
    B = st.lattice.reciprocal_lattice_crystallographic.matrix * 10.0 / scale   # rows a*, b*, c* (1/nm)
    return np.array([(np.asarray(M) @ (np.asarray(h, float) @ B))[:2] for h in hkl_list])


def interior(a, margin):
    return a[margin:-margin, margin:-margin]


@pytest.fixture(scope="module")
def si_g():
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(8, 8), pixel_size_nm=PX, dose=None)
    return lattice_g(s.truth["orientation_matrix"], [(2, -2, 0), (1, -1, -3)])


def test_resolution_sigma_roundtrip():
    assert sigma_to_resolution(resolution_to_sigma(1.3)) == pytest.approx(1.3)
    # FWHM of the real-space kernel: sigma_x = 1 / (2 pi sigma_k)
    assert 2.3548 / (2 * np.pi * resolution_to_sigma(1.0)) == pytest.approx(1.0, rel=1e-4)


def test_uniform_strain_is_recovered(si_g):
    E = np.array([[0.012, 0.004], [0.004, -0.018]])
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(256, 256), pixel_size_nm=PX, dose=3000, seed=2, strain=E)
    r = gpa(s.image, PX, si_g, 1.0, refine=False)
    m = 50
    for name, want in (("exx", E[0, 0]), ("eyy", E[1, 1]), ("exy", E[0, 1]), ("rotation", 0.0)):
        got = interior(getattr(r, name), m)
        assert np.nanmean(got) == pytest.approx(want, abs=6e-4), name
        assert np.nanstd(got) < 2e-3, name
    assert r.mask[m:-m, m:-m].all()


def test_refinement_removes_a_wrong_reference_g(si_g):
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(256, 256), pixel_size_nm=PX, dose=3000, seed=4)
    r = gpa(s.image, PX, si_g * 1.02 + 0.05, 1.0, refine=True)
    assert np.abs(r.g_vectors - si_g).max() < 2e-3
    assert abs(np.nanmean(interior(r.eyy, 50))) < 3e-4


def test_rotation_is_recovered_and_is_not_strain(si_g):
    t = np.radians(1.5)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(256, 256), pixel_size_nm=PX, dose=3000, seed=5,
                      strain=R - np.eye(2))
    r = gpa(s.image, PX, si_g, 1.0, refine=False)
    assert np.nanmean(interior(r.rotation, 50)) == pytest.approx(t, abs=3e-4)
    for name in ("exx", "eyy", "exy"):
        assert abs(np.nanmean(interior(getattr(r, name), 50))) < 5e-4, name


@pytest.fixture(scope="module")
def step_scene():
    layers = [dict(thickness_nm=3.2), dict(thickness_nm=3.0, eyy=0.02), dict(thickness_nm=2.0)]
    return layered_scene(layers=layers, shape=(420, 300), pixel_size_nm=PX, dose=2000, seed=1)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_strain_step_interfaces_and_displacement(step_scene):
    s = step_scene
    M = s.truth["orientation_matrix"]
    g = lattice_g(M, [(2, -2, 0), (0, 0, 4)])
    ref = np.zeros(s.labels.shape, bool)
    ref[-140:-60, :] = True                       # inside the bottom layer (label 1)
    r = gpa(s.image, PX, g, 0.8, reference_mask=ref)
    lay = {l["label"]: l for l in s.truth["layers"]}
    cols = slice(60, 240)
    prof = np.nanmean(r.eyy[:, cols], axis=1)
    y = np.arange(len(prof)) * PX[1]

    def rows(y0, y1, pad=0.9):
        return (y > min(y0, y1) + pad) & (y < max(y0, y1) - pad)
    mid = rows(lay[2]["y_top_nm"], lay[2]["y_bottom_nm"])
    assert prof[mid].mean() == pytest.approx(0.02, abs=1e-3)
    assert np.abs(prof[mid] - 0.02).max() < 2.5e-3
    assert abs(prof[rows(lay[1]["y_top_nm"], lay[1]["y_bottom_nm"])].mean()) < 5e-4
    assert abs(prof[rows(lay[3]["y_top_nm"], lay[3]["y_bottom_nm"], 0.6) & (y > 1.0)].mean()) < 1e-3
    # interfaces: half-height crossings of the profile
    for yt in (lay[2]["y_top_nm"], lay[2]["y_bottom_nm"]):
        win = (y > yt - 1.2) & (y < yt + 1.2)
        yy, pp = y[win], prof[win] - 0.01
        k = np.nonzero(np.diff(np.sign(pp)))[0]
        assert len(k) >= 1
        yc = yy[k[0]] - pp[k[0]] * (yy[k[0] + 1] - yy[k[0]]) / (pp[k[0] + 1] - pp[k[0]])
        assert yc == pytest.approx(yt, abs=0.2)
    # displacement: uy = 0 in the bottom layer, then falls by eyy * 3 nm across the middle layer (up = -y)
    uy = np.nanmean(r.displacement[1][:, cols], axis=1)
    top_rows = rows(lay[3]["y_top_nm"], lay[3]["y_bottom_nm"], 0.5) & (y > 0.8)
    assert np.nanmean(uy[rows(lay[1]["y_top_nm"], lay[1]["y_bottom_nm"])]) == pytest.approx(0.0, abs=0.004)
    assert np.nanmean(uy[top_rows]) == pytest.approx(-0.02 * 3.0, abs=0.008)


def _cos_lattice(shape, px, g1, g2, F_top=None, y_int=None):
    """Two-g cosine lattice; the upper part (y < y_int) is deformed by F (r' = F r about y_int)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    x, y = x * px, y * px
    G = np.array([g1, g2])
    if F_top is not None:
        Gt = G @ np.linalg.inv(F_top)
        top = y < y_int
        ph = [np.where(top, Gt[i, 0] * x + Gt[i, 1] * (y - y_int), G[i, 0] * x + G[i, 1] * (y - y_int))
              for i in range(2)]
    else:
        ph = [G[i, 0] * x + G[i, 1] * y for i in range(2)]
    return (np.cos(2 * np.pi * ph[0]) + np.cos(2 * np.pi * ph[1])).astype(np.float32)


def test_ten_percent_mismatch_without_wrapping_artefacts():
    px = 0.02
    g1, g2 = np.array([4.8, 0.05]), np.array([2.45, -5.1])
    F = np.eye(2) * 1.104
    img = _cos_lattice((480, 320), px, g1, g2, F, y_int=4.8)
    img += np.random.default_rng(0).normal(0, 0.3, img.shape).astype(np.float32)
    G = np.array([g1, g2])
    centres = 0.5 * (G + G / 1.104)              # one mask spans both phases' spots
    ref = np.zeros(img.shape, bool)
    ref[300:, :] = True
    r = gpa(img, (px, px), G, 1.0, reference_mask=ref, mask_centers=centres)
    top = np.s_[75:165, 50:270]                  # >= 1.5 nm from the edge and the interface
    bot = np.s_[315:405, 50:270]
    for name in ("exx", "eyy"):
        assert np.nanmean(r.__dict__[name][top]) == pytest.approx(0.104, abs=1.5e-3), name
        assert np.nanmax(np.abs(r.__dict__[name][top] - 0.104)) < 4e-3, name     # no 2 pi jumps
        assert np.nanmax(np.abs(r.__dict__[name][bot])) < 4e-3, name
    assert np.nanmax(np.abs(r.exy[top])) < 5e-3
    # the textbook (first-order) formula is biased at this mismatch: 1 - 1/1.104 = 0.094
    t = textbook_gpa(img, (px, px), centres, 1.0, reference_mask=ref)
    assert abs(np.nanmean(t["eyy"][top]) - 0.104) > 5e-3


def test_polar_strain_of_a_pure_rotation_and_a_stretch():
    t = 0.3
    e = polar_strain(np.cos(t), -np.sin(t), np.sin(t), np.cos(t))
    assert np.allclose(e[:3], 0, atol=1e-12) and e[3] == pytest.approx(t)
    e = polar_strain(1.1, 0.0, 0.0, 0.95)
    assert np.allclose(e, (0.1, -0.05, 0.0, 0.0), atol=1e-12)


def test_periodic_component_removes_edge_jumps():
    y, x = np.mgrid[0:64, 0:80].astype(np.float32)
    u = 0.3 * x + 0.1 * y + np.sin(x / 5.0)
    p = periodic_component(u)
    assert np.abs(p[:, -1] - p[:, 0]).mean() < 0.05 * np.abs(u[:, -1] - u[:, 0]).mean()
    assert np.abs(p[-1, :] - p[0, :]).mean() < 0.05 * np.abs(u[-1, :] - u[0, :]).mean()


def test_integrate_gradient_recovers_a_known_function():
    dy, dx = 0.1, 0.2
    y, x = np.mgrid[0:40, 0:50].astype(float)
    x, y = x * dx, y * dy
    f = np.sin(x) * np.cos(0.5 * y) + 0.3 * x * y
    gx = np.cos(x) * np.cos(0.5 * y) + 0.3 * y
    gy = -0.5 * np.sin(x) * np.sin(0.5 * y) + 0.3 * x
    got = integrate_gradient(gx, gy, dx, dy)
    assert np.abs((got - got.mean()) - (f - f.mean())).max() < 0.02
