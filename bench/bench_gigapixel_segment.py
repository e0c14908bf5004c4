"""Bench of the per-image chain on large generated device overviews (issue 20, gigapixel target).

Target (issue 20): a 16 384² overview (uint16, a generated device) through ingest, segment, fft_peaks
and register_stack in <= 3 min and <= 8 GB peak memory per job on 2 cores.

Scene (documented artefact model, fixed seed 0): a device cross-section at 1 nm/px as
temtwin.testing.synth.scenes.lowmag_device draws it (nine layers of 0.4 % to 12 % of the height, rough
interfaces of 3 nm, a round wire in the second layer, 5 % correlated mass-thickness texture, 0.7 nm blur,
Poisson noise at 200 e⁻/px), rendered lazily in row blocks (:func:`render`, never an n² float64 array)
and written as a calibrated 16-bit TIFF; the truth labels are kept for the IoU.  A second image of the
same device, a 1024 nm square at 0.5 nm/px below the wire with its own noise (an intermediate
magnification, :func:`medium_origin`), is the stack member that ``register_stack`` places in the
overview; sample.yaml gives both images' stage positions, the medium one 36 nm off.

Every job runs through :func:`temtwin.workflow.context.run_stage` in a fresh process (as Snakemake runs
a ``script:`` job), 2 threads; its wall time and peak resident memory (ru_maxrss of that process,
including the interpreter and imports) are listed.

Run (the 16 384² size needs ~6 GB free memory; on a shared machine under ``flock /tmp/bigmem.lock``):
``python bench/bench_gigapixel_segment.py --sizes 4096 8192 16384`` (sizes accumulate in
bench/results/gigapixel_segment.json); writes bench/results/gigapixel_segment.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import ENV, RUNNER, write_tif  # noqa: E402,F401
from common import RESULTS_DIR, machine, md_table, write_section  # noqa: E402

SEED = 0
STAGES = {"ingest": "temtwin.stages.ingest:run", "segment": "temtwin.stages.segment:run",
          "fft_peaks": "temtwin.stages.fft_peaks:run", "register_stack": "temtwin.stages.register_stack:run"}


def device_model(n: int, seed: int = SEED) -> dict:
    """Geometry of the generated device whose overview is n x n pixels at 1 nm/px (all lengths nm)."""
    H = float(n)
    layers = [("vacuum", 0.1 * H, 0.95), ("Pt", 0.1 * H, 0.3), ("W", 0.08 * H, 0.45), ("TiN", 0.02 * H, 0.7),
              ("HfO2", 0.01 * H, 0.5), ("SiO2", 0.004 * H, 0.9), ("Si", 0.1 * H, 0.72), ("BOX", 0.12 * H, 0.9),
              ("Si-sub", 1e12, 0.7)]
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([l[1] for l in layers])
    rough = ndi.gaussian_filter1d(rng.normal(0, 1, n), 8) * 3.0       # interface height (nm) at x = 0..n-1 nm
    wire = (0.6 * H, bounds[1] + 0.5 * layers[2][1], 0.35 * layers[2][1])
    return {"n": n, "bounds": bounds, "trans": np.array([l[2] for l in layers], np.float32), "rough": rough,
            "wire": wire, "names": [l[0] for l in layers] + ["wire"]}


def render(model: dict, origin_nm: tuple[float, float], shape: tuple[int, int], px: float, seed: int,
           dose: float = 200.0, blur_nm: float = 0.7, texture: float = 0.05, block: int = 1024):
    """(uint16 image, uint8 truth labels) of the device seen over ``shape`` pixels of ``px`` nm from the
    point ``origin_nm`` (x, y).  Rendered in row blocks with a margin for the blur (float32, a block at a
    time); each block has its own texture and noise stream (seeded by ``seed`` and the block)."""
    rows, cols = shape
    x0, y0 = origin_nm
    img = np.empty(shape, np.uint16)
    lab_out = np.empty(shape, np.uint8)
    x = x0 + np.arange(cols) * px
    rough_x = np.interp(x, np.arange(len(model["rough"]), dtype=float), model["rough"]).astype(np.float32)
    cx, cy, r = model["wire"]
    margin = int(np.ceil(4 * max(blur_nm, 2.0) / px)) + 4
    nl = len(model["trans"])
    for b, r0 in enumerate(range(0, rows, block)):
        r1 = min(rows, r0 + block)
        ra, rb = r0 - margin, r1 + margin
        y = (y0 + np.arange(ra, rb) * px).astype(np.float32)
        lab = np.searchsorted(model["bounds"], y[:, None] + rough_x[None, :], side="right").astype(np.uint8) + 1
        np.clip(lab, 1, nl, out=lab)
        wire = (x[None, :] - cx) ** 2 + (y[:, None] - cy) ** 2 <= r * r
        lab[wire] = nl + 1
        trans = np.where(wire, np.float32(0.4), model["trans"][lab - 1 - wire])
        rng = np.random.default_rng([seed, b])
        tex = ndi.gaussian_filter(rng.standard_normal((rb - ra, cols), np.float32), 2.0 * 1.0 / px)
        clean = trans * (1 + texture * tex / max(float(tex.std()), 1e-9))
        clean = ndi.gaussian_filter(clean, blur_nm / px)[margin:margin + (r1 - r0)]
        img[r0:r1] = np.clip(rng.poisson(np.clip(clean, 0, None) * dose), 0, 65535)
        lab_out[r0:r1] = lab[margin:margin + (r1 - r0)]
    return img, lab_out


def run_job(spec: dict, timeout_s: float = 1800.0) -> dict:
    import subprocess

    import resource

    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(ENV, OMP_NUM_THREADS="2", NUMBA_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    try:
        r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(spec)], env=env, capture_output=True,
                           text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished after {timeout_s} s (stopped)"}
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:160]}
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    out["cpu_s"] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return out


def medium_origin(model: dict) -> tuple[float, float]:
    """Overview-frame point (nm) of pixel (0, 0) of the stack member: a 1024 nm square centred below the
    wire on the W/TiN interface, so it shows the wire's curved lower edge (which fixes the position along
    the layers) and the thin TiN/HfO2/SiO2 layers."""
    return float(model["wire"][0]) - 512.0, float(model["bounds"][2]) - 512.0


def generate(d: Path, n: int) -> dict:
    """Write the n² overview (overview.tif, truth.npy) and its stack member (medium.tif) into ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    model = device_model(n)
    ov, truth = render(model, (0.0, 0.0), (n, n), 1.0, SEED)
    write_tif(d / "overview.tif", ov, 1.0)
    np.save(d / "truth.npy", truth)
    del ov, truth
    mx, my = medium_origin(model)
    med, _ = render(model, (mx, my), (2048, 2048), 0.5, SEED + 1)
    write_tif(d / "medium.tif", med, 0.5)
    # stage positions as a microscope records them (image centres, µm), the medium one 30 nm off
    (d / "sample.yaml").write_text(
        "images:\n"
        f"  overview: {{stage_position_um: [{(n - 1) / 2000.0}, {(n - 1) / 2000.0}]}}\n"
        f"  medium: {{stage_position_um: [{(mx + 511.75 + 30.0) / 1000.0}, {(my + 511.75 - 20.0) / 1000.0}]}}\n")
    return {"truth_offset_nm": [mx, my]}


def evaluate(d: Path, n: int) -> dict:
    """IoU of the overview's segmentation vs truth, crystallinity calls, the medium image's placement."""
    import h5py

    out: dict = {}
    model = device_model(n)
    mx, my = medium_origin(model)
    seg = d / "overview" / "segment.h5"
    if seg.is_file():
        truth = np.load(d / "truth.npy")
        with h5py.File(seg, "r") as f:
            lab = f["labels"][()]
        out["segments"] = int(lab.max())
        out["mean_iou"], out["iou_per_layer"] = streamed_iou(truth, lab, model["names"])
        del lab, truth
    pk = d / "overview" / "fft_peaks.h5"
    if pk.is_file():
        with h5py.File(pk, "r") as f:
            cr = [bool(g.attrs.get("crystalline", False)) for g in f["regions"].values()]
        out["crystalline_regions"] = f"{sum(cr)} of {len(cr)}"
    st = d / "stack.h5"
    if st.is_file():
        with h5py.File(st, "r") as f:
            g = f["images/medium"]
            off = np.asarray(g.attrs["offset_nm"], float)
            out["placement"] = {"accepted": bool(g.attrs["accepted"]), "basis": str(g.attrs.get("basis", "")),
                                "offset_nm": off.tolist(), "confidence": float(g.attrs["confidence"]),
                                "error_nm": float(np.hypot(*(off - [mx, my]))),
                                "reason": str(g.attrs.get("reason", ""))}
    return out


def _child(what: str, d: Path, n: int) -> dict:
    """Run :func:`generate` or :func:`evaluate` in a child process (Linux keeps a process's peak RSS
    across exec: the jobs are started from a parent that never holds a full-size array)."""
    import subprocess

    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"from pathlib import Path; import bench_gigapixel_segment as b; "
            f"print(json.dumps(b.{what}(Path({str(d)!r}), {n})))")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{what} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def chain(tmp: Path, n: int) -> dict:
    """Generate the n² overview and its stack member, run the chain job by job; returns the figures."""
    from temtwin.config import load_config

    d = tmp / f"n{n}"
    t0 = time.perf_counter()
    out: dict = _child("generate", d, n)
    out["generate_s"] = time.perf_counter() - t0
    import subprocess

    out["commit"] = os.environ.get("TEMTWIN_BENCH_COMMIT") or subprocess.run(   # set when run from an export
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent).stdout.strip()
    cfg = load_config({"ingest": {"max_pixels": 10 ** 9}}, require_dataset=False)
    jobs = []
    for im in ("overview", "medium"):
        (d / im).mkdir(exist_ok=True)
        h = {s: str(d / im / f"{s}.h5") for s in ("ingest", "segment", "fft_peaks")}
        jobs.append((f"ingest {im}", "ingest", {"image": str(d / f"{im}.tif"), "settings": [str(d / "sample.yaml")]},
                     {"h5": h["ingest"]}))
        jobs.append((f"segment {im}", "segment", {"image": h["ingest"], "override": []},
                     {"h5": h["segment"], "figures": str(d / im / "fig_segment")}))
        if im == "overview":
            jobs.append((f"fft_peaks {im}", "fft_peaks", {"image": h["ingest"], "segmentation": h["segment"]},
                         {"h5": h["fft_peaks"], "figures": str(d / im / "fig_peaks")}))
    jobs.append(("register_stack", "register_stack",
                 {"images": [str(d / im / "ingest.h5") for im in ("overview", "medium")],
                  "segmentations": [str(d / im / "segment.h5") for im in ("overview", "medium")],
                  "phases": [], "gpas": []},
                 {"h5": str(d / "stack.h5"), "figures": str(d / "fig_stack")}))
    for key, rule, inp, o in jobs:
        spec = {"rule": rule, "stage": STAGES[rule], "input": inp, "output": o,
                "log": str(d / f"{key.replace(' ', '_')}.log"), "config": cfg, "threads": 2}
        res = run_job(spec)
        print(n, key, res, flush=True)
        out[key] = res
    out.update(_child("evaluate", d, n))
    return out


def streamed_iou(truth: np.ndarray, pred: np.ndarray, names: list[str], rows: int = 1024):
    """Mean matched IoU (Hungarian, as temtwin.segment.metrics.matched_iou) and the IoU per truth layer,
    from a joint histogram accumulated over row blocks (no full-size int64 copies)."""
    from scipy.optimize import linear_sum_assignment

    nt, npred = int(truth.max()) + 1, int(pred.max()) + 1
    joint = np.zeros(nt * npred, np.int64)
    for r0 in range(0, truth.shape[0], rows):   # row blocks, each vectorised
        t = truth[r0:r0 + rows].astype(np.int64).ravel()
        joint += np.bincount(t * npred + pred[r0:r0 + rows].ravel(), minlength=nt * npred)
    joint = joint.reshape(nt, npred)
    tid = np.nonzero(joint.sum(1))[0]
    inter = joint[np.ix_(tid, np.arange(1, npred))].astype(float)
    union = joint.sum(1)[tid][:, None] + joint.sum(0)[1:][None, :] - inter
    iou = inter / np.maximum(union, 1)
    r, c = linear_sum_assignment(-iou)
    per = {names[int(tid[i]) - 1]: float(iou[i, j]) for i, j in zip(r, c)}
    mean = float(sum(per.values()) / len(tid))          # unmatched layers count 0
    return mean, {names[int(t) - 1]: round(per.get(names[int(t) - 1], 0.0), 3) for t in tid}


#: the thin-layer family: (name, thickness nm (fractions of the height below 1), transmission); thin
#: layers of 3 to 16 px between thick ones, alternately brighter and darker than their neighbours
THIN_LAYERS = [("vacuum", 0.1, 0.95), ("L1", 0.12, 0.5), ("t3", 3.0, 0.8), ("L2", 0.12, 0.55), ("t4", 4.0, 0.3),
               ("L3", 0.12, 0.6), ("t6", 6.0, 0.85), ("L4", 0.12, 0.45), ("t8", 8.0, 0.7), ("L5", 0.12, 0.62),
               ("t12", 12.0, 0.35), ("L6", 0.1, 0.58), ("t16", 16.0, 0.8), ("sub", 1e12, 0.5)]


def thin_family(height: int, width: int = 2048, strips: bool = True, seed: int = SEED) -> dict:
    """Per-layer IoU of a device strip ``height`` x ``width`` px (1 nm/px) with layers of 3-16 px (the
    artefact model of :func:`render`: rough interfaces of 1.5 nm, 5 % texture, 0.7 nm blur, Poisson
    noise at 200 e⁻/px, no wire) segmented as the segment stage does an overview of ``height`` px per
    side: the tiled path with the default layout size (binning ceil(height / 4096)), with or without
    the full-resolution strips (``segment.tiled.thin_layers``).  Returns the IoU per layer, the
    binning, CPU seconds of the segmentation (this process)."""
    from temtwin.segment.tiled import segment_large

    H = float(height)
    names = [n for n, _, _ in THIN_LAYERS]
    th = [t * H if t < 1 else t for _, t, _ in THIN_LAYERS]
    rng = np.random.default_rng(seed)
    model = {"n": width, "bounds": np.cumsum(th), "trans": np.array([t for _, _, t in THIN_LAYERS], np.float32),
             "rough": ndi.gaussian_filter1d(rng.normal(0, 1, width), 8) * 1.5,
             "wire": (-1e9, -1e9, 0.0), "names": names + ["wire"]}
    img, truth = render(model, (0.0, 0.0), (height, width), 1.0, seed)
    cfg = {"tiled": {"above_px": 1 if height > 4096 else 10 ** 12, "thin_layers": strips}}
    t0 = time.process_time()
    res = segment_large(img, (1.0, 1.0), cfg)
    cpu = time.process_time() - t0
    mean, per = streamed_iou(truth, res.labels.astype(np.int32), model["names"])
    return {"iou_per_layer": per, "mean_iou": mean, "binning": int(res.info.get("layout_binning", 1)),
            "cpu_s": cpu, "method": res.info.get("method", ""), "strips": strips}


def register_only(tmp: Path, n: int) -> dict:
    """Run the register_stack job again on the files a kept chain (``--keep``) left in ``tmp/n<n>``; the
    earlier stack.h5 is kept as stack_before.h5 and the placements are compared (max |difference| of the
    transforms, px)."""
    import shutil

    import h5py
    from temtwin.config import load_config

    d = tmp / f"n{n}"
    if (d / "stack.h5").is_file():
        shutil.copyfile(d / "stack.h5", d / "stack_before.h5")
    cfg = load_config({"ingest": {"max_pixels": 10 ** 9}}, require_dataset=False)
    spec = {"rule": "register_stack", "stage": STAGES["register_stack"],
            "input": {"images": [str(d / im / "ingest.h5") for im in ("overview", "medium")],
                      "segmentations": [str(d / im / "segment.h5") for im in ("overview", "medium")],
                      "phases": [], "gpas": []},
            "output": {"h5": str(d / "stack.h5"), "figures": str(d / "fig_stack")},
            "log": str(d / "register_stack.log"), "config": cfg, "threads": 2}
    res = run_job(spec)
    if (d / "stack_before.h5").is_file():
        with h5py.File(d / "stack_before.h5") as a, h5py.File(d / "stack.h5") as b:
            res["transform_change"] = float(max(np.max(np.abs(a[f"images/{im}/transform"][()]
                                                              - b[f"images/{im}/transform"][()]))
                                                for im in ("overview", "medium")))
    print(n, "register_stack", res, flush=True)
    return res


def write_md(res: dict) -> None:
    rows = []
    for n, r in sorted(((k, v) for k, v in res.items() if k.isdigit()), key=lambda kv: int(kv[0])):
        for key in ("ingest overview", "segment overview", "fft_peaks overview", "ingest medium", "segment medium",
                    "register_stack"):
            x = r.get(key)
            if x is None:
                continue
            if "error" in x:
                rows.append([f"{n}²", key, "failed", "-", "-", "-", x["error"]])
                continue
            note = ""
            if key == "segment overview":
                note = (f"{r.get('segments')} regions, mean IoU {r.get('mean_iou', float('nan')):.3f} vs truth "
                        "(9 layers + wire)")
            elif key == "fft_peaks overview":
                note = f"crystalline regions: {r.get('crystalline_regions')} (the scene has no lattice)"
            elif key == "register_stack" and r.get("placement"):
                p = r["placement"]
                note = (f"medium image {'placed' if p['accepted'] else 'refused'} ({p['basis']}), error "
                        f"{p['error_nm']:.1f} nm of 1024 nm, confidence {p['confidence']:.2f}"
                        if p["accepted"] else f"refused: {p['reason'][:80]}")
            cpu = x.get("cpu_s", float("nan"))
            ok = "yes" if (cpu <= 180 and x["rss_mb"] <= 8192) else "**no**"
            rows.append([f"{n}²", key, f"{x['process_s']:.1f}", f"{cpu:.1f}", f"{x['rss_mb'] / 1024:.2f}", ok, note])
    sizes = sorted((n for n in res if n.isdigit()), key=int)
    layer_names = next((list(res[n]["iou_per_layer"]) for n in sizes if res[n].get("iou_per_layer")), [])
    per_layer = ""
    if layer_names:
        per_layer = ("\n\nIoU per truth layer of the overview's segmentation (thickness at 16 384²: SiO2 66 px, "
                     "HfO2 164 px, TiN 328 px; at 4096² a quarter of that):\n\n"
                     + md_table(["overview"] + layer_names,
                                [[f"{n}²"] + [res[n]["iou_per_layer"].get(k, "-") for k in layer_names]
                                 for n in sizes if res[n].get("iou_per_layer")]))
    thin = res.get("thin") or {}
    if thin:
        tn = [k for k in next(iter(thin.values()))["iou_per_layer"] if k.startswith("t")]
        per_layer += (
            "\n\nThin layers through the tiled path (:func:`thin_family`: a device strip of height² overview "
            "geometry, 2048 px wide, layers of 3-16 px between 12 %-of-height layers, interfaces rough by 1.5 nm; "
            "segmented as an overview of that height: the 4096 px one at full resolution, the 16 384 px one on "
            "the 4x-binned layout, with and without the full-resolution strips of segment.tiled.thin_layers). "
            "IoU of each thin layer (named by its width in px):\n\n"
            + md_table(["height", "layout binning", "strips", "mean IoU (all layers)"] + tn + ["CPU (s)"],
                       [[k.split("_")[0], v["binning"], "yes" if v["strips"] else "no", round(v["mean_iou"], 3)]
                        + [v["iou_per_layer"].get(x, "-") for x in tn] + [round(v["cpu_s"], 1)]
                        for k, v in sorted(thin.items(), key=lambda kv: (int(kv[0].split("_")[0]), kv[0]))]))
    body = (__doc__.split("\n\n", 1)[1].rsplit("\n\nRun", 1)[0].strip()
            + f"\n\nMachine: {machine()}; 2 threads per job, on a machine shared with other jobs (the 2-core "
              "limit: times are wall times under that load).\n\n"
            + md_table(["overview", "job", "wall (s, whole process)", "CPU (s, user+sys)", "peak RSS (GB)",
                        "CPU ≤ 180 s and ≤ 8 GB", "outcome"], rows)
            + per_layer
            + "\n\nThe time target is judged on the CPU time (user + system) of the job: on a machine shared "
              "with other jobs the wall time measures the load; a job alone on 2 cores takes at most its CPU "
              "time (less where both threads work).  The 3-minute target is the issue's for 16 384²; at 20 000² (the "
              "issue's upper size) only the 8 GB limit applies."
            + "\n\nCode measured (git commit) per size: "
            + ", ".join(f"{n}²: {r.get('commit', 'not recorded')}"
                        for n, r in sorted(((k, v) for k, v in res.items() if k.isdigit()),
                                           key=lambda kv: int(kv[0])))
            + ".\n\nRound 3 (wave 3): the refinement of register_stack builds only the similarity columns of its "
              "Jacobian per step and reuses the plane basis while the template pixels are the same; rerun on the "
              "kept 4096² files (`--sizes 4096 --keep DIR --register-only`): 107 s and 124 s CPU (132 s and 195 s "
              "wall, two runs under different load) against 156.8 s above, transforms identical (max difference "
              "0.0). The 16 384² chain was not rerun in that round."
            + "\n\nRound 4 (wave 4): the round-3 refusal at 16 384² (\"stage-guided: confidence 0.07\") came from "
              "inputs of an earlier scene in which the 1024 nm member lay inside the round wire (919 nm across at "
              "that size): content with rotational symmetry, whose correlation at the parent's 1 nm pixel (0.45) "
              "was mostly the two images' independent noise and texture (0.97 at the 21 nm coarse level).  Two "
              "general faults of the stage-guided placement were behind it and are fixed: its confidence was judged"
              " only at the parent's pixel size (now also on the coarse level, the larger counts, "
              "`confidence_pixel_nm` says which), and a rotation the content does not fix (rotational symmetry: the"
              " content alone drifted to the 4.3° search bound with a Gauss-Newton error of 0.001°) was trusted "
              "(now tested: a rotation moving the corners by a quarter footprint must decorrelate, else the "
              "rotation follows the stage prior, `rotation_from_content`); "
              "tests/test_stack_prior.py::test_round_wire_rotation_follows_the_stage.  Segmentation: layers thinner"
              " than the refinement band ((2 band + 1) x binning = 20 px at 16 384²) are painted from full-"
              "resolution strips (segment.tiled.thin_layers; table above)."
            + "\n\nReproduce: `flock /tmp/bigmem.lock python bench/bench_gigapixel_segment.py --sizes 16384` "
              "(and `--sizes 4096`, `--sizes 20000`; the thin-layer table: `--thin`).\n")
    write_section("gigapixel_segment", "Gigapixel overviews: the per-image chain", body)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096])
    ap.add_argument("--keep", help="folder for the generated files (default a temporary folder)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--thin", type=int, nargs="*", metavar="HEIGHT",
                    help="run the thin-layer family at these heights (default 4096 16384) instead of the chain")
    ap.add_argument("--register-only", action="store_true",
                    help="with --keep: run register_stack again on the kept chain's files (placement compared)")
    a = ap.parse_args(argv)
    if a.register_only:
        for n in a.sizes:
            register_only(Path(a.keep), n)
        return
    js = RESULTS_DIR / "gigapixel_segment.json"
    res = json.loads(js.read_text()) if js.is_file() else {}
    if a.thin is not None:
        out = {}
        for h in a.thin or [4096, 16384]:
            for strips in ((True, False) if h > 4096 else (True,)):
                r = thin_family(h, strips=strips)
                print(h, strips, r, flush=True)
                out[f"{h}_{'strips' if strips else 'layout'}"] = r
        res = json.loads(js.read_text()) if js.is_file() else {}
        res["thin"] = out
        js.write_text(json.dumps(res, indent=1))
    elif not a.report_only:
        tmp = Path(a.keep or tempfile.mkdtemp(prefix="temtwin-bench-giga-"))
        for n in a.sizes:
            r = chain(tmp, n)
            res = json.loads(js.read_text()) if js.is_file() else {}    # other sizes may run meanwhile
            res[str(n)] = r
            js.write_text(json.dumps(res, indent=1))
    write_md(res)


if __name__ == "__main__":
    main()
