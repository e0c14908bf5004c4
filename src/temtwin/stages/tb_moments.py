"""Stage ``tb_moments``: KPM moments of one chunk of random vectors (the gather and LDOS: :mod:`.tb_ldos`).

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
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import NotApplicable, UserError
from ..results.tb_moments import TbMoments
from ..workflow.seeds import rng
from ..physics import kpm
from ..physics.growth import bin_index, growth_coordinate_nm, growth_direction
from ..physics.tightbinding import TBOperator, build_hamiltonian, load_parameters, prepare_structure
from ..physics.tightbinding.matrix_free import MatrixFreeOperator, build_matrix_free

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


def _rows_of(parts: dict, site_of_row: np.ndarray) -> dict:
    """(family, label) -> the Hamiltonian rows (orbitals) of that partition's atoms (``site_of_row``: host
    site of every row)."""
    rows_of = {}
    for fam, (labels, lab_site, _) in parts.items():
        lab_row = lab_site[site_of_row]
        for lab in labels:
            rows_of[(fam, lab)] = np.nonzero(lab_row == lab)[0]
    return rows_of


def _tasks(parts: dict, n_vec: int) -> list[tuple[str, str, int]]:
    tasks = [(fam, lab, v) for fam, (labels, _, _) in parts.items() for lab in labels
             for v in range(n_vec)]
    return sorted(tasks, key=lambda t: (t[0], _label_key(t[1]), t[2]))


def _label_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


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
        from ..physics.tightbinding.operator import _cuda_available

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
    from ..physics.tightbinding.distributed import DistributedOperator

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


def run(ctx, comm=None) -> None:
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
        from ..physics.tb_mpi import launch

        launch(ctx, int(cfg["mpi_ranks"]), cfg.get("mpi_launcher", "auto"))
        return
    rank0 = comm is None or comm.Get_rank() == 0
    if comm is not None:                        # each rank prepares its domain only, where that applies
        from ..physics.tb_mpi import run_domain

        if run_domain(ctx, cfg, comm, sample, chunk):
            return
    try:
        atoms, source, params, st, ham = _model_setup(ctx, cfg, build_matrix=comm is None)
    except NotApplicable as err:
        if rank0:
            ctx.not_applicable(str(err), None)     # tb_ldos reports it in the summary
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
    rows_of = _rows_of(parts, st.parent[orbital_site])
    mu, row_sets, ckpt = chunk_moments(ctx, cfg, sample, chunk, mine, len(tasks), bounds, op, rows_of)
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


def chunk_moments(ctx, cfg: dict, sample: str, chunk: int, mine, n_tasks: int, bounds, op, rows_of):
    """KPM moments of this chunk's random vectors ``mine`` ((family, label, vector) tasks; their rows
    from ``rows_of``) on operator ``op`` within spectral ``bounds`` (eV), with the moment checkpoint
    (one process or every MPI rank alike).  Returns (mu, row_sets, checkpoint or None)."""
    a, b = kpm.rescaling(bounds)
    N = int(cfg["n_moments"])
    ctx.log.info("spectral bounds %.2f..%.2f eV, %d moments (resolution ~%.3f eV), %d of %d vectors, "
                 "backend %s", bounds[0], bounds[1], N, kpm.jackson_sigma_eV(a, N), len(mine), n_tasks,
                 op.backend)
    row_sets = [rows_of[(f, lab)] for f, lab, _ in mine]
    rngs = [rng(ctx.seed, "tb", sample, f"{f}:{lab}", v) for f, lab, v in mine]
    ckpt = _checkpoint(ctx, cfg, sample, chunk, mine, bounds, op)
    mu = kpm.stochastic_moments(
        op, row_sets, rngs, a, b, N, block_size=int(cfg["block_size"]),
        progress=lambda i, n: ctx.progress(i, n, "tb random vectors"),
        step_progress=lambda k, K: ctx.progress(k, K, "tb Chebyshev products (block)"),
        checkpoint=ckpt)
    ctx.log.info("tb moments done: %d vectors", len(mine))
    return mu, row_sets, ckpt


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
