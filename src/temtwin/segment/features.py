"""Segmentation features on a coarse analysis grid: local mean, local texture, local lattice amplitude.

All features are Gaussian averages at scale σ computed in Fourier space from one FFT of the
(reflect-padded) full-resolution image, with the spectrum cropped to the analysis grid so that the
result is already decimated and alias-free (the Gaussian is ≤ 1 % at the crop edge when
σ ≥ 1 analysis pixel):

* ``mean``: G_σ * I (the local mean intensity);
* ``std``: sqrt(G_τ * J² − (G_τ * J)²) at τ = ``texture_scale``·σ, J the image pre-smoothed by
  ``denoise_px`` (local texture / fringe contrast);
* ``amp_k``: |G_σ * (I · exp(−2πi g_k·r))| for each Bragg peak g_k (the local lattice amplitude,
  as in geometric phase analysis), high where the crystal with that reflection is;
* ``cryst`` (optional): log of G_σ * B², B the image band-passed on the lattice rings |g_k| in every
  direction (crystallinity: crystal ≫ amorphous ≫ vacuum, whatever the crystal's orientation).

Near the image border the averages are normalised convolutions, (G_σ * (M·x)) / (G_σ * M) with M
the image support, so they stay unbiased (no mirrored lattice, no wrap-around).

The analysis grid samples full-resolution pixel centres ``f·i + (f − 1)/2`` (block centres for a
decimation factor f), so ``cv2.resize`` maps it back to full resolution without a shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft


@dataclass
class Features:
    """Feature stack on the analysis grid.

    data: float32 (channels, rows_a, cols_a); names: channel names; factor: decimation f
    (analysis pixel = f full-resolution pixels); sigma_px: σ in full-resolution pixels;
    full_shape: the full-resolution image shape; scales: each channel's averaging window in units
    of σ (1 for mean and lattice amplitudes, ``texture_scale`` for std).
    """

    data: np.ndarray
    names: list[str]
    factor: int
    sigma_px: float
    full_shape: tuple[int, int]
    scales: list[float] = field(default_factory=list)
    cryst_fine: np.ndarray | None = None
    cryst_info: object = None


def analysis_factor(shape: tuple[int, int], sigma_px: float, max_px: int = 1024,
                    min_sigma_a: float = 2.5) -> int:
    """Decimation factor: the coarsest grid that keeps σ ≥ ``min_sigma_a`` analysis pixels, but at
    least ``ceil(max(shape) / max_px)`` so the analysis grid is at most ``max_px`` pixels long."""
    f_size = int(np.ceil(max(shape) / max_px))
    f_sig = int(np.floor(sigma_px / min_sigma_a))
    return max(1, f_size, min(f_sig, 8 * f_size))


def _crop_indices(n: int, m: int, centre: int) -> np.ndarray:
    """Indices (mod n) of m spectrum bins centred on ``centre`` in FFT order (DC first)."""
    off = np.fft.fftfreq(m, 1.0 / m).astype(int)  # 0, 1, ..., -1
    return (centre + off) % n


def _window(spec: np.ndarray, n_rows: int, n_cols: int, cy: int, cx: int, m_rows: int,
            m_cols: int) -> np.ndarray:
    """(m_rows, m_cols) complex window of the full spectrum of a real image, from its rfft2.

    ``spec`` is rfft2 output (n_rows, n_cols // 2 + 1); bins with negative kx are taken from the
    conjugate-symmetric half.  The window is in FFT order around (cy, cx).
    """
    ry = _crop_indices(n_rows, m_rows, cy)
    off_x = np.fft.fftfreq(m_cols, 1.0 / m_cols).astype(int)
    kx = cx + off_x                       # signed column index
    kx = ((kx + n_cols // 2) % n_cols) - n_cols // 2
    pos = kx >= 0
    out = np.empty((m_rows, m_cols), np.complex64)
    if pos.any():
        out[:, pos] = spec[np.ix_(ry, kx[pos])]
    if (~pos).any():
        out[:, ~pos] = np.conj(spec[np.ix_((-ry) % n_rows, -kx[~pos])])
    return out


def _support(n_full: int, start: int, length: int, ker: np.ndarray) -> np.ndarray:
    """Low-passed, decimated 1D indicator of the image support (for normalised convolution)."""
    mask = np.zeros(n_full, np.float32)
    mask[start:start + length] = 1.0
    idx = _crop_indices(n_full, len(ker), 0)
    return np.fft.ifft(np.fft.fft(mask)[idx] * ker).real


def compute_features(image: np.ndarray, pixel_size_nm: tuple[float, float], sigma_nm: float,
                     g_vectors: np.ndarray | None = None, max_px: int = 1024,
                     texture_scale: float = 2.0, denoise_px: float = 0.0,
                     ring_k: np.ndarray | None = None, cryst_scale: float = 0.5,
                     cryst_decider=None) -> Features:
    """Feature stack (see module docstring) of a full-resolution image.

    sigma_nm: Gaussian σ in nm (the same in x and y, converted per axis for non-square pixels);
    raised to one analysis pixel when the image is decimated for size (``Features.sigma_px``
    reports the σ used).
    g_vectors: (k, 2) [kx, ky] nm⁻¹ Bragg peaks for the lattice-amplitude channels (may be empty).
    texture_scale: the texture (std) window is ``texture_scale``·σ (a second-order statistic needs
    more averaging than the mean); 0 leaves the channel out.
    denoise_px: the texture is measured on the image pre-smoothed by a Gaussian of this σ (full-
    resolution pixels), so that white shot noise does not dilute texture contrast.
    ring_k: lattice-ring radii |g| (nm⁻¹); when given, ``Features.cryst_fine`` holds the crystallinity
    (see :func:`_ring_energy_spectrum`) at the finer scale ``cryst_scale``·σ (at least one analysis
    pixel), used to delimit crystals, and a ``cryst`` channel (the same at σ) is added.
    cryst_decider: optional ``f(cryst_fine, factor, sigma_px)``; the ``cryst`` channel is computed only
    when it returns something other than None (stored in ``Features.cryst_info``), which saves two
    full-resolution FFTs on images where the channel is not used.
    """
    img = np.asarray(image, np.float32)
    rows, cols = img.shape
    px, py = pixel_size_nm
    sx, sy = sigma_nm / px, sigma_nm / py
    f = analysis_factor(img.shape, max(sx, sy), max_px)
    # the Gaussian must cover at least one analysis pixel (else the decimation aliases)
    sx, sy = max(sx, float(f)), max(sy, float(f))
    reach = 4 * max(1.0, texture_scale)
    pad_y = int(np.ceil(reach * sy / f) + 1) * f
    pad_x = int(np.ceil(reach * sx / f) + 1) * f
    ra, ca = int(np.ceil(rows / f)), int(np.ceil(cols / f))
    # padded size: divisible by f, fast FFT length, covering image + 2 pads
    my = sfft.next_fast_len(ra + 2 * pad_y // f, real=True)
    mx = sfft.next_fast_len(ca + 2 * pad_x // f, real=True)
    my += my % 2
    mx += mx % 2
    ny, nx = my * f, mx * f
    m0 = float(img.mean())
    centred = img - m0
    padded = np.zeros((ny, nx), np.float32)
    padded[pad_y:pad_y + rows, pad_x:pad_x + cols] = centred
    oy, ox = pad_y // f, pad_x // f
    # Gaussian and half-block shift in Fourier space (analysis window bins, cycles per full pixel)
    fy1 = np.fft.fftfreq(my, 1.0 / my) / ny
    fx1 = np.fft.fftfreq(mx, 1.0 / mx) / nx
    shift_y = np.exp(2j * np.pi * fy1 * (f - 1) / 2) / f
    shift_x = np.exp(2j * np.pi * fx1 * (f - 1) / 2) / f
    kernels: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def kernel(mult: float):
        """(separable Fourier kernel, support weight) of the Gaussian mult·σ (cached)."""
        if mult not in kernels:
            ky = np.exp(-2 * np.pi ** 2 * (mult * sy * fy1) ** 2) * shift_y
            kx = np.exp(-2 * np.pi ** 2 * (mult * sx * fx1) ** 2) * shift_x
            # normalised convolution: Gaussian average of the image support (separable)
            wy = _support(ny, pad_y, rows, ky)[oy:oy + ra]
            wx = _support(nx, pad_x, cols, kx)[ox:ox + ca]
            kernels[mult] = (np.outer(ky, kx).astype(np.complex64), np.maximum(np.outer(wy, wx), 1e-3))
        return kernels[mult]

    def lowpass(spec, cy=0, cx=0, mult=1.0):
        ker, weight = kernel(mult)
        w = _window(spec, ny, nx, cy, cx, my, mx)
        z = sfft.ifft2(w * ker, workers=-1)
        return z[oy:oy + ra, ox:ox + ca] / weight

    spec = sfft.rfft2(padded, workers=-1)
    names: list[str] = []
    chans: list[np.ndarray] = []
    mean_c = lowpass(spec).real
    chans.append(mean_c + m0)
    names.append("mean")
    if texture_scale > 0:
        # texture of the image pre-smoothed by `denoise_px` (white shot noise, equal in every region,
        # would otherwise dilute the texture contrast)
        if denoise_px > 0:
            ky = np.fft.fftfreq(ny)[:, None]
            kx = np.fft.rfftfreq(nx)[None, :]
            g0 = np.exp(-2 * np.pi ** 2 * denoise_px ** 2 * (ky ** 2 + kx ** 2)).astype(np.float32)
            spec_d = spec * g0
            smooth_full = sfft.irfft2(spec_d, s=(ny, nx), workers=-1).astype(np.float32)
            spec2 = sfft.rfft2(smooth_full * smooth_full, workers=-1)
            mt = lowpass(spec_d, mult=texture_scale).real
            del smooth_full
        else:
            spec2 = sfft.rfft2(padded * padded, workers=-1)
            mt = mean_c if texture_scale == 1.0 else lowpass(spec, mult=texture_scale).real
        sq = lowpass(spec2, mult=texture_scale).real
        chans.append(np.sqrt(np.maximum(sq - mt ** 2, 0.0)))
        names.append("std")
        del spec2
    if g_vectors is not None:
        for k, (gx, gy) in enumerate(np.asarray(g_vectors, float).reshape(-1, 2)):
            cy = int(round(gy * py * ny))
            cx = int(round(gx * px * nx))
            z = lowpass(spec, cy, cx)
            chans.append(np.abs(z))
            names.append(f"amp_{k}")
    cryst_fine = None
    cryst_info = None
    if ring_k is not None and len(ring_k):
        mult = max(cryst_scale, f / min(sx, sy))
        e_spec = _ring_energy_spectrum(spec, (ny, nx), (px, py), mult * sigma_nm, ring_k, (pad_y, pad_x),
                                       (rows, cols))
        cryst_fine = _log_energy(lowpass(e_spec, mult=mult).real)
        del e_spec
        cryst_info = cryst_decider(cryst_fine, f, max(sx, sy)) if cryst_decider is not None else True
        if cryst_info is not None:
            e_spec = _ring_energy_spectrum(spec, (ny, nx), (px, py), sigma_nm, ring_k, (pad_y, pad_x),
                                           (rows, cols))
            chans.append(_log_energy(lowpass(e_spec).real))
            names.append("cryst")
            del e_spec
    data = np.stack(chans).astype(np.float32)
    scales = [texture_scale if nm == "std" else 1.0 for nm in names]
    return Features(data=data, names=names, factor=f, sigma_px=float(max(sx, sy)), full_shape=(rows, cols),
                    scales=scales, cryst_fine=cryst_fine, cryst_info=cryst_info)


def _ring_energy_spectrum(spec, full, pixel_size_nm, sigma_nm, ring_k, pad, shape) -> np.ndarray:
    """rfft2 of the squared image band-passed on the lattice rings (support-masked).

    The band-pass keeps, in every direction, spatial frequencies within a Gaussian of width
    s = 1/(2πσ) around each ring radius |g| (so a crystal of any in-plane orientation counts, and the
    window matches the spatial localisation σ).  Gaussian averages of the result (``lowpass``) are the
    local lattice-band energy: crystals carry Bragg energy far above that of amorphous material, which
    in turn is above vacuum (shot noise only); :func:`_log_energy` turns it into the crystallinity.
    """
    ny, nx = full
    px, py = pixel_size_nm
    ky = np.fft.fftfreq(ny, py)[:, None].astype(np.float32)
    kx = np.fft.rfftfreq(nx, px)[None, :].astype(np.float32)
    k = np.sqrt(kx * kx + ky * ky)
    s = 1.0 / (2 * np.pi * sigma_nm)
    # radial profile max_k exp(-(k - |g_k|)² / 2s²), tabulated finely and looked up (one pass)
    dk = s / 16.0
    radial = np.arange(int(np.ceil(float(k.max()) / dk)) + 2) * dk
    prof = np.zeros(len(radial))
    for k0 in np.asarray(ring_k, float):
        np.maximum(prof, np.exp(-((radial - k0) ** 2) / (2 * s * s)), out=prof)
    idx = np.rint(k * np.float32(1.0 / dk)).astype(np.int32)
    del k
    w = prof.astype(np.float32)[idx]
    del idx
    bp = sfft.irfft2(spec * w, s=(ny, nx), workers=-1).astype(np.float32, copy=False)
    del w
    bp *= bp
    r0, c0 = pad
    bp[:r0] = 0.0
    bp[r0 + shape[0]:] = 0.0
    bp[:, :c0] = 0.0
    bp[:, c0 + shape[1]:] = 0.0
    return sfft.rfft2(bp, workers=-1)


def _log_energy(e: np.ndarray) -> np.ndarray:
    """Natural log of a local energy map, floored at 1e-6 of its median (no log of 0)."""
    floor = max(float(np.median(e)) * 1e-6, 1e-30)
    return np.log(np.maximum(e, floor)).astype(np.float32)
