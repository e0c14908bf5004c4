"""Segment Anything path with a small randomly initialised model (no checkpoint offline)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer)

from temtwin.errors import UserError  # noqa: E402
from temtwin.segment.sam import (  # noqa: E402
    SAM_CHECKPOINTS, load_sam, masks_to_labels, segment_sam, to_uint8_rgb)
from temtwin.testing.synth import particles_scene  # noqa: E402


def tiny_sam(seed: int = 0) -> Sam:
    """A SAM with the real architecture but tiny sizes and random weights."""
    torch.manual_seed(seed)
    d = 32
    enc = ImageEncoderViT(img_size=256, patch_size=16, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2,
                          out_chans=d, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                          window_size=0, global_attn_indexes=(0,))
    prompt = PromptEncoder(embed_dim=d, image_embedding_size=(16, 16), input_image_size=(256, 256),
                           mask_in_chans=4)
    dec = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=1, embedding_dim=d, mlp_dim=64,
                                                                            num_heads=2),
                      transformer_dim=d, iou_head_depth=2, iou_head_hidden_dim=32)
    return Sam(image_encoder=enc, prompt_encoder=prompt, mask_decoder=dec).eval()


CFG = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, max_size=128, device="cpu")


def test_full_automatic_mask_path_gives_a_partition():
    s = particles_scene(shape=(200, 240), mode="haadf", seed=0)
    img16 = np.clip(s.image, 0, 65535).astype(np.uint16)
    labels, info = segment_sam(img16, s.pixel_size_nm, CFG, model=tiny_sam(), min_area_nm2=0.05)
    assert labels.shape == s.image.shape and labels.dtype == np.int32
    assert info["sam_input_factor"] == 2 and info["n_masks"] >= 1
    ids = np.unique(labels)
    assert ids[0] == 1 and np.array_equal(ids, np.arange(1, labels.max() + 1))   # all assigned, 1..n
    again, _ = segment_sam(img16, s.pixel_size_nm, CFG, model=tiny_sam(), min_area_nm2=0.05)
    assert np.array_equal(labels, again)


def test_overlaps_go_to_the_smallest_mask_then_the_best():
    yy, xx = np.mgrid[0:80, 0:100]
    bg = np.ones((80, 100), bool)
    disk1 = (yy - 20) ** 2 + (xx - 25) ** 2 < 100
    disk2 = (yy - 55) ** 2 + (xx - 70) ** 2 < 144
    worse_copy = disk2.copy()
    masks = [dict(segmentation=bg, predicted_iou=0.95, stability_score=0.95),
             dict(segmentation=disk2 | disk1, predicted_iou=0.9, stability_score=0.9),   # a union: larger
             dict(segmentation=disk1, predicted_iou=0.9, stability_score=0.9),
             dict(segmentation=worse_copy, predicted_iou=0.5, stability_score=0.5),
             dict(segmentation=disk2, predicted_iou=0.99, stability_score=0.99)]
    lab = masks_to_labels(masks, (80, 100), min_area_px=10)
    truth = np.where(disk1, 1, np.where(disk2, 3, 2))          # numbered by centroid, top to bottom
    assert np.array_equal(lab, truth)


def test_uncovered_area_becomes_a_region_and_specks_are_absorbed():
    m = np.zeros((50, 50), bool)
    m[:, :25] = True
    speck = np.zeros((50, 50), bool)
    speck[10, 40] = True
    lab = masks_to_labels([dict(segmentation=m), dict(segmentation=speck)], (50, 50), min_area_px=20)
    assert lab.max() == 2 and (lab[:, :25] == 1).all() and (lab[:, 25:] == 2).all()


def test_intensity_scaling_for_16_and_32_bit():
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 60000, (30, 30)).astype(np.uint16), rng.normal(0, 1e-3, (30, 30)).astype(np.float32)):
        rgb = to_uint8_rgb(img)
        assert rgb.dtype == np.uint8 and rgb.shape == (30, 30, 3)
        assert rgb.min() == 0 and rgb.max() == 255
        assert np.corrcoef(rgb[..., 0].ravel(), img.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("model_type", ["vit_b", "vit_h"])
def test_missing_checkpoint_says_where_to_get_it_and_which_key(tmp_path, model_type):
    with pytest.raises(UserError) as e:
        load_sam(str(tmp_path / "nope.pth"), model_type)
    msg = str(e.value)
    assert SAM_CHECKPOINTS[model_type] in msg and "segment.sam.checkpoint" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="segment.sam.checkpoint"):
        load_sam(None, model_type)


def test_checkpoint_of_the_wrong_type_is_a_user_error(tmp_path):
    p = tmp_path / "tiny.pth"
    torch.save(tiny_sam().state_dict(), p)
    with pytest.raises(UserError, match="model_type"):
        load_sam(str(p), "vit_b")


def test_stage_dispatches_to_sam_with_the_configured_settings():
    from temtwin.io.image import Micrograph
    from temtwin.stages.segment import segment_image

    s = particles_scene(shape=(160, 160), mode="haadf", seed=1)
    m = Micrograph(s.image, s.pixel_size_nm)
    labels, attrs = segment_image(m, {"method": "sam", "min_area_nm2": 0.05, "sam": CFG}, model=tiny_sam())
    assert attrs["method"] == "sam" and attrs["source"] == "automatic" and attrs["sam_input_factor"] == 2
    assert labels.shape == s.image.shape and labels.min() == 1
