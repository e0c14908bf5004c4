"""One science core per concept (issue 15, item 5): the shared modules give the answers the
duplicated code gave."""

from __future__ import annotations

import numpy as np


def test_tb_slabs_use_the_shared_growth_binning():
    """tight-binding slabs: slab index = floor((s - s_min) / t) along the growth direction, with s the
    host atoms' coordinate along growth (nm), the same binning the keating and phonons profiles use."""
    from ase import Atoms

    from temtwin.stages.tb_moments import _partitions

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 30, (200, 3))                      # Å
    atoms = Atoms("Si200", positions=pos)
    g = np.array([0.3, -1.0, 0.2])
    atoms.info["growth_direction"] = g.tolist()
    host = np.arange(0, 200, 2)
    parts = _partitions(atoms, host, {"partitions": "slabs", "slab_thickness_nm": 0.4})
    labels, per_site, extra = parts["slab"]
    s = pos[host] @ (g / np.linalg.norm(g)) / 10.0
    want = np.floor((s - s.min()) / 0.4).astype(int)
    assert list(per_site) == [str(v) for v in want]
    assert labels == [str(v) for v in np.unique(want)]
    assert extra["center_nm"][labels[-1]] == (int(labels[-1]) + 0.5) * 0.4
    assert np.allclose(extra["growth_direction"], g / np.linalg.norm(g))


def _ring(n: int):
    import scipy.sparse as sp
    m = sp.diags([np.full(n - 1, 1.0), np.full(n - 1, 1.0)], [1, -1]).tolil()
    m[0, n - 1] = m[n - 1, 0] = 1.0
    return m.tocsr()


def test_one_kpm_engine_electron_chain_dos_is_analytic():
    """Electrons on a ring of n sites, hopping t = 1 eV: the local moments at one site are the analytic
    ones (eigenvalues -2 cos(2 pi q / n)) to round-off, and the Jackson-damped density approaches the
    infinite chain's 1 / (pi sqrt(4 - E^2)) states/eV."""
    from temtwin.physics import kpm
    from temtwin.physics.tightbinding import TBOperator

    n, N = 2000, 256
    op = TBOperator(matrix=-_ring(n), backend="numba", complex_dtype=np.complex128)
    a, b = kpm.rescaling((-2.0, 2.0))
    mu = kpm.stochastic_moments(op, [np.array([0])], [np.random.default_rng(0)], a, b, N)[0]
    evals = -2.0 * np.cos(2 * np.pi * np.arange(n) / n)
    assert np.allclose(mu, kpm.moments_from_eigenvalues(evals, a, b, N) / n, atol=1e-10)
    E = np.linspace(-1.5, 1.5, 31)
    rho = kpm.density(mu, E, a, b)
    assert np.allclose(rho, 1.0 / (np.pi * np.sqrt(4.0 - E ** 2)), rtol=0.02)


def test_one_kpm_engine_phonon_chain_ldos_is_analytic():
    """Phonons of a ring of n atoms with springs k (the same in x, y, z): lambda_q = 4 k sin^2(pi q / n)
    (eV/Å²/amu); above 5 sigma the KPM LDOS per dof with the shared kernel and reconstruction is the analytic
    Gaussian-broadened sum over the n modes."""
    import scipy.sparse as sp

    from temtwin.physics import kpm
    from temtwin.physics.phonons import energy_of_lambda, kpm_ldos

    n, k, sigma = 60, 2.0, 1.5
    lap = 2.0 * sp.identity(n) - _ring(n)
    d = sp.kron(k * lap, sp.identity(3)).tocsr()
    res = kpm_ldos(d, [np.zeros(n, int)], sigma_meV=sigma, n_moments=1024, probe="exact")
    e_q = energy_of_lambda(4 * k * np.sin(np.pi * np.arange(n) / n) ** 2)
    want = np.exp(-0.5 * ((res.energies_meV[:, None] - e_q[None, :]) / sigma) ** 2).sum(1) \
        / (n * sigma * np.sqrt(2 * np.pi))
    got = res.ldos[0][0]
    # lambda ~ E^2: the constant Chebyshev resolution in lambda blurs E below a few sigma
    hi = res.energies_meV >= 5 * sigma
    assert np.abs(got - want)[hi].max() < 0.02 * want.max()
    # the reconstruction is the engine's: damped moments times smooth Chebyshev coefficients
    c = kpm.smooth_coefficients(lambda x: np.exp(-x[None, :] ** 2), 64)
    assert np.allclose(kpm.reconstruct(np.eye(64)[:1], c, "none"), c[:, 0])


def test_one_spots_type_gpa_takes_the_regions_spots_from_fft_peaks(monkeypatch):
    """GPA's g pair from fft_peaks' spots (peaks.h5) is the pair GPA's own finder chose before, and a
    lattice reflection of Si; with a peaks.h5 entry GPA never finds spots again."""
    import pytest

    import temtwin.stages.gpa as gpa_stage
    from temtwin.config import load_config
    from temtwin.errors import NotApplicable
    from temtwin.gpa.choices import pick_g_pair
    from temtwin.io.image import Micrograph
    from temtwin.peaks.spots import Spots, fft_spots
    from temtwin.peaks.analysis import analyse_region
    from temtwin.testing.synth import crystal_scene

    px = (0.02, 0.02)
    sc = crystal_scene("Si", (1, 1, 0), 10.0, shape=(256, 256), pixel_size_nm=px, dose=500, seed=3)
    res = analyse_region(sc.image, px)
    assert res.crystalline
    from_peaks = res.peaks.spots()
    assert isinstance(from_peaks, Spots) and np.all(from_peaks.d > 0)
    g_p, _ = pick_g_pair(from_peaks)
    g_own, _ = pick_g_pair(fft_spots(sc.image, px))
    for a in g_p:                                   # same reflections (± g), to 2 % of |g|
        assert min(min(np.linalg.norm(a - b), np.linalg.norm(a + b)) for b in g_own) < 0.02 * np.linalg.norm(a)
    d_si = 0.5431 / np.sqrt([3.0, 4.0, 8.0])        # {111}, {002}, {220} spacings (nm)
    for gi in g_p:
        assert np.min(np.abs(1 / np.linalg.norm(gi) - d_si) / d_si) < 0.02
    # the stage reads those spots: its own finder is never called for a region of peaks.h5
    def no_refind(*a, **k):
        raise AssertionError("GPA found spots again")
    monkeypatch.setattr(gpa_stage, "region_spots", no_refind)
    m = Micrograph(sc.image, px, name="img", sample="s", meta={})
    labels = np.ones((256, 256), np.int32)
    table = {"kx": res.peaks.kx, "ky": res.peaks.ky, "intensity": res.peaks.intensity, "snr": res.peaks.snr}
    cfg = {**load_config({}, require_dataset=False)["gpa"], "refine_g": False}
    an = gpa_stage.analyse(m, labels, {1: {"crystalline": True, "table": table}}, {}, cfg)
    assert np.allclose(np.abs(an.result.g_input), np.abs(g_p), atol=1e-9)
    # a region whose peaks.h5 table lacks a g pair is not searched again (formerly GPA re-found its spots)
    one = {k: v[:1] for k, v in table.items()}
    with pytest.raises(NotApplicable, match="no crystalline region"):
        gpa_stage.analyse(m, labels, {1: {"crystalline": True, "table": one}}, {}, cfg)
    # fft_peaks said amorphous: GPA does not re-decide from the same spots
    with pytest.raises(NotApplicable, match="no crystalline region"):
        gpa_stage.analyse(m, labels, {1: {"crystalline": False, "table": table}}, {}, cfg)


def test_twin_reads_gpa_hkl_instead_of_reindexing(tmp_path):
    """The virtual cell uses the hkl GPA stored with its g vectors (gpa.h5 /lattice attr hkl) as given:
    the same cell as nearest-reflection indexing on an unambiguous case, and an error (not a silent
    re-indexing) when the stored hkl do not describe the measured g."""
    import h5py
    import pytest

    from temtwin.io.h5 import atomic_h5, write_array
    from temtwin.testing.synth.crystal import load_structure, orientation_matrix
    from temtwin.twin.fill import cell_from_structure, virtual_cell
    from temtwin.twin.inputs import read_gpa
    from temtwin.testing.twin_inputs import reciprocal_g

    st = load_structure("Si")
    cell = cell_from_structure(st, orientation_matrix(st, (1, 1, 0), 10.0, reference=(1, -1, 0)), (1, 1, 0))
    M_true = orientation_matrix(st, (1, 1, 0), 13.0, reference=(1, -1, 0))
    hkl = [[1, -1, -1], [2, -2, 0]]
    g = reciprocal_g(st, M_true, hkl, 0.55843 / 0.5431)
    with atomic_h5(tmp_path / "gpa.h5") as f:
        f.attrs["applicable"] = True
        f.attrs["reference_label"] = 1
        write_array(f, "g_vectors", g, "nm^-1")
        write_array(f, "displacement", np.zeros((2, 4, 4)), "nm")
        lg = f.create_group("lattice")
        lg.attrs["hkl"] = np.array(hkl)
        lg.attrs["reference_phase"] = "Si"
    gpa = read_gpa(tmp_path / "gpa.h5")
    assert gpa.g_hkl.tolist() == hkl and gpa.g_phase == "Si"
    vc, info = virtual_cell(cell, gpa.g_vectors, hkl=gpa.g_hkl)
    vc0, info0 = virtual_cell(cell, gpa.g_vectors)
    assert info["hkl"].tolist() == hkl and np.allclose(vc.lattice_nm, vc0.lattice_nm, atol=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        virtual_cell(cell, gpa.g_vectors, hkl=-gpa.g_hkl)     # stored hkl of -g: not re-indexed
    with h5py.File(tmp_path / "gpa.h5", "a") as f:
        del f["lattice"]
    assert read_gpa(tmp_path / "gpa.h5").g_hkl is None


def test_one_structure_loader_for_phase_id_synth_and_twins(tmp_path):
    """phase_id's CIF reading, synth/twin's load_structure and the twin's phases.h5 CIF text go through
    one loader with one policy: the same structure from each, one-line errors naming the file."""
    import pytest

    from temtwin.errors import UserError
    from temtwin.phase.database import RESOURCE_PHASES, load_cif, load_structure
    from temtwin.testing.synth.crystal import load_structure as synth_load
    from temtwin.twin.inputs import ImageInputs

    si_cif = RESOURCE_PHASES / "Si.cif"
    a, b = load_cif(si_cif).structure, synth_load("Si")
    assert synth_load is not load_structure and b is load_structure("Si")
    assert np.array_equal(a.lattice.matrix, b.lattice.matrix) and np.array_equal(a.frac_coords, b.frac_coords)
    assert abs(b.lattice.a - 5.431) < 0.01                         # Å
    cifs = {"Si": si_cif.read_text(), "Bad": "data_x\n_cell_length_a 1\n"}
    img = ImageInputs("img", (0.02, 0.02), (8, 8), np.ones((8, 8), np.int32), cifs=cifs,
                      phases_path=tmp_path / "phases.h5")
    c = img.structure("Si")
    assert np.array_equal(c.lattice.matrix, a.lattice.matrix) and len(c) == len(a)
    with pytest.raises(UserError, match=r"phase 'Bad' in phases\.h5 .*(not a usable CIF|degenerate)"):
        img.structure("Bad")
    bad = tmp_path / "Broken.cif"
    bad.write_text("not a cif\n")
    with pytest.raises(UserError, match="Broken.cif"):
        load_cif(bad)
    with pytest.raises(KeyError):
        load_structure("Unobtainium")
