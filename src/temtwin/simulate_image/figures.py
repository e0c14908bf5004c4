"""Figure: input | simulated | residual (shared intensity scale for the first two, residual symmetric)."""

from __future__ import annotations

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def comparison_figure(data, sim, pixel_nm, path, title: str = "", mask=None):
    """Save the three-panel comparison to ``path`` (PNG); axes in nm (x right, y down)."""
    fig, ax = new_figure(3, 1, size=3.6)
    ext = image_extent_nm(data.shape, pixel_nm)
    m = np.ones(data.shape, bool) if mask is None or not mask.any() else mask
    lo, hi = np.percentile(data[m], [0.5, 99.5])
    res = data - sim
    r = float(np.percentile(np.abs(res[m]), 99.5)) or 1.0
    ax[0, 0].imshow(data, cmap="gray", vmin=lo, vmax=hi, extent=ext)
    ax[0, 0].set_title("input")
    ax[0, 1].imshow(sim, cmap="gray", vmin=lo, vmax=hi, extent=ext)
    ax[0, 1].set_title("simulated")
    im = ax[0, 2].imshow(np.where(m, res, 0.0), cmap="RdBu_r", vmin=-r, vmax=r, extent=ext)
    ax[0, 2].set_title("residual (compared pixels)")
    fig.colorbar(im, ax=ax[0, 2], fraction=0.046)
    for a in ax[0]:
        a.set_xlabel("x (nm)")
    ax[0, 0].set_ylabel("y (nm)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
