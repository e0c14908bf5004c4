"""Electron optics: wavelength, the HRTEM transfer function and the STEM probe.

Conventions (those of abTEM): ``defocus`` = −C10 in nm, positive = underfocus; ``Cs`` = C30 in µm;
angles α = λ·|k| (rad) with spatial frequency k in Å⁻¹ (no 2π); the aberration phase is
χ(k) = 2π/λ · (C10 α²/2 + C30 α⁴/4) and a wave is transferred as ψ̂(k) · A(k) · exp(−iχ) · E_t(k),
with the temporal envelope E_t = exp(−(π Δ α² / (2λ))²) for a 1-σ focal spread Δ applied
quasi-coherently (as abTEM does).
"""

from __future__ import annotations

import numpy as np

M0C2_EV = 510998.95
HC_EV_A = 12398.419843


def wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength (Å) at ``energy_eV``."""
    e = float(energy_eV)
    return HC_EV_A / np.sqrt(e * (2.0 * M0C2_EV + e))


def chi(alpha: np.ndarray, wavelength: float, defocus_nm: float, cs_um: float) -> np.ndarray:
    """Aberration phase χ (rad) at scattering angles ``alpha`` (rad)."""
    c10 = -float(defocus_nm) * 10.0
    c30 = float(cs_um) * 1e4
    a2 = alpha * alpha
    return (2.0 * np.pi / wavelength) * (0.5 * c10 * a2 + 0.25 * c30 * a2 * a2)


def aperture(alpha: np.ndarray, cutoff_mrad: float, edge_mrad: float = 0.5) -> np.ndarray:
    """Objective/condenser aperture with a linear soft edge ``edge_mrad`` wide (1 inside, 0 outside)."""
    a = alpha * 1e3
    if edge_mrad <= 0:
        return (a <= cutoff_mrad).astype(float)
    return np.clip((cutoff_mrad - a) / edge_mrad + 0.5, 0.0, 1.0)


def hrtem_transfer(kx: np.ndarray, ky: np.ndarray, energy_eV: float, defocus_nm: float, cs_um: float,
                   aperture_mrad: float, focal_spread_nm: float) -> np.ndarray:
    """Coherent transfer function H(k) (complex) at spatial frequencies ``kx``, ``ky`` (Å⁻¹)."""
    lam = wavelength_A(energy_eV)
    alpha = lam * np.hypot(kx, ky)
    et = np.exp(-((0.5 * np.pi / lam * focal_spread_nm * 10.0 * alpha**2) ** 2))
    return aperture(alpha, aperture_mrad) * et * np.exp(-1j * chi(alpha, lam, defocus_nm, cs_um))


def probe_intensity_ft(shape: tuple[int, int], sampling_nm: tuple[float, float], energy_eV: float,
                       convergence_mrad: float, defocus_nm: float = 0.0, cs_um: float = 0.0) -> np.ndarray:
    """Fourier transform of the STEM probe intensity on a periodic grid (rows, cols), normalised to 1 at k=0.

    ``sampling_nm`` is (x, y) per pixel.  Multiplying an image's FFT by this array convolves it with the
    probe intensity (centred at the origin, periodic boundaries).
    """
    rows, cols = shape
    ky = np.fft.fftfreq(rows, sampling_nm[1] * 10.0)[:, None]
    kx = np.fft.fftfreq(cols, sampling_nm[0] * 10.0)[None, :]
    lam = wavelength_A(energy_eV)
    alpha = lam * np.hypot(kx, ky)
    psi_k = aperture(alpha, convergence_mrad) * np.exp(-1j * chi(alpha, lam, defocus_nm, cs_um))
    probe = np.fft.ifft2(psi_k)
    p = np.abs(probe) ** 2
    ft = np.fft.fft2(p)
    return ft / ft[0, 0].real


def gaussian_ft(shape: tuple[int, int], sampling_nm: tuple[float, float], sigma_nm: float) -> np.ndarray:
    """Fourier transform of a unit-area Gaussian of 1-σ ``sigma_nm`` on a (rows, cols) grid."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows, sampling_nm[1])[:, None]
    kx = np.fft.fftfreq(cols, sampling_nm[0])[None, :]
    return np.exp(-2.0 * (np.pi * sigma_nm) ** 2 * (kx**2 + ky**2))
