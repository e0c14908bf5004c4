"""Bench of stage-guided placement (issue 20): images placed from their stage position + content.

Every image gets a stage position (its true centre in the overview frame, µm) plus a stage error drawn
from N(0, sigma) per axis *relative to its parent's stage position* (its parent's error plus its own),
sigma = 0, 1 or 3 % of the parent's field of view (the documented artefact: stage read-out error, on the
same base as ``register_stack.stage_uncertainty_pct``, default 3; seeds fixed), and its true rotation as the
scan rotation.  The chain
(``place_stack``, default settings, stage_uncertainty_pct 3) then places them; errors against the
truth: worst corner as % of the image's field of view (target 1 %), and the basis of the placement.

* demo ``sige_qw_device``: the HRTEM with the stage position of resources/demo/sige_qw_device/sample.yaml
  (and without, to show the refusal);
* validation ``stack/device_dev`` (when ../shared/validation is present): medium_1 and hrtem;
* generated stacks (temtwin.testing.synth.stack.device_stack, ratios 6x and 42x, 3 % calibration error,
  rotations up to 3°), 4 seeds;
* generated interface-only pairs (a single straight interface: the content fixes only the direction
  across it), 6 seeds.

Run: ``.venv/bin/python bench/bench_stage_placement.py``; writes bench/results/stage_placement.md.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, validation_root, write_section  # noqa: E402

from temtwin.io.image import Micrograph  # noqa: E402
from temtwin.stack.chain import place_stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.0, 1.0, 3.0)


def _R(deg):
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def corner_error_pct(pl, shape, offset, rot_deg, px_true, px_ov) -> float:
    """Worst corner error (% of the image's field of view) of a StackPlacement against the truth."""
    if not np.isfinite(pl.to_overview).all():
        return float("nan")
    rows, cols = shape
    err = 0.0
    for c, r in [(0, 0), (cols - 1, 0), (0, rows - 1), (cols - 1, rows - 1)]:
        true = np.asarray(offset) + _R(rot_deg) @ (np.array([c, r]) * px_true)
        est = (pl.to_overview @ np.array([c, r, 1.0]))[:2] * np.asarray(px_ov)
        err = max(err, float(np.hypot(*(true - est))))
    return 100 * err / (cols * px_true)


def with_stage(m: Micrograph, offset, rot_deg, px_true, err_um=(0.0, 0.0)) -> Micrograph:
    c = np.asarray(offset) + _R(rot_deg) @ (0.5 * (np.array(m.shape[::-1]) - 1) * px_true)
    meta = dict(m.meta, stage_x_um=c[0] / 1e3 + err_um[0], stage_y_um=c[1] / 1e3 + err_um[1],
                scan_rotation_deg=rot_deg, stage_source="bench")
    return Micrograph(m.data, m.pixel_size_nm, m.name, m.sample, meta)


def run_family(rows, label, mics, truth, overview, names, seeds, parent_fov):
    """truth: name -> (offset, rot, px_true); parent_fov: name -> (its parent in the truth, the parent's
    field of view nm).
    One row per sigma: accepted, bases, errors."""
    ov = next(m for m in mics if m.name == overview)
    for sig in SIGMAS:
        errs, acc, bases, n = [], 0, {}, 0
        t0 = time.perf_counter()
        for seed in range(seeds if sig > 0 else 1):
            rng = np.random.default_rng(1000 + seed)
            errs_um: dict = {overview: np.zeros(2)}
            todo = [m for m in mics if m.name != overview]
            while todo:      # an image's stage error = its parent's + its own (relative to the parent)
                m = next(x for x in todo if parent_fov[x.name][0] in errs_um)
                par, fov = parent_fov[m.name]
                errs_um[m.name] = errs_um[par] + rng.normal(0, sig / 100 * fov, 2) / 1e3
                todo.remove(m)
            ms = [with_stage(m, *truth[m.name], errs_um[m.name]) for m in mics]
            pls = place_stack(ms, overview, {})
            for nm in names:
                pl = pls[nm]
                n += 1
                b = pl.link.info.get("basis", "content") if pl.link is not None else "-"
                bases[b] = bases.get(b, 0) + 1
                if pl.accepted:
                    acc += 1
                    off, rot, pxt = truth[nm]
                    errs.append(corner_error_pct(pl, next(m for m in mics if m.name == nm).shape, off, rot, pxt,
                                                 ov.pixel_size_nm))
        dt = (time.perf_counter() - t0) / max(n, 1)
        e = np.array(errs) if errs else np.array([np.nan])
        rows.append([label, f"{sig:g}", n, acc, ", ".join(f"{k} {v}" for k, v in sorted(bases.items())),
                     float(np.nanmedian(e)), float(np.nanmax(e)), int(np.sum(e < 1.0)), round(dt, 2), errs])


def demo(lines):
    import yaml

    from temtwin.io.ingest import read_micrograph

    d = ROOT / "resources" / "demo" / "sige_qw_device"
    st = yaml.safe_load((d / "sample.yaml").read_text())
    t = json.loads((ROOT / "resources" / "demo" / "truth_demo.json").read_text())["hrtem"]
    out = []
    for label, settings in (("stage position from sample.yaml", st), ("no stage position", {})):
        ms = [read_micrograph(d / n, settings=settings) for n in ("overview.tif", "hrtem.hspy")]
        pl = place_stack(ms, "overview", {})["hrtem"]
        e = corner_error_pct(pl, ms[1].shape, t["offset_nm"], t["rotation_deg"], 0.025, ms[0].pixel_size_nm)
        out.append([label, "yes" if pl.accepted else "refused",
                    pl.link.info.get("basis", "-") if pl.link else "-", round(pl.confidence, 2),
                    e if pl.accepted else "-", pl.reason or "-"])
    lines.append("Demo `sige_qw_device` HRTEM (512² at 0.025 nm, 12.8 nm field of view) into the overview:\n")
    lines.append(md_table(["case", "accepted", "basis", "confidence", "worst corner err (% FOV)", "reason"], out))
    lines.append("")


def scene_pair(seed):
    """A straight interface (y = 30 nm): parent 160² at 0.5 nm, child 128² at 0.1 nm rotated 1°."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)

    def render(shape, px, centre, rot, noise):
        r, c = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
        u, v = (c - 0.5 * (shape[1] - 1)) * px, (r - 0.5 * (shape[0] - 1)) * px
        y = centre[1] + math.sin(math.radians(rot)) * u + math.cos(math.radians(rot)) * v
        img = 100 * (1.0 + 0.8 * (0.5 + 0.5 * erf((y - 30.0) / 0.6)))
        return (img + rng.normal(0, noise, img.shape)).astype(np.float32)
    cc = (30 + rng.uniform(-5, 5), 30 + rng.uniform(-2, 2))
    rot = rng.uniform(-2, 2)
    par = Micrograph(render((160, 160), 0.5, (39.75, 39.75), 0.0, 2.0), (0.5, 0.5), "overview")
    ch = Micrograph(render((128, 128), 0.1, cc, rot, 4.0), (0.1, 0.1), "hrtem")
    off = np.asarray(cc) - _R(rot) @ (np.array([63.5, 63.5]) * 0.1)
    return [par, ch], {"overview": ((0.0, 0.0), 0.0, 0.5), "hrtem": (tuple(off), rot, 0.1)}


def main() -> None:
    lines = [__doc__.split("\n\n")[1].strip(), ""]
    demo(lines)
    rows: list = []
    root = validation_root()
    case = root / "stack" / "device_dev" if root else None
    if case is not None and case.is_dir():
        from temtwin.io.ingest import read_micrograph

        tr = json.loads((case / "truth.json").read_text())["images"]
        mics = [read_micrograph(case / f"{n}.hspy") for n in ("overview", "medium_1", "hrtem")]
        truth = {m.name: (tr[f"{m.name}.hspy"]["offset_nm"], tr[f"{m.name}.hspy"]["rotation_deg"],
                          tr[f"{m.name}.hspy"]["pixel_size_nm"]) for m in mics}
        pfov = {"medium_1": ("overview", 768 * 0.25), "hrtem": ("medium_1", 512 * 0.08)}
        for nm in ("medium_1", "hrtem"):
            run_family(rows, f"validation {nm}", mics, truth, "overview", [nm], 6, pfov)
    from temtwin.testing.synth.stack import device_stack

    fam: list = []
    for seed in range(4):
        st = device_stack(ratios=(6.0, 7.0), shape=(256, 256), overview_shape=(384, 384), seed=200 + seed,
                          wrong_image=False)
        tr = st.truth()
        pfov = {n: (t["parent"], tr[t["parent"]]["shape"][1] * tr[t["parent"]]["pixel_size_nm"])
                for n, t in tr.items() if t["parent"]}
        fam.append((st.micrographs,
                    {n: (t["offset_nm"], t["rotation_deg"], t["pixel_size_nm"]) for n, t in tr.items()},
                    st.overview, [n for n in tr if n != st.overview], pfov))
    pairs = [(*scene_pair(s), "overview", ["hrtem"], {"hrtem": ("overview", 80.0)}) for s in range(6)]
    for label, items in (("generated device stacks (6x, 42x)", fam), ("generated interface-only pairs", pairs)):
        sub: list = []
        for mics, truth, ov, names, pfov in items:
            run_family(sub, label, mics, truth, ov, names, 1, pfov)
        # merge the per-stack rows of one sigma
        for sig in SIGMAS:
            rs = [r for r in sub if r[1] == f"{sig:g}"]
            bases: dict = {}
            for r in rs:
                for part in r[4].split(", "):
                    k, v = part.rsplit(" ", 1)
                    bases[k] = bases.get(k, 0) + int(v)
            e = np.array(sum((r[9] for r in rs), [])) if any(r[9] for r in rs) else np.array([np.nan])
            rows.append([label, f"{sig:g}", sum(r[2] for r in rs), sum(r[3] for r in rs),
                         ", ".join(f"{k} {v}" for k, v in sorted(bases.items())),
                         float(np.nanmedian(e)), float(np.nanmax(e)), int(np.sum(e < 1.0)),
                         round(float(np.mean([r[8] for r in rs])), 2), []])
    lines.append("Families (stage error sigma per axis, % of the parent's field of view; errors of the "
                 "accepted placements, worst corner, % of the image's field of view; target < 1 %):\n")
    lines.append(md_table(["family", "stage sigma (%)", "placements", "accepted", "basis", "median err (%)",
                           "max err (%)", "within 1 %", "s / placement"], [r[:9] for r in rows]))
    lines.append("")
    write_section("stage_placement", "Stage-guided placement", "\n".join(lines))


if __name__ == "__main__":
    main()
