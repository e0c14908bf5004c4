"""Sublattice-aware composition from element maps, map reading and registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from temtwin.errors import UserError
from temtwin.testing.synth.crystal import load_structure, orientation_matrix
from temtwin.twin.builder import RegionPlan, build_model
from temtwin.twin.composition import (ElementMap, assign_species, read_element_maps, register_maps,
                                      substitution_plan)
from temtwin.twin.fill import cell_from_structure

from conftest import write_hspy


def _model(phase, shape=(120, 160), px=0.025, thickness=1.6):
    st = load_structure(phase)
    M = orientation_matrix(st, (1, 1, 0), 0.0)
    cell = cell_from_structure(st, M, (1, 1, 0))
    res = build_model(np.ones(shape, np.int32), (px, px), [RegionPlan(1, cell, "reference")], thickness)
    return res, cell


def _const_map(el, value, shape=(20, 20), pe=0.5):
    return ElementMap(el, np.full(shape, float(value)), (pe, pe))


def test_sublattice_aware_substitution_never_puts_cation_on_anion_site():
    """(In,Ga)(As,P) from In and P maps on GaAs: In only on Ga sites, P only on As sites."""
    res, cell = _model("GaAs", shape=(200, 240), thickness=2.4)     # ~2900 atoms
    hosts = sorted(set(res.host.tolist()))                   # [31 Ga, 33 As]
    sub = np.searchsorted(hosts, res.host)
    maps = {"In": _const_map("In", 0.5), "P": _const_map("P", 0.3)}
    Z, info = assign_species(res.host, sub, hosts, res.positions_nm[:, :2], res.region, maps, (-1.0, -1.0),
                             np.random.default_rng(1))
    cation = np.isin(Z, [31, 49])
    anion = np.isin(Z, [33, 15])
    assert np.all(cation == (res.host == 31)) and np.all(anion == (res.host == 33))
    # geometric check, independent of the bookkeeping: every cation's 4 nearest neighbours are anions
    tree = cKDTree(res.positions_nm)
    d, k = tree.query(res.positions_nm[cation], k=5)
    pc = res.positions_nm[cation]
    inner = (pc[:, 0] > 0.5) & (pc[:, 0] < 5.5) & (pc[:, 1] > 0.5) & (pc[:, 1] < 4.5) \
        & (pc[:, 2] > 0.4) & (pc[:, 2] < 2.0)
    assert inner.sum() > 300
    assert np.all(anion[k[inner, 1:]])
    # fractions: In on the cation sublattice, P on the anion sublattice (binomial sigma ~0.012)
    assert (Z[res.host == 31] == 49).mean() == pytest.approx(0.5, abs=0.05)
    assert (Z[res.host == 33] == 15).mean() == pytest.approx(0.3, abs=0.05)
    assert info["Ga"]["elements"] == ["Ga", "In"] and info["As"]["elements"] == ["As", "P"]


def test_substitution_plan_groups_and_overrides():
    assert substitution_plan([14], ["Ge", "Si"]) == {0: ["Ge", "Si"]}
    assert substitution_plan([31, 33], ["In", "Sb"]) == {0: ["In"], 1: ["Sb"]}
    assert substitution_plan([14], ["O"]) == {0: []}                    # no group-16 host: unused
    assert substitution_plan([31, 33], ["Mn"], {"Mn": "Ga"}) == {0: ["Mn"], 1: []}


def test_local_fractions_follow_the_map_and_are_deterministic():
    """A Ge map stepping from 0.2 (left) to 0.8 (right) on Si sites; host Si has no map."""
    res, _ = _model("Si", shape=(120, 200))
    m = np.full((12, 20), 0.2)
    m[:, 10:] = 0.8
    maps = {"Ge": ElementMap("Ge", m, (0.25, 0.25))}
    sub = np.zeros(len(res), int)
    Z1, _ = assign_species(res.host, sub, [14], res.positions_nm[:, :2], res.region, maps, (0.0, 0.0),
                           np.random.default_rng(7))
    Z2, _ = assign_species(res.host, sub, [14], res.positions_nm[:, :2], res.region, maps, (0.0, 0.0),
                           np.random.default_rng(7))
    Z3, _ = assign_species(res.host, sub, [14], res.positions_nm[:, :2], res.region, maps, (0.0, 0.0),
                           np.random.default_rng(8))
    assert np.array_equal(Z1, Z2) and not np.array_equal(Z1, Z3)
    x = res.positions_nm[:, 0]
    left, right = x < 2.2, (x > 2.8) & (x < 4.9)
    assert (Z1[left] == 32).mean() == pytest.approx(0.2, abs=0.03)
    assert (Z1[right] == 32).mean() == pytest.approx(0.8, abs=0.03)


def test_read_maps_and_register_offset(tmp_path):
    """Maps saved as .hspy are read with their calibration and found in the image by template matching."""
    rng = np.random.default_rng(0)
    px, pe = 0.02, 0.2
    n = 400
    # a composition pattern with structure on the map's scale; the image's mean intensity follows it
    comp = ndimage.gaussian_filter(rng.random((n // 10, n // 10)), 1.5)
    comp = (comp - comp.min()) / np.ptp(comp)
    fine = ndimage.zoom(comp, 10, order=1)
    image = (1.0 + fine) * (1 + 0.1 * rng.standard_normal((n, n)))
    # the map covers image pixels starting at (row 60, col 100) -> map pixel (0,0) centre
    r0, c0, size = 60, 100, 20
    block = fine[r0:r0 + size * 10, c0:c0 + size * 10].reshape(size, 10, size, 10).mean((1, 3))
    write_hspy(tmp_path / "eels" / "Ge.hspy", block.astype(np.float32), scale=(pe, pe))
    write_hspy(tmp_path / "eels" / "Si.hspy", (1 - block).astype(np.float32), scale=(pe, pe))
    maps = read_element_maps([tmp_path / "eels" / "Ge.hspy", tmp_path / "eels" / "Si.hspy"])
    assert set(maps) == {"Ge", "Si"} and maps["Ge"].pixel_size_nm == pytest.approx((pe, pe))
    off, score = register_maps(maps, image, (px, px))
    true_off = np.array([c0 * px + (pe - px) / 2, r0 * px + (pe - px) / 2])
    assert score > 0.8
    assert np.abs(off - true_off).max() < 0.25 * pe


def test_bad_map_names_and_calibration(tmp_path):
    np.save(tmp_path / "Xx.npy", np.zeros((4, 4)))
    with pytest.raises(UserError, match="not a chemical element"):
        read_element_maps([tmp_path / "Xx.npy"])
    np.save(tmp_path / "Ge.npy", np.zeros((4, 4)))
    with pytest.raises(UserError, match="pixel_size_nm"):
        read_element_maps([tmp_path / "Ge.npy"])
    assert read_element_maps([tmp_path / "Ge.npy"], 0.3)["Ge"].pixel_size_nm == (0.3, 0.3)
