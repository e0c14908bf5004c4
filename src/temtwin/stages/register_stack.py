"""Stage ``register_stack``: place a sample's images in the overview frame, propagate phases/strain.

Writes ``results/<sample>/stack.h5`` through :class:`temtwin.results.stack.Stack`:

* root attrs ``overview`` (image name), ``pixel_size_nm`` (overview's), ``frame``, ``n_images``,
  ``n_accepted``;
* ``/images/<image>``: attrs ``parent``, ``basis`` (content, stage or content+stage: what the placement
  rests on, see temtwin.stack.prior), ``offset_nm`` [x, y] (overview-frame point of the image's pixel
  (0, 0), nm; the frame's origin is the centre of overview pixel (0, 0)), ``scale`` (px_image /
  px_overview as found), ``rotation_deg``, ``confidence``, ``accepted``, ``reason``, ``ncc``,
  ``calibration_factor`` (found / calibrated pixel-size ratio), ``link`` (JSON: the registration into
  the parent: correlations, error estimates ``precision_pct`` and ``sigma_*``), ``attempts`` (JSON);
  datasets ``transform`` (2, 3) image px (col, row, 1) -> overview px (col, row)
  and ``footprint`` (4, 2) the image's outline in overview px (col, row);
* ``/phase_map`` int32 on the overview grid, index into ``/phase_names`` ("" = no phase, index 0);
* ``/regions/<label>``: attrs ``phase``, ``phase_score``, ``covered_fraction``, ``area_nm2``,
  ``sources`` (JSON list: image, region, phase, zone_axis, rotation_deg_overview, confidence,
  covered_fraction, area_nm2) and ``strain`` (JSON, overview axes, or "null").

A single-image sample is its own overview (identity placement); the file is still written.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..io.h5 import to_jsonable
from ..io.image import read_image
from ..plotting import new_figure, save_figure
from ..results.stack import Stack
from ..stack.chain import StackPlacement, choose_overview, place_stack
from ..stack.inputs import read_image_results
from ..stack.propagate import footprints, propagate

FRAME = ("overview frame: x right, y down, nm; origin at the centre of overview pixel (0, 0); overview "
         "pixel (col, row) is the point (col * px, row * py)")


def _paths(ctx, key: str, n: int) -> list:
    """Input ``key`` padded with None to one entry per image."""
    v = ctx.paths(key)
    return v + [None] * (n - len(v))


def _basis(p: StackPlacement) -> str:
    """What a placement rests on: ``content``, ``stage``, ``content+stage`` ("overview" for the overview)."""
    if not p.parent:
        return "overview" if p.accepted else ""
    return str((p.link.info if p.link is not None else {}).get("basis", "content"))


def _placement_summary(p: StackPlacement) -> dict:
    ok = p.accepted
    err = p.link.info.get("precision_pct") if (ok and p.link is not None) else None
    return {"parent": p.parent, "basis": _basis(p), "offset_nm": list(p.offset_nm) if ok else None,
            "scale": p.scale if ok else None, "rotation_deg": p.rotation_deg if ok else None,
            "confidence": p.confidence, "accepted": bool(ok), "reason": p.reason,
            "error_estimate_pct": err,
            "stage_limited_error_pct": (p.link.info.get("stage_limited_error_pct") if (ok and p.link is not None)
                                        else None)}


def run(ctx) -> None:
    """Stage ``register_stack`` (see module docstring)."""
    cfg = ctx.section("register_stack")
    try:
        cv2.setNumThreads(int(ctx.threads))
    except Exception:  # pragma: no cover
        pass
    img_paths = _paths(ctx, "images", 0)
    n = len(img_paths)
    segs, phs, gpas = (_paths(ctx, k, n) for k in ("segmentations", "phases", "gpas"))
    mics = [read_image(p) for p in img_paths]
    for m, p in zip(mics, img_paths):   # the result folder names the image when the attribute is absent
        if not m.name or m.name == "image":
            m.name = Path(p).parent.name
    overview = choose_overview(mics, cfg.get("overview") or None)
    ctx.log.info("overview: %s (%d images)", overview, n)
    placements = place_stack(mics, overview, cfg, log=ctx.log.info,
                             progress=lambda i, k: ctx.progress(i, k, "image registrations"))
    shapes = {m.name: m.shape for m in mics}
    pxs = {m.name: m.pixel_size_nm for m in mics}
    results = {m.name: read_image_results(m.name, s, ph, g, m.shape) for m, s, ph, g in zip(mics, segs, phs, gpas)}
    ov = next(m for m in mics if m.name == overview)
    regions, phase_map, phase_names = propagate(overview, results[overview].labels, ov.pixel_size_nm,
                                                placements, results, shapes, pxs)
    fps = footprints(placements, shapes)
    for p in placements.values():
        if not p.accepted:
            ctx.log.warning("%s: placement refused (%s)", p.name, p.reason)

    with ctx.h5("h5") as f:
        stack_result(overview, ov, mics, placements, fps, regions, phase_map, phase_names).write(f)

    fig_dir = Path(ctx.output["figures"])
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig = overview_figure(ov, placements, fps, phase_map, phase_names, results)
    save_figure(fig, fig_dir / "stack_overview.png")
    save_figure(phase_map_figure(ov, phase_map, phase_names, regions, results.get(overview)),
                fig_dir / "phase_map.png")


def stack_result(overview: str, ov, mics, placements, fps, regions, phase_map, phase_names) -> Stack:
    """The stack.h5 content (:class:`temtwin.results.stack.Stack`, layout in the module docstring)."""
    n_acc = sum(1 for p in placements.values() if p.accepted)
    out = Stack()
    out.attrs[""] = {"overview": overview, "pixel_size_nm": np.asarray(ov.pixel_size_nm, float), "frame": FRAME,
                     "n_images": len(mics), "n_accepted": n_acc}
    for m in mics:
        p = placements[m.name]
        a = {"parent": p.parent, "offset_nm": np.asarray(p.offset_nm, float), "scale": float(p.scale),
             "rotation_deg": float(p.rotation_deg), "confidence": float(p.confidence), "accepted": bool(p.accepted),
             "reason": p.reason, "basis": _basis(p), "pixel_size_nm": np.asarray(m.pixel_size_nm, float)}
        if p.link is not None:
            a.update(ncc=float(p.link.ncc), link_confidence=float(p.link.confidence),
                     calibration_factor=float(p.link.scale_factor),
                     link=json.dumps(to_jsonable(p.link.info), sort_keys=True))
        a["attempts"] = json.dumps(to_jsonable(p.attempts))
        out.attrs[f"images/{m.name}"] = a
        out.put(f"images/{m.name}/transform", p.transform, "1",
                description="affine image pixel (col, row, 1) -> overview pixel (col, row)")
        if m.name in fps:
            out.put(f"images/{m.name}/footprint", fps[m.name], "1",
                    description="image outline (outer pixel edges) in overview pixels (col, row)")
    out.put("phase_map", phase_map, "label", description="index into /phase_names per overview pixel (0 = no phase)")
    out.put("phase_names", np.array(phase_names, dtype=object), "1")
    for lab, rp in sorted(regions.items()):
        out.attrs[f"regions/{lab}"] = {
            "phase": rp.phase, "phase_score": float(rp.phase_score), "covered_fraction": float(rp.covered_fraction),
            "area_nm2": float(rp.area_nm2), "n_sources": len(rp.sources),
            "sources": json.dumps(to_jsonable(rp.sources)), "strain": json.dumps(to_jsonable(rp.strain))}
    out.summary = {
        "images": {m.name: {"placement": _placement_summary(placements[m.name])} for m in mics},
        "stack": {"overview": overview, "n_images": len(mics), "n_placed": n_acc,
                  "regions": {str(lab): {"phase": rp.phase, "covered_fraction": rp.covered_fraction,
                                         "sources": [{k: s[k] for k in ("image", "region", "phase", "covered_fraction")}
                                                     for s in rp.sources]}
                              for lab, rp in sorted(regions.items())}},
    }
    return out


def _image_phase(res) -> str:
    """The phase of an image's largest identified region ("" if none)."""
    if res is None or not res.regions:
        return ""
    best, area = "", -1
    counts = np.bincount(res.labels.ravel()) if res.labels is not None else None
    for lab, a in res.regions.items():
        if a.get("identified") and a.get("phase"):
            ar = int(counts[lab]) if counts is not None and lab < len(counts) else 0
            if ar > area:
                best, area = a["phase"], ar
    return best


def overview_figure(ov, placements, fps, phase_map, phase_names, results):
    """Overview image with the phase map and every image's footprint, labelled and coloured by phase."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Polygon

    from ..plotting import image_extent_nm

    px, py = ov.pixel_size_nm
    fig, axs = new_figure(1, 1, size=7.0)
    ax = axs[0, 0]
    shown, k = _downsample_labels(ov.data)          # large overviews are shown at 1/k resolution
    phase_map = _downsample_labels(np.asarray(phase_map))[0]
    lo, hi = np.percentile(shown, [1, 99])
    ext = image_extent_nm(ov.shape, ov.pixel_size_nm)
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi, extent=ext)
    cmap = plt.get_cmap("tab10")
    colours = {name: cmap(i % 10) for i, name in enumerate(phase_names[1:])}
    if len(phase_names) > 1:
        rgba = np.zeros(phase_map.shape + (4,))
        for i, name in enumerate(phase_names[1:], start=1):
            rgba[phase_map == i] = colours[name][:3] + (0.35,)
        ax.imshow(rgba, extent=ext, interpolation="nearest")
    handles = [Patch(color=colours[nm], label=nm) for nm in phase_names[1:]]
    refused = sorted(n for n, p in placements.items() if not p.accepted)
    for name, poly in sorted(fps.items()):
        p = placements[name]
        if name == ov.name or not p.accepted:      # a refused placement is not drawn (it is not known)
            continue
        ph = _image_phase(results.get(name))
        col = colours.get(ph, (1.0, 1.0, 1.0, 1.0))
        xy = poly * np.array([px, py])
        ax.add_patch(Polygon(xy, closed=True, fill=False, edgecolor=col, linewidth=1.6))
        ax.text(xy[:, 0].min(), xy[:, 1].min(), f"{name} ({p.confidence:.2f}, {_basis(p)})", color="white", fontsize=7,
                va="bottom", ha="left", bbox={"facecolor": col, "alpha": 0.7, "pad": 1, "linewidth": 0})
    if refused:
        ax.text(0.01, 0.01, "refused: " + ", ".join(refused), transform=ax.transAxes, color="white",
                fontsize=7, va="bottom", ha="left", bbox={"facecolor": (0.8, 0.1, 0.1), "alpha": 0.7, "pad": 2})
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    n_other = len(placements) - 1
    n_ok = sum(1 for n, p in placements.items() if p.accepted and n != ov.name)
    ax.set_title(f"{ov.name} (overview): {n_ok} of {n_other} other image(s) placed; colours: phases", fontsize=9)
    return fig


def _downsample_labels(a: np.ndarray, max_px: int = 2048) -> tuple[np.ndarray, int]:
    """Every k-th pixel of a label map so that its larger side is <= max_px (labels are not averaged)."""
    k = max(1, int(np.ceil(max(a.shape) / max_px)))
    return a[::k, ::k], k


def phase_map_figure(ov, phase_map, phase_names, regions, ov_results=None):
    """The stack's propagated phase map over the overview: one colour per phase (legend), regions
    without a phase in grey, region outlines, a scale bar, and a table of every region's phase, its
    coverage by placed images and the images it came from.  Large overviews are shown downsampled."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pm, k = _downsample_labels(np.asarray(phase_map))
    px = ov.pixel_size_nm[0] * k
    h, w = pm.shape
    fig = plt.figure(figsize=(11.0, 6.0))
    ax = fig.add_axes([0.03, 0.08, 0.55, 0.84])
    cmap = plt.get_cmap("tab10")
    rgb = np.full(pm.shape + (3,), 0.82)
    handles = []
    for i, name in enumerate(phase_names[1:], start=1):
        col = cmap((i - 1) % 10)[:3]
        rgb[pm == i] = col
        handles.append(Patch(color=col, label=name))
    handles.append(Patch(color=(0.82, 0.82, 0.82), label="no phase (not covered or not identified)"))
    ax.imshow(rgb, extent=(0, w * px, h * px, 0), interpolation="nearest")
    labels = getattr(ov_results, "labels", None)
    if labels is not None and labels.shape == ov.shape:
        lab, _ = _downsample_labels(labels)
        edge = (np.diff(lab, axis=0, prepend=lab[:1]) != 0) | (np.diff(lab, axis=1, prepend=lab[:, :1]) != 0)
        ov_rgba = np.zeros(lab.shape + (4,))
        ov_rgba[edge] = (0, 0, 0, 0.8)
        ax.imshow(ov_rgba, extent=(0, w * px, h * px, 0), interpolation="nearest")
        for lab_id in regions:
            rr, cc = np.nonzero(lab == lab_id)
            if rr.size:
                ax.text(cc.mean() * px, rr.mean() * px, str(lab_id), fontsize=7, ha="center", va="center",
                        color="black", bbox={"facecolor": "white", "alpha": 0.6, "pad": 1, "linewidth": 0})
    # scale bar: a round length near a fifth of the width
    target = 0.2 * w * px
    bar = 10 ** np.floor(np.log10(target))
    bar *= 5 if target / bar >= 5 else (2 if target / bar >= 2 else 1)
    x0, y0 = 0.05 * w * px, 0.94 * h * px
    ax.plot([x0, x0 + bar], [y0, y0], color="white", linewidth=5, solid_capstyle="butt")
    ax.plot([x0, x0 + bar], [y0, y0], color="black", linewidth=2, solid_capstyle="butt")
    txt = f"{bar / 1000:g} µm" if bar >= 1000 else f"{bar:g} nm"
    ax.text(x0 + bar / 2, y0 - 0.02 * h * px, txt, ha="center", va="bottom", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    title = f"{ov.name}: propagated phase map"
    if k > 1:
        title += f" (shown at 1/{k} resolution)"
    ax.set_title(title, fontsize=9)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    # coverage table
    tx = fig.add_axes([0.60, 0.05, 0.39, 0.55])
    tx.axis("off")
    rows = []
    for lab_id, rp in sorted(regions.items(), key=lambda z: -z[1].area_nm2)[:18]:
        src = ", ".join(sorted({s["image"] for s in rp.sources})) or "-"
        rows.append([str(lab_id), rp.phase or "-", f"{100 * rp.covered_fraction:.0f} %", f"{rp.area_nm2:.0f}",
                     src[:28]])
    if rows:
        tb = tx.table(cellText=rows, colLabels=["region", "phase", "covered", "area nm²", "sources"],
                      loc="upper left", cellLoc="left", colWidths=[0.1, 0.24, 0.14, 0.16, 0.36])
        tb.auto_set_font_size(False)
        tb.set_fontsize(6.5)
        tb.scale(1.0, 1.1)
    tx.set_title("regions (largest first): phase, share covered by placed images, sources", fontsize=7.5)
    return fig
