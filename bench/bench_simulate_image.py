"""Bench of the simulate_image stage (issue 18): optics recovery on the held-in abTEM cases, speed, refinement.

Writes bench/results/simulate_image.md.  Run: ``python bench/bench_simulate_image.py [--quick]``.

Targets: on the held-in abTEM HRTEM cases (../shared/validation), defocus within 2 nm, thickness within 20 %,
NCC >= 0.9 in the crystalline regions; a 512² HRTEM region of a model of up to 1e5 atoms in <= 60 s on 2
cores; the linear HAADF model of a 1024² image in <= 5 s; refinement of a model displaced by 10 pm RMS with
10 % composition noise to <= 3 pm and <= 3 %.

Models used for the validation: the cases' truth.extxyz (the exact twin; no pipeline model), so the fit of
the optics is measured alone.  The optics (defocus, Cs, thickness) are NOT taken from truth.json: the fit
starts from the stage's defaults (Cs starts −15, 0, 15, 30 µm, defocus −30..30 nm).  The zoo's periodic
slabs are stacked twice along the beam so that the thickness search reaches 2× the true thickness; the
sige_qw and insb_inp models are not periodic along the beam, so their search stops at the model's
thickness (the true one), which the table marks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, load_truth, machine, md_table, validation_root, write_section  # noqa: E402

from temtwin.io.ingest import read_micrograph  # noqa: E402
from temtwin.simulate_image.compare import noise_sigma  # noqa: E402
from temtwin.simulate_image.fit import fit_haadf, fit_hrtem, ncc  # noqa: E402
from temtwin.simulate_image.hrtem import HRTEMImager  # noqa: E402
from temtwin.simulate_image.linear import LinearHAADF, z_weights  # noqa: E402
from temtwin.simulate_image.multislice import exit_waves  # noqa: E402
from temtwin.simulate_image.refine import (composition_from_weight, find_columns, refine_columns,  # noqa: E402
                                           weight_from_composition)
from temtwin.simulate_image.stage import _crop_atoms  # noqa: E402
from temtwin.testing.sige_atoms import sige110_atoms  # noqa: E402

THREADS = 2
FIT = dict(defocus_range_nm=(-30.0, 30.0), defocus_step_nm=1.0, cs_um=[-15.0, 0.0, 15.0, 30.0], focal_spread_nm=3.0,
           blur_nm=0.005)


def _image(case: Path, key: str) -> np.ndarray:
    return np.asarray(read_micrograph(case / key).data, float)


def zoo_case(case: Path, fit_px: int):
    import ase.io

    t, _ = load_truth(case)
    key = next(iter(t["images"]))
    o = t["images"][key]
    if "optics" not in o:
        return None
    a = ase.io.read(case / "truth.extxyz")
    cell = a.cell[:]
    ang = float(np.degrees(np.arctan2(cell[0, 1], cell[0, 0])))
    b = a.copy()
    b.rotate(-ang, "z", center=(0, 0, 0))
    lens = np.linalg.norm(cell[:2, :2], axis=1)
    b.set_cell(np.diag([lens[0], lens[1], cell[2, 2]]))
    b.wrap()
    b = b.repeat((1, 1, 2))
    data = _image(case, key)
    px = (o["pixel_size_nm"],) * 2
    t0 = time.perf_counter()
    ew = exit_waves(b, o["optics"]["energy_keV"] * 1e3, 0.05, 2.0, 2, THREADS)
    n = min(fit_px, data.shape[0])
    im = HRTEMImager(ew, (n, n), px, (0, 0), ang, 25.0)
    r = fit_hrtem(im, data[:n, :n], np.ones((n, n), bool), **FIT)
    dt = time.perf_counter() - t0
    full = HRTEMImager(ew, data.shape, px, (0, 0), ang, 25.0)
    v = r.values
    sim = full.image(v["plane"], v["defocus_nm"], v["cs_um"], 3.0, v["blur_nm"], (v["shift_x_px"], v["shift_y_px"]))
    return _row(case.name, t, o, r, ncc(sim, data), dt, capped=False, data=data, sim=sim, noise=noise_sigma(data))


def _row(name, t, o, r, ncc_full, dt, capped, data, sim, noise):
    op = o["optics"]
    v, s = r.values, r.sigma
    tt = float(t["thickness_nm"])
    a, b = np.polyfit(sim.ravel(), data.ravel(), 1)
    rms = float(np.sqrt(np.mean((data - a * sim - b) ** 2)) / noise)
    return [name, op["defocus_A"] / 10, v["defocus_nm"], s["defocus_nm"] or float("nan"),
            abs(v["defocus_nm"] - op["defocus_A"] / 10), op["Cs_A"] / 1e4, v["cs_um"], tt, v["thickness_nm"],
            100 * abs(v["thickness_nm"] - tt) / tt, ncc_full, rms, "yes" if capped else "no",
            "yes" if r.ambiguous else "no", dt]


def full_model_case(case: Path, key: str, fit_px: int, figure: Path | None = None):
    """sige_qw / insb_inp: the whole-image truth model, fit on the best crop like the stage."""
    import ase.io

    t, _ = load_truth(case)
    o = t["images"][key]
    a = ase.io.read(case / "truth.extxyz")
    data = _image(case, key)
    px = (o["pixel_size_nm"],) * 2
    rows, cols = data.shape
    r0 = (rows - fit_px) // 2
    c0 = (cols - fit_px) // 2
    box = (c0 * px[0], r0 * px[1], (c0 + fit_px) * px[0], (r0 + fit_px) * px[1])
    a.set_cell(np.diag([cols * px[0] * 10, rows * px[1] * 10, max(a.positions[:, 2].max() + 0.01, 1.0)]))
    t0 = time.perf_counter()
    sub = _crop_atoms(a, box)
    ew = exit_waves(sub, o["optics"]["energy_keV"] * 1e3, 0.06, 2.0, 2, THREADS)
    im = HRTEMImager(ew, (fit_px, fit_px), px, (0, 0), 0.0, 25.0)
    crop = data[r0:r0 + fit_px, c0:c0 + fit_px]
    m = int(np.ceil(0.6 / px[0]))
    mask = np.zeros(crop.shape, bool)
    mask[m:-m, m:-m] = True
    r = fit_hrtem(im, crop, mask, **FIT)
    dt = time.perf_counter() - t0
    sim = r.simulated
    if figure is not None:
        from temtwin.simulate_image.figures import comparison_figure

        comparison_figure(crop, sim, px, figure, mask=mask,
                          title=f"{case.name} (abTEM): input | simulated (fitted optics) | residual")
    return _row(case.name, t, o, r, ncc(sim, crop, mask), dt, capped=True, data=crop[mask], sim=sim[mask],
                noise=noise_sigma(crop))


def speed_hrtem(quick: bool):
    """512² HRTEM image (0.024 nm pixels, 12.3 nm field) of a SiGe [110] model with ~1e5 atoms."""
    px = 0.024
    t_nm = 4.0 if quick else 13.0
    at = sige110_atoms((512 * px, 512 * px), t_nm, 0.3, np.random.default_rng(0))
    out = []
    for samp in (0.08, 0.05):
        t0 = time.perf_counter()
        ew = exit_waves(at, 300e3, samp, 2.0, 10**6, THREADS)
        t1 = time.perf_counter()
        im = HRTEMImager(ew, (512, 512), (at.cell[0, 0] / 5120, at.cell[1, 1] / 5120), aperture_mrad=25.0)
        im.image(len(ew.thickness_nm) - 1, 6.0, 15.0, 3.0, 0.005)
        t2 = time.perf_counter()
        out.append([len(at), f"{at.cell[0, 0] / 10:.1f} x {at.cell[1, 1] / 10:.1f} x {at.cell[2, 2] / 10:.1f}",
                    samp, f"{ew.waves.shape[2]} x {ew.waves.shape[1]}", t1 - t0, t2 - t1, t2 - t0])
    return out


def speed_haadf():
    px = 0.02
    at = sige110_atoms((1024 * px, 1024 * px), 2.0, 0.3, np.random.default_rng(0))
    pos = at.get_positions() / 10
    shape = (1024, 1024)
    lin = LinearHAADF(shape, (at.cell[0, 0] / 10 / 1024, at.cell[1, 1] / 10 / 1024), 300e3, 25.0)
    w = z_weights(at.numbers, 1.7)
    t0 = time.perf_counter()
    lin.image(pos[:, :2], w, 0.0, 0.0, 0.03)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    lin.image(pos[:, :2], w, 0.0, 0.0, 0.03)
    return len(at), first, time.perf_counter() - t0


def refinement_case(seed: int, dose: float, iterations: int = 5):
    """Generated HAADF of SiGe [110] (columns of own Ge fraction), model perturbed by 10 pm RMS and 10 %."""
    rng = np.random.default_rng(seed)
    at = sige110_atoms((4.0, 4.0), 3.0, 0.3, rng, column_fraction_sd=0.15)
    pos = at.get_positions() / 10
    px = 0.02
    shape = (int(round(at.cell[1, 1] / 10 / px)), int(round(at.cell[0, 0] / 10 / px)))
    pxy = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    n = 1.7
    col = find_columns(pos)
    w_true = np.bincount(col.atom_column, z_weights(at.numbers, n))
    x_true = composition_from_weight(w_true, col.n_atoms, 14, 32, n)
    # truth image: finer grid (oversample 4), source 0.035 nm, background 2 % and HAADF fraction up to 10 %
    clean = LinearHAADF(shape, pxy, 300e3, 25.0, oversample=4).image(col.xy_nm, w_true, 0.0, 0.0, 0.035)
    data = rng.poisson(dose * (0.02 + 0.1 * clean / clean.max())).astype(float)
    xy0 = col.xy_nm + rng.standard_normal((len(w_true), 2)) * 0.010 / np.sqrt(2)
    x0 = np.clip(x_true + 0.1 * rng.standard_normal(len(w_true)), 0, 1)
    w0 = weight_from_composition(x0, col.n_atoms, 14, 32, n)
    lin = LinearHAADF(shape, pxy, 300e3, 25.0)
    # optics (defocus, source size, shift) fitted on the start model's columns with equal weights
    mask = np.ones(shape, bool)
    f = fit_haadf(lin, data, mask, xy0, np.ones(len(w0)), defocus_range_nm=(-2, 2), defocus_step_nm=2.0,
                  source_nm=0.03, fit_exponent=False)
    v = f.values
    # intensity offset and scale for the start model's column weights
    sim = lin.image(xy0, w0, v["defocus_nm"], 0.0, v["source_nm"], (v["shift_x_px"], v["shift_y_px"]))
    sc = float(np.polyfit(sim.ravel(), data.ravel(), 1)[0])
    off = float(np.mean(data - sc * sim))
    noise = noise_sigma(data)
    hist = []

    def cb(k, xy, w):
        e = xy - col.xy_nm
        x = composition_from_weight(w, col.n_atoms, 14, 32, n)
        hist.append([k, 1000 * float(np.sqrt(np.mean(np.sum(e**2, 1)))),
                     100 * float(np.sqrt(np.mean((x - x_true) ** 2)))])

    t0 = time.perf_counter()
    _, _, res = refine_columns(lin, data, xy0, w0, defocus_nm=v["defocus_nm"], cs_um=0.0, source_nm=v["source_nm"],
                               offset=off, scale=sc, iterations=iterations, callback=cb)
    dt = time.perf_counter() - t0
    for h, r in zip(hist, res):
        h.insert(1, r / noise)
    return hist, dt, len(w_true), shape, v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-speed", action="store_true",
                    help="rerun the HRTEM speed section only, keeping the other sections of the results file")
    args = ap.parse_args()
    parts = {"head": f"Machine: {machine()} (bench run with {THREADS} threads). No GPU was lent to this session: "
             "the abTEM-on-CuPy path (`simulate_image.device: gpu`) is implemented but not measured."}
    order = ["head", "fit", "speed_hrtem", "speed_haadf", "refine"]

    def flush():
        write_section("simulate_image", "simulate_image: model vs micrograph (issue 18)",
                      "\n\n".join(parts[k] for k in order if k in parts))

    if args.only_speed:
        return _only_speed(args.quick)
    print("refine", flush=True)
    tab = []
    summary = []
    seeds = (1, 2) if args.quick else (1, 2, 3)
    for dose in (1e4, 2e4, 4e4):
        for seed in seeds:
            hist, dt, ncol, shape, v = refinement_case(seed, dose)
            if seed == seeds[0] and dose == 2e4:
                tab = hist
            summary.append([int(dose), seed, ncol, hist[0][2], hist[-1][2], hist[0][3], hist[-1][3], hist[0][1],
                            hist[-1][1], dt, "yes" if hist[-1][2] <= 3 and hist[-1][3] <= 3 else "no"])
    parts["refine"] = (
        "### Refinement (HAADF, linear model)\n\n"
        "Generated case: SiGe [110] slab 4 × 4 × 3 nm, each column with its own Ge fraction "
        "(0.3 ± 0.15), HAADF at 0.02 nm pixels, probe 25 mrad, truth image on a 4× finer grid with a "
        "0.035 nm source, Poisson noise at the stated dose (e⁻/px; detector fraction 2–12 %). Start model: "
        "columns displaced by 10 pm RMS and Ge fractions with 10 % (absolute) noise. The optics "
        "(defocus, source size, shift) are fitted first on the start model, then the columns are refined "
        "(sparse Gauss–Newton, 5 iterations). True-atom RMS = RMS distance of the refined columns to the "
        "true ones. Caveat: the truth image comes from the same linear imaging model (finer grid), not "
        "from multislice; on real data the model error of the linear model limits the result.\n\n"
        "Per iteration (dose 2·10⁴, seed 1):\n\n"
        + md_table(["iteration", "residual RMS / noise", "true-atom RMS (pm)", "composition RMS (%)"], tab)
        + "\n\nFamily (seeds × doses):\n\n"
        + md_table(["dose", "seed", "columns", "RMS start (pm)", "RMS end (pm)", "comp. start (%)",
                    "comp. end (%)", "resid/noise start", "resid/noise end", "time (s)", "≤ 3 pm and ≤ 3 %"],
                   summary))
    na, first, again = speed_haadf()
    parts["speed_haadf"] = "### Speed: linear HAADF 1024²\n\n" + md_table(
        ["atoms", "first image incl. probe FFT (s)", "next image, cached probe (s)", "target (s)"],
        [[na, first, again, 5.0]])
    flush()
    root = validation_root()
    head = ["case", "defocus true (nm)", "fitted", "σ", "|error| (nm)", "Cs true (µm)", "Cs fitted",
            "thickness true (nm)", "fitted", "error %", "NCC", "RMS/noise", "search capped at model",
            "ambiguous", "time (s)"]
    rows = []

    def fit_part():
        ok = all(r[4] <= 2.0 and r[9] <= 20 and r[10] >= 0.9 for r in rows)
        parts["fit"] = ("### HRTEM optics fit on the held-in abTEM cases\n\n"
                        "Model = the case's truth.extxyz; fit on a 192² crop (zoo: top-left; sige/insb: centre, "
                        "0.6 nm margin excluded), 0.05 Å (zoo) / 0.06 Å sampling, thickness candidates every 2 "
                        "slices (0.4 nm), focal spread fixed at 3 nm. NCC over the whole image (zoo, all "
                        "crystalline) or the fitted crop (sige/insb). σ is the Jacobian 1-σ scaled by the residual "
                        "and inflated by its spatial correlation (statistical only: it does not include a "
                        "systematic model error such as the fixed focal spread).\n\n"
                        + md_table(head, rows)
                        + f"\n\nTargets (defocus ≤ 2 nm, thickness ≤ 20 %, NCC ≥ 0.9): "
                        f"**{'met' if ok else 'NOT met'}** on {len(rows)} cases.")
        flush()

    if root is not None:
        for name in ("z00_Ge", "z01_InSb", "z03_InP", "z04_Si", "z05_Cu")[: 2 if args.quick else 5]:
            print("zoo", name, flush=True)
            r = zoo_case(root / "zoo" / name, 128 if args.quick else 192)
            if r:
                rows.append(r)
                fit_part()
        if not args.quick:
            for case, key in (("sige_qw/qw_dev", "hrtem.hspy"), ("insb_inp/insb_inp_dev", "hrtem.tif")):
                print(case, flush=True)
                fig = REPO / "docs" / "simulate_image.png" if case.startswith("sige") else None
                rows.append(full_model_case(root / case, key, 192, fig))
                fit_part()
    print("speed", flush=True)
    sp = speed_hrtem(args.quick)
    parts["speed_hrtem"] = (
        "### Speed: HRTEM 512² region\n\nabTEM multislice (lobato, infinite projection, 2 Å slices, "
        f"dask threads = {THREADS}) of a SiGe [110] slab, one exit plane, then CTF + sampling at 512² "
        "(0.024 nm pixels). Target ≤ 60 s on 2 cores for up to 1e5 atoms.\n\n"
        + md_table(["atoms", "extent (nm)", "sampling (Å)", "grid", "multislice (s)", "image (s)",
                    "total (s)"], sp))
    flush()
    print("wrote", RESULTS)


RESULTS = Path(__file__).resolve().parent / "results" / "simulate_image.md"


def _only_speed(quick: bool) -> None:
    text = RESULTS.read_text()
    title, _, body = text.partition("\n\n")
    secs = body.split("\n### ")
    sp = speed_hrtem(quick)
    new = ("Speed: HRTEM 512² region\n\nabTEM multislice (lobato, infinite projection, 2 Å slices, "
           f"dask threads = {THREADS}) of a SiGe [110] slab, one exit plane, then CTF + sampling at 512² "
           "(0.024 nm pixels). Target ≤ 60 s on 2 cores for up to 1e5 atoms.\n\n"
           + md_table(["atoms", "extent (nm)", "sampling (Å)", "grid", "multislice (s)", "image (s)",
                       "total (s)"], sp) + "\n")
    secs = [new if s.startswith("Speed: HRTEM") else s for s in secs]
    RESULTS.write_text(title + "\n\n" + "\n### ".join(secs))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
