"""summarize: fragments of every stage merged into summary.json; one TSV row per region."""

import csv
import json

import numpy as np

from temtwin.io.h5 import atomic_h5, set_summary, write_array
from temtwin.report.summary import deep_merge, write_table
from temtwin.stages.summarize import run
from temtwin.stages.summary_table import run as run_table
from temtwin.workflow.context import StageContext


def _frag(path, fragment):
    with atomic_h5(path, {"rule": "t"}) as f:
        write_array(f, "x", np.zeros(1), "1")
        set_summary(f, fragment)


def test_deep_merge():
    a = {"regions": {"1": {"area_nm2": 2.0}}, "k": 1}
    deep_merge(a, {"regions": {"1": {"phase": "Si"}, "2": {"phase": "Ge"}}, "k": 2})
    assert a == {"regions": {"1": {"area_nm2": 2.0, "phase": "Si"}, "2": {"phase": "Ge"}}, "k": 2}


def test_summarize(tmp_path):
    r = tmp_path / "results"
    _frag(r / "s" / "im" / "image.h5", {"pixel_size_nm": [0.02, 0.02], "shape": [64, 64]})
    _frag(r / "s" / "im" / "segmentation.h5", {"regions": {"1": {"area_nm2": 1.5, "centroid_nm": [0.5, 0.7]},
                                                           "2": {"area_nm2": 0.1}}})
    _frag(r / "s" / "im" / "phases.h5", {"regions": {"1": {"phase": "Si", "zone_axis": [1, 1, 0],
                                                           "candidates": [{"phase": "Si"}]}}})
    _frag(r / "s" / "keating.h5", {"keating": {"energy_eV_per_atom": 0.001}})
    ctx = StageContext.create("summarize", {}, {"json": r / "s" / "summary.json"}, config={"results": str(r)},
                              params={"images": ["im"]}, wildcards={"sample": "s"})
    run(ctx)
    run_table(StageContext.create("summary_table", {}, {"tsv": r / "summary.tsv"}, config={"results": str(r)},
                                  params={"samples": ["s"]}))
    js = json.loads((r / "s" / "summary.json").read_text())
    assert js["sample"] == "s" and js["temtwin_version"]
    assert js["images"]["im"]["pixel_size_nm"] == [0.02, 0.02]
    assert js["images"]["im"]["regions"]["1"] == {"area_nm2": 1.5, "centroid_nm": [0.5, 0.7], "phase": "Si",
                                                  "zone_axis": [1, 1, 0], "candidates": [{"phase": "Si"}]}
    assert js["keating"]["energy_eV_per_atom"] == 0.001
    rows = list(csv.DictReader(open(r / "summary.tsv"), delimiter="\t"))
    assert [(x["image"], x["region"]) for x in rows] == [("im", "1"), ("im", "2")]
    assert rows[0]["phase"] == "Si" and rows[0]["zone_axis"] == "1,1,0" and rows[0]["centroid_nm"] == "0.5,0.7"
    assert rows[1]["phase"] == ""


def test_candidates_are_compact_in_the_table():
    from temtwin.report.summary import region_rows
    s = {"sample": "s", "images": {"a": {"regions": {"1": {"phase": "Ge", "candidates": [
        {"phase": "Ge", "zone_axis": [0, 1, 1], "confidence": 0.9525},
        {"phase": "Si", "zone_axis": [0, 1, 1], "confidence": 0.0475}]}}}}}
    (row,) = region_rows([s])
    assert row["candidates"] == "Ge[011]:0.953;Si[011]:0.0475"


def test_a_failed_sample_is_listed_with_its_reason_and_hides_nothing(tmp_path):
    r = tmp_path / "results"
    (r / "good").mkdir(parents=True)
    (r / "good" / "summary.json").write_text(json.dumps(
        {"sample": "good", "images": {"a": {"regions": {"1": {"phase": "Si"}}}}}))
    log = r / "logs" / "bad" / "b" / "ingest.log"
    log.parent.mkdir(parents=True)
    log.write_text("10:00:00 INFO rule ingest: start\n10:00:01 ERROR error: bad/b.tif: not a TIFF file; re-export it\n")
    n, failed = write_table(r, ["bad", "good"], r / "summary.tsv")
    rows = list(csv.DictReader(open(r / "summary.tsv"), delimiter="\t"))
    assert failed == ["bad"] and n == 2
    assert [(x["sample"], x["region"], x["phase"]) for x in rows] == [("good", "1", "Si"), ("bad", "", "")]
    assert rows[1]["error"] == "ingest: error: bad/b.tif: not a TIFF file; re-export it"
    assert rows[0]["error"] == ""
