"""HDF5 results: atomic writes, provenance, units on every dataset, deterministic bytes.

Conventions (see README "Outputs"):

* every dataset carries a ``units`` attribute (``"1"`` for dimensionless, ``"label"`` for label
  maps, ``"nm"``, ``"nm^-1"``, ``"deg"``, ``"eV"``, ...);
* every file carries provenance attributes on its root group: ``temtwin_version``, ``rule``,
  ``config_digest`` and ``input_digests`` (JSON map of input path to sha256);
* a file is written to a temporary name beside the target (``.<name>.tmp-<pid>``) and renamed into
  place only when complete, so a killed job never leaves a half-written result; the temporary files a
  killed job left are removed when that file is next written (:func:`remove_stale_temporaries`);
* no timestamps are stored, so a rerun with the same inputs gives byte-identical files;
* a stage may attach a JSON ``summary`` attribute (a fragment merged into summary.json by the
  ``summarize`` rule).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__

SUMMARY_ATTR = "summary"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def digest_json(obj: Any) -> str:
    """sha256 of a JSON-serialisable object with sorted keys (used for config digests)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def make_provenance(rule: str, config: Mapping | None = None, inputs: Any = None) -> dict:
    """Provenance attributes for a result file.

    ``inputs`` is a path, a list of paths or a mapping name -> path(s); the digest of each
    existing file is recorded (folders are skipped).
    """
    paths: list[str] = []

    def _collect(obj):
        if obj is None:
            return
        if isinstance(obj, (str, os.PathLike)):
            paths.append(str(obj))
        elif isinstance(obj, Mapping):
            for v in obj.values():
                _collect(v)
        else:
            for v in obj:
                _collect(v)

    _collect(inputs)
    digests = {p: sha256_file(p) for p in sorted(set(paths)) if os.path.isfile(p)}
    return {
        "temtwin_version": __version__,
        "rule": rule,
        "config_digest": digest_json(config or {}),
        "input_digests": json.dumps(digests, sort_keys=True),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` left by killed writers; returns those removed.

    Temporary names are ``.<name>.tmp-<pid>`` (HDF5) and ``.<stem>.tmp-<pid><suffix>`` (other files);
    one whose writing process no longer runs is stale.  The current process's own are kept.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pats = [re.compile(re.escape(f".{path.name}.tmp-") + r"(\d+)$"),
            re.compile(re.escape(f".{path.stem}.tmp-") + r"(\d+)" + re.escape(path.suffix) + "$")]
    removed = []
    for p in path.parent.glob(f".{path.stem}*.tmp-*"):
        m = next((m for m in (q.match(p.name) for q in pats) if m), None)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn "no space left" / quota / read-only / permission errors while writing ``path`` into one line.

    Raises :class:`~temtwin.errors.UserError` naming the file and the fix; other errors pass unchanged.
    """
    from ..errors import UserError

    try:
        yield
    except OSError as e:
        code = e.errno
        text = str(e)
        if code is None:  # h5py and some writers wrap the OS error in their own message
            code = next((c for c in (*_NO_SPACE, errno.EROFS, errno.EACCES)
                         if os.strerror(c).lower() in text.lower()), None)
        where = Path(path).parent
        if code in _NO_SPACE:
            raise UserError(f"cannot write: no space left on the disk (or quota exceeded) in {where}; free "
                            "space or set `results:` to a larger disk, then rerun", path) from None
        if code == errno.EROFS:
            raise UserError(f"cannot write: {where} is on a read-only file system; set `results:` to a "
                            "writable folder", path) from None
        if code == errno.EACCES:
            raise UserError(f"cannot write: permission denied in {where}; make it writable or set "
                            "`results:` to a folder you own", path) from None
        raise


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, provenance: Mapping | None = None) -> Iterator[h5py.File]:
    """Open ``path`` for writing so that it appears only when complete.

    Yields an ``h5py.File`` opened on a temporary file in the same folder; on success it is
    closed and renamed onto ``path`` (``os.replace``, atomic on POSIX); on any exception the
    temporary file is removed and the previous ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with disk_errors(path):
            with h5py.File(tmp, "w", track_order=True, libver=("earliest", "v110")) as f:
                for k, v in (provenance or {}).items():
                    f.attrs[k] = v
                yield f
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    For files written by other libraries (PNG, GDS, extxyz, msh): write to the yielded path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with disk_errors(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_array(group: h5py.Group, name: str, data: Any, units: str, compress: bool = True,
                **attrs: Any) -> h5py.Dataset:
    """Create dataset ``name`` in ``group`` with a ``units`` attribute (required) and extra attrs.

    Arrays of 1 kB and more are gzip-compressed (level 4, shuffled).  Strings are stored as
    variable-length UTF-8.
    """
    arr = np.asarray(data)
    kw: dict[str, Any] = {"track_times": False}
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
        kw["dtype"] = h5py.string_dtype()
    elif arr.dtype == object:
        kw["dtype"] = h5py.string_dtype()
    if compress and arr.ndim > 0 and arr.nbytes >= 1024 and arr.dtype != object:
        kw.update(compression="gzip", compression_opts=4, shuffle=True)
    if name in group:
        del group[name]
    ds = group.create_dataset(name, data=arr, **kw)
    ds.attrs["units"] = units
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def write_table(group: h5py.Group, name: str, columns: Mapping[str, tuple[Any, str]],
                **attrs: Any) -> h5py.Group:
    """Write a table as a group of equal-length column datasets, each with its units.

    ``columns`` maps column name -> (values, units).  Column order is kept.
    """
    g = group.require_group(name)
    n = None
    for col, (values, units) in columns.items():
        arr = np.asarray(values)
        if n is None:
            n = len(arr)
        elif len(arr) != n:
            raise ValueError(f"table {name}: column {col} has {len(arr)} rows, expected {n}")
        write_array(g, col, arr, units)
    g.attrs["n_rows"] = 0 if n is None else n
    for k, v in attrs.items():
        g.attrs[k] = v
    return g


def read_table(group: h5py.Group) -> dict[str, np.ndarray]:
    """Read a table written by :func:`write_table` as a dict of column arrays."""
    out = {}
    for k, ds in group.items():
        v = ds[()]
        if ds.dtype.kind == "O":
            v = np.array([x.decode() if isinstance(x, bytes) else x for x in np.ravel(v)],
                         dtype=object).reshape(np.shape(v))
        out[k] = v
    return out


def set_summary(f: h5py.File, fragment: Mapping) -> None:
    """Attach a JSON summary fragment (merged into summary.json by the summarize rule).

    For per-image stages the fragment is merged into ``images.<image>``; for per-sample stages
    into the sample's top level.  Keys are strings; region labels are string keys.
    """
    f.attrs[SUMMARY_ATTR] = json.dumps(to_jsonable(fragment), sort_keys=True)


def read_summary(path: str | os.PathLike) -> dict:
    """The summary fragment of a result file ({} when it has none): :func:`temtwin.results.read_summary`."""
    from ..results.base import read_summary as _read

    return _read(path)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays (recursively) into plain JSON types; NaN becomes None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if not np.isfinite(v) else v
    if isinstance(obj, bytes):
        return obj.decode()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def missing_units(path: str | os.PathLike) -> list[str]:
    """Names of datasets in ``path`` that lack a ``units`` attribute (empty when conforming)."""
    bad: list[str] = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and "units" not in obj.attrs:
                bad.append(name)
        f.visititems(visit)
    return bad
