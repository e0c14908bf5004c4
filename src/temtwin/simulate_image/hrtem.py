"""HRTEM image formation from exit waves, sampled on the micrograph's pixel grid.

The exit wave of a periodic cell is transferred by the objective lens (:func:`optics.hrtem_transfer`),
its intensity is evaluated on a fine periodic grid (band limit 2 k_aperture, oversampled ×2), and sampled
at the image pixels by cubic interpolation: pixel (i, j) shows the image-frame point
(x, y) = (j·px + dx, i·py + dy) nm, mapped into the cell frame by p_cell = R(−θ)·(p − origin).
A Gaussian blur (1-σ ``blur_nm``: detector MTF and source size together, incoherent) follows.
Vacuum has intensity 1.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .multislice import ExitWaves
from .optics import hrtem_transfer, wavelength_A


class HRTEMImager:
    """Render HRTEM images of exit-wave planes on an image grid.

    Parameters
    ----------
    ew: exit waves of a periodic cell (Å).
    shape: image (rows, cols); pixel_nm: (px, py) nm.
    origin_nm: image-frame point (x, y) nm of the cell origin; rotation_deg: angle of the cell's x axis in
        the image frame (degrees from +x towards +y).
    aperture_mrad: objective aperture semi-angle.
    """

    def __init__(self, ew: ExitWaves, shape, pixel_nm, origin_nm=(0.0, 0.0), rotation_deg: float = 0.0,
                 aperture_mrad: float = 25.0):
        self.ew = ew
        self.shape = tuple(int(s) for s in shape)
        self.pixel_nm = (float(pixel_nm[0]), float(pixel_nm[1]))
        self.origin = np.asarray(origin_nm, float)
        self.rotation = float(rotation_deg)
        self.aperture = float(aperture_mrad)
        lam = wavelength_A(ew.energy_eV)
        kmax = aperture_mrad * 1e-3 / lam * 1.02
        lx, ly = ew.extent_A
        ny, nx = ew.waves.shape[1:]
        mx = min(int(np.ceil(kmax * lx)), nx // 2 - 1)
        my = min(int(np.ceil(kmax * ly)), ny // 2 - 1)
        ix = np.arange(-mx, mx + 1)
        iy = np.arange(-my, my + 1)
        spec = sfft.fft2(ew.waves, axes=(1, 2), workers=1)
        self.spec = spec[:, (iy % ny)[:, None], (ix % nx)[None, :]].astype(np.complex128) / (nx * ny)
        self.kx = (ix / lx)[None, :]
        self.ky = (iy / ly)[:, None]
        self.fine = (sfft.next_fast_len(max(8 * my + 2, 16)), sfft.next_fast_len(max(8 * mx + 2, 16)))
        self.ix, self.iy = ix, iy

    @property
    def thickness_nm(self) -> np.ndarray:
        return self.ew.thickness_nm

    def intensity_cell(self, plane: int, defocus_nm: float, cs_um: float, focal_spread_nm: float) -> np.ndarray:
        """Image intensity on the fine periodic grid of the cell (rows, cols), vacuum = 1."""
        h = hrtem_transfer(self.kx, self.ky, self.ew.energy_eV, defocus_nm, cs_um, self.aperture, focal_spread_nm)
        fy, fx = self.fine
        full = np.zeros((fy, fx), complex)
        full[(self.iy % fy)[:, None], (self.ix % fx)[None, :]] = self.spec[plane] * h
        psi = sfft.ifft2(full, workers=1) * (fx * fy)
        return (psi.real**2 + psi.imag**2)

    def sample(self, cell_image: np.ndarray, shift_px=(0.0, 0.0), blur_nm: float = 0.0) -> np.ndarray:
        """Sample a fine cell-grid intensity at the image pixels (shifted by ``shift_px`` = (dx, dy)), blurred."""
        rows, cols = self.shape
        px, py = self.pixel_nm
        x = (np.arange(cols) + shift_px[0]) * px - self.origin[0]
        y = (np.arange(rows) + shift_px[1]) * py - self.origin[1]
        c, s = np.cos(np.radians(self.rotation)), np.sin(np.radians(self.rotation))
        xc = (c * x[None, :] + s * y[:, None]) * 10.0
        yc = (-s * x[None, :] + c * y[:, None]) * 10.0
        fy, fx = cell_image.shape
        lx, ly = self.ew.extent_A
        coords = np.stack([yc / ly * fy, xc / lx * fx])
        img = ndimage.map_coordinates(cell_image, coords, order=3, mode="grid-wrap", prefilter=True)
        if blur_nm > 0:
            img = ndimage.gaussian_filter(img, (blur_nm / py, blur_nm / px), mode="nearest")
        return img

    def image(self, plane: int, defocus_nm: float, cs_um: float, focal_spread_nm: float, blur_nm: float,
              shift_px=(0.0, 0.0)) -> np.ndarray:
        """Simulated image (rows, cols) of exit plane ``plane`` with the given optics, vacuum = 1."""
        return self.sample(self.intensity_cell(plane, defocus_nm, cs_um, focal_spread_nm), shift_px, blur_nm)
