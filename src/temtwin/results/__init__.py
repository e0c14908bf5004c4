"""One module per result file: the contract between stages.

Every stage reads its inputs only through these dataclasses (``<Result>.read(path)``) and writes its result
through them (``result.write(f)`` into the file ``ctx.h5`` opened). Each class declares its ``FILE``, the
``RULE`` that writes it and its documented ``LAYOUT`` (datasets with units, tables, attributes);
docs/DEVELOPING.md shows the tables generated from them (:func:`markdown_layout`, kept in step by a test).
Together with the stage registry (:mod:`temtwin.workflow.stages`) these modules are the two things a
newcomer reads first. Common machinery: :mod:`temtwin.results.base`; the one tree class of the files with nested parts:
:class:`TreeResult` (:mod:`temtwin.results._tree`).
"""

from __future__ import annotations

import importlib

from ._tree import TreeResult
from .base import Entry, Result, layout_markdown, open_result, read_summary

#: result modules in pipeline order (module name under temtwin.results -> class name)
MODULES: dict[str, str] = {
    "raw": "Raw",
    "image": "Image",
    "segmentation": "Segmentation",
    "peaks": "Peaks",
    "phases": "Phases",
    "gpa": "Gpa",
    "simulation": "Simulation",
    # sample scope (pipeline order)
    "stack": "Stack",
    "fem": "FemGeometry",
    "fem_relax": "FemRelax",
    "spin_orbit": "SpinOrbit",
    "model": "Model",
    "keating": "Keating",
    "phonons": "Phonons",
    "tb_moments": "TbMoments",
    "tb": "Tb",
}


def result_classes() -> list[type[Result]]:
    """The result classes in pipeline order."""
    return [getattr(importlib.import_module(f"{__name__}.{m}"), c) for m, c in MODULES.items()]


def markdown_layout() -> str:
    """The layout tables of every result file (the "Result files" part of docs/DEVELOPING.md)."""
    return "\n\n".join(layout_markdown(c) for c in result_classes())


__all__ = ["Entry", "Result", "TreeResult", "read_summary", "open_result", "result_classes", "markdown_layout",
           "MODULES"]
