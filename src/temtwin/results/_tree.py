"""A result file held as its tree of datasets and attributes: the one reader/writer of every result module
whose file has nested parts (``peaks``, ``phases``, ``gpa``, ``simulation``, ``stack``, ``fem``, ``fem_relax``,
``spin_orbit``, ``model``, ``keating``, ``phonons``, ``tb_moments``, ``tb``; ``raw``/``image`` for
``/scan_correction``).

:class:`TreeResult` keeps every dataset (``data``: HDF5 path without the leading ``/`` -> array, ``units``:
path -> its ``units`` attribute, ``dataset_attrs``: path -> its other attributes), every group's attributes
(``attrs``: group path, ``""`` for the root -> content attributes) and the summary fragment. ``write(f)``
writes it back with :func:`temtwin.io.h5.write_array` (units on every dataset), so write -> read gives equal
content. ``read(path, only=...)`` reads the datasets under the named paths or group prefixes only (group
attributes are always read): the per-atom arrays of a 1e6-atom model or the maps of a 16k² image are not read
when a reader does not need them. Writers build the tree with :meth:`TreeResult.put`,
:meth:`TreeResult.put_table`, :meth:`TreeResult.set_attrs` and :meth:`TreeResult.graft` (a sub-tree built on
its own, e.g. one region); :meth:`TreeResult.write_part` writes a tree into an open group without the
file-level flag and summary; :meth:`TreeResult.append` streams one dataset into an open file and
:meth:`TreeResult.update_attrs` annotates a group already written (one part at a time, memory of one part).
Subclasses add typed properties and ``REQUIRED`` datasets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import h5py
import numpy as np

from ..errors import UserError
from ..io.h5 import set_summary, write_array
from .base import META_ATTRS, Result, applicability, attr, open_result, summary_of


def _value(ds: h5py.Dataset) -> np.ndarray:
    v = ds[()]
    if isinstance(v, bytes):
        return v.decode()
    if ds.dtype.kind == "O":
        v = np.array([x.decode() if isinstance(x, bytes) else x for x in np.ravel(v)],
                     dtype=object).reshape(np.shape(v))
    return v


def _under(name: str, prefixes: tuple[str, ...] | None) -> bool:
    return prefixes is None or any(name == p or name.startswith(p + "/") for p in prefixes)


@dataclass
class TreeResult(Result):
    """A result file as its datasets (with units), group attributes and summary fragment."""

    #: datasets that must be present in an applicable file (else one error line: rerun RULE)
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    #: whether ``write`` records ``applicable = True`` and ``reason = ""`` on applicable results too
    WRITES_FLAG: ClassVar[bool] = False

    data: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    dataset_attrs: dict[str, dict] = field(default_factory=dict)
    attrs: dict[str, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    #: every root attribute as stored (provenance included, bytes decoded), in file order; read only
    file_attrs: dict = field(default_factory=dict, compare=False, repr=False)

    # -- reading -------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | os.PathLike, only: Iterable[str] | None = None):
        """Read ``path``; ``only``: dataset paths or group prefixes to read (all when None; the attributes
        of every group are read in any case)."""
        prefixes = None if only is None else tuple(p.strip("/") for p in only)
        with open_result(path, cls) as f:
            ok, reason = applicability(f)
            file_attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            summary = summary_of(f)
            root = {"": {k: attr(f, k) for k in f.attrs if k not in META_ATTRS}}
            if not ok:
                out = cls.not_applicable(reason)
                out.file_attrs, out.summary, out.attrs = file_attrs, summary, root
                return out
            out = cls.read_group(f, prefixes)
            out.attrs = {**root, **{k: v for k, v in out.attrs.items() if k}}
            out.summary, out.file_attrs = summary, file_attrs
            out.applicable, out.reason = True, reason
        missing = [r for r in cls.REQUIRED if r not in out.data and _under(r, prefixes)]
        if missing:
            raise UserError(f"{cls.FILE} has no /{missing[0]}; delete it and rerun the `{cls.RULE}` rule", path)
        return out

    @classmethod
    def read_group(cls, g: h5py.Group, only: Iterable[str] | None = None):
        """The tree under an open HDF5 group (paths relative to it; its own attributes under ``""``)."""
        prefixes = None if only is None else tuple(p.strip("/") for p in only)
        out = cls()
        if g.attrs:
            out.attrs[""] = {k: attr(g, k) for k in g.attrs}

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Group):
                if obj.attrs:
                    out.attrs[name] = {k: attr(obj, k) for k in obj.attrs}
                return
            if not _under(name, prefixes):
                return
            out.data[name] = _value(obj)
            out.units[name] = str(attr(obj, "units", ""))
            extra = {k: attr(obj, k) for k in obj.attrs if k != "units"}
            if extra:
                out.dataset_attrs[name] = extra

        g.visititems(visit)
        return out

    # -- building ------------------------------------------------------------------------------------------
    def put(self, path: str, value, units: str, **attrs) -> None:
        """Set dataset ``path`` (no leading '/') with its units and extra attributes."""
        path = path.strip("/")
        self.data[path] = np.asarray(value) if not isinstance(value, np.ndarray) else value
        self.units[path] = units
        if attrs:
            self.dataset_attrs[path] = dict(attrs)

    def put_table(self, path: str, columns: dict, **attrs) -> None:
        """Set a table (a group of equal-length columns, attr ``n_rows``): columns name -> (values, units)."""
        n = None
        for col, (values, units) in columns.items():
            m = len(np.asarray(values))
            if n is not None and m != n:
                raise ValueError(f"table column {col} has {m} rows, expected {n}")
            self.put(f"{path}/{col}", values, units)
            n = m if n is None else n
        self.set_attrs(path, n_rows=0 if n is None else n, **attrs)

    def set_attrs(self, path: str = "", **attrs) -> None:
        """Set attributes of group ``path`` ("" = root), creating the group when written."""
        path = path.strip("/")
        self.attrs[path] = {**self.attrs.get(path, {}), **attrs}

    def graft(self, prefix: str, sub: "TreeResult") -> None:
        """Put the tree ``sub`` (datasets, units, attributes) under group ``prefix``."""
        p = prefix.strip("/")
        for k, v in sub.data.items():
            self.data[f"{p}/{k}"] = v
            self.units[f"{p}/{k}"] = sub.units.get(k, "1")
            if k in sub.dataset_attrs:
                self.dataset_attrs[f"{p}/{k}"] = dict(sub.dataset_attrs[k])
        for k, a in sub.attrs.items():
            self.set_attrs(f"{p}/{k}" if k else p, **a)
        if p not in self.attrs:
            self.attrs[p] = {}

    # -- reading back --------------------------------------------------------------------------------------
    def get(self, path: str, default=None):
        """Dataset ``path`` (no leading '/'), ``default`` when absent."""
        return self.data.get(path.strip("/"), default)

    def has(self, path: str) -> bool:
        """Whether dataset or group ``path`` is present (as read)."""
        p = path.strip("/")
        return p in self.data or p in self.attrs or any(k.startswith(p + "/") for k in (*self.data, *self.attrs))

    def table(self, path: str) -> dict[str, np.ndarray]:
        """The columns of table ``path`` (name -> array; {} when absent)."""
        p = path.strip("/") + "/"
        return {k[len(p):]: v for k, v in self.data.items() if k.startswith(p) and "/" not in k[len(p):]}

    def labelled(self, path: str) -> list[tuple[int, str]]:
        """(label, group path) of the children of group ``path`` named by an integer region label (other
        names skipped), in the order of :meth:`children`."""
        out = []
        for name in self.children(path):
            try:
                out.append((int(name), f"{path.strip('/')}/{name}"))
            except ValueError:
                continue
        return out

    def group_attrs(self, path: str = "") -> dict:
        """The attributes of group ``path`` ("" = root content attributes)."""
        return self.attrs.get(path.strip("/"), {})

    def children(self, path: str) -> list[str]:
        """Names of the direct children (groups or datasets) of group ``path``, sorted (HDF5's order)."""
        p = path.strip("/") + "/"
        names = {k[len(p):].split("/")[0] for k in list(self.data) + list(self.attrs) if k.startswith(p)}
        return sorted(names)

    def sub(self, prefix: str) -> "TreeResult":
        """The part under group ``prefix`` as a tree of its own (paths relative to it)."""
        p = prefix.strip("/")
        out = TreeResult()
        for k, v in self.data.items():
            if k.startswith(p + "/"):
                r = k[len(p) + 1:]
                out.data[r], out.units[r] = v, self.units.get(k, "1")
                if k in self.dataset_attrs:
                    out.dataset_attrs[r] = self.dataset_attrs[k]
        for k, a in self.attrs.items():
            if k == p:
                out.attrs[""] = a
            elif k.startswith(p + "/"):
                out.attrs[k[len(p) + 1:]] = a
        return out

    # -- writing -------------------------------------------------------------------------------------------
    def write_part(self, g: h5py.Group) -> None:
        """Write the datasets and group attributes into an open HDF5 group (no flag, no summary): one part
        of a file streamed into it (``g`` may be a sub-group of the file ``ctx.h5`` opened)."""
        for path, a in self.attrs.items():
            if path in self.data:
                continue
            grp = g if path == "" else g.require_group(path)
            for k, v in a.items():
                grp.attrs[k] = v
        for path, value in self.data.items():
            parent, _, name = path.rpartition("/")
            write_array(g.require_group(parent) if parent else g, name, value, self.units.get(path, "1"),
                        **self.dataset_attrs.get(path, {}))

    @staticmethod
    def append(f: h5py.Group, path: str, value, units: str, box=None, shape=None, **attrs) -> None:
        """Stream one dataset into an open result file (``ctx.h5``) at ``path``, with its units: for parts
        computed one at a time (Bragg maps), so that no more than one is held in memory.

        ``box`` = (r0, r1, c0, c1) with ``shape`` (rows, cols): ``value`` is the slab [r0:r1, c0:c1] of a
        full-size float32 dataset whose other elements are the fill value 0 and take no storage (chunked,
        gzip); the dataset gets the attribute ``computed_box``."""
        parent, _, name = path.strip("/").rpartition("/")
        g = f.require_group(parent) if parent else f
        if box is None:
            write_array(g, name, value, units, **attrs)
            return
        if name in g:
            del g[name]
        ds = g.create_dataset(name, shape=tuple(shape), dtype=np.float32, fillvalue=0.0, track_times=False,
                              chunks=(min(512, shape[0]), min(512, shape[1])), compression="gzip",
                              compression_opts=4, shuffle=True)
        ds[box[0]:box[1], box[2]:box[3]] = value
        ds.attrs["units"] = units
        for k, v in attrs.items():
            ds.attrs[k] = v
        ds.attrs["computed_box"] = np.asarray(box, np.int64)

    @staticmethod
    def update_attrs(f: h5py.Group, path: str, **attrs) -> None:
        """Set attributes of an existing group ``path`` of an open result file (a later annotation, e.g.
        the honoured ``sample.yaml`` overrides of phases.h5); nothing when the group is absent."""
        g = f.get(path.strip("/")) if path.strip("/") else f
        if g is not None:
            for k, v in attrs.items():
                g.attrs[k] = v

    def write(self, f: h5py.File) -> None:
        """Write into an open result file (opened with ``ctx.h5``: provenance and atomic rename)."""
        if not self.applicable or self.WRITES_FLAG:
            f.attrs["applicable"] = bool(self.applicable)
            f.attrs["reason"] = self.reason
        self.write_part(f)
        if self.summary:
            set_summary(f, self.summary)
