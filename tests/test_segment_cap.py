"""Region cap of rule ``segment`` (issue 22): over the cap, the smallest regions are merged into their
most similar neighbour (not dropped), with a message; and the merge helper itself."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from temtwin.segment.metrics import matched_iou
from temtwin.segment.smallmerge import merge_smallest, region_adjacency
from temtwin.stages.segment import cap_regions


def _tiles():
    """A 3 x 4 grid of touching rectangles of different sizes and known intensities."""
    rows = [0, 10, 14, 40]
    cols = [0, 5, 25, 28, 60]
    lab = np.zeros((40, 60), np.int32)
    img = np.zeros((40, 60))
    level = {}
    k = 0
    for i in range(3):
        for j in range(4):
            k += 1
            lab[rows[i]:rows[i + 1], cols[j]:cols[j + 1]] = k
            level[k] = 10.0 * k
            img[lab == k] = level[k]
    return lab, img, level


def test_adjacency_counts_shared_pixel_edges():
    lab, _, _ = _tiles()
    a, b, ln = region_adjacency(lab)
    pairs = {(int(x), int(y)): int(n) for x, y, n in zip(a, b, ln)}
    assert pairs[(1, 2)] == 10 and pairs[(1, 5)] == 5 and (1, 6) not in pairs     # 4-connectivity


def test_cap_merges_the_smallest_into_the_most_similar_neighbour():
    lab, img, level = _tiles()
    # region 7 (4 x 3 px, intensity 70) borders 3 (30), 6 (60), 8 (80) and 11 (110): nearest levels
    # are 60 and 80 (tie on intensity) -> the longer shared boundary (6: 4 px vs 8: 4 px -> lower id)
    capped, n = cap_regions(lab, 11, img)
    assert n == 1 and capped.max() == 11
    assert np.all(capped > 0)                                    # nothing left unassigned
    merged_into = np.unique(capped[lab == 7])
    assert len(merged_into) == 1 and merged_into[0] == np.unique(capped[lab == 6])[0]
    # all other regions are untouched and keep their order
    for k in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12):
        assert len(np.unique(capped[lab == k])) == 1
    order = [int(np.unique(capped[lab == k])[0]) for k in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12)]
    assert order == sorted(order)


def test_cap_to_a_few_regions_keeps_every_pixel_and_follows_intensity():
    lab, img, _ = _tiles()
    capped, n = cap_regions(lab, 4, img)
    assert n == 8 and capped.max() == 4 and np.all(capped > 0)
    # merged regions are unions of whole original regions
    for k in range(1, 13):
        assert len(np.unique(capped[lab == k])) == 1
    # regions only merge with neighbours: every merged region is one connected piece
    for r in range(1, 5):
        assert ndi.label(capped == r)[1] == 1
    # region 11 (level 110, 3 px wide) went to a neighbour 10 levels away (10 or 12, equal boundary
    # lengths: the lower id)
    assert np.unique(capped[lab == 11])[0] == np.unique(capped[lab == 10])[0]


def test_merge_smallest_with_a_minimum_area_and_isolated_regions():
    lab = np.zeros((20, 20), np.int32)
    lab[:, :10] = 1
    lab[:, 10:] = 2
    lab[5:7, 5:7] = 3                  # 4 px island in region 1, intensity close to region 2
    lab[15:17, 15:17] = 4              # 4 px island in region 2
    img = np.where(lab == 1, 0.0, 1.0)
    img[lab == 3] = 0.9
    img[lab == 4] = 0.95
    out, n = merge_smallest(lab, img, min_px=5)
    assert n == 2 and out.max() == 2
    assert np.all(out[lab == 3] == out[0, 0])      # its only neighbour is region 1
    assert np.all(out[lab == 4] == out[0, -1])
    # isolated regions (surrounded by unassigned pixels) cannot merge: the cap then drops the smallest
    iso = np.zeros((20, 20), np.int32)
    iso[1:4, 1:4] = 1
    iso[10:18, 10:18] = 2
    capped, n = cap_regions(iso, 1, np.ones((20, 20)))
    assert n == 1 and capped.max() == 1 and np.array_equal(capped > 0, iso == 2)


def test_stage_merges_over_the_cap_with_a_message(tmp_path, caplog):
    import h5py

    from temtwin.stages.segment import run
    from temtwin.testing.synth import device_overview
    from test_segment_stage import _ctx, _image_h5

    sc = device_overview(shape=(256, 256), seed=3, inclusions=(), widths_px=(8, 20, 40), tilt_deg=0.0)
    img = _image_h5(tmp_path / "image.h5", sc.image, px=(1.0, 1.0))
    with caplog.at_level("WARNING", logger="temtwin"):
        run(_ctx(tmp_path, img, config={"segment": {"max_regions": 3}}))
    assert "merged into their most similar neighbour" in caplog.text
    with h5py.File(tmp_path / "segmentation.h5") as f:
        labels = f["labels"][()]
        assert f.attrs["method"] == "layers"
        assert "segment.max_regions (3)" in f.attrs["regions_capped"]
    assert labels.max() == 3 and np.all(labels > 0)
    # 5 truth regions (vacuum, 8, 20, 40 px, substrate) -> 3: the thin ones went to a neighbour, the
    # vacuum and the substrate stay whole
    _, match = matched_iou(sc.labels.astype(np.int64), labels, truth_ids=[1, 5])
    assert min(v[1] for v in match.values()) >= 0.9
