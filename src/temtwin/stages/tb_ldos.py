"""Stage ``tb_ldos``: gather the KPM moments of all ``tb_moments`` chunks into the LDOS per region and slab,
band edges (:mod:`temtwin.physics.band_edges`), eigenstates and figures (conventions: :mod:`.tb_moments`)."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..physics import kpm
from ..physics.band_edges import band_edges
from ..physics.tightbinding import build_hamiltonian, load_parameters
from ..plotting import new_figure, save_figure
from ..results.tb import Tb
from ..results.tb_moments import TbMoments
from .tb_moments import _label_key


def gather_moments(paths) -> dict:
    """Sum the per-vector moments of all chunk files in canonical task order.

    Returns ``{"moments": {(family, label): (N,)}, "n_vectors": {...}, "attrs": {...},
    "partitions": {family: table}, "structure": dict|None}``; raises UserError on mismatches.
    """
    rows, attrs0, parts, structure, n_total = [], None, None, None, None
    seen = set()
    for p in paths:
        f = TbMoments.read(p)
        if not f.applicable:
            return {"applicable": False, "reason": f.reason}
        a = {k: f.file_attrs[k] for k in ("n_moments", "bounds_eV", "a_eV", "b_eV", "settings",
                                          "sample", "seed", "n_tasks_total")}
        if attrs0 is None:
            attrs0 = a
            parts = {fam: f.table(f"partitions/{fam}") for fam in f.children("partitions")}
            params = dict(f.group_attrs("parameters"))
        else:
            for k in a:
                if not np.array_equal(np.asarray(a[k]), np.asarray(attrs0[k])):
                    raise UserError(f"chunk files disagree on {k}; rerun all tb_moments jobs", p)
        if "structure/positions" in f.data:
            structure = {k[len("structure/"):]: v for k, v in f.data.items() if k.startswith("structure/")}
            structure.update(f.group_attrs("structure"))
        t = f.table("tasks")
        mu = f.data["moments"]
        for k in range(len(t["vector"])):
            key = (str(t["family"][k]), str(t["label"][k]), int(t["vector"][k]))
            if key in seen:
                raise UserError(f"random vector {key} appears in two chunk files", p)
            seen.add(key)
            rows.append((key, mu[k]))
        n_total = int(a["n_tasks_total"])
    if n_total is not None and len(rows) != n_total:
        raise UserError(f"{len(rows)} of {n_total} random vectors found; a tb_moments chunk is missing",
                        paths[0] if paths else None)
    rows.sort(key=lambda r: (r[0][0], _label_key(r[0][1]), r[0][2]))
    moments, nvec = {}, {}
    for (fam, lab, _), m in rows:
        key = (fam, lab)
        if key in moments:
            moments[key] = moments[key] + m
        else:
            moments[key] = m.copy()
        nvec[key] = nvec.get(key, 0) + 1
    return {"applicable": True, "moments": moments, "n_vectors": nvec, "attrs": attrs0,
            "partitions": parts, "structure": structure, "parameters": params}


def run(ctx) -> None:
    """Rule ``tb_ldos``: gather moments into LDOS per region and slab, band edges, figures."""
    from pathlib import Path

    # the LDOS keys, and the model keys of tb_moments that the eigenstates need (the rule declares both)
    cfg = {**ctx.section("tb_moments"), **ctx.section("tb_ldos")}
    paths = ctx.input["moments"]
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    g = gather_moments(paths)
    figdir = Path(ctx.output["figures"])
    figdir.mkdir(parents=True, exist_ok=True)
    if not g["applicable"]:
        ctx.not_applicable(g["reason"], "tight_binding")
        return
    at = g["attrs"]
    a, b, N = float(at["a_eV"]), float(at["b_eV"]), int(at["n_moments"])
    e0, e1, de = float(cfg["energy_min_eV"]), float(cfg["energy_max_eV"]), float(cfg["energy_step_eV"])
    if not e1 > e0:
        raise UserError("tb_ldos.energy_max_eV must exceed energy_min_eV", "config")
    E = np.round(e0 + de * np.arange(int(np.floor((e1 - e0) / de + 1e-9)) + 1), 9)
    window = tuple(float(v) for v in cfg["gap_window_eV"])
    q = float(cfg["band_edge_states_per_atom"])
    results = {}
    for fam, table in g["partitions"].items():
        for k, lab in enumerate(table["label"]):
            lab = str(lab)
            mu = g["moments"][(fam, lab)] / (g["n_vectors"][(fam, lab)] * int(table["n_atoms"][k]))
            rho = kpm.density(mu, E, a, b)
            ev, ec, emid = band_edges(E, rho, window, q)
            results[(fam, lab)] = {"ldos": rho, "n_atoms": int(table["n_atoms"][k]), "ev": ev,
                                   "ec": ec, "emid": emid,
                                   "center_nm": float(table["center_nm"][k]) if "center_nm" in table
                                   else np.nan}
    fam_total = "region" if "region" in g["partitions"] else "slab"
    n_all = sum(r["n_atoms"] for (f, _), r in results.items() if f == fam_total)
    total = sum(r["ldos"] * r["n_atoms"] for (f, _), r in results.items() if f == fam_total) / n_all
    n_random = int(sum(g["n_vectors"].values()))
    n_so = int(g["parameters"].get("n_spin_orbitals", 0))
    states_out = _states(ctx, cfg, g) if cfg["state_energies_eV"] else []

    out = ldos_result(g, E, total, results, states_out, window, q)
    regions = {lab: {"valence_band_edge_eV": r["ev"], "conduction_band_edge_eV": r["ec"]}
               for (fam, lab), r in results.items() if fam == "region"}
    out.summary = {"tight_binding": {"regions": regions, "n_orbitals": n_so, "n_moments": N, "n_random": n_random}}
    with ctx.h5("h5") as f:
        out.write(f)
    _figures(figdir, E, total, results, window, states_out)


def ldos_result(g: dict, E: np.ndarray, total: np.ndarray, results: dict, states_out: list[dict], window,
                q: float) -> Tb:
    """The tb.h5 content (:class:`temtwin.results.tb.Tb`): energies (eV), total DOS, LDOS and moments per
    region and slab, band-edge tables, Hamiltonian options and eigenstates (of :func:`gather_moments` ``g``)."""
    at = g["attrs"]
    a, N = float(at["a_eV"]), int(at["n_moments"])
    out = Tb()
    out.attrs[""] = {"applicable": True, "reason": "", "n_moments": N, "bounds_eV": at["bounds_eV"],
                     "a_eV": a, "b_eV": float(at["b_eV"]), "broadening_eV": kpm.jackson_sigma_eV(a, N),
                     "n_random": int(sum(g["n_vectors"].values())), "kernel": "jackson",
                     "band_edge_estimator": f"LDOS integrated outward from its minimum in "
                                            f"{list(window)} eV reaches {q} states/atom"}
    out.put("energies", E, "eV")
    out.put("dos_total", total, "states/eV/atom")
    for fam in g["partitions"]:
        labels = [lab for (ff, lab) in results if ff == fam]
        for lab in labels:
            r = results[(fam, lab)]
            out.put(f"{fam}s/{lab}/ldos", r["ldos"], "states/eV/atom")
            out.put(f"{fam}s/{lab}/moments", g["moments"][(fam, lab)], "1", n_vectors=g["n_vectors"][(fam, lab)])
            out.attrs[f"{fam}s/{lab}"] = {"n_atoms": r["n_atoms"], "valence_band_edge_eV": r["ev"],
                                          "conduction_band_edge_eV": r["ec"], "midgap_eV": r["emid"]}
        out.put_table(f"band_edges_{fam}", {
            "label": (np.array(labels, dtype=object), "label"),
            "n_atoms": (np.array([results[(fam, lab)]["n_atoms"] for lab in labels]), "1"),
            "center_nm": (np.array([results[(fam, lab)]["center_nm"] for lab in labels]), "nm"),
            "valence_band_edge_eV": (np.array([results[(fam, lab)]["ev"] for lab in labels]), "eV"),
            "conduction_band_edge_eV": (np.array([results[(fam, lab)]["ec"] for lab in labels]), "eV")})
    out.attrs["parameters"] = dict(g["parameters"])
    for k, st in enumerate(states_out):
        out.attrs[f"states/{k}"] = {"target_eV": st["target_eV"], "method": st["method"]}
        out.put(f"states/{k}/energies", st["energies"], "eV")
        out.put(f"states/{k}/residuals", st["residuals"], "eV")
        out.put(f"states/{k}/atom_weights", st["weights"], "1")
        out.put(f"states/{k}/atom_index", st["atom_index"], "1")
        out.put(f"states/{k}/weight_map", st["maps"], "1", pixel_size_nm=st["map_px"])
    return out


def _states(ctx, cfg, g) -> list[dict]:
    """Eigenstates at the configured energies, from the structure stored by chunk 0."""
    from ..physics import tb_states
    from ..physics.tightbinding.structure import prepare_structure as _prep

    s = g["structure"]
    if s is None:
        raise UserError("moments_0.h5 lacks /structure; rerun tb_moments chunk 0", "tb")
    params = load_parameters(valence_band_offset=bool(cfg["valence_band_offset"]))
    pbc = tuple(bool(v) for v in s["pbc"])
    st = _prep(s["positions"] * 10.0, s["numbers"], params, cell_A=s["cell"] * 10.0 if any(pbc) else None,
               pbc=pbc, passivation=cfg["passivation"], min_coordination=int(cfg["min_coordination"]))
    ham = build_hamiltonian(st, params, strain=bool(cfg["strain"]), spin_orbit=bool(cfg["spin_orbit"]),
                            sp3_shift_eV=float(cfg["sp3_shift_eV"]), dtype=np.float64)
    px = s.get("pixel_size_nm", (0.02, 0.02))
    out = []
    for k, e in enumerate(cfg["state_energies_eV"]):
        ctx.progress(k, len(cfg["state_energies_eV"]), "tb eigenstates")
        res = tb_states.states_near(ham, float(e), int(cfg["n_states"]), method=cfg["state_method"],
                                    degree=int(cfg["state_filter_degree"]),
                                    bounds=tuple(g["attrs"]["bounds_eV"]))
        w = tb_states.atom_weights(ham, res.vectors)
        maps, mpx = tb_states.weight_maps(st.positions_A[:st.n_host], w, px)
        out.append({"target_eV": float(e), "energies": res.energies_eV, "residuals": res.residuals_eV,
                    "method": res.method, "weights": w, "atom_index": s["atom_index"][st.atom_index],
                    "maps": maps, "map_px": np.asarray(mpx)})
    return out


def _figures(figdir, E, total, results, window, states_out) -> None:
    regs = [(lab, r) for (fam, lab), r in results.items() if fam == "region"]
    slabs = [(lab, r) for (fam, lab), r in results.items() if fam == "slab"]
    fig, ax = new_figure(1, 1, size=5.0)
    ax = ax[0, 0]
    ax.plot(E, total, color="k", lw=1.2, label="total")
    for lab, r in regs:
        ax.plot(E, r["ldos"], lw=0.9, label=f"region {lab}")
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("LDOS (states/eV/atom)")
    ax.legend(fontsize=7)
    save_figure(fig, figdir / "ldos_regions.png")

    fig, ax = new_figure(1, 1, size=5.0)
    ax = ax[0, 0]
    m = (E >= window[0] - 0.5) & (E <= window[1] + 0.5)
    for lab, r in (regs or slabs):
        line, = ax.plot(E[m], r["ldos"][m], lw=0.9, label=f"{lab}")
        for e in (r["ev"], r["ec"]):
            if np.isfinite(e):
                ax.axvline(e, color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("LDOS (states/eV/atom)")
    ax.set_title("near-gap zoom (dotted: band-edge estimates)")
    ax.legend(fontsize=7)
    save_figure(fig, figdir / "ldos_gap_zoom.png")

    if slabs:
        z = np.array([r["center_nm"] for _, r in slabs])
        order = np.argsort(z)
        fig, ax = new_figure(1, 1, size=5.0)
        ax = ax[0, 0]
        ax.plot(z[order], np.array([r["ev"] for _, r in slabs])[order], "o-", label="valence-band edge")
        ax.plot(z[order], np.array([r["ec"] for _, r in slabs])[order], "s-", label="conduction-band edge")
        ax.set_xlabel("position along growth (nm)")
        ax.set_ylabel("energy (eV)")
        ax.legend(fontsize=7)
        save_figure(fig, figdir / "band_edge_profile.png")
    for k, st in enumerate(states_out):
        n = len(st["energies"])
        fig, axs = new_figure(n, 1, size=3.0)
        for i in range(n):
            axs[0, i].imshow(st["maps"][i], cmap="magma")
            axs[0, i].set_title(f"E = {st['energies'][i]:.3f} eV", fontsize=8)
            axs[0, i].axis("off")
        save_figure(fig, figdir / f"state_{k}.png")
