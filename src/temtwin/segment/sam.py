"""Segment Anything (``segment.method: sam``) through the ``segment-anything`` package.

The model is built from the checkpoint named in the config (``segment.sam.checkpoint``, type
``segment.sam.model_type``: vit_b, vit_l or vit_h); weights are never downloaded at run time.
The micrograph (any bit depth) is scaled to 8 bits between its 0.5th and 99.5th intensity
percentiles, reduced to at most ``sam.max_size`` pixels (SAM works at 1024 px internally), given to
``SamAutomaticMaskGenerator``, and the overlapping masks are resolved into one label image:

* masks are painted from the largest to the smallest area (ties: lower quality first), so a pixel
  covered by several masks goes to the smallest — most specific — mask that covers it, with the
  higher quality (predicted IoU × stability score) winning among equal areas; no subset
  enumeration, O(number of masks) vectorised paints;
* uncovered areas of at least the minimum area become regions of their own, smaller ones and
  mask fragments smaller than the minimum area join their neighbours;
* the label map is brought back to full resolution (nearest) and numbered top to bottom, then left
  to right (by centroid).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..errors import UserError
from .canny import order_labels
from .refine import upsample_labels

log = logging.getLogger("temtwin")

#: official checkpoints of github.com/facebookresearch/segment-anything
SAM_CHECKPOINTS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}

SAM_DEFAULTS: dict[str, Any] = {
    "checkpoint": None,
    "model_type": "vit_b",
    "device": "auto",
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.86,
    "stability_score_thresh": 0.90,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "max_size": 1024,
}


def to_uint8_rgb(image: np.ndarray, clip_percent: float = 0.5) -> np.ndarray:
    """(rows, cols, 3) uint8 grey-scale RGB, linearly scaled between the ``clip_percent`` and
    100 − ``clip_percent`` percentiles (works for 8/16/32-bit integer and float images)."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img, [clip_percent, 100 - clip_percent])
    if not hi > lo:
        lo, hi = float(img.min()), float(img.max()) + 1e-6
    u8 = np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return np.repeat(u8[:, :, None], 3, axis=2)


def resolve_device(device: str) -> str:
    """'auto' → 'cuda' when available, else 'cpu'."""
    if device == "auto":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # pragma: no cover
            return "cpu"
    return device


def load_sam(checkpoint: str | None, model_type: str = "vit_b", device: str = "auto"):
    """Build a SAM model from a local checkpoint; UserError (one line: where to get it, which key
    to set) when the checkpoint is missing or does not fit the model type."""
    if model_type not in SAM_CHECKPOINTS:
        raise UserError(f"unknown segment.sam.model_type {model_type!r}; use one of "
                        f"{', '.join(SAM_CHECKPOINTS)}", "config")
    url = SAM_CHECKPOINTS[model_type]
    if not checkpoint or not Path(checkpoint).expanduser().is_file():
        where = checkpoint or "(not set)"
        raise UserError(f"Segment Anything checkpoint not found: {where}; download {url} and set "
                        f"segment.sam.checkpoint to its path (model_type {model_type}), or use "
                        "segment.method: canny", "config")
    import torch
    from segment_anything import sam_model_registry

    path = Path(checkpoint).expanduser()
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a corrupt or mismatched file is the user's to fix
        raise UserError(f"cannot load this SAM checkpoint as {model_type} ({e.__class__.__name__}); "
                        f"set segment.sam.model_type to the checkpoint's type or download {url}",
                        path) from None
    model.to(resolve_device(device))
    model.eval()
    return model


def masks_to_labels(masks: list[dict], shape: tuple[int, int], min_area_px: float = 0.0) -> np.ndarray:
    """Non-overlapping int32 labels 1..n from SAM mask records (see module docstring).

    Each record needs ``segmentation`` (bool (rows, cols)); ``area``, ``predicted_iou`` and
    ``stability_score`` are used when present.
    """
    lab = np.zeros(shape, np.int32)
    recs = []
    for k, m in enumerate(masks):
        seg = np.asarray(m["segmentation"], bool)
        area = float(m.get("area", seg.sum()))
        q = float(m.get("predicted_iou", 1.0)) * float(m.get("stability_score", 1.0))
        recs.append((-area, q, k, seg))
    recs.sort(key=lambda r: (r[0], r[1], r[2]))
    for i, (_, _, _, seg) in enumerate(recs, start=1):   # loop over masks; each paint vectorised
        lab[seg] = i
    # uncovered areas: big ones become regions, small ones are filled from their neighbours
    free, nfree = ndi.label(lab == 0)
    if nfree:
        sizes = np.bincount(free.ravel())
        big = np.nonzero(sizes >= max(min_area_px, 1))[0]
        big = big[big > 0]
        base = int(lab.max())
        remap = np.zeros(len(sizes), np.int32)
        remap[big] = base + np.arange(1, len(big) + 1, dtype=np.int32)
        lab = np.where(free > 0, remap[free], lab)
    if (lab == 0).any() and (lab > 0).any():
        _, (iy, ix) = ndi.distance_transform_edt(lab == 0, return_indices=True)
        lab = lab[iy, ix]
    if not (lab > 0).any():
        return np.ones(shape, np.int32)
    # every region one connected piece; pieces below the minimum area join their neighbours
    from skimage.measure import label as cc_label

    comp = cc_label(lab, background=0, connectivity=1).astype(np.int32)
    sizes = np.bincount(comp.ravel())
    small = sizes < max(min_area_px, 1)
    small[0] = False
    if small.any() and not small[1:].all():
        comp[small[comp]] = 0
        _, (iy, ix) = ndi.distance_transform_edt(comp == 0, return_indices=True)
        comp = comp[iy, ix]
    return order_labels(_consecutive(comp))


def _consecutive(lab: np.ndarray) -> np.ndarray:
    vals = np.unique(lab)
    lut = np.zeros(int(vals.max()) + 1, np.int32)
    pos = vals[vals > 0]
    lut[pos] = np.arange(1, len(pos) + 1, dtype=np.int32)
    return lut[lab]


def segment_sam(image: np.ndarray, pixel_size_nm: tuple[float, float], cfg: dict | None = None,
                model=None, min_area_nm2: float = 1.0) -> tuple[np.ndarray, dict]:
    """Segment with Segment Anything; returns (labels int32 full resolution, info).

    cfg: the ``segment.sam`` config section; model: an already built ``Sam`` (tests pass a
    small randomly initialised one), else it is loaded from ``cfg['checkpoint']``.
    """
    c = dict(SAM_DEFAULTS)
    c.update(cfg or {})
    if model is None:
        model = load_sam(c["checkpoint"], c["model_type"], c["device"])
    from segment_anything import SamAutomaticMaskGenerator

    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    f = max(1, int(np.ceil(max(rows, cols) / int(c["max_size"]))))
    small = img if f == 1 else cv2.resize(img, (int(np.ceil(cols / f)), int(np.ceil(rows / f))),
                                          interpolation=cv2.INTER_AREA)
    rgb = to_uint8_rgb(small)
    gen = SamAutomaticMaskGenerator(
        model, points_per_side=int(c["points_per_side"]), points_per_batch=int(c["points_per_batch"]),
        pred_iou_thresh=float(c["pred_iou_thresh"]), stability_score_thresh=float(c["stability_score_thresh"]),
        box_nms_thresh=float(c["box_nms_thresh"]), crop_n_layers=int(c["crop_n_layers"]))
    import torch

    with torch.no_grad():
        masks = gen.generate(rgb)
    px_small = (pixel_size_nm[0] * f) * (pixel_size_nm[1] * f)
    lab_small = masks_to_labels(masks, small.shape, min_area_nm2 / px_small)
    labels = upsample_labels(lab_small, f, (rows, cols)) if f > 1 else lab_small
    info = {"n_masks": len(masks), "n_regions": int(labels.max()), "sam_input_factor": f,
            "model_type": c["model_type"]}
    log.info("segment (SAM %s): %d masks -> %d regions", c["model_type"], len(masks), info["n_regions"])
    return labels.astype(np.int32), info
