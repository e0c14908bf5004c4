"""Propagation of phases, orientations and strain from placed images to the overview's regions.

Each accepted image (the overview itself included, with the identity transform) is sampled on a grid
that is finer than the overview's pixels (stride = half an overview pixel); every sample is mapped into
the overview with the image's transform and falls in one overview region.  Per (overview region, image
region) pair this gives the overlap area in nm²; image regions with an identified phase become
*sources* of the overview region, with provenance (image, region, phase, zone axis, in-plane rotation in
the overview frame, confidence, covered fraction = overlap / overview-region area).  The overview region
takes the phase with the largest sum of overlap area x phase confidence.  Strain samples (GPA mask) are
rotated from the image axes into the overview axes (e' = R e R^T) and averaged per overview region.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from .chain import StackPlacement
from .inputs import ImageResults

STRAIN_KEYS = ("exx", "eyy", "exy", "rotation")


@dataclass
class RegionPhase:
    """What an overview region received.

    phase: propagated phase ("" when no placed image identified one inside it); phase_score: that
    phase's share of the area x confidence votes; covered_fraction: share of the region's area covered
    by placed images other than the overview; sources: provenance, largest overlap first; strain: mean
    and standard deviation of exx, eyy, exy (overview axes, 1) and rotation (rad), with n samples and
    images, or None.
    """

    label: int
    area_nm2: float
    phase: str = ""
    phase_score: float = 0.0
    covered_fraction: float = 0.0
    sources: list[dict] = field(default_factory=list)
    strain: dict | None = None


def _conf(a: Mapping) -> float:
    try:
        c = float(a.get("confidence", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return c if math.isfinite(c) and c > 0 else (1.0 if not math.isfinite(c) else 0.0)


def _footprint(to_ov: np.ndarray, shape) -> np.ndarray:
    """(4, 2) overview-pixel corners (col, row) of an image's outer pixel edges."""
    rows, cols = shape
    c = np.array([[-0.5, -0.5, 1], [cols - 0.5, -0.5, 1], [cols - 0.5, rows - 0.5, 1], [-0.5, rows - 0.5, 1]]).T
    return (to_ov @ c)[:2].T


def footprints(placements: Mapping[str, StackPlacement], shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Overview-pixel footprint polygons of all images with a transform (accepted or not)."""
    return {n: _footprint(p.to_overview, shapes[n]) for n, p in placements.items()
            if np.isfinite(p.to_overview).all()}


_BLOCK = 1 << 22     # image samples mapped per block (bounds memory on gigapixel overviews)


def propagate(overview: str, ov_labels: np.ndarray | None, px_ov, placements: Mapping[str, StackPlacement],
              results: Mapping[str, ImageResults], shapes: Mapping[str, tuple],
              pixel_sizes: Mapping[str, tuple], min_share: float = 0.25
              ) -> tuple[dict[int, RegionPhase], np.ndarray, list[str]]:
    """Overview regions with their propagated phase and strain; the phase map and its names.

    An image region is a source of an overview region only when it makes up at least ``min_share`` of
    that image's part of the overview region (slivers along boundaries, where the two segmentations
    differ by a pixel or two, are not evidence); likewise for the image's valid strain pixels.

    Returns (regions by label, phase_map int32 on the overview grid indexing phase_names, phase_names
    with "" = no phase at index 0).  Without an overview segmentation the whole overview is region 1.
    """
    shape_ov = tuple(shapes[overview])
    labels = np.ones(shape_ov, np.int32) if ov_labels is None else np.asarray(ov_labels, np.int32)
    n_lab = int(labels.max()) + 1 if labels.size else 1
    pxo = (float(px_ov[0]), float(px_ov[1]))
    region_area = np.bincount(labels.ravel(), minlength=n_lab) * pxo[0] * pxo[1]
    regions = {int(l): RegionPhase(int(l), float(region_area[l])) for l in np.flatnonzero(region_area) if l > 0}
    votes: dict[int, dict[str, float]] = {l: {} for l in regions}
    s_sum = np.zeros((len(STRAIN_KEYS), n_lab))
    s_sq = np.zeros((len(STRAIN_KEYS), n_lab))
    s_n = np.zeros(n_lab)
    s_images: dict[int, set] = {}
    covered = np.zeros(shape_ov, np.uint8)
    for name, pl in placements.items():
        if not pl.accepted or not np.isfinite(pl.to_overview).all():
            continue
        res = results.get(name)
        rows, cols = shapes[name]
        T = pl.to_overview
        if name != overview:
            cv2.fillPoly(covered, [np.rint(_footprint(T, (rows, cols)) * 16).astype(np.int32)], 1,
                         lineType=cv2.LINE_8, shift=4)
        scale = max(pl.scale, 1e-12) if name != overview else 1.0
        stride = max(1, int(0.5 / scale))
        rr = np.arange(stride // 2, rows, stride)
        cc = np.arange(stride // 2, cols, stride)
        has_ph = bool(res is not None and res.labels is not None and res.regions)
        has_st = res is not None and res.strain is not None
        nk = int(res.labels.max()) + 1 if has_ph else 1
        area = np.zeros(n_lab * nk)
        tot_o, cnt_s = np.zeros(n_lab), np.zeros(n_lab)
        sw, sq = np.zeros((len(STRAIN_KEYS), n_lab)), np.zeros((len(STRAIN_KEYS), n_lab))
        th = math.radians(pl.rotation_deg if name != overview else 0.0)
        c, s = math.cos(th), math.sin(th)
        n_in = 0
        step = max(1, _BLOCK // max(1, len(cc)))    # blocks of ~4 M samples (one block up to 2048²)
        for i0 in range(0, len(rr), step):             # row blocks, each vectorised
            R, C = np.meshgrid(rr[i0:i0 + step], cc, indexing="ij")
            R, C = R.ravel(), C.ravel()
            xo = T[0, 0] * C + T[0, 1] * R + T[0, 2]
            yo = T[1, 0] * C + T[1, 1] * R + T[1, 2]
            jo, io = np.rint(xo).astype(np.int64), np.rint(yo).astype(np.int64)
            inside = (io >= 0) & (io < shape_ov[0]) & (jo >= 0) & (jo < shape_ov[1])
            R, C, io, jo = R[inside], C[inside], io[inside], jo[inside]
            if R.size == 0:
                continue
            n_in += R.size
            lab_o = labels[io, jo].astype(np.int64)
            if has_ph:   # phases: overlap area per (overview label, image label)
                lab_k = res.labels[R, C].astype(np.int64)
                area += np.bincount(lab_o * nk + lab_k, minlength=n_lab * nk)
            if has_st:   # strain: samples inside the GPA mask, rotated into the overview axes
                tot_o += np.bincount(lab_o, minlength=n_lab)
                ok = np.ones(R.size, bool) if res.mask is None else res.mask[R, C]
                e = np.stack([res.strain[k][R[ok], C[ok]] if k in res.strain else np.zeros(int(ok.sum()))
                              for k in STRAIN_KEYS])
                fin = np.all(np.isfinite(e), axis=0)
                e, lo_s = e[:, fin], lab_o[ok][fin]
                if e.shape[1]:
                    exx, eyy, exy = e[0], e[1], e[2]
                    # e' = R e R^T with R the image axes' rotation in the overview frame
                    e_rot = np.stack([c * c * exx - 2 * c * s * exy + s * s * eyy,
                                      s * s * exx + 2 * c * s * exy + c * c * eyy,
                                      c * s * (exx - eyy) + (c * c - s * s) * exy, e[3]])
                    cnt_s += np.bincount(lo_s, minlength=n_lab)
                    for i in range(len(STRAIN_KEYS)):
                        sw[i] += np.bincount(lo_s, weights=e_rot[i], minlength=n_lab)
                        sq[i] += np.bincount(lo_s, weights=e_rot[i] ** 2, minlength=n_lab)
        if n_in == 0:
            continue
        pk = pixel_sizes[name]
        w_area = stride * stride * pk[0] * pk[1]
        if has_ph:
            area = area.reshape(n_lab, nk) * w_area
            rot_img = pl.rotation_deg if name != overview else 0.0
            in_lo = area.sum(axis=1)
            for lo, lk in zip(*np.nonzero(area)):
                a = res.regions.get(int(lk))
                if lo == 0 or lk == 0 or a is None or not a.get("identified") or not a.get("phase"):
                    continue
                if area[lo, lk] < min_share * in_lo[lo]:
                    continue
                conf = _conf(a)
                cov = float(area[lo, lk] / max(region_area[lo], 1e-12))
                rd = a.get("rotation_deg")
                rd = float(rd) + rot_img if rd is not None and np.isfinite(float(rd)) else None
                src = {"image": name, "region": int(lk), "phase": a["phase"],
                       "zone_axis": [int(round(float(v))) for v in np.ravel(a.get("zone_axis", []))],
                       "rotation_deg_overview": rd,
                       "confidence": float(a.get("confidence", float("nan"))),
                       "covered_fraction": min(cov, 1.0), "area_nm2": float(area[lo, lk])}
                regions[int(lo)].sources.append(src)
                votes[int(lo)][a["phase"]] = votes[int(lo)].get(a["phase"], 0.0) + float(area[lo, lk]) * conf
        if has_st and cnt_s.any():
            # as for phases: strain counts for a region only where it covers min_share of the image's
            # part of that region (no slivers along boundaries)
            keep = cnt_s >= min_share * tot_o
            cnt = np.where(keep, cnt_s, 0.0)
            for i in range(len(STRAIN_KEYS)):
                s_sum[i] += sw[i] * keep
                s_sq[i] += sq[i] * keep
            s_n += cnt
            for l in np.nonzero(cnt)[0]:
                s_images.setdefault(int(l), set()).add(name)
    # covered pixels per region (a count: no full-size float64 weights on gigapixel overviews)
    cov_area = np.bincount(labels[covered > 0], minlength=n_lab).astype(float) * pxo[0] * pxo[1]
    names = sorted({ph for v in votes.values() for ph in v})
    phase_names = [""] + names
    lut = np.zeros(n_lab, np.int32)
    for l, rp in regions.items():
        rp.covered_fraction = float(min(1.0, cov_area[l] / max(region_area[l], 1e-12)))
        rp.sources.sort(key=lambda d: (-d["area_nm2"], d["image"], d["region"]))
        v = votes[l]
        tot = sum(v.values())
        if v and tot > 0:
            best = max(sorted(v), key=lambda k: v[k])
            rp.phase, rp.phase_score = best, float(v[best] / tot)
            lut[l] = phase_names.index(best)
        if s_n[l] > 0:
            mean = s_sum[:, l] / s_n[l]
            std = np.sqrt(np.maximum(s_sq[:, l] / s_n[l] - mean ** 2, 0.0))
            rp.strain = {**{f"{k}_mean": float(m) for k, m in zip(STRAIN_KEYS, mean)},
                         **{f"{k}_std": float(sd) for k, sd in zip(STRAIN_KEYS, std)},
                         "n_samples": int(s_n[l]), "images": sorted(s_images.get(l, []))}
    phase_map = lut[labels]
    return regions, phase_map.astype(np.int32, copy=False), phase_names
