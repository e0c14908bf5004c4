"""Compare two results folders of the workflow (a refactor must not change a result): every HDF5 dataset
(values bit for bit, dtype, units and other attributes), every group attribute and each sample's
summary.json. Provenance attributes (temtwin_version, rule, config_digest, input_digests) and timing keys
are excepted. Usage: python bench/compare_results.py BEFORE AFTER [--rename OLD=NEW ...] (exit status 1 when
anything differs). ``--rename`` renames a JSON key (summary.json and the files' summary attributes) on both
sides before comparing, at any depth: a rename of summary keys (issue 15) then shows as no difference.
"""
import json
import sys
from pathlib import Path

import h5py
import numpy as np

SKIP_ATTRS = {"temtwin_version", "rule", "config_digest", "input_digests"}
#: the two results folders; a path under either is compared relative to it (summary ``files`` entries)
ROOTS: list[str] = []
#: JSON keys renamed on both sides before comparing (``--rename OLD=NEW``)
RENAME: dict[str, str] = {}


def unroot(o):
    if isinstance(o, str):
        for r in ROOTS:
            o = o.replace(r, "<results>")
        return o
    if isinstance(o, dict):
        return {k: unroot(v) for k, v in o.items()}
    if isinstance(o, list):
        return [unroot(v) for v in o]
    return o


def timing(k):
    k = str(k).lower()
    return "timing" in k or k.endswith("_s") or "seconds" in k or k in ("solve_s",)


def norm(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        try:
            return unroot(strip(json.loads(v)))
        except Exception:
            return unroot(v)
    return np.asarray(v).tolist() if isinstance(v, (np.ndarray, np.generic)) else v


def strip(o):
    if isinstance(o, dict):
        return {RENAME.get(k, k): strip(v) for k, v in o.items() if not timing(k)}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def eq(a, b):
    try:
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        return a.shape == b.shape and np.array_equal(a, b)
    except Exception:
        return a == b


def h5diff(pa, pb):
    out = []
    items = {}
    for tag, p in (("a", pa), ("b", pb)):
        d = {}
        with h5py.File(p, "r") as f:
            def vis(n, o, d=d):
                at = {k: norm(v) for k, v in o.attrs.items() if k not in SKIP_ATTRS and not timing(k)}
                if isinstance(o, h5py.Dataset):
                    v = o[()]
                    if o.dtype.kind == "O":
                        v = np.array([x.decode() if isinstance(x, bytes) else x for x in np.ravel(v)], object)
                    d[n] = ("D", v, at)
                else:
                    d[n] = ("G", None, at)
            d[""] = ("G", None, {k: norm(v) for k, v in f.attrs.items() if k not in SKIP_ATTRS and not timing(k)})
            f.visititems(vis)
        items[tag] = d
    a, b = items["a"], items["b"]
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            # empty groups without attributes do not count
            x = a.get(k) or b.get(k)
            if x[0] == "G" and not x[2]:
                continue
            out.append(f"{k}: only in {'before' if k in a else 'after'}")
            continue
        if a[k][0] == "D" and not eq(a[k][1], b[k][1]):
            out.append(f"{k}: values differ")
        if a[k][0] == "D" and np.asarray(a[k][1]).dtype != np.asarray(b[k][1]).dtype:
            out.append(f"{k}: dtype {np.asarray(a[k][1]).dtype} vs {np.asarray(b[k][1]).dtype}")
        aa, ba = a[k][2], b[k][2]
        for key in sorted(set(aa) | set(ba)):
            if key not in aa or key not in ba or not eq(aa[key], ba[key]) and aa[key] != ba[key]:
                out.append(f"{k}@{key}: {str(aa.get(key))[:80]} vs {str(ba.get(key))[:80]}")
    return out


def main(A, B):
    A, B = Path(A), Path(B)
    ROOTS[:] = [str(A.resolve()), str(B.resolve()), str(A), str(B)]
    fa = sorted(p.relative_to(A) for p in A.rglob("*.h5"))
    fb = sorted(p.relative_to(B) for p in B.rglob("*.h5"))
    n_bad = 0
    for r in sorted(set(fa) | set(fb)):
        if r not in fa or r not in fb:
            print(f"{r}: only in {'before' if r in fa else 'after'}")
            n_bad += 1
            continue
        d = h5diff(A / r, B / r)
        if d:
            n_bad += 1
            print(f"{r}: {len(d)} differences")
            for x in d[:10]:
                print("   ", x)
    for r in sorted(p.relative_to(A) for p in A.rglob("summary.json")):
        ja, jb = (unroot(strip(json.loads((X / r).read_text()))) for X in (A, B))
        same = json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True)
        print(f"{r}: {'identical' if same else 'DIFFERENT'} (timing keys excepted)")
        n_bad += not same
    print(f"{len(set(fa) | set(fb))} HDF5 files compared, {n_bad} file(s) differ")
    return n_bad


if __name__ == "__main__":
    args = sys.argv[1:]
    while "--rename" in args:
        i = args.index("--rename")
        old, new = args[i + 1].split("=")
        RENAME[old] = new
        del args[i:i + 2]
    sys.exit(1 if main(*args[:2]) else 0)
