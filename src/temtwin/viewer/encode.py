"""Arrays and figure files -> small ``data:`` URIs embedded in the viewer pages.

Micrographs become 8-bit JPEG (display contrast: 0.5-99.5 percentile), maps and FFTs colour-mapped
WebP (lossy colour, lossless alpha: invalid pixels transparent); every image is downsampled (area
averaging) to a longest side in px set by config ``viewer`` so that a page stays small (a few MB for
2048² images).
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
    if not np.isnan(b).any():
        return b.mean(axis=(1, 3))
    n = np.sum(~np.isnan(b), axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(b, axis=(1, 3)) / np.maximum(n, 1), np.nan)


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


def gray_webp(a: np.ndarray, max_px: int, quality: int = 80) -> dict:
    """A grey-level map (e.g. an FFT log-magnitude, 1-99.8 percentile contrast) as lossy WebP."""
    d = to_uint8(downsample(a, max_px), 1.0, 99.8)
    buf = io.BytesIO()
    Image.fromarray(d, "L").save(buf, "WEBP", quality=quality)
    return {"src": _uri(buf.getvalue(), "image/webp"), "shape": list(d.shape)}


def map_image(a: np.ndarray, max_px: int, mask: np.ndarray | None = None, cmap: str = "RdBu_r",
              symmetric: bool = True, vmin: float | None = None, vmax: float | None = None,
              quality: int = 80) -> dict:
    """A scalar map as colour WebP (invalid pixels transparent) with its colour range.

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
    Image.fromarray(rgba, "RGBA").save(buf, "WEBP", quality=quality, alpha_quality=100)
    return {"src": _uri(buf.getvalue(), "image/webp"), "shape": list(d.shape), "vmin": float(vmin),
            "vmax": float(vmax), "cmap": cmap}


def figure_file(path: str | Path, max_px: int, keep_bytes: int = 300_000) -> dict:
    """A PNG figure file: embedded as is when small (<= ``keep_bytes`` and ``max_px``), else shrunk to
    a longest side of ``max_px`` and re-encoded as WebP (quality 88)."""
    path = Path(path)
    im = Image.open(path)
    if path.stat().st_size <= keep_bytes and max(im.size) <= max_px:
        return {"src": _uri(path.read_bytes(), "image/png"), "size": list(im.size)}
    im.load()
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA")
    if max(im.size) > max_px:
        s = max_px / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=88)
    return {"src": _uri(buf.getvalue(), "image/webp"), "size": list(im.size)}
