"""Arrays and figure files -> small ``data:`` URIs embedded in the viewer pages.

Micrographs become 8-bit JPEG (display contrast: 0.5-99.5 percentile), maps become colour-mapped PNG
with transparent invalid pixels; every image is downsampled (area averaging) to a longest side in px
set by config ``viewer`` so that a page stays small (a few MB for 2048² images).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def downsample(a: np.ndarray, max_px: int) -> np.ndarray:
    """Area-average ``a`` (rows, cols[, ...]) by an integer factor so its longest side is <= max_px.

    NaNs are ignored in the average (a block of only NaNs stays NaN).
    """
    f = int(np.ceil(max(a.shape[:2]) / max_px))
    if f <= 1:
        return np.asarray(a, float)
    r, c = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    b = np.asarray(a[:r, :c], float).reshape(r // f, f, c // f, f, *a.shape[2:])
    with np.errstate(invalid="ignore"):
        return np.nanmean(b, axis=(1, 3)) if np.isnan(b).any() else b.mean(axis=(1, 3))


def to_uint8(a: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Display contrast: percentiles of the finite values mapped to 0..255."""
    fin = np.isfinite(a)
    if not fin.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(a[fin], [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((np.where(fin, a, lo) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def gray_jpeg(a: np.ndarray, max_px: int, quality: int = 85) -> dict:
    """``{"src": data URI, "shape": [rows, cols]}`` of a micrograph shown as 8-bit JPEG."""
    d = to_uint8(downsample(a, max_px))
    buf = io.BytesIO()
    Image.fromarray(d, "L").save(buf, "JPEG", quality=int(quality), optimize=True)
    return {"src": _uri(buf.getvalue(), "image/jpeg"), "shape": list(d.shape)}


def gray_png(a: np.ndarray, max_px: int) -> dict:
    d = to_uint8(downsample(a, max_px), 1.0, 99.8)
    buf = io.BytesIO()
    Image.fromarray(d, "L").save(buf, "PNG", optimize=True)
    return {"src": _uri(buf.getvalue(), "image/png"), "shape": list(d.shape)}


def map_png(a: np.ndarray, max_px: int, mask: np.ndarray | None = None, cmap: str = "RdBu_r",
            symmetric: bool = True, vmin: float | None = None, vmax: float | None = None) -> dict:
    """A scalar map as colour PNG (invalid pixels transparent) with its colour range.

    Returns ``{"src", "shape", "vmin", "vmax", "cmap"}``; the range is symmetric about 0 at the 99th
    percentile of |value| when ``symmetric`` (strain, rotation), else the 1-99 percentiles.
    """
    from matplotlib import colormaps

    a = np.asarray(a, float).copy()
    if mask is not None:
        a[~np.asarray(mask, bool)] = np.nan
    d = downsample(a, max_px)
    fin = np.isfinite(d)
    if vmin is None or vmax is None:
        if not fin.any():
            vmin, vmax = -1.0, 1.0
        elif symmetric:
            v = float(np.percentile(np.abs(d[fin]), 99)) or 1e-12
            vmin, vmax = -v, v
        else:
            vmin, vmax = (float(x) for x in np.percentile(d[fin], [1, 99]))
            if vmax <= vmin:
                vmax = vmin + 1e-12
    rgba = colormaps[cmap]((np.where(fin, d, vmin) - vmin) / (vmax - vmin), bytes=True)
    rgba[..., 3] = np.where(fin, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=True)
    return {"src": _uri(buf.getvalue(), "image/png"), "shape": list(d.shape), "vmin": float(vmin),
            "vmax": float(vmax), "cmap": cmap}


def figure_file(path: str | Path, max_px: int) -> dict:
    """A PNG figure file, shrunk to a longest side of ``max_px`` (as PNG, or JPEG when much smaller)."""
    im = Image.open(path)
    im.load()
    if im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA")
    if max(im.size) > max_px:
        s = max_px / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
    png = io.BytesIO()
    im.save(png, "PNG", optimize=True)
    jpg = io.BytesIO()
    im.convert("RGB").save(jpg, "JPEG", quality=88)
    if jpg.tell() < 0.5 * png.tell():
        return {"src": _uri(jpg.getvalue(), "image/jpeg"), "size": list(im.size)}
    return {"src": _uri(png.getvalue(), "image/png"), "size": list(im.size)}
