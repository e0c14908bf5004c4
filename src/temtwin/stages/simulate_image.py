"""Rule ``simulate_image``: simulate the atomic model's micrograph, fit the optics, compare, refine.

Inputs: ``image`` (image.h5), ``segmentation`` (segmentation.h5), ``model`` (the sample's model.h5),
``settings`` (sample.yaml when present: ``overrides.simulate_image`` applies, e.g. ``mode`` and ``energy_keV``
for files without metadata) and, when keating ran, ``relaxed`` (relaxed.extxyz, Å).
Outputs: ``h5`` (simulation.h5) and ``figures``.

simulation.h5 (per image): root attrs ``applicable``, ``reason``, ``mode`` (hrtem/haadf), ``model``
(as_built/relaxed: the one fitted), ``ambiguous``; ``/simulated`` and ``/residual`` (rows, cols) in the
image's units (fitted model = offset + scale · simulation), ``/mask`` (pixels compared), ``/ssim_map``;
``/relaxed/simulated`` or ``/as_built/simulated`` for the other model when both exist; table ``/fit``
(``parameter``, ``value``, ``sigma``, ``units``; sigma NaN = not determined); table ``/regions`` (``label``,
``coverage``, ``ncc``, ``ssim``, ``rms_noise``); HRTEM ``/fit_scan/ncc`` (Cs, plane, defocus) with
``/fit_scan/{cs_um, thickness_nm, defocus_nm}``; with refinement, table ``/refine/history``
(``iteration``, ``residual_rms``) and table ``/refine/columns`` (``x_nm``, ``y_nm``, ``dx_nm``, ``dy_nm``,
``n_atoms``, ``fraction_start``, ``fraction``).
Summary keys: ``images.<img>.simulation`` and ``images.<img>.regions.<label>.simulation``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.h5 import set_summary
from ..results.simulation import Simulation
from ..io.image import read_image
from ..simulate_image.compare import metrics, noise_sigma, ssim_full
from ..simulate_image.coverage import check_coverage
from ..simulate_image.fit import ncc

PARAM_UNITS = {"defocus_nm": "nm", "cs_um": "um", "blur_nm": "nm", "source_nm": "nm", "exponent": "1",
               "shift_x_px": "px", "shift_y_px": "px", "thickness_nm": "nm", "focal_spread_nm": "nm",
               "offset": "image", "scale": "image"}


def _read_labels(path):
    from ..results.segmentation import Segmentation

    if not path or not Path(path).is_file():
        return None
    return Segmentation.read_labels(path)


def _not_applicable(ctx, reason: str, mode: str = "") -> None:
    ctx.log.info("simulate_image not applicable: %s", reason)
    Path(ctx.output["figures"]).mkdir(parents=True, exist_ok=True)
    with ctx.h5("h5") as f:
        Simulation(applicable=False, reason=reason, attrs={"": {"mode": mode}}).write(f)
        set_summary(f, {"simulation": {"applicable": False, "reason": reason}})


def simulation_result(res: dict, which: str, mode: str, fit, noise, sim, data, valid, ssim_map, units: str,
                      rows: list) -> Simulation:
    """The simulation.h5 content (layout: :class:`temtwin.results.simulation.Simulation`)."""
    out = Simulation(attrs={"": {"mode": mode, "model": which, "ambiguous": bool(fit.ambiguous),
                                 "noise_sigma": noise, "fit_box_px": np.asarray(res["box"], int)}})
    out.put("simulated", sim.astype(np.float32), units)
    out.put("residual", (data - sim).astype(np.float32), units)
    out.put("mask", valid, "1")
    out.put("ssim_map", ssim_map.astype(np.float32), "1")
    for k, s in res["sims"].items():
        if k != which:
            out.put(f"{k}/simulated", s.astype(np.float32), units)
    names = [k for k in fit.values if k != "plane" and fit.values[k] is not None]
    out.put_table("fit", {
        "parameter": (np.array(names, dtype=object), "1"),
        "value": (np.array([float(fit.values[k]) for k in names]), "mixed"),
        "sigma": (np.array([np.nan if fit.sigma.get(k) is None else float(fit.sigma[k]) for k in names]), "mixed"),
        "sigma_stat": (_col(fit.sigma_stat, names), "mixed"), "sigma_sys": (_col(fit.sigma_sys, names), "mixed"),
        "units": (np.array([PARAM_UNITS.get(k, "1") for k in names], dtype=object), "1")},
        note="value/sigma units per row in column units; sigma NaN = not determined; sigma = "
             "sqrt(sigma_stat^2 + sigma_sys^2), sigma_sys NaN = no systematic part evaluated")
    if rows:
        r = np.array(rows, float)
        out.put_table("regions", {"label": (r[:, 0].astype(np.int32), "label"), "coverage": (r[:, 1], "1"),
                                  "ncc": (r[:, 2], "1"), "ssim": (r[:, 3], "1"), "rms_noise": (r[:, 4], "1")})
    if res.get("scan"):
        out.put("fit_scan/ncc", np.asarray(res["scan"]["ncc"], np.float32), "1")
        out.put("fit_scan/cs_um", np.asarray(res["scan"]["cs_um"], float), "um")
        out.put("fit_scan/defocus_nm", np.asarray(res["scan"]["defocus_nm"], float), "nm")
        out.put("fit_scan/thickness_nm",
                np.asarray(res["thickness_planes"])[np.asarray(res["scan"]["planes"])], "nm")
    if res["refine"] is not None:
        rf = res["refine"]
        d = rf["xy"] - rf["xy0"]
        out.put_table("refine/history", {"iteration": (np.arange(len(rf["history"])), "1"),
                                         "residual_rms": (np.asarray(rf["history"]), units)})
        out.put_table("refine/columns", {"x_nm": (rf["xy"][:, 0], "nm"), "y_nm": (rf["xy"][:, 1], "nm"),
                                         "dx_nm": (d[:, 0], "nm"), "dy_nm": (d[:, 1], "nm"),
                                         "n_atoms": (rf["n_atoms"], "1"), "fraction_start": (rf["x0"], "1"),
                                         "fraction": (rf["x"], "1")})
    else:
        out.attrs[""]["refine_reason"] = res["refine_reason"]
    return out


def choose_mode(cfg: dict, meta: dict) -> tuple[str | None, str]:
    """('hrtem' | 'haadf' | None, reason) from config and the image metadata."""
    if cfg["mode"] != "auto":
        return cfg["mode"], ""
    mode = str(meta.get("mode", "unknown")).upper()
    det = str(meta.get("detector", "") or "").upper()
    if mode == "TEM":
        return "hrtem", ""
    if mode == "STEM":
        if "ABF" in det:
            return "abf", ""
        if det in ("BF", "BRIGHT FIELD", "BRIGHTFIELD") or det.startswith("BF"):
            return "bf", ""
        if any(k in det for k in ("HAADF", "ADF", "DF", "ANNULAR")):
            return "haadf", ""
        if det in ("", "NONE", "UNKNOWN"):
            return "haadf", ""
        return None, f"STEM detector {det!r} not recognised: set simulate_image.mode (haadf, abf or bf)"
    return None, f"imaging mode {mode!r} unknown: set simulate_image.mode (hrtem, haadf, abf or bf)"


def best_box(cov: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1) of the ``size``² crop with the largest covered area (clipped to the image);
    of equally covered crops the one whose centre is nearest the covered pixels' centroid."""
    from scipy.ndimage import uniform_filter

    rows, cols = cov.shape
    hr, hc = min(size, rows), min(size, cols)
    dens = uniform_filter(cov.astype(float), size=(hr, hc), mode="constant")
    r0 = np.clip(np.arange(rows) - hr // 2, 0, rows - hr)
    c0 = np.clip(np.arange(cols) - hc // 2, 0, cols - hc)
    # among the best-covered crops, the one nearest the centroid of the covered pixels
    cand = np.argwhere(dens >= dens.max() - 1e-9)
    cen = np.argwhere(cov).mean(0) if cov.any() else np.array([rows / 2, cols / 2])
    i, j = cand[int(np.argmin(np.sum((cand - cen) ** 2, 1)))]
    return int(r0[i]), int(c0[j]), int(r0[i]) + hr, int(c0[j]) + hc


def _crop_atoms(atoms, box_nm, thickness_A=None):
    """Atoms inside box (x0, y0, x1, y1) nm, shifted to the box origin, orthogonal cell; ``thickness_A`` z cut."""
    from ase import Atoms

    p = atoms.get_positions()
    x0, y0, x1, y1 = (v * 10.0 for v in box_nm)
    keep = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
    tz = float(atoms.cell[2, 2]) if thickness_A is None else float(thickness_A)
    keep &= (p[:, 2] >= 0) & (p[:, 2] < tz)
    q = p[keep] - np.array([x0, y0, 0.0])
    return Atoms(numbers=atoms.numbers[keep], positions=q, cell=np.diag([x1 - x0, y1 - y0, max(tz, 1.0)]),
                 pbc=(True, True, False))


def _extend_along_beam(atoms, factor: float):
    """Repeat a beam-periodic model along z to at least ``factor`` × its thickness."""
    k = int(np.ceil(factor))
    if k <= 1:
        return atoms
    return atoms.repeat((1, 1, k))


def _load_models(ctx):
    from ase.io import read as ase_read

    from ..results.model import Model

    mp = ctx.input["model"]
    built = Model.core(mp).to_atoms()
    models = {"as_built": built}
    rel = ctx.paths("relaxed")
    if rel and Path(rel[0]).is_file() and len(built):
        r = ase_read(rel[0])
        if len(r) == len(built):
            r.set_cell(built.cell)
            r.pbc = built.pbc
            models["relaxed"] = r
    return models


def _edge_mask(shape, pixel_nm, margin_nm):
    rows, cols = shape
    mr = int(np.ceil(margin_nm / pixel_nm[1]))
    mc = int(np.ceil(margin_nm / pixel_nm[0]))
    m = np.zeros(shape, bool)
    m[mr:rows - mr, mc:cols - mc] = True
    return m


def run(ctx) -> None:
    cfg = ctx.section("simulate_image")
    sample = ctx.sample_settings()
    ov = (sample.get("overrides") or {}).get("simulate_image") if isinstance(sample.get("overrides"), dict) else None
    if ov:
        from ..config import load_config

        cfg = load_config({"simulate_image": {**cfg, **ov}}, require_dataset=False)["simulate_image"]
    img = read_image(ctx.input["image"])
    name = img.name
    mode, why = choose_mode(cfg, img.meta)
    if mode is None:
        return _not_applicable(ctx, why)
    models = _load_models(ctx)
    built = models["as_built"]
    if not built.info.get("applicable", True) or len(built) == 0:
        return _not_applicable(ctx, "the atomic model is empty or not applicable", mode)
    src = str(built.info.get("image", ""))
    if src and src != name:
        return _not_applicable(ctx, f"the atomic model was built from image {src}; it does not cover image {name}",
                               mode)
    px = tuple(float(v) for v in img.pixel_size_nm)
    cov = check_coverage(built.get_positions() / 10.0, img.shape, px, str(ctx.input["model"]), name,
                         float(cfg["min_coverage"]))
    which = cfg["model"] if cfg["model"] != "auto" else ("relaxed" if "relaxed" in models else "as_built")
    if which not in models:
        raise UserError(f"simulate_image.model = {which} but no relaxed model exists: enable keating or use as_built",
                        str(ctx.input["model"]))
    kv = img.meta.get("voltage_kV")
    kv = float(kv) if kv is not None and np.isfinite(float(kv)) and float(kv) > 0 else cfg.get("energy_keV")
    energy = float(kv or 0) * 1e3
    if not np.isfinite(energy) or energy <= 0:
        raise UserError("no beam energy: image.h5 has no voltage_kV; set simulate_image.energy_keV",
                        str(ctx.input["image"]))
    from ..simulate_image.multislice import gpu_available

    if cfg["device"] != "cpu":
        has_gpu = gpu_available()
        if cfg["device"] == "gpu" and not has_gpu:
            raise UserError("simulate_image.device = gpu but CuPy or a CUDA device is missing: set device to cpu "
                            "or auto", "config")
        cfg["device"] = "gpu" if has_gpu else "cpu"
    ctx.log.info("simulate_image: mode %s, model %s, device %s", mode, which, cfg["device"])
    data = np.asarray(img.data, float)
    noise = noise_sigma(data)
    t0 = time.perf_counter()
    if mode == "hrtem":
        res = _run_hrtem(ctx, cfg, img, models, which, cov, energy)
    elif mode == "haadf":
        res = _run_haadf(ctx, cfg, img, models, which, cov, energy)
        if cfg["stem"]["simulator"] == "multislice":
            res["multislice"] = _stem_crop(ctx, cfg, img, models[which], cov, energy, mode, res["fit"].values)
    else:  # ABF / BF: no linear model; abTEM multislice over a crop
        res = _run_stem_multislice(ctx, cfg, img, models, which, cov, energy, mode)
    res["timing_s"] = time.perf_counter() - t0
    _write(ctx, cfg, img, mode, which, res, cov, noise)


def _hrtem_imager(atoms, box_nm, shape, px, energy, cfg, ctx, thickness_A=None, every=None, extend=1.0):
    from ..simulate_image.hrtem import HRTEMImager
    from ..simulate_image.multislice import exit_waves

    sub = _crop_atoms(atoms, box_nm, thickness_A)
    if extend > 1.0:
        sub = _extend_along_beam(sub, extend)
    nsl = int(np.ceil(sub.cell[2, 2] / float(cfg["slice_A"])))
    ew = exit_waves(sub, energy, float(cfg["sampling_A"]), float(cfg["slice_A"]),
                    every or int(cfg["plane_every_slices"]), ctx.threads, "gpu" if cfg["device"] == "gpu" else "cpu")
    if extend > 1.0:
        keep = ew.thickness_nm <= atoms.cell[2, 2] / 10.0 * extend + 1e-6
        ew.waves, ew.thickness_nm = ew.waves[keep], ew.thickness_nm[keep]
    ctx.log.info("exit waves: %d atoms, %d slices, grid %s, %d planes", len(sub), nsl, ew.waves.shape[1:],
                 len(ew.thickness_nm))
    return HRTEMImager(ew, shape, px, (0.0, 0.0), 0.0, float(cfg["objective_aperture_mrad"]))


def _run_hrtem(ctx, cfg, img, models, which, cov, energy):
    from ..simulate_image.fit import fit_hrtem, linear_intensity

    px = tuple(float(v) for v in img.pixel_size_nm)
    data = np.asarray(img.data, float)
    atoms = models[which]
    r0, c0, r1, c1 = best_box(cov, int(cfg["fit_size_px"]))
    box = (c0 * px[0], r0 * px[1], c1 * px[0], r1 * px[1])
    periodic = bool(atoms.pbc[2])
    extend = float(cfg["max_thickness_factor"]) if periodic else 1.0
    imager = _hrtem_imager(atoms, box, (r1 - r0, c1 - c0), px, energy, cfg, ctx, extend=extend)
    sub = data[r0:r1, c0:c1]
    mask = cov[r0:r1, c0:c1] & _edge_mask(sub.shape, px, float(cfg["edge_margin_nm"]))
    if mask.sum() < 64:
        raise UserError(f"the model covers too few pixels of the fit crop of image {img.name}", str(ctx.input["model"]))
    fit = fit_hrtem(imager, sub, mask, defocus_range_nm=tuple(cfg["defocus_range_nm"]),
                    defocus_step_nm=float(cfg["defocus_step_nm"]), cs_um=list(cfg["cs_um"]),
                    fit_cs=bool(cfg["fit_cs"]), focal_spread_nm=float(cfg["focal_spread_nm"]),
                    blur_nm=float(cfg["blur_nm"]), log=ctx.log,
                    focal_spread_sigma_nm=float(cfg["systematic"]["focal_spread_nm"]),
                    potential_rel_sigma=float(cfg["systematic"]["potential_rel"]),
                    min_ncc=float(cfg["min_fit_ncc"]))
    v = fit.values
    plane_t = float(imager.thickness_nm[v["plane"]])
    ctx.log.info("HRTEM fit: defocus %.2f nm, Cs %.1f um, thickness %.2f nm, NCC %.3f", v["defocus_nm"], v["cs_um"],
                 v["thickness_nm"], fit.ncc)
    # the full field of view at the fitted plane
    fov = (img.shape[1] * px[0], img.shape[0] * px[1])
    sims = {}
    for key, at in models.items():
        if periodic and plane_t * 10.0 > at.cell[2, 2] + 1e-6:
            at = _extend_along_beam(at, plane_t * 10.0 / at.cell[2, 2])
        full = _hrtem_imager(at, (0.0, 0.0) + fov, img.shape, px, energy, cfg, ctx, thickness_A=plane_t * 10.0 + 1e-3,
                             every=10**6)
        raw = full.image(len(full.thickness_nm) - 1, v["defocus_nm"], v["cs_um"], v["focal_spread_nm"],
                         max(v["blur_nm"], 0.0), (v["shift_x_px"], v["shift_y_px"]))
        sims[key] = raw
    a, b = linear_intensity(sims[which], data, cov & _edge_mask(img.shape, px, float(cfg["edge_margin_nm"])))
    return {"fit": fit, "sims": {k: a + b * s for k, s in sims.items()}, "box": (r0, c0, r1, c1),
            "scan": fit.scan, "thickness_planes": imager.thickness_nm, "refine": None,
            "refine_reason": "refinement is implemented for HAADF (linear model) only"}


def _run_haadf(ctx, cfg, img, models, which, cov, energy):
    from ..simulate_image.fit import fit_haadf, linear_intensity
    from ..simulate_image.linear import LinearHAADF, z_weights
    from ..simulate_image.refine import composition_from_weight, find_columns, refine_columns

    h = cfg["haadf"]
    px = tuple(float(v) for v in img.pixel_size_nm)
    data = np.asarray(img.data, float)
    conv = float(img.meta.get("convergence_angle_mrad") or h["convergence_mrad"])
    cs0 = float(cfg["cs_um"][0]) if cfg["mode"] == "haadf" else 0.0
    r0, c0, r1, c1 = best_box(cov, int(cfg["fit_size_px"]))
    atoms = models[which]
    pos = atoms.get_positions() / 10.0
    sub = data[r0:r1, c0:c1]
    off = np.array([c0 * px[0], r0 * px[1]])
    crop = LinearHAADF(sub.shape, px, energy, conv, int(h["oversample"]))
    mask = cov[r0:r1, c0:c1] & _edge_mask(sub.shape, px, float(cfg["edge_margin_nm"]))
    ext = np.array([(c1 - c0) * px[0], (r1 - r0) * px[1]])
    inb = np.all((pos[:, :2] - off >= 0) & (pos[:, :2] - off < ext), axis=1)  # no wrap-around of outside atoms
    fit = fit_haadf(crop, sub, mask, pos[inb, :2] - off, atoms.numbers[inb], cs_um=cs0, fit_cs=False,
                    source_nm=float(h["source_nm"]), exponent=float(h["exponent"]),
                    imager_at=lambda c: LinearHAADF(sub.shape, px, energy, c, int(h["oversample"])),
                    convergence_sigma_mrad=float(cfg["systematic"]["convergence_mrad"]))
    v = fit.values
    full = LinearHAADF(img.shape, px, energy, conv, int(h["oversample"]))
    sims = {}
    for key, at in models.items():
        sims[key] = full.image(at.get_positions()[:, :2] / 10.0, z_weights(at.numbers, v["exponent"]), v["defocus_nm"],
                               v["cs_um"], v["source_nm"], (v["shift_x_px"], v["shift_y_px"]))
    cmask = cov & _edge_mask(img.shape, px, float(cfg["edge_margin_nm"]))
    a, b = linear_intensity(sims[which], data, cmask)
    out = {"fit": fit, "sims": {k: a + b * s for k, s in sims.items()}, "box": (r0, c0, r1, c1), "scan": None,
           "refine": None, "refine_reason": "refinement disabled (simulate_image.refine.enabled)"}
    rc = cfg["refine"]
    if rc["enabled"]:
        from ase.data import atomic_numbers

        za, zb = (atomic_numbers[s] for s in rc["species"])
        col = find_columns(pos)
        w = np.bincount(col.atom_column, z_weights(atoms.numbers, v["exponent"]), minlength=len(col.n_atoms))
        shift = np.array([v["shift_x_px"] * px[0], v["shift_y_px"] * px[1]])
        xy, w2, hist = refine_columns(full, data, col.xy_nm + shift, w, defocus_nm=v["defocus_nm"], cs_um=v["cs_um"],
                                      source_nm=v["source_nm"], offset=a, scale=b, iterations=int(rc["iterations"]),
                                      mask=cmask)
        out["refine"] = {"history": hist, "xy": xy - shift, "xy0": col.xy_nm, "n_atoms": col.n_atoms,
                         "x0": composition_from_weight(w, col.n_atoms, za, zb, v["exponent"]),
                         "x": composition_from_weight(w2, col.n_atoms, za, zb, v["exponent"])}
        out["sims"]["refined"] = a + b * full.image(xy, w2, v["defocus_nm"], v["cs_um"], v["source_nm"])
        ctx.log.info("refinement: residual RMS %s", ", ".join(f"{x:.4g}" for x in hist))
    return out


def _stem_conv(cfg, img) -> float:
    v = img.meta.get("convergence_angle_mrad")
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = float("nan")
    return v if np.isfinite(v) and v > 0 else float(cfg["haadf"]["convergence_mrad"])


def _stem_crop(ctx, cfg, img, atoms, cov, energy, mode, start):
    """abTEM multislice of the best-covered crop (``stem.size_nm``) and the fit of blur, shift, a, b."""
    from ..simulate_image.stem import detector_angles, fit_stem, simulate_stem_crop

    sc = cfg["stem"]
    px = tuple(float(v) for v in img.pixel_size_nm)
    conv = _stem_conv(cfg, img)
    det, det_src = detector_angles(mode, img.meta, sc["detector_mrad"], conv)
    n = max(8, int(round(float(sc["size_nm"]) / px[0])))
    box = best_box(cov, n)
    r0, c0, r1, c1 = box
    ctx.log.info("STEM multislice (%s): %d x %d px crop, detector %.0f-%.0f mrad (%s), convergence %.1f mrad",
                 mode, r1 - r0, c1 - c0, det[0], det[1], det_src, conv)
    crop = simulate_stem_crop(atoms, box, px, energy, conv, det, margin_nm=float(sc["margin_nm"]),
                              sampling_A=float(sc["sampling_A"]), slice_A=float(cfg["slice_A"]),
                              defocus_nm=float(start.get("defocus_nm") or 0.0), cs_um=float(start.get("cs_um") or 0.0),
                              max_thickness_nm=sc["max_thickness_nm"], threads=ctx.threads,
                              device="gpu" if cfg["device"] == "gpu" else "cpu")
    data = np.asarray(img.data, float)[r0:r1, c0:c1]
    mask = cov[r0:r1, c0:c1]
    if mask.sum() < 16:
        raise UserError(f"the model covers too few pixels of the STEM multislice crop of image {img.name}",
                        str(ctx.input["model"]))
    fit = fit_stem(crop.raw, data, mask, px, blur_nm=float(cfg["haadf"]["source_nm"]),
                   defocus_nm=float(start.get("defocus_nm") or 0.0), cs_um=float(start.get("cs_um") or 0.0),
                   thickness_nm=crop.thickness_nm)
    if crop.collected_outer_mrad < det[1] - 1e-6:
        fit.notes.append(f"detector outer angle {det[1]:.0f} mrad collected only to {crop.collected_outer_mrad:.0f} "
                         f"mrad by the {crop.sampling_A:.3f} Å sampling (simulate_image.stem.sampling_A)")
    ctx.log.info("STEM multislice: %d atoms, %.1f s, NCC %.3f", crop.n_atoms, crop.seconds, fit.ncc)
    return {"crop": crop, "fit": fit, "detector_source": det_src, "convergence_mrad": conv, "mode": mode}


def _run_stem_multislice(ctx, cfg, img, models, which, cov, energy, mode):
    ms = _stem_crop(ctx, cfg, img, models[which], cov, energy, mode, {"defocus_nm": cfg["stem"]["defocus_nm"],
                                                                      "cs_um": 0.0})
    r0, c0, r1, c1 = ms["crop"].box_px
    sim = np.full(img.shape, np.nan)
    sim[r0:r1, c0:c1] = ms["fit"].simulated
    valid = np.zeros(img.shape, bool)
    valid[r0:r1, c0:c1] = cov[r0:r1, c0:c1]
    if len(models) > 1:
        ms["fit"].notes.append(f"only the {which} model is simulated by multislice (one crop per job)")
    return {"fit": ms["fit"], "sims": {which: sim}, "box": ms["crop"].box_px, "scan": None, "valid": valid,
            "multislice": ms, "refine": None,
            "refine_reason": f"refinement uses the linear HAADF model; not available for {mode.upper()}"}


def _write(ctx, cfg, img, mode, which, res, cov, noise) -> None:
    from ..simulate_image.figures import comparison_figure

    data = np.asarray(img.data, float)
    px = tuple(float(v) for v in img.pixel_size_nm)
    units = img.meta.get("units", "counts") if isinstance(img.meta.get("units"), str) else "counts"
    sim = res["sims"][which]
    valid = res["valid"] if "valid" in res else cov & _edge_mask(img.shape, px, float(cfg["edge_margin_nm"]))
    ssim_map = ssim_full(data, sim, valid)
    m_img = metrics(data, sim, valid, noise, ssim_map)
    labels = _read_labels(ctx.input.get("segmentation"))
    regions = {}
    rows = []
    if labels is not None and labels.shape == data.shape:
        for lab in np.unique(labels):
            if lab == 0:
                continue
            rm = labels == lab
            c = float(cov[rm].mean())
            mm = metrics(data, sim, rm & valid, noise, ssim_map)
            mm["coverage"] = c
            regions[str(int(lab))] = {"simulation": mm}
            rows.append((int(lab), c, mm.get("ncc", np.nan), mm.get("ssim", np.nan),
                         mm.get("rms_noise", np.nan) if mm.get("rms_noise") is not None else np.nan))
    fit = res["fit"]
    others = {}
    for k, s in res["sims"].items():
        if k != which:
            others[k] = metrics(data, s, valid, noise)
    summ = {"applicable": True, "mode": mode, "model": which, **{k: v for k, v in m_img.items()},
            "fit": {k: v for k, v in fit.values.items() if k != "plane"},
            "fit_sigma": fit.sigma, "fit_sigma_stat": fit.sigma_stat, "fit_sigma_sys": fit.sigma_sys,
            "fit_ncc": fit.ncc, "ambiguous": bool(fit.ambiguous), "notes": list(fit.notes),
            "noise_sigma": noise, "timing_s": res["timing_s"], "other_models": others}
    if res["refine"] is not None:
        rf = res["refine"]
        summ["refine"] = {"residual_rms": rf["history"],
                          "mean_shift_nm": float(np.sqrt(np.mean(np.sum((rf["xy"] - rf["xy0"]) ** 2, 1))))}
    Path(ctx.output["figures"]).mkdir(parents=True, exist_ok=True)
    out = simulation_result(res, which, mode, fit, noise, sim, data, valid, ssim_map, units, rows)
    with ctx.h5("h5") as f:
        if res.get("multislice"):
            out.graft("multislice", multislice_group(res["multislice"], data, sim, noise, units, summ))
        out.write(f)
        set_summary(f, {"simulation": summ, "regions": regions})
    comparison_figure(data, sim, px, ctx.output["figures"] / "comparison.png" if isinstance(ctx.output["figures"], Path)
                      else Path(ctx.output["figures"]) / "comparison.png",
                      title=f"{img.name}: {mode}, {which} model, NCC {m_img.get('ncc', float('nan')):.3f}",
                      mask=valid)


def multislice_group(ms, data, sim, noise, units, summ) -> Simulation:
    """``/multislice``: the abTEM crop (``simulated`` fitted, ``raw`` detector fraction), its box and fit; adds
    ``summ["multislice"]``.  ``sim`` is the main simulation (the linear model for HAADF)."""
    crop, fit = ms["crop"], ms["fit"]
    r0, c0, r1, c1 = crop.box_px
    names = [k for k in fit.values if fit.values[k] is not None]
    g = Simulation(attrs={"": {"box_px": np.asarray(crop.box_px, int),
                               "detector_mrad": np.asarray(crop.detector_mrad, float),
                               "detector_source": ms["detector_source"],
                               "collected_outer_mrad": crop.collected_outer_mrad,
                               "convergence_mrad": ms["convergence_mrad"], "sampling_A": crop.sampling_A}})
    g.put("simulated", fit.simulated.astype(np.float32), units)
    g.put("raw", crop.raw.astype(np.float32), "1", description="fraction of the probe intensity on the detector")
    g.put_table("fit", {
        "parameter": (np.array(names, dtype=object), "1"),
        "value": (np.array([float(fit.values[k]) for k in names]), "mixed"),
        "sigma": (_col(fit.sigma, names), "mixed"),
        "units": (np.array([PARAM_UNITS.get(k, "1") for k in names], dtype=object), "1")},
        note="value/sigma units per row in column units; sigma NaN = not determined")
    m = np.ones(fit.simulated.shape, bool)
    d = data[r0:r1, c0:c1]
    out = {"mode": ms["mode"], "box_px": [int(v) for v in crop.box_px], "detector_mrad": list(crop.detector_mrad),
           "detector_source": ms["detector_source"], "collected_outer_mrad": crop.collected_outer_mrad,
           "thickness_nm": crop.thickness_nm, "n_atoms": crop.n_atoms, "seconds": crop.seconds,
           "ncc": ncc(d, fit.simulated, m),
           "rms_noise": float(np.sqrt(np.mean((d - fit.simulated) ** 2)) / noise) if noise > 0 else None,
           "fit": {k: v for k, v in fit.values.items()}, "fit_sigma": fit.sigma, "notes": list(fit.notes)}
    if ms["mode"] == "haadf":
        out["ncc_linear_vs_multislice"] = ncc(np.asarray(sim, float)[r0:r1, c0:c1], fit.simulated, m)
    summ["multislice"] = out
    return g


def _col(d: dict, names) -> np.ndarray:
    return np.array([np.nan if d.get(k) is None else float(d[k]) for k in names])
