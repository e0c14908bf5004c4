"""Stage ``viewer``: ``results/<sample>/viewer.html``, one sample's page (:mod:`temtwin.viewer.pages`)."""

from __future__ import annotations

import time
from pathlib import Path

from ..viewer.pages import build_sample_page


def run(ctx) -> None:
    """Rule ``viewer``: one sample's page."""
    t0 = time.perf_counter()
    out = Path(ctx.output["html"])
    results = out.parent.parent
    sample = ctx.wildcards["sample"]
    ov = ctx.paths("overrides")
    build_sample_page(results, sample, list(ctx.params["images"]), ctx.section("viewer"), out,
                      str(ctx.params.get("sample_dir", "")), ov[0] if ov else None, ctx.progress)
    ctx.log.info("viewer: %s (%.2f MB) in %.2f s", out, out.stat().st_size / 1e6, time.perf_counter() - t0)
