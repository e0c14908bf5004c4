"""Bench of `segment` on multilayer device overviews (issue 20): IoU per layer width and contrast.

Generated family (temtwin.testing.synth.scenes.device_overview, 512² at 1 nm/px, seeds 0-11 and, disjoint
and never used to choose anything, seeds 100-111; each in bright-field and HAADF contrast): under
40 px of vacuum, layers 2, 3, 5, 8, 12, 20, 40 and 100 px wide in random order over a substrate;
transmissions uniform in [0.25, 0.9] with neighbours >= 0.12 apart; the layer normal tilted uniformly
within ±8°; every interface rough (rms 0-1.5 px, correlation 10 px); blur σ 0.5-1.5 px; mottled
texture 2-8 %; Poisson noise at 100-1000 counts; inclusions by seed (mod 5): none, a nanowire, a fin
(rising from the substrate through 1-3 layers, >= 20 px), a trench (cut from the top through 1-3
layers, >= 20 px), all three.  Each truth region is matched one-to-one (Hungarian) to a segment.
Target (issue 20): mean IoU >= 0.85, every layer >= 3 px its own region (IoU >= 0.5).
`canny` is the edge-based method alone (the default before the multilayer mode), for reference.
Also the validation device overview (`stack/device_dev/overview`, when ../shared/validation is
present; never used to choose parameters).

Run: ``.venv/bin/python bench/bench_segment_layers.py``; writes bench/results/segment_layers.md.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_truth, md_table, validation_root, write_section  # noqa: E402

from temtwin.segment.canny import segment_auto  # noqa: E402
from temtwin.segment.metrics import matched_iou  # noqa: E402
from temtwin.testing.synth.scenes import device_overview  # noqa: E402

WIDTHS = (2, 3, 5, 8, 12, 20, 40, 100)
INCLUSIONS = [(), ("wire",), ("fin",), ("trench",), ("wire", "fin", "trench")]
SEED_SETS = {"seeds 0-11": range(12), "seeds 100-111 (held out)": range(100, 112)}
CONTRAST_BINS = ((0.12, 0.2), (0.2, 0.35), (0.35, 1.0))


def scene(seed: int, contrast: str):
    return device_overview((512, 512), (1.0, 1.0), seed=seed, contrast=contrast, widths_px=WIDTHS,
                           inclusions=INCLUSIONS[seed % len(INCLUSIONS)])


def run_set(seeds, title: str) -> tuple[list[str], float]:
    """Markdown lines of one seed set and its mean IoU."""
    per_width: dict[int, list[float]] = {w: [] for w in WIDTHS}
    per_contrast: dict[tuple, list[float]] = {b: [] for b in CONTRAST_BINS}
    per_kind: dict[str, list[float]] = {}
    rows, mious, base, times = [], {"bf": [], "haadf": []}, [], []
    all_own = 0                      # scenes whose every layer >= 3 px is its own region
    for seed in seeds:
        for contrast in ("bf", "haadf"):
            sc = scene(seed, contrast)
            truth = sc.labels.astype(np.int64)
            t0 = time.perf_counter()
            r = segment_auto(sc.image, sc.pixel_size_nm)
            dt = time.perf_counter() - t0
            times.append(dt)
            miou, match = matched_iou(truth, r.labels)
            b_miou, _ = matched_iou(truth, segment_auto(sc.image, sc.pixel_size_nm, {"method": "canny"}).labels)
            base.append(b_miou)
            mious[contrast].append(miou)
            names, widths, contr = sc.truth["names"], sc.truth["widths_px"], sc.truth["contrast"]
            own = n3 = 0
            for k, (_p, iou) in match.items():
                w = widths[k - 1]
                if w is not None:
                    per_width[int(w)].append(iou)
                    if w >= 3:
                        n3 += 1
                        own += int(iou >= 0.5)
                kind = "".join(ch for ch in names[k - 1] if ch.isalpha())
                kind = "layer" if w is not None else kind
                per_kind.setdefault(kind, []).append(iou)
                for lo, hi in CONTRAST_BINS:
                    if lo <= contr[k - 1] < hi and w is not None:
                        per_contrast[(lo, hi)].append(iou)
            all_own += int(own == n3)
            t = sc.truth
            rows.append([seed, contrast.upper(), "+".join(INCLUSIONS[seed % 5]) or "-",
                         f"{t['tilt_deg']:.1f}", f"{t['roughness_px']:.2f}", f"{t['blur_px']:.2f}",
                         f"{t['dose']:.0f}", len(match), int(r.labels.max()), round(miou, 3), round(b_miou, 3),
                         f"{own} / {n3}", round(dt, 2)])
    allm = mious["bf"] + mious["haadf"]
    lines = [f"### {title}", ""]
    lines.append(f"**Mean IoU over the {len(allm)} generated overviews: {np.mean(allm):.3f}** "
                 f"(BF {np.mean(mious['bf']):.3f}, HAADF {np.mean(mious['haadf']):.3f}; min {np.min(allm):.3f}); "
                 "edge-based method alone "
                 f"{np.mean(base):.3f}.  Median time {np.median(times):.2f} s per 512² image "
                 f"({platform.processor() or platform.machine()}, 1 thread, shared 2-core machine).\n")
    kinds = {k: float(np.mean(v)) for k, v in per_kind.items()}
    lines.append(f"Scenes with every layer >= 3 px its own region: **{all_own} / {len(allm)}** (target >= 22); "
                 f"3-px layers own region {sum(x >= 0.5 for x in per_width[3])} / {len(per_width[3])}; "
                 f"mean IoU of fins **{kinds.get('fin', float('nan')):.3f}**, trenches "
                 f"**{kinds.get('trench', float('nan')):.3f}** (target >= 0.8).\n")
    lines.append(md_table(["seed", "contrast", "inclusions", "tilt °", "rough px", "blur px", "dose",
                           "truth regions", "segments", "mean IoU", "canny IoU", "layers >= 3 px own region",
                           "time s"], rows))
    lines.append("")
    lines.append(f"IoU per layer width ({len(allm)} scenes):\n")
    lines.append(md_table(["width (px)", "mean IoU", "min IoU", "own region (IoU >= 0.5)"],
                          [[w, float(np.mean(v)), float(np.min(v)), f"{sum(x >= 0.5 for x in v)} / {len(v)}"]
                           for w, v in per_width.items()]))
    lines.append("")
    lines.append("IoU per layer contrast (smallest transmission step to a neighbour), layers of every width:\n")
    lines.append(md_table(["contrast step", "layers", "mean IoU", "own region (IoU >= 0.5)"],
                          [[f"{lo:.2f}-{hi:.2f}", len(v), float(np.mean(v)) if v else float("nan"),
                            f"{sum(x >= 0.5 for x in v)} / {len(v)}"] for (lo, hi), v in per_contrast.items()]))
    lines.append("")
    lines.append("IoU per region kind:\n")
    lines.append(md_table(["kind", "regions", "mean IoU", "min IoU"],
                          [[k, len(v), float(np.mean(v)), float(np.min(v))] for k, v in sorted(per_kind.items())]))
    lines.append("")
    return lines, float(np.mean(allm))


def main() -> None:
    segment_auto(scene(99, "bf").image[:128, :128], (1.0, 1.0))       # warm-up (imports, numba) not timed
    lines = [__doc__.split("\n\n")[1].strip(), ""]
    summary = []                     # mean IoU per seed set
    body: list[str] = []
    for title, seeds in SEED_SETS.items():
        part, m = run_set(seeds, title)
        body += part
        summary.append(f"{title}: **{m:.3f}**")
    lines.append("Mean IoU: " + "; ".join(summary) + ".\n")
    lines += body
    root = validation_root()
    d = root / "stack" / "device_dev" if root else None
    if d is not None and (d / "overview.hspy").is_file():
        from temtwin.io.ingest import read_micrograph

        m = read_micrograph(d / "overview.hspy")
        js, npz = load_truth(d)
        t0 = time.perf_counter()
        r = segment_auto(m.data, m.pixel_size_nm)
        dt = time.perf_counter() - t0
        miou, match = matched_iou(npz["overview_labels"].astype(np.int64), r.labels)
        names = js.get("label_names", {})
        per = ", ".join(f"{names.get(str(k), k)}: {v[1]:.2f}" for k, v in sorted(match.items()))
        b_miou, _ = matched_iou(npz["overview_labels"].astype(np.int64),
                                segment_auto(m.data, m.pixel_size_nm, {"method": "canny"}).labels)
        lines.append(f"\nValidation `stack/device_dev/overview.hspy` (768², 0.25 nm/px; method "
                     f"{r.info.get('method')}, {int(r.labels.max())} segments for {len(match)} truth labels, "
                     f"{dt:.2f} s): **mean IoU {miou:.3f}** "
                     f"(edge-based method alone {b_miou:.3f}); {sum(v[1] >= 0.5 for v in match.values())} of "
                     f"{len(match)} labels with IoU >= 0.5; per truth label: {per}\n")
    write_section("segment_layers", "Segmentation of multilayer device overviews", "\n".join(lines))


if __name__ == "__main__":
    main()
