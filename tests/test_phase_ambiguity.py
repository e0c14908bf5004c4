"""Honest phase answers: calibration searched over ±12 %, ambiguity report, lattice-identical phases,
pinned reference calibration, instrument uncertainty, elements from maps / metadata, 2D crystals.

Ground truth: peak lists simulated from the CIFs (temtwin.testing.phase_spots, point-charge structure
factors) with a known calibration error and orientation."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.io.h5 import atomic_h5, read_summary, read_table, write_array, write_table
from temtwin.io.image import Micrograph
from temtwin.io.ingest import _elements, _unit_factor, write_image_h5
from temtwin.phase.calibration import image_calibration
from temtwin.phase.database import builtin_phase_files, load_builtin
from temtwin.phase.layers import is_two_dimensional
from temtwin.phase.library import build_library
from temtwin.phase.matching import MatchSettings, Spots, identify
from temtwin.testing.phase_spots import simulate_spots
from temtwin.stages.phase_id import run
from temtwin.phase.zones import same_zone
from temtwin.workflow.context import StageContext
from temtwin.workflow.discovery import element_names


@pytest.fixture(scope="module")
def db():
    return {p.name: p for p in load_builtin()}


@pytest.fixture(scope="module")
def full(db):
    return build_library(list(db.values()), 3, 18.0)


def _spots(db, name, zone, scale, seed, distortion=None, **kw):
    rng = np.random.default_rng(seed)
    sim = simulate_spots(db[name], zone, rng.uniform(0, 360), rng, scale=scale, g_max=10.0, missing=0.15,
                         distortion=distortion, **kw)
    return Spots.from_arrays(sim.kx, sim.ky, sim.snr, 0.05)


def _sub(db, elements):
    return build_library([p for p in db.values() if set(p.elements) <= set(elements)], 3, 18.0)


def test_fcc_0370_is_cu_or_au_without_elements_and_au_with_them(db, full):
    """The issue's example: Au [011] seen with a stored pixel size 9 % too large (fcc a = 0.374 nm as
    stored).  Without elements it is Cu at s ≈ 0.97 or Au at s ≈ 1.09: reported ambiguous with both and
    the calibration each implies, never confident.  With elements [Au] it is Au [011] at s = 1.09,
    identified (the old calibration prior cut this score below the threshold)."""
    for seed in range(3):
        sp = _spots(db, "Au", (0, 1, 1), 1.09, seed)
        c = identify(full, sp, MatchSettings())[0]
        names = {c.phase} | {a["phase"] for a in c.alternatives}
        assert c.state == "ambiguous" and {"Cu", "Au"} <= names
        assert c.confidence < 0.9
        implied = {a["phase"]: a["scale_factor"] for a in c.alternatives} | {c.phase: c.scale}
        assert implied["Au"] == pytest.approx(1.09, abs=0.006)
        assert implied["Cu"] == pytest.approx(1.09 * 3.6149 / 4.0782, abs=0.006)
        c = identify(_sub(db, ["Au"]), sp, MatchSettings())[0]
        assert c.phase == "Au" and same_zone(db["Au"], c.uvw, (0, 1, 1)) and c.identified
        assert c.state == "identified" and c.confidence > 0.9 and c.scale == pytest.approx(1.09, abs=0.005)


def test_known_instrument_uncertainty_decides_cu_vs_au(db, full):
    """With the calibration known to 2 % (``calibration.uncertainty``), Cu [011] at s = 1.00 is no longer
    ambiguous with Au at 1.13 (outside the instrument's uncertainty)."""
    sp = _spots(db, "Cu", (0, 1, 1), 1.0, 4)
    c = identify(full, sp, MatchSettings(scale_sigma=0.02, calibration_sigma=0.02))[0]
    assert c.phase == "Cu" and c.identified
    assert all(a["phase"] != "Au" for a in c.alternatives)


@pytest.mark.parametrize("truth, zone, twins", [("GaAs", (0, 0, 1), {"Ge", "AlAs"}),
                                                ("InSb", (1, 1, 0), {"CdTe"})])
def test_lattice_identical_phases_are_reported_as_such(db, full, truth, zone, twins):
    """GaAs / Ge / AlAs (a within 0.15 %) and InSb / CdTe (0.03 %): without elements the region is not a
    confident single pick; the others are listed as lattice-identical alternatives.  With the elements
    the answer is single and confident."""
    sp = _spots(db, truth, zone, 1.0, 11)
    c = identify(full, sp, MatchSettings())[0]
    group = {c.phase} | {a["phase"] for a in c.alternatives if a["lattice_identical"]}
    assert truth in group and (twins & group) and c.confidence < 0.9 and c.state == "ambiguous"
    c = identify(_sub(db, db[truth].elements), sp, MatchSettings())[0]
    assert c.phase == truth and same_zone(db[truth], c.uvw, zone) and c.confidence > 0.9


def test_joint_calibration_reports_uncertainty_and_ambiguity(db, full):
    """Joint estimate over regions: Cu [011] and InP [001] seen 6 % large → recovered 1.06 with an
    uncertainty; a single fcc region without elements → two calibrations (Cu, Au) → ``ambiguous``."""
    cfg = MatchSettings()
    res = {1: identify(full, _spots(db, "Cu", (0, 1, 1), 1.06, 1), cfg),
           2: identify(full, _spots(db, "InP", (0, 0, 1), 1.06, 2), cfg),
           3: identify(full, _spots(db, "TiO2-rutile", (0, 0, 1), 1.06, 3), cfg)}
    cal = image_calibration(res, cfg, 0.015)
    assert cal.status == "recovered" and cal.scale == pytest.approx(1.06, abs=0.006)
    assert 0 < cal.uncertainty < 0.02 and cal.n_spots >= 12 and len(cal.regions) == 3
    one = image_calibration({1: identify(full, _spots(db, "Au", (0, 1, 1), 1.09, 5), cfg)}, cfg, 0.015)
    scales = sorted([one.scale] + [a["scale_factor"] for a in one.alternatives])
    assert one.status == "ambiguous" and len(scales) >= 2


# ------------------------------------------------------------------------------------------ stage level
PX = (0.02, 0.02)


def _image_h5(path, mode="TEM", elements=None):
    meta = {"units": "counts", "source_file": "img.emd", "source_sha256": "0", "mode": mode}
    if elements:
        meta["elements"] = elements
    m = Micrograph(np.zeros((64, 64), np.float32), PX, name="img", sample="s", meta=meta)
    with atomic_h5(path) as f:
        write_image_h5(f, m)


def _peaks_h5(path, regions):
    with atomic_h5(path) as f:
        rg = f.require_group("regions")
        for label, sp in regions.items():
            g = rg.require_group(str(label))
            g.attrs["crystalline"] = True
            g.attrs["fft_sampling_nm-1"] = 0.1
            kx, ky = sp.k.real, sp.k.imag
            write_table(g, "peaks", {"kx": (kx, "nm^-1"), "ky": (ky, "nm^-1"), "snr": (sp.w ** (4 / 3), "1")})
            write_array(g, "fft", np.zeros((8, 8), np.float32), "1",
                        **{"k_extent_nm-1": np.array([-12.5, 12.5, -12.5, 12.5])})


def _run(tmp, out, config, params=None, mode="TEM", elements=None, regions=None):
    _image_h5(tmp / "image.h5", mode, elements)
    _peaks_h5(tmp / "peaks.h5", regions)
    out.mkdir(exist_ok=True)
    ctx = StageContext.create(
        "phase_id", {"image": str(tmp / "image.h5"), "segmentation": str(tmp / "seg.h5"),
                     "peaks": str(tmp / "peaks.h5"), "cifs": [str(p) for p in builtin_phase_files()],
                     "settings": []},
        {"h5": str(out / "phases.h5"), "figures": str(out / "figs")},
        {"phase_id": {"figures": False, "bragg": {"enabled": False}, **config}},
        wildcards={"sample": "s", "image": "img"}, params=params or {})
    run(ctx)
    return read_summary(out / "phases.h5"), out / "phases.h5"


def test_stage_pins_the_calibration_to_a_reference_phase(db, tmp_path):
    """A device on Si seen with the stored pixel size 7 % too large: a Si [110] substrate region, a GaAs
    [110] layer and a Cu [110] contact.  Without elements each region alone is ambiguous across
    calibrations; with ``calibration: {reference_phase: Si}`` the image's scale factor is the one at
    which Si fits (1.07), status ``reference``, and every region is identified at that calibration."""
    regions = {1: _spots(db, "Si", (1, 1, 0), 1.07, 1), 2: _spots(db, "GaAs", (1, 1, 0), 1.07, 2),
               3: _spots(db, "Cu", (1, 1, 0), 1.07, 3)}
    s, path = _run(tmp_path, tmp_path / "ref", {"calibration": {"reference_phase": "Si"}}, regions=regions)
    cal = s["calibration"]
    assert cal["status"] == "reference" and cal["reference_phase"] == "Si" and cal["recovered"]
    assert cal["scale_factor"] == pytest.approx(1.07, abs=0.006) and 0 < cal["uncertainty"] < 0.02
    r = s["regions"]
    assert r["1"]["phase"] == "Si" and r["3"]["phase"] == "Cu" and r["2"]["phase"] in ("GaAs", "Ge", "AlAs")
    assert all(r[k]["identified"] and r[k]["scale_factor"] == pytest.approx(1.07, abs=0.006) for k in "123")
    # GaAs / Ge / AlAs stay lattice-identical (no elements): reported as such
    assert all(a["lattice_identical"] for a in r["2"].get("alternatives", []))
    with __import__("h5py").File(path, "r") as f:
        assert f.attrs["calibration_status"] == "reference"
    # the same image without the reference: the stored calibration is not trusted blindly
    s2, _ = _run(tmp_path, tmp_path / "free", {}, regions=regions)
    assert s2["calibration"]["status"] in ("recovered", "ambiguous")
    assert s2["regions"]["1"]["confidence"] < 0.9 or s2["regions"]["1"]["phase"] == "Si"


def test_stage_takes_elements_from_maps_then_metadata(db, tmp_path):
    """No `elements` anywhere: the element maps eels/<El>.* restrict the candidates (Au particle seen 9 %
    large is then Au [011], identified), and the summary says where the elements came from; without
    maps, the elements the vendor file lists are used the same way."""
    assert element_names(["eels/Au.tif", "eels/Cu.npy", "eels/notes.txt", "eels/HAADF.tif"]) == ["Au", "Cu"]
    regions = {1: _spots(db, "Au", (0, 1, 1), 1.09, 7)}
    s, path = _run(tmp_path, tmp_path / "maps", {}, params={"map_elements": ["Au"]}, regions=regions)
    assert s["elements"] == {"elements": ["Au"], "source": "element maps"}
    r = s["regions"]["1"]
    assert r["phase"] == "Au" and r["identified"] and r["state"] == "identified"
    assert r["scale_factor"] == pytest.approx(1.09, abs=0.005)
    assert s["calibration"]["status"] == "recovered"
    assert s["calibration"]["scale_factor"] == pytest.approx(1.09, abs=0.006)
    s, _ = _run(tmp_path, tmp_path / "meta", {}, elements=["Au"], regions=regions)
    assert s["elements"]["source"] == "file metadata" and s["regions"]["1"]["phase"] == "Au"
    # and with nothing: ambiguous, alternatives written to phases.h5 with their implied calibration
    s, path = _run(tmp_path, tmp_path / "none", {}, regions=regions)
    assert s["regions"]["1"]["state"] == "ambiguous" and s["regions"]["1"]["confidence"] < 0.9
    with __import__("h5py").File(path, "r") as f:
        alt = read_table(f["regions"]["1"]["alternatives"])
        assert {"phase", "scale_factor", "lattice_identical", "confidence"} <= set(alt)


def test_vendor_metadata_elements_and_berkeley_length_unit():
    assert _unit_factor("n_m") == 1.0 and _unit_factor("nm") == 1.0
    assert _elements({"Sample": {"elements": ["Se", "Mo", "S"]}}) == ["Mo", "S", "Se"]
    assert _elements({"Sample": {"elements": "Au, Cu"}}) == ["Au", "Cu"] and _elements({}) == []


def test_two_dimensional_crystals_stay_on_0001(db):
    """MoS2, WS2, hBN and graphene are 2D (vacuum gap) and searched on [0001] only: a STEM image stretched
    4 % along y by the scan is still [0001] (the stretch reported as scan distortion), with the elements
    given, at the right calibration."""
    assert {n for n, p in db.items() if is_two_dimensional(p)} == {"MoS2", "WS2", "hBN", "graphene"}
    assert not is_two_dimensional(db["GaN"]) and not is_two_dimensional(db["Al2O3-corundum"])
    els = {"MoS2": ["Mo", "S", "Se"], "WS2": ["W", "S"], "hBN": ["B", "N"], "graphene": ["C"]}
    for i, (name, el) in enumerate(els.items()):
        sp = _spots(db, name, (0, 0, 1), 0.95, 20 + i, distortion=np.array([[0.0, 0.0], [0.0, 0.04]]))
        c = identify(_sub(db, el), sp, MatchSettings(), scan_rows=True)[0]
        assert c.phase == name and list(c.uvw) == [0, 0, 1] and c.identified
        assert c.scale == pytest.approx(0.95, abs=0.02)
        assert c.scan_distortion[1, 1] == pytest.approx(1.04, abs=0.01)


@pytest.mark.parametrize("truth, zone, wrong", [("Si", (0, 0, 1), "SrTiO3"), ("Ge", (0, 0, 1), "BaTiO3"),
                                                ("CdTe", (0, 0, 1), "TiO2-rutile"), ("Al", (0, 0, 1), "AlAs")])
def test_lattice_coincidences_of_the_issue_are_penalised_and_never_confident(db, full, truth, zone, wrong):
    """The independent-code failures of the issue (Si [001] → SrTiO3 [001], Ge → BaTiO3, CdTe → rutile at
    confidence 0.90, Al → AlAs): the wrong candidate predicts strong reflections that are absent (SrTiO3
    {100}, {110}) or misses present ones, so its fit is lower than the truth's; without elements no
    candidate is confident (the calibration is unknown: the coincidence lies within its range)."""
    for seed in range(2):
        c = identify(full, _spots(db, truth, zone, 1.0, 30 + seed), MatchSettings())[0]
        fit = {k["phase"]: k["fit"] for k in c.pool}
        assert fit[truth] > fit.get(wrong, 0.0)
        assert c.confidence < 0.9
