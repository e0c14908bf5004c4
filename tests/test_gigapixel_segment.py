"""Tiled segmentation of very large images (temtwin.segment.tiled), on small images with tiny tiles.

The tiled path is forced on a 1024² generated device (layout on a 2x-binned copy, 64 px tiles); the
16 384² case itself is a benchmark (bench/bench_gigapixel_segment.py), not a test.
"""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.segment.canny import segment_auto
from temtwin.segment.metrics import matched_iou
from temtwin.segment.refine import upsample_labels
from temtwin.segment.tiled import bin_image, refine_tiled, segment_large
from temtwin.testing.synth.scenes import lowmag_device

LAYERS = [("vacuum", 100.0, 0.95), ("Pt", 100.0, 0.3), ("W", 80.0, 0.45), ("TiN", 24.0, 0.7),
          ("HfO2", 12.0, 0.5), ("Si", 100.0, 0.72), ("BOX", 120.0, 0.9), ("Si-sub", 1e12, 0.7)]


@pytest.fixture(scope="module")
def device():
    sc = lowmag_device((1024, 1024), (1.0, 1.0), layers=LAYERS, seed=3, wire=False, blur_nm=0.7)
    return np.clip(sc.image, 0, 65535).astype(np.uint16).astype(np.float32), sc.labels.astype(np.int64)


def test_bin_image_is_the_block_mean_with_partial_edge_blocks():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (37, 53)).astype(np.float32)
    b = 4
    got = bin_image(img, b, rows_per_block=8)       # several row blocks
    ref = np.array([[img[r:r + b, c:c + b].mean() for c in range(0, 53, b)] for r in range(0, 37, b)])
    assert got.shape == (10, 14)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_tiling_does_not_change_the_labels(device):
    img, _ = device
    cfg = {"max_analysis_px": 256, "tiled": {"above_px": 1, "layout_px": 512, "tile_px": 64}}
    res = segment_large(img, (1.0, 1.0), cfg)
    assert res.info["tiled"] and res.info["layout_binning"] == 2
    one, _ = refine_tiled(img, res.coarse, 2, tile_px=10 ** 6,
                          min_island_px=int(np.ceil(res.info["min_area_nm2_effective"])))
    np.testing.assert_array_equal(one, res.labels)          # 256 tiles of 64 px == one tile


def test_tiled_segmentation_matches_truth_as_well_as_full_resolution(device):
    img, truth = device
    full = segment_auto(img, (1.0, 1.0), {"max_analysis_px": 256})
    tiled = segment_large(img, (1.0, 1.0), {"max_analysis_px": 256,
                                           "tiled": {"above_px": 1, "layout_px": 512, "tile_px": 128}})
    iou_full, _ = matched_iou(truth, full.labels)
    iou_tiled, per = matched_iou(truth, tiled.labels)
    assert iou_tiled >= iou_full - 0.02
    # the full-resolution refinement moves the layout's boundaries onto the true edges
    _, per_layout = matched_iou(truth, upsample_labels(tiled.coarse, 2, img.shape))
    found = [t for t, (_, v) in per_layout.items() if v > 0.5]
    assert len(found) >= 5
    assert np.mean([per[t][1] for t in found]) > np.mean([per_layout[t][1] for t in found])
    assert all(per[t][1] >= per_layout[t][1] - 0.005 for t in found)
    good = [t for t in found if per_layout[t][1] > 0.85]    # layers the layout resolved on their own
    assert len(good) >= 4 and min(per[t][1] for t in good) > 0.9


def test_small_images_keep_the_full_resolution_method():
    sc = lowmag_device((256, 256), (1.0, 1.0), seed=1, wire=False)
    img = sc.image.astype(np.float32)
    a = segment_auto(img, (1.0, 1.0), {})
    b = segment_large(img, (1.0, 1.0), {})
    np.testing.assert_array_equal(a.labels, b.labels)
    assert "tiled" not in b.info


def test_region_table_streamed_for_large_maps_equals_the_direct_one(monkeypatch):
    from temtwin.segment import regions

    sc = lowmag_device((300, 400), (1.0, 0.5), seed=1)
    a = regions.region_table(sc.labels, sc.image, (1.0, 0.5))
    monkeypatch.setattr(regions, "_LARGE_PX", 10)           # force the row-block path
    b = regions.region_table(sc.labels, sc.image, (1.0, 0.5))
    for k in ("label", "area_px", "bbox_px", "touches_border"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    for k in ("area_nm2", "centroid_nm", "mean_intensity"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-12)


def test_segment_stage_takes_the_tiled_path_above_the_size_limit(tmp_path, device):
    import h5py

    from temtwin.io.h5 import atomic_h5, missing_units
    from temtwin.io.image import Micrograph
    from temtwin.io.ingest import write_image_h5
    from temtwin.stages.segment import run
    from temtwin.workflow.context import StageContext

    img, truth = device
    m = Micrograph(img, (1.0, 1.0), name="ov", sample="s", meta={"units": "counts", "source_file": "ov.tif",
                                                                 "source_sha256": "0"})
    with atomic_h5(tmp_path / "image.h5") as f:
        write_image_h5(f, m)
    cfg = {"segment": {"max_analysis_px": 256, "tiled": {"above_px": 10 ** 5, "layout_px": 512, "tile_px": 256}}}
    run(StageContext.create("segment", {"image": str(tmp_path / "image.h5"), "override": []},
                            {"h5": str(tmp_path / "seg.h5"), "figures": str(tmp_path / "figs")}, cfg))
    assert missing_units(tmp_path / "seg.h5") == []
    with h5py.File(tmp_path / "seg.h5") as f:
        assert bool(f.attrs["tiled"]) and int(f.attrs["layout_binning"]) == 2
        lab = f["labels"][()]
    assert matched_iou(truth, lab)[0] > 0.65
    assert (tmp_path / "figs" / "overlay.png").is_file()


def test_propagation_in_blocks_equals_one_block(monkeypatch):
    """register_stack maps an image's samples into the overview in blocks (gigapixel overviews): the
    phases, coverage and strain of every region do not depend on the block size."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_stack_propagate import OV_SHAPE, PX_OV, StackPlacement, _setup

    from temtwin.stack import propagate as P
    from temtwin.stack.inputs import ImageResults

    ov_lab, shape_a, pa, res_a, _ = _setup()
    placements = {"ov": StackPlacement("ov", "", np.eye(3), (0.0, 0.0), 1.0, 0.0, 1.0, True), "a": pa}
    results = {"ov": ImageResults("ov", ov_lab), "a": res_a}
    args = ("ov", ov_lab, PX_OV, placements, results, {"ov": OV_SHAPE, "a": shape_a}, {"ov": PX_OV, "a": (0.25, 0.25)})
    one, pmap1, names1 = P.propagate(*args)
    monkeypatch.setattr(P, "_BLOCK", 500)                  # 160-column rows: blocks of 3 rows
    many, pmap2, names2 = P.propagate(*args)
    assert names1 == names2
    np.testing.assert_array_equal(pmap1, pmap2)
    for lab in one:
        assert one[lab].phase == many[lab].phase
        assert one[lab].covered_fraction == many[lab].covered_fraction
        assert one[lab].sources == many[lab].sources
        for k, v in (one[lab].strain or {}).items():
            if isinstance(v, float):       # sums in another order
                assert (many[lab].strain or {})[k] == pytest.approx(v, rel=1e-9, abs=1e-8)
            else:
                assert (many[lab].strain or {})[k] == v


def test_register_stack_declares_memory_scaled_to_the_largest_image(tiny_dataset):
    from temtwin.io.ingest import image_pixels
    from temtwin.workflow.snake import Workflow, mem_mb_for

    W = Workflow({"dataset": str(tiny_dataset)})
    wc = type("WC", (), {"sample": "s1"})()
    most = max(image_pixels(p) for p in W.samples["s1"].images.values())
    assert W.mem_mb_sample("register_stack")(wc) == mem_mb_for("register_stack", most) == 6000   # the former value
    assert mem_mb_for("register_stack", 16384 ** 2) > 4672       # measured on a 16 384² overview (bench)


THIN = [("vacuum", 150.0, 0.95), ("A", 200.0, 0.5), ("t3", 3.0, 0.8), ("B", 150.0, 0.55), ("t4", 4.0, 0.3),
        ("C", 150.0, 0.6), ("t6", 6.0, 0.85), ("D", 100.0, 0.45), ("Si-sub", 1e12, 0.62)]


@pytest.mark.parametrize("theta", [0.0, 3.0])
def test_thin_layers_survive_the_tiled_path(theta):
    """Layers of 3, 4 and 6 px at full resolution, below what the 4x-binned layout resolves (and inside
    the band its refinement re-assigns), are painted from the full-resolution strips: each matches its
    truth layer with IoU >= 0.8 (without the strips they are lost); layers tilted by 3° as well."""
    from scipy import ndimage as ndi

    sc = lowmag_device((1024, 1024), (1.0, 1.0), layers=THIN, seed=5, wire=False, blur_nm=0.7)
    img = np.clip(sc.image, 0, 65535).astype(np.float32)
    truth = sc.labels.astype(np.int64)
    if theta:
        img = ndi.rotate(img, theta, reshape=False, order=1, mode="nearest")[64:-64, 64:-64]
        truth = ndi.rotate(truth, theta, reshape=False, order=0, mode="nearest")[64:-64, 64:-64]
    cfg = {"tiled": {"above_px": 1, "layout_px": 256, "strip_px": 256}}
    res = segment_large(img, (1.0, 1.0), cfg)
    assert res.info["layout_binning"] == 4 and res.info["method"] == "layers"
    _, per = matched_iou(truth, res.labels)
    thin_ids = [i + 1 for i, (name, _, _) in enumerate(THIN) if name.startswith("t")]
    assert all(per[t][1] >= 0.8 for t in thin_ids), {t: per[t] for t in thin_ids}
    assert res.info["thin_layers"] == 3
    off = segment_large(img, (1.0, 1.0), {"tiled": {**cfg["tiled"], "thin_layers": False}})
    _, per0 = matched_iou(truth, off.labels)
    assert min(per0[t][1] for t in thin_ids) < 0.5
