"""Bench of stage register_stack (issue 7): placement accuracy, refusal of a wrong image, speed.

* validation ``stack/device_dev`` (when ../shared/validation is present): overview 768² at 0.25 nm,
  medium_1 512² at 0.08 nm (−1.5°), hrtem 384² at 0.022 nm, placed by the stage's chain; errors against
  truth.json (offset of the image centre and of the worst corner, as % of the image's field of view;
  scale and rotation errors);
* generated stacks (temtwin.testing.synth.stack): magnification ratios 5-50x to the overview, chains of links
  of 4-10x, 3 % calibration error, rotations up to 3°, plus a wrong image (another device) per stack;
  images 512² and again 1024² (not with --quick);
* speed: one 1024² image into a 4096² overview (register_pair, best of 3).

Run: ``.venv/bin/python bench/bench_register_stack.py [--quick]``; writes bench/results/register_stack.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, machine, md_table, peak_rss_mb, validation_root, write_section  # noqa: E402

from temtwin.stack.chain import place_stack  # noqa: E402
from temtwin.stack.register import register_pair  # noqa: E402
from temtwin.testing.synth.stack import device_field, device_stack  # noqa: E402

TARGET_POS, TARGET_SCALE, TARGET_ROT = 1.0, 0.5, 0.3   # % of FOV, %, degrees


def _to_overview_nm(offset, rot_deg, px):
    """(3, 3) image px -> overview-frame nm from truth (offset, rotation, true pixel size)."""
    t = math.radians(rot_deg)
    M = np.eye(3)
    M[:2, :2] = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * px
    M[:2, 2] = offset
    return M


def placement_errors(pl, shape, truth: dict, px_ov) -> dict:
    """Errors of a StackPlacement against truth {offset_nm, rotation_deg, scale_ratio, pixel_size_nm}."""
    rows, cols = shape
    Mt = _to_overview_nm(truth["offset_nm"], truth["rotation_deg"], truth["pixel_size_nm"])
    Mf = np.diag([px_ov[0], px_ov[1], 1.0]) @ pl.to_overview
    pts = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1],
                    [(cols - 1) / 2, (rows - 1) / 2, 1]], float).T
    d = (Mf @ pts - Mt @ pts)[:2]
    e = np.hypot(d[0], d[1])
    fov = cols * truth["pixel_size_nm"]
    return {"pos_centre_pct": 100 * e[4] / fov, "pos_max_pct": 100 * e[:4].max() / fov,
            "scale_pct": 100 * (pl.scale / truth["scale_ratio"] - 1),
            "rot_deg": pl.rotation_deg - truth["rotation_deg"], "fov_nm": fov}


def within(e: dict) -> bool:
    return e["pos_max_pct"] < TARGET_POS and abs(e["scale_pct"]) < TARGET_SCALE and abs(e["rot_deg"]) < TARGET_ROT


# ------------------------------------------------------------------------------------------------ validation
def bench_validation(lines: list[str]) -> None:
    root = validation_root()
    case = root / "stack" / "device_dev" if root else None
    if case is None or not case.is_dir():
        lines.append("*Validation stack skipped: ../shared/validation/stack/device_dev not found.*\n")
        return
    from temtwin.io.ingest import read_micrograph

    truth = json.loads((case / "truth.json").read_text())["images"]
    mics = [read_micrograph(case / f"{n}.hspy") for n in ("overview", "medium_1", "hrtem")]
    t0 = time.perf_counter()
    pls = place_stack(mics, "overview", {})
    dt = time.perf_counter() - t0
    rows = []
    for m in mics[1:]:
        pl = pls[m.name]
        tr = truth[f"{m.name}.hspy"]
        if np.isfinite(pl.to_overview).all():
            e = placement_errors(pl, m.shape, tr, mics[0].pixel_size_nm)
            rows.append([m.name, pl.parent, "yes" if pl.accepted else "refused", round(pl.confidence, 3),
                         e["pos_centre_pct"], e["pos_max_pct"], e["scale_pct"], e["rot_deg"],
                         "yes" if (pl.accepted and within(e)) else "no"])
        else:
            rows.append([m.name, pl.parent, "refused", 0.0, "-", "-", "-", "-", "no"])
    lines.append(f"Validation `stack/device_dev` (stage chain, default settings, {dt:.1f} s for the sample):\n")
    lines.append(md_table(["image", "parent", "accepted", "confidence", "pos. err centre (% FOV)",
                           "pos. err worst corner (% FOV)", "scale err (%)", "rotation err (deg)", "meets targets"],
                          rows))
    reasons = [f"- `{m.name}`: {pls[m.name].reason}" for m in mics[1:] if not pls[m.name].accepted]
    if reasons:
        lines.append("\nRefused placements and why:\n" + "\n".join(reasons))
    lines.append("")
    hrtem_oracle(lines, case, truth, mics[1], mics[2])


def hrtem_oracle(lines: list[str], case: Path, truth: dict, medium, hrtem) -> None:
    """Is the validation HRTEM placeable from its content at all?  Its *true* label map (crystal = 1),
    the best any crystallinity map could be, is registered into medium_1 (sign as in the medium:
    the amorphous oxide is brighter), and the correlation is scanned along the interface at the true
    row and rotation."""
    from temtwin.stack.register import _level_sigma, _lk_level
    from temtwin.stack.sampling import features

    lab = np.load(case / "truth.npz")["hrtem_labels"]
    crystal = -(lab == 6).astype(np.float32)              # 6 = Si channel (label_names)
    pl = register_pair(crystal, hrtem.pixel_size_nm, medium.data, medium.pixel_size_nm, log_intensity=False)
    th, tm = truth["hrtem.hspy"], truth["medium_1.hspy"]

    def rot(d):
        t = math.radians(d)
        return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    pm, pf = hrtem.pixel_size_nm, medium.pixel_size_nm
    c_M = 0.5 * np.array([(hrtem.shape[1] - 1) * pm[0], (hrtem.shape[0] - 1) * pm[1]])
    c_ov = np.array(th["offset_nm"]) + rot(th["rotation_deg"]) @ (c_M / np.array(pm) * th["pixel_size_nm"])
    c_true = rot(tm["rotation_deg"]).T @ (c_ov - np.array(tm["offset_nm"])) / tm["pixel_size_nm"] * np.array(pf)
    rel = math.radians(th["rotation_deg"] - tm["rotation_deg"])
    found_c = (pl.matrix[:2, :2] @ (c_M / np.array(pm)) + pl.matrix[:2, 2]) * np.array(pf)
    sig = _level_sigma(pf[0], 0.0)
    T = features(crystal, pm, pf[0], sig, 0.0, False)
    F = features(medium.data, pf, pf[0], sig, 0.0, True)
    scan = []
    for dx in np.arange(-16.0, 16.01, 0.5):
        best = max(_lk_level(T, F, pf[0], np.zeros(2), c_M,
                             np.array([c_true[0] + dx, c_true[1] + dy, math.cos(rel), math.sin(rel)]), 0, margin=3)[1]
                   for dy in np.arange(-0.8, 0.81, 0.08))
        scan.append((dx, best))
    at_truth = dict(scan)[0.0]
    others = [(dx, v) for dx, v in scan if abs(dx) >= 4.0]
    dx_o, v_o = max(others, key=lambda z: z[1])
    s_true = (th["pixel_size_nm"] / tm["pixel_size_nm"]) / (pm[0] / pf[0])
    d_c = math.hypot(*(found_c - c_true))
    lines.append(
        "Can the validation HRTEM be placed from its content?  Its **true** label map (Si crystal vs "
        "amorphous oxide, the ideal crystallinity map) registered into medium_1: centre "
        f"{d_c:.2f} nm from the true place ({100 * d_c / (2 * c_M[0]):.1f} % "
        f"of the field of view), scale error {100 * (pl.scale_factor / s_true - 1):+.2f} %, rotation error "
        f"{pl.rotation_deg - math.degrees(rel):+.2f}° (correlation {pl.ncc:.3f}, confidence {pl.confidence:.2f}, "
        f"{'accepted' if pl.accepted else 'refused'}). Scanned along the interface at the true rotation (best over "
        f"the row band), the correlation is {at_truth:.3f} at the true place and {v_o:.3f} at {dx_o:+.1f} nm: the "
        "interface roughness repeats, so this single-interface 8.4 nm field does not fix its position along the "
        "interface to the 1 % target (0.08 nm) even with a perfect crystallinity map; refusing the image is the "
        "right answer.\n")


# ------------------------------------------------------------------------------------------------ generated
CONFIGS = [(5.0,), (10.0,), (5.0, 4.0), (7.0, 7.0), (5.0, 10.0)]


def bench_generated(lines: list[str], seeds: int, size: int) -> dict:
    found, total, ok, wrong_acc, wrong_tot = 0, 0, 0, 0, 0
    rows, errs, conf_true, conf_wrong, refused_err, misses = [], [], [], [], [], []
    t_all = time.perf_counter()
    for ratios in CONFIGS:
        for seed in range(seeds):
            st = device_stack(ratios=ratios, shape=(size, size), overview_shape=(512, 512), seed=100 + seed)
            mics = st.micrographs
            pls = place_stack(mics, "overview", {})
            tr = st.truth()
            px_ov = st.images["overview"].micrograph.pixel_size_nm
            for name, si in st.images.items():
                if name == "overview":
                    continue
                pl = pls[name]
                if not si.matching:
                    wrong_tot += 1
                    wrong_acc += int(pl.accepted)
                    conf_wrong.append(pl.confidence)
                    continue
                total += 1
                conf_true.append(pl.confidence)
                est = pl.link.info.get("precision_pct", float("nan")) if pl.link is not None else float("nan")
                if not pl.accepted:
                    misses.append((st, name, f"{'x'.join(f'{r:g}' for r in ratios)} s{seed}"))
                    placed = bool(np.isfinite(pl.to_overview).all())
                    if placed:
                        e = placement_errors(pl, si.micrograph.shape, tr[name], px_ov)
                        refused_err.append((e["pos_max_pct"], est))
                    rows.append([f"{'x'.join(f'{r:g}' for r in ratios)} s{seed}", name,
                                 f"{1 / tr[name]['scale_ratio']:.0f}x", "refused", round(pl.confidence, 3), est,
                                 f"({e['pos_max_pct']:.3g})" if placed else "-", "-", "-", "-"])
                    continue
                found += 1
                e = placement_errors(pl, si.micrograph.shape, tr[name], px_ov)
                errs.append(e)
                ok += int(within(e))
                if not within(e):
                    misses.append((st, name, f"{'x'.join(f'{r:g}' for r in ratios)} s{seed}"))
                rows.append([f"{'x'.join(f'{r:g}' for r in ratios)} s{seed}", name,
                             f"{1 / tr[name]['scale_ratio']:.0f}x", pl.parent, round(pl.confidence, 3), est,
                             e["pos_max_pct"], e["scale_pct"], e["rot_deg"], "yes" if within(e) else "no"])
    dt = time.perf_counter() - t_all
    lines.append(f"Generated stacks: {len(CONFIGS)} chain layouts x {seeds} seeds, images {size}² "
                 f"(overview 512² at 0.5 nm), 3 % calibration error, rotations ≤ 3°, one wrong image each "
                 f"({dt:.0f} s including rendering).\n")
    lines.append(md_table(["stack", "image", "to overview", "parent", "confidence", "error estimate (% FOV)",
                           "pos. err worst corner (% FOV)",
                           "scale err (%)", "rotation err (deg)", "meets targets"], rows))
    if errs:
        def stats(k):
            v = [abs(e[k]) for e in errs]
            return [float(np.percentile(v, 50)), float(np.percentile(v, 95)), float(np.max(v))]
        lines.append("")
        lines.append(md_table(["metric", "median", "95th pct", "max", "target"], [
            ["position error, worst corner (% FOV)", *stats("pos_max_pct"), "< 1"],
            ["position error, centre (% FOV)", *stats("pos_centre_pct"), "< 1"],
            ["|scale error| (%)", *stats("scale_pct"), "< 0.5"],
            ["|rotation error| (deg)", *stats("rot_deg"), "< 0.3"]]))
    lines.append("")
    lines.append(md_table(["placements", "found (accepted)", "found and within all targets", "wrong images accepted"], [
        [total, f"{found} ({100 * found / max(total, 1):.0f} %)", f"{ok} ({100 * ok / max(total, 1):.0f} %)",
         f"{wrong_acc} of {wrong_tot}"]]))
    if refused_err:
        lines.append("\nRefused true placements (error estimate above max_error_pct, or confidence too low), "
                     "with the worst-corner error the refused best attempt would have had: "
                     + "; ".join(f"{a:.2f} % (estimate {b:.2f} %)" for a, b in refused_err) + ".")
    if misses:
        lines.append("\nThe same links with the parent's noise-free render (what limits them: the parent's shot "
                     "noise over a footprint of ~50 parent pixels, or the method):\n")
        lines.append(md_table(["stack", "image", "accepted", "pos. err worst corner (% FOV)", "scale err (%)",
                               "rotation err (deg)", "meets targets"], [_noise_free_parent(*m) for m in misses]))
    lines.append(f"\nConfidence: true placements min {min(conf_true):.3f} / median {np.median(conf_true):.3f}; "
                 f"wrong images max {max(conf_wrong):.3f} (min_confidence default 0.3).\n")
    return {"found_pct": 100 * found / max(total, 1), "ok_pct": 100 * ok / max(total, 1), "wrong_accepted": wrong_acc}


def _noise_free_parent(st, name: str, label: str) -> list:
    """Place ``name`` again with its parent's noise-free render in place of the noisy one."""
    parent = st.images[name].parent
    mics = [dataclasses.replace(si.micrograph, data=si.noisefree) if n == parent else si.micrograph
            for n, si in st.images.items()]
    pl = place_stack(mics, "overview", {})[name]
    px_ov = st.images["overview"].micrograph.pixel_size_nm
    if not np.isfinite(pl.to_overview).all():
        return [label, name, "refused", "-", "-", "-", "no"]
    e = placement_errors(pl, st.images[name].micrograph.shape, st.truth()[name], px_ov)
    return [label, name, "yes" if pl.accepted else "refused", e["pos_max_pct"], e["scale_pct"], e["rot_deg"],
            "yes" if (pl.accepted and within(e)) else "no"]


# ------------------------------------------------------------------------------------------------ speed
def bench_speed(lines: list[str], quick: bool) -> None:
    n_ov, n_im = (2048, 512) if quick else (4096, 1024)
    px_ov, ratio = 0.5, 5.0
    fld = device_field((n_ov * px_ov, n_ov * px_ov), seed=11, finest_nm=1.0)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    ov, _ = fld.render((0.0, 0.0), 0.0, (n_ov, n_ov), px_ov, 2000.0, rng, supersample=1)
    off = (0.4 * n_ov * px_ov, 0.55 * n_ov * px_ov)
    im, _ = fld.render(off, 1.7, (n_im, n_im), px_ov / ratio, 800.0, rng, supersample=1)
    t_render = time.perf_counter() - t0
    px_stated = px_ov / ratio * 1.02
    res = {}

    def go():
        res["p"] = register_pair(im, px_stated, ov, px_ov)
    t = best_time(go, repeat=3)
    p = res["p"]
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    lines.append(f"Speed: {n_im}² image (5x, 1.7°, 2 % calibration error) into a {n_ov}² overview: "
                 f"**{t:.2f} s** (best of 3; target ≤ 3 s on 2 cores; OpenCV threads {threads}; "
                 f"confidence {p.confidence:.2f}, scale factor {p.scale_factor:.4f}); rendering took {t_render:.0f} s. "
                 f"Peak RSS of the bench process {peak_rss_mb():.0f} MB.\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer seeds, smaller speed case")
    ap.add_argument("--seeds", type=int, default=None)
    a = ap.parse_args(argv)
    seeds = a.seeds or (2 if a.quick else 3)
    lines = [f"Machine: {machine()}. Targets: position error < 1 % of the image's field of view, scale error "
             "< 0.5 %, rotation error < 0.3°, ≥ 95 % of placements found, a wrong image refused; 1024² into "
             "4096² ≤ 3 s.\n"]
    bench_validation(lines)
    bench_generated(lines, seeds, 384 if a.quick else 512)
    if not a.quick:
        lines.append("The same stacks with camera-typical 1024² images (the 50x image's footprint in its 10x parent "
                     "grows from ~50 to ~100 parent pixels, so the parent's shot noise weighs half as much):\n")
        bench_generated(lines, seeds, 1024)
    bench_speed(lines, a.quick)
    p = write_section("register_stack", "register_stack: image stack registration (issue 7)", "\n".join(lines))
    print(p.read_text())


if __name__ == "__main__":
    main()
