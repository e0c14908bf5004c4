"""fft_peaks on gigapixel overviews (temtwin.peaks.tiled): regions analysed on their bounding boxes give
the decisions and reflections of the full-image path; forced on a small scene."""

from __future__ import annotations

import numpy as np

from temtwin.peaks import analyse_image
from temtwin.testing.synth import layered_scene

FAST = {"detectors": ["gaussian", "profile"]}


def test_bounding_box_path_finds_the_same_crystals_and_reflections(monkeypatch):
    from temtwin.peaks import tiled

    s = layered_scene(layers=[dict(thickness_nm=3.0), dict(thickness_nm=2.4)], shape=(320, 320),
                      pixel_size_nm=(0.02, 0.02), mode="hrtem", dose=300, seed=4, vacuum_top_nm=0.8)
    labels = s.labels.copy()
    labels[labels == 0] = labels.max() + 1            # vacuum: amorphous region
    full = analyse_image(s.image, s.pixel_size_nm, labels, FAST)
    monkeypatch.setattr(tiled, "LARGE_PX", 100)       # force the bounding-box path
    boxed = analyse_image(s.image, s.pixel_size_nm, labels, FAST)
    assert sorted(full) == sorted(boxed)
    assert any(r.crystalline for r in full.values()) and not all(r.crystalline for r in full.values())
    for lab, a in full.items():
        b = boxed[lab]
        assert a.crystalline == b.crystalline
        r0, c0, r1, c1 = b.window.box                    # image pixels, inside the region's bounding box
        rr, cc = np.nonzero(labels == lab)
        assert rr.min() <= r0 < r1 <= rr.max() + 1 and cc.min() <= c0 < c1 <= cc.max() + 1
        if b.window.mode == "window":
            assert (labels[r0:r1, c0:c1] == lab).all()
        if a.crystalline:
            ga = np.sort(np.hypot(a.peaks.kx, a.peaks.ky))
            gb = np.sort(np.hypot(b.peaks.kx, b.peaks.ky))
            # the strongest reflections agree within one FFT sample
            for g in ga[:4]:
                assert np.min(np.abs(gb - g)) <= 1.5 * b.spectrum.sampling
