"""Rule ``fem_relax``: device (plane strain) and lamella (3D slab) elasticity on the fem_geometry mesh,
comparison with GPA, eigenstrain fit and the device strain it implies.

Inputs: ``fem/fem.h5`` (mesh in model axes: x right, y up, nm), ``fem/regions.json`` (phase and
orientation matrix per region, the geometry's image), and the per-image ``image.h5``,
``segmentation.h5``, ``gpa.h5`` (only the geometry image's are read).

Output ``fem/relax.h5``:

* ``/mesh/{nodes, triangles, triangle_region}``; table ``/regions`` (label, phase, reference,
  delta_table, delta_fit, delta_sigma, fitted, rms differences lamella − GPA before/after the fit);
* ``/device``, ``/lamella``, ``/device_fit``, ``/lamella_fit``: ``strain/{exx, eyy, ezz, eyz, exz, exy}``
  per triangle (model axes, tensor components, total strain relative to the reference lattice);
  ``/device_fit/strain_sigma/*``; ``/device/displacement``, ``/lamella/displacement_midplane`` (n, 3) nm;
* ``/image_grid/<problem>/{exx, eyy, exy}`` on the geometry image's pixel grid, **image axes** (x right,
  y down; exy and the rotation change sign from the model axes), NaN outside the mesh;
  ``/image_grid/gpa/*``, ``/image_grid/region`` (label per pixel, 0 outside),
  ``/image_grid/device_fit_elastic/{exx, eyy, ezz, exy}`` (strain relative to each region's own lattice,
  for k·p) and ``/image_grid/device_fit_sigma/*``.
  Root attrs ``thickness_nm``, ``thickness_sigma_nm``, ``thickness_source`` (simulate_image or config,
  :mod:`.thickness`), ``reference_label``, ``applicable``, ``reason``.

``fem/device.vtu``: the 2D mesh with the device strain (table and fit), its σ, the lamella strain and
the region per cell (ParaView).  Summary fragment ``fem_relax``.

Fit to GPA (:func:`fit_function`): the data are the GPA region means (image axes) over the region's valid
pixels, σ from the GPA σ maps (n_eff = area / resolution²), at least GPA's own standard error of the region
mean; the model is the thickness-averaged lamella strain over the same pixels *minus its mean over GPA's
reference area* (GPA measures relative to the reference lattice as it is in the image, not stress-free).
The summary ``fit`` holds χ²_red, the σ inflation √χ²_red applied when > 1, the pull of every datum and,
above ``max_chi2_red``, a warning naming the worst data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..results.fem_relax import FemRelax
from ..fem_relax.materials import MaterialTable
from ..fem_relax.model import RelaxModel, build_regions, fit_deltas

COMPS = ("exx", "eyy", "ezz", "eyz", "exz", "exy")


def voigt_to_components(v: np.ndarray) -> dict[str, np.ndarray]:
    """Voigt (…, 6) engineering → tensor components."""
    return {"exx": v[..., 0], "eyy": v[..., 1], "ezz": v[..., 2], "eyz": 0.5 * v[..., 3],
            "exz": 0.5 * v[..., 4], "exy": 0.5 * v[..., 5]}


def to_image_axes(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model axes (x, y up, z) → image axes (x, y down, −z): xy and xz change sign."""
    out = dict(c)
    for k in ("exy", "exz"):
        if k in out:
            out[k] = -out[k]
    return out


def pixel_triangles(nodes, tri, shape, pixel_size_nm) -> np.ndarray:
    """Triangle index of every image pixel centre (rows, cols), −1 outside the mesh."""
    from matplotlib.tri import Triangulation

    T = Triangulation(nodes[:, 0], nodes[:, 1], tri)
    rows, cols = shape
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    x = jj * pixel_size_nm[0]
    y = -(ii * pixel_size_nm[1])
    return T.get_trifinder()(x.ravel(), y.ravel()).reshape(shape)


def read_inputs(ctx):
    """(nodes, triangles, triangle_region, regions.json document) of the FEM geometry."""
    from ..results.fem import FemGeometry, read_regions_json

    geo = FemGeometry.read(ctx.input["fem"], only=("mesh",))
    if not geo.applicable:
        raise UserError("no mesh in fem.h5; rerun fem_geometry", ctx.input["fem"])
    nodes, tri, tri_region = geo.mesh
    return nodes, tri, tri_region, read_regions_json(ctx.input["regions"])


def geometry_image(ctx, name: str):
    """(image.h5, segmentation.h5, gpa.h5) paths of the geometry image."""
    for i, s, g in zip(ctx.paths("images"), ctx.paths("segmentations"), ctx.paths("gpas")):
        if Path(i).parent.name == name:
            return i, s, g
    return None


def read_gpa_maps(path) -> dict:
    """GPA strain (image axes), σ maps when present, mask, reference label, resolution."""
    out: dict = {"applicable": False}
    if not path or not Path(path).is_file():
        return out
    from ..results.gpa import Gpa

    g = Gpa.read(path, only=("strain", "strain_sigma", "mask", "reference", "regions"))
    if not g.applicable or not g.has("strain"):
        return out
    out["applicable"] = True
    out["strain"] = {k: np.asarray(v, float) for k, v in g.strain.items()}
    out["sigma"] = {k: np.asarray(v, float) for k, v in g.strain_sigma.items()}
    out["mask"] = g.mask if g.mask is not None else np.ones(out["strain"]["exx"].shape, bool)
    out["reference_label"] = g.reference_label
    out["resolution_nm"] = g.resolution_nm
    ref = g.get("reference")
    out["reference"] = None if ref is None else np.asarray(ref, bool)
    tab = g.table("regions")
    out["se"] = {(int(lab), k): float(tab[f"{k}_se"][i]) for i, lab in enumerate(tab.get("label", []))
                 for k in ("exx", "eyy", "exy") if f"{k}_se" in tab}
    return out


def eels_compositions(ctx, doc: dict, seg_labels: np.ndarray | None, px, img_name: str,
                      skip: set[str]) -> tuple[dict[str, str], dict[str, dict]]:
    """Si(1−x)Ge(x) material per diamond-phase region (phase Si or Ge) from the sample's EELS/EDS maps of Si
    and Ge, when they were acquired on the geometry image (sample.yaml ``eels.image`` and ``offset_nm``).

    x = mean over the region's pixels of Ge/(Ge+Si), rounded to 0.01; returns ({label: material},
    {label: {ge_fraction, n_pixels}})."""
    paths = ctx.paths("eels") if "eels" in ctx.input else []
    if not paths or seg_labels is None:
        return {}, {}
    eels = (ctx.sample_settings() or {}).get("eels", {}) or {}
    if eels.get("image") not in (None, img_name) or eels.get("offset_nm") is None:
        ctx.log.info("composition maps are not on the geometry image %s (or have no offset): not used", img_name)
        return {}, {}
    from ..twin.composition import read_element_maps, sample_maps

    maps = read_element_maps(paths, eels.get("pixel_size_nm"))
    if not {"Si", "Ge"} <= set(maps):
        return {}, {}
    out, info = {}, {}
    for key, rec in doc.get("regions", {}).items():
        if key in skip or rec.get("phase") not in ("Si", "Ge"):
            continue
        r, c = np.nonzero(seg_labels == int(key))
        step = max(1, len(r) // 20000)
        r, c = r[::step], c[::step]
        vals, inside = sample_maps(maps, eels["offset_nm"], np.column_stack([c * px[0], r * px[1]]))
        tot = vals["Ge"] + vals["Si"]
        ok = inside & (tot > 0)
        if ok.sum() < 20:
            continue
        x = float(np.clip(np.mean(vals["Ge"][ok] / tot[ok]), 0, 1))
        xr = round(x, 2)
        out[key] = "Ge" if xr >= 1.0 else "Si" if xr <= 0.0 else f"Si{1 - xr:.2f}Ge{xr:.2f}"
        info[key] = {"ge_fraction": x, "n_pixels": int(ok.sum() * step), "material": out[key]}
    return out, info


def run(ctx) -> None:
    cfg = ctx.section("fem_relax")
    t0 = time.perf_counter()
    nodes, tri, tri_region, doc = read_inputs(ctx)
    img_name = doc.get("image", "")
    paths = geometry_image(ctx, img_name)
    gpa = read_gpa_maps(paths[2]) if paths else {"applicable": False}
    px = tuple(doc.get("pixel_size_nm") or (1.0, 1.0))
    if len(tri) == 0:
        return _not_applicable(ctx, "the geometry has no mesh (no regions)")
    ref = choose_reference(cfg, doc, gpa)
    if ref is None:
        return _not_applicable(ctx, "no region has an identified phase")
    seg_labels = None
    if paths:
        from ..results.segmentation import Segmentation

        seg_labels = Segmentation.read_labels(paths[1])
    regions, notes, eels_info = region_materials(ctx, cfg, doc, seg_labels, px, img_name, ref)
    keep = np.isin(tri_region, list(regions))
    tri, tri_region = tri[keep], tri_region[keep]
    th = geometry_thickness(ctx, cfg, img_name)
    notes.append(f"lamella thickness {th.value_nm:.2f} ± {th.sigma_nm:.2f} nm from {th.source} ({th.note})")
    model = RelaxModel(nodes, tri, tri_region, regions, ref, th.value_nm)
    ctx.log.info("fem_relax: %d regions, %d triangles, reference %d, lamella %.1f nm in %d layers",
                 len(regions), len(tri), ref, th.value_nm, int(cfg["n_layers"]))
    model.solve(int(cfg["n_layers"]), cfg["lateral"], progress=lambda i, n, w: ctx.progress(i, n, w))
    t_solve = time.perf_counter() - t0

    ig = None if seg_labels is None else ImageGrid(nodes, tri, tri_region, seg_labels.shape, px)
    grid = {} if ig is None else {"region": ig.region}
    do_fit, fit_source = fit_function(cfg, model, doc, gpa, ig, seg_labels, grid, notes)
    fit = do_fit(model.lamella.strain) if do_fit is not None else None
    add_thickness_uncertainty(fit, do_fit, model, cfg, th, notes)

    d_table = model.deltas_table()
    d_fit = fit.delta if fit is not None else d_table
    cov = fit.cov if fit is not None else np.zeros((len(model.fitted_labels),) * 2)
    strains = {"device": model.strain("device", d_table), "lamella": model.strain("lamella", d_table),
               "device_fit": model.strain("device", d_fit), "lamella_fit": model.strain("lamella", d_fit)}
    dev_sigma = model.strain_sigma("device", cov)
    if ig is not None:
        for k, v in strains.items():
            grid[k] = ig.on_grid(v)
        grid["device_fit_sigma"] = {k: np.abs(v) for k, v in ig.on_grid(dev_sigma).items()}
        grid["device_fit_elastic"] = ig.on_grid(strains["device_fit"] - model.eigenstrain_voigt(d_fit),
                                                ("exx", "eyy", "ezz", "exy"))
    ref_sel = gpa_reference_pixels(gpa, ig) if ig is not None and gpa.get("applicable") else None
    summary_regions = region_records(model, strains, dev_sigma, grid, fit, d_table, d_fit, eels_info, ref_sel)

    _write(ctx, model, strains, dev_sigma, grid, summary_regions, fit, d_table, d_fit, model.fitted_labels, ref,
           th, notes, t_solve, px, fit_source, float(cfg["max_chi2_red"]))
    from ..fem_relax.figures import relax_figures

    relax_figures(ctx.output["figures"], grid, px, summary_regions, th.value_nm, model, strains)
    ctx.log.info("fem_relax done in %.1f s", time.perf_counter() - t0)


def choose_reference(cfg: dict, doc: dict, gpa: dict) -> int | None:
    """Reference region (zero eigenstrain): ``fem_relax.reference_label``, else GPA's reference, else the
    largest region with a phase (or a configured composition); None when no region has one."""
    areas = {int(k): float(r.get("area_nm2") or 0) for k, r in doc.get("regions", {}).items()}
    comp = cfg.get("composition") or {}
    candidates = {int(k) for k, r in doc.get("regions", {}).items()
                  if comp.get(k) or comp.get(int(k)) or r.get("phase")}
    if not candidates:
        return None
    ref = cfg.get("reference_label")
    if ref is None:
        ref = gpa.get("reference_label") if gpa.get("reference_label") in candidates else None
    if ref is None:
        ref = max(candidates, key=lambda k: (areas.get(k, 0), -k))
    ref = int(ref)
    if ref not in candidates:
        raise UserError(f"fem_relax.reference_label = {ref} is not a region with a phase "
                        f"(regions: {sorted(candidates)})", "config")
    return ref


def region_materials(ctx, cfg, doc, seg_labels, px, img_name, ref):
    """(RegionModels, notes, composition-map info): materials from the phases, the composition maps on the
    geometry image and ``fem_relax.composition`` (which wins)."""
    comp = {str(k): v for k, v in (cfg.get("composition") or {}).items()}
    table = MaterialTable(extra=cfg.get("materials") or {})
    eels_comp, eels_info = eels_compositions(ctx, doc, seg_labels, px, img_name, set(comp))
    regions, notes = build_regions(doc, table, ref, {**eels_comp, **comp}, where=str(ctx.input["regions"]))
    for key, inf in eels_info.items():
        notes.append(f"region {key}: {inf['material']} from the composition maps "
                     f"(Ge fraction {inf['ge_fraction']:.3f})")
    for n in notes:
        ctx.log.info(n)
    return regions, notes, eels_info


def geometry_thickness(ctx, cfg, img_name):
    """Lamella thickness (:mod:`.thickness`) from the geometry image's simulation.h5, else the config."""
    from ..fem_relax.thickness import lamella_thickness

    sims = [q for q in (ctx.paths("simulations") if "simulations" in ctx.input else [])
            if Path(q).parent.name == img_name]
    return lamella_thickness(cfg, sims[0] if sims else None)


class ImageGrid:
    """The mesh sampled at the geometry image's pixel centres: triangle and region label per pixel."""

    def __init__(self, nodes, tri, tri_region, shape, px):
        self.px = px
        self.tpix = pixel_triangles(nodes, tri, shape, px)
        self.inside = self.tpix >= 0
        self.region = np.where(self.inside, tri_region[np.maximum(self.tpix, 0)], 0)

    def on_grid(self, v: np.ndarray, comps=("exx", "eyy", "exy")) -> dict[str, np.ndarray]:
        """Per-triangle Voigt strain (model axes) → image-axes components per pixel, NaN outside."""
        c = to_image_axes(voigt_to_components(v))
        return {k: np.where(self.inside, c[k][np.maximum(self.tpix, 0)], np.nan) for k in comps}


def fit_function(cfg, model, doc, gpa, ig, seg_labels, grid, notes):
    """(function lamella unit strains → FitResult, description of the data), or (None, None) when there is
    nothing to fit.  Data: the GPA region means of the geometry image (adds ``grid['gpa']``), else the
    regions.json mean strains."""
    labels_fit, d_table = model.fitted_labels, model.deltas_table()
    do_fit, fit_source = None, None
    if ig is not None and gpa.get("applicable"):
        data, sig, sels = gpa_region_means(gpa, ig, seg_labels, sorted(model.regions), cfg)
        ref_sel = gpa_reference_pixels(gpa, ig)
        if ref_sel is not None:
            notes.append(f"model strain referenced as GPA's: minus its mean over GPA's reference area "
                         f"({int(ref_sel.sum())} px)")

        def fit_gpa(lam_strain):
            f = fit_deltas(model_region_means(lam_strain, len(labels_fit), ig, sels, ref_sel),
                           np.array(data), np.array(sig), d_table)
            f.labels = labels_fit
            f.data = [(lab, k, d, s_) for (lab, k, _), d, s_ in zip(sels, data, sig)]
            return f

        if data and labels_fit and cfg["fit"]:
            do_fit, fit_source = fit_gpa, "gpa of the geometry image"
        grid["gpa"] = {k: np.where(gpa["mask"], gpa["strain"][k], np.nan) for k in ("exx", "eyy", "exy")}
    if do_fit is None and labels_fit and cfg["fit"] and any((r or {}).get("mean_strain")
                                                             for r in doc.get("regions", {}).values()):
        def do_fit(lam_strain):
            return _fit_region_means(model, doc, labels_fit, d_table, float(cfg["sigma_floor"]), lam_strain)
        fit_source = "regions.json mean strain (all registered GPA maps; sigma = fem_relax.sigma_floor)"
        notes.append("fit to the regions.json mean strains: the geometry image has no GPA; the model means "
                     "are over whole regions, the measured ones over the GPA-covered parts")
    return do_fit, fit_source


def gpa_reference_pixels(gpa, ig):
    """Pixels of GPA's reference area inside the mesh (None when gpa.h5 has no ``/reference``)."""
    ref = gpa.get("reference")
    if ref is None or ref.shape != ig.inside.shape:
        return None
    sel = ref & ig.inside
    return sel if sel.sum() >= 4 else None


def model_region_means(lam_strain, n_par, ig, sels, ref_sel=None) -> np.ndarray:
    """(n_data, n_par): mean lamella strain per unit delta over each datum's pixels (image axes).

    GPA measures strain relative to the lattice of its reference area *as it is in the image*, so with
    ``ref_sel`` the model is referenced the same way: its mean over the reference area is subtracted
    (first order in the strain)."""
    unit = [ig.on_grid(lam_strain[m]) for m in range(n_par)]
    A = np.array([[float(u[k][sel].mean()) for u in unit] for _, k, sel in sels]).reshape(len(sels), n_par)
    if ref_sel is not None:
        A -= np.array([[float(u[k][ref_sel].mean()) for u in unit] for _, k, _ in sels]).reshape(len(sels), n_par)
    return A


def gpa_region_means(gpa, ig, seg_labels, labels, cfg):
    """(means, σ, [(label, component, pixel selection)]) of the GPA strain per region and component (image axes).

    σ of a mean: the GPA σ map's RMS / √n_eff when present, else the map's spread / √n_eff, with
    n_eff = pixels / (pixels per resolution cell); at least GPA's own standard error of the region mean
    (``/regions`` ``*_se``, not for its reference region, whose mean is zero by construction); floored at
    ``sigma_floor``."""
    px = ig.px
    data, sig, sels = [], [], []
    n_res = max(gpa["resolution_nm"], px[0]) ** 2 / (px[0] * px[1])   # pixels per independent sample
    for lab in labels:
        sel = gpa["mask"] & ig.inside & (ig.region == lab) & (seg_labels == lab)
        sel &= np.all([np.isfinite(gpa["strain"][k]) for k in ("exx", "eyy", "exy")], axis=0)
        n = int(sel.sum())
        if n < 4:
            continue
        n_eff = max(n / n_res, 1.0)
        for k in ("exx", "eyy", "exy"):
            v = gpa["strain"][k][sel]
            if k in gpa["sigma"]:
                s = float(np.sqrt(np.nanmean(gpa["sigma"][k][sel] ** 2) / n_eff))
            else:
                s = float(np.std(v) / np.sqrt(n_eff))
            # GPA's own standard error of the region mean (its noise model, exact for the correlations,
            # over the region's eroded interior) when larger: the n_eff estimate above ignores that GPA
            # strain is a derivative of a smoothed phase
            s = max(s, gpa.get("se", {}).get((int(lab), k), 0.0) if lab != gpa.get("reference_label") else 0.0)
            data.append(float(v.mean()))
            sig.append(max(s, float(cfg["sigma_floor"])))
            sels.append((int(lab), k, sel))
    return data, sig, sels
def add_thickness_uncertainty(fit, do_fit, model, cfg, th, notes) -> None:
    """Add the lamella-thickness term to the fit's covariance: refit with the lamella at t + σ_t and add
    the outer product of the shift of the deltas."""
    if fit is None or not fit.fitted.any() or th.sigma_nm <= 0:
        return
    from ..fem_relax.solver import solve_lamella

    st = th.sigma_nm
    lam2 = solve_lamella(model.nodes, model.tri, model.stiffness(), model.load_cases(), th.value_nm + st,
                         int(cfg["n_layers"]), cfg["lateral"]).strain
    f2 = do_fit(lam2)
    dd = np.where(fit.fitted, f2.delta - fit.delta, 0.0)
    fit.cov = fit.cov + np.outer(dd, dd)
    fit.sigma = np.where(fit.fitted, np.sqrt(np.diag(fit.cov)), np.nan)
    notes.append(f"delta_sigma includes the lamella thickness uncertainty ±{st:.1f} nm")


def region_records(model, strains, dev_sigma, grid, fit, d_table, d_fit, eels_info,
                   ref_sel=None) -> dict[str, dict]:
    """Per-region summary records: phase, deltas, mean strains of the four problems, σ, RMS of lamella − GPA
    (the lamella referenced as GPA is: minus its mean over GPA's reference area ``ref_sel`` when given)."""
    labels_fit = model.fitted_labels
    out = {}
    for lab in sorted(model.regions):
        rm = model.regions[lab]
        sel_t = model.tri_region == lab
        w = model.device.system.vol[sel_t] if model.device.system.dim == 2 else None
        rec = {"phase": rm.phase, "reference": lab == model.reference, "oriented": rm.oriented}
        if str(lab) in eels_info:
            rec["composition_maps"] = eels_info[str(lab)]
        if lab in labels_fit:
            i = labels_fit.index(lab)
            rec["delta_table"] = float(d_table[i])
            rec["delta_fit"] = float(d_fit[i])
            rec["delta_sigma"] = None if fit is None or not fit.fitted[i] else float(fit.sigma[i])
        for name in ("device", "lamella", "device_fit", "lamella_fit"):
            c = voigt_to_components(strains[name][sel_t])
            rec[name] = {k: float(np.average(c[k], weights=w)) for k in ("exx", "eyy", "ezz", "exy")}
        cs = voigt_to_components(dev_sigma[sel_t])
        rec["device_fit_sigma"] = {k: float(np.average(cs[k], weights=w)) for k in ("exx", "eyy", "exy")}
        if "gpa" in grid:
            sel = (grid["region"] == lab) & np.isfinite(grid["gpa"]["exx"])
            if sel.sum() >= 4:
                for name in ("lamella", "lamella_fit"):
                    off = {k: 0.0 if ref_sel is None else float(np.nanmean(grid[name][k][ref_sel]))
                           for k in ("exx", "eyy", "exy")}
                    rec[f"rms_{name}_minus_gpa"] = {k: float(np.sqrt(np.nanmean((grid[name][k][sel] - off[k]
                                                                               - grid["gpa"][k][sel]) ** 2)))
                                                    for k in ("exx", "eyy", "exy")}
        dev, lam = rec["device"]["eyy"], rec["lamella"]["eyy"]
        rec["lamella_relaxation_eyy"] = None if abs(dev) < 1e-4 else float(1 - lam / dev)
        out[str(lab)] = rec
    return out


def _fit_region_means(model, doc, labels_fit, d_table, sigma_floor, lam_strain):
    """Fit to the per-region mean strains of regions.json (model axes), when the geometry image has no GPA.

    Model means are area-weighted over whole regions; the uncertainty is ``sigma_floor`` per component,
    inflated by the reduced χ² of the fit."""
    tri_area = np.abs(np.cross(model.nodes[model.tri[:, 1]] - model.nodes[model.tri[:, 0]],
                               model.nodes[model.tri[:, 2]] - model.nodes[model.tri[:, 0]])) / 2
    A, data = [], []
    for lab in sorted(model.regions):
        ms = (doc.get("regions", {}).get(str(lab)) or {}).get("mean_strain")
        if not ms:
            continue
        sel = model.tri_region == lab
        for j, k, fac in ((0, "exx", 1.0), (1, "eyy", 1.0), (5, "exy", 0.5)):
            v = ms.get(k)
            if v is None or not np.isfinite(v):
                continue
            data.append(float(v))
            A.append([float(np.average(lam_strain[m][sel, j], weights=tri_area[sel])) * fac
                      for m in range(len(labels_fit))])
    if not data:
        return None
    fit = fit_deltas(np.array(A), np.array(data), np.full(len(data), sigma_floor), d_table)
    fit.labels = labels_fit
    return fit


def _not_applicable(ctx, reason: str) -> None:
    ctx.not_applicable(reason, "fem_relax")
    with ctx.file("vtu") as p:
        import meshio

        meshio.write(p, meshio.Mesh(np.zeros((0, 3)), [("triangle", np.zeros((0, 3), int))]), file_format="vtu")


def fit_summary(fit, source: str, max_chi2: float) -> dict:
    """Summary of the fit: χ², the σ inflation applied (√χ²_red when > 1, in delta_sigma and
    device_fit_sigma), the pull of every datum (measured − model)/σ, and a warning naming the worst data
    when χ²_red exceeds ``max_chi2``."""
    chi2 = fit.chi2_red
    ok = bool(np.isfinite(chi2) and chi2 <= max_chi2)
    pulls = []
    for (lab, k, d, s), m in zip(getattr(fit, "data", []), fit.predicted if fit.predicted is not None else []):
        pulls.append({"label": int(lab), "component": k, "measured": d, "model": float(m), "sigma": s,
                      "pull": float((d - m) / s)})
    worst = sorted(pulls, key=lambda q: -abs(q["pull"]))[:3]
    why = "; ".join(f"region {q['label']} {q['component']}: measured {q['measured']:+.4f}, model {q['model']:+.4f} "
                    f"(pull {q['pull']:+.0f})" for q in worst)
    return {
        "chi2_red": chi2, "n_data": fit.n_data, "source": source, "consistent": ok,
        "sigma_inflation": float(np.sqrt(max(1.0, chi2))) if np.isfinite(chi2) else None,
        "pulls": pulls,
        "warning": None if ok else
        f"reduced chi2 {chi2:.3g} > {max_chi2:g}: a coherent linear-elastic model does not explain the measured "
        "strain (relaxed/incoherent interface, wrong phase or composition, or a measurement that is not an "
        f"elastic equilibrium?); worst data: {why or 'n/a'}; delta_sigma and device_fit_sigma are inflated by "
        f"sqrt(chi2_red) = {np.sqrt(chi2):.3g}, and the implied device strain is not supported"}


def _write(ctx, model, strains, dev_sigma, grid, regs, fit, d_table, d_fit, labels_fit, ref, th, notes,
           t_solve, px, fit_source=None, max_chi2=25.0):
    import meshio

    thickness = th.value_nm
    out = FemRelax()
    out.attrs[""] = {
        "applicable": True, "reason": "", "thickness_nm": thickness, "thickness_sigma_nm": th.sigma_nm,
        "thickness_source": th.source, "reference_label": ref,
        "frame": ("per-triangle strain: model axes (x right, y up = growth, z = beam towards the viewer); "
                  "image_grid: image axes (x right, y down)"),
        "strain": "total strain relative to the reference region's stress-free lattice (what GPA measures)",
        "notes": json.dumps(notes)}
    out.put("mesh/nodes", model.nodes, "nm", frame="model axes: x right, y up")
    out.put("mesh/triangles", model.tri, "1")
    out.put("mesh/triangle_region", model.tri_region.astype(np.int32), "label")
    for name, v in strains.items():
        for k, a in voigt_to_components(v).items():
            out.put(f"{name}/strain/{k}", a, "1")
    for k, a in voigt_to_components(dev_sigma).items():
        out.put(f"device_fit/strain_sigma/{k}", np.abs(a), "1")
    out.put("device/displacement", np.einsum("m,mnj->nj", d_table, model.device.displacement[:len(d_table)])
            if len(d_table) else np.zeros((len(model.nodes), 3)), "nm")
    out.put("lamella/displacement_midplane",
            np.einsum("m,mnj->nj", d_table, model.lamella.displacement[:len(d_table)])
            if len(d_table) else np.zeros((len(model.nodes), 3)), "nm")
    if grid:
        out.attrs["image_grid"] = {"pixel_size_nm": list(px)}
        out.put("image_grid/region", grid["region"].astype(np.int32), "label")
        for name, comps in grid.items():
            if name == "region":
                continue
            for k, a in comps.items():
                out.put(f"image_grid/{name}/{k}", a.astype(np.float32), "1")
    labs = sorted(regs)
    idx = {lab: labels_fit.index(lab) if lab in labels_fit else None for lab in map(int, labs)}

    def col(fn):
        return np.array([fn(int(lab), idx[int(lab)]) for lab in labs], float)

    out.put_table("regions", {
        "label": (np.array([int(x) for x in labs], np.int32), "label"),
        "phase": (np.array([regs[lab]["phase"] for lab in labs], object), "1"),
        "reference": (np.array([regs[lab]["reference"] for lab in labs], bool), "1"),
        "delta_table": (col(lambda lab, i: 0.0 if i is None else d_table[i]), "1"),
        "delta_fit": (col(lambda lab, i: 0.0 if i is None else d_fit[i]), "1"),
        "delta_sigma": (col(lambda lab, i: np.nan if i is None or fit is None or not fit.fitted[i]
                            else fit.sigma[i]), "1"),
        "device_fit_eyy": (np.array([regs[lab]["device_fit"]["eyy"] for lab in labs]), "1"),
        "lamella_fit_eyy": (np.array([regs[lab]["lamella_fit"]["eyy"] for lab in labs]), "1"),
    }, description="delta: isotropic (cubic) eigenstrain amplitude relative to the reference lattice")
    out.summary = {"fem_relax": {
        "applicable": True, "thickness_nm": thickness, "thickness": th.summary(), "reference_label": ref,
        "n_triangles": int(len(model.tri)), "n_tetrahedra": int(len(model.lamella.system.cells)),
        "solve_s": round(t_solve, 2),
        "fit": None if fit is None else fit_summary(fit, fit_source, max_chi2),
        "files": {"h5": str(ctx.output["h5"]), "vtu": str(ctx.output["vtu"])},
        "regions": regs, "notes": notes}}
    with ctx.h5("h5") as f:
        out.write(f)
    pts = np.column_stack([model.nodes, np.zeros(len(model.nodes))])
    cell_data = {"region": [model.tri_region.astype(np.int32)]}
    for name in ("device", "device_fit", "lamella_fit"):
        for k, a in voigt_to_components(strains[name]).items():
            cell_data[f"{name}_{k}"] = [a]
    for k, a in voigt_to_components(dev_sigma).items():
        cell_data[f"device_fit_sigma_{k}"] = [np.abs(a)]
    with ctx.file("vtu") as p:
        meshio.write(p, meshio.Mesh(pts, [("triangle", model.tri)], cell_data=cell_data), file_format="vtu")
