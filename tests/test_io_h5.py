"""HDF5 result conventions: atomic writes, units everywhere, provenance, byte-identical reruns."""

import hashlib
import json

import h5py
import numpy as np
import pytest

from temtwin.io.h5 import (atomic_h5, make_provenance, missing_units, read_summary, read_table,
                           set_summary, write_array, write_table)


def _digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.h5"
    with atomic_h5(p, {"rule": "t"}) as f:
        write_array(f, "a", np.arange(3), "nm")
    before = _digest(p)
    with pytest.raises(RuntimeError):
        with atomic_h5(p, {"rule": "t"}) as f:
            write_array(f, "a", np.arange(10), "nm")
            raise RuntimeError("killed")
    assert _digest(p) == before
    assert [x.name for x in tmp_path.iterdir()] == ["out.h5"]  # no temporary left behind
    with h5py.File(p) as f:
        assert f["a"][()].tolist() == [0, 1, 2]


def test_units_tables_summary_and_determinism(tmp_path):
    def write(p):
        with atomic_h5(p, make_provenance("test", {"seed": 1}, [])) as f:
            write_array(f, "img", np.ones((64, 64), np.float32), "counts")
            write_table(f, "regions", {"label": ([1, 2], "label"), "area_nm2": ([1.5, 2.5], "nm^2")})
            set_summary(f, {"regions": {"1": {"area_nm2": np.float32(1.5)}}})
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write(a)
    write(b)
    assert _digest(a) == _digest(b)
    assert missing_units(a) == []
    assert read_summary(a) == {"regions": {"1": {"area_nm2": 1.5}}}
    with h5py.File(a) as f:
        t = read_table(f["regions"])
        assert f.attrs["rule"] == "test" and json.loads(f.attrs["input_digests"]) == {}
    assert t["area_nm2"].tolist() == [1.5, 2.5]


def test_provenance_records_input_digests(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("hello")
    prov = make_provenance("r", {"a": 1}, {"x": str(inp), "y": [str(inp)]})
    assert json.loads(prov["input_digests"]) == {str(inp): hashlib.sha256(b"hello").hexdigest()}
    assert prov["config_digest"] != make_provenance("r", {"a": 2}, [])["config_digest"]
