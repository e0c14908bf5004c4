"""Rule ``phonons``: vibrational local DOS per region and per slab along growth (KPM, Keating).

Inputs: ``model`` (model.h5), ``keating`` (keating.h5), ``relaxed`` (relaxed.extxyz).
Outputs: ``h5`` (phonons.h5), ``figures``.

phonons.h5 (read and written through :class:`temtwin.results.phonons.Phonons`):

* ``/energy_meV`` (n_E,) energy grid;
* table ``/regions`` (``label``, ``n_atoms``) and ``/regions_ldos`` (R, n_E) 1/meV per degree of
  freedom (integral 1), the regions chosen by config ``phonons.regions`` (segmented labels, or slabs);
* ``/slabs/position_nm`` (S,) slab centres along growth (from the lowest atom), ``/slabs/n_atoms``,
  ``/slabs/ldos`` (S, n_E);
* ``/species/ldos`` (T, n_E) partial DOS per element, attr ``species``;
* root attrs ``applicable``, ``reason``, ``method`` (``kpm``), ``n_moments``, ``n_vectors``, ``probe``,
  ``kernel``, ``operator`` (``sparse`` / ``matrix_free``), ``sigma_meV``, ``lambda_bounds`` (eV/(Å^2 amu)),
  ``structure``, ``slab_nm``, ``region_mode``, ``growth_direction``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..plotting import new_figure, save_figure
from ..results.keating import Keating
from ..results.phonons import Phonons
from ..results.model import Model
from ..workflow.seeds import rng as seeded_rng
from ..physics.growth import bin_index, growth_coordinate_nm, growth_direction
from ..physics.keating import KeatingModel, default_parameters
from ..physics.phonons import KeatingDynamicalOperator, dynamical_matrix, find_peaks_meV, kpm_ldos


def _not_applicable(ctx, reason: str) -> None:
    ctx.not_applicable(reason, "phonons")


def _structure(ctx, cfg, atoms):
    """Positions (Å) of the structure chosen by config ``structure``."""
    if cfg["structure"] == "as_built":
        return atoms.get_positions()
    import ase.io

    path = ctx.input["relaxed"]
    try:
        rel = ase.io.read(path, format="extxyz")
    except Exception as err:  # noqa: BLE001
        raise UserError(f"cannot read the relaxed model ({err}); rerun rule keating", path) from err
    if len(rel) != len(atoms) or not np.array_equal(rel.numbers, atoms.numbers):
        raise UserError("relaxed model does not match model.h5 (atom count or species); rerun rule keating",
                        path)
    return rel.get_positions()


def _figures(ctx, energies, reg_labels, reg_ldos, slab_pos, slab_ldos, species, sp_ldos, growth):
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    fig, axs = new_figure(ncols=2, size=4.5)
    ax = axs[0, 0]
    off = 0.0
    step = 1.1 * float(np.max(reg_ldos)) if len(reg_ldos) else 1.0
    for lab, y in zip(reg_labels, reg_ldos):
        ax.plot(energies, 3 * y + off, lw=1)
        ax.text(energies[-1], off + 0.05 * step * 3, str(lab), ha="right", fontsize=7)
        off += 3 * step
    ax.set_xlabel("phonon energy (meV)")
    ax.set_ylabel("LDOS (states / meV / atom), offset per region")
    ax.set_title("vibrational LDOS per region", fontsize=9)
    ax = axs[0, 1]
    for name, y in zip(species, sp_ldos):
        ax.plot(energies, 3 * y, lw=1, label=name)
    ax.set_xlabel("phonon energy (meV)")
    ax.set_ylabel("partial DOS (states / meV / atom)")
    ax.legend(fontsize=8)
    ax.set_title("per element", fontsize=9)
    save_figure(fig, figdir / "ldos_regions.png")

    fig, ax = new_figure(size=5.0)
    ax = ax[0, 0]
    if len(slab_pos) > 1:
        dz = slab_pos[1] - slab_pos[0]
        ext = [energies[0], energies[-1], slab_pos[0] - dz / 2, slab_pos[-1] + dz / 2]
    else:
        ext = [energies[0], energies[-1], 0, 1]
    im = ax.imshow(3 * slab_ldos, aspect="auto", origin="lower", extent=ext, cmap="viridis",
                   interpolation="nearest")
    ax.set_xlabel("phonon energy (meV)")
    ax.set_ylabel(f"position along growth {np.round(growth, 2).tolist()} (nm)")
    ax.set_title("vibrational LDOS along growth", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="states / meV / atom")
    save_figure(fig, figdir / "ldos_growth_map.png")


def run(ctx) -> None:
    """Stage function of rule ``phonons`` (see the module docstring for the outputs)."""
    from ase.data import chemical_symbols

    cfg = ctx.section("phonons")
    kr = Keating.read(ctx.input["keating"], only=())
    k_ok, k_reason, max_bond = kr.applicable, kr.reason, kr.max_bond_A
    if not k_ok:
        return _not_applicable(ctx, f"Keating model not applicable: {k_reason}")
    atoms = Model.core(ctx.input["model"]).to_atoms()
    n = len(atoms)
    pos = _structure(ctx, cfg, atoms)
    params = default_parameters()
    model = KeatingModel.from_arrays(pos, atoms.numbers, atoms.cell[:], atoms.pbc, params,
                                     None if max_bond is None else float(max_bond))
    ctx.log.info("phonons: %d atoms, structure %s", n, cfg["structure"])
    operator = cfg["operator"]
    if operator == "auto":
        operator = "sparse" if n <= cfg["sparse_max_atoms"] else "matrix_free"
    if operator == "sparse":
        d = dynamical_matrix(model, pos, atoms.cell[:])
    else:
        d = KeatingDynamicalOperator(model, pos, atoms.cell[:], precision=cfg["precision"])

    region = np.asarray(atoms.arrays.get("region", np.zeros(n, int)), np.int64)
    s = growth_coordinate_nm(atoms, pos)
    slab_idx, slab_pos, slab_w = bin_index(s, cfg["slab_nm"], cfg["max_slabs"])
    if cfg["regions"] == "segmented":
        labels, reg_idx = np.unique(region, return_inverse=True)
        if len(labels) > 1 and labels[0] == 0:  # 0 = unassigned atoms
            reg_idx = reg_idx - 1
            labels = labels[1:]
        reg_names = [str(int(v)) for v in labels]
    else:
        reg_idx = slab_idx
        reg_names = [f"slab{i}" for i in range(len(slab_pos))]
    types = model.types.astype(np.int64)
    present = np.unique(types)
    sp_idx = np.searchsorted(present, types)
    species = [chemical_symbols[params.numbers[t]] for t in present]

    probe = "exact" if n <= cfg["exact_max_atoms"] else "random"
    rng = seeded_rng(ctx.seed, "phonons", *[str(v) for v in ctx.wildcards.values()])
    res = kpm_ldos(d, [reg_idx, slab_idx, sp_idx], None, cfg["sigma_meV"], cfg["n_moments"], cfg["n_vectors"],
                   rng, probe=probe, precision=cfg["precision"], energy_step_meV=cfg["energy_step_meV"],
                   progress=lambda i, m: ctx.progress(i, m, "Chebyshev moments"))
    e = res.energies_meV
    reg_ldos, slab_ldos, sp_ldos = res.ldos
    reg_count = np.bincount(reg_idx[reg_idx >= 0], minlength=len(reg_names))
    slab_count = np.bincount(slab_idx, minlength=len(slab_pos))
    peaks = {name: find_peaks_meV(e, y, cfg["peak_min_meV"], cfg["peak_prominence"])
             for name, y in zip(reg_names, reg_ldos)}
    sp_peaks = {name: find_peaks_meV(e, y, cfg["peak_min_meV"], cfg["peak_prominence"])
                for name, y in zip(species, sp_ldos)}
    g = growth_direction(atoms)
    method = {"name": "kpm", "kernel": "jackson", "n_moments": cfg["n_moments"],
              "n_vectors": res.n_vectors, "probe": probe, "sigma_meV": cfg["sigma_meV"], "operator": operator,
              "structure": cfg["structure"], "regions": cfg["regions"], "slab_nm": slab_w}

    out = phonons_result(cfg, res, probe, operator, slab_w, g, reg_names, reg_count, slab_pos, slab_count,
                         species)
    out.summary = {"phonons": {
        "applicable": True,
        "method": method,
        "regions": {name: {"peak_meV": peaks[name], "n_atoms": int(c)} for name, c in zip(reg_names, reg_count)},
        "species": {name: {"peak_meV": sp_peaks[name]} for name in species},
    }}
    with ctx.h5("h5") as f:
        out.write(f)
    _figures(ctx, e, reg_names, reg_ldos, slab_pos, slab_ldos, species, sp_ldos, g)


def phonons_result(cfg: dict, res, probe: str, operator: str, slab_w: float, g, reg_names: list[str],
                   reg_count: np.ndarray, slab_pos: np.ndarray, slab_count: np.ndarray,
                   species: list[str]) -> Phonons:
    """The phonons.h5 content (:class:`temtwin.results.phonons.Phonons`) of a KPM result ``res``."""
    reg_ldos, slab_ldos, sp_ldos = res.ldos
    out = Phonons()
    out.attrs[""] = {"applicable": True, "reason": "", "method": "kpm", "kernel": "jackson",
                     "n_moments": cfg["n_moments"], "n_vectors": res.n_vectors, "probe": probe, "operator": operator,
                     "sigma_meV": cfg["sigma_meV"], "lambda_bounds": np.array(res.lam_bounds),
                     "structure": cfg["structure"], "region_mode": cfg["regions"], "slab_nm": slab_w,
                     "growth_direction": g}
    dof = {"normalisation": "per degree of freedom"}
    out.put("energy_meV", res.energies_meV, "meV")
    out.put_table("regions", {"label": (np.array(reg_names, dtype=object), "label"), "n_atoms": (reg_count, "1")})
    out.put("regions_ldos", reg_ldos, "1/meV", **dof)
    out.put("slabs/position_nm", slab_pos, "nm")
    out.put("slabs/n_atoms", slab_count, "1")
    out.put("slabs/ldos", slab_ldos, "1/meV", **dof)
    out.put("species/ldos", sp_ldos, "1/meV", **dof)
    out.attrs["species"] = {"species": np.array(species, dtype=object).astype(str).tolist()}
    return out
