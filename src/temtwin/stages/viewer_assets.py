"""Stage ``viewer_assets``: ``results/viewer_assets/plotly.min.js`` from the installed plotly package."""

from __future__ import annotations

from ..viewer.page import write_plotly


def run(ctx) -> None:
    """Rule ``viewer_assets``."""
    with ctx.file("js") as tmp:
        write_plotly(tmp)
