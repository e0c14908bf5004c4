"""Static HTML pages: the sample page (viewer.html) and the cross-sample index (index.html).

Each page is one HTML file with its data embedded as JSON and its own script and style inlined;
plotly.js is shipped once beside the pages (``results/viewer_assets/plotly.min.js``) and loaded with
a relative ``<script src>``, so the pages open from ``file://`` offline and need no server or CDN.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from .. import __version__

PLOTLY_REL = "viewer_assets/plotly.min.js"


def _static(name: str) -> str:
    return resources.files("temtwin.viewer").joinpath("static", name).read_text(encoding="utf-8")


def _json(data) -> str:
    # safe inside <script>: no "</" sequence, no bare U+2028/9
    s = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return s.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _page(title: str, body: str, data, script: str, plotly_src: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="temtwin {html.escape(__version__)}">
<title>{html.escape(title)}</title>
<style>{_static("viewer.css")}</style>
<script src="{plotly_src}"></script>
</head><body>
{body}
<script type="application/json" id="temtwin-data">{_json(data)}</script>
<script>{_static("common.js")}</script>
<script>{_static(script)}</script>
</body></html>
"""


def sample_page(payload: dict) -> str:
    """viewer.html of one sample (``payload`` from :func:`temtwin.viewer.data.sample_payload`)."""
    s = html.escape(payload["sample"])
    body = f"""<header><h1>temtwin · sample <span id="sample-name">{s}</span></h1>
<nav><a href="../index.html">all samples (index)</a></nav></header>
<div id="plotly-missing" class="warn hidden">plotly.js not found beside the page
(../{PLOTLY_REL}); rebuild with <code>temtwin view RESULTS</code>.</div>
<main>
<section id="images"></section>
<section id="sample-extra"></section>
<aside id="panel"><div id="region-panel"><p class="hint">Click a region (outline or label) or a
region button to see its FFT, candidates and strain.</p></div>
<div id="overrides"></div></aside>
</main>"""
    return _page(f"temtwin · {payload['sample']}", body, payload, "viewer.js", f"../{PLOTLY_REL}")


def index_page(payload: dict) -> str:
    """index.html across samples (``payload`` from :func:`temtwin.viewer.index.index_payload`)."""
    body = """<header><h1>temtwin · all samples and regions</h1></header>
<div id="plotly-missing" class="warn hidden">plotly.js not found beside the page
(viewer_assets/plotly.min.js); rebuild with <code>temtwin view RESULTS</code>.</div>
<section id="filters"></section>
<section id="plots"></section>
<section id="table-wrap"></section>"""
    return _page("temtwin · index", body, payload, "index.js", PLOTLY_REL)


def write_plotly(path: str | Path) -> Path:
    """Write plotly.js (from the installed plotly package) to ``path``."""
    from plotly.offline import get_plotlyjs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(get_plotlyjs(), encoding="utf-8")
    return path
