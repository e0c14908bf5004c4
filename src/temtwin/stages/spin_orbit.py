"""Rule ``spin_orbit``: linear-in-k hole spin–orbit along the quantum well from the fem_relax strain.

Input ``fem/relax.h5``: strain maps on the geometry image's pixel grid (image axes) and the region map.
The well is every pixel of the Ge-richest Si/Ge regions (``spin_orbit.well_phase: auto``) or of the
regions of the named phase; growth is image −y
(crystal [001]), image x is the crystal direction ``inplane_direction``.  At ``n_positions`` columns
along the well the growth profile (well ± ``barrier_nm``) of the elastic strain (relative to each
layer's own lattice) and the Ge fraction of each layer are resampled on a ``dz_nm`` grid and the
4×4 Luttinger–Kohn + Bir–Pikus subbands are solved (:mod:`.kp`).  Strain sources: ``device_fit``
(the device strain implied by the GPA fit; elastic strain as written by fem_relax), ``lamella_fit`` and
``device`` (the a-priori device strain from the table lattices), ``gpa`` (total strain minus the fitted
eigenstrain of the region; beam strain ε_zz taken as 0); ``auto`` = ``device_fit`` whenever fem_relax fitted
the GPA maps (when that fit is inconsistent, its σ are inflated by √χ²_red and the summary says so), else
``device`` with a note.  ``device`` has no σ.

The in-plane wave vector is along the **beam** (the well's in-plane direction perpendicular to the
image): the measured in-plane shear ε_xy(image) is ε_x'z (x' = image x, z = growth), and the linear
heavy-hole term it creates is of the form (ε'_x'z k_b − ε'_bz k_x') (checked numerically: zero for k
along the shear direction), so it splits the doublet for k along the beam; the term for k along image x
needs the beam-plane shear ε_bz, which a cross-section does not measure.

Uncertainty (device_fit, lamella_fit): the strain σ of fem_relax comes from the fitted eigenstrains and
is correlated over the map; ``n_samples`` draws ε + ξσ (one ξ ~ N(0, 1) per draw) give the standard
deviation of α and 1/l_so.  ``gpa``: no σ (reported as null).

Output ``spin_orbit.h5``: table ``/profile`` (x_nm, column, alpha_eV_nm, alpha_sigma, inv_lso_per_um,
inv_lso_sigma, mass_m0, E0_eV, dexz_dz_per_nm: mean shear gradient (crystal ε_xz) over the well,
alpha_signed_eV_nm: α with its sign, :mod:`.kp` convention: E(⇑) − E(⇓) = 2 α_s k with k along the
beam direction ``R[2]`` = image x × growth (crystal axes, stored in the summary), ⇑ = ⟨J_z⟩ > 0 along
the growth direction [001] = image −y (substrate → surface); flips with the shear gradient),
``/map/inv_lso_per_um`` (rows, cols) on the well pixels (NaN elsewhere); summary ``spin_orbit``.
Not applicable (root ``applicable`` false + ``reason``) when fem_relax was not, or no well / non-SiGe
layers in the profile.
"""

from __future__ import annotations

import re

import numpy as np

from ..results.fem_relax import FemRelax
from ..results.spin_orbit import SpinOrbit
from ..workflow.seeds import rng as seeded_rng
from ..spin_orbit.kp import Profile, alloy_parameters, crystal_strain, linear_soi, section_rotation


def ge_fraction(phase: str) -> float | None:
    """Ge fraction of a Si/Ge phase name (Si, Ge, Si0.3Ge0.7), None otherwise."""
    if phase == "Ge":
        return 1.0
    if phase == "Si":
        return 0.0
    m = re.fullmatch(r"Si(\d*\.?\d+)Ge(\d*\.?\d+)", phase)
    return float(m.group(2)) if m else None


def _runs(mask: np.ndarray) -> tuple[int, int] | None:
    """(start, stop) of the longest True run of a 1D mask."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    br = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[br + 1]]
    stops = np.r_[idx[br], idx[-1]] + 1
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k])


def column_profile(col, region, xge_of, eps, well_mask, py, barrier_nm, dz):
    """Growth profile of one image column: (z, x_ge, strain (n, 3, 3) model axes) or None."""
    run = _runs(well_mask[:, col])
    if run is None:
        return None
    nb = int(round(barrier_nm / py))
    r0, r1 = max(run[0] - nb, 0), min(run[1] + nb, region.shape[0])
    rows = np.arange(r0, r1)
    ok = region[rows, col] > 0
    ok &= np.all([np.isfinite(eps[k][rows, col]) for k in eps], axis=0)
    # keep the contiguous valid stretch containing the well
    valid = _runs(ok)
    if valid is None:
        return None
    rows = rows[valid[0]:valid[1]]
    if not np.any(well_mask[rows, col]):
        return None
    xg = np.array([xge_of.get(int(r), np.nan) for r in region[rows, col]])
    if not np.all(np.isfinite(xg)):
        return None
    zc = -(rows * py)[::-1]                             # growth up, increasing
    zz = np.arange(zc[0], zc[-1] + 1e-9, dz)
    if len(zz) < 20:
        return None
    near = np.clip(np.rint((zz - zc[0]) / py).astype(int), 0, len(zc) - 1)
    x_ge = xg[::-1][near]
    e = np.zeros((len(zz), 3, 3))
    comp = {"exx": (0, 0), "eyy": (1, 1), "ezz": (2, 2), "exy": (0, 1)}
    for k, (i, j) in comp.items():
        if k not in eps:
            continue
        v = np.interp(zz, zc, eps[k][rows, col][::-1])
        if k == "exy":
            v = -v                                      # image → model axes
        e[:, i, j] = e[:, j, i] = v
    return zz - zz.mean(), x_ge, e


def read_relax_strain(ctx, src: str):
    """The strain ``spin_orbit`` uses from fem/relax.h5 (:class:`temtwin.results.fem_relax.FemRelax`), on the
    geometry image's pixels (image axes): (source, note, pixel size nm, region map, region table, strain
    components, σ components or None), or the reason it does not apply (str). ``src`` = config
    ``strain_source`` (``auto`` picks ``device_fit`` whenever fem_relax fitted the GPA maps)."""
    note = ""
    f = FemRelax.read(ctx.input["relax"], only=("image_grid", "regions"))
    if not f.applicable or "image_grid" not in f.attrs:
        return ("fem_relax has no strain on an image grid ("
                + str(f.reason if not f.applicable else "no GPA image") + ")")
    fit = (f.summary.get("fem_relax") or {}).get("fit")
    if src == "auto":
        if fit and fit.get("consistent"):
            src = "device_fit"
        elif fit:   # an inconsistent fit still carries a σ (inflated by √χ²_red); the a-priori strain has none
            src = "device_fit"
            note = ("the fit to GPA is inconsistent (" + str(fit.get("warning")) + "); its σ are inflated by "
                    f"{float(fit.get('sigma_inflation') or 1.0):.3g} (√χ²_red) and propagated")
            ctx.log.warning("spin_orbit: %s", note)
        else:
            src = "device"
            note = "device strain from the table lattices (a priori, no σ): no fit to GPA"
            ctx.log.warning("spin_orbit: %s", note)
    px = tuple(float(v) for v in f.group_attrs("image_grid")["pixel_size_nm"])
    region = f.data["image_grid/region"]
    regs = f.table("regions")
    comps = ("exx", "eyy", "ezz", "exy") if src == "device_fit" else ("exx", "eyy", "exy")
    grid = "device_fit_elastic" if src == "device_fit" else src
    eps = ({k: f.data[f"image_grid/{grid}/{k}"].astype(float) for k in comps}
           if f"image_grid/{grid}/exx" in f.data else None)
    sig = ({k: f.data[f"image_grid/device_fit_sigma/{k}"].astype(float) for k in ("exx", "eyy", "exy")}
           if src in ("device_fit", "lamella_fit") and "image_grid/device_fit_sigma/exx" in f.data else None)
    return src, note, px, region, regs, eps, sig


def run(ctx) -> None:
    cfg = ctx.section("spin_orbit")
    st = read_relax_strain(ctx, cfg["strain_source"])
    if isinstance(st, str):
        return _not_applicable(ctx, st)
    src, note, px, region, regs, eps, sig = st
    if eps is None:
        return _not_applicable(ctx, f"relax.h5 has no {src} strain (no GPA for the geometry image)")
    phases = {int(lab): (ph.decode() if isinstance(ph, bytes) else str(ph))
              for lab, ph in zip(regs["label"], regs["phase"])}
    xge_of = {lab: ge_fraction(ph) for lab, ph in phases.items()}
    xge_of = {k: v for k, v in xge_of.items() if v is not None}
    if src != "device_fit":                              # elastic = total − isotropic eigenstrain
        dfit = dict(zip(regs["label"].astype(int), regs["delta_table" if src == "device" else "delta_fit"]))
        d = np.vectorize(lambda r: dfit.get(int(r), 0.0))(region)
        for k in ("exx", "eyy"):
            eps[k] = eps[k] - d
        eps["ezz"] = np.where(region > 0, -d, np.nan)
    if cfg["well_phase"] == "auto":                      # the Ge-richest Si/Ge layer confines the holes
        if len(set(xge_of.values())) < 2:
            return _not_applicable(ctx, "no Si/Ge heterostructure: fewer than two Si(1-x)Ge(x) compositions")
        xmax = max(xge_of.values())
        well_labels = [lab for lab, x in xge_of.items() if x == xmax]
    else:
        well_labels = [lab for lab, ph in phases.items() if ph == cfg["well_phase"]]
    well = np.isin(region, well_labels)
    if not well.any():
        return _not_applicable(ctx, f"no quantum-well region (spin_orbit.well_phase = {cfg['well_phase']})")
    cols = np.flatnonzero(well.any(axis=0))
    pick = cols[np.unique(np.linspace(0, len(cols) - 1, min(int(cfg["n_positions"]), len(cols))).round().astype(int))]
    R = section_rotation(np.asarray(cfg["inplane_direction"], float))
    kdir = R[2]                                          # k along the beam (see module docstring)
    rng = seeded_rng(ctx.seed, "spin_orbit", ctx.wildcards.get("sample", ""))
    xi = rng.standard_normal(int(cfg["n_samples"])) if sig is not None else np.zeros(0)
    rows_out = []
    for n, col in enumerate(pick):
        ctx.progress(n, len(pick), "positions")
        prof = column_profile(col, region, xge_of, eps, well, px[1], float(cfg["barrier_nm"]), float(cfg["dz_nm"]))
        if prof is None:
            continue
        z, xg, e = prof
        par = alloy_parameters(xg)
        ec = crystal_strain(e, R)
        r = linear_soi(Profile(z, par, ec), kdir, float(cfg["k_nm"]))
        in_w = xg >= (max(xg) - 1e-9)
        grad = float(np.polyfit(z[in_w], ec[in_w, 0, 2], 1)[0]) if in_w.sum() > 2 else np.nan
        a_s = l_s = np.nan
        if len(xi):
            ds = {k: sig[k] for k in sig}
            draws = []
            for x in xi:
                eps_d = {k: eps[k] + (x * ds[k] if k in ds else 0.0) for k in eps}
                pd = column_profile(col, region, xge_of, eps_d, well, px[1], float(cfg["barrier_nm"]),
                                    float(cfg["dz_nm"]))
                rd = linear_soi(Profile(pd[0], alloy_parameters(pd[1]), crystal_strain(pd[2], R)), kdir,
                                float(cfg["k_nm"]))
                draws.append((rd.alpha_eV_nm, rd.inv_lso_per_um))
            dr = np.array(draws)
            a_s, l_s = float(dr[:, 0].std(ddof=1)) if len(dr) > 1 else np.nan, \
                float(dr[:, 1].std(ddof=1)) if len(dr) > 1 else np.nan
        rows_out.append((col * px[0], col, r.alpha_eV_nm, a_s, r.inv_lso_per_um, l_s, r.mass, r.E0_eV, grad,
                         r.alpha_signed_eV_nm))
    if not rows_out:
        return _not_applicable(ctx, "no column of the well has a SiGe growth profile inside the mesh")
    arr = np.array(rows_out, float)
    smap = np.full(region.shape, np.nan)
    ok = np.isfinite(arr[:, 4])
    for c in cols:                                       # linear interpolation between solved positions
        smap[well[:, c], c] = np.interp(c, arr[ok, 1], arr[ok, 4]) if ok.any() else np.nan
    out = spin_orbit_result(cfg, arr, smap, src, note, well_labels, phases)
    with ctx.h5("h5") as f:
        out.write(f)
    from ..spin_orbit.figures import spin_orbit_figure

    spin_orbit_figure(ctx.output["figures"], arr, smap, eps, well, px)
    ctx.log.info("spin_orbit: %d positions, mean 1/l_so %.3g um^-1", len(arr),
                 out.summary["spin_orbit"]["inv_lso_per_um"]["mean"])


def spin_orbit_result(cfg: dict, arr: np.ndarray, smap: np.ndarray, src: str, note: str, well_labels,
                      phases: dict) -> SpinOrbit:
    """The spin_orbit.h5 content (:class:`temtwin.results.spin_orbit.SpinOrbit`): the profile table ``arr``
    (rows = solved columns; x nm, column, alpha, σ, 1/l_so, σ, mass, E0, dexz/dz, signed alpha), the 1/l_so
    map and the summary fragment."""
    names = ["x_nm", "column", "alpha_eV_nm", "alpha_sigma", "inv_lso_per_um", "inv_lso_sigma", "mass_m0", "E0_eV",
             "dexz_dz_per_nm", "alpha_signed_eV_nm"]
    units = ["nm", "1", "eV nm", "eV nm", "um^-1", "um^-1", "1", "eV", "nm^-1", "eV nm"]
    kdir = section_rotation(np.asarray(cfg["inplane_direction"], float))[2]      # k along the beam
    summary = {"applicable": True, "strain_source": src, "note": note or None, "n_positions": int(len(arr)),
               "well_labels": [int(x) for x in well_labels],
               "inv_lso_per_um": {"mean": float(np.nanmean(arr[:, 4])), "max": float(np.nanmax(arr[:, 4])),
                                  "sigma_mean": None if not np.isfinite(arr[:, 5]).any()
                                  else float(np.nanmean(arr[:, 5]))},
               "alpha_eV_nm": {"mean": float(np.nanmean(arr[:, 2])), "max": float(np.nanmax(arr[:, 2]))},
               "alpha_signed_eV_nm": {"mean": float(np.nanmean(arr[:, 9])), "min": float(np.nanmin(arr[:, 9])),
                                      "max": float(np.nanmax(arr[:, 9]))},
               "k_direction_crystal": [float(v) for v in kdir],
               "mass_m0": float(np.nanmean(arr[:, 6])),
               "conventions": "alpha = |linear-in-k splitting|/2k of the ground heavy-hole doublet, k along the beam "
                              "(k_direction_crystal); alpha_signed: E(up) - E(down) = 2 alpha_signed k, up = <J_z> > 0 "
                              "along growth [001] (image -y, substrate to surface), electron energies; "
                              "1/l_so = m alpha / hbar^2",
               "regions": {str(lab): {"phase": phases[lab], "inv_lso_per_um_mean": float(np.nanmean(arr[:, 4]))}
                           for lab in well_labels}}
    out = SpinOrbit()
    out.attrs[""] = {"applicable": True, "reason": "", "strain_source": src,
                     "inplane_direction": list(cfg["inplane_direction"])}
    out.put_table("profile", {n: (arr[:, i], u) for i, (n, u) in enumerate(zip(names, units))})
    out.put("map/inv_lso_per_um", smap.astype(np.float32), "um^-1")
    out.summary = {"spin_orbit": summary}
    return out


def _not_applicable(ctx, reason: str) -> None:
    ctx.not_applicable(reason, "spin_orbit")
