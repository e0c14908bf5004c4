"""Propagation of phases and strain to overview regions (temtwin.stack.propagate), exact geometry."""

from __future__ import annotations

import math

import numpy as np

from temtwin.stack.chain import StackPlacement
from temtwin.stack.inputs import ImageResults
from temtwin.stack.propagate import propagate

PX_OV = (1.0, 1.0)
OV_SHAPE = (100, 120)


def _placement(name, offset_nm, rot_deg, px, accepted=True):
    """StackPlacement of an image with pixel size px placed at offset (overview px = nm here)."""
    t = math.radians(rot_deg)
    T = np.eye(3)
    T[:2, :2] = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) * px / PX_OV[0]
    T[:2, 2] = offset_nm
    return StackPlacement(name, "ov", T, tuple(offset_nm), px / PX_OV[0], rot_deg, 0.9 if accepted else 0.1,
                          accepted, "" if accepted else "refused")


def _image_positions(pl, shape):
    rows, cols = shape
    r, c = np.mgrid[0:rows, 0:cols]
    T = pl.to_overview
    return T[0, 0] * c + T[0, 1] * r + T[0, 2], T[1, 0] * c + T[1, 1] * r + T[1, 2]


def _setup():
    ov_lab = np.where(np.arange(OV_SHAPE[0])[:, None] < 50, 1, 2) * np.ones(OV_SHAPE, np.int32)
    shape_a = (160, 160)
    pa = _placement("a", (40.0, 30.0), 30.0, 0.25)          # 40 nm field rotated 30 deg, across y = 50
    x, y = _image_positions(pa, shape_a)
    lab_a = np.where(y < 49.5, 1, 2).astype(np.int32)       # its own segmentation, same boundary
    res_a = ImageResults("a", lab_a, {1: {"phase": "Si", "identified": True, "confidence": 0.9,
                                          "zone_axis": [1, 1, 0], "rotation_deg": 10.0},
                                      2: {"phase": "Ge", "identified": True, "confidence": 0.8}},
                         {"exx": np.full(shape_a, 0.01), "eyy": np.zeros(shape_a), "exy": np.zeros(shape_a),
                          "rotation": np.full(shape_a, 0.002)}, None)
    return ov_lab, shape_a, pa, res_a, (x, y)


def test_phases_strain_and_coverage_reach_the_overview_regions():
    ov_lab, shape_a, pa, res_a, (x, y) = _setup()
    placements = {"ov": StackPlacement("ov", "", np.eye(3), (0.0, 0.0), 1.0, 0.0, 1.0, True), "a": pa}
    results = {"ov": ImageResults("ov", ov_lab), "a": res_a}
    regions, pmap, names = propagate("ov", ov_lab, PX_OV, placements, results,
                                     {"ov": OV_SHAPE, "a": shape_a}, {"ov": PX_OV, "a": (0.25, 0.25)})
    assert regions[1].phase == "Si" and regions[2].phase == "Ge"
    assert names[0] == "" and set(names[1:]) == {"Si", "Ge"}
    assert names[pmap[10, 10]] == "Si" and names[pmap[90, 10]] == "Ge"
    # covered fractions: the image's area on each side of y = 49.5, computed independently
    up = float((y < 49.5).sum()) * 0.25 ** 2
    down = float((y >= 49.5).sum()) * 0.25 ** 2
    a1, a2 = 50 * 120, 50 * 120
    assert abs(regions[1].covered_fraction - up / a1) < 0.1 * up / a1
    assert abs(regions[2].covered_fraction - down / a2) < 0.1 * down / a2
    src = regions[1].sources[0]
    assert src["image"] == "a" and src["region"] == 1 and src["zone_axis"] == [1, 1, 0]
    assert abs(src["rotation_deg_overview"] - 40.0) < 1e-9          # 10 deg in the image + 30 deg image rotation
    assert abs(src["area_nm2"] - up) < 0.05 * up
    # strain: exx = 0.01 in the image axes, rotated by 30 deg into the overview axes
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    st = regions[1].strain
    assert abs(st["exx_mean"] - 0.01 * c * c) < 1e-9 and abs(st["eyy_mean"] - 0.01 * s * s) < 1e-9
    assert abs(st["exy_mean"] - 0.01 * c * s) < 1e-9 and abs(st["rotation_mean"] - 0.002) < 1e-12
    assert st["images"] == ["a"]


def test_slivers_and_refused_images_are_not_sources():
    ov_lab, shape_a, pa, res_a, (x, y) = _setup()
    # an image region that is only a thin strip (10 % of the image's part of region 1): not a source
    lab = res_a.labels.copy()
    lab[(y < 49.5) & (x < x.min() + 0.1 * (x.max() - x.min()))] = 3
    res_a.regions[3] = {"phase": "GaAs", "identified": True, "confidence": 1.0}
    res_a.labels = lab
    pb = _placement("b", (5.0, 5.0), 0.0, 0.25, accepted=False)     # refused: must not count
    res_b = ImageResults("b", np.ones((80, 80), np.int32), {1: {"phase": "Au", "identified": True}})
    placements = {"ov": StackPlacement("ov", "", np.eye(3), (0.0, 0.0), 1.0, 0.0, 1.0, True), "a": pa, "b": pb}
    results = {"ov": ImageResults("ov", ov_lab), "a": res_a, "b": res_b}
    regions, pmap, names = propagate("ov", ov_lab, PX_OV, placements, results,
                                     {"ov": OV_SHAPE, "a": shape_a, "b": (80, 80)},
                                     {"ov": PX_OV, "a": (0.25, 0.25), "b": (0.25, 0.25)})
    phases_1 = {s["phase"] for s in regions[1].sources}
    assert phases_1 == {"Si"} and "Au" not in names and "GaAs" not in names


def test_single_image_keeps_its_own_phases():
    lab = np.zeros((40, 50), np.int32)
    lab[:, :20], lab[:, 20:] = 1, 2
    res = ImageResults("only", lab, {1: {"phase": "Si", "identified": True}, 2: {"phase": "", "identified": False}})
    pl = {"only": StackPlacement("only", "", np.eye(3), (0.0, 0.0), 1.0, 0.0, 1.0, True)}
    regions, pmap, names = propagate("only", lab, (0.1, 0.1), pl, {"only": res}, {"only": (40, 50)},
                                     {"only": (0.1, 0.1)})
    assert regions[1].phase == "Si" and regions[2].phase == ""
    assert (pmap[:, :20] == names.index("Si")).all() and (pmap[:, 20:] == 0).all()
    assert regions[1].covered_fraction == 0.0      # nothing but the overview itself
