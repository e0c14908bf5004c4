"""Stage ``summary_table``: ``results/summary.tsv`` across samples, failed samples with their reasons
(:func:`temtwin.report.summary.write_table`)."""

from __future__ import annotations

from pathlib import Path

from ..report.summary import write_table


def run(ctx) -> None:
    """Stage ``summary_table``: results/summary.tsv across samples."""
    n, failed = write_table(Path(ctx.config["results"]), list(ctx.params["samples"]), Path(ctx.output["tsv"]))
    ctx.log.info("summary.tsv: %d rows%s", n, f"; failed samples: {', '.join(failed)}" if failed else "")
