"""Oriented crystal fill, virtual unit cell, displacement inversion and duplicate removal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from temtwin.testing.synth.crystal import load_structure, orientation_matrix, oriented_atoms
from temtwin.twin.builder import RegionPlan, build_model
from temtwin.twin.displace import DisplacementField, remove_close_atoms
from temtwin.twin.fill import (beam_period, cell_from_structure, commensurate_thickness, crystal_columns,
                               expand_columns, virtual_cell)
from temtwin.testing.twin_inputs import reciprocal_g


@pytest.mark.parametrize("phase,zone,rot", [("Si", (1, 1, 0), 17.0), ("GaAs", (1, 1, 2), -40.0),
                                            ("Au", (1, 1, 1), 5.0), ("Si", (0, 0, 1), 0.0)])
def test_fill_matches_independent_generator(phase, zone, rot):
    """Column fill == brute-force fill of the same box (synth.oriented_atoms): same atoms, same species."""
    st = load_structure(phase)
    M = orientation_matrix(st, zone, rot)
    origin = (0.011, 0.023, 0.0137)   # off the slab boundaries: no atoms exactly on z = 0
    cell = cell_from_structure(st, M, zone)
    cols = crystal_columns(cell, (0, 0, 4.0, 3.0), origin)
    idx, z = expand_columns(cols, 1.7)
    pos = np.column_stack([cols.xy[idx], z])
    Z = cell.numbers[cols.basis[idx]]
    ref, Zr = oriented_atoms(st, M, (4.0, 3.0, 1.7), origin_nm=origin)
    assert len(pos) == len(ref)
    d, k = cKDTree(ref).query(pos)
    assert d.max() < 1e-9
    assert np.array_equal(Z, Zr[k])


def test_beam_period_of_centred_lattices():
    si = load_structure("Si")
    au = load_structure("Au")
    a_si, a_au = 0.5431, 0.40782
    for st, zone, expect in [(si, (1, 1, 0), a_si / np.sqrt(2)), (si, (0, 0, 1), a_si),
                             (si, (1, 1, 1), a_si * np.sqrt(3)), (au, (1, 1, 2), a_au * np.sqrt(6) / 2)]:
        cell = cell_from_structure(st, orientation_matrix(st, zone), zone)
        assert beam_period(cell) == pytest.approx(expect, rel=1e-9)
    cell = cell_from_structure(si, orientation_matrix(si, (1, 1, 0)), (1, 1, 0))
    assert commensurate_thickness(cell, 2.0) == pytest.approx(5 * a_si / np.sqrt(2))


def test_virtual_cell_reproduces_measured_d_spacings():
    """Nominal Si rescaled to g vectors measured on a Si0.3Ge0.7 lattice (a = 5.5843 Å), rotated 3°."""
    st = load_structure("Si")
    M = orientation_matrix(st, (1, 1, 0), 10.0, reference=(1, -1, 0))
    cell = cell_from_structure(st, M, (1, 1, 0))
    a_true = 0.55843
    M_true = orientation_matrix(st, (1, 1, 0), 13.0, reference=(1, -1, 0))
    g = reciprocal_g(st, M_true, [[1, -1, -1], [2, -2, 0]], a_true / 0.5431)
    vc, info = virtual_cell(cell, g)
    true_cell = cell_from_structure(st, M_true, (1, 1, 0))
    # in-plane lattice = the true one (scaled, rotated by 3 deg); along the beam scaled isotropically
    assert np.allclose(vc.lattice_nm, true_cell.lattice_nm * a_true / 0.5431, atol=1e-9)
    assert info["hkl"].tolist() == [[1, -1, -1], [2, -2, 0]]
    with pytest.raises(ValueError):
        virtual_cell(cell, g * 1.5)   # 50 % off: does not index


def test_uniform_strain_through_displacement_path_is_exact():
    """A uniform strain given as a measured (Eulerian) field yields exactly the strained lattice."""
    st = load_structure("Si")
    M = orientation_matrix(st, (1, 1, 0), 7.0)
    cell = cell_from_structure(st, M, (1, 1, 0))
    E = np.array([[0.012, 0.004], [-0.003, 0.031]])
    F = np.eye(2) + E
    shape, px = (200, 240), (0.025, 0.025)
    field = DisplacementField.uniform_gradient(E, shape, px)
    labels = np.ones(shape, np.int32)
    res = build_model(labels, px, [RegionPlan(1, cell, "reference", origin_nm=np.array([0.003, 0.005, 0.01]))],
                      1.5, field)
    X = res.positions_nm[:, :2] - res.displacement_nm[:, :2]
    # the deformed positions are F X (exactly, up to the fixed-point tolerance)
    assert np.abs(res.positions_nm[:, :2] - X @ F.T).max() < 1e-7
    # and X are sites of the unstrained lattice
    ref_cols = crystal_columns(cell, (-1, -1, 7, 6), (0.003, 0.005, 0.01))
    d, _ = cKDTree(ref_cols.xy).query(X)
    assert d.max() < 1e-9
    # every lattice column whose deformed position falls in the image is present once
    Xall = ref_cols.xy
    x = Xall @ F.T
    j, i = np.rint(x[:, 0] / px[0]), np.rint(x[:, 1] / px[1])
    inside = (i >= 0) & (i < shape[0]) & (j >= 0) & (j < shape[1])
    n_cols_model = len(np.unique(np.round(res.positions_nm[:, :2], 7), axis=0))
    n_cols_ref = len(np.unique(np.round(x[inside], 7), axis=0))
    assert n_cols_model == n_cols_ref


def test_lagrangian_inversion_of_a_nonuniform_field():
    """x = X + u_L(X) satisfies u_L(X) = u_E(x) for a smooth non-uniform measured field."""
    n, px = 256, 0.04
    y, x = np.mgrid[0:n, 0:n] * px

    def ue(xx, yy):
        return 0.05 * np.sin(2 * np.pi * yy / 5.0), 0.03 * np.cos(2 * np.pi * xx / 7.0)

    fld = DisplacementField.from_maps(*ue(x, y), (px, px))
    X = np.random.default_rng(0).random((2000, 2)) * 8 + 1
    uL, info = fld.lagrangian(X)
    xs = X + uL
    ux, uy = ue(xs[:, 0], xs[:, 1])
    assert info["not_converged"] == 0
    assert np.abs(np.column_stack([ux, uy]) - uL).max() < 2e-6     # spline interpolation error only


def test_masked_pixels_filled_from_nearest_valid():
    n = 64
    ux = np.full((n, n), 0.02)
    uy = np.zeros((n, n))
    mask = np.ones((n, n), bool)
    mask[20:30, 20:30] = False
    ux[~mask] = np.nan
    f = DisplacementField.from_maps(ux, uy, (0.05, 0.05), mask)
    u = f(np.array([[1.2, 1.2], [0.3, 0.3]]))
    assert np.allclose(u[:, 0], 0.02) and np.allclose(u[:, 1], 0.0)


def test_remove_close_atoms_greedy_and_priority():
    # a chain of atoms 0.1 nm apart with threshold 0.15: every other atom survives
    p = np.column_stack([np.arange(10) * 0.1, np.zeros(10), np.zeros(10)])
    keep, npairs = remove_close_atoms(p, 0.15)
    assert npairs == 9
    assert keep.tolist() == [True, False] * 5
    # priority: atom 1 outranks atoms 0 and 2
    p3 = p[:3]
    keep, _ = remove_close_atoms(p3, 0.15, priority=np.array([1, 0, 1]))
    assert keep.tolist() == [False, True, False]
    # periodic along z: atoms at z = 0.01 and 1.99 in a 2 nm period are 0.02 apart
    q = np.array([[0, 0, 0.01], [0, 0, 1.99], [1, 1, 1]])
    keep, _ = remove_close_atoms(q, 0.1, period_z_nm=2.0)
    assert keep.tolist() == [True, False, True]
