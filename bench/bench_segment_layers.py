"""Bench of `segment` on multilayer device overviews (issue 20): IoU per layer width.

Generated overviews (temtwin.testing.synth.scenes.lowmag_device, 512² at 1 nm/px, seeds 0-2): a vacuum top,
then layers 2, 3, 5, 8, 12, 20, 40 and 100 px wide (in shuffled order, neighbouring transmissions
always differing by >= 0.15) over a substrate, rough interfaces, 5 % texture, 0.7 nm blur, Poisson
noise at 200 e⁻/px; bright-field contrast (transmission) and HAADF-like contrast (1.2 - transmission).
Each truth layer is matched one-to-one (Hungarian) to a segment; IoU per layer, grouped by width.
Target (issue 20): mean IoU >= 0.85, every layer >= 3 px its own region.  Also the validation device
overview (`stack/device_dev/overview`, when ../shared/validation is present).

Default settings of ``segment_auto`` (the method is insensitive to the sign of the contrast, so BF and
HAADF give the same segments).  Run: ``.venv/bin/python bench/bench_segment_layers.py``;
writes bench/results/segment_layers.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_truth, md_table, validation_root, write_section  # noqa: E402

from temtwin.segment.canny import segment_auto  # noqa: E402
from temtwin.segment.metrics import matched_iou  # noqa: E402
from temtwin.testing.synth.scenes import lowmag_device  # noqa: E402

WIDTHS = (2, 3, 5, 8, 12, 20, 40, 100)


def scene(seed: int, haadf: bool):
    rng = np.random.default_rng(seed)
    order = rng.permutation(WIDTHS)
    trans, layers = 0.95, [("vacuum", 60.0, 0.95)]
    for w in order:
        t = trans
        while abs(t - trans) < 0.15:
            t = float(rng.uniform(0.3, 0.9))
        trans = t
        layers.append((f"w{w}", float(w), t))
    layers.append(("substrate", 1e9, 0.6 if abs(trans - 0.6) >= 0.15 else 0.85))
    sc = lowmag_device((512, 512), (1.0, 1.0), layers=layers, seed=seed, wire=False, blur_nm=0.7)
    img = sc.image
    if haadf:
        img = (1.2 * img.max() - img).astype(np.float32)
    return img, sc.labels, [l[0] for l in layers]


def main() -> None:
    per_width: dict[int, list[float]] = {w: [] for w in WIDTHS}
    rows = []
    segment_auto(scene(9, False)[0][:128, :128], (1.0, 1.0))      # warm-up: numba compilation not timed
    for haadf in (False, True):
        for seed in range(3):
            img, truth, names = scene(seed, haadf)
            t0 = time.perf_counter()
            lab = segment_auto(img, (1.0, 1.0)).labels
            dt = time.perf_counter() - t0
            miou, match = matched_iou(truth.astype(np.int64), lab)
            own = 0
            for k, (_p, iou) in match.items():
                nm = names[k - 1]
                if nm.startswith("w"):
                    per_width[int(nm[1:])].append(iou)
                    own += int(iou >= 0.5 and int(nm[1:]) >= 3)
            rows.append(["HAADF" if haadf else "BF", seed, len(match), int(lab.max()), miou,
                         f"{own} / {sum(1 for w in WIDTHS if w >= 3)}", round(dt, 2)])
    lines = [__doc__.split("\n\n")[1].strip(), ""]
    lines.append(md_table(["contrast", "seed", "truth layers", "segments", "mean IoU", "layers >= 3 px own region",
                           "time s"], rows))
    lines.append("")
    lines.append("IoU per layer width (6 scenes: 3 seeds x BF/HAADF):\n")
    lines.append(md_table(["width (px)", "mean IoU", "min IoU", "own region (IoU >= 0.5)"],
                          [[w, float(np.mean(v)), float(np.min(v)), f"{sum(x >= 0.5 for x in v)} / {len(v)}"]
                           for w, v in per_width.items()]))
    root = validation_root()
    d = root / "stack" / "device_dev" if root else None
    if d is not None and (d / "overview.hspy").is_file():
        from temtwin.io.ingest import read_micrograph

        m = read_micrograph(d / "overview.hspy")
        _, npz = load_truth(d)
        lab = segment_auto(m.data, m.pixel_size_nm).labels
        miou, match = matched_iou(npz["overview_labels"].astype(np.int64), lab)
        per = ", ".join(f"{k}:{v[1]:.2f}" for k, v in sorted(match.items()))
        lines.append(f"\nValidation `stack/device_dev/overview.hspy`: mean IoU {miou:.3f} "
                     f"({sum(v[1] <= 0.02 for v in match.values())} of {len(match)} labels with IoU <= 0.02); "
                     f"per truth label: {per}\n")
    write_section("segment_layers", "Segmentation of multilayer device overviews", "\n".join(lines))


if __name__ == "__main__":
    main()
