"""Stage position / magnification / STEM rotation of FEI TIA files (.ser + companion .emi).

The .ser is the minimal series of tests/formats.py (written per the TIA format: header, offset arrays,
2D elements with calibration, time tags); the .emi is hand-made: TIA keeps the experimental
description (stage, magnification, mode, ...) as an ``<ObjectInfo>`` XML chunk inside the binary
.emi, one chunk per ``<name>_<n>.ser``.  rosettasciio's TIA reader parses it; ingest reads the .ser
and finds the .emi beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from temtwin.io.ingest import read_micrograph
from temtwin.io.stage_metadata import stage_from_signal, stage_of, tia_companion_metadata
from tests.formats import write_ser


def _data(label: str, value, unit: str) -> str:
    return f"<Data><Label>{label}</Label><Value>{value}</Value><Unit>{unit}</Unit></Data>"


def write_emi(path, stage_xy_um, mag, rotation_deg=None, n_objects: int = 1):
    """A minimal TIA .emi: binary filler around compact ``<ObjectInfo>`` XML chunks (no whitespace
    between tags: rosettasciio treats element text as a leaf)."""
    items = [_data("High tension", 300.0, "kV"), _data("Microscope", "Titan", ""),
             _data("Mode", "STEM nP SA Zoom Image", ""), _data("Magnification", mag, "x"),
             _data("Stage X", stage_xy_um[0], "um"), _data("Stage Y", stage_xy_um[1], "um"),
             _data("Stage Z", 3.0, "um"), _data("Stage A", 0.5, "deg"), _data("Stage B", 0.0, "deg")]
    if rotation_deg is not None:
        items.append(_data("Stem Rotation", rotation_deg, "deg"))
        items.append(_data("Stem Rotation Correction", 1.0, "deg"))
    chunk = ("<ObjectInfo><DatasetType>Series</DatasetType><AcquireDate>Thu Nov 30 10:00:00 2023</AcquireDate>"
             "<ExperimentalDescription><Root>" + "".join(items) + "</Root></ExperimentalDescription>"
             "<AcquireInfo><DwellTimePath>1e-6</DwellTimePath></AcquireInfo></ObjectInfo>")
    blob = b"\x00\x01TIA-emi\x00" * 8 + b"".join(chunk.encode() + b"\x00\x02" * 5 for _ in range(n_objects))
    path.write_bytes(blob)
    return path


def _img(seed=0):
    return np.random.default_rng(seed).integers(100, 1000, (48, 64)).astype(np.uint16)


def test_ser_stage_position_magnification_and_rotation(tmp_path):
    ser = write_ser(tmp_path / "scan_1.ser", _img(), pixel_size_m=(5e-11, 5e-11))
    write_emi(tmp_path / "scan.emi", (-41.25, 7.5), 2.55e6, rotation_deg=-12.0)
    m = read_micrograph(ser)
    assert m.data.shape == (48, 64)
    assert m.pixel_size_nm == pytest.approx((0.05, 0.05))
    assert m.meta["stage_x_um"] == pytest.approx(-41.25)          # TIA stores µm
    assert m.meta["stage_y_um"] == pytest.approx(7.5)
    assert m.meta["scan_rotation_deg"] == pytest.approx(-12.0)    # not the rotation *correction*
    assert m.meta["stage_source"] == "file metadata (TIA)"
    assert float(m.meta.get("magnification", math.nan)) == pytest.approx(2.55e6)
    assert stage_of(m.meta) == pytest.approx((-41.25, 7.5, -12.0))


def test_ser_without_rotation_or_without_emi(tmp_path):
    ser = write_ser(tmp_path / "b_1.ser", _img(1))
    write_emi(tmp_path / "b.emi", (1.0, 2.0), 5.0e5)
    m = read_micrograph(ser)
    assert stage_of(m.meta) == pytest.approx((1.0, 2.0, 0.0))    # position known, rotation taken as 0
    # a .ser alone (no companion .emi) has no experimental description: the stage is unknown, not 0
    lone = write_ser(tmp_path / "c_1.ser", _img(2))
    assert tia_companion_metadata(lone) == {}
    m2 = read_micrograph(lone)
    assert stage_of(m2.meta) is None and m2.meta["stage_source"] == ""


def test_second_ser_of_an_emi_gets_its_own_object(tmp_path):
    write_ser(tmp_path / "d_1.ser", _img(3))
    write_ser(tmp_path / "d_2.ser", _img(4))
    write_emi(tmp_path / "d.emi", (10.0, 20.0), 1e6, rotation_deg=5.0, n_objects=2)
    om = tia_companion_metadata(tmp_path / "d_2.ser")
    v = stage_from_signal({"original_metadata": om}, ".ser")
    assert (v["stage_x_um"], v["stage_y_um"], v["scan_rotation_deg"]) == pytest.approx((10.0, 20.0, 5.0))
