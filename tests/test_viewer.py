"""The viewer pages on a tiny real workflow run, in a real browser, and the human-in-the-loop round trip.

One module-scoped Snakemake run (a 160² Si [110] image, costly physics off) produces
``viewer.html`` and ``index.html``.  Then, in headless Chromium (Debian's package driven by
Playwright; skipped with a message when no browser is installed, unless TEMTWIN_REQUIRE_BROWSER=1
as in CI):

* both pages load from file:// without console errors;
* clicking a region (on the plot, and with its button) shows its candidate table, with the phase
  of phases.h5 as the current call;
* picking a candidate produces the expected overrides.yaml (page text and the downloaded file);
* the index lists every region of summary.tsv.

And through Snakemake: saving that overrides.yaml reruns phase_id and what depends on it, not
ingest / segment / fft_peaks; the region's phase in summary.json becomes the picked one; an
exclusion reruns segment; touching the file without changing this image's corrections reruns nothing.
Screenshots go to $TEMTWIN_ARTEFACTS (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from browser import launch, need_browser, open_page
from conftest import REPO, write_hspy

from temtwin.io.h5 import read_table

pytestmark = pytest.mark.workflow

CFG = {"stages": {"fem_geometry": False, "atomic_model": False, "keating": False, "phonons": False,
                  "tight_binding": False}}


def snakemake(work: Path, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "cfg.yaml"), "--cores", "2", *args,
           "--config", f"dataset={work / 'data'}", f"results={work / 'results'}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=work)


def planned_jobs(work: Path) -> dict[str, int]:
    """rule -> number of jobs of a dry run."""
    r = snakemake(work, "-n", "--quiet", "rules")
    assert r.returncode == 0, r.stderr[-3000:]
    out = {}
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"^\s*([a-z_]+)\s+(\d+)\s*$", line)
        if m and m.group(1) not in ("total", "job", "count"):
            out[m.group(1)] = int(m.group(2))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from temtwin.testing.synth import crystal_scene

    work = tmp_path_factory.mktemp("viewer")
    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(160, 160), pixel_size_nm=(0.02, 0.02), dose=500, seed=3)
    write_hspy(work / "data" / "tiny" / "img.hspy", np.clip(s.image, 0, 65535).astype(np.uint16))
    (work / "cfg.yaml").write_text(yaml.safe_dump(CFG))
    r = snakemake(work)
    assert r.returncode == 0, r.stderr[-4000:]
    res = work / "results"
    with h5py.File(res / "tiny" / "img" / "phases.h5", "r") as f:
        call = f["regions/1"].attrs["phase"]
        cand = read_table(f["regions/1/candidates"])
    art = Path(os.environ.get("TEMTWIN_ARTEFACTS") or work / "screenshots")
    art.mkdir(parents=True, exist_ok=True)
    return {"work": work, "results": res, "call": str(call), "cand": cand, "art": art}


def test_pages_built_offline(run):
    res = run["results"]
    page = (res / "tiny" / "viewer.html").read_text()
    assert (res / "index.html").is_file() and (res / "viewer_assets" / "plotly.min.js").stat().st_size > 1e6
    assert '<script src="../viewer_assets/plotly.min.js">' in page
    assert not re.search(r"""<script[^>]+src=["']https?:""", page)          # no CDN
    assert (res / "tiny" / "viewer.html").stat().st_size < 5e6


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def _runner_up(cand, call):
    """First candidate row whose phase differs from the automatic call: (phase, [u, v, w])."""
    i = next(i for i, p in enumerate(cand["phase"]) if str(p) != call)
    return str(cand["phase"][i]), [int(cand["zone_u"][i]), int(cand["zone_v"][i]), int(cand["zone_w"][i])]


def test_sample_page_click_region_and_pick(run, browser):
    page, errors = open_page(browser, (run["results"] / "tiny" / "viewer.html").as_uri())
    # click the region's label marker on the image plot (a real mouse click at its data position)
    xy = page.evaluate("""() => { const gd = document.getElementById('plot-img');
        const t = gd.data.find((d) => d.name === 'labels'); const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(t.x[0]), r.top + ya._offset + ya.l2p(t.y[0])]; }""")
    page.mouse.click(*xy)
    page.wait_for_selector("#region-card")
    assert page.get_attribute("#region-card", "data-label") == "1"
    assert page.inner_text("#region-phase").startswith(run["call"])
    rows = page.locator("#candidates tr[data-phase]")
    assert rows.count() == len(run["cand"]["phase"])
    assert page.locator("#candidates tr.current").first.get_attribute("data-phase") == run["call"]
    page.screenshot(path=str(run["art"] / "viewer_region.png"))
    # the button path shows the same panel
    page.click('button[data-region="img/1"]')
    assert page.inner_text("#region-phase").startswith(run["call"])
    # pick the runner-up -> overrides.yaml
    phase, zone = _runner_up(run["cand"], run["call"])
    page.locator(f'#candidates tr[data-phase="{phase}"][data-zone="{" ".join(map(str, zone))}"] button.pick').click()
    want = {"sample": "tiny", "images": {"img": {"regions": {"1": {"action": "pick", "phase": phase,
                                                                   "zone_axis": zone}}}}}
    assert yaml.safe_load(page.inner_text("#overrides-yaml")) == want
    with page.expect_download() as dl:
        page.click("#download-overrides")
    path = Path(dl.value.path())
    assert dl.value.suggested_filename == "overrides.yaml" and yaml.safe_load(path.read_text()) == want
    assert page.inner_text("#overrides-path").endswith("tiny/overrides.yaml")
    shutil.copy(path, run["work"] / "downloaded_overrides.yaml")
    # the other corrections: amorphous replaces the pick, undo clears it
    page.click("#mark-amorphous")
    doc = yaml.safe_load(page.inner_text("#overrides-yaml"))
    assert doc["images"]["img"]["regions"]["1"] == {"action": "amorphous"}
    page.screenshot(path=str(run["art"] / "viewer_corrected.png"))
    page.click("#overrides-list button")
    assert yaml.safe_load(page.inner_text("#overrides-yaml"))["images"] == {}
    assert errors == []
    page.close()


def test_index_lists_every_region(run, browser):
    import csv

    with open(run["results"] / "summary.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    page, errors = open_page(browser, (run["results"] / "index.html").as_uri())
    keys = page.eval_on_selector_all("#regions-table tr[data-key]", "els => els.map((e) => e.dataset.key)")
    assert sorted(keys) == sorted(f"{r['sample']}/{r['image']}/{r['region']}" for r in rows)
    href = page.get_attribute("#regions-table tr[data-key] a", "href")
    assert href.startswith("tiny/viewer.html#img/")
    page.select_option("#filter-phase", run["call"])
    n = page.locator("#regions-table tr[data-key]").count()
    assert n == sum(r["phase"] == run["call"] for r in rows)
    page.screenshot(path=str(run["art"] / "index.png"))
    assert errors == []
    page.close()


def test_temtwin_view_rebuilds_pages(run, tmp_path, capsys):
    from temtwin.cli import main

    res = run["results"]
    before = (res / "tiny" / "viewer.html").stat().st_mtime_ns
    assert main(["view", str(res)]) == 0
    assert (res / "tiny" / "viewer.html").stat().st_mtime_ns > before
    assert str(res / "index.html") in capsys.readouterr().out
    assert main(["view", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "summary.tsv" in err and str(tmp_path) in err


def test_override_reruns_only_affected_jobs_and_changes_summary(run):
    work, res = run["work"], run["results"]
    phase, zone = _runner_up(run["cand"], run["call"])
    dl = work / "downloaded_overrides.yaml"           # from the browser test when it ran
    doc = yaml.safe_load(dl.read_text()) if dl.is_file() else {
        "sample": "tiny", "images": {"img": {"regions": {"1": {"action": "pick", "phase": phase, "zone_axis": zone}}}}}
    ov = work / "data" / "tiny" / "overrides.yaml"
    ov.write_text(yaml.safe_dump(doc))
    jobs = planned_jobs(work)
    assert {"phase_id", "gpa", "summarize", "viewer"} <= set(jobs) and jobs["phase_id"] == 1
    assert not {"ingest", "segment", "fft_peaks"} & set(jobs)
    r = snakemake(work, str(res / "tiny" / "summary.json"))          # the pages are not needed here
    assert r.returncode == 0, r.stderr[-4000:]
    reg = json.loads((res / "tiny" / "summary.json").read_text())["images"]["img"]["regions"]["1"]
    assert reg["phase"] == phase and reg["zone_axis"] == zone and reg["override"] == "pick"
    assert reg["automatic_phase"] == run["call"]
    # same corrections for this image, new mtime, an unrelated image added: no stage reruns, only the
    # page that shows the saved corrections
    doc["images"]["not_here"] = {"regions": {"3": {"action": "amorphous"}}}
    ov.write_text(yaml.safe_dump(doc))
    # (summary_table is still due from the summary.json-only run above)
    assert set(planned_jobs(work)) <= {"summary_table", "viewer", "viewer_index", "all"}
    # an exclusion is segment's business
    doc["images"]["img"]["regions"]["1"] = {"action": "exclude"}
    ov.write_text(yaml.safe_dump(doc))
    jobs = planned_jobs(work)
    assert jobs.get("segment") == 1 and "ingest" not in jobs
    # a broken file: one line naming it
    ov.write_text("images: {img: {regions: {'1': {action: pick}}}}\n")
    r = snakemake(work, "-n")
    assert r.returncode != 0 and "overrides.yaml" in r.stderr and "required property" in r.stderr
