"""Rule `fft_peaks` end to end on synthetic scenes with known structure, and the amorphous decision."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.io.h5 import atomic_h5, missing_units, read_summary, read_table, write_array
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.peaks import analyse_image, analyse_region
from temtwin.testing.fft_spectra import render_amorphous, render_region
from temtwin.stages.fft_peaks import run
from temtwin.testing.synth import layered_scene, lowmag_device
from temtwin.workflow.context import StageContext
from temtwin.workflow.seeds import rng as seeded

FAST = {"detectors": ["gaussian", "profile"]}


def _inputs(tmp_path, image, labels, px):
    m = Micrograph(np.asarray(image, np.float32), px, name="img", sample="s",
                   meta={"units": "counts", "source_file": "img.tif", "source_sha256": "0"})
    with atomic_h5(tmp_path / "image.h5") as f:
        write_image_h5(f, m)
    with atomic_h5(tmp_path / "segmentation.h5") as f:
        write_array(f, "labels", np.asarray(labels, np.int32), "label")
    return tmp_path / "image.h5", tmp_path / "segmentation.h5"


def _ctx(tmp_path, img, seg, config=None):
    return StageContext.create("fft_peaks", {"image": str(img), "segmentation": str(seg)},
                               {"h5": str(tmp_path / "peaks.h5"), "figures": str(tmp_path / "figs")},
                               {"fft_peaks": {**FAST, **(config or {})}})


@pytest.fixture(scope="module")
def scene():
    """Si [110] heterostructure under 2.4 nm of vacuum (label 0 = vacuum -> region 4 here)."""
    s = layered_scene(layers=[dict(thickness_nm=3.0), dict(thickness_nm=2.4), dict(thickness_nm=2.4)],
                      shape=(400, 400), pixel_size_nm=(0.02, 0.02), mode="hrtem", dose=300, seed=4,
                      vacuum_top_nm=0.5)
    labels = s.labels.copy()
    labels[labels == 0] = 4
    return s, labels


def test_peaks_h5_layout_summary_and_figures(tmp_path, scene):
    s, labels = scene
    img, seg = _inputs(tmp_path, s.image, labels, s.pixel_size_nm)
    run(_ctx(tmp_path, img, seg))
    out = tmp_path / "peaks.h5"
    assert missing_units(out) == []
    M = np.asarray(s.truth["orientation_matrix"])
    hkl = np.stack(np.meshgrid(*[np.arange(-16, 17)] * 3, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ np.array([1, 1, 0])) == 0]
    G = ((hkl / 0.5431) @ M.T)[:, :2]  # image-frame reciprocal lattice of the zone, nm^-1
    summ = read_summary(out)
    assert set(summ["regions"]) == {"1", "2", "3", "4"}
    with h5py.File(out) as f:
        for lab in ("1", "2", "3"):
            g = f["regions"][lab]
            assert bool(g.attrs["crystalline"]) and summ["regions"][lab]["crystalline"]
            t = read_table(g["peaks"])
            assert summ["regions"][lab]["n_peaks"] == len(t["kx"]) >= 4
            assert {"kx", "ky", "g", "d", "angle_deg", "intensity", "snr", "detectors"} <= set(t)
            assert np.allclose(t["g"], np.hypot(t["kx"], t["ky"])) and np.allclose(t["d"], 1 / t["g"])
            assert np.allclose(np.mod(np.degrees(np.arctan2(t["ky"], t["kx"])), 360), t["angle_deg"])
            # every reflection lies on the Si [110] reciprocal lattice of the truth orientation, within a pixel
            dist = np.hypot(t["kx"][:, None] - G[None, :, 0], t["ky"][:, None] - G[None, :, 1]).min(1)
            assert np.all(dist <= 1.0 * g.attrs["fft_sampling_nm-1"])
            assert np.any(np.abs(t["d"] - 0.5431 / np.sqrt(3)) < 0.003)          # {111} found
            fft = g["fft"]
            assert fft.dtype == np.float32 and fft.shape == (256, 256) and len(fft.attrs["k_extent_nm-1"]) == 4
            r0, c0, r1, c1 = g.attrs["window_px"]
            assert np.all(labels[r0:r1, c0:c1] == int(lab)) or g.attrs["window_mode"] == "masked"
            assert g.attrs["fft_sampling_nm-1"] > 0
        assert not bool(f["regions"]["4"].attrs["crystalline"])           # vacuum
    figs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert figs and all(p.startswith("region_") for p in figs)


def test_whole_image_without_segmentation_and_exact_rerun(tmp_path, scene):
    s, _ = scene
    a = analyse_image(s.image[100:356, :256], s.pixel_size_nm, None, FAST)
    assert list(a) == [1] and a[1].crystalline
    b = analyse_image(s.image[100:356, :256], s.pixel_size_nm, None, FAST)
    assert np.array_equal(a[1].peaks.kx, b[1].peaks.kx)


def test_bad_segmentation_is_a_user_error(tmp_path, scene):
    s, labels = scene
    img, seg = _inputs(tmp_path, s.image, labels[:-4], s.pixel_size_nm)
    with pytest.raises(UserError, match="label map shape"):
        run(_ctx(tmp_path, img, seg))


def test_amorphous_crystalline_decision():
    """Rendered crystals are crystalline; amorphous films, vacuum and low-magnification layers are not."""
    wrong = []
    for i in range(6):
        img, px, kind = render_amorphous(seeded(1, "amorphous", i), shape=(256, 256))
        if analyse_region(img, px, None, FAST).crystalline:
            wrong.append(kind)
    for i in range(6):
        r = render_region(seeded(1, "crystal", i), shape=(256, 256), size=128)
        if (r.snr[r.info["on_lattice"]] >= 8).sum() >= 2 and not analyse_region(r.image, r.pixel_size_nm, None,
                                                                                    FAST).crystalline:
            wrong.append(r.info["phase"])
    s = lowmag_device(shape=(256, 256), seed=2)
    res = analyse_image(s.image, s.pixel_size_nm, s.labels, FAST)
    wrong += [f"lowmag {k}" for k, r in res.items() if r.crystalline]
    assert wrong == []
