"""Absolute lattice: relaxed reciprocal bases, indexing, strain relative to a region's own relaxed
lattice (InSb on InP), tensor rotation, interface direction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from temtwin.gpa import absolute as ab

A_INP, A_INSB = 0.58687, 0.64794


def test_relaxed_basis_lengths_angle_and_orientation():
    g_meas = np.array([[4.8, 0.05], [2.45, -5.1]])
    G = ab.relaxed_basis([(2, -2, 0), (1, -1, -3)], [A_INP] * 3, [90] * 3, g_meas)
    assert np.hypot(*G[0]) == pytest.approx(math.sqrt(8) / A_INP)
    assert np.hypot(*G[1]) == pytest.approx(math.sqrt(11) / A_INP)
    cos = (np.array([2, -2, 0]) @ np.array([1, -1, -3])) / math.sqrt(8 * 11)
    assert G[0] @ G[1] / np.prod(np.hypot(*G.T)) == pytest.approx(cos)
    assert math.atan2(G[0, 1], G[0, 0]) == pytest.approx(math.atan2(0.05, 4.8))
    assert np.sign(np.cross(np.r_[G[0], 0], np.r_[G[1], 0])[2]) == np.sign(4.8 * -5.1 - 0.05 * 2.45)


def test_index_reflection_with_sign():
    spots = {"kx": np.array([4.8, 2.45]), "ky": np.array([0.05, -5.1]), "h": np.array([2, 1]),
             "k": np.array([-2, -1]), "l": np.array([0, -3])}
    assert ab.index_reflection([4.81, 0.04], spots) == (2, -2, 0)
    assert ab.index_reflection([-2.45, 5.1], spots) == (-1, 1, 3)
    assert ab.index_reflection([3.5, 3.5], spots) is None


def test_strain_relative_to_own_relaxed_lattice_insb_on_inp():
    g_meas = np.array([[4.8, 0.05], [2.45, -5.1]])
    hkl = [(2, -2, 0), (1, -1, -3)]
    G_inp = ab.relaxed_basis(hkl, [A_INP] * 3, [90] * 3, g_meas)
    G_insb = ab.relaxed_basis(hkl, [A_INSB] * 3, [90] * 3, G_inp)
    # relaxed InSb seen from InP: F = (a_InSb / a_InP) I, plus a small rotation
    m = A_INSB / A_INP
    t = 0.01
    F = tuple(np.array(v) for v in (m * math.cos(t), -m * math.sin(t), m * math.sin(t), m * math.cos(t)))
    exx, eyy, exy, om = ab.strain_relative_to(F, G_inp, G_insb)
    assert exx == pytest.approx(0, abs=1e-12) and eyy == pytest.approx(0, abs=1e-12)
    assert exy == pytest.approx(0, abs=1e-12) and om == pytest.approx(t)
    # the relative strain itself is the lattice-parameter ratio (10.4 %)
    e = ab.strain_relative_to(F, G_inp, G_inp)
    assert e[0] == pytest.approx(m - 1) and e[1] == pytest.approx(m - 1)
    # maps <-> F round trip and local g
    F2 = ab.distortion_from_maps(np.array(m - 1), np.array(m - 1), np.array(0.0), np.array(t))
    assert np.allclose([float(v) for v in F2], [float(v) for v in F])
    gl = ab.local_g(F2, G_inp)
    assert np.hypot(*gl[:, :].reshape(2, 2).T) == pytest.approx(np.hypot(*G_insb.T))


def test_rotate_tensor_invariants_and_uniaxial_case():
    exx, eyy, exy = 0.01, -0.02, 0.005
    for ang in (0.0, 30.0, -75.0):
        xx, yy, xy = ab.rotate_tensor(exx, eyy, exy, ang)
        assert xx + yy == pytest.approx(exx + eyy)
        assert xx * yy - xy * xy == pytest.approx(exx * eyy - exy * exy)
    # uniaxial strain along 30 deg becomes exx' in the frame at 30 deg
    t = math.radians(30)
    u = np.array([math.cos(t), math.sin(t)])
    e = 0.02 * np.outer(u, u)
    xx, yy, xy = ab.rotate_tensor(e[0, 0], e[1, 1], e[0, 1], 30.0)
    assert (xx, yy, xy) == pytest.approx((0.02, 0.0, 0.0), abs=1e-12)


def test_interface_angle_of_a_tilted_boundary():
    yy, xx = np.mgrid[0:200, 0:200]
    slope = math.tan(math.radians(-5))
    lab = np.where(yy > 100 + slope * (xx - 100), 1, 2).astype(np.int32)
    assert ab.interface_angle(lab, 1) == pytest.approx(-5.0, abs=0.5)
    assert ab.interface_angle(np.ones((20, 20), np.int32), 1) is None
