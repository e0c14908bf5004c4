"""simulate_image: the imaging models against abTEM, parameter recovery, refinement, stage errors.

Ground truth: abTEM (an independent multislice code) for the forward models, known parameters for the
fits, a known perturbed model for the refinement.  Small grids (≤ 256²) to stay fast.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.simulate_image.fit import fit_haadf, fit_hrtem, ncc
from temtwin.simulate_image.hrtem import HRTEMImager
from temtwin.simulate_image.linear import LinearHAADF, z_weights
from temtwin.simulate_image.multislice import exit_waves, haadf_multislice
from temtwin.simulate_image.refine import (composition_from_weight, find_columns, refine_columns,
                                           weight_from_composition)
from temtwin.testing.sige_atoms import sige110_atoms


@pytest.fixture(scope="module")
def si_waves():
    """Exit waves of a 2 × 2 nm Si [110] slab, 4 nm thick, every 2 slices (abTEM)."""
    at = sige110_atoms((1.6, 1.7), 4.0, 0.0, np.random.default_rng(0))
    return at, exit_waves(at, 300e3, sampling_A=0.08, slice_A=2.0, every_slices=2)


def test_hrtem_transfer_matches_abtem(si_waves):
    """Our CTF + intensity on the cell grid equals abTEM's own CTF applied to the same exit wave."""
    import abtem

    at, ew = si_waves
    gpts = (ew.waves.shape[2], ew.waves.shape[1])  # the same grid as exit_waves chose
    pot = abtem.Potential(at, gpts=gpts, slice_thickness=2.0, projection="infinite", parametrization="lobato")
    w = abtem.PlaneWave(energy=300e3).multislice(pot)
    ctf = abtem.CTF(energy=300e3, defocus=60.0, Cs=15e4, semiangle_cutoff=25.0, focal_spread=30.0)
    ref = np.asarray(w.apply_ctf(ctf).intensity().compute(scheduler="synchronous").array).T
    rows, cols = ref.shape
    imager = HRTEMImager(ew, (rows, cols), (ew.sampling_A[0] / 10, ew.sampling_A[1] / 10), aperture_mrad=25.0)
    ours = imager.image(len(ew.thickness_nm) - 1, 6.0, 15.0, 3.0, 0.0)
    assert ncc(ours, ref) > 0.995
    assert abs(ours.mean() - ref.mean()) < 0.02 * ref.mean()


def test_fast_potential_integrator_equals_abtem():
    """The real-FFT slice integrator gives abTEM's own infinite-projection potential (even and odd grids)."""
    import abtem

    from temtwin.simulate_image.potential import fast_integrator

    at = sige110_atoms((1.5, 1.5), 1.2, 0.3, np.random.default_rng(0))
    for gp in ((150, 150), (151, 147)):
        kw = dict(gpts=gp, slice_thickness=2.0, projection="infinite", parametrization="lobato")
        ref = abtem.Potential(at, **kw).build().compute(scheduler="synchronous").array
        ours = abtem.Potential(at, integrator=fast_integrator(), **kw).build().compute(scheduler="synchronous").array
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-5 * np.abs(ref).max()


def test_linear_haadf_vs_multislice_thin_crystal():
    """On a thin Si [110] crystal the linear model reproduces abTEM's multislice HAADF image."""
    at = sige110_atoms((1.2, 1.1), 1.2, 0.0, np.random.default_rng(0))
    step = 0.25
    ms = haadf_multislice(at, 300e3, 25.0, (60.0, 120.0), step, sampling_A=0.08, slice_A=2.0,
                          scan_extent_A=(at.cell[0, 0] / 3, at.cell[1, 1] / 2))
    rows, cols = ms.shape
    px = (at.cell[0, 0] / 3 / cols / 10, at.cell[1, 1] / 2 / rows / 10)
    lin = LinearHAADF((rows, cols), px, 300e3, 25.0, oversample=4)
    pos = at.get_positions() / 10.0
    best = max(ncc(lin.image(pos[:, :2], z_weights(at.numbers, 1.7), 0.0, 0.0, s), ms) for s in (0.01, 0.02, 0.03))
    assert best > 0.9, best


def test_linear_haadf_ranks_models_like_multislice():
    """On a thin SiGe [110] crystal whose columns differ in Ge content, the linear model of the true model
    matches abTEM's multislice HAADF image better than the linear model of wrong models (the same columns
    with permuted compositions; pure Si): the linear model ranks models as multislice does."""
    from temtwin.simulate_image.refine import find_columns

    rng = np.random.default_rng(0)
    at = sige110_atoms((1.2, 1.1), 1.2, 0.5, rng, column_fraction_sd=0.35)
    ms = haadf_multislice(at, 300e3, 25.0, (45.0, 65.0), 0.45, sampling_A=0.1, slice_A=2.0)
    rows, cols = ms.shape
    lin = LinearHAADF((rows, cols), (at.cell[0, 0] / cols / 10, at.cell[1, 1] / rows / 10), 300e3, 25.0,
                      oversample=4)
    pos = at.get_positions()[:, :2] / 10.0

    def score(numbers):
        return max(ncc(lin.image(pos, z_weights(numbers, 1.7), 0.0, 0.0, s), ms) for s in (0.01, 0.02, 0.03))

    col = find_columns(at.get_positions() / 10.0)
    perm = rng.permutation(len(col.n_atoms))
    wrong = at.numbers.copy()
    for c in range(len(col.n_atoms)):
        src, dst = np.where(col.atom_column == perm[c])[0], np.where(col.atom_column == c)[0]
        if len(src) == len(dst):
            wrong[dst] = at.numbers[src]
    s_true, s_perm, s_si = score(at.numbers), score(wrong), score(np.full_like(at.numbers, 14))
    assert s_true > 0.8, s_true
    assert s_true > s_perm + 0.1 and s_true > s_si + 0.05, (s_true, s_perm, s_si)


def test_hrtem_parameter_recovery(si_waves):
    """Defocus, thickness, Cs and shift recovered from a noisy generated image of known optics."""
    at, ew = si_waves
    shape = (96, 96)
    px = (0.017, 0.017)
    imager = HRTEMImager(ew, shape, px, aperture_mrad=25.0)
    truth = dict(plane=7, defocus=8.0, cs=15.0, blur=0.006, shift=(0.3, -0.2))
    clean = imager.image(truth["plane"], truth["defocus"], truth["cs"], 3.0, truth["blur"], truth["shift"])
    rng = np.random.default_rng(5)
    data = rng.poisson(400 * clean).astype(float)
    mask = np.ones(shape, bool)
    fit = fit_hrtem(imager, data, mask, defocus_range_nm=(-20, 20), defocus_step_nm=2.0, cs_um=[15.0],
                    planes=np.arange(1, len(ew.thickness_nm), 2))
    v, s = fit.values, fit.sigma
    t_true = ew.thickness_nm[truth["plane"]]
    assert abs(v["defocus_nm"] - truth["defocus"]) < 1.0
    assert abs(v["thickness_nm"] - t_true) < 0.2 * t_true
    assert abs(v["shift_x_px"] - 0.3) < 0.1 and abs(v["shift_y_px"] + 0.2) < 0.1
    assert s["defocus_nm"] is not None and 0 < s["defocus_nm"] < 1.0
    assert fit.ncc > 0.9


def test_hrtem_fit_of_an_image_the_model_does_not_reproduce_determines_no_optics(si_waves):
    """An image of another crystal (here: the Si image rotated by 90° and shifted, plus noise) fitted with the
    Si model: the best NCC stays low, so no optical parameter is reported as determined (σ None, a note),
    while the same data the model does reproduce keep their σ."""
    at, ew = si_waves
    shape = (96, 96)
    px = (0.017, 0.017)
    imager = HRTEMImager(ew, shape, px, aperture_mrad=25.0)
    clean = imager.image(7, 8.0, 15.0, 3.0, 0.006, (0.3, -0.2))
    rng = np.random.default_rng(9)
    other = np.roll(np.rot90(clean), (17, 5), axis=(0, 1)) + 0.5 * clean.std() * rng.standard_normal(shape)
    kw = dict(defocus_range_nm=(-20, 20), defocus_step_nm=2.0, cs_um=[15.0],
              planes=np.arange(1, len(ew.thickness_nm), 2), min_ncc=0.8)
    bad = fit_hrtem(imager, other, np.ones(shape, bool), **kw)
    assert bad.ncc < 0.8
    assert all(v is None for v in bad.sigma.values()), bad.sigma
    assert any("does not reproduce the image" in n for n in bad.notes)
    good = fit_hrtem(imager, rng.poisson(400 * clean).astype(float), np.ones(shape, bool), **kw)
    assert good.ncc > 0.9 and good.sigma["defocus_nm"] is not None


def test_hrtem_sigma_covers_a_wrong_fixed_focal_spread(si_waves):
    """The image is made with a focal spread of 4 nm but fitted with it fixed at 3 ± 1 nm: the systematic part
    of σ (refits at 2 and 4 nm) makes the total σ cover the resulting defocus and thickness errors."""
    at, ew = si_waves
    shape = (96, 96)
    px = (0.017, 0.017)
    imager = HRTEMImager(ew, shape, px, aperture_mrad=25.0)
    clean = imager.image(7, 8.0, 15.0, 4.0, 0.006, (0.3, -0.2))
    data = np.random.default_rng(6).poisson(400 * clean).astype(float)
    fit = fit_hrtem(imager, data, np.ones(shape, bool), defocus_range_nm=(-20, 20), defocus_step_nm=2.0,
                    cs_um=[15.0], planes=np.arange(1, len(ew.thickness_nm), 2), focal_spread_nm=3.0,
                    focal_spread_sigma_nm=1.0)
    v, s, st, sy = fit.values, fit.sigma, fit.sigma_stat, fit.sigma_sys
    assert sy["defocus_nm"] > 0 and s["defocus_nm"] > st["defocus_nm"]
    assert np.isclose(s["defocus_nm"], np.hypot(st["defocus_nm"], sy["defocus_nm"]))
    assert abs(v["defocus_nm"] - 8.0) < 3 * s["defocus_nm"]
    t_true = ew.thickness_nm[7]
    assert abs(v["thickness_nm"] - t_true) < 3 * s["thickness_nm"]


def test_haadf_fit_recovers_source_and_shift():
    rng = np.random.default_rng(2)
    at = sige110_atoms((2.0, 2.0), 2.0, 0.3, rng, column_fraction_sd=0.1)
    pos = at.get_positions() / 10.0
    shape = (100, 100)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    lin = LinearHAADF(shape, px, 300e3, 25.0)
    clean = lin.image(pos[:, :2], z_weights(at.numbers, 1.7), 0.0, 0.0, 0.035, (0.4, -0.3))
    data = rng.poisson(50 + 2000 * clean / clean.max()).astype(float)
    fit = fit_haadf(lin, data, np.ones(shape, bool), pos[:, :2], at.numbers, defocus_range_nm=(-2, 2),
                    defocus_step_nm=2.0, source_nm=0.02)
    v = fit.values
    assert abs(v["source_nm"] - 0.035) < 0.005
    assert abs(v["shift_x_px"] - 0.4) < 0.05 and abs(v["shift_y_px"] + 0.3) < 0.05
    assert abs(v["exponent"] - 1.7) < 0.15
    assert v["thickness_nm"] is None and fit.notes


def test_refinement_reduces_known_error():
    """A model displaced by 10 pm RMS with 10 % composition noise converges towards the truth."""
    rng = np.random.default_rng(3)
    at = sige110_atoms((2.5, 2.5), 2.5, 0.3, rng, column_fraction_sd=0.15)
    pos = at.get_positions() / 10.0
    shape = (124, 124)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    n = 1.7
    col = find_columns(pos)
    w_true = np.bincount(col.atom_column, z_weights(at.numbers, n))
    x_true = composition_from_weight(w_true, col.n_atoms, 14, 32, n)
    truth_img = LinearHAADF(shape, px, 300e3, 25.0, oversample=4).image(col.xy_nm, w_true, 0.0, 0.0, 0.03)
    dose = 20000.0
    sc = 0.1 * dose / truth_img.max()
    data = rng.poisson(0.02 * dose + sc * truth_img).astype(float)
    xy0 = col.xy_nm + rng.standard_normal((len(w_true), 2)) * 0.010 / np.sqrt(2)
    x0 = np.clip(x_true + 0.1 * rng.standard_normal(len(w_true)), 0, 1)
    lin = LinearHAADF(shape, px, 300e3, 25.0)
    xy, w, hist = refine_columns(lin, data, xy0, weight_from_composition(x0, col.n_atoms, 14, 32, n),
                                 defocus_nm=0.0, cs_um=0.0, source_nm=0.03, offset=0.02 * dose, scale=sc,
                                 iterations=3)
    d0 = np.sqrt(np.mean(np.sum((xy0 - col.xy_nm) ** 2, 1)))
    d1 = np.sqrt(np.mean(np.sum((xy - col.xy_nm) ** 2, 1)))
    c1 = np.sqrt(np.mean((composition_from_weight(w, col.n_atoms, 14, 32, n) - x_true) ** 2))
    assert d0 > 0.009 and d1 < 0.003
    assert c1 < 0.03
    assert hist[-1] < hist[0]


def _write_inputs(tmp_path, atoms, shape, px, mode="STEM", detector="HAADF", data=None, image="img", kv=300.0):
    from temtwin.io.h5 import atomic_h5
    from temtwin.io.image import Micrograph
    from temtwin.io.ingest import write_image_h5
    from temtwin.results.model import Model

    data = np.ones(shape, np.float32) if data is None else data
    m = Micrograph(data.astype(np.float32), px, image, "s",
                   {"mode": mode, "detector": detector, "voltage_kV": kv, "source_file": "x.tif",
                    "units": "counts"})
    with atomic_h5(tmp_path / "image.h5") as f:
        write_image_h5(f, m)
    atoms.info.update(image=image, applicable=True, thickness_nm=float(atoms.cell[2, 2]) / 10)
    with atomic_h5(tmp_path / "model.h5") as f:
        Model.from_atoms(atoms).write(f)


def _ctx(tmp_path, **cfg):
    from temtwin.workflow.context import StageContext

    return StageContext.create("simulate_image",
                               {"image": str(tmp_path / "image.h5"), "model": str(tmp_path / "model.h5"),
                                "segmentation": str(tmp_path / "none.h5")},
                               {"h5": str(tmp_path / "simulation.h5"), "figures": str(tmp_path / "figs")},
                               {"simulate_image": cfg})


def test_stage_error_when_model_does_not_cover_image(tmp_path):
    from temtwin.stages.simulate_image import run

    at = sige110_atoms((0.8, 0.8), 1.0, 0.3, np.random.default_rng(0))
    _write_inputs(tmp_path, at, (400, 400), (0.02, 0.02))  # 8 x 8 nm image, 0.8 x 0.8 nm model
    with pytest.raises(UserError, match=r"model\.h5: the atomic model covers .*% of image img .*min_coverage"):
        run(_ctx(tmp_path, min_coverage=0.2))
    assert not (tmp_path / "simulation.h5").exists()


def test_stage_needs_a_beam_energy(tmp_path):
    """A file without a voltage (NaN in image.h5) needs simulate_image.energy_keV: one clear line."""
    from temtwin.stages.simulate_image import run

    at = sige110_atoms((2.0, 2.0), 1.0, 0.3, np.random.default_rng(0))
    _write_inputs(tmp_path, at, (100, 100), (at.cell[0, 0] / 1000, at.cell[1, 1] / 1000), kv=float("nan"))
    with pytest.raises(UserError, match=r"image\.h5: no beam energy.*simulate_image\.energy_keV"):
        run(_ctx(tmp_path))


def test_stage_haadf_end_to_end_with_refinement(tmp_path):
    from temtwin.io.h5 import missing_units, read_summary
    from temtwin.stages.simulate_image import run

    rng = np.random.default_rng(4)
    at = sige110_atoms((2.0, 2.0), 2.0, 0.3, rng, column_fraction_sd=0.1)
    shape = (100, 100)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    clean = LinearHAADF(shape, px, 300e3, 25.0).image(at.get_positions()[:, :2] / 10, z_weights(at.numbers, 1.7),
                                                      0.0, 0.0, 0.03)
    data = rng.poisson(100 + 3000 * clean / clean.max()).astype(float)
    _write_inputs(tmp_path, at, shape, px, data=data)
    run(_ctx(tmp_path, edge_margin_nm=0.0, fit_size_px=100, refine={"enabled": True, "iterations": 2}))
    out = tmp_path / "simulation.h5"
    assert missing_units(out) == []
    s = read_summary(out)["simulation"]
    assert s["mode"] == "haadf" and s["ncc"] > 0.9 and 0.7 < s["rms_noise"] < 1.5
    with h5py.File(out) as f:
        assert f["refine/history/residual_rms"].shape == (3,)
    assert (tmp_path / "figs" / "comparison.png").is_file()


def test_stage_abf_by_multislice_recovers_blur_and_shift(tmp_path):
    """An ABF image (detector named ABF) is simulated by abTEM multislice over a crop and its source blur and
    shift are recovered from a noisy image made by the same multislice (known truth)."""
    from temtwin.io.h5 import missing_units, read_summary
    from temtwin.simulate_image.coverage import check_coverage
    from temtwin.stages.simulate_image import best_box, run
    from temtwin.simulate_image.stem import render, simulate_stem_crop

    at = sige110_atoms((1.6, 1.6), 1.2, 0.0, np.random.default_rng(0))
    shape = (64, 64)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    box = best_box(check_coverage(at.get_positions() / 10, shape, px, "m", "img", 0.05), 16)  # the stage's crop
    r0, c0, r1, c1 = box
    crop = simulate_stem_crop(at, box, px, 300e3, 25.0, (12.5, 25.0), margin_nm=0.35, sampling_A=0.1)
    rng = np.random.default_rng(1)
    clean = render(crop.raw, px, 0.03, (0.4, -0.3))
    data = np.full(shape, float(clean.mean()))
    data[r0:r1, c0:c1] = clean
    data = rng.poisson(1e6 * data).astype(float)
    _write_inputs(tmp_path, at, shape, px, detector="ABF", data=data)
    run(_ctx(tmp_path, stem={"size_nm": 16 * px[0], "margin_nm": 0.35, "sampling_A": 0.1}))
    out = tmp_path / "simulation.h5"
    assert missing_units(out) == []
    s = read_summary(out)["simulation"]
    assert s["mode"] == "abf" and s["ncc"] > 0.95 and 0.7 < s["rms_noise"] < 1.4
    ms = s["multislice"]
    assert ms["box_px"] == list(box) and ms["detector_mrad"] == [12.5, 25.0] and ms["detector_source"] == "default"
    assert abs(s["fit"]["blur_nm"] - 0.03) < 0.006
    assert abs(s["fit"]["shift_x_px"] - 0.4) < 0.1 and abs(s["fit"]["shift_y_px"] + 0.3) < 0.1
    with h5py.File(out) as f:
        assert np.isnan(f["simulated"][0, 0]) and not f["mask"][0, 0] and f["mask"][r0 + 8, c0 + 8]


def test_stage_haadf_multislice_crop_uses_metadata_angles(tmp_path):
    """HAADF with stem.simulator = multislice: the linear model stays the main simulation, an abTEM crop is
    added with the detector and convergence angles of the image metadata, and the linear model agrees with it."""
    from temtwin.io.h5 import missing_units, read_summary
    from temtwin.stages.simulate_image import run

    rng = np.random.default_rng(4)
    at = sige110_atoms((1.6, 1.6), 1.2, 0.3, rng, column_fraction_sd=0.1)
    shape = (64, 64)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    clean = LinearHAADF(shape, px, 300e3, 22.0).image(at.get_positions()[:, :2] / 10, z_weights(at.numbers, 1.7),
                                                      0.0, 0.0, 0.03)
    _write_inputs(tmp_path, at, shape, px, data=rng.poisson(100 + 3000 * clean / clean.max()).astype(float))
    with h5py.File(tmp_path / "image.h5", "a") as f:
        f.attrs.update(convergence_angle_mrad=22.0, detector_inner_mrad=40.0, detector_outer_mrad=65.0)
    run(_ctx(tmp_path, edge_margin_nm=0.0, fit_size_px=64,
             stem={"simulator": "multislice", "size_nm": 12 * px[0], "margin_nm": 0.35, "sampling_A": 0.1}))
    out = tmp_path / "simulation.h5"
    assert missing_units(out) == []
    s = read_summary(out)["simulation"]
    ms = s["multislice"]
    assert s["mode"] == "haadf" and s["ncc"] > 0.9
    assert ms["detector_mrad"] == [40.0, 65.0] and ms["detector_source"] == "metadata"
    assert ms["ncc_linear_vs_multislice"] > 0.8 and ms["ncc"] > 0.8
    with h5py.File(out) as f:
        assert f["multislice"].attrs["convergence_mrad"] == 22.0 and f["multislice/simulated"].shape == (12, 12)


def test_stage_hrtem_end_to_end_with_systematic_sigma(tmp_path):
    """HRTEM through the stage: optics recovered from a generated image of the model, the /fit table carries
    sigma = sigma_stat ⊕ sigma_sys (focal spread prior) and the defocus error is within 3 sigma."""
    from temtwin.io.h5 import missing_units, read_summary
    from temtwin.results.simulation import Simulation
    from temtwin.stages.simulate_image import run

    at = sige110_atoms((1.6, 1.7), 2.0, 0.0, np.random.default_rng(0))
    shape = (80, 80)
    px = (at.cell[0, 0] / 10 / shape[1], at.cell[1, 1] / 10 / shape[0])
    ew = exit_waves(at, 300e3, sampling_A=0.1, slice_A=2.0, every_slices=2)
    clean = HRTEMImager(ew, shape, px, aperture_mrad=25.0).image(len(ew.thickness_nm) - 1, 6.0, 15.0, 3.5, 0.005)
    data = np.random.default_rng(2).poisson(500 * clean).astype(float)
    _write_inputs(tmp_path, at, shape, px, mode="TEM", detector="", data=data)
    run(_ctx(tmp_path, sampling_A=0.1, fit_size_px=80, edge_margin_nm=0.0, cs_um=[15.0], fit_cs=False,
             defocus_range_nm=[-10.0, 10.0], defocus_step_nm=2.0, max_thickness_factor=1.0))
    out = tmp_path / "simulation.h5"
    assert missing_units(out) == []
    s = read_summary(out)["simulation"]
    assert s["mode"] == "hrtem" and s["ncc"] > 0.9
    fit = Simulation.read(out).table("fit")
    k = list(fit["parameter"]).index("defocus_nm")
    assert fit["sigma_sys"][k] > 0 and np.isclose(fit["sigma"][k], np.hypot(fit["sigma_stat"][k], fit["sigma_sys"][k]))
    assert abs(fit["value"][k] - 6.0) < 3 * fit["sigma"][k]


def test_hrtem_thickness_sigma_covers_a_weaker_potential(si_waves):
    """The image is made from exit waves whose phase is 0.85 × the multislice one (a projected potential 15 %
    weaker, as a thin phase object: ψ' = |ψ| exp(0.85 i arg ψ)) and fitted with the true potential: the thickness
    comes out too small (phase ∝ V·t); the potential prior (δ = 0.1, term δ·t) makes the total σ cover it."""
    from dataclasses import replace

    at, ew = si_waves
    shape = (96, 96)
    px = (0.017, 0.017)
    imager = HRTEMImager(ew, shape, px, aperture_mrad=25.0)
    weak = replace(ew, waves=(np.abs(ew.waves) * np.exp(0.85j * np.angle(ew.waves))).astype(np.complex64))
    clean = HRTEMImager(weak, shape, px, aperture_mrad=25.0).image(7, 8.0, 15.0, 3.0, 0.006, (0.3, -0.2))
    data = np.random.default_rng(7).poisson(400 * clean).astype(float)
    kw = dict(defocus_range_nm=(-20, 20), defocus_step_nm=2.0, cs_um=[15.0], planes=np.arange(1, len(ew.thickness_nm)))
    fit0 = fit_hrtem(imager, data, np.ones(shape, bool), **kw)
    fit = fit_hrtem(imager, data, np.ones(shape, bool), potential_rel_sigma=0.1, **kw)
    t_true = ew.thickness_nm[7]
    t = fit.values["thickness_nm"]
    assert t < t_true  # a weaker potential reads as a thinner sample
    assert np.isclose(fit.sigma_sys["thickness_nm"], np.hypot(fit0.sigma_sys["thickness_nm"], 0.1 * t))
    assert abs(t - t_true) > 2 * fit0.sigma["thickness_nm"]  # without the prior the σ does not cover it
    assert abs(t - t_true) < 2 * fit.sigma["thickness_nm"]


def test_hrtem_defocus_sigma_includes_an_undetermined_thickness(si_waves):
    """The sample is one exit plane thicker than the searched range (a model thinner than the sample): the
    thickness ends at the range end (no σ) and the defocus/Cs fitted at that plane are biased; their σ carry the
    change over one plane, so the errors are within 2 σ (the Jacobian σ alone puts them beyond 3 σ)."""
    at, ew = si_waves
    shape = (96, 96)
    px = (0.017, 0.017)
    imager = HRTEMImager(ew, shape, px, aperture_mrad=25.0)
    data = np.random.default_rng(8).poisson(400 * imager.image(9, 8.0, 15.0, 3.0, 0.006, (0.3, -0.2))).astype(float)
    fit = fit_hrtem(imager, data, np.ones(shape, bool), defocus_range_nm=(-20, 20), defocus_step_nm=2.0,
                    cs_um=[15.0], planes=np.arange(1, 9))
    v, s, st = fit.values, fit.sigma, fit.sigma_stat
    assert s["thickness_nm"] is None and any("upper end" in n for n in fit.notes)
    assert abs(v["defocus_nm"] - 8.0) > 3 * st["defocus_nm"]
    assert abs(v["defocus_nm"] - 8.0) < 2 * s["defocus_nm"]
    assert abs(v["cs_um"] - 15.0) < 2 * s["cs_um"]
