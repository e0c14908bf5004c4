"""Rule ``gpa``: automated geometric phase analysis of one micrograph -> ``gpa.h5``.

Inputs: image.h5, segmentation.h5 (/labels), peaks.h5 (per-region Bragg spots and the crystalline
decision of fft_peaks, read as :class:`temtwin.peaks.spots.Spots`, never re-found or re-decided),
phases.h5 (identified phases, indexed spots).  Only a region missing from peaks.h5 (library use) gets
GPA's own spectrum analysis (:func:`temtwin.peaks.spots.region_spots`).

Steps (:func:`analyse`): crystalline regions and their spots -> reference region (config
``reference``: auto rule of :func:`temtwin.gpa.choices.choose_reference`, a label or a box) -> two
g vectors shared by all crystalline regions -> mask resolution -> GPA with region-adaptive masks
(each region that shows both reflections gets masks centred on its own spots) -> regions that are
amorphous or lack one of the reflections are masked -> absolute lattice / relaxed strain (identified
reference phase) -> optional frame rotation -> per-region statistics.  No crystalline region: the
output records ``applicable = False`` with the reason (and a figure), the run does not fail.

Output ``gpa.h5`` (layout in docs/DEVELOPING.md):

* root attrs ``applicable``, ``reason`` (why not, or ""), ``reference_label`` (int; -1 for a box),
  ``reference_rule``, ``resolution_nm``, ``sigma_k_nm-1``, ``resolution_rule``, ``g_rule``,
  ``frame``;
* ``/g_vectors`` (2, 2) nm⁻¹ refined reference g (rows g1, g2 [kx, ky]); ``/g_vectors_input``
  (before refinement); ``/mask_centers`` (2, 2) nm⁻¹;
* ``/strain/exx``, ``/strain/eyy``, ``/strain/exy`` (units 1, image axes, NaN where masked),
  ``/rotation`` (rad), ``/displacement`` (2, rows, cols) nm [ux, uy], ``/amplitude`` (2, rows, cols)
  a.u., ``/mask`` (valid pixels), ``/reference`` (reference region used for the refinement);
* ``/lattice/d_spacing`` (2, rows, cols) nm, ``/lattice/a_from_g`` (cubic reference phases),
  attrs ``reference_phase``, ``hkl``, ``calibration`` (true / measured |g| of the reference),
  ``/strain_relaxed/{exx,eyy,exy}`` relative to each region's own relaxed lattice (when the
  reference phase is identified and ``absolute`` is on);
* ``/strain_frame/{exx,eyy,exy}`` in the crystal or interface frame (attrs ``frame``,
  ``angle_deg``) when ``frame`` is not ``image``;
* table ``/regions``: label, n_pixels, mean/std/median of exx, eyy, exy, rotation (rad) (and of
  the relaxed strain) over the region's interior (eroded by the resolution, inside the edge margin,
  valid pixels), ``<component>_se`` the standard error of the mean (propagated image noise),
  ``valid_fraction``; NaN for a region with too few valid pixels (``min_valid_cells``);
* ``/strain_sigma/{exx,eyy,exy}`` (1) and ``/rotation_sigma`` (rad): per-pixel standard deviations
  propagated from the image noise (:class:`temtwin.gpa.core.NoiseModel`);
* ``/invalid_reason`` (uint8): 0 valid, 1 low Bragg amplitude, 2 outside a crystal showing the g
  reflections, 3 within ``interface_margin`` x resolution of an interface (strain, rotation and σ
  maps NaN there; the displacement, an integral continuous across the interface, is kept for code 3);
* ``/separate_g/<label>``: own g vectors of the regions measured without a shared pair
  (``separate_g``: each crystal's reflections of the same planes, refined in that crystal; strain
  still relative to the reference lattice).

Artefact flags per region (:func:`artefact_flags`): ``composition_interface``, ``separate_g``,
``large_strain``, ``no_mean`` with a message each, in the summary (``gpa_flags``,
``gpa_flag_notes``).

Summary fragment: ``{"gpa": {"applicable", "reference_label", "g_vectors_nm-1", "resolution_nm", ...},
"regions": {label: {"strain": {"exx": {"mean", "std", "se"}, "eyy", "exy", "rotation_deg"}} or
{"strain_absent": reason}, "gpa_valid_fraction", "gpa_flags", "gpa_flag_notes"}}``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import NotApplicable, UserError
from ..io.h5 import set_summary
from ..io.image import Micrograph, read_image
from ..peaks.spots import Spots, region_spots
from ..results.gpa import Gpa as GpaFile
from ..gpa import absolute as ab
from ..gpa.choices import (auto_resolution, choose_reference, corresponding_pair, mask_centres, match_spot,
                      pick_g_pair)
from ..gpa.core import GpaResult, gpa
from ..gpa.figures import (choices_figure, displacement_figure, message_figure, rotation_figure, strain_figure,
                      strain_sigma_figure)
from ..gpa.inputs import read_labels, read_peaks, read_phases

COMPONENTS = ("exx", "eyy", "exy", "rotation")


@dataclass
class Analysis:
    """Everything the stage computed for one image."""

    result: GpaResult
    labels: np.ndarray
    reference_label: int
    reference_mask: np.ndarray
    reference_rule: str
    g_rule: str
    resolution_rule: str
    crystalline: dict
    spots: dict
    lattice: dict = field(default_factory=dict)
    relaxed: dict | None = None
    frame: dict | None = None
    regions: dict = field(default_factory=dict)
    invalid_reason: np.ndarray | None = None
    separate: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)


#: a strain step larger than this between neighbouring regions flags a likely composition change
MISMATCH_FLAG = 0.01

#: codes of /invalid_reason (0 = valid)
INVALID_CODES = {1: "low Bragg amplitude (vacuum, amorphous, weak lattice fringes)",
                 2: "outside a crystal showing the g reflections (amorphous region, other orientation, "
                    "or no region)",
                 3: "within the mask resolution of an interface between regions"}


# ------------------------------------------------------------------------------------ choices


def _region_spot_table(label: int, peaks: dict, image: np.ndarray, px, labels, min_snr) -> Spots:
    """The region's spots from peaks.h5 (fft_peaks found them; never found again here); GPA's own
    finder only for a region fft_peaks did not analyse (library use without peaks.h5)."""
    info = peaks.get(label)
    if info is not None:
        return Spots.from_peaks_table(info.get("table"))
    return region_spots(image, px, labels == label, min_snr=min_snr)


def _has_pair(sp: Spots) -> bool:
    try:
        pick_g_pair(sp)
        return True
    except ValueError:
        return False


def box_mask(box_nm, shape, pixel_size_nm) -> np.ndarray:
    """Boolean mask of a box [x0, y0, x1, y1] (nm, image axes)."""
    x0, y0, x1, y1 = (float(v) for v in box_nm)
    px, py = pixel_size_nm
    c0, c1 = sorted((int(round(x0 / px)), int(round(x1 / px))))
    r0, r1 = sorted((int(round(y0 / py)), int(round(y1 / py))))
    m = np.zeros(shape, bool)
    m[max(r0, 0):min(r1 + 1, shape[0]), max(c0, 0):min(c1 + 1, shape[1])] = True
    return m


def _erode_to(mask: np.ndarray, r_px: int) -> np.ndarray:
    """Pixels of ``mask`` farther than r_px from its boundary with the rest of the image (then r/2,
    then the mask itself), keeping at least 1 % of the region.  The image border does not erode
    (edges are handled by the edge margin)."""
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    if r_px <= 0 or n == 0:
        return mask
    if mask.all():
        return mask.copy()
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    for r in (r_px, r_px // 2):
        e = dist > r
        if r > 0 and e.sum() >= max(0.01 * n, 16):
            return e
    return mask


def analyse(m: Micrograph, labels: np.ndarray, peaks: dict, phases: dict, cfg: dict,
            log: logging.Logger | None = None, threads: int = 1) -> Analysis:
    """Automatic choices + GPA + absolute lattice + frames + region statistics for one image.

    Raises NotApplicable when no crystalline region / no two non-collinear Bragg spots exist.
    """
    log = log or logging.getLogger("temtwin")
    img = np.asarray(m.data, np.float32)
    px = m.pixel_size_nm
    shape = img.shape
    if not np.all(np.isfinite(img)):
        raise UserError("image has NaN/Inf pixels; re-export the micrograph")
    if float(img.max()) == float(img.min()):
        raise NotApplicable("blank image (no contrast)")
    min_snr = float(cfg["min_spot_snr"])
    min_frac = float(cfg["min_area_fraction"])
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    big = [int(i) for i, c in zip(ids, counts) if c >= min_frac * labels.size]
    if len(ids) and not big:
        raise NotApplicable(f"no region covers gpa.min_area_fraction ({min_frac:g}) of the image (the largest of "
                            f"{len(ids)} regions covers {counts.max() / labels.size:.2g}): an over-segmented image; "
                            "lower gpa.min_area_fraction or segment coarser (segment.min_area_nm2)")
    # crystalline regions and their spots: "crystalline" is fft_peaks' decision (peaks.h5), read and
    # never re-decided; GPA uses those of them that show two non-collinear spots (2D strain needs a
    # g pair).  Without a peaks.h5 entry (library use) GPA finds the region's spots itself.
    spots: dict[int, Spots] = {}
    crystalline: dict[int, bool] = {}
    for lab in big:
        info = peaks.get(lab)
        if info is not None and not info["crystalline"]:
            crystalline[lab] = False
            continue
        sp = _region_spot_table(lab, peaks, img, px, labels, min_snr)
        spots[lab] = sp
        crystalline[lab] = _has_pair(sp)      # crystalline per fft_peaks (or own spots) and a g pair
    if not any(crystalline.values()):
        raise NotApplicable("no crystalline region: fewer than two non-collinear Bragg spots "
                            f"(power > {min_snr:g} x background) in any region")
    phase_of = {lab: (r["phase"] if r.get("identified") else "") for lab, r in phases.get("regions", {}).items()}
    # reference region
    ref_cfg = cfg["reference"]
    user_reference = isinstance(ref_cfg, list) or (isinstance(ref_cfg, int) and not isinstance(ref_cfg, bool)) \
        or cfg["g_vectors"] is not None
    if phase_of and not user_reference and not any(phase_of.get(lab) for lab in crystalline if crystalline[lab]):
        # phase_id ran and identified none of the crystalline regions: their spots may be the speckle of
        # an amorphous film, so no strain from them (without phase_id results GPA finds its own spots)
        raise NotApplicable("no crystalline region with an identified phase (phase_id); set gpa.reference "
                            "(a region label or a box) or gpa.g_vectors to analyse an unidentified crystal")
    if isinstance(ref_cfg, list):
        ref_mask = box_mask(ref_cfg, shape, px)
        vals, cnt = np.unique(labels[ref_mask], return_counts=True)
        ref_label = -1
        spot_label = int(vals[np.argmax(cnt)]) if len(vals) else 0
        ref_rule = f"box {ref_cfg} nm (config)"
        if not ref_mask.any():
            raise UserError(f"config gpa.reference box {ref_cfg} lies outside the image ({shape[1] * px[0]:.1f} x "
                            f"{shape[0] * px[1]:.1f} nm); give [x0, y0, x1, y1] in nm inside it")
    elif isinstance(ref_cfg, int) and not isinstance(ref_cfg, bool):
        if ref_cfg not in set(ids.tolist()):
            raise UserError(f"config gpa.reference: region {ref_cfg} is not in segmentation.h5 (labels "
                            f"{ids.tolist()}); use auto or one of them")
        ref_label, spot_label, ref_rule = int(ref_cfg), int(ref_cfg), "label from config"
        ref_mask = labels == ref_label
    else:
        ref_label, ref_rule = choose_reference(labels, crystalline, phase_of, cfg["substrate_side"], min_frac)
        if ref_label == 0:
            raise NotApplicable("no crystalline region large enough for a reference")
        spot_label = ref_label
        ref_mask = labels == ref_label
    log.info("gpa: reference region %s (%s)", ref_label, ref_rule)
    ref_spots = spots.get(spot_label)
    if ref_spots is None or not _has_pair(ref_spots):
        if ref_label >= 0 and spot_label in peaks:     # fft_peaks analysed it: its spots are final
            raise NotApplicable(f"reference region {ref_label} shows fewer than two non-collinear Bragg "
                                "spots in peaks.h5")
        ref_spots = region_spots(img, px, ref_mask, min_snr=min_snr)
        if not _has_pair(ref_spots):
            raise NotApplicable(f"reference region {ref_label} shows fewer than two non-collinear Bragg spots")
    other_labels = [l for l in sorted(spots) if crystalline.get(l) and l != spot_label]
    others = [spots[l] for l in other_labels]
    # g vectors
    if cfg["g_vectors"] is not None:
        g = np.asarray(cfg["g_vectors"], float)
        if abs(g[0, 0] * g[1, 1] - g[0, 1] * g[1, 0]) < 1e-6 * np.abs(g).max() ** 2:
            raise UserError("config gpa.g_vectors are collinear; give two non-parallel g vectors in nm^-1")
        matched = []
        for gi in g:
            mm = []
            for o in others:
                j = match_spot(gi, o)
                mm.append(None if j < 0 else (o.k[j] if o.k[j] @ gi > 0 else -o.k[j]))
            matched.append(mm)
        g_rule = "config"
    else:
        g, info = pick_g_pair(ref_spots, others)
        matched, g_rule = info["matched"], info["reason"]
    # separate g vectors: a crystalline region without spots matching both g gets its own pair (its
    # reflections of the same planes), refined in that region; strain stays relative to the reference
    separate: dict[int, dict] = {}
    sep_mode = cfg.get("separate_g", "auto")
    if sep_mode != "never":
        for j, lab in enumerate(other_labels):
            if sep_mode == "auto" and matched[0][j] is not None and matched[1][j] is not None:
                continue
            found = corresponding_pair(g, spots[lab])
            if found is not None:
                separate[lab] = {"g": found[0], **found[1]}
                matched[0][j] = matched[1][j] = None     # no shared mask spans this region's spots
        if separate:
            log.info("gpa: separate g vectors for regions %s (no spots matching the shared g)", sorted(separate))
    centres, spread = mask_centres(g, matched)
    # region-adaptive masks: set 0 spans all phases (midpoints); the reference region and every
    # region whose spots match both g get masks centred on their own spots
    sets, index = [centres], np.zeros(shape, np.int32)
    if spread.max() > 0 or separate:
        sets.append(g.copy())
        index[labels == spot_label] = 1
        for j, lab in enumerate(other_labels):
            m1, m2 = matched[0][j], matched[1][j]
            if m1 is not None and m2 is not None:
                sets.append(np.array([m1, m2], float))
                index[labels == lab] = len(sets) - 1
            elif lab in separate:
                sets.append(np.asarray(separate[lab]["g"], float))
                index[labels == lab] = len(sets) - 1
    if cfg["resolution_nm"] is not None:
        resolution, res_rule = float(cfg["resolution_nm"]), "config"
    else:
        resolution, res_rule = auto_resolution(g, spread, ref_spots.k, centres, float(cfg["resolution_periods"]),
                                               (float(cfg["min_resolution_nm"]), 4.0))
    log.info("gpa: g1 = (%.4f, %.4f), g2 = (%.4f, %.4f) nm^-1 (%s); resolution %.2f nm (%s)",
             g[0, 0], g[0, 1], g[1, 0], g[1, 1], g_rule, resolution, res_rule)
    fov = min(shape[0] * px[1], shape[1] * px[0])
    if fov < 3 * resolution:
        log.warning("gpa: field of view %.1f nm is less than 3 x the resolution %.2f nm", fov, resolution)
    r_px = int(round(resolution / min(px)))
    ref_used = _erode_to(ref_mask, r_px)

    def run_gpa(r_nm):
        return gpa(img, px, g, r_nm, reference_mask=_erode_to(ref_mask, int(round(r_nm / min(px)))),
                   mask_centers=np.array(sets), center_index=index if len(sets) > 1 else None,
                   refine=bool(cfg["refine_g"]), amplitude_threshold=float(cfg["amplitude_threshold"]),
                   workers=max(1, int(threads)), edge_margin_nm=cfg["edge_margin_nm"])

    res = run_gpa(resolution)
    target = cfg.get("target_sigma")
    if target is not None and cfg["resolution_nm"] is None and res.sigma:
        # noise-adaptive resolution: σ of the strain scales as 1/resolution²
        sig = np.nanmedian(np.stack([res.sigma[k][ref_used] for k in ("exx", "eyy", "exy")]))
        if np.isfinite(sig) and sig > float(target):
            r_new = min(resolution * math.sqrt(sig / float(target)), 4.0, fov / 3.0)
            # thin layers stay resolved: at least min_cells_across resolution cells across the
            # narrowest crystalline region (never below the resolution already chosen)
            w_min = _narrowest_width_nm(labels, [spot_label] + other_labels, px)
            n_across = float(cfg.get("min_cells_across", 2.5))
            cap = ""
            if np.isfinite(w_min) and n_across > 0 and r_new > max(resolution, w_min / n_across):
                r_new = max(resolution, w_min / n_across)
                cap = f" (capped: {n_across:g} cells across the narrowest region, {w_min:.2f} nm wide)"
            if r_new > resolution * 1.05:
                log.info("gpa: median sigma %.2g > target %.2g: resolution %.2f -> %.2f nm", sig, target,
                         resolution, r_new)
                res_rule += f"; raised to {r_new:.2f} nm for target_sigma {float(target):g} (median σ {sig:.2g}){cap}"
                resolution = r_new
                r_px = int(round(resolution / min(px)))
                ref_used = _erode_to(ref_mask, r_px)
                res = run_gpa(resolution)
    # regions judged amorphous, or crystalline without both reflections (another orientation or
    # phase), carry no GPA signal: masked even where noise passes the amplitude threshold
    excluded = [l for l, c in crystalline.items() if not c]
    excluded += [l for j, l in enumerate(other_labels)
                 if (matched[0][j] is None or matched[1][j] is None) and l not in separate]
    reason = np.where(res.mask, 0, 1).astype(np.uint8)
    # the region's exclusion is the specific reason, even where its amplitude is also low
    drop = np.isin(labels, excluded)
    reason[drop] = 2
    if excluded:
        log.info("gpa: regions %s masked (amorphous, or without both g reflections)", sorted(excluded))
    # within the mask resolution of an interface: the Fourier mask mixes both sides
    margin_if = float(cfg.get("interface_margin", 0.5)) * resolution
    if margin_if > 0 and len(ids) > 1:
        near = _near_interface(labels, margin_if, px)
        reason[near & (reason == 0)] = 3
    bad = reason > 0
    res.mask &= ~bad
    for k in COMPONENTS:
        getattr(res, k)[bad] = np.nan
        if k in res.sigma:
            res.sigma[k][bad] = np.nan
    # the displacement (a least-squares integral, continuous across interfaces) stays defined within
    # the interface band (code 3): the atomic model displaces the atoms there
    res.displacement[:, bad & (reason != 3)] = np.nan
    an = Analysis(result=res, labels=labels, reference_label=ref_label, reference_mask=ref_used,
                  reference_rule=ref_rule, g_rule=g_rule, resolution_rule=res_rule, crystalline=crystalline,
                  spots=spots, invalid_reason=reason, separate=separate)
    if cfg["absolute"]:
        _absolute(an, phases, spot_label, log)
    if cfg["frame"] != "image":
        _frame(an, cfg["frame"], phases, spot_label, log)
    margin = resolution if cfg["edge_margin_nm"] is None else float(cfg["edge_margin_nm"])
    an.regions = region_statistics(an, margin, px, float(cfg.get("min_valid_cells", 0.25)))
    an.flags = artefact_flags(an, phase_of, px)
    return an


def _narrowest_width_nm(labels: np.ndarray, label_ids, px) -> float:
    """Width (nm) of the narrowest of the given regions: the diameter of its largest inscribed disc
    (image borders count as boundaries); inf when none is given."""
    w = np.inf
    for l in label_ids:
        m = np.pad(np.asarray(labels) == l, 1).astype(np.uint8)
        if m.any():
            w = min(w, 2.0 * float(cv2.distanceTransform(m, cv2.DIST_L2, 5).max()) * float(min(px)))
    return w


def _near_interface(labels: np.ndarray, margin_nm: float, px) -> np.ndarray:
    """Pixels closer than ``margin_nm`` to a boundary between two different labels (not the image
    border)."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    dy = lab[1:, :] != lab[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    if not edge.any():
        return edge
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 5) * float(min(px))
    return dist < margin_nm


def _absolute(an: Analysis, phases: dict, spot_label: int, log) -> None:
    res = an.result
    reg = phases.get("regions", {})
    ph = phases.get("phases", {})
    rinfo = reg.get(spot_label)
    if not rinfo or not rinfo.get("identified") or rinfo.get("phase") not in ph:
        log.info("gpa: reference phase not identified: no absolute lattice parameters")
        return
    lat = ph[rinfo["phase"]]
    hkl = [ab.index_reflection(gi, rinfo.get("spots")) for gi in res.g_vectors]
    if any(h is None for h in hkl):
        log.info("gpa: g vectors not indexed in the reference's phase_id spots: no absolute lattice")
        return
    G_rel = ab.relaxed_basis(hkl, lat["lattice_abc_nm"], lat["lattice_angles_deg"], res.g_vectors)
    calib = float(np.mean(np.hypot(*G_rel.T) / np.hypot(*res.g_vectors.T)))
    F = ab.distortion_from_maps(res.exx, res.eyy, res.exy, res.rotation)
    gl = ab.local_g(F, G_rel)
    d = 1.0 / np.hypot(gl[:, 0], gl[:, 1])
    an.lattice = {"reference_phase": rinfo["phase"], "hkl": np.array(hkl), "calibration": calib,
                  "d_spacing": d.astype(np.float32), "G_relaxed": G_rel}
    abc, angs = lat["lattice_abc_nm"], lat["lattice_angles_deg"]
    if np.allclose(abc, abc[0], rtol=1e-4) and np.allclose(angs, 90.0, atol=1e-3):
        an.lattice["a_from_g"] = np.stack([d[i] * math.sqrt(sum(v * v for v in hkl[i])) for i in range(2)]
                                          ).astype(np.float32)
    # strain relative to each region's own relaxed lattice
    rel = {k: np.full(an.labels.shape, np.nan, np.float32) for k in ("exx", "eyy", "exy")}
    done = []
    for lab, r in reg.items():
        if not r.get("identified") or r.get("phase") not in ph:
            continue
        sel = (an.labels == lab) & res.mask
        if not sel.any():
            continue
        mean_g = np.array([[np.nanmean(gl[i, 0][sel]), np.nanmean(gl[i, 1][sel])] for i in range(2)])
        # index in the region's own spots (measured units: scale back from the relaxed-reference units)
        hkl_r = [ab.index_reflection(mg / calib, r.get("spots")) for mg in mean_g]
        if any(h is None for h in hkl_r):
            hkl_r = hkl
        lr = ph[r["phase"]]
        G_r = ab.relaxed_basis(hkl_r, lr["lattice_abc_nm"], lr["lattice_angles_deg"], G_rel)
        Fs = tuple(c[sel] for c in F)
        exx, eyy, exy, _ = ab.strain_relative_to(Fs, G_rel, G_r)
        rel["exx"][sel], rel["eyy"][sel], rel["exy"][sel] = exx, eyy, exy
        done.append(int(lab))
    if done:
        an.relaxed = {"maps": rel, "labels": done}
    log.info("gpa: absolute lattice from %s (calibration %.4f); relaxed strain for regions %s",
             rinfo["phase"], calib, done)


def _frame(an: Analysis, frame: str, phases: dict, spot_label: int, log) -> None:
    res = an.result
    angle = None
    if frame == "crystal":
        r = phases.get("regions", {}).get(spot_label) or {}
        if r.get("identified") and r.get("rotation_deg") is not None:
            angle, how = float(r["rotation_deg"]), "phase_id rotation_deg of the reference region"
        else:
            angle, how = math.degrees(math.atan2(res.g_vectors[0, 1], res.g_vectors[0, 0])), "direction of g1"
    else:
        neigh = [l for l, c in an.crystalline.items() if c and l != an.reference_label]
        a = ab.interface_angle(an.labels, an.reference_label, neigh or None) if an.reference_label > 0 else None
        if a is None:
            log.warning("gpa: no interface found around the reference region; frame=interface skipped")
            return
        angle, how = a, "principal axis of the reference region's boundary"
    xx, yy, xy = ab.rotate_tensor(res.exx, res.eyy, res.exy, angle)
    an.frame = {"frame": frame, "angle_deg": angle, "how": how,
                "exx": xx.astype(np.float32), "eyy": yy.astype(np.float32), "exy": xy.astype(np.float32)}


def region_statistics(an: Analysis, margin_nm: float, px, min_valid_cells: float = 0.25) -> dict[int, dict]:
    """Per-region statistics over the region's interior (eroded by the resolution, inside the edge
    margin), over valid pixels: mean/std/median of each component and the standard error ``se`` of
    the mean (propagated noise, :meth:`temtwin.gpa.core.GpaResult.mean_std`).

    A region whose interior holds fewer valid pixels than ``min_valid_cells`` resolution cells
    (resolution² / pixel area) gets no statistics (NaN) and a ``reason``: the maps do not support a
    mean there.
    """
    res = an.result
    shape = an.labels.shape
    inner = np.zeros(shape, bool)
    my, mx = int(round(margin_nm / px[1])), int(round(margin_nm / px[0]))
    if shape[0] > 2 * my and shape[1] > 2 * mx:
        inner[my:shape[0] - my, mx:shape[1] - mx] = True
    else:
        inner[:] = True
    r_px = int(round(res.resolution_nm / min(px)))
    need = max(16, int(math.ceil(min_valid_cells * res.resolution_nm ** 2 / (px[0] * px[1]))))
    comps = {"exx": res.exx, "eyy": res.eyy, "exy": res.exy, "rotation": res.rotation}
    if an.relaxed:
        for k, v in an.relaxed["maps"].items():
            comps[f"{k}_relaxed"] = v
    codes = an.invalid_reason if an.invalid_reason is not None else np.where(res.mask, 0, 1)
    out = {}
    for lab in np.unique(an.labels[an.labels > 0]):
        region = an.labels == lab
        sel = _erode_to(region, r_px) & inner & res.mask
        n_region = int(region.sum())
        st = {"n_pixels": int(sel.sum()), "valid_fraction": float((region & res.mask).sum() / max(n_region, 1)),
              "reason": ""}
        if st["n_pixels"] < need:
            c, n = np.unique(codes[region], return_counts=True)
            parts = [f"{100.0 * k / n_region:.0f} % {INVALID_CODES[int(v)]}" for v, k in zip(c, n) if v > 0]
            st["reason"] = (f"{st['n_pixels']} valid pixels in the region's interior, fewer than "
                            f"{min_valid_cells:g} resolution cell(s) ({need} px) needed for a mean"
                            + (f"; invalid: {', '.join(parts)}" if parts else ""))
            for k in comps:
                st[k] = (math.nan, math.nan, math.nan)
            st["se"] = dict.fromkeys(COMPONENTS, math.nan)
            out[int(lab)] = st
            continue
        for k, v in comps.items():
            vals = v[sel]
            vals = vals[np.isfinite(vals)]
            st[k] = (float(vals.mean()), float(vals.std()), float(np.median(vals))) if vals.size else (
                math.nan, math.nan, math.nan)
        st["se"] = res.mean_std(sel)
        out[int(lab)] = st
    return out


def artefact_flags(an: Analysis, phase_of: dict, px) -> dict[int, list[dict]]:
    """Per region, the artefacts a user must know about (code + message):

    * ``composition_interface``: the region borders another crystalline region of a different
      identified phase, or one whose lattice or Bragg amplitude differs (separate g vectors, mean
      strain step > 1 %, amplitude ratio outside 0.67-1.5): across such an interface GPA shows false strain from the
      change of mean inner potential and projected structure (phase of the lattice fringes), over
      about the mask resolution; values there are masked (code 3), but thin layers are affected;
    * ``separate_g``: measured with its own g vectors (no spot pair shared with the reference);
    * ``large_strain``: |mean strain| > 3 %: the lattice-parameter (finite) strain is reported,
      not the small-strain tensor;
    * ``no_mean``: no mean (too few valid pixels).
    """
    res = an.result
    labels = an.labels
    flags: dict[int, list[dict]] = {}
    amp = np.sqrt(np.clip(res.amplitude[0] * res.amplitude[1], 0, None))
    med = {}
    for lab in an.regions:
        sel = (labels == lab) & res.mask
        med[lab] = float(np.median(amp[sel])) if sel.sum() >= 16 else math.nan
    grow = max(1, int(round(res.resolution_nm / min(px))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    for lab, st in an.regions.items():
        fl = []
        ring = cv2.dilate((labels == lab).astype(np.uint8), kernel).astype(bool) & (labels != lab) & (labels > 0)
        neigh = [int(v) for v in np.unique(labels[ring]) if an.crystalline.get(int(v))]
        for nb in neigh:
            why = []
            pa, pb = phase_of.get(lab) or "", phase_of.get(nb) or ""
            if pa and pb and pa != pb:
                why.append(f"phases {pa} / {pb}")
            if (lab in an.separate) != (nb in an.separate):
                why.append("different lattices (separate g vectors)")
            else:
                d = [abs(an.regions[lab][k][0] - an.regions[nb][k][0]) for k in ("exx", "eyy")
                     if nb in an.regions]
                d = [v for v in d if np.isfinite(v)]
                if d and max(d) > MISMATCH_FLAG:
                    why.append(f"lattice mismatch {100 * max(d):.1f} %")
            if np.isfinite(med.get(lab, math.nan)) and np.isfinite(med.get(nb, math.nan)) and med[nb] > 0:
                ratio = med[lab] / med[nb]
                if not 0.67 <= ratio <= 1.5:
                    why.append(f"Bragg amplitude ratio {ratio:.2f}")
            if why:
                fl.append({"code": "composition_interface", "neighbour": nb,
                           "message": f"interface with region {nb} ({'; '.join(why)}): a change of composition "
                                      "shows up in GPA as false strain (mean inner potential, projected "
                                      f"structure) within ~{res.resolution_nm:.1f} nm of it"})
        if lab in an.separate:
            sp = an.separate[lab]
            fl.append({"code": "separate_g", "message": "own g vectors (no spot pair shared with the reference; "
                       f"lattice scale {sp['scale']:.3f}, rotation {sp['rotation_deg']:.1f} deg): strain "
                       "relative to the reference lattice"})
        means = [st[k][0] for k in ("exx", "eyy", "exy")]
        if any(np.isfinite(m) and abs(m) > 0.03 for m in means):
            fl.append({"code": "large_strain", "message": "|mean strain| > 3 %: lattice-parameter (finite) "
                                                          "strain, e = V - I of F = V R"})
        if st.get("reason"):
            fl.append({"code": "no_mean", "message": st["reason"]})
        flags[int(lab)] = fl
    return flags


# -------------------------------------------------------------------------------------- output


def _summary(an: Analysis) -> dict:
    res = an.result
    regions = {}
    for lab, st in an.regions.items():
        se = st.get("se", {})
        entry: dict = {"gpa_valid_fraction": st.get("valid_fraction", math.nan)}
        if st.get("reason"):
            entry["strain_absent"] = st["reason"]
        else:
            s = {k: {"mean": st[k][0], "std": st[k][1], "se": se.get(k, math.nan)} for k in ("exx", "eyy", "exy")}
            s["rotation_deg"] = {"mean": math.degrees(st["rotation"][0]), "std": math.degrees(st["rotation"][1]),
                                 "se": math.degrees(se.get("rotation", math.nan))}
            entry["strain"] = s
            if "exx_relaxed" in st and np.isfinite(st["exx_relaxed"][0]):
                entry["strain_relaxed"] = {k: {"mean": st[f"{k}_relaxed"][0], "std": st[f"{k}_relaxed"][1],
                                               "se": se.get(k, math.nan)} for k in ("exx", "eyy", "exy")}
        fl = an.flags.get(lab, [])
        if fl:
            entry["gpa_flags"] = ";".join(sorted({f["code"] for f in fl}))
            entry["gpa_flag_notes"] = [f["message"] for f in fl]
        regions[str(lab)] = entry
    gpa_s = {"applicable": True, "reference_label": an.reference_label, "reference_rule": an.reference_rule,
             "g_vectors_nm-1": res.g_vectors.tolist(), "resolution_nm": res.resolution_nm, "g_rule": an.g_rule,
             "se_note": "se: standard error of the mean from the image noise propagated through GPA "
                        "(statistical only; excludes calibration and the flagged artefacts)"}
    if an.separate:
        gpa_s["separate_g_regions"] = sorted(int(k) for k in an.separate)
    if an.lattice:
        gpa_s["reference_phase"] = an.lattice["reference_phase"]
        gpa_s["hkl"] = an.lattice["hkl"].tolist()
        gpa_s["calibration"] = an.lattice["calibration"]
    return {"gpa": gpa_s, "regions": regions}


def output_result(an: Analysis) -> GpaFile:
    """The gpa.h5 content of an :class:`Analysis` (layout: :class:`temtwin.results.gpa.Gpa`)."""
    res = an.result
    desc_sigma = "standard deviation propagated from the image noise"
    out = GpaFile(attrs={"": {
        "reference_label": int(an.reference_label), "reference_rule": an.reference_rule,
        "resolution_nm": float(res.resolution_nm), "sigma_k_nm-1": float(res.sigma_k),
        "resolution_rule": an.resolution_rule, "g_rule": an.g_rule,
        "frame": an.frame["frame"] if an.frame else "image"}})
    put = out.put
    put("g_vectors", res.g_vectors, "nm^-1", description="refined reference g, rows g1, g2 [kx, ky]")
    put("g_vectors_input", res.g_input, "nm^-1", description="g before refinement")
    put("mask_centers", res.mask_centers, "nm^-1", sigma_k=float(res.sigma_k),
        description="Gaussian mask centres: (2, 2), or (K, 2, 2) region-adaptive sets")
    for k in ("exx", "eyy", "exy"):
        put(f"strain/{k}", getattr(res, k), "1", axes="image (x right, y down)")
    put("rotation", res.rotation, "rad", convention="from +x towards +y")
    put("displacement", res.displacement, "nm", components="ux, uy")
    put("amplitude", res.amplitude, "a.u.")
    put("mask", res.mask, "1")
    if res.sigma:
        for k in ("exx", "eyy", "exy"):
            put(f"strain_sigma/{k}", res.sigma[k], "1", description=desc_sigma)
        put("rotation_sigma", res.sigma["rotation"], "rad", description=desc_sigma)
    if an.invalid_reason is not None:
        put("invalid_reason", an.invalid_reason, "1",
            codes="; ".join(f"{k}: {v}" for k, v in INVALID_CODES.items()) + "; 0: valid")
    if an.separate:
        out.set_attrs("separate_g")
        for lab, sp in an.separate.items():
            put(f"separate_g/{lab}", np.asarray(sp["g"], float), "nm^-1",
                description="the region's own g vectors (corresponding to g1, g2) before refinement")
    put("reference", an.reference_mask, "1")
    if an.lattice:
        out.set_attrs("lattice", **{k: an.lattice[k] for k in ("reference_phase", "hkl", "calibration")})
        put("lattice/d_spacing", an.lattice["d_spacing"], "nm", description="local spacing of the g1, g2 planes")
        put("lattice/g_relaxed", an.lattice["G_relaxed"], "nm^-1")
        if "a_from_g" in an.lattice:
            put("lattice/a_from_g", an.lattice["a_from_g"], "nm",
                description="cubic lattice parameter implied by each reflection's local spacing")
    if an.relaxed:
        out.set_attrs("strain_relaxed", regions=np.array(an.relaxed["labels"], np.int32))
        for k, v in an.relaxed["maps"].items():
            put(f"strain_relaxed/{k}", v, "1")
    if an.frame:
        out.set_attrs("strain_frame", frame=an.frame["frame"], angle_deg=float(an.frame["angle_deg"]),
                      how=an.frame["how"])
        for k in ("exx", "eyy", "exy"):
            put(f"strain_frame/{k}", an.frame[k], "1")
    out.put_table("regions", _region_columns(an), description="statistics over each region's interior (valid pixels)")
    return out


def _region_columns(an: Analysis) -> dict:
    """The columns of the per-region statistics table ``/regions``."""
    labs = sorted(an.regions)
    cols = {"label": (np.array(labs, np.int32), "label"),
            "n_pixels": (np.array([an.regions[l]["n_pixels"] for l in labs], np.int64), "1")}
    names = [k for k, v in (next(iter(an.regions.values())) if labs else {}).items() if isinstance(v, tuple)]
    for k in names:
        unit = "rad" if k == "rotation" else "1"
        for j, stat in enumerate(("mean", "std", "median")):
            cols[f"{k}_{stat}"] = (np.array([an.regions[l][k][j] for l in labs], float), unit)
        if k in COMPONENTS:
            cols[f"{k}_se"] = (np.array([an.regions[l]["se"][k] for l in labs], float), unit)
    if labs:
        cols["valid_fraction"] = (np.array([an.regions[l]["valid_fraction"] for l in labs], float), "1")
    return cols


def write_output(f, an: Analysis) -> None:
    """Write an :class:`Analysis` into the open gpa.h5 ``f`` (through :class:`temtwin.results.gpa.Gpa`)."""
    output_result(an).write(f)
    set_summary(f, _summary(an))


def _not_applicable(ctx, m: Micrograph, reason: str, figdir: Path) -> None:
    ctx.log.warning("gpa: not applicable for %s/%s: %s", m.sample, m.name, reason)
    with ctx.h5("h5") as f:
        GpaFile(applicable=False, reason=reason,
                attrs={"": {"reference_label": 0, "resolution_nm": float("nan")}}).write(f)
        set_summary(f, {"gpa": {"applicable": False, "reason": reason}})
    message_figure(m.data, m.pixel_size_nm, reason, figdir / "not_applicable.png")


def run(ctx) -> None:
    """Stage function of rule ``gpa``."""
    cfg = ctx.section("gpa")
    m = read_image(ctx.input["image"])
    labels = read_labels(ctx.input.get("segmentation"), m.shape)
    peaks = read_peaks(ctx.input.get("peaks"))
    phases = read_phases(ctx.input.get("phases"))
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    try:
        _set_cv2_threads(ctx.threads)
        an = analyse(m, labels, peaks, phases, cfg, ctx.log, ctx.threads)
    except NotApplicable as err:
        _not_applicable(ctx, m, str(err), figdir)
        return
    except UserError as err:
        if err.path is None:
            raise UserError(err.message, ctx.input["image"]) from None
        raise
    with ctx.h5("h5") as f:
        write_output(f, an)
    res = an.result
    strain_figure({"exx": res.exx, "eyy": res.eyy, "exy": res.exy}, m.pixel_size_nm, figdir / "strain.png",
                  title=f"{m.sample}/{m.name}: strain relative to region {an.reference_label}")
    if res.sigma:
        strain_sigma_figure({"exx": res.exx, "eyy": res.eyy, "exy": res.exy}, res.sigma, m.pixel_size_nm,
                            figdir / "strain_sigma.png",
                            title=f"{m.sample}/{m.name}: strain and its standard deviation (image noise)")
    rotation_figure(res.rotation, m.pixel_size_nm, figdir / "rotation.png")
    displacement_figure(res.displacement, m.pixel_size_nm, figdir / "displacement.png")
    centres = res.mask_centers if res.mask_centers.ndim == 2 else res.mask_centers[0]
    choices_figure(m.data, m.pixel_size_nm, an.reference_mask, res.g_vectors, centres, res.sigma_k,
                   figdir / "choices.png",
                   title=f"resolution {res.resolution_nm:.2f} nm ({an.resolution_rule}); g: {an.g_rule}")
    if an.frame:
        strain_figure({k: an.frame[k] for k in ("exx", "eyy", "exy")}, m.pixel_size_nm,
                      figdir / f"strain_{an.frame['frame']}.png",
                      title=f"{an.frame['frame']} frame (x' at {an.frame['angle_deg']:.1f} deg)")
    ctx.log.info("gpa: %d regions; reference %s; mean strain written", len(an.regions), an.reference_label)


def _set_cv2_threads(n: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(max(1, int(n)))
    except Exception:  # pragma: no cover
        pass
