"""Rule ``atomic_model``: the 3D atomic model of one image of the sample (see :mod:`.builder`).

Outputs: ``model.h5`` (:class:`temtwin.results.model.Model`: the per-atom core plus ``/regions`` table,
``/quality`` maps and ``/composition`` attributes), ``model.extxyz`` (Å, arrays region, displacement, source_pixel),
``model.lmp`` (LAMMPS data, atomic style) and figures (projected views by species and by
displacement, quality map).  Summary fragment (sample level): ``model`` = {n_atoms, species,
thickness_nm, files, quality, image, reference_label, regions, composition}.

Config section ``atomic_model`` (config/schema/atomic_model.yaml): image, thickness_nm, periodic_along_beam,
min_distance_A, max_atoms, origin, atom_contrast, apply_displacement, coherence_tolerance,
g_match_tolerance, regions, composition, eels_offset_nm, register_maps, substitutions,
quality_threshold, quality_bin_nm.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..results.model import Model
from ..workflow.seeds import rng as seeded_rng
from ..twin.builder import ModelResult, ModelTooLarge, build_model, growth_direction, plan_regions
from ..twin.displace import DisplacementField
from ..twin.extxyz import write_extxyz
from ..twin.inputs import ImageInputs, all_images, named_image
from ..twin.lammps import write_lammps_data
from ..twin.model_io import atoms_from_arrays
from ..twin.quality import screen
from ..twin.register import lattice_origin


def choose_image(images: list[ImageInputs], name: str | None) -> ImageInputs | None:
    """The configured image, else the highest-resolution image with crystalline regions and GPA
    (else with crystalline regions only); None when no image has an oriented crystal."""
    named = named_image(images, name, "atomic_model.image")
    if named is not None:
        return named

    def crystalline(im):
        present = set(np.unique(im.labels).tolist()) if im.labels is not None else set()
        return any(rp.crystalline and lab in present for lab, rp in im.regions.items())

    with_gpa = [im for im in images if crystalline(im) and im.gpa is not None and im.gpa.applicable]
    cands = with_gpa or [im for im in images if crystalline(im)]
    if not cands:
        return None
    return min(cands, key=lambda im: (im.pixel_size, im.name))


def _not_applicable(ctx, reason: str, image: str = "") -> None:
    ctx.log.info("atomic model not applicable: %s", reason)
    atoms = atoms_from_arrays(np.zeros((0, 3)), np.zeros(0, int), info={})
    m = Model.not_applicable(reason)
    m.attrs[""] = {"image": image}
    m.summary = {"model": {"applicable": False, "reason": reason, "n_atoms": 0}}
    with ctx.h5("h5") as f:
        m.write(f)
    with ctx.file("extxyz") as p:
        write_extxyz(p, atoms, {"applicable": False})
    with ctx.file("lammps") as p:
        write_lammps_data(p, atoms)
    Path(ctx.output["figures"]).mkdir(parents=True, exist_ok=True)


def run(ctx) -> None:
    cfg = ctx.section("atomic_model")
    sample = ctx.wildcards.get("sample", "sample")
    t_start = time.perf_counter()
    images = all_images(ctx)
    settings = ctx.sample_settings()
    img = choose_image(images, cfg.get("image"))
    if img is None:
        return _not_applicable(ctx, "no image has a region with an identified, oriented crystal phase")
    plans, pinfo = plan_regions(img, cfg)
    if not plans:
        return _not_applicable(ctx, f"image {img.name}: no crystalline region to fill", img.name)
    ctx.log.info("atomic model of image %s: reference region %s, %d region(s) (%s)", img.name,
                 pinfo["reference_label"], len(plans), ", ".join(f"{p.label}:{p.kind}" for p in plans))
    gpa = img.gpa if (img.gpa is not None and img.gpa.applicable) else None
    field = None
    if gpa is not None and cfg["apply_displacement"]:
        field = DisplacementField.from_maps(gpa.displacement[0], gpa.displacement[1], img.pixel_size_nm,
                                            gpa.mask)
    # lattice origins: registered on the image (epitaxial regions share the reference's)
    reg_info = {}
    if cfg["origin"] == "image":
        image = img.load_image()
        ref_origin = None
        for p in plans:
            if p.kind == "epitaxial" and ref_origin is not None:
                p.origin_nm = ref_origin.copy()
                continue
            o, inf = _register(image, img, p, cfg["atom_contrast"])
            p.origin_nm = np.array([o[0], o[1], 0.0])
            reg_info[str(p.label)] = inf
            if p.kind == "reference":
                ref_origin = p.origin_nm
        for p in plans:
            if p.kind == "epitaxial":
                p.origin_nm = ref_origin.copy()
    min_d = None if cfg.get("min_distance_A") is None else float(cfg["min_distance_A"]) / 10.0
    try:
        res = build_model(img.labels, img.pixel_size_nm, plans, float(cfg["thickness_nm"]), field,
                          bool(cfg["periodic_along_beam"]), min_d, int(cfg["max_atoms"]), ctx.progress)
    except ModelTooLarge as e:
        raise UserError(str(e), "config") from None
    ctx.log.info("filled %d atoms (%d removed as too close)", len(res), res.info["removed"])
    comp_info = _composition(ctx, cfg, settings, img, res, sample)
    t_q = time.perf_counter()
    ideal = {p.label: p.cell.nearest_neighbour_nm() for p in plans}
    q = screen(res.positions_nm, res.region, ideal, res.thickness_nm if res.pbc[2] else None,
               float(cfg["quality_threshold"]), float(cfg["quality_threshold"]), float(cfg["quality_bin_nm"]),
               [-0.5 * img.pixel_size_nm[0], -0.5 * img.pixel_size_nm[1],
                (img.shape[1] - 0.5) * img.pixel_size_nm[0], (img.shape[0] - 0.5) * img.pixel_size_nm[1]])
    res.info["timing"]["quality_s"] = time.perf_counter() - t_q
    growth = growth_direction(img.labels, pinfo["reference_label"],
                              [p.label for p in plans if p.kind == "epitaxial"], img.pixel_size_nm)
    info = {"image": img.name, "sample": sample, "thickness_nm": res.thickness_nm,
            "pixel_size_nm": np.asarray(img.pixel_size_nm, float), "applicable": True,
            "reference_label": int(pinfo["reference_label"])}
    if growth is not None:
        info["growth_direction"] = growth
    atoms = atoms_from_arrays(res.positions_nm, res.numbers, res.cell_nm, res.pbc, res.region,
                              res.displacement_nm, res.source_pixel, info)
    t_w = time.perf_counter()
    files = {"h5": str(ctx.output["h5"]), "extxyz": str(ctx.output["extxyz"]), "lammps": str(ctx.output["lammps"])}
    summary = _summary(res, plans, pinfo, q, comp_info, files, img, reg_info)
    model = Model.from_atoms(atoms)
    _model_extras(model, res, plans, pinfo, q, comp_info, reg_info)
    model.summary = {"model": summary}
    with ctx.h5("h5") as f:
        model.write(f)
    with ctx.file("extxyz") as p:
        write_extxyz(p, atoms, {k: v for k, v in info.items() if k != "applicable"})
    with ctx.file("lammps") as p:
        write_lammps_data(p, atoms, f"temtwin atomic model of {sample}/{img.name}")
    res.info["timing"]["write_s"] = time.perf_counter() - t_w
    from ..twin.model_figures import model_figures

    model_figures(ctx.output["figures"], res, q, img)
    ctx.log.info("atomic model: %d atoms in %.2f s (%s)", len(res), time.perf_counter() - t_start,
                 ", ".join(f"{k} {v:.2f} s" for k, v in res.info["timing"].items()))


def _register(image: np.ndarray, img: ImageInputs, plan, contrast: str) -> tuple[np.ndarray, dict]:
    mask = img.labels == plan.label
    modes = ["bright", "dark"] if contrast == "auto" else [contrast]
    best = None
    for m in modes:
        o, inf = lattice_origin(image, img.pixel_size_nm, mask, plan.cell, m)
        inf["contrast"] = m
        if best is None or inf["score"] > best[1]["score"]:
            best = (o, inf)
    return best


def _composition(ctx, cfg, settings, img, res: ModelResult, sample: str) -> dict:
    from ..twin.composition import read_element_maps, register_maps

    paths = ctx.paths("eels")
    if not cfg["composition"] or not paths or len(res) == 0:
        return {"applied": False, "reason": "disabled" if not cfg["composition"] else "no composition maps"}
    t0 = time.perf_counter()
    eels = settings.get("eels", {}) or {}
    maps = read_element_maps(paths, eels.get("pixel_size_nm"))
    if eels.get("image") and eels["image"] != img.name:
        ctx.log.warning("composition maps were acquired on image %s, the model is built on %s: "
                        "registering them on the model image", eels["image"], img.name)
    offset = cfg.get("eels_offset_nm") or (eels.get("offset_nm") if eels.get("image", img.name) == img.name else None)
    score = None
    if offset is None:
        if not cfg["register_maps"]:
            raise UserError("no position for the composition maps: set eels.offset_nm in sample.yaml or "
                            "atomic_model.register_maps: true", paths[0])
        offset, score = register_maps(maps, img.load_image(), img.pixel_size_nm)
        ctx.log.info("composition maps registered at offset %s nm (correlation %.2f)", np.round(offset, 3), score)
        source = "template matching"
    else:
        source = "given"
    gen = seeded_rng(ctx.seed, "atomic_model", sample, img.name, "composition")
    Z, info = _assign(res, maps, offset, gen, cfg.get("substitutions") or {})
    res.numbers = Z
    res.info["timing"]["composition_s"] = time.perf_counter() - t0
    return {"applied": True, "elements": sorted(maps), "offset_nm": np.asarray(offset, float).tolist(),
            "offset_source": source, "registration_score": score, "sublattices": info}


def _assign(res: ModelResult, maps, offset, gen, subs):
    """Species drawn on every sublattice; sublattices are the distinct host species of the sites."""
    from ..twin.composition import assign_species

    hosts = sorted(set(int(z) for z in np.unique(res.host)))
    sub = np.searchsorted(hosts, res.host)
    return assign_species(res.host, sub, hosts, res.positions_nm[:, :2], res.region, maps,
                          np.asarray(offset, float), gen, subs)


def _species_counts(numbers: np.ndarray) -> dict[str, int]:
    from ase.data import chemical_symbols

    z, c = np.unique(numbers, return_counts=True)
    return {chemical_symbols[int(a)]: int(b) for a, b in zip(z, c)}


def _summary(res: ModelResult, plans, pinfo, q, comp, files, img, reg_info) -> dict:
    regions = {}
    for p in plans:
        s = res.region == p.label
        regions[str(p.label)] = {"kind": p.kind, "phase": p.cell.phase, "n_atoms": int(s.sum()),
                                 "species": _species_counts(res.numbers[s])}
    return {
        "applicable": True, "image": img.name, "n_atoms": int(len(res)), "species": _species_counts(res.numbers),
        "thickness_nm": res.thickness_nm, "periodic_along_beam": bool(res.pbc[2]), "files": files,
        "reference_label": pinfo["reference_label"], "empty_regions": pinfo["empty_regions"],
        "regions": regions, "removed_close_atoms": res.info["removed"],
        "min_distance_nm": res.info["min_distance_nm"],
        "virtual_cell": {k: v for k, v in pinfo["virtual_cell"].items()
                         if k in ("phase", "source", "g_hkl", "g_mismatch")},
        "composition": {k: v for k, v in comp.items() if k != "sublattices"},
        "registration": reg_info,
        "quality": {"flagged_fraction": q["flagged_fraction"], "n_flagged": q["n_flagged"],
                    "nn_min_nm": q["nn_min_nm"], "thresholds": q["thresholds"],
                    "regions": {k: {kk: v[kk] for kk in ("nn_mean_nm", "nn_std_nm", "ideal_nn_nm", "rms_deviation",
                                                         "flagged_fraction")} for k, v in q["regions"].items()}},
    }


def _model_extras(m: Model, res: ModelResult, plans, pinfo, q, comp, reg_info) -> None:
    """Add the region table, the region cells, the quality screen and the composition record to ``m``."""
    import json

    cols = {
        "label": (np.array([p.label for p in plans], np.int32), "label"),
        "kind": (np.array([p.kind for p in plans], object), "1"),
        "phase": (np.array([p.cell.phase for p in plans], object), "1"),
        "n_atoms": (np.array([int((res.region == p.label).sum()) for p in plans], np.int64), "1"),
        "origin_nm": (np.array([p.origin_nm for p in plans], float).reshape(-1, 3), "nm"),
        "ideal_nn_nm": (np.array([p.cell.nearest_neighbour_nm() for p in plans], float), "nm"),
    }
    m.put_table("regions", cols)
    for p in plans:
        m.put(f"cells/{p.label}", p.cell.lattice_nm, "nm", phase=p.cell.phase, kind=p.kind,
              description="columns = lattice vectors a, b, c in the image frame")
    m.put("quality/nearest_neighbour", np.asarray(q["nn_nm"], np.float32), "nm")
    m.put("quality/flagged_fraction_map", q["map_flagged"], "1", extent_nm=q["map_extent_nm"], bin_nm=q["bin_nm"])
    m.put("quality/max_deviation_map", q["map_max_dev"], "1", extent_nm=q["map_extent_nm"], bin_nm=q["bin_nm"])
    m.attrs["quality"] = {"flagged_fraction": q["flagged_fraction"],
                          "regions": json.dumps(q["regions"], sort_keys=True)}
    m.attrs["composition"] = {"info": json.dumps(_jsonable(comp), sort_keys=True)}
    m.put("host_numbers", res.host.astype(np.int16), "1")
    m.attrs[""].update(virtual_cell=json.dumps(_jsonable(pinfo["virtual_cell"]), sort_keys=True),
                       registration=json.dumps(_jsonable(reg_info), sort_keys=True))


def _jsonable(o):
    from ..io.h5 import to_jsonable

    return to_jsonable(o)
