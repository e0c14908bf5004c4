"""Detectors and their combination on generated FFTs with exactly known reflections."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.peaks.combine import find_peaks, fit_lattice, friedel_pairs
from temtwin.peaks.gaussian import detect_gaussian, noise_threshold
from temtwin.peaks.metrics import counts, prf
from temtwin.peaks.profile import detect_profile
from temtwin.testing.fft_spectra import simulate_spectrum, zone_lattice
from temtwin.workflow.seeds import rng as seeded


@pytest.fixture(scope="module")
def spectra():
    """A fixed set of generated spectra (128 px): crystals of many kinds, and 4 without any crystal."""
    out = []
    for i in range(16):
        out.append(simulate_spectrum(seeded(11, "test-peaks", i), size=128))
    for i in range(4):
        out.append(simulate_spectrum(seeded(11, "test-peaks-amorphous", i), size=128, amorphous_only=True))
    return out


def _score(spectra, detect):
    tot = np.zeros(4)
    for s in spectra:
        d = detect(s.spectrum)
        tot += counts(np.c_[d["rows"], d["cols"]], np.c_[s.rows, s.cols], s.snr)[:4]
    return prf(*tot)


def test_zone_lattice_is_kinematic_truth():
    """Si [110]: {111} at d = a/sqrt3, (002) extinct (kinematically forbidden), (220) strong."""
    zl = zone_lattice("Si", (1, 1, 0), 0.0, 8.0)
    g = np.hypot(*zl["g"].T)
    hkl = [tuple(h) for h in zl["hkl"]]
    F2 = dict(zip(hkl, zl["F2"]))
    assert g[hkl.index((1, -1, 1))] == pytest.approx(np.sqrt(3) / 0.5431, rel=1e-9)
    assert F2[(0, 0, 2)] == 0 and F2[(1, -1, 1)] > 0 and F2[(2, -2, 0)] > F2[(1, -1, 1)]


def test_gaussian_detector_precision_recall(spectra):
    p, r, _ = _score(spectra, detect_gaussian)
    assert p >= 0.95 and r >= 0.6


def test_profile_detector_precision_recall(spectra):
    p, r, _ = _score(spectra, detect_profile)
    assert p >= 0.9 and r >= 0.6


def test_combination_precision_recall_and_amorphous(spectra):
    tot = np.zeros(4)
    for s in spectra:
        pk = find_peaks(s.spectrum, detectors=("gaussian", "profile"))
        tot += counts(np.c_[pk.rows, pk.cols], np.c_[s.rows, s.cols], s.snr)[:4]
        if len(s.rows) == 0:
            assert not pk.crystalline and len(pk) <= 2
        elif (s.snr >= 8).sum() >= 2:
            assert pk.crystalline
        # every kept peak has its Friedel partner, or its partner is outside the measured area
        _, outside = friedel_pairs(s.spectrum, pk.rows, pk.cols)
        assert np.all(pk.paired | outside)
    p, r, f = prf(*tot)
    assert p >= 0.9 and r >= 0.85


def test_noise_threshold_false_alarm_rate():
    """Pure-noise spectra: the Gaussian detector's expected false alarms per spectrum stay near the budget."""
    n = 0
    for i in range(12):
        s = simulate_spectrum(seeded(5, "noise", i), size=128, amorphous_only=True, artefacts=False)
        n += len(detect_gaussian(s.spectrum, false_alarms=0.05)["rows"])
    assert n <= 3
    # the Euler-characteristic threshold grows with the area and falls with the budget
    assert noise_threshold(1e5, 1.0, 0.05) > noise_threshold(1e4, 1.0, 0.05) > noise_threshold(1e4, 1.0, 1.0)


def test_profile_scan_removes_cross_artefacts():
    """Strong streaks along kx = 0 and ky = 0 and no crystal: no profile peak anywhere on the cross."""
    hits = 0
    for i in range(6):
        g = seeded(3, "cross", i)
        s = simulate_spectrum(g, size=128, amorphous_only=True, artefacts=True)
        while not s.info.get("streaks"):
            s = simulate_spectrum(g, size=128, amorphous_only=True, artefacts=True)
        d = detect_profile(s.spectrum)
        c = s.spectrum.center
        hits += int(np.sum((np.abs(d["rows"] - c) <= 3) | (np.abs(d["cols"] - c) <= 3)))
    assert hits == 0


def test_subpixel_accuracy_noise_free():
    """Noise-free spots: refined positions within 0.1 grid pixel (median) of the truth."""
    errs = []
    for i in range(6):
        s = simulate_spectrum(seeded(2, "noisefree", i), size=128, noise=False, broaden=False, artefacts=False,
                              second_grain=False, s_max=500.0)
        pk = find_peaks(s.spectrum, detectors=("gaussian",), lattice_completion=False)
        d = np.hypot(pk.rows[:, None] - s.rows[None, :], pk.cols[:, None] - s.cols[None, :])
        if d.size:
            m = d.min(1)
            errs.append(m[m < 1.0])
    errs = np.concatenate(errs)
    assert len(errs) > 50 and np.median(errs) <= 0.1


def test_fit_lattice_recovers_basis():
    B = np.array([[7.3, 1.2], [-2.1, 9.4]])
    ij = np.array([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 2], [2, 1], [1, -1]])
    v = ij @ B + np.random.default_rng(0).normal(0, 0.1, (len(ij), 2))
    v = np.vstack([v, -v])
    Bf, inl = fit_lattice(v)
    assert inl.all()
    # same lattice: each basis vector of one is an integer combination of the other
    coef = B @ np.linalg.inv(Bf)
    assert np.allclose(coef, np.rint(coef), atol=0.05) and abs(abs(np.linalg.det(np.rint(coef))) - 1) < 1e-9
