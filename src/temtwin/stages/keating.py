"""Rule ``keating``: Keating force screen of the atomic model, relaxation, force maps and profile.

Inputs: ``model`` (model.h5).  Outputs: ``h5`` (keating.h5), ``relaxed`` (relaxed.extxyz), ``figures``.

keating.h5 (lengths nm unless stated, forces eV/Å; read and written through
:class:`temtwin.results.keating.Keating`):

* ``/forces`` (N, 3), ``/force_magnitude`` (N,), ``/energy_per_atom`` (N,) eV of the as-built model;
  ``/coordination`` (N,) bonds per atom;
* ``/relaxed_forces`` (N, 3), ``/relax_displacement`` (N, 3) nm (relaxed - as built), ``/fixed`` (N,);
* table ``/regions``: ``label``, ``n_atoms``, ``mean_force``, ``rms_force``, ``max_force``,
  ``energy_per_atom`` (eV), ``mean_relax_displacement`` (nm);
* ``/profile/position_nm`` (bin centres along growth, from the lowest atom), ``/profile/mean_force``,
  ``/profile/max_force``, ``/profile/n_atoms``;
* ``/force_map`` (rows, cols) mean |F| per pixel of the x-y projection, attrs ``origin_nm`` [x, y] of
  pixel (0, 0)'s centre and ``pixel_size_nm``; ``/relax_map`` the same for |relax displacement| (nm);
* table ``/bonds``: ``pair``, ``n_bonds``, ``as_built_A``, ``relaxed_A``, ``ideal_A`` (mean lengths);
* root attrs ``applicable``, ``reason``, ``energy_eV``, ``relaxed_energy_eV``, ``relax_converged``,
  ``relax_steps``, ``relax_fmax_eV_per_A``, ``max_bond_A``, ``growth_direction``, ``parameters``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..plotting import new_figure, save_figure
from ..results.keating import Keating
from ..results.model import Model
from ..physics.growth import bin_index, growth_coordinate_nm, growth_direction
from ..physics.keating import KeatingModel, default_parameters
from ..physics.relax import relax


def _not_applicable(ctx, atoms, reason: str) -> None:
    ctx.not_applicable(reason, "keating")
    _write_extxyz(ctx, atoms)


def _write_extxyz(ctx, atoms, energy=None, forces=None) -> None:
    """relaxed.extxyz in temtwin's one extxyz dialect (:mod:`temtwin.twin.extxyz`, Å)."""
    from ..twin.extxyz import write_extxyz

    info = {k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str, bool, np.number))
            or (isinstance(v, np.ndarray) and v.ndim == 1 and v.size <= 9)}
    with ctx.file("relaxed") as tmp:
        write_extxyz(tmp, atoms, info, forces=forces, energy=energy)


def _binned_map(xy_nm: np.ndarray, values: np.ndarray, pixel_nm: float, max_pixels: int = 2000):
    """Mean of ``values`` per pixel of the x-y plane; returns (map, origin_nm [x, y], pixel_nm)."""
    lo = xy_nm.min(axis=0)
    span = xy_nm.max(axis=0) - lo
    pixel_nm = max(pixel_nm, float(span.max()) / max_pixels)
    ij = np.floor((xy_nm - lo) / pixel_nm).astype(np.int64)
    shape = (int(ij[:, 1].max()) + 1, int(ij[:, 0].max()) + 1)  # rows = y, cols = x
    flat = ij[:, 1] * shape[1] + ij[:, 0]
    s = np.bincount(flat, values, minlength=shape[0] * shape[1])
    c = np.bincount(flat, minlength=shape[0] * shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    return m.reshape(shape), lo + 0.5 * pixel_nm, pixel_nm


def _fill_nearest(m: np.ndarray) -> np.ndarray:
    """Empty (NaN) pixels take the value of the nearest filled pixel (display only)."""
    from scipy.ndimage import distance_transform_edt

    hole = ~np.isfinite(m)
    if not hole.any() or hole.all():
        return m
    idx = distance_transform_edt(hole, return_distances=False, return_indices=True)
    return m[tuple(idx)]


def _bond_table(model: KeatingModel, pos0, pos1, cell):
    from ase.data import chemical_symbols

    p = model.params
    b0 = model.table.bonds(pos0, cell)
    b1 = model.table.bonds(pos1, cell)
    ti, tj = model.types[b0.i], model.types[b0.j]
    lo, hi = np.minimum(ti, tj), np.maximum(ti, tj)
    rows = {"pair": [], "n_bonds": [], "as_built_A": [], "relaxed_A": [], "ideal_A": []}
    for a in range(len(p.numbers)):
        for b in range(a, len(p.numbers)):
            sel = (lo == a) & (hi == b)
            if not sel.any():
                continue
            rows["pair"].append(f"{chemical_symbols[p.numbers[a]]}-{chemical_symbols[p.numbers[b]]}")
            rows["n_bonds"].append(int(sel.sum()) // 2)
            rows["as_built_A"].append(float(b0.dist_A[sel].mean()))
            rows["relaxed_A"].append(float(b1.dist_A[sel].mean()))
            rows["ideal_A"].append(float(p.d0[a, b]))
    return rows


def _figures(ctx, fmap, rmap, origin, pix, prof_pos, prof_mean, prof_max, growth) -> None:
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    for name, m, label in [("force_map", fmap, "mean |F| (eV/Å), as-built model"),
                           ("relax_displacement_map", rmap, "mean relaxation displacement (nm)")]:
        fig, ax = new_figure(size=5.0)
        ax = ax[0, 0]
        x0, y0 = origin - 0.5 * pix
        ext = [x0, x0 + m.shape[1] * pix, y0 + m.shape[0] * pix, y0]  # y down, like the image
        im = ax.imshow(_fill_nearest(m), extent=ext, cmap="magma", interpolation="nearest")
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        save_figure(fig, figdir / f"{name}.png")
    fig, ax = new_figure(size=4.5)
    ax = ax[0, 0]
    ax.plot(prof_pos, prof_mean, "-o", ms=3, label="mean |F|")
    ax.plot(prof_pos, prof_max, "-", lw=0.8, label="max |F|")
    ax.set_xlabel(f"position along growth {np.round(growth, 2).tolist()} (nm)")
    ax.set_ylabel("|F| (eV/Å)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=8)
    ax.set_title("Keating forces along growth (as-built model)", fontsize=9)
    save_figure(fig, figdir / "force_profile.png")


def run(ctx) -> None:
    """Stage function of rule ``keating`` (see the module docstring for the outputs)."""
    cfg = ctx.section("keating")
    atoms = Model.core(ctx.input["model"]).to_atoms()
    params = default_parameters()
    if not atoms.info.get("applicable", True):
        return _not_applicable(ctx, atoms, "atomic model not applicable: " + str(atoms.info.get("reason", "")))
    if len(atoms) == 0:
        return _not_applicable(ctx, atoms, "the atomic model has no atoms")
    if not params.supports(atoms.numbers):
        syms = sorted(set(atoms.get_chemical_symbols()))
        return _not_applicable(ctx, atoms, f"Keating parameters only for Si/Ge; the model contains "
                                           f"{', '.join(syms)}")
    ctx.log.info("keating: %d atoms, pbc %s", len(atoms), atoms.pbc.tolist())
    model = KeatingModel.from_atoms(atoms, params, cfg.get("max_bond_A"))
    r = evaluate_and_relax(ctx, cfg, atoms, model)
    with ctx.h5("h5") as f:
        keating_result(cfg, params, model, r, Path(ctx.output["relaxed"]).name).write(f)
    out = atoms.copy()
    out.positions = r.pos1
    out.set_array("asbuilt_force", r.res0.forces)
    _write_extxyz(ctx, out, energy=r.e1, forces=r.f1)
    _figures(ctx, r.fmap, r.rmap, r.origin, r.pix, r.centres, r.prof_mean, r.prof_max, r.g)


def evaluate_and_relax(ctx, cfg: dict, atoms, model: KeatingModel) -> SimpleNamespace:
    """Forces of the as-built model, its relaxation and the statistics per region, along growth and on an
    x-y grid (lengths nm, forces eV/Å); returns them as attributes."""
    n = len(atoms)
    pos0 = atoms.get_positions()
    cell = atoms.cell[:]
    res0 = model.evaluate(pos0, cell)
    fmag = np.sqrt((res0.forces ** 2).sum(axis=1))
    coord = model.table.coordination

    s = growth_coordinate_nm(atoms)
    fixed = np.zeros(n, bool)
    if cfg["fix_bottom_nm"] > 0:
        fixed |= s <= cfg["fix_bottom_nm"]
    if cfg["fix_top_nm"] > 0:
        fixed |= s >= s.max() - cfg["fix_top_nm"]
    if cfg["relax"]:
        def cb(step, e, fm):
            ctx.log.info("relax step %d: E = %.6f eV, fmax = %.3g eV/A", step, e, fm)
            ctx.progress(step, cfg["max_steps"], "relaxation steps")
        rr = relax(model, pos0, cell, fixed=fixed, fmax=cfg["fmax_eV_per_A"], max_steps=cfg["max_steps"],
                   method=cfg["method"], callback=cb)
        pos1, e1, f1, steps, conv, fm1 = rr.positions, rr.energy, rr.forces, rr.n_steps, rr.converged, rr.fmax
        ctx.log.info("keating: relaxed in %d steps, converged=%s, fmax=%.3g eV/A", steps, conv, fm1)
    else:
        pos1, e1, f1, steps, conv = pos0, res0.energy, res0.forces, 0, False
        fm1 = float(np.sqrt((f1 ** 2).sum(axis=1)).max())
    disp_nm = (pos1 - pos0) / 10.0
    dmag = np.sqrt((disp_nm ** 2).sum(axis=1))
    e_relaxed_atom = model.evaluate(pos1, cell).energies

    # per region
    region = np.asarray(atoms.arrays.get("region", np.zeros(n, int)), np.int64)
    labels, inv = np.unique(region, return_inverse=True)
    cnt = np.bincount(inv)
    mean_f = np.bincount(inv, fmag) / cnt
    rms_f = np.sqrt(np.bincount(inv, fmag ** 2) / cnt)
    max_f = np.zeros(len(labels))
    np.maximum.at(max_f, inv, fmag)
    e_reg = np.bincount(inv, res0.energies) / cnt
    d_reg = np.bincount(inv, dmag) / cnt

    # profile along growth
    bidx, centres, width = bin_index(s, cfg["profile_bin_nm"], max_bins=2000)
    bcnt = np.bincount(bidx, minlength=len(centres))
    with np.errstate(invalid="ignore", divide="ignore"):
        prof_mean = np.bincount(bidx, fmag, minlength=len(centres)) / bcnt
    prof_max = np.zeros(len(centres))
    np.maximum.at(prof_max, bidx, fmag)

    xy = pos0[:, :2] / 10.0
    fmap, origin, pix = _binned_map(xy, fmag, cfg["map_bin_nm"])
    rmap, _, _ = _binned_map(xy, dmag, cfg["map_bin_nm"])
    bonds = _bond_table(model, pos0, pos1, cell)
    g = growth_direction(atoms)
    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("ctx", "cfg", "atoms", "model",
                                                                                "cb", "rr")})


def keating_result(cfg: dict, params, model: KeatingModel, r: SimpleNamespace, relaxed_name: str) -> Keating:
    """The keating.h5 content (:class:`temtwin.results.keating.Keating`) of :func:`evaluate_and_relax`."""
    k = Keating()
    k.attrs[""] = {
        "applicable": True, "reason": "", "energy_eV": r.res0.energy, "relaxed_energy_eV": r.e1,
        "relax_converged": bool(r.conv), "relax_steps": int(r.steps), "relax_fmax_eV_per_A": float(r.fm1),
        "relax_method": cfg["method"] if cfg["relax"] else "none", "max_bond_A": model.table.max_bond_A,
        "growth_direction": r.g,
        "parameters": json.dumps({"source": "resources/physics/keating.yaml", "numbers": list(params.numbers),
                                  "alpha_eV_per_A2": params.alpha.tolist(), "beta_eV_per_A2": params.beta.tolist(),
                                  "d0_A": params.d0.tolist()})}
    k.put("forces", r.res0.forces, "eV/A")
    k.put("force_magnitude", r.fmag, "eV/A")
    k.put("energy_per_atom", r.res0.energies, "eV")
    k.put("relaxed_energy_per_atom", r.e_relaxed_atom, "eV")
    k.put("coordination", r.coord.astype(np.int8), "1")
    k.put("relaxed_forces", r.f1, "eV/A")
    k.put("relax_displacement", r.disp_nm, "nm")
    k.put("fixed", r.fixed, "1")
    k.put_table("regions", {
        "label": (r.labels.astype(np.int32), "label"), "n_atoms": (r.cnt, "1"),
        "mean_force": (r.mean_f, "eV/A"), "rms_force": (r.rms_f, "eV/A"), "max_force": (r.max_f, "eV/A"),
        "energy_per_atom": (r.e_reg, "eV"), "mean_relax_displacement": (r.d_reg, "nm")})
    k.put("profile/position_nm", r.centres, "nm")
    k.put("profile/mean_force", r.prof_mean, "eV/A")
    k.put("profile/max_force", r.prof_max, "eV/A")
    k.put("profile/n_atoms", r.bcnt, "1")
    k.attrs["profile"] = {"bin_nm": r.width}
    k.put("force_map", r.fmap, "eV/A", origin_nm=r.origin, pixel_size_nm=r.pix)
    k.put("relax_map", r.rmap, "nm", origin_nm=r.origin, pixel_size_nm=r.pix)
    bonds = r.bonds
    k.put_table("bonds", {"pair": (np.array(bonds["pair"], dtype=object), "1"),
                          "n_bonds": (np.array(bonds["n_bonds"]), "1"),
                          "as_built_A": (np.array(bonds["as_built_A"]), "A"),
                          "relaxed_A": (np.array(bonds["relaxed_A"]), "A"),
                          "ideal_A": (np.array(bonds["ideal_A"]), "A")})
    n, fmag = len(r.fmag), r.fmag
    k.summary = {"keating": {
        "applicable": True,
        "n_atoms": n,
        "energy_eV_per_atom": r.res0.energy / n,
        "relaxed_energy_eV_per_atom": r.e1 / n,
        "max_force_eV_per_A": float(fmag.max()),
        "rms_force_eV_per_A": float(np.sqrt((fmag ** 2).mean())),
        "regions": {str(int(lab)): float(v) for lab, v in zip(r.labels, r.mean_f)},
        "relaxed": relaxed_name,
        "relax_converged": bool(r.conv),
        "relax_steps": int(r.steps),
        "max_relax_displacement_nm": float(r.dmag.max()),
        "undercoordinated_fraction": float((r.coord < 4).mean()),
        "bond_length_A": {p: {"as_built": a, "relaxed": rl} for p, a, rl in
                          zip(bonds["pair"], bonds["as_built_A"], bonds["relaxed_A"])},
    }}
    return k
