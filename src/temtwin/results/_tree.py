"""A result file held as its tree of datasets and attributes: the common reader/writer of the sample-scope
result modules (``stack``, ``fem``, ``fem_relax``, ``spin_orbit``, ``model``, ``keating``, ``phonons``, ``tb``).

:class:`TreeResult` keeps every dataset (``data``: HDF5 path without the leading ``/`` -> array, ``units``:
path -> its ``units`` attribute, ``dataset_attrs``: path -> its other attributes), every group's attributes
(``attrs``: group path, ``""`` for the root -> content attributes) and the summary fragment. ``write(f)``
writes it back with :func:`temtwin.io.h5.write_array` (units on every dataset), so write -> read gives equal
content. ``read(path, only=...)`` reads selected datasets only (per-atom arrays of a large model are not
read when a reader does not need them). Subclasses add typed accessors and ``REQUIRED`` datasets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import h5py
import numpy as np

from ..errors import UserError
from ..io.h5 import SUMMARY_ATTR, set_summary, write_array
from .base import META_ATTRS, Result, applicability, attr, open_result


def _value(ds: h5py.Dataset) -> np.ndarray:
    v = ds[()]
    if ds.dtype.kind == "O":
        v = np.array([x.decode() if isinstance(x, bytes) else x for x in np.ravel(v)],
                     dtype=object).reshape(np.shape(v))
    return v


@dataclass
class TreeResult(Result):
    """A result file as its datasets (with units), group attributes and summary fragment."""

    #: datasets that must be present in an applicable file (else one error line: rerun RULE)
    REQUIRED: ClassVar[tuple[str, ...]] = ()

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
        """Read ``path``; ``only``: dataset paths or group prefixes to read (all when None)."""
        prefixes = None if only is None else tuple(p.strip("/") for p in only)
        with open_result(path, cls) as f:
            ok, reason = applicability(f)
            file_attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            s = f.attrs.get(SUMMARY_ATTR)
            summary = json.loads(s) if s else {}
            if not ok:
                out = cls.not_applicable(reason)
                out.file_attrs, out.summary = file_attrs, summary
                out.attrs = {"": {k: attr(f, k) for k in f.attrs if k not in META_ATTRS}}
                return out
            out = cls(attrs={"": {k: attr(f, k) for k in f.attrs if k not in META_ATTRS}}, summary=summary,
                      file_attrs=file_attrs)
            out.applicable, out.reason = True, reason

            def visit(name: str, obj) -> None:
                if isinstance(obj, h5py.Group):
                    if obj.attrs:
                        out.attrs[name] = {k: attr(obj, k) for k in obj.attrs}
                    return
                if prefixes is not None and not any(name == p or name.startswith(p + "/") for p in prefixes):
                    return
                out.data[name] = _value(obj)
                out.units[name] = str(attr(obj, "units", ""))
                extra = {k: attr(obj, k) for k in obj.attrs if k != "units"}
                if extra:
                    out.dataset_attrs[name] = extra

            f.visititems(visit)
        missing = [r for r in cls.REQUIRED if r not in out.data and (prefixes is None or any(
            r == p or r.startswith(p + "/") for p in prefixes))]
        if missing:
            raise UserError(f"{cls.FILE} has no /{missing[0]}; delete it and rerun the `{cls.RULE}` rule", path)
        return out

    # -- writing -------------------------------------------------------------------------------------------
    def put(self, path: str, value, units: str, **attrs) -> None:
        """Set dataset ``path`` (no leading '/') with its units and extra attributes."""
        self.data[path] = np.asarray(value) if not isinstance(value, np.ndarray) else value
        self.units[path] = units
        if attrs:
            self.dataset_attrs[path] = dict(attrs)

    def put_table(self, path: str, columns: dict, **attrs) -> None:
        """Set a table (a group of equal-length columns, attr ``n_rows``): columns name -> (values, units)."""
        n = None
        for col, (values, units) in columns.items():
            self.put(f"{path}/{col}", values, units)
            n = len(np.asarray(values)) if n is None else n
        self.attrs[path] = {**self.attrs.get(path, {}), "n_rows": 0 if n is None else n, **attrs}

    def get(self, path: str, default=None):
        """Dataset ``path`` (no leading '/'), ``default`` when absent."""
        return self.data.get(path.strip("/"), default)

    def table(self, path: str) -> dict[str, np.ndarray]:
        """The columns of table ``path`` (name -> array; {} when absent)."""
        p = path.strip("/") + "/"
        return {k[len(p):]: v for k, v in self.data.items() if k.startswith(p) and "/" not in k[len(p):]}

    def group_attrs(self, path: str = "") -> dict:
        """The attributes of group ``path`` ("" = root content attributes)."""
        return self.attrs.get(path.strip("/"), {})

    def children(self, path: str) -> list[str]:
        """Names of the direct children (groups or datasets) of group ``path``."""
        p = path.strip("/") + "/"
        names = {k[len(p):].split("/")[0] for k in list(self.data) + list(self.attrs) if k.startswith(p)}
        return sorted(names)

    def write(self, f: h5py.File) -> None:
        """Write into an open result file (opened with ``ctx.h5``: provenance and atomic rename)."""
        if not self.applicable:
            f.attrs["applicable"] = False
            f.attrs["reason"] = self.reason
        for path, a in self.attrs.items():
            g = f if path == "" else f.require_group(path) if path not in self.data else None
            if g is None:
                continue
            for k, v in a.items():
                g.attrs[k] = v
        for path, value in self.data.items():
            parent, _, name = path.rpartition("/")
            g = f.require_group(parent) if parent else f
            write_array(g, name, value, self.units.get(path, "1"), **self.dataset_attrs.get(path, {}))
        if self.summary:
            set_summary(f, self.summary)
