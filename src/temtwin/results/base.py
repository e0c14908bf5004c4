"""The common machinery of the result modules: the documented layout, opening a result for reading, and
the applicability flag, handled once for every result file.

A result module (``temtwin.results.<name>``) holds one dataclass per result file, derived from
:class:`Result`. It declares

* ``FILE`` (the file name, as in the stage registry) and ``RULE`` (the rule that writes it);
* ``LAYOUT``: one :class:`Entry` per dataset, group or attribute, with its units and meaning. The tables of
  docs/DEVELOPING.md are generated from these (:func:`temtwin.results.markdown_layout`), so the
  documentation and the code cannot drift;
* ``read(path)``: a classmethod that opens the file with :func:`open_result` (one error line naming the file
  when it is missing, unreadable or not written by ``RULE``) and returns the dataclass; a file written as not
  applicable reads back as ``applicable=False`` with its ``reason`` and no data;
* ``write(f)``: writes the dataclass into an open :class:`h5py.File` (the stage opens it with ``ctx.h5``, which
  adds provenance and writes atomically), every dataset with its ``units``.

Conventions: rows = y (down), columns = x (right); lengths in nm, reciprocal lengths in nm⁻¹, angles in
degrees from +x towards +y unless an entry says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class Entry:
    """One documented item of a result file's layout.

    path: HDF5 path (``/labels``, ``/regions/<label>/peaks``; ``@name`` for a root attribute,
        ``/group@name`` for a group attribute); kind: ``dataset``, ``table``, ``group`` or ``attr``;
    shape_dtype: e.g. ``int32 (rows, cols)``; units: the ``units`` attribute (``1``, ``label``, ``nm``, ...;
        "" for groups and attributes without units); meaning: one line.
    """

    path: str
    kind: str
    shape_dtype: str
    units: str
    meaning: str


@dataclass
class Result:
    """Base of every result dataclass: the applicability flag and its reason.

    ``applicable`` is False when the stage did not apply (root attrs ``applicable = False`` and ``reason``,
    written by ``StageContext.not_applicable``); such a result carries no data.
    """

    FILE: ClassVar[str] = ""
    RULE: ClassVar[str] = ""
    LAYOUT: ClassVar[tuple[Entry, ...]] = ()

    applicable: bool = True
    reason: str = ""

    @classmethod
    def not_applicable(cls, reason: str):
        """An instance recording that the stage does not apply (no data)."""
        return cls(applicable=False, reason=reason)  # type: ignore[call-arg]


@contextlib.contextmanager
def open_result(path: str | os.PathLike, cls: type[Result]) -> Iterator[h5py.File]:
    """Open result file ``path`` of ``cls`` for reading, with one clear error line when it cannot be read.

    Raises :class:`UserError` naming the file and the fix (rerun ``cls.RULE``) when the file is missing or
    is not a readable HDF5 file.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{cls.FILE or p.name} is missing; run the `{cls.RULE}` rule first", p)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise UserError(f"cannot read {cls.FILE or p.name} ({e}); delete it and rerun the `{cls.RULE}` rule",
                        p) from None
    with f:
        yield f


def summary_of(f: h5py.File) -> dict:
    """The summary fragment of an open result file (root attribute ``summary``, JSON; {} when absent)."""
    from ..io.h5 import SUMMARY_ATTR

    s = f.attrs.get(SUMMARY_ATTR)
    return json.loads(s) if s else {}


def read_summary(path: str | os.PathLike) -> dict:
    """The summary fragment of any result file ({} when it has none): the one reader of the ``summary``
    attribute (``summarize`` gathers these into summary.json)."""
    with h5py.File(path, "r") as f:
        return summary_of(f)


#: root attributes every result file carries that are not part of its content (provenance, summary)
META_ATTRS = frozenset({"temtwin_version", "rule", "config_digest", "input_digests", "summary", "applicable",
                        "reason"})


def content_attrs(g: h5py.Group) -> dict:
    """The attributes of ``g`` that are content (provenance, summary and applicability left out)."""
    return {k: attr(g, k) for k in g.attrs if k not in META_ATTRS}


def applicability(f: h5py.File) -> tuple[bool, str]:
    """(applicable, reason) from a result file's root attributes (applicable when the flag is absent)."""
    return bool(f.attrs.get("applicable", True)), str(f.attrs.get("reason", ""))


def read_array(f: h5py.Group, name: str, dtype: Any = None, default: Any = None) -> Any:
    """Dataset ``name`` of ``f`` as a numpy array (``default`` when absent), optionally cast to ``dtype``."""
    if name not in f:
        return default
    v = f[name][()]
    return np.asarray(v, dtype) if dtype is not None else v


def attr(g: h5py.Group | h5py.Dataset, name: str, default: Any = None) -> Any:
    """Attribute ``name`` as a plain Python value (bytes decoded, 0-d arrays unwrapped)."""
    v = g.attrs.get(name, default)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def layout_markdown(cls: type[Result]) -> str:
    """The layout table of one result class (markdown), generated from its ``LAYOUT``."""
    rows = [f"#### `{cls.FILE}` (rule `{cls.RULE}`, `{cls.__module__}.{cls.__name__}`)", "",
            "| path | kind | shape / dtype | units | meaning |", "| --- | --- | --- | --- | --- |"]
    for e in cls.LAYOUT:
        rows.append(f"| `{e.path}` | {e.kind} | {e.shape_dtype} | {('`' + e.units + '`') if e.units else ''} | "
                    f"{e.meaning} |")
    return "\n".join(rows)
