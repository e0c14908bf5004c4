"""temtwin.testing.synth: the generated images carry exactly the structure they claim."""

import numpy as np
import pytest

from temtwin.testing.synth import crystal_scene, layered_scene, load_structure, lowmag_device, orientation_matrix


def _fft_peak(img, px, g):
    """|FFT| at image-frame spatial frequency g (nm^-1, [kx, ky]) relative to the median."""
    F = np.abs(np.fft.fft2(img - img.mean()))
    n = img.shape[0]
    j = int(round(g[0] * n * px)) % n
    i = int(round(g[1] * n * px)) % n
    return F[i, j] / np.median(F)


@pytest.mark.parametrize("rot", [0.0, 23.0])
def test_crystal_scene_reflections_where_orientation_says(rot):
    st = load_structure("Si")
    s = crystal_scene("Si", (1, 1, 0), rot, shape=(256, 256), pixel_size_nm=(0.02, 0.02), dose=None)
    M = np.asarray(s.truth["orientation_matrix"])
    assert np.allclose(M, orientation_matrix(st, (1, 1, 0), rot)) and np.allclose(M @ M.T, np.eye(3))
    recip = st.lattice.reciprocal_lattice_crystallographic.matrix * 10.0  # rows: a*, b*, c* in nm^-1
    for hkl, strong in (((1, -1, 1), True), ((2, -2, 0), True), ((0, 0, 4), True), ((1, 0, 0), False)):
        g = M @ (np.array(hkl, float) @ recip)
        if strong:
            assert abs(g[2]) < 1e-9                               # in the zero-order Laue zone
            assert _fft_peak(s.image, 0.02, g) > 50
    # the beam direction is the zone axis [110]
    zone = M @ (np.array([1, 1, 0.0]) @ st.lattice.matrix)
    assert np.allclose(zone / np.linalg.norm(zone), [0, 0, 1])


def test_layered_scene_strain_is_exact():
    s = layered_scene([dict(thickness_nm=3.0), dict(thickness_nm=2.0, eyy=0.02), dict(thickness_nm=3.0)],
                      shape=(400, 200), pixel_size_nm=(0.02, 0.02), dose=None)
    y = s.positions_nm[:, 1]
    lay = s.truth["layers"]
    # (004) plane spacing along growth in each layer from atom heights
    for L, e in zip(lay, (0.0, 0.02, 0.0)):
        inside = (y < L["y_bottom_nm"] - 0.3) & (y > L["y_top_nm"] + 0.3)
        heights = np.unique(np.round(y[inside], 4))
        spacing = np.median(np.diff(heights))
        assert spacing == pytest.approx(0.5431 / 4 * (1 + e), rel=1e-3)
    assert set(np.unique(s.labels)) - {0} == {1, 2, 3}


def test_lowmag_device_labels():
    s = lowmag_device(shape=(128, 128), pixel_size_nm=(1.0, 1.0), dose=None)
    assert s.labels.max() == len(s.truth["names"])
    means = [s.noisefree[s.labels == k].mean() for k in range(1, s.labels.max() + 1)]
    assert len(set(np.round(means, 2))) == len(means)         # every layer has its own contrast
