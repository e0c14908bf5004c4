"""Atoms to images: Z-contrast (HAADF-like) and weak-phase HRTEM, noise and scan drift."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _splat(xy_nm: np.ndarray, weights: np.ndarray, shape, pixel_size_nm) -> np.ndarray:
    """Bilinear deposition of point weights on the pixel grid (centroid-preserving)."""
    rows, cols = shape
    px, py = pixel_size_nm
    c = xy_nm[:, 0] / px
    r = xy_nm[:, 1] / py
    c0 = np.floor(c).astype(np.int64)
    r0 = np.floor(r).astype(np.int64)
    fc = c - c0
    fr = r - r0
    out = np.zeros(rows * cols, dtype=np.float64)
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                        (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr = r0 + dr
        cc = c0 + dc
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        np.add.at(out, rr[ok] * cols + cc[ok], (weights * wgt)[ok])
    return out.reshape(rows, cols)


def render_atoms(positions_nm: np.ndarray, numbers: np.ndarray, shape, pixel_size_nm,
                 mode: str = "haadf", sigma_nm: float = 0.06, background: float = 0.0,
                 defocus_nm: float | None = None, cs_mm: float = 0.015, voltage_kV: float = 300.0,
                 aperture_nm_inv: float = 12.0) -> np.ndarray:
    """Project atoms along the beam and render an image.

    mode ``haadf``: intensity = sum over atoms of Z^1.7 Gaussians of width ``sigma_nm`` (+ background).
    mode ``hrtem``: weak-phase object: projected potential (Z-weighted Gaussians) -> exit wave ->
    coherent CTF with ``defocus_nm`` (default Scherzer; positive = underfocus), ``cs_mm`` and an
    objective aperture ``aperture_nm_inv`` -> intensity (vacuum = 1).
    """
    px, py = pixel_size_nm
    xy = np.asarray(positions_nm)[:, :2]
    Z = np.asarray(numbers, float)
    if mode == "haadf":
        dens = _splat(xy, Z ** 1.7, shape, pixel_size_nm)
        img = ndimage.gaussian_filter(dens, (sigma_nm / py, sigma_nm / px), mode="constant")
        img = img / max(img.max(), 1e-12) + background
        return img.astype(np.float32)
    if mode == "hrtem":
        dens = _splat(xy, Z ** 0.7, shape, pixel_size_nm)
        pot = ndimage.gaussian_filter(dens, (0.5 * sigma_nm / py, 0.5 * sigma_nm / px), mode="constant")
        pot = 0.35 * pot / max(np.percentile(pot, 99.9), 1e-12)
        wave = np.exp(1j * pot)
        lam = electron_wavelength_nm(voltage_kV)
        cs = cs_mm * 1e6
        if defocus_nm is None:
            defocus_nm = 1.2 * np.sqrt(cs * lam)
        ky = np.fft.fftfreq(shape[0], d=py)[:, None]
        kx = np.fft.fftfreq(shape[1], d=px)[None, :]
        k2 = kx ** 2 + ky ** 2
        chi = np.pi * lam * k2 * (-defocus_nm) + 0.5 * np.pi * cs * lam ** 3 * k2 ** 2
        ctf = np.exp(-1j * chi) * (k2 <= aperture_nm_inv ** 2)
        img = np.abs(np.fft.ifft2(np.fft.fft2(wave) * ctf)) ** 2
        return img.astype(np.float32)
    raise ValueError(f"unknown mode {mode!r}")


def electron_wavelength_nm(voltage_kV: float) -> float:
    """Relativistic electron wavelength in nm."""
    V = voltage_kV * 1e3
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    return h / np.sqrt(2 * m * e * V * (1 + e * V / (2 * m * c * c))) * 1e9


def add_noise(image: np.ndarray, rng: np.random.Generator, dose: float | None = 1000.0,
              read_noise: float = 0.0) -> np.ndarray:
    """Poisson noise for ``dose`` counts per unit intensity, plus Gaussian read noise (counts)."""
    img = np.asarray(image, float)
    out = rng.poisson(np.clip(img, 0, None) * dose).astype(float) if dose else img.copy()
    if read_noise:
        out += rng.normal(0, read_noise, img.shape)
    return out.astype(np.float32)


def apply_scan_drift(positions_nm: np.ndarray, pixel_size_nm, drift_nm_per_row=(0.0, 0.0),
                     jitter_nm: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Scan distortion of a STEM frame applied to atom positions.

    Each scan row i is shifted by ``i * drift_nm_per_row`` plus Gaussian jitter; atoms move with the
    row that images them (the image is then rendered from the moved atoms).
    """
    p = np.array(positions_nm, float, copy=True)
    row = p[:, 1] / pixel_size_nm[1]
    p[:, 0] -= row * drift_nm_per_row[0]
    p[:, 1] -= row * drift_nm_per_row[1]
    if jitter_nm and rng is not None:
        nrow = int(np.ceil(row.max())) + 2
        jit = rng.normal(0, jitter_nm, nrow)
        p[:, 0] -= jit[np.clip(row.astype(int), 0, nrow - 1)]
    return p
