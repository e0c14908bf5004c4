"""Minimal writers of vendor formats, for ingest tests (no vendor software needed).

* Gatan DigitalMicrograph ``.dm3`` / ``.dm4``: the tag-file layout (big-endian header and tag
  descriptors, little-endian data), one image in ``ImageList`` with ``ImageData`` calibrations.
* FEI/Thermo Fisher TIA ``.ser``: a 2D-image series (data type 0x4122) with per-element calibration.
* Thermo Fisher Velox ``.emd``: HDF5 with ``Data/Image/<uuid>/{Data, Metadata}``, the metadata
  being a JSON document stored as uint8 codes.

Each writer produces the smallest file a reader of the format needs; rosettasciio reads them in the
tests, with the calibration and the pixel values we wrote.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------------- DM3/4
_DM_SIMPLE = {"h": 2, "i": 3, "H": 4, "I": 5, "f": 6, "d": 7, "?": 8, "b": 10, "q": 11, "Q": 12}
_DM_IMAGE_DTYPE = {np.dtype("int16"): (1, 2), np.dtype("float32"): (2, 6), np.dtype("uint8"): (6, 10),
                   np.dtype("int32"): (7, 3), np.dtype("uint16"): (10, 4), np.dtype("uint32"): (11, 5),
                   np.dtype("float64"): (12, 7)}


class _DM:
    def __init__(self, version: int):
        self.v = version
        self.L = ">Q" if version == 4 else ">I"   # size of counts/info entries

    def n(self, x: int) -> bytes:
        return struct.pack(self.L, x)

    def group(self, items: list[tuple[str, object]]) -> bytes:
        body = b"".join(self.tag(name, val) for name, val in items)
        return b"\x00\x01" + self.n(len(items)) + body

    def tag(self, name: str, value) -> bytes:
        nm = name.encode("latin-1")
        if isinstance(value, list):  # a tag group (list of (name, value))
            payload = self.group(value)
            tid = 20
        else:
            payload = b"%%%%" + self.data(value)
            tid = 21
        head = struct.pack(">bH", tid, len(nm)) + nm
        if self.v == 4:
            head += struct.pack(">Q", len(payload))
        return head + payload

    def data(self, value) -> bytes:
        if isinstance(value, str):              # strings: arrays of uint16
            codes = [ord(c) for c in value]
            info = [20, 4, len(codes)]
            return self.n(len(info)) + b"".join(self.n(i) for i in info) + struct.pack(f"<{len(codes)}H", *codes)
        if isinstance(value, np.ndarray):       # a numeric array (image data)
            _, enc = _DM_IMAGE_DTYPE[value.dtype]
            info = [20, enc, value.size]
            raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
            return self.n(len(info)) + b"".join(self.n(i) for i in info) + raw
        if isinstance(value, bool):
            fmt = "?"
        elif isinstance(value, int):
            fmt = "i"
        else:
            fmt = "f" if isinstance(value, np.float32) else "d"
        return self.n(1) + self.n(_DM_SIMPLE[fmt]) + struct.pack("<" + fmt, value)


def write_dm(path, data: np.ndarray, scale_xy=(0.02, 0.02), units="nm", version: int = 3,
             voltage_V: float = 200000.0, mode: str = "TEM", title: str = "test image") -> Path:
    """Write a 2D image (rows, cols) as a DM3 (version 3) or DM4 (version 4) file."""
    data = np.ascontiguousarray(data)
    dtype_code, _ = _DM_IMAGE_DTYPE[data.dtype]
    rows, cols = data.shape
    dm = _DM(version)
    dims = [("", [("Origin", 0.0), ("Scale", np.float32(scale_xy[0])), ("Units", units)]),
            ("", [("Origin", 0.0), ("Scale", np.float32(scale_xy[1])), ("Units", units)])]
    image = [
        ("ImageData", [
            ("Calibrations", [
                ("Brightness", [("Origin", 0.0), ("Scale", 1.0), ("Units", "Counts")]),
                ("Dimension", dims),
                ("DisplayCalibratedUnits", True)]),
            ("Data", data),
            ("DataType", int(dtype_code)),
            ("Dimensions", [("", int(cols)), ("", int(rows))]),
            ("PixelDepth", int(data.dtype.itemsize))]),
        ("ImageTags", [("Microscope Info", [("Voltage", float(voltage_V)), ("Imaging Mode", mode),
                                            ("Illumination Mode", "STEM" if mode == "STEM" else "TEM")])]),
        ("Name", title),
    ]
    root = dm.group([("ImageList", [("", image)])])
    header = struct.pack(">I", version) + dm.n(len(root)) + struct.pack(">I", 1)
    Path(path).write_bytes(header + root + b"\x00" * 8)
    return Path(path)


# ------------------------------------------------------------------------------------------- SER
def write_ser(path, frames: np.ndarray, pixel_size_m=(2e-11, 2e-11)) -> Path:
    """Write a TIA .ser series of 2D images (frames: (n, rows, cols) or (rows, cols))."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    n, rows, cols = frames.shape
    code = {np.dtype("uint16"): 2, np.dtype("float32"): 7, np.dtype("int32"): 6}[frames.dtype]
    desc, unit = b"Number", b""
    dim = struct.pack("<IddII", n, 0.0, 1.0, 0, len(desc)) + desc + struct.pack("<I", len(unit)) + unit
    header_len = 30 + len(dim)
    offsets_at = header_len
    data_start = offsets_at + 8 * n
    elem_hdr = struct.calcsize("<ddIddIHII")
    elem = elem_hdr + rows * cols * frames.dtype.itemsize
    tag_start = data_start + n * elem
    tag_size = struct.calcsize("<HHI")
    head = struct.pack("<HHHIIIIII", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, n, n, offsets_at, 1)
    out = bytearray(head + dim)
    out += struct.pack(f"<{n}I", *[data_start + i * elem for i in range(n)])
    out += struct.pack(f"<{n}I", *[tag_start + i * tag_size for i in range(n)])
    for fr in frames:
        out += struct.pack("<ddIddIHII", 0.0, pixel_size_m[0], 0, 0.0, pixel_size_m[1], 0, code, cols, rows)
        # TIA stores image rows bottom-up
        out += np.ascontiguousarray(fr[::-1]).astype(fr.dtype.newbyteorder("<")).tobytes()
    for i in range(n):
        out += struct.pack("<HHI", 0x4152, 0, 1700000000 + i)
    Path(path).write_bytes(bytes(out))
    return Path(path)


# ------------------------------------------------------------------------------------------- Velox
def write_velox_emd(path, data: np.ndarray, pixel_size_m=(2e-11, 2e-11), detector: str = "HAADF",
                    voltage_V: float = 300000.0) -> Path:
    """Write a Velox-style .emd holding one STEM image (rows, cols)."""
    import h5py

    uuid = "0123456789abcdef0123456789abcdef"
    md = {
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
        "BinaryResult": {"PixelSize": {"width": str(pixel_size_m[0]), "height": str(pixel_size_m[1])},
                         "PixelUnitX": "m", "PixelUnitY": "m", "Detector": detector,
                         "ImageSize": {"width": str(data.shape[1]), "height": str(data.shape[0])}},
        "Core": {"MetadataDefinitionVersion": "7.9", "MetadataSchemaVersion": "v1/2013/07"},
        "Instrument": {"InstrumentModel": "Test", "InstrumentId": "0"},
        "Optics": {"AccelerationVoltage": str(voltage_V), "NominalMagnification": "1000000"},
        "Detectors": {"Detector-0": {"DetectorName": detector, "DetectorType": "ScanningDetector"}},
        "Scan": {"DwellTime": "1e-6"},
        "General": {"Title": detector},
    }
    code = np.frombuffer(json.dumps(md).encode(), np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([b'{"format": "Velox", "version": "2"}']))
        g = f.create_group(f"Data/Image/{uuid}")
        g.create_dataset("Data", data=np.asarray(data)[:, :, None])   # Velox stores (rows, cols, frames)
        meta = np.zeros((len(code) + 16, 1), np.uint8)
        meta[: len(code), 0] = code
        g.create_dataset("Metadata", data=meta)
    return Path(path)
