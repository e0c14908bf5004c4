"""spin_orbit k·p: zero for uniform strain, linear response to a shear gradient, agreement of the
finite-difference solver with an independent small-matrix (sine-basis) diagonalisation."""

import numpy as np
import pytest

from temtwin.spin_orbit.kp import HBAR2_2M0, Profile, alloy_parameters, linear_soi, load_parameters

L = 16.0                                           # nm, Ge well
DIR = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)      # k along [1-10]
GE = load_parameters()["Ge"]
EPAR = (0.7 * 0.56579 + 0.3 * 0.54310) / 0.56579 - 1     # Ge pseudomorphic on relaxed Si0.3Ge0.7
EPERP = -2 * 48.3 / 128.5 * EPAR


def strain(z, g, shear0=0.0):
    e = np.zeros((len(z), 3, 3))
    e[:, 0, 0] = e[:, 1, 1] = EPAR
    e[:, 2, 2] = EPERP
    e[:, 0, 2] = e[:, 2, 0] = shear0 + g * z
    return e


def hard_wall_profile(g, shear0=0.0, h=0.1):
    z = np.arange(-L / 2 + h, L / 2 - h / 2, h)          # interior points; psi = 0 at ±L/2
    par = alloy_parameters(np.ones(len(z)))
    return Profile(z, par, strain(z, g, shear0))


def sine_basis_alpha(g, nb=24, k=0.02, signed=False, direction=DIR):
    """Independent reference: Luttinger–Kohn + Bir–Pikus in the basis of the infinite well's sines,
    matrix elements by Gauss–Legendre quadrature, dense diagonalisation, same ΔE(k), ΔE(2k) formula.
    ``signed``: ΔE = E(⇑) − E(⇓) with ⇑ the top-doublet member of larger ⟨J_z⟩."""
    xq, wq = np.polynomial.legendre.leggauss(400)
    z = xq * L / 2
    w = wq * L / 2
    n = np.arange(1, nb + 1)[:, None]
    u = (z + L / 2) / L
    phi = np.sqrt(2 / L) * np.sin(n * np.pi * u)
    dphi = np.sqrt(2 / L) * (n * np.pi / L) * np.cos(n * np.pi * u)
    kz2 = (dphi * w) @ dphi.T                             # <m|kz^2|n> = ∫ φm' φn'
    kz = -1j * (phi * w) @ dphi.T                         # <m|-i d/dz|n>
    zop = (phi * w * z) @ phi.T
    one = np.eye(nb)
    c, g1, g2, g3, b, d = HBAR2_2M0, GE["gamma1"], GE["gamma2"], GE["gamma3"], GE["b"], GE["d"]

    def H(kx, ky):
        kp2 = kx**2 + ky**2
        P = c * g1 * (kp2 * one + kz2)
        Q = c * g2 * (kp2 * one - 2 * kz2) - (b / 2) * (2 * EPAR - 2 * EPERP) * one
        R = c * np.sqrt(3) * (-g2 * (kx**2 - ky**2) + 2j * g3 * kx * ky) * one
        S = 2 * np.sqrt(3) * c * g3 * (kx - 1j * ky) * kz - d * g * zop
        Z = np.zeros_like(one)
        Sd, Rd = S.conj().T, R.conj().T
        return -np.block([[P + Q, -S, R, Z], [-Sd, P - Q, Z, R], [Rd, Z, P - Q, S], [Z, Rd, Sd, P + Q]])

    def split(kk):
        e, v = np.linalg.eigh(H(*(kk * np.asarray(direction)[:2])))
        if not signed:
            return e[-1] - e[-2]
        w = np.abs(v[:, [-1, -2]]) ** 2
        jz = np.repeat([1.5, 0.5, -0.5, -1.5], nb) @ w
        return (e[-1] - e[-2]) * np.sign(jz[0] - jz[1])

    return (8 * split(k) - split(2 * k)) / (12 * k)


def test_shear_in_the_xz_plane_splits_for_k_along_y_only():
    p = hard_wall_profile(1e-5)
    ay = linear_soi(p, np.array([0.0, 1.0, 0.0])).alpha_eV_nm
    ax = linear_soi(p, np.array([1.0, 0.0, 0.0])).alpha_eV_nm
    assert ay > 1e-4 and ax < 1e-8 * ay


def test_uniform_strain_gives_no_linear_soi():
    ref = linear_soi(hard_wall_profile(1e-5), DIR).alpha_eV_nm
    for shear0 in (0.0, 2e-3):
        a = linear_soi(hard_wall_profile(0.0, shear0), DIR).alpha_eV_nm
        assert a < 1e-6 * ref


def test_linear_response_to_shear_gradient_matches_small_matrix_reference():
    g = 1e-5                                              # d eps_xz / dz, 1/nm
    r1 = linear_soi(hard_wall_profile(g), DIR)
    r2 = linear_soi(hard_wall_profile(2 * g), DIR)
    rm = linear_soi(hard_wall_profile(-g), DIR)
    assert r2.alpha_eV_nm / r1.alpha_eV_nm == pytest.approx(2.0, rel=0.01)
    assert rm.alpha_eV_nm == pytest.approx(r1.alpha_eV_nm, rel=1e-6)
    ref = sine_basis_alpha(g)
    assert r1.alpha_eV_nm == pytest.approx(ref, rel=0.03)
    # heavy-hole in-plane mass of compressively strained Ge: light (0.05-0.1 m0)
    assert 0.04 < r1.mass < 0.1
    assert r1.inv_lso_per_um == pytest.approx(r1.mass * r1.alpha_eV_nm / (2 * HBAR2_2M0) * 1e3)


def test_signed_alpha_flips_with_the_shear_gradient_and_with_k():
    """Convention (kp module): E(⇑) − E(⇓) = 2 α_s k, ⇑ = ⟨J_z⟩ > 0 along growth [001]; α_s ∝ (k × ∂ε/∂z)_z."""
    g = 1e-5
    ky = np.array([0.0, 1.0, 0.0])
    up = linear_soi(hard_wall_profile(g), ky).alpha_signed_eV_nm
    down = linear_soi(hard_wall_profile(-g), ky).alpha_signed_eV_nm
    back = linear_soi(hard_wall_profile(g), -ky).alpha_signed_eV_nm
    assert up < 0 and down == pytest.approx(-up, rel=1e-6) and back == pytest.approx(-up, rel=1e-6)
    assert abs(up) == pytest.approx(linear_soi(hard_wall_profile(g), ky).alpha_eV_nm, rel=1e-9)
    # the independent sine-basis diagonalisation gives the same sign and value
    assert sine_basis_alpha(g, signed=True, direction=ky) == pytest.approx(up, rel=0.03)
    assert sine_basis_alpha(-g, signed=True, direction=ky) == pytest.approx(down, rel=0.03)
    # k along [1-10] (k_y < 0): the opposite sign, √2 smaller (only the k_y part couples to ε_xz)
    assert linear_soi(hard_wall_profile(g), DIR).alpha_signed_eV_nm == pytest.approx(-up / np.sqrt(2), rel=1e-3)


def test_stage_zero_for_uniform_layers_and_finite_for_a_shear_gradient(tmp_path):
    import h5py

    from temtwin.stages import fem_relax as relax_stage
    from temtwin.io.h5 import missing_units, read_summary
    from temtwin.stages import spin_orbit as stage
    from temtwin.stages import fem_geometry
    from temtwin.testing.twin_inputs import write_layered_inputs
    from temtwin.workflow.context import StageContext

    layers = [dict(thickness_nm=3.0, ge_fraction=0.7), dict(thickness_nm=4.0, ge_fraction=1.0, eyy=0.0231),
              dict(thickness_nm=3.0, ge_fraction=0.7)]
    _, p = write_layered_inputs(tmp_path / "s" / "im", shape=(100, 60), pixel_size_nm=0.1, layers=layers)
    d = tmp_path / "s"
    fo = {"h5": d / "fem/fem.h5", "gds": d / "fem/geometry.gds", "mesh": d / "fem/mesh.msh",
          "regions": d / "fem/regions.json", "figures": d / "figures/fem_geometry"}
    inputs = {"stack": "", "images": [p["image"]], "segmentations": [p["segmentation"]], "phases": [p["phases"]],
              "gpas": [p["gpa"]]}
    fem_geometry.run(StageContext.create("fem_geometry", inputs, fo, {"fem_geometry": {"mesh_size_nm": 1.0}},
                                      wildcards={"sample": "s"}))
    ro = {"h5": d / "fem/relax.h5", "vtu": d / "fem/device.vtu", "figures": d / "figures/fem_relax"}
    comp = {"1": "Si0.3Ge0.7", "3": "Si0.3Ge0.7"}
    relax_stage.run(StageContext.create("fem_relax", {"fem": fo["h5"], "regions": fo["regions"], **inputs}, ro,
                                        {"fem_relax": {"n_layers": 2, "composition": comp}}, wildcards={"sample": "s"}))
    so = {"h5": d / "spin_orbit.h5", "figures": d / "figures/spin_orbit"}
    cfg = {"spin_orbit": {"n_positions": 3, "n_samples": 2, "barrier_nm": 2.0, "dz_nm": 0.1}}
    stage.run(StageContext.create("spin_orbit", {"relax": ro["h5"]}, so, cfg, wildcards={"sample": "s"}))
    s = read_summary(so["h5"])["spin_orbit"]
    assert s["applicable"] and s["n_positions"] == 3
    assert s["inv_lso_per_um"]["max"] < 1e-6                     # uniform layers: no linear-in-k SOI
    assert 0.03 < s["mass_m0"] < 0.12
    # prescribe a shear gradient in the device strain: image exy = -g * y_model  (model exy = g * y)
    with h5py.File(ro["h5"], "r+") as f:
        ex = f["image_grid/device_fit_elastic/exy"]
        rows = np.arange(ex.shape[0])[:, None] * 0.1
        ex[...] = np.where(np.isfinite(ex[()]), 1e-4 * (rows - rows.mean()), np.nan).astype(np.float32)
    stage.run(StageContext.create("spin_orbit", {"relax": ro["h5"]}, so, cfg, wildcards={"sample": "s"}))
    s2 = read_summary(so["h5"])["spin_orbit"]
    assert s2["inv_lso_per_um"]["mean"] > 0.1
    assert s2["inv_lso_per_um"]["max"] == pytest.approx(s2["inv_lso_per_um"]["mean"], rel=0.02)   # uniform along x
    a2 = s2["alpha_signed_eV_nm"]["mean"]
    assert abs(a2) == pytest.approx(s2["alpha_eV_nm"]["mean"], rel=1e-6)
    with h5py.File(ro["h5"], "r+") as f:                                  # reversed shear gradient
        ex = f["image_grid/device_fit_elastic/exy"]
        ex[...] = -ex[()]
    stage.run(StageContext.create("spin_orbit", {"relax": ro["h5"]}, so, cfg, wildcards={"sample": "s"}))
    s3 = read_summary(so["h5"])["spin_orbit"]
    assert s3["alpha_signed_eV_nm"]["mean"] == pytest.approx(-a2, rel=1e-3)
    assert missing_units(so["h5"]) == []
    assert [x.name for x in so["figures"].iterdir()] == ["spin_orbit.png"]


def test_tight_binding_sheared_well_agrees_in_sign_and_magnitude_with_kp():
    """sp3d5s* tight binding of a sheared Ge/Si superlattice (16 Ge + 12 Si monolayers) against the k·p α_s
    of the same Ge well with hard walls: same sign, flips with the gradient, magnitude within a factor 2."""
    from temtwin.physics.tightbinding.sheared_well import sheared_well_alpha
    from temtwin.spin_orbit.kp import Profile

    g, k, L, h = 4e-3, 0.05, 16 * 0.5658 / 4, 0.05
    tb = sheared_well_alpha(16, 12, g, (0.0, 1.0, 0.0), k)
    tb_m = sheared_well_alpha(16, 12, -g, (0.0, 1.0, 0.0), k)
    z = np.arange(-L / 2 + h, L / 2 - h / 2, h)
    e = np.zeros((len(z), 3, 3))
    e[:, 0, 2] = e[:, 2, 0] = g * z
    kp = linear_soi(Profile(z, alloy_parameters(np.ones(len(z))), e), np.array([0.0, 1.0, 0.0]), k).alpha_signed_eV_nm
    assert tb.alpha_signed_eV_nm < 0 and kp < 0
    assert tb_m.alpha_signed_eV_nm == pytest.approx(-tb.alpha_signed_eV_nm, rel=1e-6)
    assert 0.5 < tb.alpha_signed_eV_nm / kp < 2.0
    assert min(abs(s) for s in tb.sz_k) > 0.9            # the doublet is heavy-hole, spin along growth
