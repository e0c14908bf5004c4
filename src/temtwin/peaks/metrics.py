"""Accuracy of detected reflections against ground truth (tests and bench).

Matching is one-to-one (minimum total distance, Hungarian) within ``tol`` grid pixels.

* recall = matched truth reflections with SNR >= ``snr_min`` / truth reflections with SNR >= ``snr_min``;
* precision = detections matched to a truth reflection that carries signal (SNR >= ``snr_real``,
  i.e. a real reflection of the pattern, however weak) / detections.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def match(det_rc: np.ndarray, truth_rc: np.ndarray, tol: float = 1.5):
    """One-to-one matches (det index, truth index) with distance <= tol."""
    det_rc = np.asarray(det_rc, float).reshape(-1, 2)
    truth_rc = np.asarray(truth_rc, float).reshape(-1, 2)
    if len(det_rc) == 0 or len(truth_rc) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    D = cdist(det_rc, truth_rc)
    big = 1e6
    Dc = np.where(D <= tol, D, big)
    i, j = linear_sum_assignment(Dc)
    ok = Dc[i, j] < big
    return i[ok], j[ok], D[i[ok], j[ok]]


def counts(det_rc, truth_rc, truth_snr, tol: float = 1.5, snr_min: float = 3.0, snr_real: float = 1.0):
    """(tp_det, n_det, tp_truth, n_truth, position errors) for precision/recall (see module doc)."""
    truth_snr = np.asarray(truth_snr, float)
    keep = truth_snr >= snr_real
    truth_rc = np.asarray(truth_rc, float).reshape(-1, 2)[keep]
    snr = truth_snr[keep]
    i, j, d = match(det_rc, truth_rc, tol)
    n_det = len(np.asarray(det_rc).reshape(-1, 2))
    strong = snr >= snr_min
    tp_truth = int(strong[j].sum())
    return len(i), n_det, tp_truth, int(strong.sum()), d


def prf(tp_det: int, n_det: int, tp_truth: int, n_truth: int) -> tuple[float, float, float]:
    """(precision, recall, F1); precision = 1 when nothing was detected, recall = 1 when nothing to find."""
    p = tp_det / n_det if n_det else 1.0
    r = tp_truth / n_truth if n_truth else 1.0
    f = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    return p, r, f
