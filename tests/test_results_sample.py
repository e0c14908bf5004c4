"""Round trips of the sample-scope result modules (temtwin.results: stack, fem, fem_relax, spin_orbit, model,
keating, phonons, tb_moments, tb): write -> read gives equal content; a not-applicable file reads back as
applicable=False with its reason; a missing or corrupt file gives one UserError line naming it."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, make_provenance
from temtwin.results import result_classes
from temtwin.results._tree import TreeResult
from temtwin.results.fem import FemGeometry, read_regions_json
from temtwin.results.fem_relax import FemRelax
from temtwin.results.keating import Keating
from temtwin.results.model import Model
from temtwin.results.phonons import Phonons
from temtwin.results.spin_orbit import SpinOrbit
from temtwin.results.stack import Stack
from temtwin.results.tb import Tb
from temtwin.results.tb_moments import TbMoments

SAMPLE_CLASSES = (Stack, FemGeometry, FemRelax, SpinOrbit, Model, Keating, Phonons, TbMoments, Tb)


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
        r.summary = {"model": {"n_atoms": n}}
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


def _write(tmp_path, r: TreeResult, name: str = "r.h5"):
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
        assert np.array_equal(x, y), k
        assert a.units[k] == b.units[k], k
    assert json.dumps(a.dataset_attrs, default=np.ndarray.tolist, sort_keys=True) == json.dumps(
        b.dataset_attrs, default=np.ndarray.tolist, sort_keys=True)
    norm = {k: v for k, v in b.attrs.items() if k in a.attrs}
    assert json.dumps(a.attrs, default=np.ndarray.tolist, sort_keys=True) == json.dumps(
        norm, default=np.ndarray.tolist, sort_keys=True)
    assert a.summary == b.summary


@pytest.mark.parametrize("cls", SAMPLE_CLASSES, ids=lambda c: c.__name__)
def test_round_trip(tmp_path, cls):
    r = _example(cls)
    back = cls.read(_write(tmp_path, r))
    _assert_equal(r, back)
    # writing what was read gives the same content again (the stage -> reader -> writer chain is lossless)
    again = cls.read(_write(tmp_path, back, "again.h5"))
    _assert_equal(back, again)
    # every dataset written carries units
    with h5py.File(tmp_path / "r.h5", "r") as f:
        f.visititems(lambda n, o: None if not isinstance(o, h5py.Dataset) else
                     (_ for _ in ()).throw(AssertionError(n)) if "units" not in o.attrs else None)


@pytest.mark.parametrize("cls", SAMPLE_CLASSES, ids=lambda c: c.__name__)
def test_not_applicable_reads_back_with_reason(tmp_path, cls):
    p = _write(tmp_path, cls.not_applicable("no region has an identified phase"))
    back = cls.read(p)
    assert back.applicable is False
    assert back.reason == "no region has an identified phase"
    assert back.data == {}


@pytest.mark.parametrize("cls", SAMPLE_CLASSES, ids=lambda c: c.__name__)
def test_missing_and_corrupt_files_give_one_error_line(tmp_path, cls):
    missing = tmp_path / "absent.h5"
    with pytest.raises(UserError) as e:
        cls.read(missing)
    msg = str(e.value)
    assert "absent.h5" in msg and cls.RULE in msg and "\n" not in msg
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not an HDF5 file")
    with pytest.raises(UserError) as e:
        cls.read(bad)
    msg = str(e.value)
    assert "corrupt.h5" in msg and cls.RULE in msg and "\n" not in msg


def test_required_datasets_are_checked(tmp_path):
    """A fem.h5 without its mesh is an error naming the file and the rule, not a KeyError downstream."""
    r = FemGeometry()
    r.put("polygons/1/outer_0", np.zeros((3, 2)), "nm")
    with pytest.raises(UserError, match="fem_geometry"):
        FemGeometry.read(_write(tmp_path, r))


def test_model_atoms_round_trip_and_selective_read(tmp_path):
    """model.h5 <-> ase.Atoms: positions nm in the file, Å in memory; only= reads the named arrays only."""
    from temtwin.twin.model_io import atoms_from_arrays, read_model, write_model_h5

    g = _rng()
    pos = g.random((30, 3)) * 4
    atoms = atoms_from_arrays(pos, np.full(30, 14), np.diag([4.0, 4.0, 1.0]), (False, False, True),
                              region=np.arange(30) % 3, displacement_nm=g.normal(0, 0.01, (30, 3)),
                              info={"image": "hrtem", "thickness_nm": 1.0, "applicable": True})
    p = tmp_path / "model.h5"
    with atomic_h5(p, make_provenance("atomic_model", {}, None)) as f:
        write_model_h5(f, atoms)
    back = read_model(p)
    assert np.allclose(back.get_positions(), pos * 10.0, rtol=0, atol=1e-12)
    assert np.array_equal(back.numbers, atoms.numbers) and np.array_equal(back.arrays["region"], np.arange(30) % 3)
    assert np.allclose(back.cell[:], np.diag([40.0, 40.0, 10.0]))
    assert back.info["image"] == "hrtem" and back.info["rule"] == "atomic_model"
    m = Model.read(p, only=("positions",))
    assert list(m.data) == ["positions"] and m.n_atoms == 30
    with h5py.File(p, "r") as f:
        assert f["positions"].attrs["units"] == "nm"


def test_stack_accessors(tmp_path):
    st = Stack.read(_write(tmp_path, _example(Stack)))
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
