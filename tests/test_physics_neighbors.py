"""Neighbour lists (temtwin.physics.neighbors) against geometry and a brute-force reference."""

import itertools

import numpy as np
import pytest
from ase.build import bulk

from temtwin.physics.neighbors import bond_list, neighbor_table

A_SI = 5.431
D_SI = A_SI * np.sqrt(3) / 4


def brute_force_bonds(pos, cell, pbc, cutoff, k=4):
    """Mutual k-nearest bonds within cutoff by explicit image enumeration: set of (i, j, image)."""
    n = len(pos)
    ranges = [range(-2, 3) if p else range(1) for p in pbc]
    cand = []
    for i in range(n):
        found = []
        for j in range(n):
            for img in itertools.product(*ranges):
                if i == j and not any(img):
                    continue
                v = pos[j] + np.array(img) @ cell - pos[i]
                d = np.linalg.norm(v)
                if d < cutoff:
                    found.append((d, j, img))
        found.sort()
        cand.append({(j, img) for _, j, img in found[:k]})
    out = set()
    for i in range(n):
        for j, img in cand[i]:
            if (i, tuple(-np.array(img))) in cand[j]:
                out.add((i, j, tuple(int(x) for x in img)))
    return out


@pytest.mark.parametrize("cubic,rep", [(False, 1), (True, 1), (True, 3), (False, 3)])
def test_periodic_diamond_has_four_tetrahedral_bonds(cubic, rep):
    at = bulk("Si", "diamond", A_SI, cubic=cubic).repeat(rep)
    b = bond_list(at.positions, at.cell[:], at.pbc)
    assert np.all(b.coordination == 4)
    np.testing.assert_allclose(b.dist_A, D_SI, rtol=1e-12)
    # the four bond vectors of each atom cancel (tetrahedron) and pairwise make cos = -1/3
    s = np.zeros((len(at), 3))
    np.add.at(s, b.i, b.vec_A)
    assert np.abs(s).max() < 1e-10
    # symmetric: every i->j has j->i with the opposite vector
    key = {(i, j, tuple(np.round(v, 6))) for i, j, v in zip(b.i, b.j, b.vec_A)}
    assert all((j, i, tuple(np.round(-v, 6))) in key for i, j, v in zip(b.i, b.j, b.vec_A))
    # default cutoff = 1.2 x first-neighbour distance
    assert b.max_bond_A == pytest.approx(1.2 * D_SI, rel=1e-9)


def test_slab_surfaces_are_undercoordinated():
    at = bulk("Si", "diamond", A_SI, cubic=True).repeat((3, 4, 3))
    at.pbc = (True, False, True)  # open (001) surfaces along y
    b = bond_list(at.positions, at.cell[:], at.pbc)
    y = np.round(at.positions[:, 1] / (A_SI / 4)).astype(int)
    surface = (y == y.min()) | (y == y.max())
    assert np.all(b.coordination[surface] == 2)
    assert np.all(b.coordination[~surface] == 4)
    assert np.all(b.dist_A < 1.2 * D_SI)  # no second-shell bonds at the surface


def test_cluster_open_in_all_directions_matches_brute_force():
    at = bulk("Si", "diamond", A_SI, cubic=True).repeat(2)
    rng = np.random.default_rng(3)
    pos = at.positions + rng.normal(0, 0.05, at.positions.shape)
    b = bond_list(pos)  # no cell, no pbc
    got = {(int(i), int(j), tuple(int(x) for x in im)) for i, j, im in zip(b.i, b.j, b.image)}
    assert got == brute_force_bonds(pos, np.zeros((3, 3)), (False,) * 3, b.max_bond_A)
    assert b.coordination.min() >= 1 and b.coordination.max() == 4


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, True, False)])
def test_rattled_nonorthogonal_cell_matches_brute_force(pbc):
    at = bulk("Si", "diamond", A_SI).repeat((2, 3, 2))  # fcc primitive cell: non-orthogonal
    at.pbc = pbc
    rng = np.random.default_rng(7)
    pos = at.positions + rng.normal(0, 0.08, at.positions.shape)
    pos += 3.0 * at.cell[0]  # positions outside the cell are wrapped internally
    b = bond_list(pos, at.cell[:], pbc)
    got = {(int(i), int(j), tuple(int(x) for x in im)) for i, j, im in zip(b.i, b.j, b.image)}
    assert got == brute_force_bonds(pos, at.cell[:], pbc, b.max_bond_A)
    np.testing.assert_allclose(b.vec_A, pos[b.j] + b.image @ at.cell[:] - pos[b.i], atol=1e-12)
    np.testing.assert_allclose(b.dist_A, np.linalg.norm(b.vec_A, axis=1))


def test_table_reverse_slots_point_back():
    at = bulk("Si", "diamond", A_SI, cubic=True).repeat(2)
    t = neighbor_table(at.positions, at.cell[:], at.pbc)
    i, s = np.nonzero(t.nbr >= 0)
    j = t.nbr[i, s]
    r = t.rev[i, s]
    assert np.all(t.nbr[j, r] == i)
    assert np.all(t.image[j, r] == -t.image[i, s])


def test_empty_and_single_atom():
    assert len(bond_list(np.zeros((0, 3))).i) == 0
    b = bond_list(np.zeros((1, 3)))
    assert len(b.i) == 0 and b.coordination.tolist() == [0]
