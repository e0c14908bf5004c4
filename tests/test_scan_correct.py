"""Scan-distortion correction against the generated truth (temtwin.testing.lattices / scan_distortion)."""

import h5py
import numpy as np
import pytest

from temtwin.io.h5 import atomic_h5, missing_units, read_summary
from temtwin.io.image import Micrograph
from temtwin.io.ingest import write_image_h5
from temtwin.scan_correct import correct_scan
from temtwin.scan_correct.drift import solve_drift
from temtwin.testing.lattices import scan_distorted_case
from temtwin.workflow.context import StageContext

PX = (0.02, 0.02)


def _jitter_truth(case):
    o = case.truth.row_offset_px
    i = np.arange(len(o))
    return o - np.polyval(np.polyfit(i, o, 1), i)


def _lattice_strain(img, G_ideal):
    """Uniform strain of the lattice of ``img`` relative to the ideal reciprocal basis (F = G⁻¹ G_ref)."""
    from temtwin.scan_correct.lattice import refine_g
    G, _ = refine_g(img, G_ideal)
    F = np.linalg.solve(G, G_ideal)          # maps reference to local lattice
    e = 0.5 * (F + F.T) - np.eye(2)
    return np.array([e[0, 0], e[1, 1], e[0, 1]])


@pytest.mark.parametrize("lattice,drift,jitter", [("hexagonal", (0.02, 0.015), 0.3),
                                                   ("square", (-0.025, -0.02), 0.5)])
def test_distortion_recovered(lattice, drift, jitter):
    c = scan_distorted_case(lattice=lattice, drift=drift, jitter_px=jitter, rotation_deg=17.0, seed=4, dose=500)
    r = correct_scan(c.distorted, PX)
    assert r.changed and r.method == "row jitter + linear drift"
    assert r.drift.lattice == lattice.replace("honeycomb", "hexagonal")
    assert np.allclose(r.drift.drift, drift, atol=0.0015)            # ≤ 0.15 % of the frame height
    assert np.all(np.abs(r.drift.drift - drift) < 5 * r.drift.sigma + 5e-4)
    e = r.jitter.offset_px - _jitter_truth(c)
    inner = np.isfinite(r.jitter.sigma_px)
    assert np.sqrt(np.mean(e[inner] ** 2)) < 0.4 * jitter             # ≥ 60 % of the jitter RMS removed
    # the lattice strain of the corrected image vs the ideal lattice: ≥ 80 % of the artificial strain gone
    from temtwin.scan_correct.lattice import find_peaks, reduced_basis, refine_g
    p = find_peaks(c.ideal)
    G0, _ = refine_g(c.ideal, reduced_basis(p.k, p.strength))
    s_dist = np.abs(_lattice_strain(c.distorted, G0)).max()
    s_corr = np.abs(_lattice_strain(r.image, G0)).max()
    assert s_corr < 0.2 * s_dist


@pytest.mark.parametrize("lattice", ["honeycomb", "square"])
def test_undistorted_image_left_unchanged(lattice):
    c = scan_distorted_case(lattice=lattice, rotation_deg=8.0, seed=2, dose=300)
    r = correct_scan(c.distorted, PX)
    assert not r.changed and r.method == "none"
    assert np.array_equal(r.image, c.distorted.astype(np.float32))
    assert "consistent with an undistorted" in r.reason and "not significant" in r.reason


def test_rectangular_lattice_drift_not_observable():
    c = scan_distorted_case(lattice="rectangular", drift=(0.02, 0.01), jitter_px=0.0, rotation_deg=20, seed=1)
    r = correct_scan(c.distorted, PX)
    assert not r.drift.significant and "not observable" in r.reason and np.all(r.drift.drift == 0)


def test_drift_solution_is_exact_for_a_hexagonal_basis():
    th = np.deg2rad(23.0)
    Gt = 0.11 * np.array([[np.cos(th), np.sin(th)], [np.cos(th + np.pi / 3), np.sin(th + np.pi / 3)]])
    D = np.array([[1.0, 0.021], [0.0, 1.0 - 0.013]])
    G_obs = (D.T @ Gt.T).T
    assert np.allclose(solve_drift(G_obs, (1.0, 1.0), "hexagonal"), [0.021, -0.013], atol=1e-9)


def _stage(tmp_path, img, mode):
    m = Micrograph(data=np.asarray(img, np.float32), pixel_size_nm=PX, name="im", sample="s",
                   meta={"mode": mode, "source_file": "im.dm4"})
    with atomic_h5(tmp_path / "raw.h5") as f:
        write_image_h5(f, m)
    ctx = StageContext.create("scan_correct", {"raw": str(tmp_path / "raw.h5")},
                              {"h5": str(tmp_path / "image.h5"), "figures": str(tmp_path / "fig")})
    from temtwin.stages.scan_correct import run
    run(ctx)
    return tmp_path / "image.h5"


def test_stage_tem_image_unchanged(tmp_path):
    c = scan_distorted_case(lattice="hexagonal", drift=(0.02, 0.0), jitter_px=0.4, seed=5)
    out = _stage(tmp_path, c.distorted, "TEM")
    with h5py.File(out) as f:
        assert np.array_equal(f["image"][()], c.distorted.astype(np.float32))
        g = f["scan_correction"]
        assert not g.attrs["applicable"] and "TEM" in g.attrs["reason"] and not g.attrs["changed"]
    s = read_summary(out)
    assert s["scan_correction"]["applicable"] is False and s["pixel_size_nm"] == list(PX)
    assert missing_units(out) == []


def test_stage_stem_corrected(tmp_path):
    c = scan_distorted_case(lattice="honeycomb", drift=(-0.02, 0.02), jitter_px=0.3, rotation_deg=5, seed=6)
    out = _stage(tmp_path, c.distorted, "STEM")
    with h5py.File(out) as f:
        g = f["scan_correction"]
        assert g.attrs["applicable"] and g.attrs["changed"] and g.attrs["lattice_assumption"] == "hexagonal"
        assert np.allclose(g["drift"][()], [-0.02, 0.02], atol=0.0015)
        assert g["jitter_px"].shape == (256,) and g["jitter_nm"].attrs["units"] == "nm"
        assert not np.array_equal(f["image"][()], c.distorted.astype(np.float32))
    s = read_summary(out)["scan_correction"]
    assert s["method"] == "row jitter + linear drift" and 0.15 < s["jitter_rms_px"] < 0.45
    assert (tmp_path / "fig" / "overview.png").is_file() and (tmp_path / "fig" / "jitter.png").is_file()
    assert missing_units(out) == []


def test_scan_pair_recovers_drift_and_line_offsets():
    from temtwin.scan_correct.pair import correct_pair
    from temtwin.testing.lattices import scan_pair_case
    c = scan_pair_case(n=160, lattice="rectangular", drift=(0.02, -0.015), jitter_px=0.3, seed=3)
    r = correct_pair(c.a, c.b)
    assert np.allclose(r.drift, [0.02, -0.015], atol=0.001)   # a lattice with one metric constraint: fine here
    for est, truth in ((r.offsets_a, c.truth_a.row_offset_px), (r.offsets_b, c.truth_b.row_offset_px)):
        i = np.arange(len(truth))
        t = truth - np.polyval(np.polyfit(i, truth, 1), i)
        assert np.sqrt(np.mean((est - t)[8:-8] ** 2)) < 0.35 * np.std(t)


def test_stage_scan_pair(tmp_path):
    import yaml

    from temtwin.testing.lattices import scan_pair_case
    c = scan_pair_case(n=128, lattice="hexagonal", drift=(-0.015, 0.02), jitter_px=0.3, seed=8)
    (tmp_path / "sample.yaml").write_text(yaml.safe_dump({"images": {"a": {"scan_pair": "b"}}}))
    paths = {}
    for name, img in (("a", c.a), ("b", c.b)):
        m = Micrograph(data=np.asarray(img, np.float32), pixel_size_nm=PX, name=name, sample="s",
                       meta={"mode": "STEM", "source_file": f"{name}.dm4"})
        paths[name] = tmp_path / f"{name}_raw.h5"
        with atomic_h5(paths[name]) as f:
            write_image_h5(f, m)
    from temtwin.stages.scan_correct import run
    for me, other in (("a", "b"), ("b", "a")):
        ctx = StageContext.create("scan_correct", {"raw": str(paths[me]), "pair": [str(paths[other])],
                                                   "settings": [str(tmp_path / "sample.yaml")]},
                                  {"h5": str(tmp_path / f"{me}.h5")})
        run(ctx)
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        assert fa["scan_correction"].attrs["scan_pair"] == "b" and fa["scan_correction"].attrs["changed"]
        assert np.allclose(fa["scan_correction/drift"][()], [-0.015, 0.02], atol=0.0015)
        assert np.allclose(fb["scan_correction/drift"][()], [0.02, 0.015], atol=0.0015)   # b's own frame
        assert np.allclose(np.rot90(fb["image"][()], -1), fa["image"][()])               # one merged image
    assert missing_units(tmp_path / "a.h5") == []


def test_no_lattice_left_unchanged():
    rng = np.random.default_rng(0)
    from scipy import ndimage
    img = ndimage.gaussian_filter(rng.normal(size=(192, 192)), 2.0) + 5.0      # amorphous-like speckle
    r = correct_scan(img, PX)
    assert not r.changed and r.drift is None and "no crystal lattice" in r.reason
    assert np.array_equal(r.image, img.astype(np.float32))


def test_weak_superstructure_does_not_hide_the_hexagonal_metric():
    """A hexagonal lattice whose orthogonal supercell carries a weak ordering (superstructure reflections,
    as from a tiled simulation cell or chemical order): the drift is still read from the hexagonal lattice."""
    from temtwin.testing.lattices import lattice_image
    from temtwin.testing.scan_distortion import distort_scan
    a = 9.0
    th = np.deg2rad(14.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    sites = [(0.0, 0.0, 1.0), (0.5, 0.5, 0.8)]                    # 20 % ordering on the centred cell
    canvas = lattice_image((300, 300), R @ [a, 0.0], R @ [0.0, a * np.sqrt(3)], sites, 1.2)
    rng = np.random.default_rng(7)
    dist, _ = distort_scan(canvas, drift_x=0.02, drift_y=-0.01, jitter_px=0.3, rng=rng)
    img = rng.poisson(np.clip(dist[:256, 10:266], 0, None) * 500) / 500
    r = correct_scan(img, PX)
    assert r.drift.lattice == "hexagonal" and np.allclose(r.drift.drift, [0.02, -0.01], atol=0.0015)
