"""``summary.json`` (rule ``summarize``): the sample's summary, merged from the ``summary`` fragments of its
result files (see :mod:`temtwin.report.summary`). One reader for its three consumers: ``summary_table``,
the viewer's sample pages and the viewer's rebuild of every page.

Layout: ``sample``, ``temtwin_version``, ``images.<image>.{pixel_size_nm, shape, regions.<label>.{...}}`` and
one key per per-sample stage (``stack``, ``fem``, ``model``, ``keating``, ...). JSON, not HDF5: it has no
``LAYOUT`` table of datasets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UserError

FILE = "summary.json"
RULE = "summarize"


def read_summary_json(path: str | os.PathLike, missing_ok: bool = False) -> dict:
    """The summary of one sample; ``{}`` for a missing file when ``missing_ok``, else one error line naming
    the file and the fix (also for a file that is not valid JSON)."""
    p = Path(path)
    if not p.is_file():
        if missing_ok:
            return {}
        raise UserError(f"{FILE} is missing; run the `{RULE}` rule first", p)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {FILE} ({e}); delete it and rerun the `{RULE}` rule", p) from None
