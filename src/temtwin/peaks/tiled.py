"""``fft_peaks`` on very large images (gigapixel overviews): every region analysed in its bounding box.

:func:`temtwin.peaks.analysis.analyse_image` builds a full-size mask per region; on a 16 384² overview
that is 268 MB per region and a full-image scan (plus the coordinates of every region pixel) each time.
Above :data:`LARGE_PX` pixels the regions' bounding boxes are found in one pass
(``scipy.ndimage.find_objects``) and each region is analysed on its box: the mask, the window choice
(:func:`temtwin.peaks.window.region_window`) and the windowed FFTs see only that box, and the window
is shifted back to image pixels.  The window is capped at ``peaks.max_window_px`` (centre-cropped) as
for any image, so the FFT work per region does not grow with the image.  The science is that of
:func:`analyse_region`; only the inscribed-rectangle search runs on the box (its coarse grid then
follows the box's size rather than the image's).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

LARGE_PX = 8192 * 8192


def analyse_large(image: np.ndarray, pixel_size_nm, labels: np.ndarray, cfg: dict, net=None, progress=None,
                  workers: int | None = None) -> dict:
    """{label: RegionResult} for every label > 0, each region analysed on its bounding box."""
    from .analysis import analyse_region

    objs = ndi.find_objects(labels)
    ids = [i + 1 for i, sl in enumerate(objs) if sl is not None]
    out = {}
    for k, lab in enumerate(ids):   # loop over regions; each analysis is vectorised on its box
        sl = objs[lab - 1]
        mask = labels[sl] == lab
        res = analyse_region(image[sl], pixel_size_nm, mask, cfg, net=net, label=lab, workers=workers)
        r0, c0 = sl[0].start, sl[1].start
        b = res.window.box
        res.window = replace(res.window, box=(b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0))
        out[lab] = res
        if progress:
            progress(k + 1, len(ids), "regions")
    return out
