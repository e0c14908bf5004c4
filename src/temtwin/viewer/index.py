"""The cross-sample index page: every sample and region of ``results/summary.tsv``.

The page gets the table as it is (all columns, values as written by the summarize stage) plus which
columns hold what: strain means with their error bars (``strain.<c>.sigma`` when the gpa stage writes
an uncertainty, else the spread ``strain.<c>.std``), lattice parameters, identification confidence,
and the layer column used by the layer filter (``layer`` when present, else ``image``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import UserError


def read_tsv(path: str | Path) -> tuple[list[str], list[dict]]:
    path = Path(path)
    if not path.is_file():
        raise UserError("summary.tsv not found; run the workflow (rule summarize) first", path)
    with open(path, newline="") as fh:
        r = csv.DictReader(fh, delimiter="\t")
        rows = list(r)
        return list(r.fieldnames or []), rows


def _num(v: str):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return v
    return x if x == x else None


def index_payload(tsv: str | Path, samples_with_page: list[str] | None = None) -> dict:
    cols, rows = read_tsv(tsv)
    rows = [{k: _num(v) if v != "" else None for k, v in r.items()} for r in rows]
    for r in rows:                                # zone axis columns stay text ("1,1,0")
        for k in cols:
            if "zone" in k and r.get(k) is not None:
                r[k] = str(r[k])
    strain = []
    for c in ("exx", "eyy", "exy"):
        mean = f"strain.{c}.mean"
        if mean in cols:
            errs = (f"strain.{c}.sigma", f"strain_sigma.{c}.mean", f"strain.{c}.std")
            err = next((e for e in errs if e in cols), None)
            strain.append({"name": c, "mean": mean, "err": err})
    lattice = [c for c in cols if re.search(r"(^|[._])(lattice|a_nm|abc_nm|d_spacing|a_from_g)", c) and
               any(isinstance(r.get(c), float) for r in rows)]
    layer = next((c for c in ("layer", "layer_name", "gpa.layer") if c in cols), "image")
    numeric = [c for c in cols if any(isinstance(r.get(c), float) for r in rows)]
    return {"columns": cols, "rows": rows, "strain": strain, "lattice": lattice, "layer": layer,
            "numeric": numeric, "confidence": "confidence" if "confidence" in cols else None,
            "pages": sorted(set(samples_with_page or {r["sample"] for r in rows}))}
