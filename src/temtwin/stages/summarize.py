"""Stage ``summarize``: ``results/<sample>/summary.json``, the merge of one sample's summary fragments
(:func:`temtwin.report.summary.sample_summary`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..io.h5 import atomic_path
from ..report.summary import sample_summary


def run(ctx) -> None:
    """Stage ``summarize``: results/<sample>/summary.json of one sample."""
    results = Path(ctx.config["results"])
    sample = ctx.wildcards["sample"]
    summ = sample_summary(results, sample, list(ctx.params["images"]))
    with atomic_path(ctx.output["json"]) as tmp:
        tmp.write_text(json.dumps(summ, indent=1, sort_keys=False) + "\n")
    ctx.log.info("summary.json of %s: %d image(s)", sample, len(summ["images"]))
