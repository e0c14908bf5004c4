"""Ingest: every format is read with its calibration; bad input gives one clear line."""

import numpy as np
import pytest
from conftest import hspy_signal, write_hspy, write_tif

from temtwin.errors import UserError
from temtwin.io.ingest import align_frames, read_micrograph


def test_hspy_values_and_calibration(tmp_path, lattice_image):
    p = write_hspy(tmp_path / "a.hspy", lattice_image, scale=(0.03, 0.02))   # (y, x) scales
    m = read_micrograph(p)
    assert m.pixel_size_nm == pytest.approx((0.02, 0.03))                    # (x, y)
    assert np.array_equal(m.data, lattice_image.astype(np.float32))
    assert m.meta["mode"] == "TEM" and m.meta["voltage_kV"] == 200.0 and m.meta["units"] == "counts"
    assert len(m.meta["source_sha256"]) == 64


@pytest.mark.parametrize("units,factor", [("Å", 0.1), ("nm", 1.0), ("µm", 1000.0), ("pm", 0.001)])
def test_tif_units_converted(tmp_path, lattice_image, units, factor):
    p = write_tif(tmp_path / "b.tif", lattice_image, scale=(0.5, 0.5), units=(units, units))
    m = read_micrograph(p)
    assert m.pixel_size_nm[0] == pytest.approx(0.5 * factor, rel=1e-5)
    assert np.array_equal(m.data, lattice_image.astype(np.float32))


def test_ncem_emd(tmp_path, lattice_image):
    from rsciio.emd import file_writer

    p = tmp_path / "c.emd"
    file_writer(str(p), hspy_signal(lattice_image.astype(np.float32), scale=(0.015, 0.015)))
    m = read_micrograph(p)
    assert m.pixel_size_nm == pytest.approx((0.015, 0.015))
    assert np.allclose(m.data, lattice_image)


def test_png_needs_pixel_size(tmp_path, lattice_image):
    from PIL import Image

    p = tmp_path / "s" / "d.png"
    p.parent.mkdir()
    Image.fromarray((lattice_image // 256).astype(np.uint8)).save(p)
    with pytest.raises(UserError) as e:
        read_micrograph(p)
    msg = str(e.value)
    assert str(p) in msg and "pixel_size_nm" in msg and "sample.yaml" in msg and "\n" not in msg
    m = read_micrograph(p, settings={"images": {"d": {"pixel_size_nm": 0.05}}})
    assert m.pixel_size_nm == (0.05, 0.05)


def test_uncalibrated_tif_refused(tmp_path, lattice_image):
    p = write_tif(tmp_path / "e.tif", lattice_image, scale=(1.0, 1.0), units=("<undefined>", "<undefined>"))
    with pytest.raises(UserError, match="no spatial calibration"):
        read_micrograph(p)


def test_corrupt_file(tmp_path, lattice_image):
    good = write_hspy(tmp_path / "f.hspy", lattice_image)
    bad = tmp_path / "g.hspy"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(UserError) as e:
        read_micrograph(bad)
    assert str(bad) in str(e.value) and "corrupt" in str(e.value)
    junk = tmp_path / "h.dm3"
    junk.write_bytes(b"\x00\x00\x00\x03garbage" * 10)
    with pytest.raises(UserError, match="corrupt"):
        read_micrograph(junk)


def test_spectrum_refused(tmp_path):
    from rsciio.hspy import file_writer

    sig = hspy_signal(np.ones((4, 5, 100), np.float32), scale=(1.0, 0.1), units=("nm", "eV"), nav=2)
    sig["axes"][1]["navigate"] = True
    sig["metadata"]["Signal"]["signal_type"] = "EELS"
    p = tmp_path / "si.hspy"
    file_writer(str(p), sig)
    with pytest.raises(UserError, match="no 2D image"):
        read_micrograph(p)


def test_frame_series_aligned(tmp_path, lattice_image):
    rng = np.random.default_rng(0)
    base = lattice_image.astype(np.float64)
    shifts = [(0, 0), (1.5, -0.7), (-2.25, 1.2), (0.4, 2.6)]
    ky = np.fft.fftfreq(base.shape[0])[:, None]
    kx = np.fft.fftfreq(base.shape[1])[None, :]
    frames = [np.fft.ifft2(np.fft.fft2(base) * np.exp(-2j * np.pi * (ky * dy + kx * dx))).real
              for dy, dx in shifts]
    frames = np.array(frames) + rng.normal(0, 2, (4,) + base.shape)
    mean, found = align_frames(frames)
    assert np.allclose(-found[1:], np.array(shifts[1:]), atol=0.1)
    inner = (slice(8, -8), slice(8, -8))
    assert np.corrcoef(mean[inner].ravel(), base[inner].ravel())[0, 1] > 0.99
    p = write_hspy(tmp_path / "series.hspy", frames.astype(np.float32), nav=1)
    m = read_micrograph(p)
    assert m.meta["n_frames"] == 4 and m.pixel_size_nm == pytest.approx((0.02, 0.02))


@pytest.mark.parametrize("version", [3, 4])
def test_digitalmicrograph(tmp_path, lattice_image, version):
    from formats import write_dm

    p = write_dm(tmp_path / f"a.dm{version}", lattice_image, scale_xy=(0.5, 0.25), units="Å",
                 version=version, mode="STEM", voltage_V=300000.0)
    m = read_micrograph(p)
    assert m.pixel_size_nm == pytest.approx((0.05, 0.025), rel=1e-6)
    assert np.array_equal(m.data, lattice_image.astype(np.float32))
    assert m.meta["mode"] == "STEM" and m.meta["voltage_kV"] == pytest.approx(300.0)


def test_tia_ser_series(tmp_path, lattice_image):
    from formats import write_ser

    frames = np.stack([lattice_image, lattice_image])
    p = write_ser(tmp_path / "b_1.ser", frames, pixel_size_m=(2.5e-11, 2.5e-11))
    m = read_micrograph(p)
    assert m.pixel_size_nm == pytest.approx((0.025, 0.025))
    assert m.meta["n_frames"] == 2
    assert np.allclose(m.data, lattice_image, atol=1e-3)


def test_velox_emd(tmp_path, lattice_image):
    from formats import write_velox_emd

    p = write_velox_emd(tmp_path / "c.emd", lattice_image.astype(np.float32), pixel_size_m=(1.5e-11, 1.5e-11))
    m = read_micrograph(p)
    assert m.pixel_size_nm == pytest.approx((0.015, 0.015))
    assert np.array_equal(m.data, lattice_image.astype(np.float32))
    assert m.meta["voltage_kV"] == pytest.approx(300.0)
