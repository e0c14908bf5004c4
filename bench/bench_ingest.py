"""Ingest: read time per format and calibration accuracy on the validation images."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import best_time, md_table, validation_root, write_section  # noqa: E402

from temtwin.io.ingest import read_micrograph  # noqa: E402


def main() -> None:
    import formats  # tests/formats.py: writers of dm3/dm4/ser/Velox
    from conftest import write_hspy, write_tif

    rows = []
    img = (np.random.default_rng(0).random((2048, 2048)) * 4000).astype(np.uint16)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = {
            "dm3": formats.write_dm(d / "a.dm3", img, version=3),
            "dm4": formats.write_dm(d / "a.dm4", img, version=4),
            "ser": formats.write_ser(d / "a_1.ser", img, (2e-11, 2e-11)),
            "emd (Velox)": formats.write_velox_emd(d / "a.emd", img),
            "hspy": write_hspy(d / "a.hspy", img),
            "tif": write_tif(d / "a.tif", img),
        }
        for fmt, p in files.items():
            t = best_time(lambda p=p: read_micrograph(p), repeat=3)
            m = read_micrograph(p)
            rows.append([fmt, "2048 x 2048", f"{t * 1000:.0f} ms", bool(np.array_equal(m.data, img))])
    body = "Read time of a 2048² uint16 image per format (best of 3), values preserved:\n\n"
    body += md_table(["format", "size", "read time", "values identical"], rows)
    v = validation_root()
    if v is None:
        body += "\n\nValidation set not found: calibration check skipped.\n"
    else:
        import json
        vrows = []
        for f in sorted(list(v.glob("*/*/*.hspy")) + list(v.glob("*/*/*.tif"))):
            truth = json.loads((f.parent / "truth.json").read_text())
            want = truth.get("images", {}).get(f.name, {}).get("pixel_size_nm")
            if want is None:
                want = truth.get("pixel_size_nm")
            m = read_micrograph(f)
            vrows.append([f"{f.parent.name}/{f.name}", f"{m.pixel_size_nm[0]:.5g}", want,
                          "yes" if want is None or abs(m.pixel_size_nm[0] - float(want)) < 1e-9 else "NO"])
        body += "\n\nPixel size read from the validation images vs truth.json:\n\n"
        body += md_table(["image", "read (nm)", "truth (nm)", "match"], vrows)
    write_section("ingest", "Ingest", body)


if __name__ == "__main__":
    main()
