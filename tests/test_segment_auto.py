"""Automatic edge-based segmentation against synthetic scenes with exact truth labels."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.segment.canny import order_labels, segment_auto
from temtwin.segment.metrics import boundary_errors_nm, matched_iou
from temtwin.segment.scale import find_lattice, smoothing_scale_nm
from temtwin.synth import crystal_scene, layered_scene, lowmag_device, particles_scene

# SiGe(0.7) / Ge QW (pseudomorphic, +2.31 % along growth) / SiGe(0.7), HAADF, filling the field
LAYERS = [dict(thickness_nm=2.5, ge_fraction=0.7), dict(thickness_nm=2.5, ge_fraction=1.0, eyy=0.0231),
          dict(thickness_nm=2.68, ge_fraction=0.7)]


@pytest.fixture(scope="module")
def heterostructure():
    return layered_scene(layers=LAYERS, shape=(256, 256), pixel_size_nm=(0.03, 0.03), seed=1)


def test_every_layer_of_a_heterostructure_is_one_region(heterostructure):
    s = heterostructure
    r = segment_auto(s.image, s.pixel_size_nm)
    assert r.labels.dtype == np.int32 and r.labels.shape == s.image.shape
    assert r.labels.max() == 3                       # lattice fringes did not become regions
    miou, match = matched_iou(s.labels, r.labels, truth_ids=[1, 2, 3])
    assert min(v[1] for v in match.values()) >= 0.9, match
    err = boundary_errors_nm(s.labels, r.labels, s.pixel_size_nm, margin_px=8)
    assert np.median(err) <= 0.15                    # nm; σ is ~0.33 nm here
    # numbered top to bottom: the cap (truth 3, top of the image) is label 1
    assert match[3][0] == 1 and match[1][0] == 3


def test_smoothing_scale_exceeds_the_lattice_period(heterostructure):
    s = heterostructure
    lat = find_lattice(s.image, s.pixel_size_nm)
    assert lat.found
    # Si(1-x)Ge(x) [110]: the largest period is d(111) = a/sqrt(3) ≈ 0.32 nm (coarse FFT bins here)
    assert abs(lat.periods_nm.max() - 5.5843 / 10 / np.sqrt(3)) < 0.03
    assert smoothing_scale_nm(s.pixel_size_nm, lat) >= lat.periods_nm.max()


@pytest.mark.parametrize("mode", ["haadf", "hrtem"])
def test_a_single_crystal_is_one_region(mode):
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(192, 192), pixel_size_nm=(0.02, 0.02), mode=mode, seed=2)
    r = segment_auto(s.image, s.pixel_size_nm)
    assert r.labels.max() == 1


def test_noise_alone_is_not_fragmented():
    rng = np.random.default_rng(4)
    img = rng.poisson(180.0, (384, 384)).astype(np.float32)
    assert segment_auto(img, (0.5, 0.5)).labels.max() == 1


def test_low_magnification_device_layers():
    s = lowmag_device(shape=(384, 384), seed=2)
    r = segment_auto(s.image, s.pixel_size_nm)
    _, match = matched_iou(s.labels, r.labels, truth_ids=[1, 2, 3, 4, 5, 6])
    assert min(v[1] for v in match.values()) >= 0.8, match
    assert r.labels.max() <= 10


def test_particles_are_found_and_film_is_not_fragmented():
    s = particles_scene(shape=(320, 320), mode="haadf", dose=2000, seed=0)
    r = segment_auto(s.image, s.pixel_size_nm)
    _, match = matched_iou(s.labels, r.labels)
    assert match[2][1] >= 0.75 and match[3][1] >= 0.75, match      # each particle its own region
    # film + vacuum: at most two regions besides the particles (no noise fragments)
    assert r.labels.max() <= 4


def test_large_image_is_decimated_and_refined_at_full_resolution():
    s = lowmag_device(shape=(1200, 1200), pixel_size_nm=(0.25, 0.25), blur_nm=0.5, seed=1)
    r = segment_auto(s.image, s.pixel_size_nm, {"max_analysis_px": 400, "method": "canny"})
    assert r.info["analysis_factor"] == 3
    _, match = matched_iou(s.labels, r.labels, truth_ids=[1, 2, 3, 4, 5, 6])
    assert min(v[1] for v in match.values()) >= 0.85, match
    err = boundary_errors_nm(s.labels, r.labels, s.pixel_size_nm, margin_px=10)
    assert np.median(err) <= 3 * 0.25          # within one analysis pixel (3 full-resolution pixels)


def test_rerun_is_identical(heterostructure):
    s = heterostructure
    a = segment_auto(s.image, s.pixel_size_nm).labels
    b = segment_auto(s.image.copy(), s.pixel_size_nm).labels
    assert np.array_equal(a, b)


def test_order_labels_top_to_bottom_then_left_to_right():
    lab = np.zeros((100, 100), np.int32)
    lab[:50, :50], lab[:50, 50:], lab[50:, :] = 7, 3, 5
    out = order_labels(lab)
    assert out[10, 10] == 1 and out[10, 90] == 2 and out[90, 50] == 3
