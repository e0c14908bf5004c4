"""Kinematical diffraction: scattering factors, structure factors, absences, double diffraction,
zone patterns, symmetry equivalence and the validation set's orientation conventions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from temtwin.phase.database import load_builtin
from temtwin.phase.diffraction import (ALLOWED, DYNAMICAL, allowed_mask, classify, electron_scattering_factor,
                                       electron_wavelength_nm, structure_factors)
from temtwin.phase.zones import (build_pattern, equivalent_zones, four_index, laue_rotations, parse_zone_symbol,
                                 same_zone, zone_classes)

DATA = Path(__file__).parent / "data" / "phase" / "validation_orientations.json"


@pytest.fixture(scope="module")
def ph():
    return {p.name: p for p in load_builtin()}


def test_doyle_turner_factors_and_wavelength():
    # f_e(0) = sum of a_i (Doyle & Turner 1968): Si 5.819 Å, Au 10.558 Å; decreasing with s
    f = electron_scattering_factor([14, 79], [0.0, 0.5])
    assert f[0, 0] == pytest.approx(2.129 + 2.533 + 0.835 + 0.322, rel=1e-6)
    assert f[1, 0] == pytest.approx(2.388 + 4.226 + 2.689 + 1.255, rel=1e-6)
    assert np.all(f[:, 1] < f[:, 0])
    assert electron_wavelength_nm(300) == pytest.approx(1.9687e-3, rel=1e-3)
    assert electron_wavelength_nm(200) == pytest.approx(2.5079e-3, rel=1e-3)


def test_structure_factors_and_absences(ph):
    hkl = np.array([[1, 1, 1], [2, 0, 0], [2, 2, 0], [2, 2, 2], [1, 0, 0], [4, 0, 0]])
    si = allowed_mask(structure_factors(ph["Si"], hkl))
    assert si.tolist() == [True, False, True, False, False, True]       # diamond: 200, 222 forbidden
    gaas = allowed_mask(structure_factors(ph["GaAs"], hkl))
    assert gaas.tolist() == [True, True, True, True, False, True]       # zinc blende: 200 weak but allowed
    F = np.abs(structure_factors(ph["GaAs"], hkl))
    assert F[1] < 0.2 * F[2]
    bcc = allowed_mask(structure_factors(ph["Fe-bcc"], np.array([[1, 0, 0], [1, 1, 0], [2, 0, 0]])))
    assert bcc.tolist() == [False, True, True]
    # point-charge F of zinc blende 111: |4 (Z_A ± i Z_B)|
    F111 = structure_factors(ph["InP"], [[1, 1, 1]], point_charges=True)[0]
    assert abs(F111) == pytest.approx(4 * np.hypot(49, 15), rel=1e-9)


def test_double_diffraction_kept_only_where_possible(ph):
    # Si [110]: 002 forbidden but = (1-11) + (-111): dynamical; 222-type forbidden kept too
    p = build_pattern(ph["Si"], (1, 1, 0), 12.5)
    kinds = {tuple(h): k for h, k in zip(p.pts_hkl.tolist(), p.pts_kind.tolist())}
    assert kinds[(0, 0, 2)] == DYNAMICAL and kinds[(1, -1, 1)] == ALLOWED and kinds[(2, -2, 0)] == ALLOWED
    # Si [001]: 200 is not a sum of allowed zero-order reflections (220, 400): absent, not dynamical
    p = build_pattern(ph["Si"], (0, 0, 1), 12.5)
    hk = {tuple(h) for h in p.pts_hkl.tolist()}
    assert (2, 0, 0) not in hk and (2, 2, 0) in hk
    # fcc centring absences never become dynamical
    n = np.array([[i, j] for i in range(-3, 4) for j in range(-3, 4)])
    allowed = ((n[:, 0] + n[:, 1]) % 2 == 0) & np.any(n != 0, axis=1)
    kind = classify(n, allowed, keep_forbidden=True)
    assert not np.any(kind == DYNAMICAL)
    # wurtzite [11-20]: 0001 forbidden (6_3 screw) but dynamical
    p = build_pattern(ph["GaN"], (1, 1, 0), 12.5)
    kinds = {tuple(h): k for h, k in zip(p.pts_hkl.tolist(), p.pts_kind.tolist())}
    assert kinds[(0, 0, 1)] == DYNAMICAL
    p = build_pattern(ph["Si"], (1, 1, 0), 12.5, keep_forbidden=False)
    assert not np.any(p.pts_kind == DYNAMICAL)


def test_zone_enumeration_and_symmetry_equivalence(ph):
    si = ph["Si"]
    assert len(laue_rotations(si)) == 24 and len(laue_rotations(ph["GaN"])) == 12
    reps = {tuple(z) for z in zone_classes(si, 3)}
    assert {(0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)} <= reps
    assert len(reps) == 14        # 13 cubic families up to index 3; <123> splits into two hands
    assert same_zone(si, (0, 1, 1), (1, 0, 1)) and same_zone(si, (0, 1, 1), (-1, 1, 0))
    assert same_zone(si, (1, 1, 1), (-1, 1, -1)) and not same_zone(si, (0, 1, 1), (0, 0, 1))
    assert len(equivalent_zones(si, (0, 0, 1))) == 6 and len(equivalent_zones(si, (1, 1, 1))) == 8
    gan = ph["GaN"]
    assert same_zone(gan, (1, 1, 0), (1, 0, 0)) and same_zone(gan, (1, 1, 0), (0, -1, 0))
    assert same_zone(gan, (1, -1, 0), (1, 2, 0)) and same_zone(gan, (1, -1, 0), (-2, -1, 0))
    assert not same_zone(gan, (1, 1, 0), (1, -1, 0)) and not same_zone(gan, (0, 0, 1), (1, 0, 0))
    assert four_index((1, 1, 0)).tolist() == [1, 1, -2, 0]
    assert four_index((1, -1, 0)).tolist() == [1, -1, 0, 0]
    assert four_index((0, 0, 1)).tolist() == [0, 0, 0, 1]
    # projection symmetry of the spot patterns
    orders = {(n, z): build_pattern(ph[n], z, 12.5).order for n, z in
              [("Si", (1, 1, 0)), ("Si", (1, 1, 1)), ("Si", (0, 0, 1)), ("Si", (1, 1, 2)), ("ZnO", (0, 0, 1)),
               ("GaN", (1, 1, 0)), ("TiO2-rutile", (0, 0, 1))]}
    assert orders == {("Si", (1, 1, 0)): 2, ("Si", (1, 1, 1)): 6, ("Si", (0, 0, 1)): 4, ("Si", (1, 1, 2)): 2,
                      ("ZnO", (0, 0, 1)): 6, ("GaN", (1, 1, 0)): 2, ("TiO2-rutile", (0, 0, 1)): 4}




def test_reference_reflection_convention_matches_validation_truth(ph):
    """With the truth orientation matrix, our reference shell and g-vector angles reproduce the
    validation set's in_plane_rotation_deg and g_list (abTEM set, tests/data/phase)."""
    truth = json.loads(DATA.read_text())
    for case, t in truth.items():
        if case.startswith("_"):
            continue
        p = ph[t["phase"]]
        M = np.asarray(t["orientation_matrix"])
        zone = parse_zone_symbol(t["zone_axis"])
        pat = build_pattern(p, zone, 12.5)
        assert pat.order == t["projection_symmetry_order"], case
        g = (pat.ref_hkl @ p.reciprocal_nm) @ M.T
        ang = np.degrees(np.arctan2(g[:, 1], g[:, 0])) % 360
        assert ang.min() == pytest.approx(t["in_plane_rotation_deg"], abs=1e-3), case
        for row in t["g_list"]:
            h = np.array(parse_zone_symbol(row["hkl"].strip("()").join("[]")))
            gi = (h @ p.reciprocal_nm) @ M.T
            assert 1 / np.linalg.norm(gi[:2]) == pytest.approx(row["d_nm"], rel=1e-5)
            assert np.degrees(np.arctan2(gi[1], gi[0])) % 360 == pytest.approx(row["angle_deg"] % 360, abs=1e-3)
