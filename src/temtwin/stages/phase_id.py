"""Rule ``phase_id``: phase, zone axis and in-plane rotation of every crystalline region.

Inputs: ``image`` (image.h5), ``segmentation`` (segmentation.h5), ``peaks`` (peaks.h5), ``cifs``
(candidate CIFs: resources/phases, config ``phase_id.cif_folders``, <sample>/phases), ``settings``
(sample.yaml when present: ``elements`` and ``phases`` apply; ``overrides.phase_id`` arrives merged in
``ctx.section``, as for every stage).

Output ``phases.h5`` (layout in docs/DEVELOPING.md), per region ``/regions/<label>``:

* attrs ``phase`` (CIF stem, "" when not identified), ``space_group``, ``zone_axis`` [u, v, w]
  ([0, 0, 0] when none), ``zone_axis_4`` ([U, V, T, W] for hexagonal phases, else empty),
  ``rotation_deg`` (image angle of the reference reflection: the largest-d allowed reflection of the
  zone, the one with the smallest angle in [0, 360)), ``scale_factor`` (measured |g| / theoretical |g|),
  ``score``, ``confidence``, ``identified``, ``n_crystals``, ``explained_fraction``, ``coverage``,
  ``reason`` (why not identified);
* attrs ``state`` (``identified``, ``ambiguous``: other candidates fit about as well, see table
  ``alternatives``; ``not_identified``) and ``group_confidence`` (the crystal's confidence plus that of
  its lattice-identical alternatives);
* ``orientation_matrix`` (3, 3): v_image = M @ v_crystal (rows image x, image y, beam z; columns the
  CIF's Cartesian axes); NaN when not identified;
* tables ``candidates`` (rank, phase, space_group, zone_u, zone_v, zone_w, rotation_deg,
  scale_factor, score, confidence) and ``spots`` (kx, ky, h, k, l, residual_nm-1, crystal, peak);
  with several crystals also ``crystals`` (per crystal: phase, zone, rotation, scale, score,
  confidence) and ``orientation_matrices`` (n, 3, 3);

``/phases/<name>`` (every identified phase) attrs ``cif``, ``space_group``, ``lattice_abc_nm``,
``lattice_angles_deg``, ``formula``; ``/bragg/<label>`` (and ``/bragg/<label>_<k>`` for further
crystals) the normalised Bragg amplitude (1 = median in the region; when the region's bounding box
grown by the filter's reach is at most half the image, computed there only, its attr ``computed_box``
[r0, r1, c0, c1], 0 outside), ``/bragg/crystal_map`` (index
into the ``/bragg/crystals`` table, 0 = none); ``/relative_orientations`` table; root attr
``calibration_scale_factor`` (the image's calibration from its regions, when any; see
:mod:`temtwin.phase.calibration`), ``calibration_uncertainty``, ``calibration_status``, ``elements``
(JSON) and ``elements_source`` (sample.yaml, config, element maps, file metadata or "").

Summary fragment ``{"regions": {label: {phase, space_group, zone_axis, orientation_matrix,
scale_factor, phase_score, confidence, identified, rotation_deg, candidates}},
"relative_orientations": [{regions, phases, angle_deg, relation}], "calibration": {scale_factor,
uncertainty, status, recovered, regions, region_scale_factors, region_phases, n_reflections,
alternatives, reference_phase, shared, instrument_uncertainty}, "elements": {elements, source}}``,
per region also ``state``, ``group_confidence``, ``alternatives``; figures
``region_<label>.png`` and ``bragg.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..io.h5 import set_summary
from ..results import TreeResult
from ..results.image import Image
from ..results.phases import Phases
from ..phase.database import load_phases, select_phases
from ..phase.library import PatternLibrary, build_library
from ..phase.calibration import (assumed_calibration, changed, image_calibration, instrument_settings,
                          shared_settings)
from ..phase.matching import Crystal, MatchSettings, Spots, identify
from ..phase.orientation import misorientation


def _crystal_name(label, k: int) -> str:
    """Region label of the first crystal of a region, ``<label>.<k+1>`` for further crystals in it."""
    return str(label) if k == 0 else f"{label}.{k + 1}"


def element_source(cfg: dict, sample: dict, map_elements=(), metadata_elements=()) -> tuple[list, str]:
    """(elements, where they come from): sample.yaml ``elements``, else config ``phase_id.elements``,
    else the element maps of the sample (``eels/<El>.*``), else the image file's metadata; ([], "")
    when none gives any (every phase is a candidate)."""
    for els, src in ((sample.get("elements"), "sample.yaml"), (cfg.get("elements"), "config"),
                     (map_elements, "element maps"), (metadata_elements, "file metadata")):
        if els:
            return sorted({str(e) for e in els}), src
    return [], ""


def candidate_phases(cif_paths, cfg: dict, sample: dict, sample_path: Path | None, sample_name: str = "",
                     log=None, map_elements=(), metadata_elements=()) -> list:
    """Readable candidate phases restricted by elements / names (sample.yaml first, then config, then
    the sample's element maps and the image file's metadata, see :func:`element_source`)."""
    phases = load_phases(cif_paths, log)
    if not phases:
        raise UserError(f"sample {sample_name or '?'}: no candidate phases (no readable CIF among "
                        f"{len(cif_paths)} files); set `phase_id.use_builtin_phases: true`, add CIF folders "
                        "to `phase_id.cif_folders` or put CIFs in <sample>/phases/", sample_path)
    elements, src = element_source(cfg, sample, map_elements, metadata_elements)
    esrc, epath = {"sample.yaml": ("sample.yaml key `elements`", sample_path),
                   "config": ("config key `phase_id.elements`", None),
                   "element maps": ("the element maps eels/<El>.* (set `elements` in sample.yaml to change)",
                                    sample_path),
                   "file metadata": ("the elements listed in the image file's metadata (set `elements` in "
                                     "sample.yaml to change)", sample_path), "": ("", None)}[src]
    if sample.get("phases"):
        names, nsrc, npath = sample["phases"], "sample.yaml key `phases`", sample_path
    else:
        names, nsrc, npath = cfg.get("phases") or [], "config key `phase_id.phases`", None
    if src in ("element maps", "file metadata"):
        try:
            phases = select_phases(phases, elements=elements, source=esrc, path=epath)
        except UserError:      # maps of a few elements only (O, C...): no restriction rather than none
            if log:
                log.warning("phase_id: no candidate phase made of the elements %s (%s); all phases kept",
                            elements, src)
    else:
        phases = select_phases(phases, elements=elements, source=esrc, path=epath)
    return select_phases(phases, names=names, source=nsrc, path=npath)


def library_for(phases, cfg: dict, progress=None) -> PatternLibrary:
    """The pattern library of ``phases`` with the config's pattern settings."""
    return build_library(phases, max_index=int(cfg["max_zone_index"]), g_max=float(cfg["g_max_nm_inv"]),
                         keep_forbidden=bool(cfg["keep_forbidden"]), forbidden_weight=float(cfg["forbidden_weight"]),
                         debye_waller_A2=float(cfg["debye_waller_A2"]), progress=progress)


def read_peaks(path) -> dict[int, dict]:
    """peaks.h5 (:class:`temtwin.results.peaks.Peaks`) -> {label: {crystalline, kx, ky, snr, sampling, fft,
    extent, reason}}."""
    from ..results.peaks import Peaks

    pk = Peaks.read(path)
    if not pk.has("regions"):
        raise UserError("peaks file has no /regions group; rerun the fft_peaks rule", path)
    out: dict[int, dict] = {}
    for label, r in pk.regions.items():
        t = r.table or {}
        kx = np.asarray(t.get("kx", []), float)
        out[label] = {"crystalline": bool(r.attrs.get("crystalline", len(kx) > 0)), "kx": kx,
                      "ky": np.asarray(t.get("ky", []), float),
                      "snr": np.asarray(t["snr"], float) if "snr" in t else None, "sampling": r.sampling,
                      "fft": r.fft, "extent": r.extent, "reason": r.reason}
    return out


def analyse_region(lib: PatternLibrary, peaks: dict, mcfg: MatchSettings, min_peaks: int = 4,
                   scan_rows: bool = False):
    """(crystals, spots, reason) of one region's peaks (``scan_rows``: correct STEM scan shear)."""
    spots = Spots.from_arrays(peaks["kx"], peaks["ky"], peaks.get("snr"), peaks.get("sampling"))
    if not peaks.get("crystalline", True):
        return [], spots, peaks.get("reason") or "no lattice in the FFT (amorphous or too small)"
    if len(spots) < min_peaks:
        return [], spots, f"only {len(spots)} FFT peaks (min_peaks = {min_peaks})"
    crystals = identify(lib, spots, mcfg, scan_rows=scan_rows)
    if not crystals:
        return [], spots, "no candidate zone pattern explains two non-collinear spots"
    reason = "" if crystals[0].identified else (
        f"best candidate {crystals[0].phase} scores {crystals[0].score:.2f} with confidence "
        f"{crystals[0].confidence:.2f} (min_score {mcfg.min_score}, min_confidence {mcfg.min_confidence})")
    return crystals, spots, reason


def relative_orientations(results: dict[int, list[Crystal]], phases: dict) -> list[dict]:
    """Misorientation of every pair of identified crystals (between regions and within one FFT)."""
    items = []
    for label, crystals in sorted(results.items()):
        for k, c in enumerate(crystals):
            if c.identified:
                items.append((label, k, c))
    out = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (la, ka, a), (lb, kb, b) = items[i], items[j]
            mo = misorientation(phases[a.phase], a.M, phases[b.phase], b.M)
            out.append({"regions": [_crystal_name(la, ka), _crystal_name(lb, kb)], "phases": [a.phase, b.phase],
                        "angle_deg": round(mo.angle_deg, 3), "axis_uvw": [int(v) for v in mo.axis_uvw],
                        "relation": mo.relation})
    return out


def _region_summary(crystals: list[Crystal]) -> dict:
    if not crystals:
        return {"phase": "", "identified": False, "candidates": []}
    c = crystals[0]
    d = {
        "phase": c.phase if c.identified else "", "space_group": c.space_group if c.identified else "",
        "zone_axis": [int(v) for v in c.uvw], "orientation_matrix": np.round(c.M, 6).tolist(),
        "scale_factor": round(c.scale, 5), "phase_score": round(c.score, 4), "confidence": round(c.confidence, 4),
        "rotation_deg": round(c.rotation_deg, 3), "identified": c.identified,
        "candidates": [{"phase": x["phase"], "zone_axis": x["zone_axis"], "score": round(x["score"], 4),
                        "confidence": round(x["confidence"], 4)} for x in c.candidates[:5]],
    }
    d["state"] = c.state if c.identified or c.state != "identified" else "not_identified"
    d["group_confidence"] = round(c.group_confidence, 4)
    if c.alternatives:
        d["alternatives"] = [{"phase": a["phase"], "zone_axis": a["zone_axis"],
                              "scale_factor": round(a["scale_factor"], 5), "confidence": round(a["confidence"], 4),
                              "lattice_identical": a["lattice_identical"]} for a in c.alternatives[:8]]
    if c.uvw4 is not None:
        d["zone_axis_4"] = [int(v) for v in c.uvw4]
    if len(crystals) > 1:
        d["crystals"] = [{"phase": x.phase, "zone_axis": [int(v) for v in x.uvw],
                          "rotation_deg": round(x.rotation_deg, 3), "scale_factor": round(x.scale, 5),
                          "phase_score": round(x.score, 4)} for x in crystals]
    return d


def region_group(crystals: list[Crystal], reason: str) -> TreeResult:
    """``/regions/<label>`` of phases.h5 as a tree (layout: :class:`temtwin.results.phases.Phases`)."""
    g = TreeResult(attrs={"": {}})
    a = g.attrs[""]
    c = crystals[0] if crystals else None
    ok = bool(c is not None and c.identified)
    a["phase"] = c.phase if ok else ""
    a["space_group"] = c.space_group if ok else ""
    a["zone_axis"] = np.asarray(c.uvw if c is not None else [0, 0, 0], np.int64)
    a["zone_axis_4"] = np.asarray(c.uvw4 if c is not None and c.uvw4 is not None else [], np.int64)
    a["rotation_deg"] = float(c.rotation_deg) if c is not None else np.nan
    a["scale_factor"] = float(c.scale) if c is not None else np.nan
    a["score"] = float(c.score) if c is not None else 0.0
    a["confidence"] = float(c.confidence) if c is not None else 0.0
    a["identified"] = ok
    a["n_crystals"] = int(sum(x.identified for x in crystals))
    a["explained_fraction"] = float(c.E) if c is not None else 0.0
    a["coverage"] = float(c.C) if c is not None else 0.0
    a["best_candidate"] = c.phase if c is not None else ""
    a["reason"] = reason
    a["state"] = ("not_identified" if c is None or (not ok and c.state == "identified") else c.state)
    a["group_confidence"] = float(c.group_confidence) if c is not None else 0.0
    alts = c.alternatives if c is not None else []
    if alts:
        g.put_table("alternatives", {
            "phase": (np.array([a["phase"] for a in alts], object), "1"),
            "zone_u": (np.array([a["zone_axis"][0] for a in alts], np.int64), "1"),
            "zone_v": (np.array([a["zone_axis"][1] for a in alts], np.int64), "1"),
            "zone_w": (np.array([a["zone_axis"][2] for a in alts], np.int64), "1"),
            "scale_factor": (np.array([a["scale_factor"] for a in alts], float), "1"),
            "fit": (np.array([a["fit"] for a in alts], float), "1"),
            "confidence": (np.array([a["confidence"] for a in alts], float), "1"),
            "lattice_identical": (np.array([a["lattice_identical"] for a in alts], bool), "1"),
        }, description="candidates the data do not rule out (confidence >= ambiguity_ratio x the best's), with "
                       "the calibration (scale factor) each implies; lattice_identical: same lattice at the same "
                       "calibration, only elements tell them apart")
    if c is not None and c.scan_distortion is not None:
        a["scan_distortion"] = np.asarray(c.scan_distortion, float)
    g.put("orientation_matrix", c.M if c is not None else np.full((3, 3), np.nan), "1",
          description="v_image = M @ v_crystal; rows image x, image y, beam z")
    cands = c.candidates if c is not None else []
    g.put_table("candidates", {
        "rank": (np.array([x["rank"] for x in cands], np.int64), "1"),
        "phase": (np.array([x["phase"] for x in cands], object), "1"),
        "space_group": (np.array([x["space_group"] for x in cands], object), "1"),
        "zone_u": (np.array([x["zone_axis"][0] for x in cands], np.int64), "1"),
        "zone_v": (np.array([x["zone_axis"][1] for x in cands], np.int64), "1"),
        "zone_w": (np.array([x["zone_axis"][2] for x in cands], np.int64), "1"),
        "rotation_deg": (np.array([x["rotation_deg"] for x in cands], float), "deg"),
        "scale_factor": (np.array([x["scale_factor"] for x in cands], float), "1"),
        "score": (np.array([x["score"] for x in cands], float), "1"),
        "confidence": (np.array([x["confidence"] for x in cands], float), "1"),
    })
    kx, ky, hkl, res, cr, pk = [], [], [], [], [], []
    for ci, x in enumerate(crystals):
        if ci > 0 and not x.identified:
            continue
        m = x.k
        kx.append(m.real)
        ky.append(m.imag)
        hkl.append(x.hkl.reshape(-1, 3))
        res.append(x.resid)
        cr.append(np.full(len(m), ci + 1))
        pk.append(x.spot_index)
    def cat(a, shape=(0,), dt=float):
        return np.concatenate(a) if a else np.zeros(shape, dt)

    H = cat(hkl, (0, 3), np.int64).astype(np.int64)
    g.put_table("spots", {
        "kx": (cat(kx), "nm^-1"), "ky": (cat(ky), "nm^-1"), "h": (H[:, 0], "1"), "k": (H[:, 1], "1"),
        "l": (H[:, 2], "1"), "residual_nm-1": (cat(res), "nm^-1"),
        "crystal": (cat(cr, dt=np.int64).astype(np.int64), "1"), "peak": (cat(pk, dt=np.int64).astype(np.int64), "1"),
    }, description="indexed spots: measured position, hkl (3-index), residual to the refined prediction; "
                   "crystal = 1 for the region's phase, 2.. for further crystals; peak = row of peaks.h5 table")
    shown = [x for i, x in enumerate(crystals) if i == 0 or x.identified]
    if len(shown) > 1:
        g.put_table("crystals", {
            "phase": (np.array([x.phase for x in shown], object), "1"),
            "space_group": (np.array([x.space_group for x in shown], object), "1"),
            "zone_u": (np.array([x.uvw[0] for x in shown], np.int64), "1"),
            "zone_v": (np.array([x.uvw[1] for x in shown], np.int64), "1"),
            "zone_w": (np.array([x.uvw[2] for x in shown], np.int64), "1"),
            "rotation_deg": (np.array([x.rotation_deg for x in shown]), "deg"),
            "scale_factor": (np.array([x.scale for x in shown]), "1"),
            "score": (np.array([x.score for x in shown]), "1"),
            "confidence": (np.array([x.confidence for x in shown]), "1"),
        })
        g.put("orientation_matrices", np.array([x.M for x in shown]), "1")
    return g


def phase_group(ph) -> TreeResult:
    """``/phases/<name>`` of phases.h5: the phase's CIF text and lattice (a tree of attributes)."""
    g = TreeResult(attrs={"": {}})
    a = g.attrs[""]
    a["cif"] = ph.cif
    a["space_group"] = ph.space_group
    a["space_group_number"] = int(ph.space_group_number)
    a["crystal_system"] = ph.crystal_system
    a["lattice_abc_nm"] = ph.abc_nm
    a["lattice_angles_deg"] = ph.angles_deg
    a["formula"] = ph.formula
    a["source"] = ph.path
    return g


def relative_table(rel: list[dict]) -> dict:
    """The columns of table ``/relative_orientations`` of phases.h5 (:func:`relative_orientations`)."""
    return {
        "region_a": (np.array([r["regions"][0] for r in rel], object), "1"),
        "region_b": (np.array([r["regions"][1] for r in rel], object), "1"),
        "phase_a": (np.array([r["phases"][0] for r in rel], object), "1"),
        "phase_b": (np.array([r["phases"][1] for r in rel], object), "1"),
        "angle_deg": (np.array([r["angle_deg"] for r in rel], float), "deg"),
        "relation": (np.array([r["relation"] for r in rel], object), "1"),
    }


def bragg_boxes(labels, entries, pad: int, shape, max_fraction: float = 0.5) -> list:
    """Per crystal the image box (r0, r1, c0, c1) its Bragg map is computed in: the bounding box of its
    region grown by ``pad`` px (the filter's reach, :func:`temtwin.phase.bragg.pad_for`), or None (whole
    image) when there are no labels or the box covers more than ``max_fraction`` of the image."""
    from scipy import ndimage as ndi

    if labels is None:
        return [None] * len(entries)
    objs = ndi.find_objects(np.asarray(labels))
    rows, cols = shape
    out = []
    for lab, _, _ in entries:
        sl = objs[lab - 1] if 0 < lab <= len(objs) else None
        if sl is None:
            out.append(None)
            continue
        b = (max(sl[0].start - pad, 0), min(sl[0].stop + pad, rows), max(sl[1].start - pad, 0),
             min(sl[1].stop + pad, cols))
        out.append(None if (b[1] - b[0]) * (b[3] - b[2]) > max_fraction * rows * cols else b)
    return out


def bragg_maps(image, pixel_size_nm, labels, results, spots_of, cfg: dict, workers=None, sink=None,
               progress=None, log=None):
    """Normalised Bragg amplitude per identified crystal, crystal map and the crystal table.

    Returns (entries, maps, (crystal map, σ_k nm^-1)).  With ``sink`` each crystal's normalised map is
    handed to ``sink(i, entry, map, box)`` as soon as it is computed and not kept (``maps`` is then
    empty), so that memory does not grow with the number of crystals.  ``box`` (r0, r1, c0, c1) is the
    part of the image the map covers when it is computed in its region's bounding box grown by the
    filter's reach (:func:`bragg_boxes`; the map is 0 outside, it is not computed there), None for the
    whole image.  Kept maps (no sink) are whole-image arrays.  ``progress(done, total, what)`` is
    called after each crystal."""
    from ..phase.bragg import (RunningCrystalMap, bragg_amplitude, normalised_amplitude, pad_for, padded_spectrum,
                               sigma_k_for)

    entries, gsets = [], []
    for label, crystals in sorted(results.items()):
        for k, c in enumerate(crystals):
            if not c.identified:
                continue
            m, w = c.k, c.w
            rep = np.where(np.angle(m) >= -1e-9, m, -m)
            order = np.argsort(-w, kind="stable")
            chosen: list[complex] = []
            for i in order:
                if all(abs(rep[i] - q) > 0.02 * abs(rep[i]) for q in chosen):
                    chosen.append(rep[i])
                if len(chosen) >= cfg["max_spots"]:
                    break
            g = np.array([[q.real, q.imag] for q in chosen])
            entries.append((label, k, c))
            gsets.append(g)
    if not entries:
        return [], [], None
    sk = sigma_k_for(cfg["resolution_nm"], gsets)
    img = np.asarray(image, np.float32)
    pad = pad_for(sk, pixel_size_nm, img.shape)
    boxes = bragg_boxes(labels, entries, pad, img.shape)
    if log is not None:
        inbox = [b for b in boxes if b is not None]
        log.info("phase_id: Bragg maps of %d crystals, sigma_k %.4f nm^-1, filter reach %d px; %d in their "
                 "region's box (mean %.0f x %.0f px), %d on the whole image", len(entries), sk, pad, len(inbox),
                 np.mean([b[1] - b[0] for b in inbox]) if inbox else 0,
                 np.mean([b[3] - b[2] for b in inbox]) if inbox else 0, len(entries) - len(inbox))
    F = None
    cmap_, norm = RunningCrystalMap(img.shape), []
    for i, ((lab, _, _), g, box) in enumerate(zip(entries, gsets, boxes)):
        if box is None:
            if F is None:
                F = padded_spectrum(img, pad, workers)
            a = bragg_amplitude(img, pixel_size_nm, g, sk, spectrum=F, pad=pad, workers=workers)
            mask = labels == lab if labels is not None else None
        else:
            r0, r1, c0, c1 = box
            a = bragg_amplitude(img[r0:r1, c0:c1], pixel_size_nm, g, sk, pad=pad, workers=workers, fast_len=True)
            mask = labels[r0:r1, c0:c1] == lab
        n = normalised_amplitude(a, mask)
        del a, mask
        cmap_.add(n, box)
        if sink is None:
            if box is not None:
                full = np.zeros(img.shape, np.float32)
                full[box[0]:box[1], box[2]:box[3]] = n
                n = full
            norm.append(n)
        else:
            sink(i, entries[i], n, box)
        del n
        if progress is not None:
            progress(i + 1, len(entries), "Bragg maps")
    del F
    return entries, norm, (cmap_.result(cfg["threshold"]), sk)


def _identify_all(ctx, lib, peaks: dict, mcfg, min_peaks: int, scan_rows: bool, labels_sorted: list,
                  results: dict, spots_of: dict, reasons: dict, what: str = "regions") -> None:
    """Identify every region's peaks against ``lib`` (fills ``results``, ``spots_of``, ``reasons``)."""
    for i, label in enumerate(labels_sorted):
        t1 = time.perf_counter()
        crystals, spots, reason = analyse_region(lib, peaks[label], mcfg, min_peaks, scan_rows)
        if what == "regions":
            c = crystals[0] if crystals else None
            ctx.log.info("region %d: %s in %.2f s", label,
                         f"{c.phase} {c.uvw.tolist()} rot {c.rotation_deg:.2f} scale {c.scale:.4f} score "
                         f"{c.score:.3f} conf {c.confidence:.2f}{'' if c.identified else ' (not identified)'}"
                         if c else reason, time.perf_counter() - t1)
        elif changed(results[label], crystals):
            def name(cs):
                return f"{cs[0].phase} {cs[0].uvw.tolist()} (scale {cs[0].scale:.4f})" if cs else "nothing"
            ctx.log.info("region %d: %s -> %s with the image calibration", label, name(results[label]),
                         name(crystals))
        results[label], spots_of[label], reasons[label] = crystals, spots, reason
        ctx.progress(i + 1, len(labels_sorted), what)


def _shared_calibration(ctx, cfg: dict, all_phases, phases, lib, mcfg, peaks: dict, labels_sorted: list,
                        scan_rows: bool, results: dict, spots_of: dict, reasons: dict):
    """The image calibration (reference phase, else shared by the regions) and, when it applies, every region
    identified again with the calibration prior centred there. Returns (cal, shared, note, settings used)."""
    sigma = float(cfg["shared_calibration_sigma"])
    mcfg_used = mcfg
    ref = cfg["calibration"]["reference_phase"]
    cal, shared, ref_note = None, False, ""
    if ref:
        cal, ref_note = _reference_calibration(ref, all_phases, phases, cfg, mcfg, peaks, labels_sorted, scan_rows,
                                               sigma, ctx.log, results)
    if cal is None:
        cal = image_calibration(results, mcfg, sigma)
    apply = cal is not None and cal.status != "ambiguous" and (
        cal.status == "reference" or (cfg["shared_calibration"] and len(cal.regions) >= 2))
    if cal is not None and cal.status == "ambiguous":
        ctx.log.info("phase_id: the image calibration is ambiguous: %.4f or %s; regions keep their own "
                     "alternatives (give `elements`, `calibration.uncertainty` or `calibration.reference_phase`)",
                     cal.scale, ", ".join(f"{a['scale_factor']:.4f}" for a in cal.alternatives))
    if apply:
        shared = True
        mcfg2 = mcfg_used = shared_settings(mcfg, cal, sigma)
        ctx.log.info("phase_id: image calibration %.4f ± %.4f (%s) from regions %s; identifying every region "
                     "again with the calibration prior centred there (sigma %.3f)", cal.scale, cal.uncertainty,
                     cal.status, ", ".join(map(str, cal.regions)), mcfg2.scale_sigma)
        _identify_all(ctx, lib, peaks, mcfg2, int(cfg["min_peaks"]), scan_rows, labels_sorted, results, spots_of,
                      reasons, "regions (shared calibration)")
    return cal, shared, ref_note, mcfg_used


def phases_result(phases, lib, results: dict, reasons: dict, labels_sorted: list, rel: list, calib, cal,
                  elements: list, el_src: str) -> Phases:
    """The phases.h5 content without the Bragg maps (layout: :class:`temtwin.results.phases.Phases`)."""
    byname = {p.name: p for p in phases}
    out = Phases(attrs={"": {"candidates": json.dumps([p.name for p in phases]), "n_patterns": len(lib)}})
    found = sorted({c.phase for cs in results.values() for c in cs if c.identified})
    for label in labels_sorted:
        out.graft(f"regions/{label}", region_group(results[label], reasons[label]))
    for name in found:
        out.graft(f"phases/{name}", phase_group(byname[name]))
    if rel:
        out.put_table("relative_orientations", relative_table(rel))
    if cal is not None:
        out.attrs[""]["calibration_scale_factor"] = cal.scale
    out.attrs[""].update({"calibration_uncertainty": float(calib.uncertainty), "calibration_status": calib.status,
                      "elements": json.dumps(elements), "elements_source": el_src})
    return out


def write_bragg(f, image, px, labels, results: dict, spots_of: dict, cfg: dict, threads,
                progress=None, log=None) -> tuple[list, list, Any]:
    """Compute the Bragg-filtered maps and stream each into the open phases.h5 ``f`` as it is computed
    (memory independent of the crystal count); returns (entries, thumbnails, extra)."""
    from ..phase.plots import thumbnail

    thumbs: list = []

    shape = np.shape(image)

    def sink(i, entry, a, box):
        label, k, c = entry
        desc = f"normalised Bragg amplitude of {c.phase} {c.uvw.tolist()} (region {label})"
        if box is not None:   # computed in the region's box grown by the filter's reach only: 0 outside
            desc += "; computed in rows r0:r1, columns c0:c1 (computed_box), 0 outside"
        Phases.append(f, f"bragg/{label}" if k == 0 else f"bragg/{label}_{k + 1}", a, "1", box=box, shape=shape,
                      description=desc)
        if cfg["figures"] and i < 3:
            full = a
            if box is not None:
                full = np.zeros(shape, np.float32)
                full[box[0]:box[1], box[2]:box[3]] = a
            thumbs.append(thumbnail(full))

    entries, _, extra = bragg_maps(image, px, labels, results, spots_of, cfg["bragg"], threads, sink,
                                   progress=progress, log=log)
    if entries:
        part = Phases()
        part.set_attrs("bragg", **{"sigma_k_nm-1": float(extra[1])})
        if extra[0] is not None:
            part.put("bragg/crystal_map", extra[0], "label",
                     description="1-based row of /bragg/crystals with the largest normalised amplitude, 0 = none")
        part.put_table("bragg/crystals", {
            "region": (np.array([e[0] for e in entries], np.int64), "label"),
            "crystal": (np.array([e[1] + 1 for e in entries], np.int64), "1"),
            "phase": (np.array([e[2].phase for e in entries], object), "1"),
            "zone_u": (np.array([e[2].uvw[0] for e in entries], np.int64), "1"),
            "zone_v": (np.array([e[2].uvw[1] for e in entries], np.int64), "1"),
            "zone_w": (np.array([e[2].uvw[2] for e in entries], np.int64), "1"),
        })
        part.write_part(f)
    return entries, thumbs, extra


def _figures(figdir: Path, cfg: dict, peaks: dict, labels_sorted: list, spots_of: dict, results: dict, lib,
             reasons: dict, entries: list, image, px, extra, thumbs: list, progress=None) -> None:
    figdir.mkdir(parents=True, exist_ok=True)
    if cfg["figures"]:
        from ..phase.plots import bragg_figure, region_figure

        for i, label in enumerate(labels_sorted):
            pk = peaks[label]
            if len(spots_of[label]) or pk["fft"] is not None:
                region_figure(figdir / f"region_{label}.png", label, pk["fft"], pk["extent"], spots_of[label].k,
                              results[label], lib, reasons[label])
            if progress is not None:
                progress(i + 1, len(labels_sorted), "region figures")
        if entries:
            names = [f"{e[2].phase} (region {e[0]}{'' if e[1] == 0 else f'.{e[1] + 1}'})" for e in entries]
            bragg_figure(figdir / "bragg.png", image, px, extra[0], thumbs, names)


def run(ctx) -> None:
    """Stage ``phase_id``: peaks.h5 (+ image, segmentation, CIFs, sample.yaml) -> phases.h5, figures."""
    t0 = time.perf_counter()
    cfg = ctx.section("phase_id")
    sample, spath = ctx.sample_settings(), ctx.sample_yaml()
    sname = ctx.wildcards.get("sample", "")
    map_elements = list(ctx.params.get("map_elements") or [])
    meta_elements = _image_elements(ctx.input["image"])
    elements, el_src = element_source(cfg, sample, map_elements, meta_elements)
    if el_src in ("element maps", "file metadata"):
        ctx.log.info("phase_id: no `elements` given; using %s from the %s", elements, el_src)
    all_phases = load_phases(ctx.paths("cifs"), ctx.log)
    phases = candidate_phases(ctx.paths("cifs"), cfg, sample, spath, sname, ctx.log, map_elements, meta_elements)
    ctx.log.info("phase_id: %d candidate phases: %s", len(phases), ", ".join(p.name for p in phases))
    lib = library_for(phases, cfg)
    ctx.log.info("phase_id: %d zone patterns (max index %d) in %.2f s", len(lib), cfg["max_zone_index"],
                 time.perf_counter() - t0)
    mcfg = instrument_settings(MatchSettings.from_config(cfg), cfg["calibration"]["uncertainty"])
    peaks = read_peaks(ctx.input["peaks"])
    mode = _image_mode(ctx.input["image"])
    scan_rows = cfg["scan_distortion"] == "rows" or (cfg["scan_distortion"] == "auto" and mode == "STEM")
    results: dict[int, list[Crystal]] = {}
    spots_of: dict[int, Spots] = {}
    reasons: dict[int, str] = {}
    labels_sorted = sorted(peaks)
    _identify_all(ctx, lib, peaks, mcfg, int(cfg["min_peaks"]), scan_rows, labels_sorted, results, spots_of,
                  reasons)
    cal, shared, ref_note, mcfg_used = _shared_calibration(ctx, cfg, all_phases, phases, lib, mcfg, peaks,
                                                           labels_sorted, scan_rows, results, spots_of, reasons)
    overridden = {}
    for ov in ctx.paths("overrides"):            # human corrections (temtwin.workflow.overrides)
        from ..workflow.overrides import apply_phase, read_overrides, stage_actions

        acts = stage_actions(read_overrides(ov), ctx.wildcards.get("image", ""), "phase_id")
        overridden = apply_phase(acts, results, reasons, spots_of, lib, mcfg_used, scan_rows, ov, ctx.log)
    rel = relative_orientations(results, {p.name: p for p in phases})
    image = labels = px = None                   # Bragg maps need the image and labels
    entries, thumbs, extra = [], [], None
    do_bragg = cfg["bragg"]["enabled"] and any(c.identified for cs in results.values() for c in cs)
    if do_bragg:
        from ..io.image import read_image

        m = read_image(ctx.input["image"])
        image, px = m.data, m.pixel_size_nm
        labels = _read_labels(ctx.paths("segmentation"), m.shape)
    calib = cal if cal is not None else assumed_calibration(mcfg)
    out = phases_result(phases, lib, results, reasons, labels_sorted, rel, calib, cal, elements, el_src)
    with ctx.h5("h5") as f:
        out.write(f)
        if do_bragg:
            entries, thumbs, extra = write_bragg(f, image, px, labels, results, spots_of, cfg, ctx.threads,
                                                   progress=ctx.progress, log=ctx.log)
        summary = {"regions": {str(k): _region_summary(v) for k, v in results.items()}}
        summary["calibration"] = {**calib.as_summary(), "shared": bool(shared),
                                  "instrument_uncertainty": cfg["calibration"]["uncertainty"]}
        if ref_note:
            summary["calibration"]["note"] = ref_note
        summary["elements"] = {"elements": elements, "source": el_src or "none (every phase is a candidate)"}
        if rel:
            summary["relative_orientations"] = rel
        if overridden:
            from ..workflow.overrides import annotate_phase

            annotate_phase(f, summary, overridden)
        set_summary(f, summary)
    _figures(Path(ctx.output["figures"]), cfg, peaks, labels_sorted, spots_of, results, lib, reasons, entries,
             image, px, extra, thumbs, ctx.progress)
    n_id = sum(bool(cs and cs[0].identified) for cs in results.values())
    ctx.log.info("phase_id: %d/%d regions identified in %.2f s", n_id, len(results), time.perf_counter() - t0)


def _reference_calibration(ref: str, all_phases, phases, cfg, mcfg, peaks, labels, scan_rows, sigma, log,
                           results):
    """(ImageCalibration pinned to the reference phase or None, note): every region is matched against
    the reference phase alone; the calibration is the joint estimate over all regions restricted to
    scale factors at which the reference phase explains at least one region."""
    byname = {p.name: p for p in list(all_phases) + list(phases)}
    if ref not in byname:
        raise UserError(f"calibration.reference_phase {ref!r} is not among the phases "
                        f"({', '.join(sorted(byname))}); use a CIF stem or add its CIF to <sample>/phases/", None)
    rlib = library_for([byname[ref]], cfg)
    rres = {}
    for label in labels:
        crystals, _, _ = analyse_region(rlib, peaks[label], mcfg, int(cfg["min_peaks"]), scan_rows)
        rres[label] = crystals
    cal = image_calibration(results, mcfg, sigma, reference=rres, phase=ref)
    if cal is None:
        note = f"reference phase {ref} fits no region (min_score {mcfg.min_score}); calibration not pinned"
        log.warning("phase_id: %s", note)
        return None, note
    note = ""
    if cal.status == "ambiguous":
        alts = ", ".join(f"{a['scale_factor']:.4f}" for a in cal.alternatives)
        note = (f"reference phase {ref} fits the regions at several calibrations ({cal.scale:.4f}, {alts}); "
                "the most probable is used")
    cal.status, cal.reference_phase = "reference", ref
    log.info("phase_id: calibration pinned to %s: scale %.4f ± %.4f from regions %s", ref, cal.scale,
             cal.uncertainty, ", ".join(map(str, cal.regions)))
    return cal, note


def _image_elements(path) -> list[str]:
    """Elements the image file's metadata lists (image.h5 root attr ``elements``, JSON list), if any."""
    try:
        v = Image.read(path, header_only=True).attrs.get("elements", "")
    except UserError:
        return []
    if isinstance(v, str):
        try:
            v = json.loads(v) if v else []
        except ValueError:
            v = [x.strip() for x in v.split(",") if x.strip()]
    return [str(x) for x in np.atleast_1d(v) if str(x)]


def _image_mode(path) -> str:
    """Acquisition mode of image.h5 (``TEM``, ``STEM`` or ``unknown``)."""
    try:
        return str(Image.read(path, header_only=True).attrs.get("mode", "unknown"))
    except UserError:
        return "unknown"


def _read_labels(files: list[str], shape) -> np.ndarray | None:
    if not files or not Path(files[0]).is_file():
        return None
    from ..results.segmentation import Segmentation

    lab = Segmentation.read_labels(files[0])
    return lab if lab.shape == tuple(shape) else None


def identify_peaks(kx, ky, snr=None, phases=None, sampling: float = 0.0, config: dict | None = None) -> list[Crystal]:
    """Library use: crystals in one peak list against ``phases`` (default: the shipped database).

    ``config``: a partial ``phase_id`` config section.
    """
    from ..config import load_config
    from ..phase.database import load_builtin

    cfg = load_config({"phase_id": dict(config or {})}, require_dataset=False)["phase_id"]
    phases = phases if phases is not None else load_builtin()
    lib = library_for(phases, cfg)
    return identify(lib, Spots.from_arrays(kx, ky, snr, sampling), MatchSettings.from_config(cfg))
