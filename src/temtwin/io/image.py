"""The micrograph as the pipeline sees it, and the reader of ``image.h5``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

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
    """Read ``raw.h5`` / ``image.h5`` (:class:`temtwin.results.image.Raw`) as a Micrograph."""
    from ..results.image import Image
    from ..results.raw import Raw

    cls = Raw if os.path.basename(os.fspath(path)) == Raw.FILE else Image
    return cls.read(path).micrograph()
