"""Micrograph ingest: read any supported file with rosettasciio into a calibrated :class:`Micrograph`.

Formats (by extension): Gatan ``.dm3``/``.dm4``; ``.emd`` (Thermo Fisher Velox and Berkeley NCEM);
FEI TIA ``.ser`` (with its ``.emi``); HyperSpy ``.hspy``; calibrated ``.tif``/``.tiff`` (ImageJ, FEI,
Zeiss, OME tags); uncalibrated ``.png``/``.jpg`` only with a pixel size in ``sample.yaml``.

Calibration is converted to nm (Å, pm, nm, µm, mm and m are understood); non-square pixels are kept
as (x, y).  A file holding a series of frames (one navigation axis) is aligned (rigid, sub-pixel
phase correlation) and averaged.  Spectra, spectrum images and diffraction patterns are refused
with one clear line.
"""

from __future__ import annotations


import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .h5 import set_summary, sha256_file
from .image import Micrograph
from .stage_metadata import stage_meta

log = logging.getLogger("temtwin")

READERS = {
    ".dm3": "rsciio.digitalmicrograph", ".dm4": "rsciio.digitalmicrograph",
    ".emd": "rsciio.emd", ".ser": "rsciio.tia", ".hspy": "rsciio.hspy",
    ".tif": "rsciio.tiff", ".tiff": "rsciio.tiff", ".png": "rsciio.image",
    ".jpg": "rsciio.image", ".jpeg": "rsciio.image",
}

_TO_NM = {"nm": 1.0, "nanometer": 1.0, "nanometers": 1.0, "å": 0.1, "a": 0.1, "angstrom": 0.1,
          "angstroms": 0.1, "ang": 0.1, "pm": 1e-3, "µm": 1e3, "um": 1e3, "μm": 1e3, "micron": 1e3,
          "microns": 1e3, "micrometer": 1e3, "mm": 1e6, "m": 1e9, "meter": 1e9, "meters": 1e9,
          "n_m": 1.0}   # n_m: the Berkeley EMD (py4DSTEM / ncempy) spelling of nm
_RECIPROCAL = ("1/nm", "nm^-1", "1/å", "1/a", "1/angstrom", "1/m", "1/pm", "mrad", "rad")


def _unit_factor(units: Any) -> float | None:
    """nm per unit of a length unit string; None when uncalibrated/unknown."""
    if units is None:
        return None
    u = str(units).strip().lower().replace(" ", "")
    if u in ("", "<undefined>", "undefined", "pixel", "pixels", "px", "none", "t.b.d."):
        return None
    return _TO_NM.get(u)


def _read_signals(path: Path) -> list[dict]:
    import importlib

    mod = READERS.get(path.suffix.lower())
    if mod is None:
        raise UserError(f"unsupported file type {path.suffix!r}; use one of {', '.join(sorted(READERS))}",
                        path)
    reader = importlib.import_module(mod).file_reader
    kw: dict[str, Any] = {}
    if path.suffix.lower() == ".emd":
        kw["select_type"] = "images"
    try:
        signals = reader(str(path), **kw)
    except UserError:
        raise
    except Exception as e:  # corrupt or truncated files raise many different exceptions
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"cannot read this {path.suffix} file ({type(e).__name__}: {first}); "
                        "it may be corrupt or truncated: re-export it from the microscope software",
                        path) from None
    if isinstance(signals, dict):
        signals = [signals]
    if not signals:
        raise UserError("the file holds no data; re-export it", path)
    return signals


def _image_signal(path: Path, signals: list[dict]) -> dict:
    """The first 2D image signal (optionally a series of frames) among the file's signals."""
    kinds = []
    for s in signals:
        axes = s.get("axes", [])
        sig = [a for a in axes if not a.get("navigate", False)]
        nav = [a for a in axes if a.get("navigate", False)]
        data = np.asarray(s["data"])
        st = str(((s.get("metadata") or {}).get("Signal") or {}).get("signal_type", "")).lower()
        kinds.append(f"{len(nav)}|{len(sig)}")
        if len(sig) == 2 and len(nav) <= 1 and data.ndim in (2, 3) and (not data.dtype.names or _is_rgb(data)) \
                and not any(k in st for k in ("eels", "edx", "eds", "spectrum", "diffraction")):
            if any(str(a.get("units", "")).strip().lower() in _RECIPROCAL for a in sig):
                continue
            return s
    raise UserError("no 2D image in this file (it holds spectra, a spectrum image or a diffraction "
                    f"pattern: navigation|signal dims {', '.join(kinds)}); ingest takes images only", path)


def _is_rgb(data: np.ndarray) -> bool:
    """An RGB(A) image as rosettasciio returns it: a structured array with fields R, G, B (and A)."""
    names = data.dtype.names or ()
    return {"R", "G", "B"} <= set(names) <= {"R", "G", "B", "A"}


# ITU-R BT.709 luminance weights (as skimage.color.rgb2gray)
_LUMA = (0.2125, 0.7154, 0.0721)


def rgb_to_grey(data: np.ndarray, path: Path) -> np.ndarray:
    """Grey-scale intensity of an RGB(A) image (structured array with R, G, B fields), float32.

    A grey image saved as RGB (R = G = B) keeps its values exactly; a colour image becomes its BT.709
    luminance, with a warning, since the luminance of a false-colour rendering is not the intensity.
    Alpha is ignored.
    """
    r, g, b = (np.asarray(data[c], np.float32) for c in ("R", "G", "B"))
    if np.array_equal(r, g) and np.array_equal(g, b):
        log.warning("%s: RGB file with equal channels, read as a grey-scale image", path)
        return r
    log.warning("%s: colour RGB image converted to grey scale (BT.709 luminance); if it is a false-colour "
                "rendering, export the grey-scale intensity from the microscope software instead", path)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).astype(np.float32)


# float32 holds integers exactly up to 2^24; beyond, small variations on a large offset are lost, and
# squares (variances, power spectra) overflow float32 above ~1e19
_SAFE_MAX = float(2 ** 24)
_SAFE_MIN = 2.0 ** -10


def to_float32(data: np.ndarray, path: Path) -> tuple[np.ndarray, float, float]:
    """``data`` as float32 that later float32 arithmetic cannot overflow or flush.

    Returns (image, offset, scale) with image = (data - offset) * scale; offset 0 and scale 1 for values
    in the safe range [2^-10, 2^24] of |value|.  Otherwise the minimum is subtracted when the values
    exceed 2^24, and the result is scaled by a power of two to a maximum near 1000 (a warning says so).
    Converted in row blocks, so no float64 copy of a large image is made.
    """
    lo_n, hi_n = np.min(data), np.max(data)
    lo, hi = float(lo_n), float(hi_n)
    amp = max(abs(lo), abs(hi))
    if amp <= _SAFE_MAX and (amp >= _SAFE_MIN or amp == 0.0):
        return np.asarray(data, np.float32), 0.0, 1.0
    offset = lo if amp > _SAFE_MAX else 0.0
    # integers: subtract the minimum exactly in the integer type (float64 loses counts above 2^53)
    exact = data.dtype.kind in "iu" and offset != 0.0 and int(hi_n) - int(lo_n) < 2 ** 63
    top = max(abs(hi - offset), abs(lo - offset))
    scale = 1.0 if top == 0 else float(2.0 ** np.round(np.log2(1000.0 / top)))
    out = np.empty(data.shape, np.float32)
    flat_in = data.reshape(-1, data.shape[-1])
    flat_out = out.reshape(-1, data.shape[-1])
    step = max(1, (1 << 22) // max(1, data.shape[-1]))
    for i in range(0, flat_in.shape[0], step):  # row blocks of ~4 M pixels, each vectorised
        if exact:
            blk = (flat_in[i:i + step] - lo_n).astype(np.float64)
            flat_out[i:i + step] = blk * scale
        else:
            flat_out[i:i + step] = (flat_in[i:i + step].astype(np.float64) - offset) * scale
    log.warning("%s: intensities %.6g to %.6g are outside float32's safe range; stored as (value - %.6g) x "
                "%.6g (attributes intensity_offset, intensity_scale of image.h5)", path, lo, hi, offset, scale)
    return out, offset, scale


def _apply_mapping(s: dict) -> dict:
    """Apply a reader's ``mapping`` (original_metadata path -> metadata path, function) like HyperSpy."""
    md = dict(s.get("metadata") or {})
    om = s.get("original_metadata") or {}
    for src, (dst, fn) in (s.get("mapping") or {}).items():
        node: Any = om
        for part in src.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is None:
            continue
        try:
            val = fn(node) if fn is not None else node
        except Exception:  # a vendor tag we cannot convert: skip it
            continue
        cur = md
        parts = dst.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur.setdefault(parts[-1], val)
    return md


def _metadata(s: dict) -> dict[str, Any]:
    md = _apply_mapping(s)
    tem = (md.get("Acquisition_instrument") or {}).get("TEM") or {}
    mode = str(tem.get("acquisition_mode", "") or "").upper()
    st = str((md.get("Signal") or {}).get("signal_type", "") or "").upper()
    if "STEM" in (mode, st) or mode.startswith("STEM"):
        mode = "STEM"
    elif mode.startswith("TEM") or mode == "HRTEM":
        mode = "TEM"
    else:
        mode = "unknown"
    det = tem.get("Detector") or {}
    detector = ""
    if isinstance(det, dict):
        detector = ",".join(sorted(det.keys()))
        for v in det.values():
            if isinstance(v, dict) and v.get("detector_name"):
                detector = str(v["detector_name"])
    title = str((md.get("General") or {}).get("title", "") or "")
    if mode == "unknown" and any(k in title.upper() for k in ("HAADF", "ADF", "BF-S", "STEM", "DF4")):
        mode = "STEM"
    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")
    return {"mode": mode, "voltage_kV": num(tem.get("beam_energy")), "detector": detector or "",
            "magnification": num(tem.get("magnification")), "title": title, "elements": _elements(md)}


def _elements(md: dict) -> list[str]:
    """Element symbols the vendor metadata lists (HyperSpy ``Sample.elements``: EDS/EELS set-ups)."""
    els = (md.get("Sample") or {}).get("elements") if isinstance(md.get("Sample"), dict) else None
    if els is None:
        return []
    if isinstance(els, str):
        els = els.replace(";", ",").split(",")
    out = {str(e).strip() for e in np.atleast_1d(els)}
    return sorted(e for e in out if len(e) <= 2 and e[:1].isupper() and e.isalpha())


def align_frames(frames: np.ndarray, upsample: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Align frames (n, rows, cols) to the first by sub-pixel phase correlation and average.

    Returns (mean image float32, shifts (n, 2) [dy, dx] in pixels applied to each frame).
    Shifts are applied in Fourier space (periodic); the border affected by wrap-around is small for
    the drifts of a series.
    """
    from skimage.registration import phase_cross_correlation

    frames = np.asarray(frames, np.float32)
    ref = frames[0]
    shifts = np.zeros((len(frames), 2))
    acc = np.zeros_like(ref, dtype=np.float64)
    ky = np.fft.fftfreq(ref.shape[0])[:, None]
    kx = np.fft.fftfreq(ref.shape[1])[None, :]
    for i, fr in enumerate(frames):  # loop over frames (few), each step vectorised
        if i:
            shift, _, _ = phase_cross_correlation(ref, fr, upsample_factor=upsample, normalization=None)
            shifts[i] = shift
            F = np.fft.fft2(fr) * np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
            acc += np.fft.ifft2(F).real
        else:
            acc += fr
    return (acc / len(frames)).astype(np.float32), shifts


def read_micrograph(path: str | Path, sample: str = "sample", settings: dict | None = None,
                    align: bool = True, max_frames: int = 1000) -> Micrograph:
    """Read one image file into a calibrated Micrograph (see module docstring).

    ``settings`` is the sample's sample.yaml mapping: a ``pixel_size_nm`` there (per image under
    ``images.<name>``, or for the whole sample) calibrates png/jpg/uncalibrated tif and overrides the
    file's own calibration.
    """
    from ..workflow.discovery import pixel_size_from_settings

    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", path)
    name = path.stem
    signals = _read_signals(path)
    s = _image_signal(path, signals)
    data = np.asarray(s["data"])
    axes = s.get("axes", [])
    sig = [a for a in axes if not a.get("navigate", False)]
    rgb = _is_rgb(data)
    if rgb:
        data = rgb_to_grey(data, path)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise UserError("image data is not real-valued numbers (complex?); save a grey-scale "
                        "intensity image", path)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise UserError(f"image has {bad} NaN/Inf pixels; fix or crop the file", path)
    units_counts = np.issubdtype(data.dtype, np.integer)
    if data.ndim == 3:
        data = data[:max_frames]
    data, offset, scale = to_float32(data, path)
    if offset != 0.0 or scale != 1.0:
        units_counts = False
    n_frames = 1
    if data.ndim == 3:
        n_frames = data.shape[0]
        if align and n_frames > 1:
            img, shifts = align_frames(data)
            log.info("aligned %d frames of %s (max shift %.2f px)", n_frames, path.name,
                     float(np.abs(shifts).max()))
        else:
            img = data.mean(0, dtype=np.float32)
    else:
        img = data
    # calibration: axes are in array order (y, x)
    py_ax, px_ax = sig[0], sig[1]
    fy, fx = _unit_factor(py_ax.get("units")), _unit_factor(px_ax.get("units"))
    user = pixel_size_from_settings(settings or {}, name)
    if user is not None:
        px_nm = user
        if fx is not None:
            log.warning("%s: pixel size from sample.yaml (%s nm) overrides the file's calibration", path, user)
    elif fx is None or fy is None or not (px_ax.get("scale") and py_ax.get("scale")):
        sample_yaml = path.parent / "sample.yaml"
        raise UserError(f"no spatial calibration in the file; set `pixel_size_nm` for this image in "
                        f"{sample_yaml} (e.g. `images: {{{name}: {{pixel_size_nm: 0.02}}}}`)", path)
    else:
        px_nm = (abs(float(px_ax["scale"])) * fx, abs(float(py_ax["scale"])) * fy)
    if not (px_nm[0] > 0 and px_nm[1] > 0):
        raise UserError(f"invalid pixel size {px_nm} nm; fix `pixel_size_nm` in sample.yaml", path)
    if img.ndim != 2 or min(img.shape) < 8:
        raise UserError(f"image of shape {img.shape} is too small (at least 8 x 8 pixels needed)", path)
    meta = _metadata(s)
    per = ((settings or {}).get("images") or {}).get(name) or {}
    if per.get("mode"):
        meta["mode"] = per["mode"]
    meta.update({"n_frames": n_frames, "units": "counts" if units_counts else "a.u.",
                 "intensity_offset": offset, "intensity_scale": scale, "rgb": rgb,
                 "source_file": str(path), "source_sha256": sha256_file(path)})
    meta.update(stage_meta(s, path.suffix, settings, name, path))   # stage position / scan rotation
    return Micrograph(data=img, pixel_size_nm=(float(px_nm[0]), float(px_nm[1])), name=name,
                      sample=sample, meta=meta)


def image_pixels(path: str | Path) -> int | None:
    """Pixel count of an image file (all frames) from its header, without reading the data (None when
    the reader cannot tell lazily)."""
    path = Path(path)
    mod = READERS.get(path.suffix.lower())
    if mod is None:
        return None
    import importlib

    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        try:
            from PIL import Image

            with Image.open(path) as im:  # reads the header only
                return int(im.size[0] * im.size[1] * getattr(im, "n_frames", 1))
        except Exception:  # noqa: BLE001
            return None
    try:
        reader = importlib.import_module(mod).file_reader
        kw: dict[str, Any] = {"lazy": True}
        if path.suffix.lower() == ".emd":
            kw["select_type"] = "images"
        sigs = reader(str(path), **kw)
    except Exception:  # noqa: BLE001 - the full read reports problems with one line
        return None
    sigs = [sigs] if isinstance(sigs, dict) else sigs
    sizes = [int(np.prod(getattr(s.get("data"), "shape", ()) or (0,))) for s in sigs or []]
    return max(sizes) if sizes else None


def check_size(path: str | Path, max_pixels: int, action: str = "warn") -> int | None:
    """Size guard: warn about (or refuse, ``action="refuse"``) an image of more than ``max_pixels``."""
    n = image_pixels(path)
    if n is None or n <= max_pixels:
        return n
    msg = (f"image of {n / 1e6:.3g} Mpx exceeds ingest.max_pixels ({max_pixels / 1e6:.3g} Mpx): every stage's "
           "time and memory grow with the pixel count; crop or bin the image, or raise ingest.max_pixels")
    if action == "refuse":
        raise UserError(msg, path)
    log.warning("%s: %s", path, msg)
    return n


def write_image_h5(f, m: Micrograph) -> None:
    """Write a Micrograph into an open result file (:class:`temtwin.results.image.Raw`) with its summary."""
    from ..results.raw import Raw

    Raw.from_micrograph(m).write(f)
    set_summary(f, {"pixel_size_nm": list(m.pixel_size_nm), "shape": list(m.data.shape),
                    "mode": m.meta.get("mode", "unknown"), "source_file": Path(m.meta["source_file"]).name,
                    "field_of_view_nm": list(m.field_of_view_nm)})
