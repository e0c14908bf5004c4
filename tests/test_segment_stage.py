"""Rule `segment` end to end: result layout, summary, figure, override, SAM errors, blank images."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from temtwin.config import load_config
from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, missing_units, read_summary, read_table
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.segment.metrics import matched_iou
from temtwin.segment.regions import polygon_area
from temtwin.stages.segment import run
from temtwin.testing.synth import layered_scene
from temtwin.workflow.context import StageContext

LAYERS = [dict(thickness_nm=2.5, ge_fraction=0.7), dict(thickness_nm=2.5, ge_fraction=1.0, eyy=0.0231),
          dict(thickness_nm=2.68, ge_fraction=0.7)]


def _image_h5(path, data, px=(0.03, 0.03)):
    m = Micrograph(np.asarray(data, np.float32), px, name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0"})
    with atomic_h5(path) as f:
        write_image_h5(f, m)
    return path


def _ctx(tmp_path, image, override=(), config=None):
    return StageContext.create("segment", {"image": str(image), "override": list(override)},
                               {"h5": str(tmp_path / "segmentation.h5"), "figures": str(tmp_path / "figs")},
                               config or {})


@pytest.fixture(scope="module")
def scene():
    return layered_scene(layers=LAYERS, shape=(256, 256), pixel_size_nm=(0.03, 0.03), seed=3)


def test_result_file_layout_summary_and_figure(tmp_path, scene):
    img = _image_h5(tmp_path / "image.h5", scene.image)
    run(_ctx(tmp_path, img))
    out = tmp_path / "segmentation.h5"
    assert missing_units(out) == []
    with h5py.File(out) as f:
        labels = f["labels"][()]
        assert labels.dtype == np.int32 and labels.shape == scene.image.shape
        assert f.attrs["method"] == "canny" and f.attrs["source"] == "automatic"
        assert f.attrs["sigma_nm"] > 0.3 and len(f.attrs["lattice_periods_nm"]) > 0
        t = read_table(f["regions"])
        contours = {k: f["contours"][k][()] for k in f["contours"]}
    n = labels.max()
    assert n == 3 and t["label"].tolist() == [1, 2, 3]
    _, match = matched_iou(scene.labels, labels, truth_ids=[1, 2, 3])
    assert min(v[1] for v in match.values()) >= 0.9
    px = 0.03
    area_px = np.bincount(labels.ravel())[1:]
    assert np.allclose(t["area_nm2"], area_px * px * px)
    assert t["centroid_nm"].shape == (3, 2) and t["bbox_px"].shape == (3, 4)
    assert t["centroid_nm"][0, 1] < t["centroid_nm"][1, 1] < t["centroid_nm"][2, 1]     # top to bottom
    assert np.allclose(t["centroid_nm"][:, 0], 255 * px / 2, atol=0.05)                  # full-width layers
    assert t["touches_border"].all()
    for k, lab in enumerate(t["label"]):
        r0, c0, r1, c1 = t["bbox_px"][k]
        rows, cols = np.nonzero(labels == lab)
        assert (r0, c0, r1, c1) == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        poly = contours[str(lab)]
        assert poly.shape[1] == 2 and not np.allclose(poly[0], poly[-1])
        # the polygon encloses the region: its area matches the pixel area within a boundary strip
        assert polygon_area(poly) == pytest.approx(t["area_nm2"][k], rel=0.05)
        assert t["mean_intensity"][k] == pytest.approx(scene.image[labels == lab].mean(), rel=1e-5)
    summ = read_summary(out)
    assert set(summ["regions"]) == {"1", "2", "3"}
    assert summ["regions"]["2"]["area_nm2"] == pytest.approx(t["area_nm2"][1])
    assert summ["regions"]["2"]["centroid_nm"] == pytest.approx(t["centroid_nm"][1].tolist())
    assert (tmp_path / "figs" / "overlay.png").stat().st_size > 10_000
    # a rerun writes identical labels and summary
    first = labels.copy()
    run(_ctx(tmp_path, img))
    with h5py.File(out) as f:
        assert np.array_equal(f["labels"][()], first)
    assert read_summary(out) == summ


def test_override_replaces_the_automatic_result(tmp_path, scene):
    img = _image_h5(tmp_path / "image.h5", scene.image)
    hand = np.zeros(scene.image.shape, np.uint16)
    hand[:100] = 7
    hand[100:] = 3
    hand[120:140, 50:90] = 0
    ov = tmp_path / "img.npy"
    np.save(ov, hand)
    run(_ctx(tmp_path, img, [ov]))
    with h5py.File(tmp_path / "segmentation.h5") as f:
        labels = f["labels"][()]
        assert f.attrs["source"] == "override" and f.attrs["method"] == "override"
        assert f.attrs["override_values"].tolist() == [3, 7]
        assert json.loads(f.attrs["summary"])["regions"].keys() == {"1", "2"}
        holes = list(f["holes"]["1"]) if "holes" in f else []
    assert np.array_equal(labels, np.select([hand == 3, hand == 7], [1, 2], 0))
    assert holes == ["0"]                                   # the unassigned window is a hole of region 1


def test_override_with_the_wrong_shape_fails_with_one_line(tmp_path, scene):
    img = _image_h5(tmp_path / "image.h5", scene.image)
    ov = tmp_path / "img.npy"
    np.save(ov, np.ones((10, 10), np.uint8))
    with pytest.raises(UserError, match="shape 10x10 but the image is 256x256"):
        run(_ctx(tmp_path, img, [ov]))
    assert not (tmp_path / "segmentation.h5").exists()


def test_blank_image_is_a_clear_user_error(tmp_path):
    img = _image_h5(tmp_path / "image.h5", np.full((64, 64), 100.0))
    with pytest.raises(UserError) as e:
        run(_ctx(tmp_path, img))
    assert str(img) in str(e.value) and "blank" in str(e.value)
    assert not (tmp_path / "segmentation.h5").exists()


def test_sam_without_checkpoint_fails_before_writing(tmp_path, scene):
    img = _image_h5(tmp_path / "image.h5", scene.image)
    with pytest.raises(UserError, match="segment.sam.checkpoint"):
        run(_ctx(tmp_path, img, config={"segment": {"method": "sam"}}))
    assert not (tmp_path / "segmentation.h5").exists()


def test_config_defaults_and_validation():
    cfg = load_config({}, require_dataset=False)["segment"]
    assert cfg["method"] == "auto" and cfg["sam"]["model_type"] == "vit_b" and cfg["sam"]["checkpoint"] is None
    assert cfg["canny"]["hysteresis"] == [2.0, 4.0]
    with pytest.raises(UserError, match="segment.sam.model_type"):
        load_config({"segment": {"sam": {"model_type": "vit_x"}}}, require_dataset=False)
    with pytest.raises(UserError, match="unknown key"):
        load_config({"segment": {"canny": {"sigma": 1}}}, require_dataset=False)
