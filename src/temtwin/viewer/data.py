"""What a sample page shows, read from the result files (nothing is recomputed).

:func:`sample_payload` returns one JSON-able mapping per sample: per image the micrograph, the region
outlines (nm), each region's phase call, ranked candidates, indexed spots and FFT, GPA strain maps (and
σ maps ``/strain_sigma/*`` when the gpa stage wrote them), optional simulation maps, the image-level
summary (calibration, scan distortion, ...); per sample the placement of each image in the overview
(stack.h5), a projection of the atomic model (model.h5), the stage figures (physics summaries) and
the corrections already saved in overrides.yaml.  Missing files or keys are skipped: the page shows
what exists, and says what is absent.

Coordinates: nm, x right, y down (image rows); FFT axes kx right, ky down in nm⁻¹.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..io.h5 import read_table, to_jsonable
from ..results.gpa import Gpa
from ..results.image import Image
from ..results.peaks import Peaks
from ..results.phases import Phases
from ..results.segmentation import Segmentation
from ..results.simulation import Simulation
from ..results.summary import read_summary_json
from . import encode

log = logging.getLogger("temtwin")

STRAIN = ("exx", "eyy", "exy")
#: figure folders (``figures/<rule>/``) shown as images on the page; the other stages are shown as maps
SAMPLE_FIGURE_STAGES = ("register_stack", "fem_geometry", "atomic_model", "keating", "phonons", "tb_ldos")
IMAGE_FIGURE_STAGES = ("phase_id", "scan_correct", "simulate_image")


def _s(v) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return to_jsonable(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _attrs(obj) -> dict:
    a = obj if isinstance(obj, dict) else obj.attrs
    return {k: _s(v) for k, v in a.items() if k not in ("summary", "cif", "input_digests")}


def _poly(xy: np.ndarray, max_points: int = 400) -> list:
    """Closed polygon (m, 2) nm, thinned to <= max_points, rounded to 0.1 pm."""
    xy = np.asarray(xy, float)
    if len(xy) > max_points:
        xy = xy[np.linspace(0, len(xy) - 1, max_points).astype(int)]
    return np.round(xy, 4).tolist()


def _table(g) -> dict:
    """A table (group or {column: values}) as {"columns": [...], "rows": [[...], ...]} (strings decoded,
    floats rounded)."""
    t = g if isinstance(g, dict) else read_table(g)
    cols = list(t)
    n = len(next(iter(t.values()))) if t else 0
    rows = []
    for i in range(n):
        row = []
        for c in cols:
            v = _s(t[c][i])
            row.append(float(f"{v:.5g}") if isinstance(v, float) else v)
        rows.append(row)
    return {"columns": cols, "rows": rows}


def _optional(what: str, notes: list, fn, *a, **kw):
    """Run ``fn``; on an unexpected layout record a note (the page shows it) instead of failing."""
    try:
        return fn(*a, **kw)
    except Exception as e:  # noqa: BLE001 - optional content written by other stages
        log.warning("viewer: %s not shown (%s: %s)", what, type(e).__name__, e)
        notes.append(f"{what} not shown: {type(e).__name__}: {e}")
        return None


def image_payload(folder: Path, name: str, summary: dict, cfg: dict) -> dict:
    """Everything the page shows for one image (``folder`` = results/<sample>/<image>)."""
    notes: list[str] = []
    out: dict[str, Any] = {"name": name, "notes": notes, "regions": {}}
    im = Image.read(folder / "image.h5")
    img = im.data
    px = [float(v) for v in im.pixel_size_nm]
    out.update(shape=list(img.shape), pixel_size_nm=px, units=im.units, mode=_s(im.attrs.get("mode", "")),
               source_file=_s(im.attrs.get("source_file", "")))
    out["display"] = encode.gray_jpeg(img, int(cfg["display_px"]), int(cfg["jpeg_quality"]))
    out["info"] = {k: v for k, v in summary.items() if k != "regions"}
    regions = out["regions"]
    rsum = summary.get("regions") or {}
    for lab, r in rsum.items():
        regions[lab] = {"label": lab, "summary": r}
    seg = folder / "segmentation.h5"
    if seg.is_file():
        sr = Segmentation.read(seg)
        out["segmentation"] = {k: v for k, v in sr.attrs.items() if k in ("method", "source", "overrides")}
        for lab, poly in sr.contours.items():
            regions.setdefault(str(lab), {"label": str(lab), "summary": {}})["contour"] = _poly(poly)
        if sr.table and max(img.shape) > int(cfg["display_px"]):
            _optional("full-resolution details", notes, _details, img, px, sr.table, regions,
                      int(cfg["detail_px"]), int(cfg["jpeg_quality"]))
    pk = folder / "peaks.h5"
    if pk.is_file():
        _optional("FFTs and peaks", notes, _read_peaks, pk, regions, int(cfg["fft_px"]))
    ph = folder / "phases.h5"
    if ph.is_file():
        _read_phases(ph, regions, out)
    gp = folder / "gpa.h5"
    if gp.is_file():
        out["gpa"] = _optional("strain maps", notes, _read_gpa, gp, int(cfg["map_px"]))
    for simname in ("simulation.h5",):
        if (folder / simname).is_file():
            out["simulation"] = _optional("simulated image", notes, _read_maps, folder / simname,
                                          int(cfg["map_px"]))
    out["figures"] = _figures(folder / "figures", IMAGE_FIGURE_STAGES, int(cfg["figure_px"]), notes)
    return out


def _details(img, px, table, regions: dict, size: int, quality: int) -> None:
    """Full-resolution crops (``size`` px square, centred on each region's bounding box) for images
    shown downsampled: the lattice at native sampling where the user looks, not everywhere."""
    for lab, bb in zip(table["label"], table["bbox_px"]):
        r0, c0, r1, c1 = (int(v) for v in bb)
        cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
        h, w = min(size, img.shape[0]), min(size, img.shape[1])
        top = int(np.clip(cr - h // 2, 0, img.shape[0] - h))
        left = int(np.clip(cc - w // 2, 0, img.shape[1] - w))
        crop = img[top:top + h, left:left + w]
        regions.setdefault(str(int(lab)), {"label": str(int(lab)), "summary": {}})["detail"] = {
            **encode.gray_jpeg(crop, size, quality), "origin_nm": [left * px[0], top * px[1]]}


def _read_peaks(path: Path, regions: dict, fft_px: int) -> None:
    for label, pr in Peaks.read(path).regions.items():
        lab = str(label)
        r = regions.setdefault(lab, {"label": lab, "summary": {}})
        r["crystalline"] = bool(pr.attrs.get("crystalline", False))
        if pr.table is not None:
            t = pr.table
            r["peaks"] = {"kx": np.round(t["kx"], 4).tolist(), "ky": np.round(t["ky"], 4).tolist()}
        if pr.fft is not None:
            ext = pr.extent if pr.extent is not None else [-1, 1, -1, 1]
            r["fft"] = {**encode.gray_webp(pr.fft, fft_px), "extent": [float(v) for v in ext]}


def _read_phases(path: Path, regions: dict, out: dict) -> None:
    ph = Phases.read(path, only=Phases.CALLS)
    out["calibration_scale_factor"] = _s(ph.group_attrs().get("calibration_scale_factor"))
    for label, pr in ph.regions.items():
        lab = str(label)
        r = regions.setdefault(lab, {"label": lab, "summary": {}})
        r["call"] = _attrs(pr.attrs)
        if pr.candidates is not None:
            r["candidates"] = _table(pr.candidates)
        if pr.spots is not None:
            t = pr.spots
            r["spots"] = {"kx": np.round(t["kx"], 4).tolist(), "ky": np.round(t["ky"], 4).tolist(),
                          "hkl": [f"{h} {k} {l}" for h, k, l in zip(t["h"], t["k"], t["l"])],
                          "crystal": [int(v) for v in t.get("crystal", np.ones(len(t["kx"])))]}
    out["phases"] = {name: {k: v for k, v in _attrs(a).items()
                            if k in ("space_group", "formula", "lattice_abc_nm", "lattice_angles_deg")}
                     for name, a in ph.phases.items()}


def _read_gpa(path: Path, map_px: int) -> dict:
    g = Gpa.read(path, only=("strain", "rotation", "mask", "strain_sigma"))
    res: dict[str, Any] = {"applicable": g.applicable, "reason": g.reason,
                           "reference_label": _s(g.group_attrs().get("reference_label")), "maps": [], "sigma": []}
    if not res["applicable"] or not g.has("strain"):
        return res
    mask = g.mask
    for c, v in g.strain.items():
        res["maps"].append({"name": c, "units": "1", **encode.map_image(v, map_px, mask)})
    if g.rotation is not None:
        res["maps"].append({"name": "rotation", "units": "rad", **encode.map_image(g.rotation, map_px, mask)})
    for c in g.children("strain_sigma"):
        d = g.get(f"strain_sigma/{c}")
        if np.ndim(d) == 2:
            res["sigma"].append({"name": f"σ {c}", "units": g.units.get(f"strain_sigma/{c}") or "1",
                                 **encode.map_image(d, map_px, mask, cmap="magma", symmetric=False,
                                                    vmin=0.0, vmax=None)})
    return res


def _read_maps(path: Path, map_px: int) -> dict:
    """Every 2-D dataset of simulation.h5 (simulated image, residual, ...), at most 8."""
    maps: list[dict] = []
    sim = Simulation.read(path)

    def visit(prefix: str) -> None:
        names = sim.children(prefix) if prefix else sorted({k.split("/")[0] for k in [*sim.data, *sim.attrs] if k})
        datasets = [n for n in names if prefix + n in sim.data]
        for name in datasets:
            d = sim.data[prefix + name]
            if np.ndim(d) == 2 and min(np.shape(d)) >= 8 and len(maps) < 8:
                full = prefix + name
                sym = "resid" in full.lower() or "diff" in full.lower()
                maps.append({"name": full, "units": sim.units.get(full, ""),
                             **encode.map_image(np.asarray(d, float), map_px, cmap="RdBu_r" if sym else "gray",
                                                symmetric=sym)})
        for name in names:
            if name not in datasets:
                visit(prefix + name + "/")

    visit("")
    attrs = dict(sim.group_attrs(), applicable=sim.applicable, reason=sim.reason)
    return {"attrs": {k: _s(v) for k, v in attrs.items() if isinstance(_s(v), (int, float, str, bool))},
            "maps": maps}


def _figures(folder: Path, stages, max_px: int, notes: list) -> list[dict]:
    figs = []
    if not folder.is_dir():
        return figs
    for st in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        if st not in stages and not any(st.startswith(s) for s in stages):
            continue
        for p in sorted((folder / st).glob("*.png")):
            if p.stem.startswith("region_"):
                continue                                   # per-region FFT figures: shown interactively
            fig = _optional(f"figure {st}/{p.name}", notes, encode.figure_file, p, max_px)
            if fig:
                figs.append({"stage": st, "name": p.stem, **fig})
    return figs


def _placements(path: Path) -> dict:
    """Each image's footprint in the overview (stack.h5): corners in overview nm."""
    from ..results.stack import Stack

    st = Stack.read(path)
    out: dict[str, Any] = {"overview": st.overview, "pixel_size_nm": _s(st.group_attrs().get("pixel_size_nm")),
                           "images": {}}
    for name, a in st.images.items():
        rec = {k: _s(a.get(k)) for k in ("parent", "offset_nm", "scale", "rotation_deg", "confidence", "accepted")}
        if "transform" in a:
            rec["transform"] = np.asarray(a["transform"], float).tolist()
        out["images"][name] = rec
    return out


def _model_projection(path: Path, map_px: int) -> dict:
    """Atoms of model.h5 projected along the beam: density map (counts per bin) on the image frame (nm)."""
    from ..results.model import Model

    m = Model.read(path, only=("positions",))
    pos = m.data["positions"]
    a = m.group_attrs()
    x, y = pos[:, 0], pos[:, 1]
    ext = [float(x.min()), float(x.max()), float(y.min()), float(y.max())]
    n = int(map_px)
    span = max(ext[1] - ext[0], ext[3] - ext[2], 1e-6)
    nx = max(8, int(n * (ext[1] - ext[0]) / span))
    ny = max(8, int(n * (ext[3] - ext[2]) / span))
    h, _, _ = np.histogram2d(y, x, bins=(ny, nx), range=[[ext[2], ext[3]], [ext[0], ext[1]]])
    return {"n_atoms": int(len(pos)), "extent": ext, "image": _s(a.get("image", "")),
            **encode.map_image(h, max(nx, ny), cmap="viridis", symmetric=False, vmin=0.0, vmax=float(h.max() or 1))}


def sample_payload(results: Path, sample: str, images: list[str], cfg: dict, sample_dir: str = "",
                   overrides: dict | None = None, progress=None) -> dict:
    """The JSON-able content of ``results/<sample>/viewer.html`` (see the module docstring)."""
    sdir = Path(results) / sample
    summary = read_summary_json(sdir / "summary.json", missing_ok=True)
    notes: list[str] = []
    out: dict[str, Any] = {"sample": sample, "sample_dir": sample_dir, "overrides": overrides or {},
                           "images": [], "notes": notes,
                           "summary": {k: v for k, v in summary.items() if k != "images"}}
    for i, im in enumerate(images, 1):
        if not (sdir / im / "image.h5").is_file():
            notes.append(f"image {im}: no image.h5 (not ingested yet)")
            continue
        out["images"].append(image_payload(sdir / im, im, (summary.get("images") or {}).get(im, {}), cfg))
        if progress:
            progress(i, len(images), "images")
    if not sample_dir and out["images"] and out["images"][0].get("source_file"):
        out["sample_dir"] = str(Path(out["images"][0]["source_file"]).parent)
    if (sdir / "stack.h5").is_file():
        out["stack"] = _optional("overview placement", notes, _placements, sdir / "stack.h5")
    if (sdir / "model.h5").is_file():
        out["model"] = _optional("model projection", notes, _model_projection, sdir / "model.h5",
                                 int(cfg["map_px"]))
    out["figures"] = _figures(sdir / "figures", SAMPLE_FIGURE_STAGES, int(cfg["figure_px"]), notes)
    return to_jsonable(out)
