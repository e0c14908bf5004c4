"""Figure of spin_orbit: shear strain around the well and the inverse spin–orbit length along it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def spin_orbit_figure(folder, arr: np.ndarray, smap: np.ndarray, eps: dict, well: np.ndarray, px) -> Path:
    """``spin_orbit.png``: ε_xy (image axes) with the well outline and the 1/l_so map; the profile of
    1/l_so (± σ) and of the shear gradient along the well."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, axs = new_figure(3, 1, size=4.2)
    ext = image_extent_nm(well.shape, px)
    e = eps["exy"]
    lim = max(float(np.nanpercentile(np.abs(e), 99)), 1e-6)
    im = axs[0, 0].imshow(e, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
    axs[0, 0].contour(well.astype(float), [0.5], colors="k", linewidths=0.6, extent=ext, origin="upper")
    axs[0, 0].set_title("shear ε_xy (image axes), well outlined", fontsize=9)
    fig.colorbar(im, ax=axs[0, 0], shrink=0.7)
    im = axs[0, 1].imshow(smap, cmap="viridis", extent=ext)
    axs[0, 1].set_title("1/l_so (µm⁻¹) in the well", fontsize=9)
    fig.colorbar(im, ax=axs[0, 1], shrink=0.7)
    for a in axs[0, :2]:
        a.set_xlabel("x (nm)")
        a.set_ylabel("y (nm)")
    ax = axs[0, 2]
    x, v, s = arr[:, 0], arr[:, 4], arr[:, 5]
    ax.plot(x, v, "o-", ms=3, label="1/l_so")
    if np.isfinite(s).any():
        ax.fill_between(x, v - s, v + s, alpha=0.3, label="± 1σ")
    ax.set_xlabel("x along the well (nm)")
    ax.set_ylabel("1/l_so (µm⁻¹)")
    ax2 = ax.twinx()
    ax2.plot(x, arr[:, 8], "r:", label="dε_xz/dz")
    ax2.set_ylabel("dε_xz/dz in the well (nm⁻¹, crystal axes)", color="r")
    ax.legend(fontsize=7)
    return save_figure(fig, folder / "spin_orbit.png")
