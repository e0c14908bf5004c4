"""The micrograph as the pipeline sees it, and the reader of ``image.h5``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np


@dataclass
class Micrograph:
    """A calibrated 2D image.

    data: float32 (rows, cols); rows = y (down), columns = x (right).
    pixel_size_nm: (px_x, px_y) in nm (non-square pixels kept).
    meta: acquisition metadata (``mode``, ``voltage_kV``, ``detector``, ``magnification``, ...).
    """

    data: np.ndarray
    pixel_size_nm: tuple[float, float]
    name: str = "image"
    sample: str = "sample"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def field_of_view_nm(self) -> tuple[float, float]:
        """(width, height) in nm."""
        return (self.data.shape[1] * self.pixel_size_nm[0], self.data.shape[0] * self.pixel_size_nm[1])

    @property
    def pixel_size(self) -> float:
        """Mean pixel size in nm (for isotropic operations)."""
        return float(np.sqrt(self.pixel_size_nm[0] * self.pixel_size_nm[1]))


def read_image(path: str | os.PathLike) -> Micrograph:
    """Read ``image.h5`` written by the ingest rule."""
    with h5py.File(path, "r") as f:
        data = f["image"][()].astype(np.float32, copy=False)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    px = tuple(float(v) for v in np.ravel(attrs.pop("pixel_size_nm")))
    name = str(attrs.pop("image", "image"))
    sample = str(attrs.pop("sample", "sample"))
    return Micrograph(data=data, pixel_size_nm=(px[0], px[1]), name=name, sample=sample, meta=attrs)
