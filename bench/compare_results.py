"""Compare two result folders file by file: every HDF5 dataset (values with NaN == NaN, dtype, units) and
every attribute (provenance attributes left out), and the parsed ``summary`` attribute.

``python bench/compare_results.py BEFORE AFTER`` prints one line per difference and a final count; exit
status 1 when anything differs. Used to show a refactor changes no result (issue 15).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

PROVENANCE = {"temtwin_version", "rule", "config_digest", "input_digests"}


def _norm(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    return v


def _equal(a, b) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, (list, str, dict)) or isinstance(b, (list, str, dict)):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _summary(v) -> dict:
    try:
        return json.loads(_norm(v))
    except (TypeError, ValueError):
        return {}


def compare_files(p: Path, q: Path, name: str) -> list[str]:
    out = []
    with h5py.File(p, "r") as f, h5py.File(q, "r") as g:
        items_f, items_g = {}, {}
        f.visititems(lambda n, o: items_f.__setitem__(n, o))
        g.visititems(lambda n, o: items_g.__setitem__(n, o))
        for n in sorted(set(items_f) ^ set(items_g)):
            out.append(f"{name}: /{n} only in {'before' if n in items_f else 'after'}")
        for n in sorted(set(items_f) & set(items_g)):
            a, b = items_f[n], items_g[n]
            if isinstance(a, h5py.Dataset) != isinstance(b, h5py.Dataset):
                out.append(f"{name}: /{n} kind differs")
                continue
            if isinstance(a, h5py.Dataset):
                if a.dtype != b.dtype and not (a.dtype.kind in "OS" and b.dtype.kind in "OS"):
                    out.append(f"{name}: /{n} dtype {a.dtype} vs {b.dtype}")
                elif not _equal(a[()], b[()]):
                    out.append(f"{name}: /{n} values differ")
            out += _attrs(a, b, f"{name}: /{n}")
        out += _attrs(f, g, f"{name}: /")
    return out


def _attrs(a, b, where: str) -> list[str]:
    out = []
    ka, kb = set(a.attrs) - PROVENANCE, set(b.attrs) - PROVENANCE
    for k in sorted(ka ^ kb):
        out.append(f"{where} attr {k} only in {'before' if k in ka else 'after'}")
    for k in sorted(ka & kb):
        if k == "summary":
            if _summary(a.attrs[k]) != _summary(b.attrs[k]):
                out.append(f"{where} summary differs")
        elif not _equal(a.attrs[k], b.attrs[k]):
            out.append(f"{where} attr {k} differs")
    return out


def main(before: str, after: str) -> int:
    b, a = Path(before), Path(after)
    files = sorted(p.relative_to(b) for p in b.rglob("*.h5"))
    diffs, n = [], 0
    for rel in files:
        if not (a / rel).is_file():
            diffs.append(f"{rel}: missing after")
            continue
        n += 1
        diffs += compare_files(b / rel, a / rel, str(rel))
    for rel in sorted(p.relative_to(a) for p in a.rglob("*.h5")):
        if not (b / rel).is_file():
            diffs.append(f"{rel}: only after")
    for d in diffs:
        print(d)
    print(f"{n} files compared, {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
