"""The results layer (temtwin.results): round trips of every result class (image scope: raw, image,
segmentation, peaks, phases, gpa, simulation; sample scope: stack, fem, fem_relax, spin_orbit, model, keating,
phonons, tb_moments, tb) through the one tree class (:class:`temtwin.results.TreeResult`), the applicability
flag, one-line errors for missing/corrupt files, selective reads, the generated layout tables of
docs/DEVELOPING.md, and the stage registry's result files covered by a class."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, make_provenance
from temtwin.results import MODULES, TreeResult, markdown_layout, result_classes
from temtwin.results.fem import FemGeometry, read_regions_json
from temtwin.results.fem_relax import FemRelax
from temtwin.results.gpa import Gpa
from temtwin.results.image import Image
from temtwin.results.keating import Keating
from temtwin.results.model import Model
from temtwin.results.peaks import Peaks
from temtwin.results.phases import Phases
from temtwin.results.phonons import Phonons
from temtwin.results.raw import Raw
from temtwin.results.segmentation import Segmentation
from temtwin.results.simulation import Simulation
from temtwin.results.spin_orbit import SpinOrbit
from temtwin.results.stack import Stack
from temtwin.results.tb import Tb
from temtwin.results.tb_moments import TbMoments
from temtwin.workflow.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(15)
IMAGE_TREES = (Peaks, Phases, Gpa, Simulation)
SAMPLE_CLASSES = (Stack, FemGeometry, FemRelax, SpinOrbit, Model, Keating, Phonons, TbMoments, Tb)
ALL_CLASSES = (Raw, Image, Segmentation) + IMAGE_TREES + SAMPLE_CLASSES


def _write(path: Path, result) -> Path:
    with atomic_h5(path, {"rule": result.RULE}) as f:
        result.write(f)
    return path


def _same(a, b) -> None:
    """Recursive equality of result contents (arrays compared with NaN == NaN)."""
    if isinstance(a, dict):
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


def _table(t: TreeResult, path: str, n: int) -> None:
    t.put_table(path, {"kx": (RNG.normal(size=n), "nm^-1"), "ky": (RNG.normal(size=n), "nm^-1"),
                       "snr": (RNG.uniform(3, 9, n), "1")})


def _peaks() -> Peaks:
    p = Peaks(attrs={"": {"detectors": '["gauss"]', "n_regions": 2}})
    for lab, n in ((1, 6), (2, 0)):
        p.set_attrs(f"regions/{lab}", crystalline=n > 0, window_px=np.array([0, 0, 16, 16]),
                    **{"fft_sampling_nm-1": 0.3 if n else float("nan"), "reason": "" if n else "too small"})
        _table(p, f"regions/{lab}/peaks", n)
        if n:
            p.put(f"regions/{lab}/fft", RNG.normal(size=(16, 16)).astype(np.float32), "1",
                  **{"k_extent_nm-1": np.array([-2.4, 2.1, -2.4, 2.1])})
    return p


def _phases() -> Phases:
    M = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
    ph = Phases(attrs={"": {"calibration_scale_factor": 1.01, "calibration_status": "recovered"}})
    r1 = TreeResult()
    r1.set_attrs(phase="Si", identified=True, zone_axis=np.array([1, 1, 0]), rotation_deg=12.5, state="identified")
    r1.put("orientation_matrix", M, "1")
    r1.put_table("candidates", {"rank": (np.array([1, 2]), "1"), "phase": (np.array(["Si", "Ge"], object), "1"),
                                "score": (np.array([0.9, 0.4]), "1")})
    r1.put_table("spots", {k: (RNG.normal(size=3), u) for k, u in
                           (("kx", "nm^-1"), ("ky", "nm^-1"), ("h", "1"), ("k", "1"), ("l", "1"))})
    ph.graft("regions/1", r1)
    ph.set_attrs("regions/2", phase="", identified=False, state="not_identified")
    ph.set_attrs("phases/Si", cif="data_Si\n", space_group="Fd-3m", lattice_abc_nm=np.array([0.5431] * 3))
    return ph


def _gpa() -> Gpa:
    sh = (12, 10)
    g = Gpa(attrs={"": {"reference_label": 1, "resolution_nm": 1.2}})
    g.put("g_vectors", np.array([[3.2, 0.0], [0.0, 3.2]]), "nm^-1")
    g.put("displacement", RNG.normal(size=(2,) + sh), "nm")
    g.put("rotation", RNG.normal(size=sh), "rad")
    g.put("mask", RNG.uniform(size=sh) > 0.2, "1")
    for k in ("exx", "eyy", "exy"):
        g.put(f"strain/{k}", RNG.normal(scale=1e-3, size=sh), "1")
    g.put("strain_sigma/exx", np.full(sh, 1e-4), "1")
    g.set_attrs("lattice", hkl=np.array([[1, 1, 1], [2, 0, 0]]), reference_phase="Si")
    g.put("lattice/d_spacing", RNG.uniform(0.1, 0.3, (2,) + sh), "nm")
    return g


def _simulation() -> Simulation:
    s = Simulation(attrs={"": {"mode": "hrtem", "model": "as_built", "ambiguous": False,
                               "fit_box_px": np.array([0, 0, 16, 16])}})
    s.put("simulated", RNG.normal(size=(16, 16)).astype(np.float32), "counts")
    s.put_table("fit", {"parameter": (np.array(["defocus", "cs"], object), "1"),
                        "value": (np.array([-5.0, 1.2]), "1"), "sigma": (np.array([0.5, np.nan]), "1")})
    return s


def test_image_round_trip(tmp_path):
    raw = _image(Raw)
    back = Raw.read(_write(tmp_path / "raw.h5", raw))
    assert back.applicable and back.scan_correction is None
    for k in ("units", "pixel_size_nm", "sample", "image", "attrs", "data"):
        _same(getattr(raw, k), getattr(back, k))
    img = _image(Image)
    sc = TreeResult(attrs={"": {"applicable": True, "method": "jitter", "valid_region_px": np.arange(4)}})
    sc.put("drift", np.array([0.01, -0.002]), "1", description="d")
    sc.put("jitter_px", RNG.normal(size=24), "px")
    img.scan_correction = sc
    back = Image.read(_write(tmp_path / "image.h5", img))
    _assert_equal(img.scan_correction, back.scan_correction)
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


def test_typed_views(tmp_path):
    pk = Peaks.read(_write(tmp_path / "peaks.h5", _peaks())).regions
    assert list(pk) == [1, 2] and pk[1].crystalline and not pk[2].crystalline
    assert pk[1].sampling == pytest.approx(0.3) and pk[2].sampling == 0.0 and pk[2].reason == "too small"
    assert pk[1].extent.tolist() == [-2.4, 2.1, -2.4, 2.1] and pk[2].fft is None and len(pk[1].table["kx"]) == 6
    ph = Phases.read(_write(tmp_path / "phases.h5", _phases()))
    assert ph.regions[1].phase == "Si" and ph.regions[1].identified and not ph.regions[2].identified
    assert list(ph.regions[1].candidates["phase"]) == ["Si", "Ge"] and ph.regions[2].orientation_matrix is None
    assert ph.phases["Si"]["cif"] == "data_Si\n"
    g = Gpa.read(_write(tmp_path / "gpa.h5", _gpa()), only=("strain", "mask"))
    assert g.reference_label == 1 and g.resolution_nm == 1.2 and sorted(g.strain) == ["exx", "exy", "eyy"]
    assert g.displacement is None and g.mask.dtype == bool      # only the parts asked for are read
    assert g.strain_sigma == {} and g.get("lattice/d_spacing") is None    # "strain" is not "strain_sigma"
    # the attributes of every group are read in any case (GPA's stored hkl without its maps)
    assert g.g_hkl.tolist() == [[1, 1, 1], [2, 0, 0]] and g.g_phase == "Si"


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_not_applicable_reads_back(tmp_path, cls):
    p = tmp_path / cls.FILE
    with atomic_h5(p, {"rule": cls.RULE}) as f:      # what StageContext.not_applicable writes
        f.attrs["applicable"] = False
        f.attrs["reason"] = "no crystal in the image"
    r = cls.read(p)
    assert r.applicable is False and r.reason == "no crystal in the image"
    if issubclass(cls, TreeResult):                  # written through the class: the same, and no data
        back = cls.read(_write_in(tmp_path, cls.not_applicable("no region has an identified phase")))
        assert back.applicable is False
        assert back.reason == "no region has an identified phase"
        assert back.data == {}


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_missing_or_corrupt_file_is_one_error_line(tmp_path, cls):
    missing = tmp_path / "absent" / Path(cls.FILE).name      # fem/fem.h5, tb/moments_{chunk}.h5: the base name
    with pytest.raises(UserError) as e:
        cls.read(missing)
    msg = str(e.value)
    assert cls.FILE in msg and str(missing) in msg and f"`{cls.RULE}`" in msg and "\n" not in msg
    bad = tmp_path / f"corrupt_{Path(cls.FILE).name}"
    bad.write_text("not HDF5")
    with pytest.raises(UserError) as e:
        cls.read(bad)
    msg = str(e.value)
    assert cls.FILE in msg and bad.name in msg and f"`{cls.RULE}`" in msg and "\n" not in msg


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
    g = Gpa(applicable=False, reason="amorphous image", attrs={"": {"reference_label": 0}})
    p = _write(tmp_path / "gpa.h5", g)
    back = Gpa.read(p)
    assert not back.applicable and back.reason == "amorphous image" and back.group_attrs() == {"reference_label": 0}
    assert back.strain == {} and back.displacement is None
    p2 = _write(tmp_path / "gpa2.h5", _gpa())
    with h5py.File(p2, "r") as f:
        assert bool(f.attrs["applicable"]) is True and f.attrs["reason"] == ""
    with h5py.File(_write(tmp_path / "peaks.h5", _peaks()), "r") as f:
        assert "applicable" not in f.attrs          # peaks.h5 never carried the flag when applicable


# -- sample scope (formerly tests/test_results_sample.py) --------------------------------------------------

def _rng():
    return np.random.default_rng(7)


def _example(cls) -> TreeResult:
    """A small instance of ``cls`` with the kinds of content its stage writes (arrays, tables, strings,
    group and dataset attributes, a summary fragment)."""
    g = _rng()
    r = cls()
    if cls is Stack:
        r.attrs[""] = {"overview": "ov", "pixel_size_nm": np.array([0.125, 0.125]), "n_images": 2}
        for name, t in (("ov", np.eye(2, 3)), ("hr", np.array([[0.2, 0.0, 30.0], [0.0, 0.2, 17.0]]))):
            r.attrs[f"images/{name}"] = {"parent": "" if name == "ov" else "ov", "accepted": True,
                                         "offset_nm": np.array([1.5, -2.0]), "scale": 0.2, "basis": "stage"}
            r.put(f"images/{name}/transform", t, "1", description="affine image px -> overview px")
            r.put(f"images/{name}/footprint", g.random((4, 2)), "1")
        r.put("phase_map", g.integers(0, 3, (16, 12)).astype(np.int32), "label")
        r.put("phase_names", np.array(["", "Ge", "Si"], object), "1")
        r.attrs["regions/3"] = {"phase": "Ge", "phase_score": 1.0, "sources": "[]"}
    elif cls is Model:
        n = 50
        r.put("positions", g.random((n, 3)) * 5, "nm")
        r.put("numbers", np.where(g.random(n) > 0.5, 14, 32).astype(np.int16), "1")
        r.put("region", g.integers(1, 4, n).astype(np.int32), "label")
        r.put("displacement", g.normal(0, 0.01, (n, 3)), "nm")
        r.put("source_pixel", g.integers(0, 40, (n, 2)).astype(float), "px")
        r.put("cell", np.diag([5.0, 5.0, 2.0]), "nm")
        r.put("pbc", np.array([False, False, True]), "1")
        r.put("cells/1", np.eye(3) * 0.5657, "nm", phase="Ge", kind="reference")
        r.put_table("regions", {"label": (np.array([1, 2], np.int32), "label"),
                                "phase": (np.array(["Ge", "Si"], object), "1"),
                                "origin_nm": (g.random((2, 3)), "nm")})
        r.attrs[""] = {"image": "hrtem", "thickness_nm": 2.0, "growth_direction": np.array([0.0, -1.0, 0.0])}
        r.summary = {"atomic_model": {"n_atoms": n}}
    else:
        # a generic layout: per-item arrays, a table, nested groups with attributes
        r.attrs[""] = {"method": "kpm", "n_moments": 64, "bounds_eV": np.array([-13.0, 45.0])}
        r.put("values", g.normal(size=(3, 20)), "1/meV", normalisation="per degree of freedom")
        r.put("grid/a/exx", g.normal(size=(6, 5)), "1")
        r.put("grid/region", g.integers(0, 4, (6, 5)), "label")
        r.attrs["grid"] = {"pixel_size_nm": np.array([0.2, 0.2])}
        r.put_table("regions", {"label": (np.array(["1", "3"], object), "label"),
                                "n_atoms": (np.array([10, 20]), "1")})
        if cls is FemGeometry:
            r.put("mesh/nodes", g.random((5, 2)), "nm", frame="model axes: x right, y up")
            r.put("mesh/triangles", np.array([[0, 1, 2], [2, 3, 4]], np.int64), "1")
            r.put("mesh/triangle_region", np.array([1, 2], np.int32), "label")
        if cls is TbMoments:
            r.put("moments", g.normal(size=(4, 64)), "1")
        r.summary = {cls.RULE: {"value": 1.5}}
    return r


def _write_in(tmp_path, r: TreeResult, name: str = "r.h5"):
    p = tmp_path / name
    with atomic_h5(p, make_provenance(type(r).RULE, {}, None)) as f:
        r.write(f)
    return p


def _assert_equal(a: TreeResult, b: TreeResult) -> None:
    assert (a.applicable, a.reason) == (b.applicable, b.reason)
    assert sorted(a.data) == sorted(b.data)
    for k in a.data:
        x, y = np.asarray(a.data[k]), np.asarray(b.data[k])
        assert x.shape == y.shape and x.dtype.kind == y.dtype.kind, k
        assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), k
        assert a.units[k] == b.units[k], k
    assert json.dumps(a.dataset_attrs, default=np.ndarray.tolist, sort_keys=True) == json.dumps(
        b.dataset_attrs, default=np.ndarray.tolist, sort_keys=True)
    norm = {k: v for k, v in b.attrs.items() if k in a.attrs}
    assert json.dumps(a.attrs, default=np.ndarray.tolist, sort_keys=True) == json.dumps(
        norm, default=np.ndarray.tolist, sort_keys=True)
    assert a.summary == b.summary


@pytest.mark.parametrize("cls", IMAGE_TREES + SAMPLE_CLASSES, ids=lambda c: c.__name__)
def test_tree_round_trip(tmp_path, cls):
    """Every result file with nested parts goes through the one tree class: write -> read -> write -> read."""
    r = {Peaks: _peaks, Phases: _phases, Gpa: _gpa, Simulation: _simulation}.get(cls, lambda: _example(cls))()
    assert isinstance(r, TreeResult)
    back = cls.read(_write_in(tmp_path, r))
    _assert_equal(r, back)
    # writing what was read gives the same content again (the stage -> reader -> writer chain is lossless)
    again = cls.read(_write_in(tmp_path, back, "again.h5"))
    _assert_equal(back, again)
    # every dataset written carries units
    with h5py.File(tmp_path / "r.h5", "r") as f:
        f.visititems(lambda n, o: None if not isinstance(o, h5py.Dataset) else
                     (_ for _ in ()).throw(AssertionError(n)) if "units" not in o.attrs else None)


def test_required_datasets_are_checked(tmp_path):
    """A fem.h5 without its mesh is an error naming the file and the rule, not a KeyError downstream."""
    r = FemGeometry()
    r.put("polygons/1/outer_0", np.zeros((3, 2)), "nm")
    with pytest.raises(UserError, match="fem_geometry"):
        FemGeometry.read(_write_in(tmp_path, r))


def test_model_atoms_round_trip_and_selective_read(tmp_path):
    """model.h5 <-> ase.Atoms: positions nm in the file, Å in memory; only= reads the named arrays only."""
    from temtwin.twin.model_io import atoms_from_arrays
    from temtwin.results.model import Model

    g = _rng()
    pos = g.random((30, 3)) * 4
    atoms = atoms_from_arrays(pos, np.full(30, 14), np.diag([4.0, 4.0, 1.0]), (False, False, True),
                              region=np.arange(30) % 3, displacement_nm=g.normal(0, 0.01, (30, 3)),
                              info={"image": "hrtem", "thickness_nm": 1.0, "applicable": True})
    p = tmp_path / "model.h5"
    with atomic_h5(p, make_provenance("atomic_model", {}, None)) as f:
        Model.from_atoms(atoms).write(f)
    back = Model.core(p).to_atoms()
    assert np.allclose(back.get_positions(), pos * 10.0, rtol=0, atol=1e-12)
    assert np.array_equal(back.numbers, atoms.numbers) and np.array_equal(back.arrays["region"], np.arange(30) % 3)
    assert np.allclose(back.cell[:], np.diag([40.0, 40.0, 10.0]))
    assert back.info["image"] == "hrtem" and back.info["rule"] == "atomic_model"
    m = Model.read(p, only=("positions",))
    assert list(m.data) == ["positions"] and m.n_atoms == 30
    with h5py.File(p, "r") as f:
        assert f["positions"].attrs["units"] == "nm"


def test_stack_accessors(tmp_path):
    st = Stack.read(_write_in(tmp_path, _example(Stack)))
    assert st.overview == "ov"
    assert set(st.images) == {"ov", "hr"}
    assert np.allclose(st.images["hr"]["transform"], [[0.2, 0.0, 30.0], [0.0, 0.2, 17.0]])
    assert st.images["hr"]["accepted"] is True
    assert st.regions["3"]["phase"] == "Ge"


def test_regions_json_errors(tmp_path):
    p = tmp_path / "regions.json"
    with pytest.raises(UserError, match="fem_geometry"):
        read_regions_json(p)
    p.write_text("{not json")
    with pytest.raises(UserError, match="regions.json"):
        read_regions_json(p)
    p.write_text(json.dumps({"regions": {"1": {"phase": "Ge"}}}))
    assert read_regions_json(p)["regions"]["1"]["phase"] == "Ge"


def test_sample_modules_are_registered_with_layouts():
    names = [c.__name__ for c in result_classes()]
    for cls in SAMPLE_CLASSES:
        assert cls.__name__ in names
        assert cls.LAYOUT and all(e.kind in ("dataset", "table", "group", "attr") for e in cls.LAYOUT)
    # sample scope after image scope, in pipeline order
    idx = [names.index(c.__name__) for c in SAMPLE_CLASSES]
    assert idx == sorted(idx)


def test_summary_json_reader(tmp_path):
    from temtwin.results.summary import read_summary_json

    p = tmp_path / "summary.json"
    assert read_summary_json(p, missing_ok=True) == {}
    with pytest.raises(UserError, match="summarize"):
        read_summary_json(p)
    p.write_text('{"sample": "s", "images": {}')
    with pytest.raises(UserError) as e:
        read_summary_json(p)
    assert "summary.json" in str(e.value) and "\n" not in str(e.value)
    p.write_text('{"sample": "s", "images": {}}')
    assert read_summary_json(p) == {"sample": "s", "images": {}}


def test_streamed_parts_and_later_annotations_go_through_the_class(tmp_path):
    """phases.h5 as phase_id writes it: the tree, then Bragg maps streamed one at a time (TreeResult.append),
    a table part (write_part) and override annotations on a region already written (update_attrs); the
    file reads back as the same tree with the streamed parts and the annotations."""
    ph = _phases()
    maps = {"bragg/1": RNG.uniform(size=(12, 10)), "bragg/1_2": RNG.uniform(size=(12, 10))}
    p = tmp_path / "phases.h5"
    with atomic_h5(p, {"rule": "phase_id"}) as f:
        ph.write(f)
        for k, a in maps.items():
            Phases.append(f, k, a, "1", description="normalised Bragg amplitude")
        part = Phases()
        part.set_attrs("bragg", **{"sigma_k_nm-1": 0.05})
        part.put_table("bragg/crystals", {"region": (np.array([1, 1]), "label"), "crystal": (np.array([1, 2]), "1")})
        part.write_part(f)
        Phases.update_attrs(f, "regions/1", source="override", automatic_phase="Ge")
        Phases.update_attrs(f, "regions/99", source="override")          # absent region: nothing written
    back = Phases.read(p)
    for k, a in maps.items():
        np.testing.assert_array_equal(back.data[k], a)
        assert back.units[k] == "1" and back.dataset_attrs[k]["description"] == "normalised Bragg amplitude"
    assert back.group_attrs("bragg")["sigma_k_nm-1"] == 0.05
    assert back.table("bragg/crystals")["crystal"].tolist() == [1, 2]
    assert back.regions[1].attrs["source"] == "override" and back.regions[1].attrs["automatic_phase"] == "Ge"
    assert back.regions[1].phase == "Si" and 99 not in back.regions
    # the rest of the tree is what was written (the streamed parts aside)
    rest = Phases.read(p, only=Phases.CALLS)          # what the downstream stages read: no Bragg map
    assert not any(k.startswith("bragg/") for k in rest.data) and rest.regions[1].spots is not None
    rest.attrs = {k: v for k, v in rest.attrs.items() if not k.startswith("bragg")}
    rest.attrs["regions/1"] = {k: v for k, v in rest.attrs["regions/1"].items()
                               if k not in ("source", "automatic_phase")}
    _assert_equal(ph, rest)


def test_one_summary_reader(tmp_path):
    """The summary fragment of any result file is read by temtwin.results.read_summary (io.h5 delegates)."""
    from temtwin.io import h5 as io_h5
    from temtwin.results import read_summary

    g = _gpa()
    g.summary = {"gpa": {"reference_label": 1, "resolution_nm": 1.2}}
    p = _write(tmp_path / "gpa.h5", g)
    assert read_summary(p) == g.summary == Gpa.read(p).summary == io_h5.read_summary(p)
    assert read_summary(_write(tmp_path / "peaks.h5", _peaks())) == {}


#: files of src/temtwin that may open an HDF5 file with h5py.File( outside temtwin/results/ and io/h5.py,
#: each with its reason; everything else reads and writes result files through temtwin.results
H5PY_ALLOWED: set[str] = set()   # none left: test-data generators live in temtwin/testing/
H5PY_ALLOWED_DIRS = ("results/", "testing/")     # the results layer; test-data generators
H5PY_ALLOWED_FILES = {"io/h5.py"}                 # atomic writes with provenance (ctx.h5), write_array


def test_result_files_are_opened_only_by_the_results_layer():
    """No module outside temtwin/results/ and temtwin/io/h5.py opens a result file with h5py.File(
    (grep over src/temtwin, explicit allow-list above)."""
    import re

    pkg = ROOT / "src" / "temtwin"
    pattern = re.compile(r"h5py\s*\.\s*File\s*\(|from\s+h5py\s+import\s+[^\n]*\bFile\b")
    offenders = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg).as_posix()
        if rel.startswith(H5PY_ALLOWED_DIRS) or rel in H5PY_ALLOWED_FILES or rel in H5PY_ALLOWED:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"src/temtwin/{rel}:{n}: {line.strip()}")
    assert not offenders, ("read/write result files through temtwin.results (or add the file, with its reason, "
                           "to H5PY_ALLOWED):\n" + "\n".join(offenders))
    # the registry's result files all have their class in the results layer (what they are read through)
    assert {s.result for s in STAGES if s.result.endswith(".h5")} <= {c.FILE for c in result_classes()}
