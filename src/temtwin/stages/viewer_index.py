"""Stage ``viewer_index``: ``results/index.html`` over ``results/summary.tsv`` (:mod:`temtwin.viewer.pages`)."""

from __future__ import annotations

from pathlib import Path

from ..viewer.pages import build_index


def run(ctx) -> None:
    """Rule ``viewer_index``."""
    out = Path(ctx.output["html"])
    build_index(out.parent, ctx.section("viewer"), out)
    ctx.log.info("viewer_index: %s", out)
