"""Human override: a hand-made label map replaces the automatic segmentation of one image.

Put ``<dataset>/<sample>/labels/<image>.tif`` (or ``.tiff``, ``.png``, ``.npy``) beside the images,
named like the image it corrects.  It must be a single-channel integer image of exactly the image's
size (rows × columns): 0 = unassigned, 1, 2, ... = regions (any positive integers; they are
renumbered 1..n in increasing order of the values you used, and the mapping is stored in the result
file as the attribute ``override_values``).  Pixels of one value may form several pieces; they stay
one region.  Only this image's segmentation and what depends on it are recomputed.

Edit a label map with any image editor that keeps exact integer values (no anti-aliasing or colour
palettes: 8- or 16-bit grey-scale PNG/TIFF), or write one with numpy (``np.save``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError

LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def _read_raw(path: Path) -> np.ndarray:
    suf = path.suffix.lower()
    if suf == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any read failure is the user's file
            raise UserError(f"cannot read the label map ({e.__class__.__name__}); save it with numpy.save "
                            "as a 2D integer array", path) from None
    if suf in (".tif", ".tiff"):
        try:
            import tifffile

            return np.asarray(tifffile.imread(path))
        except ImportError:  # pragma: no cover - tifffile comes with rosettasciio
            pass
        except Exception:  # noqa: BLE001
            pass
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise UserError("cannot read the label map; save it as a single-channel 8/16-bit PNG or TIFF, "
                        "or a .npy array", path)
    return arr


def read_label_override(path: str | os.PathLike, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a label override for an image of ``shape`` (rows, cols).

    Returns (labels int32 with 0 kept and the positive values renumbered 1..n, the original values
    (n,) in the order of the new labels 1..n).  Raises UserError (one line naming the file and the
    fix) for a wrong shape, colour image, non-integer or negative values, or an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("label override not found", path)
    if path.suffix.lower() not in LABEL_SUFFIXES:
        raise UserError(f"label overrides must be {', '.join(LABEL_SUFFIXES)} files", path)
    arr = np.asarray(_read_raw(path))
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        if np.all(arr[..., :3] == arr[..., :1]):
            arr = arr[..., 0]
        else:
            raise UserError("label map is a colour image; save it as single-channel grey-scale "
                            "integers (0 = unassigned, 1, 2, ... = regions)", path)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise UserError(f"label map must be 2D (rows x columns), got shape {arr.shape}", path)
    if tuple(arr.shape) != tuple(shape):
        raise UserError(f"label map has shape {arr.shape[0]}x{arr.shape[1]} but the image is "
                        f"{shape[0]}x{shape[1]} (rows x columns); draw the labels on the full image", path)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UserError("label map has non-integer values; labels must be whole numbers "
                            "(0 = unassigned, 1, 2, ... = regions)", path)
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise UserError(f"label map has data type {arr.dtype}; save integer labels", path)
    if arr.min() < 0:
        raise UserError("label map has negative values; use 0 for unassigned and 1, 2, ... for regions", path)
    values, inv = np.unique(arr, return_inverse=True)
    pos = values[values > 0]
    if len(pos) == 0:
        raise UserError("label map has no regions (all pixels 0); label at least one region with 1", path)
    new = np.where(values > 0, np.cumsum(values > 0), 0).astype(np.int32)
    return new[inv.reshape(arr.shape)], pos.astype(np.int64)
