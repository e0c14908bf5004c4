"""Segmentation accuracy against truth labels: optimal label matching, IoU, boundary position error."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment


def iou_matrix(truth: np.ndarray, pred: np.ndarray, truth_ids=None, pred_ids=None):
    """IoU of every truth region with every predicted region.

    Returns (iou (nt, np), truth_ids, pred_ids); ids default to all values present (label 0 of the
    prediction, "unassigned", is excluded; truth 0 is a region like any other).
    """
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    truth_ids = np.unique(t) if truth_ids is None else np.asarray(truth_ids)
    pred_ids = np.unique(p[p > 0]) if pred_ids is None else np.asarray(pred_ids)
    nt, npred = int(t.max()) + 1, int(p.max()) + 1
    joint = np.bincount(t * npred + p, minlength=nt * npred).reshape(nt, npred)
    at = joint.sum(1)
    ap = joint.sum(0)
    inter = joint[np.ix_(truth_ids, pred_ids)].astype(float)
    union = at[truth_ids][:, None] + ap[pred_ids][None, :] - inter
    return inter / np.maximum(union, 1), truth_ids, pred_ids


def matched_iou(truth: np.ndarray, pred: np.ndarray, truth_ids=None):
    """Optimal one-to-one matching (Hungarian) maximising the total IoU.

    Returns (mean IoU over the truth regions (unmatched ones count 0), {truth id: (pred id, IoU)}).
    """
    iou, tid, pid = iou_matrix(truth, pred, truth_ids)
    if iou.size == 0:
        return 0.0, {int(t): (0, 0.0) for t in tid}
    r, c = linear_sum_assignment(-iou)
    match = {int(t): (0, 0.0) for t in tid}
    for i, j in zip(r, c):
        match[int(tid[i])] = (int(pid[j]), float(iou[i, j]))
    return float(np.mean([v[1] for v in match.values()])), match


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has a different label (internal boundaries only)."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def boundary_errors_nm(truth: np.ndarray, pred: np.ndarray, pixel_size_nm=(1.0, 1.0),
                       margin_px: int = 0) -> np.ndarray:
    """Distance (nm) from every internal truth boundary pixel to the nearest predicted boundary pixel.

    ``margin_px`` ignores truth boundary pixels that close to the image border.
    """
    tb = boundary_mask(truth)
    pb = boundary_mask(pred)
    if margin_px:
        m = np.zeros_like(tb)
        m[margin_px:-margin_px, margin_px:-margin_px] = True
        tb &= m
    if not tb.any():
        return np.zeros(0)
    if not pb.any():
        return np.full(int(tb.sum()), np.inf)
    px, py = pixel_size_nm
    d = ndi.distance_transform_edt(~pb, sampling=(py, px))
    return d[tb]
