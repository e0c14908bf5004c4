"""Rule ``segment``: the micrograph's regions, from a human override, Segment Anything or the
automatic edge-based method, written to ``segmentation.h5`` (layout in docs/DEVELOPING.md).

Output ``segmentation.h5``:

* ``/labels`` int32 (rows, cols), units ``label``; 0 = unassigned, regions 1..n numbered by
  centroid, top to bottom then left to right (automatic methods; an override keeps the order of
  the values drawn, renumbered 1..n);
* table ``/regions``: ``label``, ``area_nm2``, ``centroid_nm`` (n, 2) [x, y], ``bbox_px`` (n, 4)
  [row0, col0, row1, col1) exclusive end, ``mean_intensity`` (image units), ``touches_border``;
* ``/contours/<label>`` float64 (m, 2) [x, y] nm: the closed outer polygon of the region's largest
  piece (first point not repeated); ``/holes/<label>/<k>``: polygons of holes in it (e.g. the
  film around particles), when there are any;
* root attributes ``method`` (canny / layers / sam / override), ``source`` (automatic / override) and the
  parameters the method derived (``sigma_nm``, ``lattice_periods_nm``, ...);
* summary fragment ``{"regions": {label: {"area_nm2", "centroid_nm"}}}``.

Figure ``figures/segment/overlay.png``: contours on the image, regions numbered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.h5 import set_summary
from ..io.image import Micrograph, read_image
from ..results.segmentation import Segmentation
from ..segment.figures import overlay_figure
from ..segment.override import read_label_override
from ..segment.regions import region_contours, region_table


def _override_path(value) -> str | None:
    """The override input (a path, or an empty / one-element list) as one path or None."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return str(value) or None
    items = [str(v) for v in value]
    return items[0] if items else None


def check_image(m: Micrograph, path) -> None:
    """UserError for an image that cannot be segmented: non-finite values or no contrast at all."""
    d = m.data
    if not np.all(np.isfinite(d)):
        raise UserError("image has NaN/Inf pixels; re-export the micrograph", path)
    if d.size == 0 or float(d.max()) == float(d.min()):
        raise UserError("image is blank (every pixel has the same value, no contrast to segment); check "
                        "the acquisition or remove the file from the dataset", path)


def cap_regions(labels: np.ndarray, max_regions: int, image: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """At most ``max_regions`` regions: the smallest region is merged into its most similar neighbour
    (closest mean intensity of ``image``; the longest shared boundary without an image), repeatedly
    (:func:`temtwin.segment.smallmerge.merge_smallest`), so every pixel keeps a region.  Regions
    without any neighbour (surrounded by unassigned pixels) cannot merge: if the cap is still
    exceeded, the smallest of them become unassigned (0).  Labels are renumbered 1..n in their
    previous order.  Returns (labels, number of regions merged or dropped)."""
    from ..segment.smallmerge import merge_smallest

    counts = np.bincount(labels.ravel()) if labels.size else np.zeros(1, np.int64)   # no sorted copy
    ids = np.flatnonzero(counts[1:]) + 1
    if len(ids) <= max_regions:
        return labels, 0
    img = np.zeros(labels.shape) if image is None else image
    out, merged = merge_smallest(labels, img, max_regions=max_regions)
    ids, counts = np.unique(out[out > 0], return_counts=True)
    if len(ids) <= max_regions:
        return out, merged
    keep = np.sort(ids[np.argsort(-counts, kind="stable")[:max_regions]])
    lut = np.zeros(int(out.max()) + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lut[out], merged + int(len(ids) - len(keep))


def segment_image(m: Micrograph, cfg: dict, override: str | None = None, model=None, progress=None):
    """(labels int32, attrs dict) for a micrograph: the override when given, else the configured
    method.  ``model`` is passed to Segment Anything (tests use a small random model); ``progress``
    (done, total, what) reports the tiles of a very large image."""
    if override:
        labels, values = read_label_override(override, m.shape)
        return labels, {"method": "override", "source": "override", "override_file": str(override),
                        "override_values": values}
    if cfg.get("method", "auto") == "sam":
        from ..segment.sam import segment_sam

        labels, info = segment_sam(m.data, m.pixel_size_nm, cfg.get("sam") or {}, model=model,
                                   min_area_nm2=float(cfg.get("min_area_nm2", 1.0)))
        return labels, {"method": "sam", "source": "automatic", **info}
    from ..segment.tiled import segment_large   # segment_auto; tiled above segment.tiled.above_px pixels

    res = segment_large(m.data, m.pixel_size_nm, cfg, progress=progress)
    return res.labels, {"method": "canny", "source": "automatic", **res.info}   # info may set method: layers


def _attr(v):
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
        return json.dumps(list(v))
    if isinstance(v, (list, tuple)):
        return np.asarray(v, float) if v else np.zeros(0)
    return v


def write_segmentation(f, m: Micrograph, labels: np.ndarray, attrs: dict, tolerance_nm) -> dict:
    """Write the result layout (module docstring) into an open HDF5 file; returns the summary."""
    table = region_table(labels, m.data, m.pixel_size_nm)
    contours, holes = region_contours(labels, m.pixel_size_nm, tolerance_nm)
    Segmentation(labels=labels.astype(np.int32, copy=False), table={
        "label": table.label, "area_nm2": table.area_nm2, "centroid_nm": table.centroid_nm,
        "bbox_px": table.bbox_px, "mean_intensity": table.mean_intensity, "touches_border": table.touches_border},
        contours=contours, holes=holes, attrs={k: _attr(v) for k, v in attrs.items()},
        intensity_units=str(m.meta.get("units", "a.u."))).write(f)
    summary = {"regions": {str(int(lab)): {"area_nm2": float(a), "centroid_nm": [float(c[0]), float(c[1])]}
                           for lab, a, c in zip(table.label, table.area_nm2, table.centroid_nm)}}
    set_summary(f, summary)
    return {"table": table, "contours": contours, "summary": summary}


def run(ctx) -> None:
    """Stage function of rule ``segment`` (inputs ``image``, ``override``; outputs ``h5``, ``figures``)."""
    cfg = ctx.section("segment")
    m = read_image(ctx.input["image"])
    check_image(m, ctx.input["image"])
    override = _override_path(ctx.input.get("override"))
    if override:
        ctx.log.info("segment: using the hand-made label map %s", override)
    ctx.log.info("segment: %s, %d x %d px", "hand-made label map" if override else cfg.get("method", "auto"),
                 m.shape[1], m.shape[0])
    ctx.progress(0, 3, "steps (segment, region table, contours)")
    labels, attrs = segment_image(m, cfg, override, progress=ctx.progress)
    for ov in ctx.paths("overrides"):            # human corrections (temtwin.workflow.overrides)
        from ..workflow.overrides import apply_segment, read_overrides, stage_actions

        acts = stage_actions(read_overrides(ov), ctx.wildcards.get("image", ""), "segment")
        labels, extra = apply_segment(labels, acts, ov)
        attrs.update(extra, source=f"{attrs['source']}+overrides")
        ctx.log.info("segment: overrides %s applied from %s", extra["overrides"], ov)
    ctx.log.info("segment: %s -> %d regions", attrs["method"], int(labels.max()))
    labels, dropped = cap_regions(labels, int(cfg.get("max_regions", 300)), m.data)
    if dropped:
        msg = (f"{dropped} smallest regions merged into their most similar neighbour (isolated ones left "
               f"unassigned) to stay within segment.max_regions ({cfg.get('max_regions', 300)}); raise "
               "segment.min_area_nm2 or max_regions")
        ctx.log.warning("%s: %s", ctx.input["image"], msg)
        attrs["regions_capped"] = msg
    ctx.progress(1, 3, "steps (segment, region table, contours)")
    if not np.any(labels > 0):
        src = override or ctx.input["image"]
        raise UserError("segmentation found no region (every pixel unassigned); check the image's intensities "
                        "(`temtwin info FILE`) or give a hand-made label map <sample>/labels/<image>.tif", src)
    with ctx.h5("h5") as f:
        out = write_segmentation(f, m, labels, attrs, cfg.get("contour_tolerance_nm"))
    ctx.progress(3, 3, "steps (segment, region table, contours)")
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    overlay_figure(m.data, labels, m.pixel_size_nm, out["contours"], out["table"], figdir / "overlay.png",
                   title=f"{m.sample}/{m.name}: {len(out['table'])} regions ({attrs['method']})")
