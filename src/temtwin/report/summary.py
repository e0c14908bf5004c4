"""Stages ``summarize`` (per sample: summary.json) and ``summary_table`` (across samples: summary.tsv).

Each result file carries a JSON fragment (``temtwin.io.h5.set_summary``).  Per-image fragments
(image, segmentation, peaks, phases, gpa) are merged into ``images.<image>``; per-sample fragments
(stack, fem, model, keating, phonons, tb) into the sample's top level.  ``summary.tsv`` has one row per
sample/image/region with the region's scalar fields flattened to dotted column names (short numeric
lists such as centroids are written as comma-separated values); a sample whose jobs failed has one row
with its one-line reason in column ``error`` (written also by the Snakefile's ``onerror`` handler, so a
``--keep-going`` run with one bad sample still tabulates the others).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..io.h5 import atomic_path, to_jsonable
from ..results import read_summary
from ..results.summary import read_summary_json
from ..workflow.stages import summary_files

IMAGE_STAGES = summary_files("image")      # from the stage registry, in pipeline order
SAMPLE_STAGES = summary_files("sample")
LEAD_COLUMNS = ["sample", "image", "region", "error", "area_nm2", "centroid_nm", "crystalline", "n_peaks", "phase",
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


def failure_reason(results: Path, sample: str) -> str:
    """The first error line in the sample's job logs (``results/logs/<sample>/**.log``), or a pointer."""
    logs = sorted((results / "logs" / sample).rglob("*.log")) if (results / "logs" / sample).is_dir() else []
    for log in logs:
        try:
            for line in log.read_text(errors="replace").splitlines():
                if " ERROR " in line:
                    return f"{log.stem}: {line.split(' ERROR ', 1)[1].strip()}"
        except OSError:
            continue
    return f"did not finish (see {results / 'logs' / sample})"


def write_table(results: Path, samples: list[str], path: Path) -> tuple[int, list[str]]:
    """Gather the samples' summary.json files that exist into ``path`` (summary.tsv).

    A sample without summary.json (a job of it failed) gets one row with ``error`` = the first error
    line of its logs, so one bad sample never hides the others' results. Returns (rows, failed samples).
    """
    summaries, failed = [], []
    for s in samples:
        p = results / s / "summary.json"
        if p.is_file():
            summaries.append(read_summary_json(p))
        else:
            failed.append(s)
    rows = region_rows(summaries)
    rows += [{"sample": s, "image": "", "region": "", "error": failure_reason(results, s)} for s in failed]
    write_tsv(rows, path)
    return len(rows), failed
