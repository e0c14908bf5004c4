"""Fast linear (incoherent) HAADF model: projected Z^n of the columns convolved with the probe intensity.

I(r) = bg + b · [Σ_atoms Z_i^n δ(r − r_i)] ⊛ |P(r)|² ⊛ G_σ(r), with the probe P of the convergence
semi-angle, defocus and Cs (:func:`optics.probe_intensity_ft`) and G_σ a Gaussian of 1-σ ``source_nm``
(source size, thermal smearing and scan noise together).  Atoms are spread bilinearly onto a grid
``oversample`` times finer than the image (bilinear spreading keeps each atom's centroid exact), the
convolution is done by FFT (periodic boundaries), and the fine grid is point-sampled at the image pixels:
pixel (i, j) shows (x, y) = (j·px, i·py) nm.  Positions in nm, image frame (x right, y down).
"""

from __future__ import annotations

import numpy as np

from .optics import gaussian_ft, probe_intensity_ft


def splat(xy_nm: np.ndarray, weights: np.ndarray, shape: tuple[int, int], pixel_nm) -> np.ndarray:
    """Bilinear spreading of point weights at (x, y) nm onto a periodic (rows, cols) grid."""
    rows, cols = shape
    fx = xy_nm[:, 0] / pixel_nm[0]
    fy = xy_nm[:, 1] / pixel_nm[1]
    x0 = np.floor(fx)
    y0 = np.floor(fy)
    tx = fx - x0
    ty = fy - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    out = np.zeros(rows * cols)
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            idx = ((y0 + dy) % rows) * cols + (x0 + dx) % cols
            out += np.bincount(idx, weights * wy * wx, minlength=rows * cols)
    return out.reshape(rows, cols)


class LinearHAADF:
    """Linear HAADF imager on an image grid (rows, cols) of pixel size (px, py) nm."""

    def __init__(self, shape, pixel_nm, energy_eV: float = 300e3, convergence_mrad: float = 25.0,
                 oversample: int = 2):
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_nm = (float(pixel_nm[0]), float(pixel_nm[1]))
        self.energy = float(energy_eV)
        self.conv = float(convergence_mrad)
        self.os = int(oversample)
        self.fine_shape = (self.shape[0] * self.os, self.shape[1] * self.os)
        self.fine_px = (self.pixel_nm[0] / self.os, self.pixel_nm[1] / self.os)
        self._cache: dict = {}

    def transfer(self, defocus_nm: float, cs_um: float, source_nm: float) -> np.ndarray:
        """FFT of the point-spread function (probe intensity ⊛ source Gaussian) on the fine grid."""
        key = (round(defocus_nm, 6), round(cs_um, 6), round(source_nm, 7))
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = (probe_intensity_ft(self.fine_shape, self.fine_px, self.energy, self.conv,
                                                   defocus_nm, cs_um)
                                * gaussian_ft(self.fine_shape, self.fine_px, source_nm))
        return self._cache[key]

    def image(self, xy_nm: np.ndarray, weights: np.ndarray, defocus_nm: float = 0.0, cs_um: float = 0.0,
              source_nm: float = 0.03, shift_px=(0.0, 0.0)) -> np.ndarray:
        """Σ weights·PSF on the image grid (no background, unit scale); ``shift_px`` moves the model by (dx, dy)."""
        xy = np.asarray(xy_nm, float)[:, :2] + np.array([shift_px[0] * self.pixel_nm[0],
                                                          shift_px[1] * self.pixel_nm[1]])
        fine = splat(xy, np.asarray(weights, float), self.fine_shape, self.fine_px)
        tf = self.transfer(defocus_nm, cs_um, source_nm)[:, : fine.shape[1] // 2 + 1]
        conv = np.fft.irfft2(np.fft.rfft2(fine) * tf, s=fine.shape)
        return conv[:: self.os, :: self.os] * (self.os * self.os)


def z_weights(numbers: np.ndarray, exponent: float) -> np.ndarray:
    """Per-atom linear-model weights Z^n."""
    return np.asarray(numbers, float) ** float(exponent)
