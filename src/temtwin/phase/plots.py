"""Figures of the phase_id stage: indexed FFTs and Bragg-filtered maps."""

from __future__ import annotations

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure

COLOURS = ["#39ff14", "#00e5ff", "#ff9f1c", "#ff4fd8"]
#: longest side (px) of an image drawn in a figure: larger images are decimated (figures only)
FIGURE_MAX_PX = 1024


def thumbnail_step(shape, max_px: int = FIGURE_MAX_PX) -> int:
    """Decimation step that brings the longest side of ``shape`` to at most ``max_px`` pixels."""
    return max(1, -(-int(max(shape)) // int(max_px)))


def thumbnail(a: np.ndarray, max_px: int = FIGURE_MAX_PX) -> np.ndarray:
    """Every s-th pixel of ``a`` (s = :func:`thumbnail_step`), a small contiguous copy, for figures."""
    s = thumbnail_step(a.shape, max_px)
    return np.ascontiguousarray(a[::s, ::s])


def _bar(v: int) -> str:
    return str(v) if v >= 0 else "-" + str(-v)


def hkl_label(hkl, hexagonal: bool = False) -> str:
    """Plain-text Miller indices: (1-11), or (1-100) hexagonal."""
    h = [int(v) for v in hkl]
    if hexagonal:
        h = [h[0], h[1], -(h[0] + h[1]), h[2]]
    sep = "" if all(abs(v) < 10 for v in h) else ","
    return "(" + sep.join(_bar(v) for v in h) + ")"


def zone_label(uvw, uvw4=None) -> str:
    u = uvw4 if uvw4 is not None and len(uvw4) == 4 else uvw
    sep = "" if all(abs(int(v)) < 10 for v in u) else ","
    return "[" + sep.join(_bar(int(v)) for v in u) + "]"


def region_figure(path, label, fft, extent, spots_k: np.ndarray, crystals: list, lib, reason: str = "") -> None:
    """The region's FFT with measured peaks, predicted reflections of each crystal labelled by hkl,
    and the top candidates listed."""
    fig, axes = new_figure(2, 1, size=5.0, gridspec_kw={"width_ratios": [1.0, 0.62]})
    ax, tx = axes[0, 0], axes[0, 1]
    if fft is not None and extent is not None:
        S = fft.shape[0]
        hx = 0.5 * (extent[1] - extent[0]) / max(S - 1, 1)
        hy = 0.5 * (extent[3] - extent[2]) / max(S - 1, 1)
        ax.imshow(np.clip(fft, -2, 8), cmap="gray", extent=[extent[0] - hx, extent[1] + hx, extent[3] + hy,
                                                            extent[2] - hy], interpolation="nearest")
        lim = max(np.abs(extent).max(), 1e-3)
    else:
        lim = float(np.abs(spots_k).max() * 1.15) if len(spots_k) else 5.0
    if len(spots_k):
        ax.scatter(spots_k.real, spots_k.imag, s=55, facecolors="none", edgecolors="#ffd400", linewidths=0.8)
    gmax = float(np.abs(spots_k).max() * 1.1) if len(spots_k) else lim
    for ci, c in enumerate(crystals):
        col = COLOURS[ci % len(COLOURS)]
        pat = lib.patterns[c.p]
        z = c.scale * np.exp(1j * np.deg2rad(c.theta_deg))
        pts = z * (pat.points[:, 0] + 1j * pat.points[:, 1])
        sel = np.abs(pts) <= gmax
        ax.scatter(pts[sel].real, pts[sel].imag, s=14, marker="+", c=col, linewidths=0.8)
        hexa = pat.uvw4 is not None
        order = np.argsort(np.abs(c.k))
        for j in order[:16]:
            k = c.k[j]
            ax.annotate(hkl_label(c.hkl[j], hexa), (k.real, k.imag), xytext=(3, 3), textcoords="offset points",
                        color=col, fontsize=6)
    ax.set_xlim(-gmax, gmax)
    ax.set_ylim(gmax, -gmax)
    ax.set_xlabel("kx (nm$^{-1}$)")
    ax.set_ylabel("ky (nm$^{-1}$)")
    ax.set_title(f"region {label}")
    tx.axis("off")
    lines = []
    if not crystals:
        lines.append("not identified")
        if reason:
            lines.append(reason)
    for ci, c in enumerate(crystals):
        state = "" if c.identified else " (not identified)"
        lines.append(f"crystal {ci + 1}{state}: {c.phase} {zone_label(c.uvw, c.uvw4)}")
        lines.append(f"  rot {c.rotation_deg:.2f}°, scale {c.scale:.4f}")
        lines.append(f"  score {c.score:.3f}, conf {c.confidence:.2f}")
        lines.append("  candidates:")
        for cd in c.candidates:
            lines.append(f"   {cd['rank']}. {cd['phase']} {zone_label(cd['zone_axis'])} "
                         f"{cd['score']:.3f} / {cd['confidence']:.2f}")
        lines.append("")
    tx.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7,
            transform=tx.transAxes)
    save_figure(fig, path)


def bragg_figure(path, image: np.ndarray, pixel_size_nm, cmap_: np.ndarray | None, maps: list, names: list) -> None:
    """The image with the crystal map overlaid, and each crystal's normalised Bragg amplitude."""
    from matplotlib.colors import ListedColormap

    n = min(len(maps), 3)
    fig, axes = new_figure(1 + n, 1, size=4.0)
    ext = image_extent_nm(image.shape, pixel_size_nm)
    # large images are drawn decimated (every s-th pixel; maps already decimated by the caller are kept)
    s = thumbnail_step(image.shape)
    image = np.asarray(image)[::s, ::s]
    cmap_ = cmap_[::s, ::s] if cmap_ is not None else None
    maps = [m[::s, ::s] if m.shape[:2] != image.shape else m for m in maps[:n]]
    lo, hi = np.percentile(image, [1, 99])
    ax = axes[0, 0]
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=ext)
    if cmap_ is not None and cmap_.max() > 0:
        cols = ListedColormap(["none"] + COLOURS[: max(1, int(cmap_.max()))])
        ax.imshow(np.ma.masked_equal(cmap_, 0), cmap=cols, vmin=0, vmax=max(1, int(cmap_.max())), alpha=0.35,
                  extent=ext, interpolation="nearest")
    ax.set_title("crystal map: " + ", ".join(f"{i + 1} {nm}" for i, nm in enumerate(names[:4])), fontsize=7)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    for i in range(n):
        a = axes[0, 1 + i]
        a.imshow(maps[i], cmap="inferno", vmin=0, vmax=float(np.percentile(maps[i], 99.5)), extent=ext)
        a.set_title(f"Bragg amplitude: {names[i]}", fontsize=7)
        a.set_xlabel("x (nm)")
    save_figure(fig, path)
