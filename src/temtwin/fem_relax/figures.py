"""Figures of fem_relax: lamella versus device strain, and the comparison with GPA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def _lim(*arrs):
    v = np.concatenate([np.ravel(a)[np.isfinite(np.ravel(a))] for a in arrs] + [np.zeros(1)])
    m = float(np.percentile(np.abs(v), 99)) if v.size else 1e-3
    return max(m, 1e-5)


def relax_figures(folder, grid: dict, px, regions: dict, thickness: float, model, strains) -> list[Path]:
    """``lamella_vs_device.png`` (maps of ε_yy, the relaxation and a growth profile) and, with GPA,
    ``gpa_comparison.png`` (GPA, fitted lamella and residual per component)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    x, y = model.nodes[:, 0], model.nodes[:, 1]
    dev = strains["device"][:, 1]                       # maps: a priori (table lattices)
    lam = strains["lamella"][:, 1]
    lim = _lim(dev, lam)
    fig, axs = new_figure(3, 1, size=4.2)
    fig.subplots_adjust(wspace=0.45)
    for ax, v, title in ((axs[0, 0], dev, "device (plane strain)"),
                         (axs[0, 1], lam, f"lamella t = {thickness:.3g} nm (thickness average)")):
        im = ax.tripcolor(x, y, model.tri, facecolors=v, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_aspect("equal")
        ax.set_title(f"ε_yy {title}, table lattices", fontsize=8)
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm, growth up)")
        fig.colorbar(im, ax=ax, shrink=0.7)
    ax = axs[0, 2]
    cx = 0.5 * (x.min() + x.max())
    cent = model.nodes[model.tri].mean(axis=1)
    band = np.abs(cent[:, 0] - cx) < 0.1 * np.ptp(x) + 1e-9
    edges = np.linspace(y.min(), y.max(), 61)
    yb = 0.5 * (edges[1:] + edges[:-1])
    idx = np.clip(np.digitize(cent[band, 1], edges) - 1, 0, 59)
    cnt = np.bincount(idx, minlength=60)
    for v, lab, st in ((strains["device_fit"][:, 1], "device (fit)", "-"),
                       (strains["lamella_fit"][:, 1], "lamella (fit)", "--"), (dev, "device (table)", ":"),
                       (lam, "lamella (table)", "-.")):
        mean = np.bincount(idx, weights=v[band], minlength=60) / np.maximum(cnt, 1)
        ax.plot(yb[cnt > 0], mean[cnt > 0], st, label=lab)
    if "gpa" in grid:
        g = grid["gpa"]["eyy"]
        col = int(round(cx / px[0]))
        if 0 <= col < g.shape[1]:
            ax.plot(-np.arange(g.shape[0]) * px[1], g[:, col], ".", ms=2, alpha=0.5, label="GPA")
    ax.set_xlabel("y (nm, growth up)")
    ax.set_ylabel("ε_yy vs reference lattice")
    ax.set_title(f"profile at x = {cx:.0f} nm (band ±10 % of the width)", fontsize=9)
    ax.legend(fontsize=7)
    out.append(save_figure(fig, folder / "lamella_vs_device.png"))
    if "gpa" in grid and "lamella_fit" in grid:
        fig, axs = new_figure(3, 3, size=3.3)
        ext = image_extent_nm(grid["gpa"]["exx"].shape, px)
        for j, k in enumerate(("exx", "eyy", "exy")):
            a, b = grid["gpa"][k], grid["lamella_fit"][k]
            lim = _lim(a, b)
            for i, (v, t) in enumerate(((a, "GPA"), (b, "lamella fit"), (b - a, "fit − GPA"))):
                im = axs[i, j].imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
                axs[i, j].set_title(f"{k} {t}", fontsize=9)
                fig.colorbar(im, ax=axs[i, j], shrink=0.7)
        out.append(save_figure(fig, folder / "gpa_comparison.png"))
    return out
