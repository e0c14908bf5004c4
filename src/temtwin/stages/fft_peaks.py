"""Rule ``fft_peaks``: the reflections of every region's FFT, written to ``peaks.h5``.

Library use without Snakemake: :func:`temtwin.peaks.analysis.analyse_image` (a whole image is one region
when no label map is given) and :func:`temtwin.peaks.analysis.analyse_region`.

Output ``peaks.h5`` (layout in docs/DEVELOPING.md), per region ``/regions/<label>``:

* attrs ``crystalline`` (bool), ``window_px`` [row0, col0, row1, col1) (exclusive end),
  ``fft_sampling_nm-1`` (nm^-1 per standard-grid pixel, mean of x and y), ``fft_sampling_xy_nm-1``
  [dkx, dky], ``window_mode`` (window / masked / too_small), ``n_tiles`` (Welch tiles averaged),
  ``tile_px`` [rows, cols], ``threshold_detect`` and ``threshold_crystalline`` (significance),
  ``n_peaks``, ``lattice_bases_nm-1`` (JSON list of 2x2 [kx, ky] bases found by lattice completion);
* table ``peaks``: ``kx``, ``ky`` (nm^-1, image axes: kx along +x, ky along +y down), ``g`` (nm^-1),
  ``d`` (nm), ``angle_deg`` (from +x towards +y), ``intensity`` (integrated excess power, a.u.),
  ``snr`` (Gaussian-equivalent significance at the peak pixel), ``detectors`` (uint8 bitmask:
  1 gaussian, 2 unet, 4 profile, 8 lattice completion), ``paired`` (Friedel partner found),
  ``row_px``, ``col_px`` (position on the standard grid of ``fft``);
* ``fft`` float32 (S, S) standardised log-power (units ``1``), attrs ``k_extent_nm-1``
  [kx_min, kx_max, ky_min, ky_max] (centres of the first and last columns / rows; the zero frequency
  is at pixel (S/2, S/2));
* ``detectors/<name>`` tables (``kx``, ``ky``, ``score``): each detector's own peaks before merging.

Summary fragment ``{"regions": {label: {"crystalline", "n_peaks"}}}``; figures
``figures/fft_peaks/region_<label>.png``: each region's FFT with its peaks marked.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import UserError
from ..io.h5 import set_summary
from ..io.image import read_image
from ..results import TreeResult
from ..results.peaks import Peaks
from ..results.segmentation import Segmentation
from ..peaks.analysis import RegionResult, analyse_image


def region_group(res: RegionResult) -> TreeResult:
    """One region's group ``/regions/<label>`` of peaks.h5 as a tree (layout: :class:`temtwin.results.peaks.Peaks`)."""
    g = TreeResult(attrs={"": {"crystalline": res.crystalline, "window_px": np.asarray(res.window.box, np.int64),
                     "window_mode": res.window.mode, "n_peaks": res.n_peaks}})
    a = g.attrs[""]
    sp, pk = res.spectrum, res.peaks
    if sp is None:
        a["fft_sampling_nm-1"] = np.nan
        a["reason"] = (f"region too small for a reliable FFT (minimum window {res.window.min_side_px} px "
                             f"per side)")
        empty = np.zeros(0)
        g.put_table("peaks", {"kx": (empty, "nm^-1"), "ky": (empty, "nm^-1"), "g": (empty, "nm^-1"),
                              "d": (empty, "nm"), "angle_deg": (empty, "deg"), "intensity": (empty, "a.u."),
                              "snr": (empty, "1"), "detectors": (np.zeros(0, np.uint8), "1"),
                              "paired": (np.zeros(0, bool), "1"), "row_px": (empty, "px"),
                              "col_px": (empty, "px")})
        return g
    a["fft_sampling_nm-1"] = sp.sampling
    a["fft_sampling_xy_nm-1"] = np.asarray(sp.dk, float)
    a["n_tiles"] = int(sp.n_tiles)
    a["tile_px"] = np.asarray(sp.tile_px, np.int64)
    a["threshold_detect"] = float(pk.info["threshold_detect"])
    a["threshold_crystalline"] = float(pk.info["threshold_crystalline"])
    bases_k = []
    for B in pk.info["lattice_bases_px"]:
        B = np.asarray(B)
        bases_k.append(np.c_[B[:, 1] * sp.dk[0], B[:, 0] * sp.dk[1]].tolist())
    a["lattice_bases_nm-1"] = json.dumps(bases_k)
    g.put_table("peaks", {
        "kx": (pk.kx, "nm^-1"), "ky": (pk.ky, "nm^-1"), "g": (pk.g, "nm^-1"), "d": (pk.d, "nm"),
        "angle_deg": (pk.angle_deg, "deg"), "intensity": (pk.intensity, "a.u."), "snr": (pk.snr, "1"),
        "detectors": (pk.detectors.astype(np.uint8), "1"), "paired": (pk.paired, "1"),
        "row_px": (pk.rows, "px"), "col_px": (pk.cols, "px")},
        description="reflections; detectors bitmask 1 gaussian, 2 unet, 4 profile, 8 lattice completion")
    g.put("fft", sp.z.astype(np.float32), "1", **{
        "k_extent_nm-1": np.asarray(sp.k_extent, float),
        "description": "standardised log-power spectrum; zero frequency at pixel (S/2, S/2)"})
    g.set_attrs("detectors")
    for name, raw in pk.info["raw"].items():
        kx, ky = sp.to_k(raw["rows"], raw["cols"])
        g.put_table(f"detectors/{name}", {"kx": (kx, "nm^-1"), "ky": (ky, "nm^-1"),
                                          "score": (np.asarray(raw["score"]), "1")})
    return g


def region_figure(res: RegionResult, path, title: str = "") -> None:
    """PNG of a region's standardised FFT (nm^-1 axes) with its peaks marked by detector."""
    from ..plotting import new_figure, save_figure

    sp, pk = res.spectrum, res.peaks
    fig, axes = new_figure(1, 1, size=5.0)
    ax = axes[0, 0]
    e = sp.k_extent
    hx, hy = 0.5 * sp.dk[0], 0.5 * sp.dk[1]
    ax.imshow(np.clip(sp.z, -2, 8), cmap="magma", extent=[e[0] - hx, e[1] + hx, e[3] + hy, e[2] - hy],
              interpolation="nearest")
    styles = [(1 | 2 | 4, "lime", "o"), (8, "cyan", "s")]
    lat = (pk.detectors & 8) > 0
    for sel, (_, col, mk) in zip((~lat, lat), styles):
        ax.scatter(pk.kx[sel], pk.ky[sel], s=110, facecolors="none", edgecolors=col, marker=mk, linewidths=1.2)
    rows = np.nonzero(sp.valid.any(1))[0]
    cols = np.nonzero(sp.valid.any(0))[0]
    if len(rows) and len(cols):  # show the measured band only
        kx0, ky0 = sp.to_k(rows[0], cols[0])
        kx1, ky1 = sp.to_k(rows[-1], cols[-1])
        ax.set_xlim(kx0 - hx, kx1 + hx)
        ax.set_ylim(ky1 + hy, ky0 - hy)
    ax.set_xlabel("kx (nm$^{-1}$)")
    ax.set_ylabel("ky (nm$^{-1}$)")
    state = "crystalline" if pk.crystalline else "amorphous / no lattice"
    ax.set_title(title or f"region {res.label}: {state}, {len(pk)} peaks")
    save_figure(fig, path)


def run(ctx) -> None:
    """Stage ``fft_peaks``: image.h5 + segmentation.h5 -> peaks.h5 and figures."""
    from pathlib import Path

    cfg = ctx.section("fft_peaks")
    m = read_image(ctx.input["image"])
    labels = Segmentation.read_labels(ctx.input["segmentation"], m.shape)
    if not np.isfinite(m.data).all():
        raise UserError("image has NaN/Inf pixels; re-export the micrograph", ctx.input["image"])
    results = analyse_image(m.data, m.pixel_size_nm, labels, cfg, progress=ctx.progress, workers=ctx.threads)
    summary = {"regions": {str(k): {"crystalline": r.crystalline, "n_peaks": r.n_peaks} for k, r in results.items()}}
    attrs = {"detectors": json.dumps(list(cfg["detectors"])), "n_regions": len(results)}
    if "unet" in cfg["detectors"]:
        from ..peaks.unet import load_model

        _, rec = load_model(cfg["unet"].get("weights"))
        attrs["unet_weights_sha256"] = str(rec.get("weights_sha256", ""))
    out = Peaks(attrs={"": attrs, "regions": {}})
    for r in results.values():
        out.graft(f"regions/{r.label}", region_group(r))
    with ctx.h5("h5") as f:
        out.write(f)
        set_summary(f, summary)
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    area = np.bincount(labels.ravel(), minlength=max(results, default=0) + 1)   # pixels per label
    shown = sorted((r for r in results.values() if r.spectrum is not None),
                   key=lambda r: -int(area[r.label]))[: cfg["max_figures"]]
    for r in shown:
        region_figure(r, figdir / f"region_{r.label}.png")
    n_c = sum(r.crystalline for r in results.values())
    ctx.log.info("%s: %d regions, %d crystalline, %d peaks in all", m.name, len(results), n_c,
                 sum(r.n_peaks for r in results.values()))
