"""A plain textbook two-g GPA (Hÿtch, Snoeck & Kilaas 1998), for comparison in the bench.

Full-size FFT of the raw image, Gaussian mask centred on each given g, full-size inverse FFT,
raw phase ``P_g = arg(H_g) - 2π g·r``, phase gradient by finite differences of exp(iP)
(``∇P = Im(exp(-iP) ∇exp(iP))``), g refined by the mean phase gradient in the reference region
(the usual phase-ramp subtraction), then the linear formula

    ∂u_i/∂x_j = -(1/2π) Σ_g a_g,i ∂P_g/∂x_j,   [a1 a2] = G^-1,

with e = sym(∂u/∂x) and ω = (∂u_y/∂x - ∂u_x/∂y)/2.  No periodic decomposition, no cropping of the
Fourier window, no amplitude weighting, first-order (small-strain) tensor.
"""

from __future__ import annotations

import numpy as np

from ..gpa.core import resolution_to_sigma


def textbook_gpa(image: np.ndarray, pixel_size_nm, g_vectors, resolution_nm: float,
                 reference_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """exx, eyy, exy, rotation (rad) maps and the refined ``g_vectors`` (nm⁻¹) of a textbook GPA."""
    img = np.asarray(image, np.float64)
    Ny, Nx = img.shape
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    G = np.asarray(g_vectors, float).reshape(2, 2)
    sigma = resolution_to_sigma(resolution_nm)
    F = np.fft.fft2(img - img.mean())
    kx = np.fft.fftfreq(Nx, px)[None, :]
    ky = np.fft.fftfreq(Ny, py)[:, None]
    y, x = np.mgrid[0:Ny, 0:Nx]
    x = x * px
    y = y * py
    ref = np.ones((Ny, Nx), bool) if reference_mask is None else np.asarray(reference_mask, bool)
    grads = []
    G_ref = G.copy()
    for i in range(2):
        mask = np.exp(-((kx - G[i, 0]) ** 2 + (ky - G[i, 1]) ** 2) / (2 * sigma ** 2))
        H = np.fft.ifft2(F * mask)
        P = np.angle(H) - 2 * np.pi * (G[i, 0] * x + G[i, 1] * y)
        e = np.exp(1j * P)
        dy, dx = np.gradient(e, py, px)
        gx = np.imag(np.conj(e) * dx)
        gy = np.imag(np.conj(e) * dy)
        mx, my = gx[ref].mean(), gy[ref].mean()
        G_ref[i] += np.array([mx, my]) / (2 * np.pi)
        grads.append((gx - mx, gy - my))
    A = np.linalg.inv(G_ref)             # columns a1, a2 (real-space basis, nm)
    dux_dx = -(A[0, 0] * grads[0][0] + A[0, 1] * grads[1][0]) / (2 * np.pi)
    dux_dy = -(A[0, 0] * grads[0][1] + A[0, 1] * grads[1][1]) / (2 * np.pi)
    duy_dx = -(A[1, 0] * grads[0][0] + A[1, 1] * grads[1][0]) / (2 * np.pi)
    duy_dy = -(A[1, 0] * grads[0][1] + A[1, 1] * grads[1][1]) / (2 * np.pi)
    return {"exx": dux_dx, "eyy": duy_dy, "exy": 0.5 * (dux_dy + duy_dx),
            "rotation": 0.5 * (duy_dx - dux_dy), "g_vectors": G_ref}
