"""Where to take a region's FFT: the largest reliable window inside it, or its masked area.

A region's FFT is reliable when the window holds enough lattice periods.  The minimum field of view
is ``max(min_window_px, min_window_nm / pixel size)`` per side; it is derived from the pixel size so
that the same setting serves every magnification.

Conventions: windows are ``(row0, col0, row1, col1)`` with exclusive ends, in image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: aspect ratios (width / height) tried for the inscribed rectangle
ASPECTS = (1.0, 4 / 3, 3 / 4, 2.0, 0.5, 3.0, 1 / 3, 4.0, 0.25)


@dataclass
class RegionWindow:
    """The part of a region whose FFT is taken.

    box: (row0, col0, row1, col1) exclusive end, image pixels.
    weight: None for a full rectangular window; else a float32 array of the box's shape in [0, 1]
      (the region's mask with soft edges) for the masked-area mode.
    mode: ``window`` (inscribed rectangle), ``masked`` (masked area of the region's bounding box) or
      ``too_small`` (no reliable FFT possible; box is the bounding box).
    min_side_px: the minimum window side used (from the pixel size).
    """

    box: tuple[int, int, int, int]
    weight: np.ndarray | None
    mode: str
    min_side_px: int

    @property
    def shape(self) -> tuple[int, int]:
        r0, c0, r1, c1 = self.box
        return (r1 - r0, c1 - c0)

    @property
    def usable(self) -> bool:
        return self.mode != "too_small"


def min_window_px(pixel_size_nm, min_window_nm: float = 1.2, min_px: int = 32) -> int:
    """Smallest window side (px) that holds ``min_window_nm`` of field of view (and >= ``min_px``)."""
    px = min(float(pixel_size_nm[0]), float(pixel_size_nm[1]))
    return int(max(min_px, np.ceil(min_window_nm / px)))


def _box_sums(integral: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of the mask over every h x w box (valid positions), from the integral image."""
    I = integral
    return I[h:, w:] - I[:-h, w:] - I[h:, :-w] + I[:-h, :-w]


def largest_rectangle(mask: np.ndarray, aspects=ASPECTS, analysis_px: int = 512):
    """Largest axis-aligned rectangle of one of ``aspects`` (width / height) inside ``mask``.

    The search runs on a grid of at most ``analysis_px`` per side (a coarse pixel counts as inside
    only when all its fine pixels are), by a binary search on the height for every aspect ratio with
    an integral image; among the positions where the best rectangle fits, the one nearest to the
    mask's centroid is chosen.  Returns (row0, col0, row1, col1) exclusive end, or None when the mask
    is empty.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    H, W = mask.shape
    f = int(max(1, np.ceil(max(H, W) / analysis_px)))
    if f > 1:
        Hc, Wc = H // f, W // f
        m = mask[:Hc * f, :Wc * f].reshape(Hc, f, Wc, f).all(axis=(1, 3))
        if not m.any():
            f, m = 1, mask
    else:
        m = mask
    I = np.zeros((m.shape[0] + 1, m.shape[1] + 1), np.int64)
    I[1:, 1:] = np.cumsum(np.cumsum(m, 0), 1)
    best = (0, 0, 0, 1.0)  # area, h, w, aspect
    for a in aspects:
        lo, hi = 0, m.shape[0]
        while lo < hi:
            h = (lo + hi + 1) // 2
            w = max(1, int(round(a * h)))
            if w > m.shape[1] or not (_box_sums(I, h, w) == h * w).any():
                hi = h - 1
            else:
                lo = h
        if lo > 0:
            w = max(1, int(round(a * lo)))
            area = lo * w
            if area > best[0] or (area == best[0] and abs(np.log(a)) < abs(np.log(best[3]))):
                best = (area, lo, w, a)
    _, h, w, _ = best
    if h == 0:
        return None
    ok = _box_sums(I, h, w) == h * w
    rr, cc = np.nonzero(ok)
    cy, cx = ndimage.center_of_mass(m)
    k = int(np.argmin((rr + h / 2 - cy) ** 2 + (cc + w / 2 - cx) ** 2))
    box = [int(rr[k]), int(cc[k]), int(rr[k] + h), int(cc[k] + w)]
    box = _expand(I, box, m.shape)
    return (box[0] * f, box[1] * f, box[2] * f, box[3] * f)


def _inside(I, box) -> bool:
    r0, c0, r1, c1 = box
    return I[r1, c1] - I[r0, c1] - I[r1, c0] + I[r0, c0] == (r1 - r0) * (c1 - c0)


def _expand(I, box, shape):
    """Push each side of a box outwards as far as it stays inside the mask (binary search per side)."""
    H, W = shape
    for _ in range(2):
        for side, limit in ((0, 0), (1, 0), (2, H), (3, W)):
            lo, hi = 0, abs(limit - box[side])
            sign = -1 if side < 2 else 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                b = list(box)
                b[side] += sign * mid
                if _inside(I, b):
                    lo = mid
                else:
                    hi = mid - 1
            box[side] += sign * lo
    return box


def _cap(box, max_side: int):
    """Centre-crop a box to at most ``max_side`` per side."""
    r0, c0, r1, c1 = box
    if r1 - r0 > max_side:
        r0 += (r1 - r0 - max_side) // 2
        r1 = r0 + max_side
    if c1 - c0 > max_side:
        c0 += (c1 - c0 - max_side) // 2
        c1 = c0 + max_side
    return (r0, c0, r1, c1)


def soft_mask(mask: np.ndarray, taper_px: float) -> np.ndarray:
    """The mask with edges tapered (raised cosine over ``taper_px`` inside the edge), float32 in [0, 1]."""
    if taper_px <= 0:
        return mask.astype(np.float32)
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    t = np.clip(d / taper_px, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def region_window(mask: np.ndarray, pixel_size_nm, min_window_nm: float = 1.2, min_px: int = 32,
                  max_window_px: int = 2048, masked_fraction: float = 0.35) -> RegionWindow:
    """Choose where to take the FFT of the region ``mask`` (bool, image shape).

    The largest inscribed rectangle (aspect 1:4 to 4:1) is used when its short side reaches the
    minimum field of view and it covers at least ``masked_fraction`` of the region; otherwise the
    region's bounding box with the region's mask (soft edges) as weight, when the region holds at
    least the area of a disk of the minimum field of view; otherwise ``too_small``.  Windows larger than
    ``max_window_px`` are centre-cropped.
    """
    mask = np.asarray(mask, bool)
    nmin = min_window_px(pixel_size_nm, min_window_nm, min_px)
    area = int(np.count_nonzero(mask))
    # bounding box from the occupied rows and columns (no coordinate arrays of every region pixel)
    rows = np.flatnonzero(mask.any(axis=1)) if area else np.array([0])
    cols = np.flatnonzero(mask.any(axis=0)) if area else np.array([0])
    bbox = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    rect = largest_rectangle(mask) if area else None
    if rect is not None:
        h, w = rect[2] - rect[0], rect[3] - rect[1]
        if min(h, w) >= nmin and h * w >= masked_fraction * area:
            return RegionWindow(_cap(rect, max_window_px), None, "window", nmin)
    if area >= 0.25 * np.pi * nmin * nmin:
        box = _cap(bbox, max_window_px)
        r0, c0, r1, c1 = box
        weight = soft_mask(mask[r0:r1, c0:c1], taper_px=max(2.0, 0.1 * nmin))
        return RegionWindow(box, weight, "masked", nmin)
    return RegionWindow(bbox, None, "too_small", nmin)
