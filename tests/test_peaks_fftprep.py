"""temtwin.peaks.window / fftprep: windows, calibrated frequencies, noise statistics (analytic truth)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from temtwin.peaks.fftprep import gamma_significance, region_spectrum, standard_sampling
from temtwin.peaks.gaussian import refine_positions
from temtwin.peaks.window import largest_rectangle, min_window_px, region_window


def test_largest_rectangle_in_known_masks():
    m = np.zeros((200, 300), bool)
    m[20:120, 50:250] = True                       # 100 x 200 rectangle
    m[150:160, 0:300] = True                       # a thin stripe, smaller area
    assert largest_rectangle(m) == (20, 50, 120, 250)
    yy, xx = np.mgrid[0:301, 0:301]
    disk = (yy - 150) ** 2 + (xx - 150) ** 2 <= 100 ** 2
    r0, c0, r1, c1 = largest_rectangle(disk)
    assert disk[r0:r1, c0:c1].all()
    # the largest inscribed square of a disk of radius R has side R*sqrt(2) = 141
    assert (r1 - r0) * (c1 - c0) >= 0.9 * 141 ** 2


def test_window_modes_and_minimum_field_of_view():
    assert min_window_px((0.02, 0.02), 1.2, 32) == 60
    assert min_window_px((0.2, 0.2), 1.2, 32) == 32
    m = np.zeros((400, 400), bool)
    m[100:300, 50:350] = True
    w = region_window(m, (0.02, 0.02))
    assert w.mode == "window" and w.box == (100, 50, 300, 350) and w.weight is None
    ring = np.zeros((400, 400), bool)
    yy, xx = np.mgrid[0:400, 0:400]
    r = np.hypot(yy - 200, xx - 200)
    ring[(r > 120) & (r < 190)] = True               # no large rectangle fits: masked area
    w = region_window(ring, (0.02, 0.02))
    assert w.mode == "masked" and w.weight.shape == w.shape
    assert w.weight.max() == pytest.approx(1.0) and w.weight[~ring[w.box[0]:w.box[2], w.box[1]:w.box[3]]].max() == 0
    tiny = np.zeros((400, 400), bool)
    tiny[10:40, 10:40] = True
    assert region_window(tiny, (0.02, 0.02)).mode == "too_small"
    assert region_window(m, (0.02, 0.02), max_window_px=128).shape == (128, 128)


@pytest.mark.parametrize("px", [(0.02, 0.02), (0.0200, 0.0213)])
def test_fringe_frequency_calibrated_in_nm_inv(px):
    """A cosine lattice fringe of known g (nm^-1) appears at g on the standard grid (non-square pixels)."""
    rows, cols = 384, 448
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    x *= px[0]
    y *= px[1]
    g = np.array([3.1, -2.2])  # kx, ky nm^-1
    img = 100 + 10 * np.cos(2 * np.pi * (g[0] * x + g[1] * y)) + np.cos(2 * np.pi * (5.5 * x + 1.3 * y))
    sp = region_spectrum(img, px, size=128)
    dk, tile = standard_sampling(px, img.shape, 128)
    assert sp.dk == pytest.approx(dk) and sp.tile_px == tile
    assert tile[0] * px[1] == pytest.approx(tile[1] * px[0], rel=0.03)  # tiles of equal physical size
    r, c = sp.to_px(*g)
    fr, fc, _, ok = refine_positions(sp, [r], [c])
    kx, ky = sp.to_k(fr, fc)
    assert ok[0]
    assert np.hypot(kx[0] - g[0], ky[0] - g[1]) < 0.1 * sp.sampling  # < 0.1 grid pixel
    pr, pc = sp.to_px(-g[0], -g[1])                                   # Friedel partner, same power
    assert sp.power[int(round(pr)), int(round(pc))] == pytest.approx(sp.power[int(round(r)), int(round(c))], rel=1e-6)
    e = sp.k_extent
    assert e[0] == pytest.approx(-64 * sp.dk[0]) and e[3] == pytest.approx(63 * sp.dk[1])


def test_noise_significance_is_standard_normal():
    """White noise: the significance map q is N(0, 1) whether one tile or many are averaged."""
    rng = np.random.default_rng(0)
    for shape in ((128, 128), (512, 512)):
        img = rng.normal(100, 5, shape)
        sp = region_spectrum(img, (0.02, 0.02), size=128)
        q = sp.q[sp.valid]
        assert abs(np.median(q)) < 0.08
        assert 0.9 < stats.iqr(q) / 1.349 < 1.1
        assert abs((q > 2.5).mean() - stats.norm.sf(2.5)) < 0.004
    assert sp.n_tiles > 4


def test_gamma_significance_matches_scipy_and_does_not_saturate():
    p = np.array([0.5, 1.0, 3.0, 8.0])
    for m in (1.0, 4.0, 30.0):
        q = gamma_significance(p * 1.0, 1.0, m)
        ref = stats.norm.isf(stats.gamma.sf(p, m, scale=1.0 / m))
        assert np.allclose(q, ref, atol=1e-6)
    huge = gamma_significance(np.array([800.0, 1600.0, 1e5]), 1.0, 1.0)
    assert np.all(np.isfinite(huge)) and np.all(np.diff(huge) > 0) and huge[0] > 35
