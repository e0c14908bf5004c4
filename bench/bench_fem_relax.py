"""fem_relax and spin_orbit: analytic and independent-model checks, relaxation vs lamella thickness,
eigenstrain-fit coverage on a family of noisy synthetic measurements, and timings.

Sections written: bench/results/fem_relax.md and bench/results/spin_orbit.md.
Run: ``.venv/bin/python bench/bench_fem_relax.py [--quick | --speed-only]`` (--quick skips the 10⁵-element
timings and the Keating slabs; --speed-only refreshes the speed table of bench/results/fem_relax.md;
--keating-only / --convergence-only refresh those tables in place, with --spin-orbit also the spin_orbit
section; --spin-orbit-only writes bench/results/spin_orbit.md alone, tight-binding cross-check included;
``--demo-fit RESULTS`` writes or refreshes the section on the stage's fit: its calibration on generated
measurements and the diagnosis of the demo's fit, from the demo's results folder RESULTS, made with
``snakemake --cores 1 --config dataset=resources/demo results=RESULTS -- RESULTS/sige_qw_device/fem/relax.h5``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, md_table, peak_rss_mb, write_section  # noqa: E402

from temtwin.fem_relax.materials import MaterialTable, eigenstrain, rotate_stiffness, strain_voigt  # noqa: E402
from temtwin.fem_relax.model import fit_deltas  # noqa: E402
from temtwin.fem_relax.solver import solve_device, solve_lamella  # noqa: E402
from temtwin.fem_relax.validation import R110, keating_vs_fem_slab, layered_device  # noqa: E402

QUICK = "--quick" in sys.argv


def load() -> str:
    try:
        return ", load average %.1f" % os.getloadavg()[0]
    except OSError:
        return ""


def pseudomorphic_rows():
    from skfem import MeshTri

    tab = MaterialTable()
    rows = []
    for layer, sub in (("Ge", "Si0.3Ge0.7"), ("Si", "Si0.2Ge0.8"), ("GaAs", "InP"), ("InSb", "InAs")):
        for name, R in (("(001) section", np.eye(3)), ("[110] section", R110)):
            lay, su = tab.get(layer), tab.get(sub)
            m = MeshTri.init_tensor(np.linspace(0, 40, 21), np.linspace(0, 30, 16))
            nodes, tri = m.p.T, m.t.T
            inl = nodes[tri].mean(1)[:, 1] > 20
            C = np.where(inl[:, None, None], rotate_stiffness(lay.C, R), rotate_stiffness(su.C, R))
            e0 = eigenstrain(lay, su, R)
            E0 = np.zeros((len(tri), 6))
            E0[inl] = strain_voigt(e0)
            s = solve_device(nodes, tri, C, E0[None]).strain[0][inl]
            ratio = (s[:, 1].mean() - e0[1, 1]) / (-e0[0, 0])
            exact = -2 * lay.C[0, 1] / lay.C[0, 0]
            rows.append([f"{layer} on {sub}", name, f"{-e0[0, 0]:+.4f}", ratio, exact,
                         f"{100 * (ratio / exact - 1):+.2e} %"])
    return rows


def well_means(nodes, tri, C, E0, in_w, area, t, n_layers):
    dev = solve_device(nodes, tri, C, E0[None]).strain[0]
    lam = solve_lamella(nodes, tri, C, E0[None], t, n_layers).strain[0]
    el_d, el_l = dev - E0, lam - E0
    w = area[in_w]

    def mean(a, j):
        return float(np.average(a[in_w, j], weights=w))
    return {"eyy_total": (mean(dev, 1), mean(lam, 1)), "eyy_el": (mean(el_d, 1), mean(el_l, 1)),
            "ezz_el": (mean(el_d, 2), mean(el_l, 2)), "exx_el": (mean(el_d, 0), mean(el_l, 0))}


def thickness_curve():
    nodes, tri, C, E0, in_w, area = layered_device(width_nm=200.0, h_nm=2.0)
    rows = []
    for t in (5, 10, 20, 40, 80, 120, 200):
        n_layers = int(np.clip(round(t / 4), 4, 10))
        r = well_means(nodes, tri, C, E0, in_w, area, float(t), n_layers)
        rel = {k: 100 * (1 - v[1] / v[0]) for k, v in r.items()}
        rows.append([t, n_layers, f"{rel['eyy_total']:.1f} %", f"{rel['eyy_el']:.1f} %", f"{rel['ezz_el']:.1f} %",
                     f"{rel['exx_el']:.1f} %", r["eyy_total"][1]])
    return rows, len(tri)


def convergence():
    """Relaxation of the well's ε_yy (t = 40 nm, 100 nm wide) on three meshes refined by 2 in every
    direction (in-plane size h in the well, graded layers through the thickness); Richardson extrapolation
    with the observed order and Roache's grid-convergence index (safety factor 1.25) as error estimate."""
    rows, f = [], []
    for h, nl in ((4.0, 4), (2.0, 8), (1.0, 16)):
        nodes, tri, C, E0, in_w, area = layered_device(width_nm=100.0, h_nm=h)
        r = well_means(nodes, tri, C, E0, in_w, area, 40.0, nl)
        f.append(100 * (1 - r["eyy_total"][1] / r["eyy_total"][0]))
        rows.append([h, nl, len(tri), len(tri) * 3 * nl, r["eyy_total"][0], r["eyy_total"][1], f[-1]])
    p = float(np.log((f[1] - f[0]) / (f[2] - f[1])) / np.log(2.0))
    f_inf = f[2] + (f[2] - f[1]) / (2**p - 1)
    gci = 1.25 * abs(f[2] - f[1]) / (2**p - 1)
    return rows, p, f_inf, gci


def convergence_section() -> str:
    rows, p, f_inf, gci = convergence()
    return ("### Mesh convergence (100 nm wide device, t = 40 nm, relaxation of eyy total in %)\n\n"
            "Three meshes, each refined by 2 in every direction (in-plane element size h in the well, graded "
            "layers through the thickness). The device (plane strain) value is mesh-independent here (a "
            "pseudomorphic layer is exact on linear elements); all the error is in the lamella.\n\n"
            + md_table(["h in the well (nm)", "layers", "triangles", "tetrahedra", "device ε_yy", "lamella ε_yy",
                        "relaxation %"], rows)
            + f"\n\nRichardson extrapolation: observed order p = {p:.2f} (below 2: the strain is singular where "
              f"the well interfaces meet the free surfaces), converged relaxation {f_inf:.2f} % ± {gci:.2f} % "
              f"(grid-convergence index, safety factor 1.25); the finest mesh is {f_inf - rows[-1][-1]:.2f} points "
              f"below it, the h = 2 nm / 8-layer mesh {f_inf - rows[1][-1]:.2f} points below. The thickness curve "
              "above uses h = 2 nm and ≤ 10 layers: its relaxations are low by about that much.")


def fit_family(n_cases: int = 24, seed: int = 20261205):
    """Synthetic measurements: lamella strain of a 16 nm well (random true mismatch, thickness error,
    GPA-like correlated noise with σ, calibration error 1 %), region means → fit → coverage."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    nodes, tri, C, E0, in_w, area = layered_device(width_nm=120.0, substrate_nm=40.0, cap_nm=20.0, h_nm=2.0)
    unit = E0.copy()
    unit[in_w] = strain_voigt(np.eye(3))
    cases = []
    lam_cache = {}
    for t in (30.0, 40.0, 48.0, 50.0):
        lam_cache[t] = solve_lamella(nodes, tri, C, unit[None], t, 6).strain[0]
    dev_unit = solve_device(nodes, tri, C, unit[None]).strain[0]
    # pixel grid 0.5 nm: triangle of every pixel
    from matplotlib.tri import Triangulation

    T = Triangulation(nodes[:, 0], nodes[:, 1], tri)
    xs, ys = np.meshgrid(np.arange(0, 120, 0.5), np.arange(0, 76, 0.5))
    tp = T.get_trifinder()(xs.ravel(), ys.ravel()).reshape(xs.shape)
    ok = tp >= 0
    w_pix = ok & in_w[np.maximum(tp, 0)]
    b_pix = ok & ~in_w[np.maximum(tp, 0)]
    res_nm, px = 2.0, 0.5
    n_res = (res_nm / px) ** 2
    for i in range(n_cases):
        d_true = rng.uniform(0.008, 0.016)
        t_true = float(rng.choice([30.0, 50.0]))
        sigma_pix = rng.uniform(2e-4, 1.5e-3)
        calib = 1 + rng.normal(0, 0.01)
        U = lam_cache[t_true][:, 1][np.maximum(tp, 0)]
        noise = ndimage.gaussian_filter(rng.standard_normal(tp.shape), res_nm / px / 2.355)
        noise *= sigma_pix / noise.std()
        meas = (d_true * U * calib + (calib - 1)) + noise            # calibration error: scale + offset vs ref
        meas -= meas[b_pix].mean()                                   # GPA: strain relative to the reference
        A, y, s = [], [], []
        model_U = lam_cache[40.0][:, 1][np.maximum(tp, 0)]            # fitted with the nominal 40 nm
        model_U2 = lam_cache[48.0][:, 1][np.maximum(tp, 0)]           # ... and at 40 + σ_t (σ_t = 20 %)
        A2 = []
        for sel in (w_pix, b_pix):
            n_eff = sel.sum() / n_res
            A.append([model_U[sel].mean()])
            A2.append([model_U2[sel].mean()])
            y.append(meas[sel].mean())
            s.append(max(sigma_pix / np.sqrt(n_eff), 1e-4))
        f = fit_deltas(np.array(A), np.array(y), np.array(s), np.array([0.012]))
        f2 = fit_deltas(np.array(A2), np.array(y), np.array(s), np.array([0.012]))
        sig_noise = f.sigma[0]
        f.sigma = np.sqrt(f.sigma**2 + (f2.delta - f.delta) ** 2)      # as the stage does
        dev_true = d_true * float(np.average(dev_unit[in_w, 1], weights=area[in_w]))
        dev_fit = f.delta[0] * float(np.average(dev_unit[in_w, 1], weights=area[in_w]))
        cases.append([i, t_true, d_true, f.delta[0], sig_noise, f.sigma[0], abs(f.delta[0] - d_true) / sig_noise,
                      abs(f.delta[0] - d_true) / f.sigma[0], 100 * (dev_fit / dev_true - 1)])
    return cases


def fit_section() -> str:
    fam = fit_family()
    z0 = np.array([c[6] for c in fam])
    z = np.array([c[7] for c in fam])
    devr = np.array([c[8] for c in fam])
    return (
        "### Eigenstrain fit on a family of synthetic measurements\n\n"
        f"{len(fam)} cases (seed 20261205): true Ge/SiGe mismatch uniform in [0.008, 0.016]; true lamella 30 or "
        "50 nm while the fit assumes 40 nm (thickness error); GPA-like noise (Gaussian-correlated over a 2 nm "
        "resolution, σ per pixel 2·10⁻⁴–1.5·10⁻³); calibration error 1 % (scale and offset, removed by "
        "referencing to the substrate as GPA does). Fit of the region means, σ_noise from the noise with n_eff = "
        "area/resolution² (inflated by χ²); σ adds the lamella-thickness term of the stage (refit at t + σ_t, "
        "σ_t = 20 % of t = 8 nm).\n\n"
        f"Fraction of cases with |δ_fit − δ_true| < 2σ: {np.mean(z < 2):.2f} with σ (noise only: "
        f"{np.mean(z0 < 2):.2f}); implied device strain error: median {np.median(np.abs(devr)):.1f} %, max "
        f"{np.max(np.abs(devr)):.1f} % (the ±10 nm thickness error dominates).\n\n"
        + md_table(["case", "t true", "δ true", "δ fit", "σ_noise", "σ", "|Δ|/σ_noise", "|Δ|/σ", "device ε error %"],
                   fam[:8]) + "\n\n(first 8 cases shown)")


def speed():
    """Wall and CPU time (process time: the machine is shared) of a 10⁵-element 2D and 3D solve."""
    rows = []
    nodes, tri, C, E0, in_w, area = layered_device(width_nm=400.0, substrate_nm=100.0, cap_nm=40.0, well_nm=16.0,
                                                   h_nm=0.4)
    t0, c0 = time.perf_counter(), time.process_time()
    solve_device(nodes, tri, C, E0[None])
    rows.append(["device (2D plane strain)", len(tri), 3 * len(nodes), time.perf_counter() - t0,
                 time.process_time() - c0, "≤ 30 s"])
    nodes, tri, C, E0, in_w, area = layered_device(width_nm=200.0, substrate_nm=60.0, cap_nm=30.0, h_nm=1.6)
    nl = max(2, int(round(1e5 / (3 * len(tri)))))
    t0, c0 = time.perf_counter(), time.process_time()
    r = solve_lamella(nodes, tri, C, E0[None], 40.0, nl)
    rows.append([f"lamella (3D, {nl} layers)", len(r.system.cells), 3 * len(r.system.nodes),
                 time.perf_counter() - t0, time.process_time() - c0, "≤ 300 s"])
    return rows


KEATING_CASES = ([dict(n_x=4, n_beam=6, seed=k) for k in (1, 2, 3, 4, 5, 6)]
                 + [dict(n_x=4, n_beam=12, seed=k) for k in (1, 2, 3)]
                 + [dict(n_x=4, n_beam=24, seed=k) for k in (1, 2)]
                 + [dict(n_x=4, n_well=10, n_beam=8, seed=1)])


def keating_section() -> str:
    """Keating (atomistic) vs 3D FEM on a family of random-alloy slabs (seeds × thicknesses), one well-strain
    estimator on both; the first-and-last-plane estimator shown beside it (why the 2.4 nm slab failed)."""
    kv, d_fit, d_ends, by_t, ends_t = [], [], [], {}, {}
    for kw in KEATING_CASES:
        r = keating_vs_fem_slab(**kw)
        df = 100 * (r["eps_yy_fem_lamella"] / r["eps_yy_keating"] - 1)
        de = 100 * (r["eps_yy_fem_lamella_ends"] / r["eps_yy_keating_ends"] - 1)
        d_fit.append(df)
        d_ends.append(de)
        by_t.setdefault(round(r["thickness_nm"], 1), []).append(df)
        ends_t.setdefault(round(r["thickness_nm"], 1), []).append(de)
        kv.append([str(kw), r["n_atoms"], r["thickness_nm"], r["well_nm"], r["eps_yy_keating"],
                   r["eps_yy_fem_lamella"], f"{df:+.1f} %", f"{de:+.1f} %", r["eps_yy_fem_lamella_volume"],
                   r["eps_yy_fem_device"]])
    trend = "; ".join(f"t = {t} nm: mean {np.mean(v):+.1f} % (n = {len(v)})" for t, v in sorted(by_t.items()))
    ends = "; ".join(f"t = {t} nm: rms {np.sqrt(np.mean(np.square(v))):.1f} %" for t, v in sorted(ends_t.items()))
    ok = int(np.sum(np.abs(d_fit) <= 5.0))
    return (
        "### Thin-foil relaxation: Keating (atomistic) versus FEM (target: mean well strain within 5 %)\n\n"
        "Ge well in random Si0.3Ge0.7 (temtwin.physics.keating, relaxed to 10⁻⁵ eV/Å, free [110] surfaces, "
        "bottom buffer cell fixed, periodic along [1−10]) against the 3D lamella FEM with the Keating model's own "
        "constants and each alloy layer's actual composition (temtwin.fem_relax.validation.keating_vs_fem_slab). "
        "ε_yy: growth strain of the well relative to the buffer lattice, measured with ONE estimator on both "
        "models: the least-squares slope of the mean heights of the well's (004) planes (FEM: u_y on the mesh "
        "rows that lie on those planes, averaged over x and the thickness). 'ends': the earlier estimator, "
        "(last − first plane) / ideal, on both models.\n\n"
        + md_table(["case", "atoms", "t (nm)", "well (nm)", "ε_yy Keating", "ε_yy FEM lamella", "difference",
                    "difference 'ends'", "FEM lamella, area mean", "ε_yy FEM device"], kv)
        + f"\n\n**{ok}/{len(d_fit)} slabs within 5 %** (max |difference| {np.max(np.abs(d_fit)):.1f} %, "
          f"rms {np.sqrt(np.mean(np.square(d_fit))):.1f} %). By thickness: {trend}. With the 'ends' estimator the "
          f"same slabs scatter by ±{np.max(np.abs(d_ends)):.1f} % ({ends}): the scatter falls as the planes get "
          "more atoms (n_x·n_beam), the signature of atomic-scale noise, not of a continuum effect."
          "\n\nWhy the 2.4 nm slab (seed 2) was +9.1 % before: a definition defect, not a limit of continuum "
          "elasticity. The old Keating strain was (last − first plane of the well) / ideal, while the FEM value was "
          "the area mean of ε_yy. Each end plane (~n_x·n_beam = 24 atoms) is bonded to a random Si/Ge plane whose "
          "static, non-elastic bond-length displacements do not average out in a 1344-atom slab; the FEM, "
          "smooth, has none. One estimator applied to both models (the plane-height slope) removes most of it; "
          "what remains is a small offset (FEM below Keating by about 1 %, mean per thickness above) that does "
          "not grow as the slab thins: continuum elasticity with the Keating constants describes these lamellae "
          "down to 2.4 nm (4 [110] unit cells) within the 5 % target; the unreconstructed Keating surfaces add "
          "no visible thin-film effect. Validity range: t ≥ 2.4 nm and well ≥ 3.4 nm, for strains averaged "
          "over the well; a single plane spacing next to a random alloy is not a continuum quantity.\n")


SPEED_NOTE = ("\n\nSolver: sparse LU below 2·10⁴ dofs, else conjugate gradients with smoothed-aggregation AMG (pyamg, "
              "rigid-body near-null space), relative tolerance 10⁻⁸; times include assembly, one thread. CPU time is "
              "the process time (the 2 cores were shared with other jobs; wall time is what a quiet machine would "
              "approach). The limit is the memory bandwidth of the sparse matrix–vector products.")


def speed_section() -> str:
    return ("### Speed (2 cores shared with other jobs" + load() + ")\n\n"
            + md_table(["problem", "elements", "dofs", "wall (s)", "CPU (s)", "target"], speed()) + SPEED_NOTE)


def tb_section() -> str:
    """Tight-binding cross-check: sheared Ge/Si superlattice (sp3d5s*, temtwin.physics.tightbinding) vs k·p."""
    from temtwin.physics.tightbinding.sheared_well import sheared_well_alpha
    from temtwin.spin_orbit.kp import Profile, alloy_parameters, linear_soi

    n_well, n_barrier, k = 28, 20, 0.05
    L = n_well * 0.5658 / 4

    def kp(g, d):
        h = 0.05
        z = np.arange(-L / 2 + h, L / 2 - h / 2, h)
        e = np.zeros((len(z), 3, 3))
        e[:, 0, 2] = e[:, 2, 0] = g * z
        return linear_soi(Profile(z, alloy_parameters(np.ones(len(z))), e), np.asarray(d, float), k).alpha_signed_eV_nm

    rows = []
    t0 = time.perf_counter()
    for g, d, name in ((2e-3, (0, 1, 0), "[010]"), (-2e-3, (0, 1, 0), "[010]"), (4e-3, (0, 1, 0), "[010]"),
                       (2e-3, (1, 0, 0), "[100]")):
        tb = sheared_well_alpha(n_well, n_barrier, g, d, k)
        a_kp = kp(g, d)
        rows.append([f"{g:+.0e}", name, tb.alpha_signed_eV_nm, a_kp,
                     f"{tb.alpha_signed_eV_nm / a_kp:.2f}" if abs(a_kp) > 1e-12 else "—",
                     f"{tb.sz_k[0]:+.3f} / {tb.sz_k[1]:+.3f}"])
    dt = (time.perf_counter() - t0) / len(rows)
    return (
        "### Tight-binding cross-check (sign and order of magnitude)\n\n"
        f"temtwin's sp3d5s* tight binding (strain and spin–orbit on; temtwin.physics.tightbinding.sheared_well): "
        f"a [001] superlattice of {n_well} Ge monolayers ({L:.2f} nm) and {n_barrier} Si monolayers, all on the Ge "
        "lattice, periodic in 3D (tetragonal a/√2 × a/√2 cell, one atom per monolayer, kz = 0), atoms displaced "
        "by u_x(z) = 2∫ε_xz dz with ε_xz = g(z − z_c) in the well and a zero-mean return ramp in the barrier (no "
        "internal relaxation). α_s from the top valence doublet at k and 2k (k = 0.05 rad/nm), ⇑ = ⟨σ_z⟩ > 0 "
        "(heavy hole +3/2 has spin up). k·p: the same Ge well, unstrained, hard walls, ε_xz = g z. "
        f"{dt:.0f} s per row on the shared 2 cores (dense 960 × 960 Bloch Hamiltonians).\n\n"
        + md_table(["∂ε_xz/∂z (1/nm)", "k along", "α_s TB (eV nm)", "α_s k·p (eV nm)", "TB / k·p",
                    "⟨σ_z⟩ of the two states (TB, at k)"], rows)
        + "\n\nSame sign, same linear response, magnitudes within ~25 % (the k·p well has hard walls, the TB "
          "well finite, strained-Si barriers, and no internal strain relaxation). For k along [100] the k·p term "
          "vanishes exactly; TB keeps a ~1 % remainder (the atomistic D2d symmetry of the interfaces).\n")


def spin_orbit_section():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_spin_orbit import DIR, hard_wall_profile, sine_basis_alpha

    from temtwin.spin_orbit.kp import linear_soi

    rows = []
    for g in (1e-6, 1e-5, 1e-4):
        t0 = time.perf_counter()
        r = linear_soi(hard_wall_profile(g), DIR)
        dt = time.perf_counter() - t0
        ref = sine_basis_alpha(g)
        rows.append([f"{g:.0e}", r.alpha_eV_nm, ref, f"{100 * (r.alpha_eV_nm / ref - 1):+.3f} %", r.inv_lso_per_um,
                     r.mass, f"{dt:.2f}"])
    ky = np.array([0.0, 1.0, 0.0])
    sign_rows = []
    for g, d, name in ((1e-5, ky, "[010]"), (-1e-5, ky, "[010]"), (1e-5, -ky, "[0−10]"), (1e-5, DIR, "[1−10]"),
                       (-1e-5, DIR, "[1−10]")):
        sign_rows.append([f"{g:+.0e}", name, linear_soi(hard_wall_profile(g), d).alpha_signed_eV_nm,
                          sine_basis_alpha(g, signed=True, direction=d)])
    conv = []
    for h in (0.4, 0.2, 0.1, 0.05):
        conv.append([h, linear_soi(hard_wall_profile(1e-5, h=h), DIR).alpha_eV_nm])
    u = [linear_soi(hard_wall_profile(0.0, s0), DIR).alpha_eV_nm for s0 in (0.0, 1e-3, 5e-3)]
    body = (
        "4×4 Luttinger–Kohn + Bir–Pikus (Ge: Lawaetz 1971; b, d: Chandrasekhar & Pollak 1977), 16 nm Ge well "
        "with hard walls, pseudomorphic on Si0.3Ge0.7, shear ε_xz = g·z (crystal axes), k along [1−10], "
        "k = 0.02 rad/nm. Finite differences (dz = 0.1 nm) against an independent small-matrix reference "
        "(24 sine functions of the infinite well per band, Gauss–Legendre matrix elements, dense "
        "diagonalisation; tests/test_spin_orbit.py).\n\n"
        + md_table(["dε_xz/dz (1/nm)", "α FD (eV nm)", "α sine basis (eV nm)", "difference", "1/l_so (µm⁻¹)",
                    "m∥ (m0)", "time per position (s)"], rows)
        + "\n\nLinear response: α(10⁻⁴)/α(10⁻⁶) = %.4g (exactly linear: 100).  Uniform strain (no gradient, "
          "uniform shear 0, 10⁻³, 5·10⁻³): α = %s eV nm (zero within round-off).\n\n" % (
              rows[2][1] / rows[0][1], ", ".join(f"{x:.1e}" for x in u))
        + "Grid convergence of α at g = 10⁻⁵/nm:\n\n" + md_table(["dz (nm)", "α (eV nm)"], conv)
        + "\n\n### Sign of α\n\nConvention (temtwin.spin_orbit.kp): crystal axes, growth z = [001] pointing from "
          "the substrate to the surface; ⇑/⇓ = the ground heavy-hole doublet member with ⟨J_z⟩ > 0 / < 0; electron "
          "energies (the hole ground doublet is the top of the spectrum); E(⇑) − E(⇓) = 2 α_s k for k along the "
          "stated in-plane direction (cubic term removed as for |α|). The shear-gradient term is diagonal in the "
          "heavy-hole pseudospin: α_s ∝ (k̂ × ∂ε/∂z)_z with ∂ε/∂z = (∂ε_xz/∂z, ∂ε_yz/∂z), so it flips with the "
          "gradient and with k. The spin_orbit stage writes α_s per position (`alpha_signed_eV_nm`, k along the "
          "beam, whose crystal direction is in the summary). FD solver against the independent sine-basis "
          "diagonalisation (⟨J_z⟩ from its eigenvectors):\n\n"
        + md_table(["∂ε_xz/∂z (1/nm)", "k along", "α_s FD (eV nm)", "α_s sine basis (eV nm)"], sign_rows)
        + "\n\n" + tb_section())
    write_section("spin_orbit", "spin_orbit: linear-in-k hole spin–orbit from shear-strain gradients", body)


def fit_calibration_rows(n_seeds: int = 40):
    """The stage's GPA fit on generated measurements (validation.gpa_fit_case, known eigenstrains, correlated
    noise of known σ): χ²_red and pulls of the fitted eigenstrains, with and without referencing the model
    to GPA's reference area."""
    from temtwin.stages import fem_relax as stage
    from temtwin.fem_relax.validation import gpa_fit_case, noisy_gpa_measurement

    model, ig, doc = gpa_fit_case()
    d_true = model.deltas_table() * [1.1, 1.0] + [0.0, 0.002]
    rows = []
    for referenced in (True, False):
        chi2, pulls = [], []
        for seed in range(n_seeds):
            gpa = noisy_gpa_measurement(model, ig, d_true, seed)
            if not referenced:
                gpa["reference"] = None
            f = stage.fit_function({"fit": True, "sigma_floor": 1e-6}, model, doc, gpa, ig, ig.region, {}, [])[0](
                model.lamella.strain)
            chi2.append(f.chi2_red)
            pulls.append((f.delta - d_true) / f.sigma)
        chi2, pulls = np.array(chi2), np.array(pulls)
        rows.append(["yes" if referenced else "no (before)", n_seeds, f"{chi2.mean():.2f}", f"{np.median(chi2):.2f}",
                     f"{np.mean(np.abs(pulls[:, 0]) < 1):.2f}", f"{np.mean(np.abs(pulls[:, 0]) < 2):.2f}",
                     f"{pulls[:, 0].mean():+.2f}", f"{np.mean(np.abs(pulls[:, 1]) < 2):.2f}"])
    return rows


def demo_fit_rows(results: str):
    """χ² of the demo's fit under alternative data / models: the GPA maps and the demo's TRUE strain field
    (every layer pseudomorphic to the buffer, uniform: exx = exy = 0, eyy = 0.0231 in the well), the
    compositions of the maps and of the truth, thickness 1.44 nm (simulate_image) and 2.0 nm (truth),
    lamella and device models, all pixels or those more than ~5.5 nm from the trench (x < 4 nm)."""
    from temtwin.stages import fem_relax as S
    from temtwin.fem_relax.materials import MaterialTable
    from temtwin.fem_relax.model import RelaxModel, build_regions
    from temtwin.results.fem import FemGeometry, read_regions_json
    from temtwin.results.segmentation import Segmentation

    R = Path(results) / "sige_qw_device"
    nodes, tri0, trr0 = FemGeometry.read(R / "fem/fem.h5", only=("mesh",)).mesh
    doc = read_regions_json(R / "fem/regions.json")
    gpa = S.read_gpa_maps(R / "hrtem/gpa.h5")
    seg = Segmentation.read_labels(R / "hrtem/segmentation.h5")
    px = tuple(doc["pixel_size_nm"])
    truth = {k: np.where(np.isfinite(gpa["strain"][k]), 0.0, np.nan) for k in ("exx", "eyy", "exy")}
    truth["eyy"] = np.where(seg == 3, 0.0231, truth["eyy"])
    x = np.arange(seg.shape[1])[None, :] * px[0] * np.ones((seg.shape[0], 1))
    rows = []
    for cname, comp in (("maps", {"1": "Si0.28Ge0.72", "3": "Si0.05Ge0.95", "4": "Si0.30Ge0.70"}),
                        ("truth", {"1": "Si0.30Ge0.70", "3": "Ge", "4": "Si0.30Ge0.70"})):
        regions, _ = build_regions(doc, MaterialTable(), 4, comp)
        keep = np.isin(trr0, list(regions))
        tri, trr = tri0[keep], trr0[keep]
        for t in ((1.44,) if cname == "maps" else (1.44, 2.0)):
            m = RelaxModel(nodes, tri, trr, regions, 4, t)
            m.solve(6, "roller")
            ig = S.ImageGrid(nodes, tri, trr, seg.shape, px)
            ref = S.gpa_reference_pixels(gpa, ig)
            for dname, strain in (("GPA", gpa["strain"]), ("truth field", truth)):
                if dname == "truth field" and cname == "maps":
                    continue
                for far in (None, 4.0):
                    g = dict(gpa, strain=strain, mask=gpa["mask"] & (x < far) if far else gpa["mask"])
                    data, sig, sels = S.gpa_region_means(g, ig, seg, sorted(regions), {"sigma_floor": 1e-4})
                    for mname, U in (("lamella", m.lamella.strain), ("device", m.device.strain)):
                        A = S.model_region_means(U, len(m.fitted_labels), ig, sels, ref)
                        f = fit_deltas(A, np.array(data), np.array(sig), m.deltas_table())
                        pulls = (np.array(data) - f.predicted) / np.array(sig)
                        worst = sorted(zip(pulls, sels), key=lambda q: -abs(q[0]))[:2]
                        rows.append([dname, cname, t, mname, "x < 4 nm" if far else "all",
                                     f"{m.deltas_table()[1]:.4f}", f"{f.delta[1]:.4f} ± {f.sigma[1]:.4f}",
                                     f"{f.chi2_red:.0f}",
                                     ", ".join(f"{q[1][0]} {q[1][1]} {q[0]:+.0f}" for q in worst)])
    return rows


def demo_fit_section(results: str) -> str:
    cal = fit_calibration_rows()
    demo = demo_fit_rows(results)
    return (
        "### The stage's fit to GPA: calibration and the demo\n\n"
        "Calibration (temtwin.fem_relax.validation.gpa_fit_case, the stage's own fit path): Si0.3Ge0.7 "
        "substrate (reference) / 4 nm Ge / 4 nm Si0.3Ge0.7 cap, free lateral edges, 10 nm lamella; measurement = "
        "lamella strain at known eigenstrains (Ge δ = 1.1 × table, cap δ = 0.002) referenced to GPA's reference "
        "area, plus correlated Gaussian noise (σ = 2·10⁻³ per pixel, known). 9 data, 2 parameters. "
        "'referenced': the model minus its mean over GPA's reference area, as GPA references the measurement "
        "(this change; before it, the model's own strain of the reference area biased the fit).\n\n"
        + md_table(["model referenced", "seeds", "mean χ²_red", "median χ²_red", "Ge |pull| < 1",
                    "Ge |pull| < 2", "Ge mean pull", "cap |pull| < 2"], cal)
        + "\n\nDemo (`sige_qw_device`, HRTEM geometry): χ²_red of the fit to the region means (σ = the stage's, "
          "at least GPA's own standard error), for the GPA maps and for the demo's TRUE strain field with the "
          "same σ (synth.device strains every layer uniformly to the buffer's in-plane lattice, also next to "
          "the vacuum trench and in a 2 nm foil: not an elastic equilibrium). δ well: eigenstrain of the "
          "well (table | fitted ± σ inflated by √χ²_red). 'worst': the two largest pulls (region, component).\n\n"
        + md_table(["data", "composition", "t (nm)", "model", "pixels", "δ well table", "δ well fit",
                    "χ²_red", "worst"], demo)
        + "\n\nThe demo's exact, noise-free truth field is fitted as badly as the GPA maps (χ²_red in the "
          "hundreds either way, the same worst data: the well's exx and eyy); the composition (maps vs truth) "
          "and the lamella thickness (1.44 vs 2.0 nm) hardly change it, nor does the device (plane-strain) "
          "model, and far from the trench it stays ≫ 1 because the roller-to-trench field lets the well expand "
          "laterally everywhere. The misfit is the demo's construction, not a defect of fem_relax or GPA: a "
          "coherent layer next to a free surface must relax (model exx ≈ 0.006 in the well), the demo's does "
          "not (exx = 0). The stage flags the fit inconsistent, names the worst data and inflates the σ of the "
          "eigenstrains and of the device strain by √χ²_red.")


def main():
    if "--demo-fit" in sys.argv:                         # write or refresh the fit calibration / demo section
        import re

        p = Path(__file__).resolve().parent / "results" / "fem_relax.md"
        sec = demo_fit_section(sys.argv[sys.argv.index("--demo-fit") + 1])
        txt = p.read_text()
        if "### The stage's fit to GPA" in txt:
            txt = re.sub(r"### The stage's fit to GPA.*?(?=\n\n### |\n\nTotal bench time)", lambda m: sec, txt,
                         flags=re.S)
        else:
            txt = re.sub(r"\n\n(?=### Thin-foil relaxation)", lambda m: "\n\n" + sec + "\n\n", txt, count=1)
        p.write_text(txt)
        return
    if "--speed-only" in sys.argv:                       # refresh the speed table of an existing section
        import re

        p = Path(__file__).resolve().parent / "results" / "fem_relax.md"
        txt = re.sub(r"### Speed.*?(?=\n\nTotal bench time)", lambda m: speed_section(), p.read_text(), flags=re.S)
        p.write_text(txt)
        return
    if "--spin-orbit-only" in sys.argv:
        spin_orbit_section()
        return
    if "--keating-only" in sys.argv or "--convergence-only" in sys.argv:   # refresh one table in place
        import re

        p = Path(__file__).resolve().parent / "results" / "fem_relax.md"
        txt = p.read_text()
        if "--keating-only" in sys.argv:
            txt = re.sub(r"### Thin-foil relaxation.*?(?=\n\n### Speed)", lambda m: keating_section().rstrip(),
                         txt, flags=re.S)
        if "--convergence-only" in sys.argv:
            txt = re.sub(r"### Mesh convergence.*?(?=\n\n### Eigenstrain fit)", lambda m: convergence_section(),
                         txt, flags=re.S)
        p.write_text(txt)
        if "--spin-orbit" in sys.argv:
            spin_orbit_section()
        return
    if "--fit-only" in sys.argv:                         # refresh the fit-family table of an existing section
        import re

        p = Path(__file__).resolve().parent / "results" / "fem_relax.md"
        txt = re.sub(r"### Eigenstrain fit.*?\(first 8 cases shown\)", lambda m: fit_section(), p.read_text(),
                     flags=re.S)
        p.write_text(txt)
        return
    t_all = time.perf_counter()
    parts = ["Machine: " + machine() + load() + ".\n"]
    parts.append("### Pseudomorphic layer (analytic ε⊥/ε∥ = −2 C12/C11 of the layer, target within 1 %)\n\n"
                 + md_table(["layer", "section", "ε∥", "FEM ε⊥/ε∥", "−2 C12/C11", "error"], pseudomorphic_rows()))
    rows, ntri = thickness_curve()
    parts.append(
        "### Relaxation of the well strain versus lamella thickness\n\n16 nm Ge well, 30 nm Si0.3Ge0.7 cap, "
        "relaxed Si0.3Ge0.7 substrate (60 nm, clamped at its bottom), 200 nm wide with roller sides, [110] "
        f"cross-section ({ntri} triangles). Relaxation = 1 − lamella/device of the well mean (lamella: thickness "
        "average, what a projection measures). eyy total: growth strain relative to the substrate lattice (what "
        "GPA measures); el: elastic strain relative to Ge's own lattice; z = beam [110], x = [1−10]. The paper "
        "(Botifoll et al., COMSOL) reports ~22 % at 40 nm for its device; the value depends on the geometry "
        "(well/cap thickness, component).\n\n"
        + md_table(["t (nm)", "layers", "eyy total", "eyy el", "ezz el (beam)", "exx el", "lamella eyy total"], rows))
    parts.append(convergence_section())
    parts.append(fit_section())
    if not QUICK:
        parts.append(keating_section())
        parts.append(speed_section())
    parts.append(f"Total bench time {time.perf_counter() - t_all:.0f} s, peak memory {peak_rss_mb():.0f} MB.")
    write_section("fem_relax", "fem_relax: device vs lamella elasticity, fit to GPA", "\n\n".join(parts))
    spin_orbit_section()


if __name__ == "__main__":
    main()
