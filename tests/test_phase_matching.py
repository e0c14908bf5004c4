"""Orientation search against generated peak lists with known answers (phase, zone, rotation, scale),
twins and overlapping crystals, calibration and scan-distortion recovery, misorientation."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.phase.database import load_builtin
from temtwin.phase.library import build_library
from temtwin.phase.matching import MatchSettings, Spots, identify
from temtwin.phase.orientation import misorientation
from temtwin.testing.phase_spots import angle_set_error, held_set, simulate_spots
from temtwin.phase.zones import same_zone
from temtwin.testing.synth.crystal import zone_frame

HELD = ["Si", "GaAs", "InP", "Cu", "Au", "Fe-bcc", "MgO", "SrTiO3", "GaN", "ZnO", "TiO2-rutile", "TiO2-anatase",
        "Al2O3-corundum", "HfO2-monoclinic", "InAs-wurtzite", "W"]


@pytest.fixture(scope="module")
def db():
    return {p.name: p for p in load_builtin()}


def _found_ref_angles(lib, c):
    return (c.theta_deg + np.rad2deg(lib.patterns[c.p].ref_angles)) % 360


def _run(cands, sim, cfg=None, **kw):
    lib = build_library(cands, 3, 18.0)
    sp = Spots.from_arrays(sim.kx, sim.ky, sim.snr, sampling=0.05)
    return lib, identify(lib, sp, cfg or MatchSettings(), **kw)


def test_held_set_accuracy_rotation_and_scale(db):
    """16 phases x low-index zones with noise, 25 % missing and spurious spots, 5 distractors each
    (none indistinguishable by the validation set's rule, none with a zone whose allowed-spot lattice
    coincides with the true one): top-1 phase + zone (up to symmetry) ≥ 95 %, rotation error ≤ 0.5°,
    scale error ≤ 0.5 %."""
    rng = np.random.default_rng(20240605)
    ok, errs, serr, n = 0, [], [], 0
    for ph, z, sim, cands in held_set([db[n] for n in HELD], rng, pool=[db[n] for n in sorted(db)],
                                         exclude_coincident=True):
        lib, cr = _run(cands, sim)
        n += 1
        c = cr[0] if cr else None
        good = c is not None and c.phase == ph.name and same_zone(ph, c.uvw, z)
        ok += good
        if good:
            errs.append(angle_set_error(_found_ref_angles(lib, c), sim.ref_angles_deg))
            serr.append(abs(c.scale / sim.scale - 1))
    assert n >= 45
    assert ok / n >= 0.95, f"accuracy {ok}/{n}"
    assert max(errs) <= 0.5
    assert max(serr) <= 0.005


def test_three_percent_calibration_error_recovered(db):
    """±3 % calibration errors are recovered by the scale factor to ±0.5 %.  Cu [001] and Si [001] are
    the same square spot lattice up to a 6.2 % scale (Cu 200 vs Si 220): Cu seen at 0.97 is Si at 1.03,
    undecidable from spot positions, so Si is left out of the candidates when the truth is Cu.  Rutile
    [001] seen 3 % too small competes with rutile [112] (a sparser pattern that explains two thirds of
    the spots with higher coverage; a known limit of the score at large calibration errors): there the
    true zone must be among the candidates, with its scale recovered."""
    rng = np.random.default_rng(3)
    names = ("Si", "GaN", "Cu", "SrTiO3", "TiO2-rutile", "InSb")
    undecidable = {"Cu": {"Si"}}
    top1 = 0
    for name, z in [("Si", (1, 1, 0)), ("GaN", (1, 1, 0)), ("Cu", (0, 0, 1)), ("TiO2-rutile", (0, 0, 1))]:
        cands = [db[n] for n in names if n not in undecidable.get(name, set())]
        for scale in (1.03, 0.97):
            sim = simulate_spots(db[name], z, rng.uniform(0, 360), rng, scale=scale, g_max=10.0, missing=0.2)
            lib, cr = _run(cands, sim)
            c = cr[0]
            if c.phase == name and same_zone(db[name], c.uvw, z):
                top1 += 1
                assert c.scale == pytest.approx(scale, abs=0.005)
            else:
                true = [k for k in c.candidates if k["phase"] == name and same_zone(db[name], k["zone_axis"], z)]
                assert true and true[0]["scale_factor"] == pytest.approx(scale, abs=0.005), (name, scale)
    assert top1 >= 7


def test_rotation_convention_and_symmetry_equivalent_answers(db):
    """Any symmetry-equivalent zone is accepted; the reported rotation is the smallest image angle
    of the largest-d allowed reflections, identical for all equivalent descriptions."""
    si = db["Si"]
    rng = np.random.default_rng(11)
    for z in [(0, 1, 1), (1, 0, 1), (-1, 1, 0), (1, 1, 0)]:
        sim = simulate_spots(si, z, 12.0, rng, g_max=10.0, missing=0.0, n_spurious=0, position_noise=0.0,
                             abs_noise=0.0)
        lib, cr = _run([si, db["Au"]], sim)
        c = cr[0]
        assert c.phase == "Si" and same_zone(si, c.uvw, (1, 1, 0))
        assert c.rotation_deg == pytest.approx(sim.rotation_deg, abs=1e-3)
        # the orientation matrix predicts every simulated spot
        g = (sim.hkl[sim.true] @ si.reciprocal_nm) @ sim.M.T
        g2 = (np.asarray(c.hkl) @ si.reciprocal_nm) @ c.M.T
        assert len(g2) == len(g)
        mo = misorientation(si, c.M, si, sim.M)
        assert mo.angle_deg < 0.01


def test_twin_and_overlapping_epitaxial_crystals(db):
    rng = np.random.default_rng(2)
    si = db["Si"]
    cands = [si, db["Au"], db["GaN"], db["MgO"], db["InSb"], db["InP"]]
    M1 = zone_frame(si.lattice_nm, (1, -1, 0), 20.0)
    ax = np.array([1, 1, 1]) / np.sqrt(3)
    K = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    R = np.eye(3) + np.sin(np.pi / 3) * K + (1 - np.cos(np.pi / 3)) * K @ K
    M2 = M1 @ R.T                                  # Σ3 twin: 60° about [111]
    z2 = np.rint(M2[2] * np.sqrt(2)).astype(int)
    a = simulate_spots(si, (1, -1, 0), 20.0, rng, g_max=9, n_spurious=1, missing=0.1)
    b = simulate_spots(si, tuple(z2), 0.0, rng, g_max=9, n_spurious=0, missing=0.1, orientation=M2)
    lib = build_library(cands, 3, 18.0)
    sp = Spots.from_arrays(np.r_[a.kx, b.kx], np.r_[a.ky, b.ky], np.r_[a.snr, b.snr], 0.05)
    cr = identify(lib, sp, MatchSettings())
    assert len(cr) == 2 and all(c.phase == "Si" and c.identified for c in cr)
    mo = misorientation(si, cr[0].M, si, cr[1].M)
    assert mo.angle_deg == pytest.approx(60.0, abs=0.3) and "Σ3" in mo.relation
    # InP and InSb overlapping (cube-on-cube), both found, relation parallel
    a = simulate_spots(db["InP"], (1, 1, 0), 33.0, rng, g_max=9, n_spurious=1)
    b = simulate_spots(db["InSb"], (1, 1, 0), 33.0, rng, g_max=9, n_spurious=0)
    sp = Spots.from_arrays(np.r_[a.kx, b.kx], np.r_[a.ky, b.ky], np.r_[a.snr, b.snr], 0.05)
    cr = identify(lib, sp, MatchSettings())
    assert {c.phase for c in cr} == {"InP", "InSb"}
    mo = misorientation(db[cr[0].phase], cr[0].M, db[cr[1].phase], cr[1].M)
    assert mo.angle_deg < 0.5 and mo.relation.startswith("cube-on-cube")


def test_random_spots_not_identified(db):
    rng = np.random.default_rng(5)
    lib = build_library([db[n] for n in ("Si", "GaN", "Cu", "SrTiO3", "TiO2-rutile", "Au")], 3, 18.0)
    n_id = 0
    for _ in range(10):
        v = rng.uniform(1.5, 8, 6) * np.exp(1j * rng.uniform(0, 2 * np.pi, 6))
        v = np.r_[v, -v]
        cr = identify(lib, Spots.from_arrays(v.real, v.imag, np.full(len(v), 6.0), 0.05), MatchSettings())
        n_id += bool(cr and cr[0].identified)
    assert n_id <= 1
    # collinear spots (one row of fringes) cannot fix an orientation
    v = np.array([1, 2, 3, -1, -2, -3]) * 3.19 * np.exp(0.3j)
    assert identify(lib, Spots.from_arrays(v.real, v.imag), MatchSettings()) == []


def test_scan_distortion_correction(db):
    """A row-wise scan drift (shear of the slow axis) biases a similarity fit; the triangular
    (fast-axis-preserving) fit recovers the rotation."""
    rng = np.random.default_rng(8)
    zno = db["ZnO"]
    D = np.array([[0.0, 0.03], [0.0, -0.01]])     # x' = x + 0.03 y, y' = 0.99 y
    sim = simulate_spots(zno, (0, 0, 1), 14.9, rng, g_max=10, distortion=D, missing=0.0, n_spurious=0,
                         position_noise=0.001, abs_noise=0.002)
    lib = build_library([zno, db["Si"], db["Cu"]], 3, 18.0)
    sp = Spots.from_arrays(sim.kx, sim.ky, sim.snr, 0.05)
    plain = identify(lib, sp, MatchSettings())[0]
    fixed = identify(lib, sp, MatchSettings(), scan_rows=True)[0]
    e_plain = angle_set_error(_found_ref_angles(lib, plain), sim.ref_angles_deg)
    e_fixed = angle_set_error(_found_ref_angles(lib, fixed), sim.ref_angles_deg)
    assert e_plain > 0.5 and e_fixed < 0.1
    assert fixed.scan_distortion[0, 1] == pytest.approx(0.03, abs=0.005)


def test_scan_drift_prior_enters_the_confidence():
    """A candidate that fits a row-scanned image only through a drift map far beyond the scan prior
    (11 % shear, 9 % stretch; real drift is a few %) is not a confident answer, even with a better fit
    (the haadf_BaTiO3 case of bench_phase_robustness: anatase [111] at fit 0.68 with A = [0.11, 0.91]
    over BaTiO3 [001] at fit 0.45 with A = [0.01, 0.97]); drift within the prior costs little."""
    from temtwin.phase.matching import posterior

    cfg = MatchSettings()
    fit, scale = np.array([0.68, 0.45]), np.array([0.925, 1.005])
    A = np.array([[0.11, 0.911], [0.012, 0.974]])
    assert posterior(fit, scale, cfg)[0] > 0.98                 # fit alone: confidently the distorted one
    conf = posterior(fit, scale, cfg, A)
    assert conf[0] < 0.5 and conf.sum() == pytest.approx(1.0)
    # equal fits, both within a 3 % drift: neither is ruled out
    c2 = posterior(np.array([0.6, 0.6]), scale, cfg, np.array([[0.03, 0.97], [0.0, 1.0]]))
    assert 0.3 < c2[0] < 0.5
