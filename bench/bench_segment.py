"""Bench of rule `segment` (issue 3): accuracy on ../shared/validation, speed on 4096 x 4096 images.

Measures
* layered heterostructures (sige_qw, insb_inp): every layer its own region, mean IoU after optimal
  (Hungarian) label matching, median boundary position error (nm);
* particles on amorphous carbon (au_on_c_dev): IoU of each particle, whether vacuum and film are
  split into fragments;
* the stack images (overview, medium, HRTEM) against their label maps;
* wall time of the default method on a 4096 x 4096 low-magnification image and on a 4096 x 4096
  atomic-resolution image (the sige_qw HRTEM tiled 8 x 8), and the ratio to Segment Anything vit_b
  on CPU on the same images (random weights: no checkpoint is available offline, so this is timing
  only; the decoder's output is meaningless).

Writes bench/results/segment.md (about 6 min on 2 cores, of which SAM takes 4-5).  Environment:
TEMTWIN_BENCH_SKIP_SAM=1 skips the SAM timing;
TEMTWIN_BENCH_THREADS (default 2) limits numeric threads.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

THREADS = int(os.environ.get("TEMTWIN_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, load_truth, machine, md_table, peak_rss_mb, validation_root, write_section  # noqa: E402

from temtwin.io.ingest import read_micrograph  # noqa: E402
from temtwin.segment.canny import segment_auto  # noqa: E402
from temtwin.segment.metrics import boundary_errors_nm, matched_iou  # noqa: E402

CASES = [  # (case/sample, image file, truth key, kind)
    ("sige_qw/qw_dev", "hrtem.hspy", "labels", "layers"),
    ("insb_inp/insb_inp_dev", "hrtem.tif", "labels", "layers"),
    ("particles/au_on_c_dev", "hrtem.hspy", "particle_labels", "particles"),
    ("stack/device_dev", "overview.hspy", "overview_labels", "stack"),
    ("stack/device_dev", "medium_1.hspy", "medium_1_labels", "stack"),
    ("stack/device_dev", "hrtem.hspy", "hrtem_labels", "stack"),
]


def validation_rows(root: Path):
    rows, notes = [], []
    for case, fname, key, kind in CASES:
        d = root / case
        if not (d / fname).is_file():
            notes.append(f"{case}/{fname}: missing, skipped")
            continue
        m = read_micrograph(d / fname)
        _, npz = load_truth(d)
        truth = npz[key].astype(np.int64)
        if kind == "particles":
            parts = truth
            truth = npz["region_labels"].astype(np.int64)          # 0 vacuum, 1 film
            truth = np.where(parts > 0, parts + 10, truth)         # particles 11, 12, ... on top
        t0 = time.perf_counter()
        r = segment_auto(m.data, m.pixel_size_nm)
        dt = time.perf_counter() - t0
        lab = r.labels
        miou, match = matched_iou(truth, lab)
        err = boundary_errors_nm(truth, lab, m.pixel_size_nm, margin_px=5)
        med = float(np.median(err)) if len(err) else float("nan")
        per = ", ".join(f"{k}:{v[1]:.2f}" for k, v in match.items())
        extra = ""
        if kind == "layers":
            own = all(v[1] >= 0.5 for v in match.values()) and len({v[0] for v in match.values()}) == len(match)
            extra = f"every layer own region: {'yes' if own else 'no'}"
        elif kind == "particles":
            pi = [v[1] for k, v in match.items() if k > 10]
            # fragments: predicted regions whose majority lies in vacuum or film
            frag = 0
            for p in np.unique(lab):
                sel = truth[lab == p]
                if np.mean(sel < 10) > 0.5:
                    frag += 1
            extra = (f"particles mean IoU {np.mean(pi):.3f} (min {np.min(pi):.2f}); "
                     f"regions covering vacuum+film: {frag} (truth 2); crystals found: {r.info.get('n_crystals', 0)}")
            miou = float(np.mean(pi))
        rows.append([f"{case}/{fname}", f"{m.shape[0]}x{m.shape[1]}", int(lab.max()), len(match), miou, med,
                     dt, per, extra])
    return rows, notes


def timing_rows(skip_sam: bool):
    from temtwin.testing.synth import lowmag_device

    images = {}
    s = lowmag_device(shape=(4096, 4096), pixel_size_nm=(0.25, 0.25), blur_nm=0.5, seed=5)
    images["low-mag device (synthetic)"] = (s.image, s.pixel_size_nm, s.labels)
    root = validation_root()
    if root is not None and (root / "sige_qw/qw_dev/hrtem.hspy").is_file():
        m = read_micrograph(root / "sige_qw/qw_dev/hrtem.hspy")
        images["HRTEM sige_qw tiled 8x8"] = (np.tile(m.data, (8, 8)), m.pixel_size_nm, None)
    rows = []
    segment_auto(images["low-mag device (synthetic)"][0][:512, :512], (0.25, 0.25))   # JIT warm-up
    sam_model = None
    if not skip_sam:
        import torch
        from segment_anything import sam_model_registry

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        sam_model = sam_model_registry["vit_b"](checkpoint=None).eval()
    for name, (img, px, truth) in images.items():
        t = best_time(lambda im=img, p=px: segment_auto(im, p), repeat=3)
        r = segment_auto(img, px)
        acc = ""
        if truth is not None:
            _, match = matched_iou(truth, r.labels, truth_ids=[1, 2, 3, 4, 5, 6, 7])
            acc = "IoU " + ", ".join(f"{k}:{v[1]:.2f}" for k, v in match.items())
        t_sam = float("nan")
        if sam_model is not None and not rows:          # SAM once (minutes on CPU), on the first image
            from temtwin.segment.sam import segment_sam

            t0 = time.perf_counter()
            segment_sam(img, px, {"device": "cpu"}, model=sam_model)
            t_sam = time.perf_counter() - t0
        rows.append([name, f"{img.shape[0]}x{img.shape[1]}", t, r.info["analysis_factor"], int(r.labels.max()),
                     t_sam, t_sam / t if np.isfinite(t_sam) else float("nan"), acc])
    return rows


def main() -> None:
    skip_sam = os.environ.get("TEMTWIN_BENCH_SKIP_SAM", "") not in ("", "0")
    parts = [f"Machine: {machine()}; threads {THREADS}; load average at start {os.getloadavg()[0]:.1f} "
             "(timings on a shared machine are inflated). Default method (`segment.method: canny`), "
             "default settings, every parameter derived from the image."]
    root = validation_root()
    if root is None:
        parts.append("Validation data (../shared/validation) not found: accuracy part skipped.")
    else:
        rows, notes = validation_rows(root)
        parts.append("### Accuracy on ../shared/validation\n\nmean IoU after optimal one-to-one label matching "
                     "(Hungarian); for particles the mean over the particles; boundary error = median distance "
                     "from each truth boundary pixel to the nearest predicted boundary (nm).\n")
        parts.append(md_table(["image", "size", "regions", "truth regions", "mean IoU", "median boundary err nm",
                               "time s", "IoU per truth label", "notes"], rows))
        parts += notes
    trows = timing_rows(skip_sam)
    parts.append("### Speed, 4096 x 4096\n\nbest of 3 (after JIT warm-up); SAM vit_b: `SamAutomaticMaskGenerator` "
                 "defaults (32 x 32 points) on CPU with **random weights** (no checkpoint offline: timing "
                 "only), input reduced to 1024 px as in the stage.\n")
    parts.append(md_table(["image", "size", "canny s", "analysis factor", "regions", "SAM vit_b CPU s",
                           "SAM / canny", "accuracy"], trows))
    parts.append(f"Peak RSS {peak_rss_mb():.0f} MB.")
    p = write_section("segment", "Segmentation (rule segment, issue 3)", "\n\n".join(parts))
    print(p.read_text())


if __name__ == "__main__":
    main()
