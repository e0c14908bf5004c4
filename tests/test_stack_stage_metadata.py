"""Stage position / magnification / scan rotation from vendor metadata (temtwin.io.stage_metadata).

Minimal DigitalMicrograph (.dm3/.dm4) and Velox (.emd) files are written by hand (the layouts of
tests/formats.py, with stage tags added); rosettasciio reads them and ingest stores the values as
root attributes of raw.h5 (and image.h5: scan_correct copies them).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from temtwin.io.image import read_image
from temtwin.io.ingest import read_micrograph, write_image_h5
from temtwin.io.stage_metadata import stage_of
from tests.formats import _DM, _DM_IMAGE_DTYPE


def write_dm_with_stage(path, data, stage_xy_um, mag, rotation_deg, version=3, px_nm=0.05):
    """A DM file like tests.formats.write_dm plus Microscope Info stage tags and a DigiScan rotation."""
    data = np.ascontiguousarray(data)
    dtype_code, _ = _DM_IMAGE_DTYPE[data.dtype]
    rows, cols = data.shape
    dm = _DM(version)
    dims = [("", [("Origin", 0.0), ("Scale", np.float32(px_nm)), ("Units", "nm")]),
            ("", [("Origin", 0.0), ("Scale", np.float32(px_nm)), ("Units", "nm")])]
    image = [
        ("ImageData", [
            ("Calibrations", [("Brightness", [("Origin", 0.0), ("Scale", 1.0), ("Units", "Counts")]),
                              ("Dimension", dims), ("DisplayCalibratedUnits", True)]),
            ("Data", data), ("DataType", int(dtype_code)),
            ("Dimensions", [("", int(cols)), ("", int(rows))]), ("PixelDepth", int(data.dtype.itemsize))]),
        ("ImageTags", [
            ("DigiScan", [("Rotation", float(rotation_deg))]),
            ("Microscope Info", [("Voltage", 300000.0), ("Imaging Mode", "SCANNING"),
                                 ("Illumination Mode", "STEM"), ("Indicated Magnification", float(mag)),
                                 ("Stage Position", [("Stage X", float(stage_xy_um[0])),
                                                     ("Stage Y", float(stage_xy_um[1])),
                                                     ("Stage Z", 1.5), ("Stage Alpha", 0.2)])])]),
        ("Name", "stage test"),
    ]
    root = dm.group([("ImageList", [("", image)])])
    header = struct.pack(">I", version) + dm.n(len(root)) + struct.pack(">I", 1)
    Path(path).write_bytes(header + root + b"\x00" * 8)
    return Path(path)


def write_velox_with_stage(path, data, stage_xy_m, mag, rotation_rad, px_m=5e-11):
    """A Velox .emd like tests.formats.write_velox_emd plus Stage.Position and Scan.ScanRotation."""
    md = {
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
        "BinaryResult": {"PixelSize": {"width": str(px_m), "height": str(px_m)}, "PixelUnitX": "m",
                         "PixelUnitY": "m", "Detector": "HAADF",
                         "ImageSize": {"width": str(data.shape[1]), "height": str(data.shape[0])}},
        "Core": {"MetadataDefinitionVersion": "7.9", "MetadataSchemaVersion": "v1/2013/07"},
        "Instrument": {"InstrumentModel": "Test", "InstrumentId": "0"},
        "Optics": {"AccelerationVoltage": "300000", "NominalMagnification": str(mag)},
        "Detectors": {"Detector-0": {"DetectorName": "HAADF", "DetectorType": "ScanningDetector"}},
        "Scan": {"DwellTime": "1e-6", "ScanRotation": str(rotation_rad)},
        "Stage": {"Position": {"x": str(stage_xy_m[0]), "y": str(stage_xy_m[1]), "z": "0"},
                  "AlphaTilt": "0", "BetaTilt": "0"},
        "General": {"Title": "HAADF"},
    }
    code = np.frombuffer(json.dumps(md).encode(), np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([b'{"format": "Velox", "version": "2"}']))
        g = f.create_group("Data/Image/0123456789abcdef0123456789abcdef")
        g.create_dataset("Data", data=np.asarray(data)[:, :, None])
        meta = np.zeros((len(code) + 16, 1), np.uint8)
        meta[: len(code), 0] = code
        g.create_dataset("Metadata", data=meta)
    return Path(path)


def _img(seed=0):
    return np.random.default_rng(seed).integers(100, 1000, (64, 64)).astype(np.uint16)


@pytest.mark.parametrize("version", [3, 4])
def test_dm_stage_position(tmp_path, version):
    p = write_dm_with_stage(tmp_path / f"a.dm{version}", _img(), (12.5, -3.25), 4.0e6, 7.5, version)
    m = read_micrograph(p)
    assert m.meta["stage_x_um"] == pytest.approx(12.5)          # DM stores µm
    assert m.meta["stage_y_um"] == pytest.approx(-3.25)
    assert m.meta["scan_rotation_deg"] == pytest.approx(7.5)
    assert m.meta["magnification"] == pytest.approx(4.0e6)
    assert m.meta["stage_source"] == "file metadata (DigitalMicrograph)"


def test_velox_stage_position_and_h5_attrs(tmp_path):
    p = write_velox_with_stage(tmp_path / "b.emd", _img(1), (2.5e-6, 1.0e-7), 1.2e6, math.radians(-30.0))
    m = read_micrograph(p)
    assert m.meta["stage_x_um"] == pytest.approx(2.5)           # Velox stores m
    assert m.meta["stage_y_um"] == pytest.approx(0.1)
    assert m.meta["scan_rotation_deg"] == pytest.approx(-30.0)
    assert m.meta["stage_source"] == "file metadata (Velox)"
    with h5py.File(tmp_path / "raw.h5", "w") as f:               # round trip through the h5 attrs
        write_image_h5(f, m)
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        assert f.attrs["stage_x_um"] == pytest.approx(2.5)
    back = read_image(tmp_path / "raw.h5")
    assert stage_of(back.meta) == pytest.approx((2.5, 0.1, -30.0))


def test_sample_yaml_overrides_and_absent(tmp_path):
    p = write_velox_with_stage(tmp_path / "c.emd", _img(2), (2.5e-6, 1.0e-7), 1.2e6, 0.0)
    m = read_micrograph(p, settings={"images": {"c": {"stage_position_um": [1.0, 2.0], "rotation_deg": 3.0}}})
    assert stage_of(m.meta) == pytest.approx((1.0, 2.0, 3.0))
    assert m.meta["stage_source"] == "sample.yaml"
    from tests.formats import write_dm

    m2 = read_micrograph(write_dm(tmp_path / "d.dm3", _img(3)))     # no stage tags: unknown, not zero
    assert stage_of(m2.meta) is None and m2.meta["stage_source"] == ""
