"""Figures of the atomic model: projected views (by species, by displacement) and the quality map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import new_figure, save_figure

_MAX_POINTS = 250_000


def _subsample(n: int, limit: int = _MAX_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).astype(np.int64)


def model_figures(folder, res, q, img) -> list[Path]:
    """Write ``species.png``, ``displacement.png`` and ``quality.png`` into ``folder``."""
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    p = res.positions_nm
    # draw the top layer last so the projection shows the visible atoms; stable order for determinism
    order = np.argsort(p[:, 2], kind="stable") if len(p) else np.zeros(0, int)
    sel = order[_subsample(len(order))]
    W, H = res.cell_nm[0, 0], res.cell_nm[1, 1]
    size = max(0.5, min(6.0, 2e4 / max(len(sel), 1)))

    fig, axs = new_figure(1, 1, size=6)
    ax = axs[0, 0]
    for z in np.unique(res.numbers):
        s = sel[res.numbers[sel] == z]
        ax.scatter(p[s, 0], p[s, 1], s=size, color=jmol_colors[int(z)], edgecolors="none",
                   label=f"{chemical_symbols[int(z)]} ({int((res.numbers == z).sum())})")
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(f"{img.name}: {len(res)} atoms, projected along the beam")
    if len(res):
        ax.legend(loc="upper right", markerscale=max(1.0, 6 / size), fontsize=8)
    out.append(save_figure(fig, folder / "species.png"))

    fig, axs = new_figure(2, 1, size=5)
    for k, (ax, comp) in enumerate(zip(axs[0], ("u_x", "u_y"))):
        v = res.displacement_nm[sel, k] * 1000.0 if len(sel) else np.zeros(0)
        lim = float(np.max(np.abs(v))) if len(v) else 1.0
        sc = ax.scatter(p[sel, 0], p[sel, 1], c=v, s=size, cmap="RdBu_r", vmin=-lim or -1, vmax=lim or 1,
                        edgecolors="none")
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_aspect("equal")
        ax.set_title(f"applied displacement ${comp}$ (pm)")
        ax.set_xlabel("x (nm)")
        fig.colorbar(sc, ax=ax, shrink=0.8)
    out.append(save_figure(fig, folder / "displacement.png"))

    fig, axs = new_figure(3, 1, size=4.5)
    fig.subplots_adjust(wspace=0.45)
    ext = q["map_extent_nm"]
    extent = [ext[0], ext[2], ext[3], ext[1]]
    im = axs[0, 0].imshow(q["map_flagged"], extent=extent, cmap="magma", vmin=0, vmax=max(0.05, np.nanmax(
        np.nan_to_num(q["map_flagged"]))))
    axs[0, 0].set_title(f"flagged atoms (|d/d0 - 1| > {q['thresholds']['short']:.0%})")
    fig.colorbar(im, ax=axs[0, 0], shrink=0.8)
    im = axs[0, 1].imshow(q["map_max_dev"], extent=extent, cmap="viridis")
    axs[0, 1].set_title("largest |d/d0 - 1| per bin")
    fig.colorbar(im, ax=axs[0, 1], shrink=0.8)
    for ax in axs[0, :2]:
        ax.set_xlabel("x (nm)")
    ax = axs[0, 2]
    d0s = [q["regions"][str(int(lab))]["ideal_nn_nm"] * 10.0 for lab in np.unique(res.region)]
    rng = (0.5 * min(d0s), 1.5 * max(d0s)) if d0s else (0.0, 1.0)
    for lab in np.unique(res.region):
        nn = np.clip(q["nn_nm"][res.region == lab] * 10.0, *rng)
        ax.hist(nn, bins=80, range=rng, histtype="step", label=f"region {int(lab)}")
        d0 = q["regions"][str(int(lab))]["ideal_nn_nm"] * 10.0
        ax.axvline(d0, color="k", lw=0.5)
    ax.set_xlabel("nearest-neighbour distance (Å)")
    ax.set_ylabel("atoms")
    if len(res):
        ax.legend(fontsize=8)
    out.append(save_figure(fig, folder / "quality.png"))
    return out
