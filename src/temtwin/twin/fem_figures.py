"""Figures of the FEM geometry: polygons over the image, and the mesh coloured by region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def fem_figures(folder, img, bnd, arrays: dict, phases: dict[int, str]) -> list[Path]:
    """Write ``geometry.png`` (polygons on the image) and ``mesh.png`` into ``folder``."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    cmap = plt.get_cmap("tab20")
    fig, axs = new_figure(1, 1, size=6)
    ax = axs[0, 0]
    try:
        data = img.load_image()
        lo, hi = np.percentile(data, [1, 99])
        ax.imshow(data, cmap="gray", vmin=lo, vmax=hi, extent=image_extent_nm(data.shape, img.pixel_size_nm))
    except Exception:  # the figure must not fail the stage
        pass
    for lab in sorted(bnd.regions):
        col = cmap(lab % 20)
        for outer, holes in bnd.polygons(lab):
            for ring in [outer, *holes]:
                r = np.vstack([ring, ring[:1]])
                ax.plot(r[:, 0], r[:, 1], "-", color=col, lw=1.0)
            c = outer.mean(0)
            ax.text(c[0], c[1], f"{lab}:{phases.get(lab, '') or '?'}", color=col, fontsize=7, ha="center",
                    va="center", bbox=dict(facecolor="white", alpha=0.6, lw=0, pad=1))
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    ax.set_title(f"{img.name}: {len(bnd.regions)} regions (simplified, conformal)")
    out.append(save_figure(fig, folder / "geometry.png"))

    fig, axs = new_figure(1, 1, size=6)
    ax = axs[0, 0]
    nodes, tri, reg = arrays["nodes"], arrays["triangles"], arrays["triangle_region"]
    if len(tri):
        import matplotlib.tri as mtri

        T = mtri.Triangulation(nodes[:, 0], nodes[:, 1], tri)
        ax.tripcolor(T, facecolors=(reg % 20).astype(float), cmap=cmap, vmin=0, vmax=19, edgecolors="k",
                     linewidth=0.1 if len(tri) < 20000 else 0.0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (nm, model axes)")
    ax.set_ylabel("y (nm, up)")
    ax.set_title(f"mesh: {len(nodes)} nodes, {len(tri)} triangles")
    out.append(save_figure(fig, folder / "mesh.png"))
    return out
