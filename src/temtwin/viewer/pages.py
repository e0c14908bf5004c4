"""The viewer pages, as built by the stages ``viewer_assets``, ``viewer`` and ``viewer_index``
(:mod:`temtwin.stages`), and ``temtwin view RESULTS``.

* ``results/viewer_assets/plotly.min.js``: plotly.js from the installed plotly package, once;
* ``results/<sample>/viewer.html``: the sample page (:mod:`temtwin.viewer.data`, :mod:`.page`);
* ``results/index.html``: the index over ``results/summary.tsv`` (:mod:`temtwin.viewer.index`).

The pages read result files only; nothing is recomputed.  They are written atomically.
"""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..errors import UserError
from ..io.h5 import atomic_path
from ..results.summary import read_summary_json
from .data import sample_payload
from .index import index_payload
from .page import PLOTLY_REL, index_page, sample_page, write_plotly


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def build_sample_page(results: Path, sample: str, images: list[str], cfg: dict, out: Path | None = None,
                      sample_dir: str = "", overrides_file: str | None = None, progress=None) -> Path:
    """Write ``results/<sample>/viewer.html`` (or ``out``); returns its path."""
    ov = None
    if overrides_file:
        from ..workflow.overrides import read_overrides

        ov = read_overrides(overrides_file, sample)
    payload = sample_payload(Path(results), sample, images, cfg, sample_dir, ov, progress)
    out = Path(out or Path(results) / sample / "viewer.html")
    _write(out, sample_page(payload))
    return out


def build_index(results: Path, cfg: dict | None = None, out: Path | None = None) -> Path:
    results = Path(results)
    pages = sorted(p.parent.name for p in results.glob("*/summary.json"))
    out = Path(out or results / "index.html")
    _write(out, index_page(index_payload(results / "summary.tsv", pages)))
    return out


def view(results: str | Path, config: dict | None = None) -> list[Path]:
    """``temtwin view RESULTS``: (re)build every sample page, the index and plotly.js in RESULTS.

    Samples are the folders of RESULTS with a summary.json; their images the sub-folders with an
    image.h5.  The overrides.yaml already saved for a sample is found beside its source images.
    """
    results = Path(results)
    if not (results / "summary.tsv").is_file():
        raise UserError("no summary.tsv here; pass the workflow's results folder (after a run)", results)
    cfg = load_config(dict(config or {}), require_dataset=False)["viewer"]
    write_plotly(results / PLOTLY_REL)
    written = []
    for sj in sorted(results.glob("*/summary.json")):
        sdir = sj.parent
        summ = read_summary_json(sj)
        images = [im for im in (summ.get("images") or {}) if (sdir / im / "image.h5").is_file()]
        src = _source_dir(sdir, images)
        ov = src / "overrides.yaml" if src is not None and (src / "overrides.yaml").is_file() else None
        written.append(build_sample_page(results, sdir.name, images, cfg, None, str(src or ""),
                                         str(ov) if ov else None))
    written.append(build_index(results, cfg))
    return written


def _source_dir(sdir: Path, images: list[str]) -> Path | None:
    from ..results.image import Image

    for im in images:
        s = str(Image.read(sdir / im / "image.h5", header_only=True).attrs.get("source_file", ""))
        if s:
            return Path(s).resolve().parent
    return None
