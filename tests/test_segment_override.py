"""Human override: hand-made label maps replace the automatic segmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.segment.override import read_label_override


def _truth(shape=(40, 60)):
    lab = np.zeros(shape, np.int64)
    lab[:, :20] = 5
    lab[:, 20:45] = 9
    lab[10:20, 50:55] = 2
    return lab


@pytest.mark.parametrize("suffix", [".npy", ".png", ".tif"])
def test_label_maps_are_read_and_renumbered_in_value_order(tmp_path, suffix):
    lab = _truth()
    p = tmp_path / f"img{suffix}"
    if suffix == ".npy":
        np.save(p, lab)
    else:
        assert cv2.imwrite(str(p), lab.astype(np.uint16))
    out, values = read_label_override(p, lab.shape)
    assert out.dtype == np.int32
    assert values.tolist() == [2, 5, 9]
    expect = np.select([lab == 2, lab == 5, lab == 9], [1, 2, 3], 0)
    assert np.array_equal(out, expect)                        # 0 stays unassigned


def test_wrong_shape_names_the_file_and_both_shapes(tmp_path):
    p = tmp_path / "img.npy"
    np.save(p, _truth((40, 60)))
    with pytest.raises(UserError) as e:
        read_label_override(p, (60, 40))
    msg = str(e.value)
    assert str(p) in msg and "40x60" in msg and "60x40" in msg


@pytest.mark.parametrize("bad,words", [
    (np.dstack([_truth(), _truth() * 2, _truth()]).astype(np.uint8), "colour"),
    (_truth().astype(float) + 0.5, "non-integer"),
    (-_truth(), "negative"),
    (np.zeros((40, 60), np.int32), "no regions"),
])
def test_bad_label_maps_give_one_clear_error(tmp_path, bad, words):
    p = tmp_path / "img.npy"
    np.save(p, bad)
    with pytest.raises(UserError, match=words):
        read_label_override(p, (40, 60))


def test_grey_rgb_png_is_accepted(tmp_path):
    lab = _truth().astype(np.uint8)
    p = tmp_path / "img.png"
    cv2.imwrite(str(p), np.dstack([lab, lab, lab]))
    out, values = read_label_override(p, lab.shape)
    assert values.tolist() == [2, 5, 9] and out.max() == 3
