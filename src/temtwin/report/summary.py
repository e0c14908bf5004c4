"""The ``summarize`` stage: merge every stage's summary fragment into summary.json and summary.tsv.

Each result file carries a JSON fragment (``temtwin.io.h5.set_summary``).  Per-image fragments
(image, segmentation, peaks, phases, gpa) are merged into ``images.<image>``; per-sample fragments
(stack, fem, model, keating, phonons, tb) into the sample's top level.  ``summary.tsv`` has one row per
sample/image/region with the region's scalar fields flattened to dotted column names (short numeric
lists such as centroids are written as comma-separated values).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..io.h5 import atomic_path, read_summary, to_jsonable

IMAGE_STAGES = ("image.h5", "segmentation.h5", "peaks.h5", "phases.h5", "gpa.h5", "simulation.h5")
SAMPLE_STAGES = ("stack.h5", "fem/fem.h5", "model.h5", "keating.h5", "phonons.h5", "tb.h5")
LEAD_COLUMNS = ["sample", "image", "region", "area_nm2", "centroid_nm", "crystalline", "n_peaks", "phase",
                "space_group", "zone_axis", "rotation_deg", "phase_score", "scale_factor"]


def deep_merge(a: dict, b: Mapping) -> dict:
    """Merge ``b`` into ``a`` recursively (``b`` wins for non-mapping values); returns ``a``."""
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(a.get(k), dict):
            deep_merge(a[k], v)
        else:
            a[k] = v if not isinstance(v, Mapping) else deep_merge({}, v)
    return a


def sample_summary(results: Path, sample: str, images: list[str]) -> dict:
    """The summary.json content of one sample from its result files (missing files are skipped)."""
    out: dict[str, Any] = {"sample": sample, "temtwin_version": __version__, "images": {}}
    for im in images:
        entry: dict[str, Any] = {"regions": {}}
        for st in IMAGE_STAGES:
            p = results / sample / im / st
            if p.is_file():
                deep_merge(entry, read_summary(p))
        out["images"][im] = entry
    for st in SAMPLE_STAGES:
        p = results / sample / st
        if p.is_file():
            deep_merge(out, read_summary(p))
    return to_jsonable(out)


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) and "phase" in x for x in v):
            # ranked phase candidates: "Ge[011]:0.95;Si[011]:0.05"
            flat[key] = ";".join(f"{x['phase']}[{''.join(str(i) for i in x.get('zone_axis', []))}]:"
                                 f"{x.get('confidence', x.get('score', 0)):.3g}" for x in v)
        elif isinstance(v, (list, tuple)):
            if len(v) <= 4 and all(isinstance(x, (int, float)) or x is None for x in v):
                flat[key] = ",".join("" if x is None else f"{x:.6g}" if isinstance(x, float) else str(x)
                                     for x in v)
            # longer lists (matrices, spot lists) stay in summary.json only
        elif isinstance(v, float):
            flat[key] = f"{v:.6g}"
        elif v is None:
            flat[key] = ""
        else:
            flat[key] = v
    return flat


def region_rows(summaries: list[dict]) -> list[dict[str, Any]]:
    """One row per sample/image/region (an image without regions gives one row with region '')."""
    rows = []
    for s in summaries:
        for im, entry in s.get("images", {}).items():
            regions = entry.get("regions") or {}
            if not regions:
                rows.append({"sample": s["sample"], "image": im, "region": ""})
            for lab in sorted(regions, key=lambda x: (len(x), x)):
                row = {"sample": s["sample"], "image": im, "region": lab}
                row.update(_flatten(regions[lab]))
                rows.append(row)
    return rows


def write_tsv(rows: list[dict[str, Any]], path: Path) -> None:
    cols = [c for c in LEAD_COLUMNS if any(c in r for r in rows) or c in ("sample", "image", "region")]
    cols += sorted({k for r in rows for k in r} - set(cols))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, delimiter="\t", extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in cols})


def run(ctx) -> None:
    """Stage ``summarize``."""
    results = Path(ctx.config["results"])
    summaries = []
    samples = list(ctx.params["samples"])
    for i, s in enumerate(samples, 1):
        summ = sample_summary(results, s, list(ctx.params["images"][s]))
        summaries.append(summ)
        with atomic_path(results / s / "summary.json") as tmp:
            tmp.write_text(json.dumps(summ, indent=1, sort_keys=False) + "\n")
        ctx.progress(i, len(samples), "samples")
    rows = region_rows(summaries)
    write_tsv(rows, Path(ctx.output["tsv"]))
    ctx.log.info("summary.tsv: %d rows", len(rows))
