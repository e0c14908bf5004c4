"""The results layer (temtwin.results): round trips of the image-scope result classes, the applicability
flag, one-line errors for missing/corrupt files, the generated layout tables of docs/DEVELOPING.md, and the
stage registry's result files covered by a class."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5
from temtwin.results import MODULES, markdown_layout, result_classes
from temtwin.results.base import Array, Group
from temtwin.results.gpa import Gpa
from temtwin.results.image import Image
from temtwin.results.peaks import Peaks
from temtwin.results.phases import Phases
from temtwin.results.raw import Raw
from temtwin.results.segmentation import Segmentation
from temtwin.results.simulation import Simulation
from temtwin.workflow.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(15)


def _write(path: Path, result) -> Path:
    with atomic_h5(path, {"rule": result.RULE}) as f:
        result.write(f)
    return path


def _same(a, b) -> None:
    """Recursive equality of result contents (arrays compared with NaN == NaN)."""
    if isinstance(a, Group):
        assert isinstance(b, Group)
        _same(a.attrs, b.attrs)
        assert sorted(a.arrays) == sorted(b.arrays)
        for k in a.arrays:
            assert a.arrays[k].units == b.arrays[k].units, k
            _same(a.arrays[k].attrs, b.arrays[k].attrs)
            _same(a.arrays[k].data, b.arrays[k].data)
        assert sorted(a.groups) == sorted(b.groups)
        for k in a.groups:
            _same(a.groups[k], b.groups[k])
    elif isinstance(a, dict):
        assert set(a) == set(b), (set(a), set(b))
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)) and not isinstance(a, str):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        if a.dtype.kind in "fc":
            np.testing.assert_array_equal(a, b)
        else:
            assert a.tolist() == b.tolist()
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b, (a, b)


def _image(cls=Raw):
    return cls(data=RNG.normal(size=(24, 32)).astype(np.float32), units="counts", pixel_size_nm=(0.02, 0.025),
               sample="s1", image="im1", attrs={"mode": "STEM", "voltage_kV": 300.0, "n_frames": 3,
                                                "stage_x_um": float("nan"), "elements": '["Si", "Ge"]'})


def _table(n: int) -> Group:
    return Group(attrs={"n_rows": n}, arrays={"kx": Array(RNG.normal(size=n), "nm^-1"),
                                              "ky": Array(RNG.normal(size=n), "nm^-1"),
                                              "snr": Array(RNG.uniform(3, 9, n), "1")})


def _peaks() -> Peaks:
    regions = Group()
    for lab, n in ((1, 6), (2, 0)):
        g = Group(attrs={"crystalline": n > 0, "window_px": np.array([0, 0, 16, 16]),
                         "fft_sampling_nm-1": 0.3 if n else float("nan"), "reason": "" if n else "too small"},
                  groups={"peaks": _table(n)})
        if n:
            g.arrays["fft"] = Array(RNG.normal(size=(16, 16)).astype(np.float32), "1",
                                    {"k_extent_nm-1": np.array([-2.4, 2.1, -2.4, 2.1])})
        regions.groups[str(lab)] = g
    return Peaks(content=Group(attrs={"detectors": '["gauss"]', "n_regions": 2}, groups={"regions": regions}))


def _phases() -> Phases:
    M = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
    cand = Group(attrs={"n_rows": 2}, arrays={"rank": Array(np.array([1, 2]), "1"),
                                              "phase": Array(np.array(["Si", "Ge"], object), "1"),
                                              "score": Array(np.array([0.9, 0.4]), "1")})
    spots = Group(attrs={"n_rows": 3}, arrays={k: Array(RNG.normal(size=3), u) for k, u in
                                               (("kx", "nm^-1"), ("ky", "nm^-1"), ("h", "1"), ("k", "1"),
                                                ("l", "1"))})
    r1 = Group(attrs={"phase": "Si", "identified": True, "zone_axis": np.array([1, 1, 0]), "rotation_deg": 12.5,
                      "state": "identified"},
               arrays={"orientation_matrix": Array(M, "1")}, groups={"candidates": cand, "spots": spots})
    r2 = Group(attrs={"phase": "", "identified": False, "state": "not_identified"})
    return Phases(content=Group(
        attrs={"calibration_scale_factor": 1.01, "calibration_status": "recovered"},
        groups={"regions": Group(groups={"1": r1, "2": r2}),
                "phases": Group(groups={"Si": Group(attrs={"cif": "data_Si\n", "space_group": "Fd-3m",
                                                           "lattice_abc_nm": np.array([0.5431] * 3)})})}))


def _gpa() -> Gpa:
    sh = (12, 10)
    strain = Group(arrays={k: Array(RNG.normal(scale=1e-3, size=sh), "1") for k in ("exx", "eyy", "exy")})
    return Gpa(content=Group(
        attrs={"reference_label": 1, "resolution_nm": 1.2},
        arrays={"g_vectors": Array(np.array([[3.2, 0.0], [0.0, 3.2]]), "nm^-1"),
                "displacement": Array(RNG.normal(size=(2,) + sh), "nm"),
                "rotation": Array(RNG.normal(size=sh), "rad"), "mask": Array(RNG.uniform(size=sh) > 0.2, "1")},
        groups={"strain": strain, "strain_sigma": Group(arrays={"exx": Array(np.full(sh, 1e-4), "1")})}))


def _simulation() -> Simulation:
    fit = Group(attrs={"n_rows": 2}, arrays={"parameter": Array(np.array(["defocus", "cs"], object), "1"),
                                             "value": Array(np.array([-5.0, 1.2]), "1"),
                                             "sigma": Array(np.array([0.5, np.nan]), "1")})
    return Simulation(content=Group(
        attrs={"mode": "hrtem", "model": "as_built", "ambiguous": False, "fit_box_px": np.array([0, 0, 16, 16])},
        arrays={"simulated": Array(RNG.normal(size=(16, 16)).astype(np.float32), "counts")},
        groups={"fit": fit}))


def test_image_round_trip(tmp_path):
    raw = _image(Raw)
    back = Raw.read(_write(tmp_path / "raw.h5", raw))
    assert back.applicable and back.scan_correction is None
    for k in ("units", "pixel_size_nm", "sample", "image", "attrs", "data"):
        _same(getattr(raw, k), getattr(back, k))
    img = _image(Image)
    img.scan_correction = Group(attrs={"applicable": True, "method": "jitter", "valid_region_px": np.arange(4)},
                                arrays={"drift": Array(np.array([0.01, -0.002]), "1", {"description": "d"}),
                                        "jitter_px": Array(RNG.normal(size=24), "px")})
    back = Image.read(_write(tmp_path / "image.h5", img))
    _same(img.scan_correction, back.scan_correction)
    _same(img.data, back.data)
    head = Image.read(tmp_path / "image.h5", header_only=True)
    assert head.data is None and head.attrs["shape"] == (24, 32) and head.pixel_size_nm == (0.02, 0.025)


def test_ingest_writer_and_read_image_agree(tmp_path):
    """The ingest stage's writer and the one image reader (io.image.read_image) go through Raw."""
    from temtwin.io.image import Micrograph, read_image
    from temtwin.io.ingest import write_image_h5

    m = Micrograph(RNG.normal(size=(8, 9)).astype(np.float32), (0.1, 0.12), "im", "s",
                   {"mode": "TEM", "source_file": "/x/im.tif", "voltage_kV": 200.0, "elements": ["In", "P"]})
    with atomic_h5(tmp_path / "raw.h5", {"rule": "ingest"}) as f:
        write_image_h5(f, m)
    back = read_image(tmp_path / "raw.h5")
    _same(m.data, back.data)
    assert back.pixel_size_nm == (0.1, 0.12) and back.meta["mode"] == "TEM" and back.meta["voltage_kV"] == 200
    assert back.meta["elements"] == '["In", "P"]' and "temtwin_version" not in back.meta


def test_segmentation_round_trip(tmp_path):
    labels = np.zeros((20, 30), np.int32)
    labels[:, :12], labels[:, 12:] = 1, 2
    seg = Segmentation(labels=labels, table={"label": np.array([1, 2]), "area_nm2": np.array([2.4, 3.6]),
                                             "centroid_nm": np.array([[0.6, 1.0], [2.1, 1.0]])},
                       contours={1: np.array([[0, 0], [1.2, 0], [1.2, 2.0]]), 2: np.zeros((0, 2))},
                       holes={2: [np.array([[2.0, 0.5], [2.2, 0.5], [2.1, 0.7]])]},
                       attrs={"method": "canny", "source": "automatic"})
    back = Segmentation.read(_write(tmp_path / "segmentation.h5", seg))
    for k in ("labels", "table", "contours", "holes", "attrs"):
        _same(getattr(seg, k), getattr(back, k))
    _same(labels, Segmentation.read_labels(tmp_path / "segmentation.h5", (20, 30)))
    with pytest.raises(UserError, match="segmentation.h5.*rerun the `segment` rule"):
        Segmentation.read_labels(tmp_path / "segmentation.h5", (20, 31))


@pytest.mark.parametrize("make", [_peaks, _phases, _gpa, _simulation])
def test_tree_round_trip(tmp_path, make):
    res = make()
    back = type(res).read(_write(tmp_path / res.FILE, res))
    assert back.applicable
    _same(res.content, back.content)


def test_typed_views(tmp_path):
    pk = Peaks.read(_write(tmp_path / "peaks.h5", _peaks())).regions
    assert list(pk) == [1, 2] and pk[1].crystalline and not pk[2].crystalline
    assert pk[1].sampling == pytest.approx(0.3) and pk[2].sampling == 0.0 and pk[2].reason == "too small"
    assert pk[1].extent.tolist() == [-2.4, 2.1, -2.4, 2.1] and pk[2].fft is None and len(pk[1].table["kx"]) == 6
    ph = Phases.read(_write(tmp_path / "phases.h5", _phases()))
    assert ph.regions[1].phase == "Si" and ph.regions[1].identified and not ph.regions[2].identified
    assert list(ph.regions[1].candidates["phase"]) == ["Si", "Ge"] and ph.regions[2].orientation_matrix is None
    assert ph.phases["Si"]["cif"] == "data_Si\n"
    g = Gpa.read(_write(tmp_path / "gpa.h5", _gpa()), parts=("strain", "mask"))
    assert g.reference_label == 1 and g.resolution_nm == 1.2 and sorted(g.strain) == ["exx", "exy", "eyy"]
    assert g.displacement is None and g.mask.dtype == bool      # only the parts asked for are read


@pytest.mark.parametrize("cls", [Raw, Image, Segmentation, Peaks, Phases, Gpa, Simulation])
def test_not_applicable_reads_back(tmp_path, cls):
    p = tmp_path / cls.FILE
    with atomic_h5(p, {"rule": cls.RULE}) as f:      # what StageContext.not_applicable writes
        f.attrs["applicable"] = False
        f.attrs["reason"] = "no crystal in the image"
    r = cls.read(p)
    assert r.applicable is False and r.reason == "no crystal in the image"


@pytest.mark.parametrize("cls", [Raw, Image, Segmentation, Peaks, Phases, Gpa, Simulation])
def test_missing_or_corrupt_file_is_one_error_line(tmp_path, cls):
    with pytest.raises(UserError) as e:
        cls.read(tmp_path / cls.FILE)
    msg = str(e.value)
    assert cls.FILE in msg and f"`{cls.RULE}`" in msg and "\n" not in msg
    (tmp_path / cls.FILE).write_text("not HDF5")
    with pytest.raises(UserError) as e:
        cls.read(tmp_path / cls.FILE)
    msg = str(e.value)
    assert cls.FILE in msg and f"`{cls.RULE}`" in msg and "\n" not in msg


def test_layout_documents_units():
    for cls in result_classes():
        assert cls.FILE and cls.RULE and cls.LAYOUT, cls
        for e in cls.LAYOUT:
            assert e.kind in ("dataset", "table", "group", "attr", ""), (cls, e)
            if e.kind == "dataset":
                assert e.units, (cls.FILE, e.path)


def test_developing_page_in_step():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "config_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = (ROOT / "docs" / "DEVELOPING.md").read_text()
    assert "<!-- RESULTS-LAYOUT:BEGIN -->" in page
    assert mod.refresh_results_layout(page) == page, "run: python docs/config_reference.py"
    block = page.split("<!-- RESULTS-LAYOUT:BEGIN -->\n")[1].split("<!-- RESULTS-LAYOUT:END -->")[0]
    assert block.strip() == markdown_layout().strip()
    # the registry and the results modules are what a newcomer reads first
    heads = [ln for ln in page.splitlines() if ln.startswith("## ")]
    assert "registry" in heads[0] and "result modules" in heads[1]


def test_registry_result_files_have_classes():
    """Every class names a result file and rule of the stage registry, and every HDF5 result file of the
    registry has its class (summary.json/tsv and the viewer's pages are not HDF5 results)."""
    files = {s.result: s.rule for s in STAGES}
    for cls in result_classes():
        assert files.get(cls.FILE) == cls.RULE, (cls.FILE, cls.RULE)
    covered = {c.FILE for c in result_classes()}
    h5_files = {f for f in files if f.endswith(".h5")}
    assert h5_files <= covered, h5_files - covered
    assert len(MODULES) == len(result_classes())


def test_written_not_applicable_keeps_its_attributes(tmp_path):
    """A stage writing 'not applicable' through the class (gpa, simulate_image) records the flag, the reason
    and its own attributes; an applicable GPA records applicable = True as the stage always did."""
    g = Gpa(applicable=False, reason="amorphous image", content=Group(attrs={"reference_label": 0}))
    p = _write(tmp_path / "gpa.h5", g)
    back = Gpa.read(p)
    assert not back.applicable and back.reason == "amorphous image" and back.attrs == {"reference_label": 0}
    assert back.strain == {} and back.displacement is None
    p2 = _write(tmp_path / "gpa2.h5", _gpa())
    with h5py.File(p2, "r") as f:
        assert bool(f.attrs["applicable"]) is True and f.attrs["reason"] == ""
    with h5py.File(_write(tmp_path / "peaks.h5", _peaks()), "r") as f:
        assert "applicable" not in f.attrs          # peaks.h5 never carried the flag when applicable
