"""Region table and contour polygons against shapes with known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from temtwin.segment.regions import polygon_area, region_contours, region_table


def test_disk_table_and_contour():
    px = (0.1, 0.2)                                   # non-square pixels
    yy, xx = np.mgrid[0:120, 0:200]
    cx, cy, r = 11.0, 12.0, 5.0                       # nm
    lab = np.ones((120, 200), np.int32)
    disk = (xx * px[0] - cx) ** 2 + (yy * px[1] - cy) ** 2 <= r * r
    lab[disk] = 2
    img = np.where(disk, 10.0, 1.0)
    t = region_table(lab, img, px)
    assert t.label.tolist() == [1, 2]
    assert t.area_nm2[1] == pytest.approx(np.pi * r * r, rel=0.01)
    assert t.centroid_nm[1] == pytest.approx([cx, cy], abs=0.02)
    assert t.mean_intensity.tolist() == [1.0, 10.0]
    assert t.touches_border.tolist() == [True, False]
    contours, holes = region_contours(lab, px, tolerance_nm=0.05)
    poly = contours[2]
    rad = np.hypot(poly[:, 0] - cx, poly[:, 1] - cy)
    assert np.all(np.abs(rad - r) < 0.25)             # on the circle within about a pixel
    assert polygon_area(poly) == pytest.approx(np.pi * r * r, rel=0.03)
    assert polygon_area(poly) > 0                     # orientation convention
    assert 1 in holes and polygon_area(holes[1][0]) == pytest.approx(np.pi * r * r, rel=0.03)
    # the outer contour of the background is the image frame, on the outer pixel edges
    assert polygon_area(contours[1]) == pytest.approx(200 * 0.1 * 120 * 0.2, rel=1e-4)  # corners cut
    assert contours[1][:, 0].min() == pytest.approx(-0.05) and contours[1][:, 1].max() == pytest.approx(119.5 * 0.2)


def test_tolerance_simplifies_polygons():
    lab = np.ones((100, 100), np.int32)
    yy, xx = np.mgrid[0:100, 0:100]
    lab[(xx - 50) ** 2 + (yy - 50) ** 2 < 900] = 2
    fine, _ = region_contours(lab, (1.0, 1.0), tolerance_nm=0.0)
    coarse, _ = region_contours(lab, (1.0, 1.0), tolerance_nm=2.0)
    assert len(coarse[2]) < len(fine[2]) / 3
    assert polygon_area(coarse[2]) == pytest.approx(polygon_area(fine[2]), rel=0.05)
