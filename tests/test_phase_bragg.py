"""Bragg-filtered maps (phase/bragg.py): the separable per-reflection inverse transform equals the
plain ifft2 of the masked padded spectrum, and the running crystal map equals the stacked one."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from temtwin.phase.bragg import (RunningCrystalMap, bragg_amplitude, crystal_map, normalised_amplitude, pad_for,
                                 padded_spectrum)
from temtwin.phase.plots import thumbnail, thumbnail_step


def _reference_amplitude(img, px, g, sk, pad):
    """The former implementation: one full padded masked copy and ifft2 per reflection."""
    F = padded_spectrum(img, pad)
    R, C = F.shape
    kx, ky = sfft.fftfreq(C, d=px), sfft.fftfreq(R, d=px)
    total = np.zeros(img.shape, np.float64)
    for gx, gy in g:
        mask = np.exp(-0.5 * ((ky[:, None] - gy) / sk) ** 2) * np.exp(-0.5 * ((kx[None, :] - gx) / sk) ** 2)
        mask[mask <= 1e-12] = 0
        a = sfft.ifft2(F * mask)[pad:pad + img.shape[0], pad:pad + img.shape[1]]
        total += np.abs(a) ** 2
    return np.sqrt(total)


def test_bragg_amplitude_matches_full_ifft2_and_finds_the_lattice():
    px, n = 0.05, 160
    y, x = np.mgrid[:n, :n + 24] * px
    g = np.array([[2.0, 0.5], [-0.6, 2.4]])  # nm^-1
    lattice = sum(np.cos(2 * np.pi * (gx * x + gy * y)) for gx, gy in g)
    img = (np.where(x < 0.5 * x.max(), lattice, 0.0) + np.random.default_rng(1).normal(0, 0.3, x.shape)).astype(
        np.float32)
    sk = 0.4
    pad = pad_for(sk, px, img.shape)
    a = bragg_amplitude(img, px, g, sk, pad=pad)
    assert a.dtype == np.float32 and a.shape == img.shape
    ref = _reference_amplitude(img, px, g, sk, pad)
    assert np.allclose(a, ref, rtol=1e-4, atol=1e-4 * ref.max())
    # the lattice (left half, amplitude ~ 0.5 per reflection) stands out of the noise (right half)
    inner = slice(30, -30)
    left, right = a[inner, 20:60], a[inner, -60:-20]
    assert np.median(left) > 4 * np.median(right)


def test_running_crystal_map_equals_the_stacked_one_with_ties():
    rng = np.random.default_rng(3)
    amps = [rng.random((40, 50)).astype(np.float32) for _ in range(4)]
    amps[2][:5] = amps[1][:5]  # ties: the earlier crystal wins, as np.argmax
    masks = [rng.random((40, 50)) > 0.5, None, np.zeros((40, 50), bool), rng.random((40, 50)) > 0.2]
    norm, cmap = crystal_map(amps, masks, 0.8)
    run = RunningCrystalMap()
    for a, m, ref in zip(amps, masks, norm):
        nm = normalised_amplitude(a, m)
        assert np.array_equal(nm, ref)
        run.add(nm)
    got = run.result(0.8)
    assert got.dtype == np.int32 and np.array_equal(got, cmap)
    assert set(np.unique(got)) <= {0, 1, 2, 3, 4} and (got == 0).any()
    assert RunningCrystalMap().result() is None


def test_thumbnail_caps_the_longest_side():
    a = np.arange(5000 * 300, dtype=np.float32).reshape(5000, 300)
    t = thumbnail(a, 1024)
    assert thumbnail_step(a.shape, 1024) == 5 and t.shape == (1000, 60) and t.flags.c_contiguous
    assert t[1, 1] == a[5, 5] and thumbnail(a[:100, :100]).shape == (100, 100)


def test_phase_id_memory_model_covers_the_measured_peaks():
    from temtwin.workflow.snake import mem_mb_for

    # bench/bench_startup.py (issue 22): 542 MB on 2048², 1124 MB on 4096² (44 crystals)
    assert mem_mb_for("phase_id", 2048 ** 2) >= 542 and mem_mb_for("phase_id", 4096 ** 2) >= 1124
    # growth ~48 B/px: 12 000² needs ~1.1 GB + 6.6 GB; declared with a margin, far below the former ~140 GB
    assert 7700 < mem_mb_for("phase_id", 12_000 ** 2) < 20_000


def test_stage_bragg_maps_streamed_equal_the_kept_ones():
    """phase/stage.bragg_maps hands each map to the sink as computed: same maps and crystal map as when
    kept, and the crystal map is the stacked argmax of the two crystals' normalised amplitudes."""
    from types import SimpleNamespace

    from temtwin.stages.phase_id import bragg_maps

    px, n = 0.05, 128
    y, x = np.mgrid[:n, :n] * px
    ga, gb = np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[1.7, 1.0], [-1.0, 1.7]])
    labels = np.where(y < 0.5 * y.max(), 1, 2).astype(np.int32)
    img = np.where(labels == 1, sum(np.cos(2 * np.pi * (u * x + v * y)) for u, v in ga),
                   sum(np.cos(2 * np.pi * (u * x + v * y)) for u, v in gb)).astype(np.float32)

    def crystal(g):
        k = g[:, 0] + 1j * g[:, 1]
        return SimpleNamespace(identified=True, k=np.concatenate([k, -k]), w=np.ones(2 * len(k)))

    results = {1: [crystal(ga)], 2: [crystal(gb)]}
    cfg = {"max_spots": 6, "resolution_nm": 0.8, "threshold": 0.5}
    entries, kept, (cmap_kept, sk) = bragg_maps(img, px, labels, results, {}, cfg)
    got = []
    entries2, none, (cmap_sink, sk2) = bragg_maps(img, px, labels, results, {}, cfg,
                                                   sink=lambda i, e, a, b: got.append((i, e[0], a.copy())))
    assert none == [] and [g[:2] for g in got] == [(0, 1), (1, 2)] and sk2 == sk
    assert all(np.array_equal(a, b[2]) for a, b in zip(kept, got)) and np.array_equal(cmap_kept, cmap_sink)
    ref = np.where(np.max(kept, axis=0) >= 0.5, np.argmax(kept, axis=0) + 1, 0)
    assert np.array_equal(cmap_sink, ref)
    inner = (slice(8, n // 2 - 12), slice(8, -8)), (slice(n // 2 + 12, -8), slice(8, -8))
    assert (cmap_sink[inner[0]] == 1).mean() > 0.95 and (cmap_sink[inner[1]] == 2).mean() > 0.95


def test_bragg_maps_in_region_boxes_equal_the_whole_image_ones_inside_the_regions():
    """A region whose bounding box (grown by the filter's reach) is a small part of the image gets its map
    computed in that box only: inside the region it equals the whole-image map (the filter does not reach
    across the margin), 0 outside the box; the crystal map is the same in the regions."""
    from types import SimpleNamespace

    from temtwin.stages.phase_id import bragg_boxes, bragg_maps

    px, n = 0.05, 320
    y, x = np.mgrid[:n, :n] * px
    ga, gb = np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[1.7, 1.0], [-1.0, 1.7]])
    labels = np.full((n, n), 2, np.int32)
    labels[20:80, 30:100] = 1                              # a small region of the first lattice
    img = np.where(labels == 1, sum(np.cos(2 * np.pi * (u * x + v * y)) for u, v in ga),
                   sum(np.cos(2 * np.pi * (u * x + v * y)) for u, v in gb))
    img = (img + np.random.default_rng(3).normal(0, 0.3, img.shape)).astype(np.float32)

    def crystal(g):
        k = g[:, 0] + 1j * g[:, 1]
        return SimpleNamespace(identified=True, k=np.concatenate([k, -k]), w=np.ones(2 * len(k)))

    results = {1: [crystal(ga)], 2: [crystal(gb)]}
    cfg = {"max_spots": 6, "resolution_nm": 0.8, "threshold": 0.5}
    boxes = []
    entries, kept, (cmap, sk) = bragg_maps(img, px, labels, results, {}, cfg,
                                           sink=lambda i, e, a, b: boxes.append((b, a.copy())))
    from temtwin.phase.bragg import pad_for
    pad = pad_for(sk, px, img.shape)
    assert boxes[0][0] == (0, 80 + pad, max(30 - pad, 0), 100 + pad) and boxes[1][0] is None
    assert bragg_boxes(labels, entries, pad, img.shape, max_fraction=1.0)[1] == (0, n, 0, n)
    # the whole-image reference (no labels -> no boxes), normalised in the same region
    whole = [bragg_maps(img, px, None, {lab: [c]}, {}, cfg)[1][0] for lab, c in ((1, results[1][0]),)][0]
    # bragg_maps without labels normalises over the image: compare shapes of the amplitude up to that factor
    (r0, r1, c0, c1), a1 = boxes[0]
    inside = labels[r0:r1, c0:c1] == 1
    ratio = a1[inside] / whole[r0:r1, c0:c1][inside]
    assert np.std(ratio) / np.mean(ratio) < 1e-2
    assert abs(np.median(a1[inside]) - 1.0) < 1e-6             # normalised to 1 in its region
    # crystal map: region 1 (away from its edge) is crystal 1, region 2 away from region 1 is crystal 2
    assert (cmap[30:70, 40:90] == 1).mean() > 0.95 and (cmap[150:, :] == 2).mean() > 0.95
