"""The one spot finder (temtwin.peaks.spots.find_spots) and its two presets against analytic spots.

A generated two-lattice image (two sums of cosines with known g vectors, 3 reflections each, plus
Gaussian noise): every preset finds exactly the analytic spots, to 0.5 FFT pixel with sub-pixel
refinement (the isolated preset reports the nearest FFT pixel unless asked); an interface (a
step edge, whose spectrum is a streak through the origin) is not a spot for the isolated preset.
"""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.peaks.spots import (ISOLATED_SPOTS, WELCH_SPOTS, canonical, fft_spots, find_spots, isolated_spots,
                                 radial_median)

PX = 0.02                                                    # nm


def _lattice(g1, g2):
    return np.array([g1, g2, np.add(g1, g2)], float)         # nm⁻¹: g1, g2, g1 + g2


GA = _lattice([2.13, 0.71], [-0.52, 3.07])
_R = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
GB = _lattice(_R @ [3.61, 1.18], _R @ [0.93, -2.47])
G = canonical(np.vstack([GA, GB]))                           # the six analytic spots (one per ±g)


def _image(n, lattices=((GA, 0.5), (GB, 0.3)), noise=1.0, step=0.0, seed=0):
    """Sum of cosines (amplitude a, random phase) of each lattice's g, a step of ``step`` at x = 0.47
    of the width, Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] * PX
    img = np.zeros((n, n))
    for gs, a in lattices:
        for g in gs:
            img += a * np.cos(2 * np.pi * (g[0] * x + g[1] * y) + rng.uniform(0, 2 * np.pi))
    img += step * (x > 0.47 * n * PX)
    return img + noise * rng.standard_normal((n, n))


def _offsets_px(found, truth, dk):
    """(len(truth), 2) |Δkx|, |Δky| in FFT pixels from each analytic spot to its nearest found spot."""
    d = found.k[None, :, :] - truth[:, None, :]
    j = np.argmin(np.hypot(d[..., 0], d[..., 1]), axis=1)
    return np.abs(d[np.arange(len(truth)), j]) / dk


@pytest.mark.parametrize("preset,n,exact", [(WELCH_SPOTS, 768, True), (ISOLATED_SPOTS, 512, False)])
def test_each_preset_finds_the_analytic_spots_of_two_lattices(preset, n, exact):
    sp = find_spots(_image(n), PX, preset)
    dk = 1.0 / (min(n, preset.tile) * PX)
    assert len(sp) == len(G)                                 # each reflection once, nothing else
    off = _offsets_px(sp, G, dk)
    if exact:                                                # sub-pixel refinement: 0.5 px (in fact ~0.1)
        assert np.hypot(*off.T).max() < 0.5
    else:     # nearest FFT pixel (noise and the other spots' leakage can tip it to a neighbour), and
        assert off.max() < 1.0           # with the core's sub-pixel refinement switched on, 0.5 px
        fine = find_spots(_image(n), PX, preset, subpixel=True)
        assert np.hypot(*_offsets_px(fine, G, dk).T).max() < 0.5
    assert np.all(sp.snr >= preset.min_ratio) and np.all(np.diff(sp.strength) <= 0)


def test_the_presets_are_the_library_functions():
    img = _image(512, seed=2)
    for a, b in [(fft_spots(img, (PX, PX)), find_spots(img, PX, WELCH_SPOTS)),
                 (isolated_spots(img, (PX, PX)), find_spots(img, PX, ISOLATED_SPOTS))]:
        assert len(a) == len(b) == len(G) and np.array_equal(a.k, b.k)


def test_an_interface_streak_is_not_a_spot_for_the_isolated_preset():
    step_only = _image(512, lattices=(), step=3.0, seed=1)
    assert len(find_spots(step_only, PX, ISOLATED_SPOTS)) == 0
    # without the isolation and power-share tests the streak's maxima would pass (the test bites)
    loose = find_spots(step_only, PX, ISOLATED_SPOTS, isolation=None, min_power_share=0.0)
    assert len(loose) >= 2 and np.all(np.abs(loose.ky) < 1.0 / (512 * PX))      # on the streak, ky = 0
    # two lattices across an interface: exactly the lattice spots, none on the streak
    sp = find_spots(_image(512, step=3.0, seed=1), PX, ISOLATED_SPOTS)
    assert len(sp) == len(G) and _offsets_px(sp, G, 1.0 / (512 * PX)).max() < 1.0


def test_no_lattice_no_spots():
    noise = np.random.default_rng(5).standard_normal((512, 512))
    assert len(find_spots(noise, PX, WELCH_SPOTS)) == 0 and len(find_spots(noise, PX, ISOLATED_SPOTS)) == 0


def test_radial_median_is_numpy_median_per_ring():
    rng = np.random.default_rng(0)
    v = rng.exponential(size=1000)
    r = rng.integers(0, 7, 1000)
    r[r == 4] = 5                                            # ring 4 empty
    med = radial_median(v, r)
    for i in range(7):
        assert (np.isnan(med[i]) if i == 4 else med[i] == np.median(v[r == i]))
