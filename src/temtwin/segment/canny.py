"""Automatic edge-based segmentation (``segmentation.method: canny``), every parameter from the image.

1. Scale (:mod:`.scale`): the dominant lattice periodicity from the power spectrum, σ ≥ the largest
   lattice period (fringes never become edges) and ≥ ``min_sigma_px`` pixels.
2. Features (:mod:`.features`) at scale σ on an analysis grid of at most ``max_analysis_px``
   pixels: local mean, local texture (std) and, for crystalline images, local lattice amplitudes;
   with a lattice, also the crystallinity (log lattice-ring energy, :mod:`.crystal`).  When it shows
   distinct crystal / amorphous / vacuum levels (a partly crystalline image: particles on a film)
   the lattice amplitudes are replaced by the crystallinity channel.
3. Canny edges (:mod:`.edges`) of the feature stack, hysteresis thresholds from the gradient
   statistics (multiples of the median, noise-normalised edge strength).
4. Closed boundaries: a watershed of the edge strength from markers = the connected areas free of
   Canny edges (edges closed by one pixel of dilation), so every region is bounded by a closed
   ridge of the edge strength.
5. Merging (:mod:`.merge`): boundaries without edge support or between statistically equal regions
   are removed, weakest first; regions smaller than the minimum area (nm², and at least the
   smoothing footprint π(2σ)²) are merged into their most similar neighbour.
6. Refinement (:mod:`.refine`): full-resolution labels, boundaries on the mid-level crossing of the
   feature transition (the true intensity edge).
7. Partly crystalline images only (:mod:`.crystal`; at least two separate crystalline components,
   e.g. particles on a film — one crystal beside amorphous material keeps steps 1-6): each
   crystalline component (crystallinity above the crystal level, regrown to its half-amplitude
   edge) becomes one region, regions mostly covered by crystals dissolve, and the boundaries
   between the remaining (amorphous / vacuum) regions are validated again without the crystals and
   their 2σ surroundings.

Labels are numbered 1..n by region centroid: top to bottom, then left to right (rows of centroids
closer than 1 % of the image height are ordered by x); every pixel is assigned (no 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold
from skimage.segmentation import watershed

from .crystal import crystal_levels, crystal_mask
from .edges import canny
from .features import compute_features
from .merge import boundary_pairs, feature_noise, merge_regions, revalidate
from .refine import refine_boundaries, remove_islands, upsample_feature
from .scale import find_lattice, smoothing_scale_nm

log = logging.getLogger("temtwin")

DEFAULTS: dict[str, Any] = {
    "min_area_nm2": 0.25,
    "max_analysis_px": 1024,
    "smoothing_nm": None,
    "lattice_factor": 1.0,
    "min_sigma_px": 1.5,
    "hysteresis": [2.0, 4.0],
    "min_contrast": 2.0,
    "min_jump": 0.4,
    "noise_floor": 0.02,
    "texture_scale": 2.0,
    "texture_denoise_px": 0.0,
    "min_significance": 8.0,
    "min_edge_support": 0.5,
    "refine": True,
    "max_lattice_period_nm": 2.0,
    "edge_scales": [0.0, 1.0],
    "boundary_factor": 1.25,
    "crystallinity": True,
    "crystal_log_ratio": float(np.log(4.0)),
    "crystal_scale": 0.5,
    "crystal_detect_sd": 3.0,
}


def _revalidate_background(labels, n_crystals, F, em, noise, corr_area, sigma_a, f, c, min_area_px):
    """Re-judge the boundaries between the non-crystalline regions once the crystals are known.

    The crystals (the last ``n_crystals`` labels) and a band of 2σ around them (delocalised fringes
    and blurred crystal contrast bias the statistics of the film next to them) are left out, and the
    validation pass of the merging (:func:`temtwin.segment.merge.revalidate`) runs on the rest at the
    analysis grid; the merges it makes are applied to the full-resolution labels."""
    nb = int(labels.max()) - n_crystals
    r0 = (f - 1) // 2
    coarse = labels[r0::f, r0::f][:F.shape[1], :F.shape[2]].astype(np.int32)
    if coarse.shape != F.shape[1:]:
        return labels
    cry = coarse > nb
    rad = int(np.ceil(2 * sigma_a))
    near = ndi.binary_dilation(cry, iterations=rad) if rad > 0 else cry
    work = np.where(near, 0, coarse).astype(np.int32)
    if work.max() < 2:
        return labels
    merged = revalidate(work, F, em.edges, em.G, noise, corr_area, sigma_a, c["min_contrast"],
                        c["min_significance"], c["min_jump"], c["min_edge_support"], min_area_px)
    m = work > 0
    lut = np.arange(int(labels.max()) + 1, dtype=np.int32)
    lut[work[m]] = merged[m] + int(labels.max())        # shifted past all old ids: no collisions
    out = lut[labels]
    used = np.unique(out)
    dense = np.zeros(int(out.max()) + 1, np.int32)
    dense[used] = np.arange(1, len(used) + 1, dtype=np.int32)
    return dense[out]


def _insert_crystals(labels: np.ndarray, feats, levels, min_area_full: float):
    """Overlay the crystalline components (one region each) on a full-resolution label map; pieces of
    the other regions left smaller than ``min_area_full`` pixels join their main neighbour.
    Returns (labels, number of crystals)."""
    full = upsample_feature(feats.cryst_fine, feats.factor, labels.shape)
    cm = crystal_mask(full, levels, min_area_full, margin_px=int(np.ceil(3 * feats.sigma_px)))
    n = int(cm.max())
    if n == 0:
        return labels, 0
    nb = int(labels.max()) + 1
    # regions of the edge segmentation that the crystals cover mostly (their halo) dissolve: their
    # remaining pixels go to the nearest other region
    tot = np.bincount(labels.ravel(), minlength=nb)
    cov = np.bincount(labels.ravel(), weights=(cm > 0).ravel().astype(float), minlength=nb)
    gone = cov > 0.5 * np.maximum(tot, 1)
    out = np.where(cm > 0, cm + nb, np.where(gone[labels], 0, labels)).astype(np.int32)
    if (out == 0).any():
        idx = ndi.distance_transform_edt(out == 0, return_distances=False, return_indices=True)
        out = out[idx[0], idx[1]]
    out = remove_islands(out, None, int(np.ceil(min_area_full)))
    # drop background labels left without pixels; renumber densely (crystals stay the last labels)
    used = np.unique(out)
    lut = np.zeros(int(out.max()) + 1, np.int32)
    lut[used] = np.arange(1, len(used) + 1, dtype=np.int32)
    return lut[out], int(np.sum(used > nb))


@dataclass
class AutoResult:
    """labels: int32 full-resolution labels 1..n; info: scale and thresholds used (for the log and the
    result file attributes); coarse: labels on the analysis grid; edges: Canny edges there."""

    labels: np.ndarray
    info: dict = field(default_factory=dict)
    coarse: np.ndarray | None = None
    edges: np.ndarray | None = None


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(v)
    cw = np.cumsum(w[o])
    return float(v[o][np.searchsorted(cw, 0.5 * cw[-1])])


def order_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ≥ 1 as 1..n by centroid: top to bottom, then left to right (0 stays 0).

    Centroid rows are quantised to 1 % of the image height so that regions side by side at about
    the same height are ordered by x.
    """
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(float)
    rows, cols = labels.shape
    yy = np.repeat(np.arange(rows, dtype=float), cols)
    xx = np.tile(np.arange(cols, dtype=float), rows)
    cy = np.bincount(flat, weights=yy, minlength=n) / np.maximum(area, 1)
    cx = np.bincount(flat, weights=xx, minlength=n) / np.maximum(area, 1)
    ids = np.nonzero(area[1:] > 0)[0] + 1
    q = np.floor(cy[ids] / max(0.01 * rows, 1.0))
    order = ids[np.lexsort((cx[ids], q))]
    lut = np.zeros(n, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[labels]


def segment_auto(image: np.ndarray, pixel_size_nm: tuple[float, float], cfg: dict | None = None,
                 ) -> AutoResult:
    """Segment a micrograph (float array, rows = y) with the automatic edge-based method.

    cfg: the ``segmentation`` config section (top-level keys and its ``canny`` subsection; missing
    keys take :data:`DEFAULTS`).  ``method``: ``auto`` (default) runs the multilayer-device mode
    (:mod:`temtwin.segment.layers`, ``info["method"] == "layers"``) on a lattice-free, layered image
    and this edge-based method otherwise; ``layers`` forces the former (unless the image shows no
    layer interface at all), ``canny`` the latter.
    """
    c = dict(DEFAULTS)
    cfg = dict(cfg or {})
    c.update({k: v for k, v in cfg.items() if k in DEFAULTS})
    c.update({k: v for k, v in (cfg.get("canny") or {}).items() if k in DEFAULTS})
    img = np.asarray(image, np.float32)
    px, py = (float(pixel_size_nm[0]), float(pixel_size_nm[1]))
    lattice = find_lattice(img, (px, py), max_period_nm=c["max_lattice_period_nm"])
    method = cfg.get("method") or "auto"
    if method in ("auto", "layers"):
        from .layers import layered_segmentation

        labels, linfo, why = layered_segmentation(img, (px, py), cfg.get("layers"), lattice.found,
                                                  forced=method == "layers", min_area_nm2=c["min_area_nm2"])
        if labels is not None:
            info = {"method": "layers", "method_reason": why,
                    "lattice_periods_nm": [float(d) for d in lattice.periods_nm], **linfo}
            return AutoResult(labels=labels, info=info)
        log.info("segment: %s; edge-based method", why)
    sigma_nm = smoothing_scale_nm((px, py), lattice, c["lattice_factor"], c["min_sigma_px"],
                                  c["smoothing_nm"])
    ring_k = np.hypot(lattice.g[:, 0], lattice.g[:, 1]) if (c["crystallinity"] and lattice.found) else None

    def decide(cryst_fine, factor, sigma_px):
        lv = crystal_levels(cryst_fine, c["crystal_log_ratio"], c["crystal_detect_sd"],
                            border=int(np.ceil(3 * sigma_px / factor)))
        if lv is None:
            return None
        # the crystallinity path is for separate crystals in an amorphous matrix (particles, grains
        # on a film): one connected crystal beside amorphous material (a device cross-section with
        # its oxide) keeps the layer-resolving lattice amplitudes
        m = ndi.binary_fill_holes(apply_hysteresis_threshold(cryst_fine, lv.detect, lv.core))
        cc, n = ndi.label(m)
        min_px = max(c["min_area_nm2"] / ((px * factor) * (py * factor)), np.pi * (sigma_px / factor) ** 2)
        sizes = np.bincount(cc.ravel())[1:]
        return lv if int((sizes >= min_px).sum()) >= 2 else None

    feats = compute_features(img, (px, py), sigma_nm, lattice.g, c["max_analysis_px"], c["texture_scale"],
                             c["texture_denoise_px"], ring_k=ring_k, cryst_scale=c["crystal_scale"],
                             cryst_decider=decide)
    levels = feats.cryst_info
    if feats.cryst_fine is not None:
        # fully crystalline images (layers): lattice amplitudes tell the layers apart, the
        # crystallinity channel adds nothing; partly crystalline ones: amplitudes vary with each
        # crystal's orientation and thickness and leak into the amorphous film by delocalisation,
        # the crystallinity channel separates crystal, film and vacuum
        keep = [k for k, nm in enumerate(feats.names)
                if (not nm.startswith("amp_") or levels is None) and (nm != "cryst" or levels is not None)]
        feats.data = feats.data[keep]
        feats.names = [feats.names[k] for k in keep]
        feats.scales = [feats.scales[k] for k in keep]
    F = feats.data
    f = feats.factor
    lo, hi = c["hysteresis"]
    sigma_a = feats.sigma_px / f
    border = min(int(np.ceil(3 * sigma_a)), max(0, min(F.shape[1:]) // 4))
    em = canny(F, lo, hi, border=border, scales=tuple(float(k) * sigma_a for k in c["edge_scales"]))
    # over-segmentation: watershed of G from its local minima (at most one per (2σ_a+1)² window)
    win = int(max(3, 2 * round(sigma_a) + 1))
    Gs = em.G
    minima = Gs <= ndi.minimum_filter(Gs, win, mode="nearest")
    markers, nmark = ndi.label(minima)
    over = watershed(Gs, markers).astype(np.int32)
    a_, b_, ln_, oe_, sg_, _ = boundary_pairs(over, em.edges, Gs)
    bmean = sg_ / np.maximum(ln_, 1)
    g_ref = _weighted_median(bmean, ln_) if len(bmean) else float(np.median(Gs))
    min_boundary_g = max(c["boundary_factor"] * g_ref, 1e-9)
    pa_nm2 = (px * f) * (py * f)
    min_area_px = max(c["min_area_nm2"] / pa_nm2, np.pi * sigma_a ** 2)
    noise, corr_area = feature_noise(F, sigma_a, c["noise_floor"], feats.scales)
    coarse, (noise, corr_area) = merge_regions(
        over, F, em.edges, Gs, noise, corr_area, sigma_a, min_boundary_g, c["min_contrast"],
        c["min_significance"], c["min_jump"], c["min_edge_support"], min_area_px, feats.scales, c["noise_floor"])
    if c["refine"]:
        # refine on the channels averaged at σ (the texture channel's wider window bulges at every
        # edge and would pull boundaries towards the noisier side)
        sharp = [k for k, sc in enumerate(feats.scales) if sc <= 1.0]
        labels = refine_boundaries(coarse, F[sharp], noise[sharp], f, img.shape,
                                   min_island_px=int(np.ceil(min_area_px * f * f)))
    else:
        from .refine import upsample_labels

        labels = upsample_labels(coarse, f, img.shape)
    n_crystals = 0
    if levels is not None:
        labels, n_crystals = _insert_crystals(labels, feats, levels, min_area_px * f * f)
        if n_crystals:
            labels = _revalidate_background(labels, n_crystals, F, em, noise, corr_area, sigma_a, f, c,
                                            min_area_px)
    labels = order_labels(labels)
    info = {
        "sigma_nm": max(sigma_nm, feats.sigma_px * min(px, py)),
        "lattice_periods_nm": [float(d) for d in lattice.periods_nm],
        "analysis_factor": f,
        "features": feats.names,
        "hysteresis_thresholds": [em.low, em.high],
        "n_initial_regions": int(over.max()),
        "n_regions": int(labels.max()),
        "min_area_nm2_effective": float(min_area_px * pa_nm2),
        "crystal_levels": [] if levels is None else [float(v) for v in levels.levels],
        "n_crystals": n_crystals,
    }
    log.info("segment: sigma %.3g nm, lattice periods %s nm, analysis grid /%d, %d -> %d regions",
             sigma_nm, np.round(lattice.periods_nm, 3).tolist(), f, info["n_initial_regions"],
             info["n_regions"])
    return AutoResult(labels=labels, info=info, coarse=coarse, edges=em.edges)
