"""Stages ``tb_moments`` (KPM moments of one chunk of random vectors) and ``tb_ldos`` (gather → LDOS).

Partitions
----------
The LDOS is computed for two partitions of the atoms (config ``tb_moments.partitions``):
``region`` (the segmented regions, ``atoms.arrays["region"]``) and ``slab`` (slabs of
``slab_thickness_nm`` along the growth direction, ``atoms.info["growth_direction"]``, image frame,
default (0, −1, 0) = up the image; slab 0 is where growth starts).  H atoms belong to their host.

Chunks and determinism
----------------------
The random vectors are the tasks ``(family, label, v)`` for v < ``vectors_per_region``, sorted;
chunk c of n takes ``tasks[c::n]``.  Vector ``(family, label, v)`` is drawn from
``rng(seed, "tb", sample, "family:label", v)`` whatever the chunking, its moments are computed
column-independently (numba kernel), and the gather sums the per-vector moments in the sorted task
order — so the gathered moments are bitwise identical for any ``n_chunks`` and any machine running
the same backend.  Spectral bounds come from a seeded Lanczos run, padded and rounded outward to
0.05 eV, so all chunks agree (checked by the gather).

Band edges (documented estimator)
---------------------------------
For the LDOS ρ(E) of a region or slab (states/eV/atom, Jackson-broadened): the gap centre ``E_mid``
is the minimum of ρ inside ``gap_window_eV``; the valence-band edge ``E_v`` is the energy below
``E_mid`` at which ρ integrated downward from ``E_mid`` reaches ``band_edge_states_per_atom``
(default 0.002 states/atom), the conduction-band edge ``E_c`` likewise upward.  Integrating averages
the stochastic noise of the LDOS (a plain threshold on ρ gave a much noisier slab profile).  The
estimate sits within about the broadening (π a / N ≈ 0.15 eV at 512 moments) of the true edge,
with a material-dependent sign; offsets between regions are more reliable than absolute edges
(bench/results/tight_binding.md compares the quantum-well offset with exact bulk values).
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import NotApplicable, UserError
from ..plotting import new_figure, save_figure
from ..results.tb import Tb
from ..results.tb_moments import TbMoments
from ..workflow.seeds import rng
from . import kpm
from .growth import bin_index, growth_coordinate_nm, growth_direction
from .tightbinding import TBOperator, build_hamiltonian, load_parameters, prepare_structure
from .tightbinding.matrix_free import MatrixFreeOperator, build_matrix_free

FAMILIES = ("region", "slab")


# ----------------------------------------------------------------------------- helpers
def _settings_digest(cfg: dict) -> str:
    keys = ("structure", "passivation", "sp3_shift_eV", "min_coordination", "strain", "spin_orbit",
            "valence_band_offset", "n_moments", "vectors_per_region", "partitions",
            "slab_thickness_nm", "spectral_bounds_eV", "lanczos_steps", "precision")
    return json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True)


def _read_atoms(ctx, cfg):
    """The model (ase.Atoms, Å) with the relaxed positions when configured; raises NotApplicable."""
    from ..results.model import Model

    atoms = Model.core(ctx.input["model"]).to_atoms()
    if not atoms.info.get("applicable", True):
        raise NotApplicable(f"atomic model not applicable: {atoms.info.get('reason', '')}")
    if len(atoms) == 0:
        raise NotApplicable("the atomic model has no atoms")
    source = "as_built"
    relaxed = ctx.paths("relaxed")
    if cfg["structure"] == "relaxed" and relaxed:
        try:
            import ase.io

            rel = ase.io.read(relaxed[0])
            if len(rel) == len(atoms) and np.array_equal(rel.numbers, atoms.numbers):
                atoms.set_positions(rel.get_positions())
                source = "relaxed"
            else:
                ctx.log.warning("relaxed structure does not match the model; using the as-built one")
        except Exception as err:  # not applicable keating output, empty file
            ctx.log.warning("relaxed structure unreadable (%s); using the as-built one", err)
    z = set(np.unique(atoms.numbers).tolist())
    if not z <= {14, 32}:
        from ase.data import chemical_symbols

        other = ", ".join(chemical_symbols[k] for k in sorted(z - {14, 32}))
        raise NotApplicable(f"sp3d5s* parameters exist for Si and Ge only; model contains {other}")
    return atoms, source


def _partitions(atoms, host_index: np.ndarray, cfg) -> dict:
    """family -> (labels (sorted str), label per host site, extra dict)."""
    out = {}
    want = cfg["partitions"]
    if want in ("both", "regions"):
        reg = np.asarray(atoms.arrays.get("region", np.zeros(len(atoms), int)))[host_index]
        labels = [str(v) for v in np.unique(reg)]
        out["region"] = (labels, np.array([str(v) for v in reg], dtype=object), {})
    if want in ("both", "slabs"):
        g = growth_direction(atoms)
        t = float(cfg["slab_thickness_nm"])
        k, _, _ = bin_index(growth_coordinate_nm(atoms, atoms.get_positions()[host_index]), t)
        uniq = np.unique(k)
        labels = [str(v) for v in uniq]
        centers = {str(v): float((v + 0.5) * t) for v in uniq}   # from the first atom along growth
        out["slab"] = (labels, np.array([str(v) for v in k], dtype=object),
                       {"center_nm": centers, "growth_direction": g.tolist()})
    return out


def _tasks(parts: dict, n_vec: int) -> list[tuple[str, str, int]]:
    tasks = [(fam, lab, v) for fam, (labels, _, _) in parts.items() for lab in labels
             for v in range(n_vec)]
    return sorted(tasks, key=lambda t: (t[0], _label_key(t[1]), t[2]))


def _label_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _write_not_applicable(ctx, reason: str, summary: bool) -> None:
    ctx.not_applicable(reason, "tight_binding" if summary else None)


def _model_setup(ctx, cfg, build_matrix: bool = True):
    """(atoms, source, params, structure, hamiltonian); hamiltonian None without ``build_matrix``."""
    atoms, source = _read_atoms(ctx, cfg)
    ctx.log.info("tb setup: model read (%d atoms)", len(atoms))
    params = load_parameters(valence_band_offset=bool(cfg["valence_band_offset"]))
    cell = np.asarray(atoms.cell[:]) if atoms.cell.rank == 3 or any(atoms.pbc) else None
    st = prepare_structure(atoms.get_positions(), atoms.numbers, params, cell_A=cell,
                           pbc=tuple(bool(b) for b in atoms.pbc), passivation=cfg["passivation"],
                           min_coordination=int(cfg["min_coordination"]))
    if st.n_host == 0:
        raise NotApplicable("no Si/Ge atom left after removing under-coordinated atoms")
    ctx.log.info("tb setup: structure prepared (%d sites, %d bonds)", st.n_sites, len(st.bond_i))
    if not build_matrix:
        return atoms, source, params, st, None
    build = build_matrix_free if cfg["backend"] == "matrix_free" else build_hamiltonian
    ham = build(st, params, strain=bool(cfg["strain"]), spin_orbit=bool(cfg["spin_orbit"]),
                sp3_shift_eV=float(cfg["sp3_shift_eV"]),
                dtype=np.float32 if cfg["precision"] == "single" else np.float64)
    return atoms, source, params, st, ham


def _operator(ham, cfg) -> TBOperator:
    cd = np.complex64 if cfg["precision"] == "single" else np.complex128
    backend = cfg["backend"]
    if backend == "matrix_free":
        return MatrixFreeOperator(ham, complex_dtype=cd)
    if backend == "cuda":
        from .tightbinding.operator import _cuda_available

        if not _cuda_available():
            raise UserError("tb_moments.backend is 'cuda' but no GPU is visible; use 'auto'",
                            "config")
    return TBOperator(ham, backend=backend, complex_dtype=cd)


def _bounds(ctx, cfg, ham, sample) -> tuple[float, float]:
    if cfg.get("spectral_bounds_eV"):
        lo, hi = (float(v) for v in cfg["spectral_bounds_eV"])
        if not hi > lo:
            raise UserError("tb_moments.spectral_bounds_eV must be [min, max] with max > min", "config")
        return lo, hi
    seed = int(rng(ctx.seed, "tb", sample, "lanczos").integers(2**31 - 1))
    if hasattr(ham, "comm"):                      # a complex128 DistributedOperator
        return kpm.spectral_bounds(ham, n_steps=int(cfg["lanczos_steps"]), seed=seed)
    # Lanczos in double precision on the CPU kernel, so every chunk and backend gets the same bounds
    if cfg["backend"] == "matrix_free":
        op = MatrixFreeOperator(ham, complex_dtype=np.complex128)
    else:
        op = TBOperator(ham, backend="numba", complex_dtype=np.complex128)
    return kpm.spectral_bounds(op, n_steps=int(cfg["lanczos_steps"]), seed=seed)


# ----------------------------------------------------------------------------- tb_moments
def _mpi_operator(ctx, cfg: dict, comm, st, params, sample: str):
    """The distributed Hamiltonian of this MPI rank (:mod:`.tightbinding.distributed`), its spectral bounds
    (eV), the site of every orbital row and the Hamiltonian record: (op, bounds, orbital_site, info)."""
    from .tightbinding.distributed import DistributedOperator

    if cfg["backend"] not in ("auto", "numba"):
        raise UserError("tb_moments.mpi_ranks > 1 runs the numba CSR kernel; set backend: auto",
                        "config")
    mk = dict(strain=bool(cfg["strain"]), spin_orbit=bool(cfg["spin_orbit"]),
              sp3_shift_eV=float(cfg["sp3_shift_eV"]),
              dtype=np.float32 if cfg["precision"] == "single" else np.float64)
    if cfg.get("spectral_bounds_eV"):
        bounds = _bounds(ctx, cfg, None, sample)
    else:                                   # Lanczos in double precision, as one process
        lop = DistributedOperator(comm, st, params, complex_dtype=np.complex128, **mk)
        bounds = _bounds(ctx, cfg, lop, sample)
        del lop
    op = DistributedOperator(comm, st, params, complex_dtype=np.complex64 if cfg["precision"] ==
                             "single" else np.complex128, **mk)
    norb = np.diff(op.site_start)
    orbital_site = np.repeat(np.arange(st.n_sites), norb)
    info = {"n_sites": st.n_sites, "n_host": st.n_host, "n_orbitals": op.n_rows,
            "n_spin_orbitals": 2 * op.n_rows, "strain": mk["strain"], "spin_orbit": mk["spin_orbit"],
            "passivation": st.passivation, "mpi_ranks": op.size,
            "nnz": int(comm.allreduce(len(op.data)))}
    ctx.log.info("tight binding (MPI, %d ranks): %d atoms, %d spin-orbitals, nnz %d; rank 0 holds "
                 "%d rows + %d ghost rows, %.2f GB matrix", op.size, st.n_host, 2 * op.n_rows,
                 info["nnz"], op.n_own, op.n_low + op.n_high, op.memory_bytes() / 1e9)
    return op, bounds, orbital_site, info


def _log_mpi(ctx, op) -> None:
    import resource

    ctx.log.info("MPI: communication %.2f s, products %.2f s on rank 0 (%.1f %% communication), "
                 "peak RSS rank 0 %.0f MB", op.comm_s, op.step_s,
                 100 * op.comm_s / max(op.comm_s + op.step_s, 1e-12),
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_moments(ctx, comm=None) -> None:
    """Rule ``tb_moments``: Chebyshev moments of this chunk's random vectors (see module doc).

    With ``tb_moments.mpi_ranks`` > 1 the job starts that many MPI processes (``srun`` inside a
    SLURM allocation, else ``mpirun``; :mod:`.tb_mpi`) which call this function with their
    communicator ``comm``: each holds one domain of the Hamiltonian (:mod:`.tightbinding.distributed`)
    and rank 0 writes the output.
    """
    cfg = ctx.section("tb_moments")
    sample = str(ctx.wildcards.get("sample", ""))
    chunk = int(ctx.wildcards.get("chunk", 0))
    n_chunks = int(cfg["n_chunks"])
    if not 0 <= chunk < n_chunks:
        raise UserError(f"chunk {chunk} outside 0..{n_chunks - 1} (tb_moments.n_chunks)", "config")
    if comm is None and int(cfg.get("mpi_ranks", 1)) > 1:
        from .tb_mpi import launch

        launch(ctx, int(cfg["mpi_ranks"]), cfg.get("mpi_launcher", "auto"))
        return
    rank0 = comm is None or comm.Get_rank() == 0
    if comm is not None:                        # each rank prepares its domain only, where that applies
        from .tb_mpi import run_domain

        if run_domain(ctx, cfg, comm, sample, chunk):
            return
    try:
        atoms, source, params, st, ham = _model_setup(ctx, cfg, build_matrix=comm is None)
    except NotApplicable as err:
        if rank0:
            _write_not_applicable(ctx, str(err), summary=False)
        return
    if comm is not None:
        op, bounds, orbital_site, info = _mpi_operator(ctx, cfg, comm, st, params, sample)
    else:
        ctx.log.info("tight binding: %d atoms (%d removed, %d dangling bonds, %s), %d spin-orbitals, "
                     "nnz %d", st.n_host, st.n_removed, st.n_dangling, st.passivation,
                     ham.n_spin_orbitals, ham.info["nnz"])
        orbital_site = ham.orbital_site
        info = ham.info
    parts = _partitions(atoms, st.atom_index, cfg)
    n_vec = int(cfg["vectors_per_region"])
    tasks = _tasks(parts, n_vec)
    mine = tasks[chunk::n_chunks]
    if comm is None:
        op = _operator(ham, cfg)
        bounds = _bounds(ctx, cfg, ham, sample)
    a, b = kpm.rescaling(bounds)
    N = int(cfg["n_moments"])
    ctx.log.info("spectral bounds %.2f..%.2f eV, %d moments (resolution ~%.3f eV), %d of %d vectors, "
                 "backend %s", bounds[0], bounds[1], N, kpm.jackson_sigma_eV(a, N), len(mine),
                 len(tasks), op.backend)
    site_of_row = st.parent[orbital_site]
    rows_of = {}
    for fam, (labels, lab_site, _) in parts.items():
        lab_row = lab_site[site_of_row]
        for lab in labels:
            rows_of[(fam, lab)] = np.nonzero(lab_row == lab)[0]
    row_sets = [rows_of[(f, lab)] for f, lab, _ in mine]
    rngs = [rng(ctx.seed, "tb", sample, f"{f}:{lab}", v) for f, lab, v in mine]
    ckpt = _checkpoint(ctx, cfg, sample, chunk, mine, bounds, op)
    mu = kpm.stochastic_moments(
        op, row_sets, rngs, a, b, N, block_size=int(cfg["block_size"]),
        progress=lambda i, n: ctx.progress(i, n, "tb random vectors"),
        step_progress=lambda k, K: ctx.progress(k, K, "tb Chebyshev products (block)"),
        checkpoint=ckpt)
    ctx.log.info("tb moments done: %d vectors", len(mine))
    if comm is not None:
        _log_mpi(ctx, op)
        if not rank0:
            comm.Barrier()                       # rank 0 has written the output
            if ckpt is not None:
                ckpt.clear()
            return

    out = moments_result(cfg, sample=sample, chunk=chunk, seed=ctx.seed, bounds=bounds, backend=op.backend,
                         source=source, tasks=tasks, mine=mine, row_sets=row_sets, mu=mu, parts=parts,
                         rows_of=rows_of, params=params, info=info, atoms=atoms, st=st,
                         n_saved=ckpt.n_saved if ckpt is not None else 0)
    with ctx.h5("h5") as f:
        out.write(f)
    if comm is not None:
        comm.Barrier()
    if ckpt is not None:
        ckpt.clear()


def moments_result(cfg: dict, *, sample, chunk, seed, bounds, backend, source, tasks, mine, row_sets, mu, parts,
                   rows_of, params, info, atoms, st, n_saved) -> TbMoments:
    """The tb/moments_<chunk>.h5 content (:class:`temtwin.results.tb_moments.TbMoments`) of one chunk:
    per-vector moments ``mu`` (tasks ``mine``), their sums per partition, the partitions, the Hamiltonian
    options and (chunk 0) the structure used (nm)."""
    a, b = kpm.rescaling(bounds)
    N = int(cfg["n_moments"])
    out = TbMoments()
    out.attrs[""] = {"applicable": True, "reason": "", "sample": sample, "chunk": chunk,
                     "n_chunks": int(cfg["n_chunks"]), "seed": seed, "n_moments": N,
                     "bounds_eV": np.asarray(bounds), "a_eV": a, "b_eV": b, "backend": backend,
                     "structure_source": source, "settings": _settings_digest(cfg), "n_tasks_total": len(tasks),
                     "checkpoints_written": n_saved}
    out.put_table("tasks", {
        "family": (np.array([t[0] for t in mine], dtype=object), "1"),
        "label": (np.array([t[1] for t in mine], dtype=object), "label"),
        "vector": (np.array([t[2] for t in mine], np.int64), "1"),
        "n_spin_orbitals": (np.array([2 * len(r) for r in row_sets], np.int64), "1")})
    out.put("moments", mu.reshape(len(mine), N), "1",
            description="per-vector Chebyshev moments <v|T_n(H~)|v>, rows as /tasks")
    for fam, (labels, _, _) in parts.items():
        for lab in labels:
            sel = [k for k, t in enumerate(mine) if t[0] == fam and t[1] == lab]
            out.put(f"sums/{fam}/{lab}", mu[sel].sum(axis=0) if sel else np.zeros(N), "1", n_vectors=len(sel))
    for fam, (labels, lab_site, extra) in parts.items():
        counts = np.array([extra["n_atoms"][lab] if "n_atoms" in extra else int(np.sum(lab_site == lab))
                           for lab in labels])
        n_so = np.array([2 * len(rows_of[(fam, lab)]) for lab in labels])
        cols = {"label": (np.array(labels, dtype=object), "label"), "n_atoms": (counts, "1"),
                "n_spin_orbitals": (n_so, "1")}
        if "center_nm" in extra:
            cols["center_nm"] = (np.array([extra["center_nm"][lab] for lab in labels]), "nm")
        out.put_table(f"partitions/{fam}", cols, **({"growth_direction": extra["growth_direction"]}
                                                    if "growth_direction" in extra else {}))
    out.attrs["parameters"] = {"settings": _settings_digest(cfg), "sources": params.sources,
                               "table": params.extra["path"].split("/resources/")[-1],
                               "vbo_shift_eV": params.vbo_shift, **info}
    if chunk == 0:
        out.put("structure/positions", atoms.get_positions()[st.atom_index] / 10.0, "nm")
        out.put("structure/numbers", atoms.numbers[st.atom_index].astype(np.int16), "1")
        out.put("structure/atom_index", st.atom_index, "1")
        out.put("structure/cell", np.asarray(atoms.cell[:]) / 10.0, "nm")
        out.put("structure/pbc", np.asarray(atoms.pbc, bool), "1")
        out.attrs["structure"] = {k: atoms.info[k] for k in ("pixel_size_nm", "image") if k in atoms.info}
    return out


def checkpoint_path(output_h5) -> str:
    """The moment checkpoint beside a ``tb_moments`` output (``moments_<chunk>.h5.ckpt.npz``)."""
    return f"{output_h5}.ckpt.npz"


def _checkpoint(ctx, cfg, sample, chunk, mine, bounds, op):
    """The job's :class:`kpm.MomentCheckpoint`, or None when ``checkpoint_every_moments`` is 0."""
    every = int(cfg.get("checkpoint_every_moments", 0))
    if every <= 0:
        return None
    key = json.dumps({"settings": _settings_digest(cfg), "sample": sample, "chunk": chunk,
                      "n_chunks": int(cfg["n_chunks"]), "seed": ctx.seed, "tasks": mine,
                      "bounds": list(bounds), "backend": op.backend, "n_rows": op.n_rows,
                      "block_size": int(cfg["block_size"]), "dtype": str(op.cdtype)}, sort_keys=True)
    path = checkpoint_path(ctx.output["h5"])
    if hasattr(op, "comm"):
        path = path.replace(".ckpt.npz", f".ckpt.rank{op.rank}of{op.size}.npz")
    return kpm.MomentCheckpoint(path, key, every, log=ctx.log)


# ----------------------------------------------------------------------------- gather / LDOS
def band_edges(energies: np.ndarray, rho: np.ndarray, window=(-0.5, 2.0), states: float = 0.002):
    """(E_v, E_c, E_mid) eV of an LDOS per atom (see module doc); NaN where not found.

    ``E_mid`` = minimum of ρ inside ``window``; ``E_v`` (``E_c``) = the energy below (above) ``E_mid``
    where ρ integrated from ``E_mid`` reaches ``states`` states/atom.
    """
    E = np.asarray(energies, float)
    rho = np.asarray(rho, float)
    m = (E >= window[0]) & (E <= window[1])
    if not m.any() or len(E) < 2:
        return np.nan, np.nan, np.nan
    im = int(np.nonzero(m)[0][np.argmin(rho[m])])
    dE = np.diff(E)
    # cumulative trapezoids outward from E_mid
    seg = 0.5 * (np.clip(rho[1:], 0, None) + np.clip(rho[:-1], 0, None)) * dE
    down = np.cumsum(seg[:im][::-1])                 # down[k]: integral from E[im-1-k] to E[im]
    up = np.cumsum(seg[im:])                         # up[k]: integral from E[im] to E[im+1+k]
    kd = np.nonzero(down >= states)[0]
    ku = np.nonzero(up >= states)[0]
    ev = E[im - 1 - kd[0]] if len(kd) else np.nan
    ec = E[im + 1 + ku[0]] if len(ku) else np.nan
    return float(ev), float(ec), float(E[im])


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


def run_ldos(ctx) -> None:
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
        _write_not_applicable(ctx, g["reason"], summary=True)
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
    from . import tb_states
    from .tightbinding.structure import prepare_structure as _prep

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
