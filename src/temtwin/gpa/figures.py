"""Figures of the gpa stage: strain maps in % (one shared symmetric colour scale), rotation,
displacement, and the automatic choices (reference region, g vectors on the spectrum)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def _stride(shape, max_px: int = 1024) -> int:
    return max(1, int(np.ceil(max(shape) / max_px)))


def _sym_limit(arrays, q: float = 99.0, floor: float = 1e-6) -> float:
    vals = np.concatenate([np.abs(a[np.isfinite(a)]).ravel() for a in arrays] or [np.zeros(1)])
    if vals.size == 0:
        return floor
    return max(float(np.percentile(vals, q)), floor)


def strain_figure(maps: dict, pixel_size_nm, path: Path, title: str = "") -> Path:
    """exx, eyy, exy in % with one symmetric colour scale (99th percentile of |e|)."""
    s = _stride(maps["exx"].shape)
    arrs = [100.0 * maps[k][::s, ::s] for k in ("exx", "eyy", "exy")]
    lim = _sym_limit(arrs)
    ext = image_extent_nm(maps["exx"].shape, pixel_size_nm)
    fig, ax = new_figure(3, 1, size=3.6)
    for a, arr, name in zip(ax[0], arrs, ("exx", "eyy", "exy")):
        im = a.imshow(arr, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext, interpolation="nearest")
        a.set_title(f"{name} (%)")
        a.set_xlabel("x (nm)")
    ax[0][0].set_ylabel("y (nm)")
    fig.colorbar(im, ax=ax[0].tolist(), shrink=0.8, label="strain (%)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def strain_sigma_figure(maps: dict, sigma: dict, pixel_size_nm, path: Path, title: str = "") -> Path:
    """Strain (top row, %, shared symmetric scale) and its propagated standard deviation σ (bottom
    row, %, shared scale from 0 to the 99th percentile) for exx, eyy, exy; NaN (invalid) grey."""
    import matplotlib as mpl

    s = _stride(maps["exx"].shape)
    comps = ("exx", "eyy", "exy")
    arrs = [100.0 * maps[k][::s, ::s] for k in comps]
    sigs = [100.0 * sigma[k][::s, ::s] for k in comps]
    lim = _sym_limit(arrs)
    slim = _sym_limit(sigs)
    ext = image_extent_nm(maps["exx"].shape, pixel_size_nm)
    fig, ax = new_figure(3, 2, size=3.4)
    cm = mpl.colormaps["RdBu_r"].with_extremes(bad="0.6")
    cs = mpl.colormaps["magma"].with_extremes(bad="0.6")
    for j, name in enumerate(comps):
        im = ax[0][j].imshow(arrs[j], cmap=cm, vmin=-lim, vmax=lim, extent=ext, interpolation="nearest")
        ax[0][j].set_title(f"{name} (%)")
        ims = ax[1][j].imshow(sigs[j], cmap=cs, vmin=0, vmax=slim, extent=ext, interpolation="nearest")
        ax[1][j].set_title(f"σ({name}) (%)")
        ax[1][j].set_xlabel("x (nm)")
    ax[0][0].set_ylabel("y (nm)")
    ax[1][0].set_ylabel("y (nm)")
    fig.colorbar(im, ax=ax[0].tolist(), shrink=0.8, label="strain (%)")
    fig.colorbar(ims, ax=ax[1].tolist(), shrink=0.8, label="σ (%)")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def rotation_figure(rotation: np.ndarray, pixel_size_nm, path: Path) -> Path:
    """Rigid rotation map in degrees (symmetric scale)."""
    s = _stride(rotation.shape)
    deg = np.degrees(rotation[::s, ::s])
    lim = _sym_limit([deg], floor=1e-4)
    fig, ax = new_figure(1, 1, size=4.2)
    im = ax[0][0].imshow(deg, cmap="PuOr", vmin=-lim, vmax=lim,
                         extent=image_extent_nm(rotation.shape, pixel_size_nm), interpolation="nearest")
    ax[0][0].set_title("rotation ω (deg, +x towards +y)")
    ax[0][0].set_xlabel("x (nm)")
    ax[0][0].set_ylabel("y (nm)")
    fig.colorbar(im, ax=ax[0][0], shrink=0.8, label="deg")
    return save_figure(fig, path)


def displacement_figure(disp: np.ndarray, pixel_size_nm, path: Path) -> Path:
    """ux, uy in pm (symmetric scale each)."""
    s = _stride(disp.shape[1:])
    ext = image_extent_nm(disp.shape[1:], pixel_size_nm)
    fig, ax = new_figure(2, 1, size=3.8)
    for a, comp, name in zip(ax[0], disp, ("ux", "uy")):
        arr = 1000.0 * comp[::s, ::s]
        lim = _sym_limit([arr], floor=1e-3)
        im = a.imshow(arr, cmap="coolwarm", vmin=-lim, vmax=lim, extent=ext, interpolation="nearest")
        a.set_title(f"{name} (pm)")
        a.set_xlabel("x (nm)")
        fig.colorbar(im, ax=a, shrink=0.8)
    ax[0][0].set_ylabel("y (nm)")
    return save_figure(fig, path)


def choices_figure(image: np.ndarray, pixel_size_nm, reference: np.ndarray, g: np.ndarray,
                   centres: np.ndarray, sigma_k: float, path: Path, title: str = "") -> Path:
    """The image with the reference region outlined, and its power spectrum with g1, g2 and the
    Gaussian masks (1 and 2 σ_k circles)."""
    s = _stride(image.shape)
    fig, ax = new_figure(2, 1, size=4.2)
    ext = image_extent_nm(image.shape, pixel_size_nm)
    a = ax[0][0]
    a.imshow(image[::s, ::s], cmap="gray", extent=ext, interpolation="nearest")
    if reference is not None and reference.any():
        a.contour(reference[::s, ::s].astype(float), levels=[0.5], colors="yellow", linewidths=1.2,
                  extent=ext, origin="upper")
    a.set_title("reference region")
    a.set_xlabel("x (nm)")
    a.set_ylabel("y (nm)")
    # spectrum of a central crop
    n = min(1024, *image.shape)
    r0, c0 = (image.shape[0] - n) // 2, (image.shape[1] - n) // 2
    crop = image[r0:r0 + n, c0:c0 + n].astype(float)
    crop = (crop - crop.mean()) * np.hanning(n)[:, None] * np.hanning(n)[None, :]
    P = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(crop))) ** 2)
    kx_max = 0.5 / pixel_size_nm[0]
    ky_max = 0.5 / pixel_size_nm[1]
    b = ax[0][1]
    lo, hi = np.percentile(P, [50, 99.9])
    b.imshow(P, cmap="magma", vmin=lo, vmax=hi, extent=[-kx_max, kx_max, ky_max, -ky_max])
    t = np.linspace(0, 2 * np.pi, 90)
    for i, col in enumerate(("cyan", "lime")):
        b.plot([0, g[i, 0]], [0, g[i, 1]], color=col, lw=1)
        b.plot(g[i, 0], g[i, 1], "o", mfc="none", mec=col, ms=6, label=f"g{i + 1}")
        for m in (1, 2):
            b.plot(centres[i, 0] + m * sigma_k * np.cos(t), centres[i, 1] + m * sigma_k * np.sin(t),
                   color=col, lw=0.6, ls="--")
    lim = 1.6 * float(np.abs(g).max())
    b.set_xlim(-lim, lim)
    b.set_ylim(lim, -lim)
    b.set_xlabel("kx (nm$^{-1}$)")
    b.set_ylabel("ky (nm$^{-1}$)")
    b.set_title("g vectors and masks")
    b.legend(loc="upper right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def message_figure(image: np.ndarray, pixel_size_nm, message: str, path: Path) -> Path:
    """The image with a message (used when GPA does not apply)."""
    s = _stride(image.shape)
    fig, ax = new_figure(1, 1, size=4.2)
    ax[0][0].imshow(image[::s, ::s], cmap="gray", extent=image_extent_nm(image.shape, pixel_size_nm))
    ax[0][0].set_title("GPA not applicable", fontsize=10)
    ax[0][0].text(0.5, -0.12, message, transform=ax[0][0].transAxes, ha="center", va="top", fontsize=7,
                  wrap=True)
    return save_figure(fig, path)
