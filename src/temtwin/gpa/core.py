"""Geometric phase analysis for given g vectors and mask.

Method (Hÿtch, Snoeck & Kilaas 1998, with the numerical choices below):

1. The image spectrum is taken of its *periodic component* (Moisan 2011 periodic + smooth
   decomposition), so that the edges of a non-periodic image do not put a cross of streaks through
   the Bragg spots lying near the kx/ky axes.
2. The periodic component is zero-padded by the kernel reach (see :func:`prepare_spectrum`).
   For each g vector, a Gaussian mask ``exp(-|k - c|^2 / (2 sigma_k^2))`` is applied around the mask
   centre ``c`` (g itself, or the midpoint of the spots of several phases in a mismatched stack;
   optionally one set of centres per region, each region's masks centred on its own spots).
   Only the mask's support (±4.5 sigma_k, over-sampled twice) is cut out of the spectrum and
   inverse-transformed on a small *coarse grid*: that is the exact band-limited Bragg-filtered image,
   demodulated by the window's central frequency ``k_c``, sampled every ``N/n`` pixels.  This is what
   makes a 4096² image take a second or two.
3. The local reciprocal vector is ``g_loc = k_c + Im(conj(h) ∇h) / (2π |h|²)`` with ∇h computed
   spectrally (exact for the band-limited signal): the phase is never unwrapped, so 2π wrapping
   cannot produce artefacts.
4. g is refined in the reference region as the amplitude²-weighted least-squares mean of g_loc
   (the least-squares fit of a linear phase ramp to the phase gradient).
5. The local lattice distortion is exact for a 2x2 lattice: with the reciprocal bases as rows,
   ``G_loc = G_ref F^-1``, i.e. ``F = G_loc^-1 G_ref`` maps the reference lattice onto the local one.
   The polar decomposition ``F = V R`` gives the rotation ω (rad, from +x towards +y) and the strain
   ``e = V - I`` in image axes (the left stretch, at deformed positions).  For small distortions this
   equals the usual ``sym(∂u_i/∂x_j)``; for large mismatch it is the lattice-parameter strain
   (a lattice expanded by δ along y gives eyy = +δ exactly, also for δ = 10 %).
6. The displacement u = r - r_ref (nm, image axes) is the weighted least-squares integral of its
   gradient ``∂u/∂r = I - F^-1`` over the valid pixels (conjugate gradients preconditioned by a DCT
   Poisson solver), zero on average in the reference region; equivalently
   ``u = -(1/2π) G_ref^-1 [P1, P2]`` with the unwrapped phases, without any unwrapping.
7. Coarse fields are interpolated (bicubic) back to the image grid.  Pixels where either Bragg
   amplitude is below ``amplitude_threshold`` x its median in the reference region (vacuum,
   amorphous material) are masked (NaN in the strain, rotation and displacement maps).

Units: pixel sizes and lengths in nm, reciprocal vectors in nm⁻¹ (|g| = 1/d, no 2π), rotation in
rad, strain dimensionless.  Arrays: rows = y (down), columns = x (right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import scipy.fft as sfft
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def resolution_to_sigma(resolution_nm: float) -> float:
    """Gaussian mask σ_k (nm⁻¹) for a spatial resolution (nm).

    The resolution is the FWHM of the real-space point-spread function that the mask imposes on the
    phase (and strain) maps: a Gaussian mask of std σ_k smooths with a real-space Gaussian of std
    1/(2π σ_k), so ``resolution = 2.355 / (2π σ_k)``.
    """
    return FWHM_PER_SIGMA / (2.0 * math.pi * float(resolution_nm))


def sigma_to_resolution(sigma_k: float) -> float:
    """Inverse of :func:`resolution_to_sigma` (nm from nm⁻¹)."""
    return FWHM_PER_SIGMA / (2.0 * math.pi * float(sigma_k))


# --------------------------------------------------------------------------------------- spectrum


def periodic_component(image: np.ndarray, workers: int = 1) -> np.ndarray:
    """Periodic component ``p = u - mean - s`` of ``image`` (float32).

    Moisan's periodic + smooth decomposition: the smooth component s solves a Poisson equation
    whose source is the jump across opposite image edges (closed-form spectrum), so p has no edge
    jumps and its spectrum no edge cross.  Costs one inverse FFT.
    """
    u = np.asarray(image, dtype=np.float32)
    M, N = u.shape
    a = (u[M - 1, :] - u[0, :]).astype(np.float64)   # row jumps -> v[0,:] = a, v[M-1,:] = -a
    b = (u[:, N - 1] - u[:, 0]).astype(np.float64)   # column jumps
    q = np.arange(M)[:, None]
    r = np.arange(N // 2 + 1)[None, :]
    A = np.fft.rfft(a)[None, :]
    B = np.fft.fft(b)[:, None]
    V = A * (1.0 - np.exp(2j * np.pi * q / M)) + B * (1.0 - np.exp(2j * np.pi * r / N))
    denom = 2.0 * np.cos(2 * np.pi * q / M) + 2.0 * np.cos(2 * np.pi * r / N) - 4.0
    denom[0, 0] = 1.0
    S = (V / denom).astype(np.complex64)
    S[0, 0] = 0
    s = sfft.irfft2(S, s=(M, N), workers=workers)
    return (u - np.float32(u.mean()) - s).astype(np.float32)


@dataclass
class Spectrum:
    """rfft2 (complex64) of the periodic component of an image, zero-padded by ``offset`` pixels
    on each side to ``padded_shape`` (rows, cols); ``shape`` is the image's."""

    data: np.ndarray
    shape: tuple[int, int]
    padded_shape: tuple[int, int]
    offset: tuple[int, int]


def prepare_spectrum(image: np.ndarray, pad_px: tuple[int, int] = (0, 0), workers: int = 1) -> Spectrum:
    """Spectrum of the periodic component of ``image``, zero-padded by ``pad_px`` (rows, cols).

    Zero padding keeps the Gaussian kernel from wrapping around the image: near an edge it then
    sees the lattice on one side and nothing on the other, so the Bragg amplitude falls but the
    phase stays the lattice's (exactly so when the mask is centred on the local g).
    """
    p = periodic_component(image, workers)
    M, N = p.shape
    Mp = sfft.next_fast_len(M + 2 * int(pad_px[0]), real=True) if pad_px[0] else M
    Np = sfft.next_fast_len(N + 2 * int(pad_px[1]), real=True) if pad_px[1] else N
    oy, ox = (Mp - M) // 2, (Np - N) // 2
    if (Mp, Np) != (M, N):
        q = np.zeros((Mp, Np), np.float32)
        q[oy:oy + M, ox:ox + N] = p
        p = q
    return Spectrum(sfft.rfft2(p, workers=workers), (M, N), (Mp, Np), (oy, ox))


# ----------------------------------------------------------------------------- Bragg-filtered field


@dataclass
class BraggField:
    """One Bragg-filtered component on the coarse grid.

    h: complex64 (ny, nx), the filtered image demodulated by ``k_demod`` (image intensity units):
       the full filtered image is ``h(r) exp(2πi k_demod·r)``.
    g_local: float64 (2, ny, nx) local reciprocal vector [kx, ky] (nm⁻¹).
    amplitude: float32 (ny, nx) = |h|.
    """

    h: np.ndarray
    g_local: np.ndarray
    amplitude: np.ndarray
    k_demod: np.ndarray
    mask_center: np.ndarray
    sigma_k: float
    h_grad: np.ndarray | None = None    # (2, ny, nx) complex64 [∂h/∂x, ∂h/∂y] per nm


def coarse_shape(shape, pixel_size_nm, half_width_k: float, oversample: float = 2.0) -> tuple[int, int]:
    """Size (ny, nx) of the coarse grid that holds a Fourier window of half-width ``half_width_k``
    (nm⁻¹), over-sampled ``oversample`` times; never larger than the image."""
    out = []
    for n_full, p in zip(shape, (pixel_size_nm[1], pixel_size_nm[0])):
        dk = 1.0 / (n_full * p)
        w = int(math.ceil(half_width_k / dk))
        n = sfft.next_fast_len(int(math.ceil(oversample * (2 * w + 1))))
        out.append(n_full if n >= n_full else n)
    return out[0], out[1]


def bragg_field(spectrum: np.ndarray, shape, pixel_size_nm, mask_center, sigma_k: float,
                coarse: tuple[int, int], workers: int = 1, half_width_sigma: float = 4.5) -> BraggField:
    """Bragg-filter one reflection from an rfft2 ``spectrum`` of an image of ``shape``.

    mask_center: [kx, ky] nm⁻¹ of the Gaussian mask; sigma_k: its std (nm⁻¹); coarse: grid (ny, nx)
    from :func:`coarse_shape`.  The window is centred on the FFT pixel nearest the mask centre.
    """
    Ny, Nx = shape
    px, py = pixel_size_nm
    dkx, dky = 1.0 / (Nx * px), 1.0 / (Ny * py)
    ny, nx = coarse
    cx, cy = float(mask_center[0]), float(mask_center[1])
    mcx, mcy = int(round(cx / dkx)), int(round(cy / dky))
    hw = half_width_sigma * sigma_k
    wx = min(int(math.ceil(hw / dkx)), (nx - 1) // 2)
    wy = min(int(math.ceil(hw / dky)), (ny - 1) // 2)
    mx = np.arange(-wx, wx + 1)
    my = np.arange(-wy, wy + 1)
    ix = mcx + mx                       # full-FFT column index (signed frequency index)
    iy = mcy + my
    ixm = np.mod(ix, Nx)
    direct = ixm <= Nx // 2
    col_d = np.where(direct, ixm, 0)
    col_c = np.where(direct, 0, Nx - ixm)
    rows_d = np.mod(iy, Ny)[:, None]
    rows_c = np.mod(-iy, Ny)[:, None]
    win = np.where(direct[None, :], spectrum[rows_d, col_d[None, :]],
                   np.conj(spectrum[rows_c, col_c[None, :]]))
    kx = (ix * dkx - cx)[None, :]
    ky = (iy * dky - cy)[:, None]
    mask = np.exp(-(kx * kx + ky * ky) / (2.0 * sigma_k * sigma_k))
    win = (win * mask).astype(np.complex64)
    Z = np.zeros((3, ny, nx), np.complex64)
    ry = np.mod(my, ny)[:, None]
    rx = np.mod(mx, nx)[None, :]
    Z[0, ry, rx] = win
    Z[1, ry, rx] = win * (2j * np.pi * dkx * mx)[None, :].astype(np.complex64)
    Z[2, ry, rx] = win * (2j * np.pi * dky * my)[:, None].astype(np.complex64)
    out = sfft.ifft2(Z, axes=(-2, -1), workers=workers)
    out *= np.float32(ny * nx / (Ny * Nx))
    h, hx, hy = out[0], out[1], out[2]
    p2 = (h.real.astype(np.float64) ** 2 + h.imag.astype(np.float64) ** 2)
    eps = 1e-20 + 1e-12 * float(p2.max())
    inv = 1.0 / (2.0 * np.pi * (p2 + eps))
    gx = mcx * dkx + (np.conj(h) * hx).imag * inv
    gy = mcy * dky + (np.conj(h) * hy).imag * inv
    return BraggField(h=h, g_local=np.stack([gx, gy]), amplitude=np.abs(h).astype(np.float32),
                      k_demod=np.array([mcx * dkx, mcy * dky]), mask_center=np.array([cx, cy]),
                      sigma_k=float(sigma_k), h_grad=np.stack([hx, hy]))


# ----------------------------------------------------------------------------- lattice mechanics


def inv2(a, b, c, d):
    """Element-wise inverse of [[a, b], [c, d]] -> (a', b', c', d')."""
    det = a * d - b * c
    det = np.where(np.abs(det) < 1e-30, 1e-30, det)
    return d / det, -b / det, -c / det, a / det


def distortion(g_local: np.ndarray, g_ref: np.ndarray):
    """F = G_loc^-1 G_ref per pixel, as components (Fxx, Fxy, Fyx, Fyy).

    g_local: (2, 2, ...) [g index, (kx, ky), ...]; g_ref: (2, 2) rows g1, g2 (nm⁻¹).
    """
    a, b = g_local[0, 0], g_local[0, 1]
    c, d = g_local[1, 0], g_local[1, 1]
    ia, ib, ic, id_ = inv2(a, b, c, d)
    G = np.asarray(g_ref, float)
    Fxx = ia * G[0, 0] + ib * G[1, 0]
    Fxy = ia * G[0, 1] + ib * G[1, 1]
    Fyx = ic * G[0, 0] + id_ * G[1, 0]
    Fyy = ic * G[0, 1] + id_ * G[1, 1]
    return Fxx, Fxy, Fyx, Fyy


def polar_strain(Fxx, Fxy, Fyx, Fyy):
    """Left polar decomposition F = V R -> (exx, eyy, exy, omega) with e = V - I, ω in rad."""
    omega = np.arctan2(Fyx - Fxy, Fxx + Fyy)
    c, s = np.cos(omega), np.sin(omega)
    # V = F R^T with R = [[c, -s], [s, c]] (V is symmetric for this ω)
    Vxx = Fxx * c - Fxy * s
    Vxy = Fxx * s + Fxy * c
    Vyx = Fyx * c - Fyy * s
    Vyy = Fyx * s + Fyy * c
    return Vxx - 1.0, Vyy - 1.0, 0.5 * (Vxy + Vyx), omega


def integrate_gradient(gx: np.ndarray, gy: np.ndarray, dx: float, dy: float,
                       weight: np.ndarray | None = None, tol: float = 1e-7, maxiter: int = 300) -> np.ndarray:
    """Weighted least-squares integral f of a gradient field (∂f/∂x = gx, ∂f/∂y = gy).

    Forward differences on the grid; each edge's target gradient is the mean of its two pixels.
    Edges touching a pixel with zero ``weight`` get weight 1e-4 (f is carried smoothly through
    invalid areas without forcing their gradient on the valid ones).  Solved by conjugate
    gradients preconditioned with the exact unweighted solver (DCT-II Neumann Poisson), which is
    the solution itself when every pixel is valid.  The mean of f is 0.
    """
    gx = np.asarray(gx, float)
    gy = np.asarray(gy, float)
    ny, nx = gx.shape
    ex = 0.5 * (gx[:, 1:] + gx[:, :-1])
    ey = 0.5 * (gy[1:, :] + gy[:-1, :])
    if weight is None:
        wx = np.ones_like(ex)
        wy = np.ones_like(ey)
    else:
        w = np.asarray(weight) > 0
        wx = np.where(w[:, 1:] & w[:, :-1], 1.0, 1e-4)
        wy = np.where(w[1:, :] & w[:-1, :], 1.0, 1e-4)

    def dt(e_x, e_y):                     # D^T applied to edge values
        out = np.zeros((ny, nx))
        out[:, :-1] -= e_x / dx
        out[:, 1:] += e_x / dx
        out[:-1, :] -= e_y / dy
        out[1:, :] += e_y / dy
        return out

    def A(f):                             # D^T W D
        return dt(wx * (f[:, 1:] - f[:, :-1]) / dx, wy * (f[1:, :] - f[:-1, :]) / dy)

    lx = (2.0 - 2.0 * np.cos(np.pi * np.arange(nx) / nx)) / dx ** 2
    ly = (2.0 - 2.0 * np.cos(np.pi * np.arange(ny) / ny)) / dy ** 2
    lam = ly[:, None] + lx[None, :]
    lam[0, 0] = 1.0

    def precond(r):                       # (D^T D)^+ by DCT
        h = sfft.dctn(r, type=2, norm="ortho") / lam
        h[0, 0] = 0.0
        return sfft.idctn(h, type=2, norm="ortho")

    b = dt(wx * ex, wy * ey)
    f = precond(dt(ex, ey))
    if weight is None or (wx == 1).all() and (wy == 1).all():
        return f
    r = b - A(f)
    z = precond(r)
    p = z.copy()
    rz = float((r * z).sum())
    bnorm = float(np.sqrt((b * b).sum())) or 1.0
    for _ in range(maxiter):
        if np.sqrt((r * r).sum()) <= tol * bnorm:
            break
        Ap = A(p)
        alpha = rz / float((p * Ap).sum())
        f += alpha * p
        r -= alpha * Ap
        z = precond(r)
        rz_new = float((r * z).sum())
        p = z + (rz_new / rz) * p
        rz = rz_new
    return f - f.mean()


class CoarseGrid:
    """The coarse grid of the Fourier windows and its mapping to image pixels.

    Coarse sample (i, j) sits at padded-image pixel (i·Mp/ny, j·Np/nx), i.e. at image pixel
    (i·Mp/ny - oy, j·Np/nx - ox).
    """

    def __init__(self, spec: Spectrum, cshape: tuple[int, int], pixel_size_nm):
        self.shape = tuple(cshape)
        self.image_shape = spec.shape
        self.padded_shape = spec.padded_shape
        self.offset = spec.offset
        ny, nx = cshape
        Mp, Np = spec.padded_shape
        self.step_px = (Mp / ny, Np / nx)
        self.rows = np.arange(ny) * self.step_px[0] - spec.offset[0]   # image pixel coordinates
        self.cols = np.arange(nx) * self.step_px[1] - spec.offset[1]
        self.step_nm = (self.step_px[1] * pixel_size_nm[0], self.step_px[0] * pixel_size_nm[1])

    def inside(self, margin_px=(0.0, 0.0)) -> np.ndarray:
        """Coarse points inside the image, at least ``margin_px`` (rows, cols) from its border."""
        M, N = self.image_shape
        my = (self.rows >= margin_px[0]) & (self.rows <= M - 1 - margin_px[0])
        mx = (self.cols >= margin_px[1]) & (self.cols <= N - 1 - margin_px[1])
        return my[:, None] & mx[None, :]

    def sample(self, full: np.ndarray) -> np.ndarray:
        """Nearest-neighbour sample of an image-grid map (bool/number) at the coarse points
        (False/0 outside the image)."""
        M, N = self.image_shape
        ri = np.round(self.rows).astype(int)
        ci = np.round(self.cols).astype(int)
        okr = (ri >= 0) & (ri < M)
        okc = (ci >= 0) & (ci < N)
        out = np.zeros(self.shape, dtype=np.asarray(full).dtype)
        out[np.ix_(okr, okc)] = np.asarray(full)[np.ix_(ri[okr], ci[okc])]
        return out

    def upsample(self, coarse: np.ndarray, wrap: bool = True, cubic: bool = True) -> np.ndarray:
        """Bicubic (or bilinear) interpolation of a coarse map onto the image grid (float32)."""
        c = np.ascontiguousarray(coarse, dtype=np.float32)
        M, N = self.image_shape
        sy, sx = self.step_px
        oy, ox = self.offset
        if c.shape == (M, N) and (sy, sx) == (1.0, 1.0) and (oy, ox) == (0, 0):
            return c.copy()
        A = np.array([[1.0 / sx, 0.0, ox / sx], [0.0, 1.0 / sy, oy / sy]], np.float64)
        border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REPLICATE
        flags = (cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
        return cv2.warpAffine(c, A, (N, M), flags=flags, borderMode=border)


@dataclass
class GpaResult:
    """Maps on the image grid (float32, rows x cols) and the parameters used.

    exx, eyy, exy: strain in image axes (dimensionless; NaN where ``mask`` is False);
    rotation: rigid rotation ω (rad, from +x towards +y); displacement: (2, rows, cols) [ux, uy] nm;
    amplitude: (2, rows, cols) Bragg amplitudes (image units); mask: valid pixels;
    g_vectors: refined reference g (2, 2) nm⁻¹ rows g1, g2 [kx, ky]; g_input: before refinement;
    mask_centers (2, 2) nm⁻¹, or (K, 2, 2) for region-adaptive masks (final, after re-centring);
    sigma_k (nm⁻¹) and resolution_nm of the mask;
    coarse_shape: grid of the Fourier windows; reference_level: median amplitude per g in the
    reference region.
    """

    exx: np.ndarray
    eyy: np.ndarray
    exy: np.ndarray
    rotation: np.ndarray
    displacement: np.ndarray
    amplitude: np.ndarray
    mask: np.ndarray
    g_vectors: np.ndarray
    g_input: np.ndarray
    mask_centers: np.ndarray
    sigma_k: float
    resolution_nm: float
    coarse_shape: tuple[int, int]
    reference_level: np.ndarray
    info: dict = field(default_factory=dict)
    sigma: dict = field(default_factory=dict)
    noise: "NoiseModel | None" = None
    grid: "CoarseGrid | None" = None
    valid_coarse: np.ndarray | None = None

    def mean_std(self, sel: np.ndarray) -> dict:
        """Standard errors of the means of exx, eyy, exy, rotation over the image pixels ``sel``
        (propagated noise, see :class:`NoiseModel`; NaN without a noise model)."""
        keys = ("exx", "eyy", "exy", "rotation")
        if self.noise is None or self.grid is None:
            return dict.fromkeys(keys, math.nan)
        sc = self.grid.sample(np.asarray(sel, bool))
        if self.valid_coarse is not None:
            sc &= self.valid_coarse
        if not sc.any():                    # region smaller than the coarse spacing: nearest point
            r, c = np.nonzero(sel)
            i = int(np.argmin(np.abs(self.grid.rows - r.mean())))
            j = int(np.argmin(np.abs(self.grid.cols - c.mean())))
            sc[i, j] = True
        return dict(zip(keys, (float(v) for v in self.noise.mean_std(sc))))


def refine_g(fields: list[BraggField], ref_coarse: np.ndarray) -> np.ndarray:
    """Reference g vectors (2, 2): amplitude²-weighted mean of g_loc over the reference region.

    This is the least-squares fit of a linear phase ramp to the measured phase gradient, with the
    weight of each pixel ∝ 1/var(phase gradient) ∝ |h|².  Pixels below half the reference median
    amplitude are left out.
    """
    out = []
    for f in fields:
        a = f.amplitude
        sel = ref_coarse & (a >= 0.5 * np.median(a[ref_coarse])) if ref_coarse.any() else a > 0
        w = a[sel].astype(float) ** 2
        out.append([(f.g_local[0][sel] * w).sum() / w.sum(), (f.g_local[1][sel] * w).sum() / w.sum()])
    return np.array(out)


def _combine(fieldsets: list[list[BraggField]], idx_c: np.ndarray | None) -> list[BraggField]:
    """Per coarse pixel, the fields of the centre set ``idx_c`` (one set: unchanged)."""
    if len(fieldsets) == 1 or idx_c is None:
        return fieldsets[0]
    out = []
    for i in range(2):
        gl = fieldsets[0][i].g_local.copy()
        amp = fieldsets[0][i].amplitude.copy()
        h = fieldsets[0][i].h.copy()
        hg = fieldsets[0][i].h_grad.copy()
        for k in range(1, len(fieldsets)):
            sel = idx_c == k
            gl[:, sel] = fieldsets[k][i].g_local[:, sel]
            amp[sel] = fieldsets[k][i].amplitude[sel]
            h[sel] = fieldsets[k][i].h[sel]
            hg[:, sel] = fieldsets[k][i].h_grad[:, sel]
        f0 = fieldsets[0][i]
        out.append(BraggField(h=h, g_local=gl, amplitude=amp, k_demod=f0.k_demod,
                              mask_center=f0.mask_center, sigma_k=f0.sigma_k, h_grad=hg))
    return out


def gpa(image: np.ndarray, pixel_size_nm, g_vectors, resolution_nm: float,
        reference_mask: np.ndarray | None = None, mask_centers=None, center_index: np.ndarray | None = None,
        refine: bool = True, amplitude_threshold: float = 0.2, oversample: float = 2.0, workers: int = 1,
        spectrum: Spectrum | None = None, half_width_sigma: float = 4.5,
        edge_margin_nm: float | None = None, pad: bool = True, uncertainty: bool = True) -> GpaResult:
    """Two-g GPA of ``image`` (rows = y) for reference g vectors ``g_vectors`` (2, 2) nm⁻¹.

    resolution_nm: FWHM of the strain point-spread function (sets σ_k, see
    :func:`resolution_to_sigma`); reference_mask: bool (rows, cols) of the reference region (default
    the whole image); mask_centers: Gaussian mask centres (nm⁻¹), (2, 2) or K sets (K, 2, 2)
    (default g itself); center_index: int (rows, cols) in [0, K): the centre set used at each pixel
    (region-adaptive masks: each region's masks centred on its own spots; set 0 elsewhere);
    refine: refine g in the reference region, then re-centre every set > 0 on the mean local g of
    its pixels (set 0 moves with the reference correction) and recompute the fields;
    amplitude_threshold: valid where both amplitudes are at least this fraction of their reference
    medians; edge_margin_nm: pixels closer than this to the image border are left out of the
    refinement (default: the resolution); pad: zero-pad the image by the kernel reach (3.5 σ_x) so
    that the filters do not wrap around the image edges; spectrum: a :func:`prepare_spectrum`
    result to reuse; uncertainty: propagate the image noise to per-pixel standard deviations
    (``sigma`` maps, :class:`NoiseModel`) and keep the model for region standard errors.
    """
    img = np.asarray(image, np.float32)
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    G0 = np.asarray(g_vectors, float).reshape(2, 2)
    C0 = G0[None].copy() if mask_centers is None else np.asarray(mask_centers, float).reshape(-1, 2, 2)
    if abs(np.linalg.det(G0)) < 1e-9 * (np.abs(G0).max() ** 2 + 1e-30):
        raise ValueError("g vectors are collinear")
    sigma_k = resolution_to_sigma(resolution_nm)
    sigma_x = 1.0 / (2.0 * math.pi * sigma_k)
    if spectrum is None:
        pad_px = (int(math.ceil(3.5 * sigma_x / py)), int(math.ceil(3.5 * sigma_x / px))) if pad else (0, 0)
        spectrum = prepare_spectrum(img, pad_px, workers)
    P = spectrum.padded_shape
    cshape = coarse_shape(P, (px, py), half_width_sigma * sigma_k, oversample)
    grid = CoarseGrid(spectrum, cshape, (px, py))
    K = len(C0)
    idx_c = None
    if K > 1 and center_index is not None:
        idx_c = np.clip(grid.sample(np.asarray(center_index, np.int32)), 0, K - 1)

    def fields_for(C):
        return _combine([[bragg_field(spectrum.data, P, (px, py), Ck[i], sigma_k, cshape, workers,
                                      half_width_sigma) for i in range(2)] for Ck in C], idx_c)

    margin = float(resolution_nm) if edge_margin_nm is None else float(edge_margin_nm)
    inside = grid.inside()
    inner = grid.inside((margin / py, margin / px))
    if not inner.any():
        inner = inside.copy()
    if reference_mask is None:
        ref_c = inner.copy()
    else:
        ref_c = grid.sample(np.asarray(reference_mask, bool))
        if (ref_c & inner).any():
            ref_c &= inner
        if not ref_c.any():
            ref_c = inner.copy()
    fields = fields_for(C0)
    C = C0
    if refine:
        G = refine_g(fields, ref_c)
        C = C0 + (G - G0)[None]
        if idx_c is not None:
            for k in range(1, K):
                sel = (idx_c == k) & inner
                if sel.sum() >= 16:
                    C[k] = refine_g(fields, sel)
        fields = fields_for(C)
        G = refine_g(fields, ref_c)
    else:
        G = G0.copy()
    gl = np.stack([f.g_local for f in fields])           # (2 g, 2 comp, ny, nx)
    Fxx, Fxy, Fyx, Fyy = distortion(gl, G)
    exx, eyy, exy, om = polar_strain(Fxx, Fxy, Fyx, Fyy)
    levels = np.array([float(np.median(f.amplitude[ref_c])) for f in fields])
    valid_c = inside.copy()
    for f, lev in zip(fields, levels):
        valid_c &= f.amplitude >= amplitude_threshold * lev
    # displacement: grad u = I - F^-1 (Eulerian), least-squares integral over the valid points
    iFxx, iFxy, iFyx, iFyy = inv2(Fxx, Fxy, Fyx, Fyy)
    dxc, dyc = grid.step_nm
    ux = integrate_gradient(1.0 - iFxx, -iFxy, dxc, dyc, valid_c)
    uy = integrate_gradient(-iFyx, 1.0 - iFyy, dxc, dyc, valid_c)
    sel = ref_c & valid_c
    if sel.any():
        ux -= ux[sel].mean()
        uy -= uy[sel].mean()
    # back to the image grid
    amp = np.stack([grid.upsample(f.amplitude) for f in fields])
    valid = (amp[0] >= amplitude_threshold * levels[0]) & (amp[1] >= amplitude_threshold * levels[1])
    # invalid coarse points take their nearest valid neighbour's value, so that the interpolation
    # near masked areas and the image border is not pulled towards an arbitrary fill value
    if valid_c.any() and not valid_c.all():
        near = ndimage.distance_transform_edt(~valid_c, return_distances=False, return_indices=True)
        fill = tuple(near)
    else:
        fill = None
    maps = {}
    for name, arr in (("exx", exx), ("eyy", eyy), ("exy", exy), ("rotation", om)):
        m = grid.upsample(arr[fill] if fill is not None else arr, wrap=False)
        m[~valid] = np.nan
        maps[name] = m
    disp = np.stack([grid.upsample(ux, wrap=False), grid.upsample(uy, wrap=False)])
    disp[:, ~valid] = np.nan
    sig, nm = {}, None
    if uncertainty:
        count_like = float(img.min()) >= 0.0 and float(img.mean()) > 0.0
        nspec = windowed_spectrum(img, workers)
        nm = noise_model(spectrum, fields, G, ref_c, grid, (px, py), sigma_k,
                         float(img.mean()) if count_like else None, workers, nspec)
        for k, arr in zip(("exx", "eyy", "exy", "rotation"), nm.sigma):
            m = grid.upsample(arr[fill] if fill is not None else arr, wrap=False, cubic=False)
            m[~valid] = np.nan
            sig[k] = m
    return GpaResult(exx=maps["exx"], eyy=maps["eyy"], exy=maps["exy"], rotation=maps["rotation"],
                     displacement=disp, amplitude=amp, mask=valid, g_vectors=G, g_input=G0,
                     mask_centers=C[0] if K == 1 else C, sigma_k=sigma_k, resolution_nm=float(resolution_nm),
                     coarse_shape=cshape, reference_level=levels,
                     info={"padded_shape": P, "coarse_step_nm": grid.step_nm},
                     sigma=sig, noise=nm, grid=grid, valid_coarse=valid_c)


# ----------------------------------------------------------------------------------- uncertainty


#: quantile of the ring sectors' noise levels used (robust to the Bragg spots and streaks on the ring)
QUANTILE = 0.25


def windowed_spectrum(image: np.ndarray, workers: int = 1) -> Spectrum:
    """rfft2 of ``image`` minus its mean times a 2-D Hann window, scaled by 1/rms(window) so that
    white noise keeps E|S|² = M N s².  The window suppresses the streaks that the lattice's cut at
    the image border puts through every Bragg spot (power that is not noise), which would otherwise
    inflate the noise level read on the ring around g."""
    u = np.asarray(image, np.float32)
    M, N = u.shape
    w = (np.hanning(M)[:, None] * np.hanning(N)[None, :]).astype(np.float32)
    scale = np.float32(1.0 / math.sqrt(float((w.astype(np.float64) ** 2).mean())))
    data = sfft.rfft2((u - np.float32(u.mean())) * w * scale, workers=workers)
    return Spectrum(data, (M, N), (M, N), (0, 0))


def noise_density(spectrum: Spectrum, pixel_size_nm, g: np.ndarray, sigma_k: float,
                  exclude: np.ndarray | None = None) -> float:
    """Noise variance per image pixel (image units²) near the reflection ``g`` (nm⁻¹).

    Estimated from the power ``|S(k)|²`` of the (padded) periodic-component spectrum on the ring
    ``| |k| - |g| | ≤ max(4.5 σ_k, 3 Δk)``, leaving out discs of 4.5 σ_k around the ``exclude`` points
    (±g1, ±g2, mask centres): the ring is cut into up to 24 angular sectors, each sector's median
    power / ln 2 estimates the mean of its (exponential) noise power, and the 25 % quantile of the
    sectors is taken (minimum statistics: the other Bragg spots, the streaks of interfaces and the
    strain sidebands cover part of the ring, the sectors between them hold noise only).  For white noise of variance
    s² per pixel, E|S(k)|² = M N s² (M N: the image's pixels, the zero padding adds none), so
    s² = mean |S|² / (M N).  Noise that is not white (amorphous film, camera MTF) is taken at the
    ring's |k|, where the Bragg filter sees it.
    """
    Mp, Np = spectrum.padded_shape
    M, N = spectrum.shape
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    dkx, dky = 1.0 / (Np * px), 1.0 / (Mp * py)
    gn = float(np.hypot(*g))
    w = max(4.5 * sigma_k, 3.0 * max(dkx, dky))
    # rows / cols of the rfft half plane that can hold the ring
    kmax = gn + w
    nr = min(int(math.ceil(kmax / dky)) + 1, Mp // 2)
    nc = min(int(math.ceil(kmax / dkx)) + 1, Np // 2 + 1)
    rows = np.r_[0:nr + 1, Mp - nr:Mp] if 2 * nr + 1 < Mp else np.arange(Mp)
    rows = np.unique(rows)
    ky = np.where(rows <= Mp // 2, rows, rows - Mp) * dky
    kx = np.arange(nc) * dkx
    KX, KY = np.meshgrid(kx, ky)
    kk = np.hypot(KX, KY)
    ring = np.abs(kk - gn) <= w
    pts = [] if exclude is None else np.asarray(exclude, float).reshape(-1, 2)
    for p in pts:
        for sgn in (1.0, -1.0):
            ring &= np.hypot(KX - sgn * p[0], KY - sgn * p[1]) > 4.5 * sigma_k
    if ring.sum() < 16:
        ring = np.abs(kk - gn) <= w
    vals = spectrum.data[rows[:, None], np.arange(nc)[None, :]][ring]
    p2 = vals.real.astype(np.float64) ** 2 + vals.imag.astype(np.float64) ** 2
    # minimum statistics over angular sectors: the streaks and sidebands of the lattices (interfaces,
    # strain) cover part of the ring; sectors between them hold noise only
    ang = np.arctan2(KY[ring], KX[ring])                  # (-90°, 90°] on the half plane
    n_sec = int(np.clip(len(p2) // 64, 1, 24))
    sec = np.minimum(((ang + 0.5 * np.pi) / np.pi * n_sec).astype(int), n_sec - 1)
    med = np.array([np.median(p2[sec == i]) for i in range(n_sec) if (sec == i).sum() >= 16])
    if med.size == 0:
        med = np.array([np.median(p2)])
    q = float(np.quantile(med, QUANTILE)) / math.log(2.0)
    return q / float(M * N)


def _jacobians(gl: np.ndarray, G: np.ndarray):
    """∂(exx, eyy, exy, ω)/∂(g1x, g1y, g2x, g2y) of the local g (J) and of the reference g (JG),
    by forward differences; each (4 outputs, 4 inputs, ny, nx)."""
    h = 1e-6 * float(np.abs(G).max())
    J = np.zeros((4, 4) + gl.shape[2:])
    JG = np.zeros_like(J)
    e0 = polar_strain(*distortion(gl, G))
    for j in range(4):                                   # forward differences (float64: ~1e-6 rel.)
        i, c = divmod(j, 2)
        d = gl.copy()
        d[i, c] = d[i, c] + h
        for o, (e1, e) in enumerate(zip(polar_strain(*distortion(d, G)), e0)):
            J[o, j] = (e1 - e) / h
        Gd = np.array(G, float).copy()
        Gd[i, c] += h
        for o, (e1, e) in enumerate(zip(polar_strain(*distortion(gl, Gd)), e0)):
            JG[o, j] = (e1 - e) / h
    return J, JG


@dataclass
class NoiseModel:
    """First-order propagation of additive noise through the Bragg filter to the maps.

    Each Bragg-filtered field is ``h + n`` with n the filtered noise (circular complex Gaussian,
    spectral density ``s² px py M(k)²``, M the Gaussian mask).  The local g is
    ``Im(conj h ∂h)/(2π|h|²)``, so its first-order error is ``δg_c = Im(a_c n + b ∂_c n)`` with
    ``b = conj(h)/(2π|h|²)`` and ``a_c = -conj(∂_c h)/(2π|h|²) - 2i g'_c conj(h)/|h|²``.  With
    ``V = E|n|² = s² px py π σ_k²`` and ``E|∂_c n|² = V (2π)² σ_k²/2`` this gives the per-pixel
    covariance of the local g, then the strain covariance through the Jacobian of the polar
    decomposition.  The refined reference g (an amplitude²-weighted mean over the reference region)
    is a linear functional of the same noise; its covariance is added.

    Shot noise on a lattice image is not circular: its variance follows the atom columns, in phase
    with the fringes, so it moves the Bragg amplitude more than the phase.  For a non-negative
    image the per-pixel σ takes this into account (:func:`shot_noise_pseudo_variance`, noise
    variance ∝ intensity); region standard errors keep the circular model (an upper bound).
    Read noise or a dark offset make the shot-noise gain s²/mean too large (σ then too small where
    the lattice contrast is strong).  Region means are linear
    functionals too: their variance is an exact k-space integral (:meth:`mean_std`), which accounts
    for the correlation of neighbouring pixels (the phase-gradient noise averages out faster than
    1/√n over a region).

    s2: noise variance per image pixel for g1, g2; a: (2 g, 2 comp, ny, nx), b: (2, ny, nx) complex;
    J, JG: Jacobians (4, 4, ny, nx) of (exx, eyy, exy, ω) w.r.t. the local and reference g;
    ref_w: (2, ny, nx) weights of each g's refinement (each sums to 1); cov_G: (4, 4) covariance of the refined g;
    sigma: (4, ny, nx) per-pixel std of (exx, eyy, exy, ω) on the coarse grid.
    """

    s2: np.ndarray
    a: np.ndarray
    b: np.ndarray
    J: np.ndarray
    JG: np.ndarray
    ref_w: np.ndarray
    cov_G: np.ndarray
    sigma: np.ndarray
    sigma_k: float
    step_nm: tuple[float, float]
    pixel_area_nm2: float

    def _functional_var(self, alpha: np.ndarray, beta: np.ndarray) -> float:
        """Var of ``Σ_f Im(Σ_r α_f(r) n_f(r) + Σ_c β_fc(r) ∂_c n_f(r))`` (α (2, ny, nx), β (2, 2, ny, nx))."""
        ny, nx = alpha.shape[1:]
        dx, dy = self.step_nm
        kx = np.fft.fftfreq(nx, dx)[None, :]
        ky = np.fft.fftfreq(ny, dy)[:, None]
        S = np.exp(-(kx * kx + ky * ky) / self.sigma_k ** 2)        # M(k)² (mask centred on demod)
        dk = 1.0 / (nx * dx * ny * dy)
        total = 0.0
        for f in range(2):
            # Σ_r α(r) e^{+2πi k·r} = conj(FFT(conj α)) ; scaled by nx ny for ifft normalisation
            A = np.fft.ifft2(alpha[f]) * (nx * ny)
            A = A + 2j * np.pi * kx * np.fft.ifft2(beta[f, 0]) * (nx * ny)
            A = A + 2j * np.pi * ky * np.fft.ifft2(beta[f, 1]) * (nx * ny)
            total += 0.5 * self.s2[f] * self.pixel_area_nm2 * float((np.abs(A) ** 2 * S).sum() * dk)
        return total

    def functional_of(self, f: int, c: int, weights: np.ndarray):
        """α, β of the functional Σ_r w(r) δg_fc(r) (one component of one local g)."""
        alpha = np.zeros((2,) + weights.shape, complex)
        beta = np.zeros((2, 2) + weights.shape, complex)
        alpha[f] = weights * self.a[f, c]
        beta[f, c] = weights * self.b[f]
        return alpha, beta

    def _coeffs(self, weights: np.ndarray, Jsel: np.ndarray):
        """α, β of the functional Σ_r w(r) Σ_j Jsel_j(r) δg_j(r) (Jsel (4, ny, nx) over inputs;
        weights (ny, nx), or (2, ny, nx) one per g)."""
        shape = weights.shape[-2:]
        alpha = np.zeros((2,) + shape, complex)
        beta = np.zeros((2, 2) + shape, complex)
        for j in range(4):
            f, c = divmod(j, 2)
            wj = (weights[f] if weights.ndim == 3 else weights) * Jsel[j]
            alpha[f] += wj * self.a[f, c]
            beta[f, c] += wj * self.b[f]
        return alpha, beta

    def mean_std(self, sel: np.ndarray) -> np.ndarray:
        """Standard error (4,) of the plain means of (exx, eyy, exy, ω) over the coarse points
        ``sel``, including the error of the refined reference g (one functional, so that the
        reference region's own mean is not double-counted)."""
        sel = np.asarray(sel, bool)
        n = int(sel.sum())
        out = np.full(4, np.nan)
        if n == 0:
            return out
        w = sel / n
        for o in range(4):
            alpha, beta = self._coeffs(w, self.J[o])
            KG = (self.JG[o] * w).sum(axis=(1, 2))                 # d(mean)/dG (4,)
            a2, b2 = self._coeffs(self.ref_w, np.broadcast_to(KG[:, None, None], (4,) + w.shape))
            out[o] = math.sqrt(max(self._functional_var(alpha + a2, beta + b2), 0.0))
        return out


def shot_noise_pseudo_variance(spectrum: Spectrum, field_: BraggField, grid: CoarseGrid, pixel_size_nm,
                               sigma_k: float, c: float, workers: int = 1) -> np.ndarray:
    """E[n²] (complex, coarse grid, in the field's demodulated frame) of Poisson-like noise.

    With a noise variance proportional to the intensity, v(r) = c I(r), the filtered noise is not
    circular: ``E[n(r)²] = px py ∫ K(r - r')² v(r') dr'`` (K: the complex filter kernel) picks the
    intensity's Fourier component at twice the mask centre, through the Gaussian mask of std
    σ_k √2 and weight π σ_k².  Where the atom columns are bright in phase with the fringes, the
    noise then moves the fringes' amplitude more than their phase.
    """
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    c2 = 2.0 * np.asarray(field_.mask_center, float)
    f2 = bragg_field(spectrum.data, spectrum.padded_shape, (px, py), c2, sigma_k * math.sqrt(2.0), grid.shape,
                     workers, half_width_sigma=4.5 / math.sqrt(2.0))
    # padded-image coordinates (nm) of the coarse points: the demodulation origin
    xs = (grid.cols + grid.offset[1]) * px
    ys = (grid.rows + grid.offset[0]) * py
    dk = f2.k_demod - 2.0 * field_.k_demod
    phase = np.exp(2j * np.pi * (dk[0] * xs[None, :] + dk[1] * ys[:, None]))
    return px * py * c * math.pi * sigma_k ** 2 * f2.h.astype(complex) * phase


def noise_model(spectrum: Spectrum, fields: list[BraggField], G: np.ndarray, ref_sel: np.ndarray,
                grid: CoarseGrid, pixel_size_nm, sigma_k: float, image_mean: float | None = None,
                workers: int = 1, noise_spectrum: Spectrum | None = None) -> NoiseModel:
    """The :class:`NoiseModel` of a GPA (fields on the coarse grid, refined G, refinement pixels).

    image_mean: mean intensity of a non-negative, count-like image: the noise is then taken as
    shot noise (variance ∝ intensity, gain s²/mean) and its non-circular part is accounted for in
    the per-pixel σ (:func:`shot_noise_pseudo_variance`); None: stationary circular noise.
    Region-mean standard errors use the circular model (conservative).  noise_spectrum: the
    spectrum for the noise level (:func:`windowed_spectrum`: the cut of the lattice at the image
    border or the zero padding would spread every Bragg spot's power over the ring; default
    ``spectrum``).
    """
    px, py = float(pixel_size_nm[0]), float(pixel_size_nm[1])
    excl = np.vstack([G] + [f.mask_center[None] for f in fields])
    nspec = noise_spectrum if noise_spectrum is not None else spectrum
    s2 = np.array([noise_density(nspec, (px, py), f.mask_center, sigma_k, excl) for f in fields])
    V = s2 * px * py * math.pi * sigma_k ** 2
    Vd = V * (2 * math.pi) ** 2 * sigma_k ** 2 / 2.0
    shape = fields[0].amplitude.shape
    a = np.zeros((2, 2) + shape, complex)
    b = np.zeros((2,) + shape, complex)
    covg = np.zeros((2, 3) + shape)                       # per g: var x, var y, cov xy
    for i, f in enumerate(fields):
        h = f.h.astype(complex)
        p2 = np.abs(h) ** 2
        p2 = np.maximum(p2, 1e-12 * float(p2.max()) + 1e-30)
        b[i] = np.conj(h) / (2 * math.pi * p2)
        for c in range(2):
            gprime = (np.conj(h) * f.h_grad[c]).imag / (2 * math.pi * p2)
            a[i, c] = -np.conj(f.h_grad[c]) / (2 * math.pi * p2) - 2j * gprime * np.conj(h) / p2
        covg[i, 0] = 0.5 * (np.abs(a[i, 0]) ** 2 * V[i] + np.abs(b[i]) ** 2 * Vd[i])
        covg[i, 1] = 0.5 * (np.abs(a[i, 1]) ** 2 * V[i] + np.abs(b[i]) ** 2 * Vd[i])
        covg[i, 2] = 0.5 * (a[i, 0] * np.conj(a[i, 1])).real * V[i]
        if image_mean is not None and image_mean > 0:
            P2 = shot_noise_pseudo_variance(spectrum, f, grid, (px, py), sigma_k, s2[i] / image_mean, workers)
            k2 = (2 * math.pi) ** 2 * sigma_k ** 2 / 2.0
            for c in range(2):
                pseudo = 0.5 * (a[i, c] ** 2 * P2 + b[i] ** 2 * P2 * k2).real
                covg[i, c] = np.maximum(covg[i, c] - pseudo, 0.1 * covg[i, c])
            covg[i, 2] -= 0.5 * (a[i, 0] * a[i, 1] * P2).real
    gl = np.stack([f.g_local for f in fields])
    J, JG = _jacobians(gl, G)
    # reference-g weights (as in refine_g) and its covariance
    ref_w = np.zeros((2,) + shape)
    for i, f in enumerate(fields):
        amp = f.amplitude
        sel = ref_sel & (amp >= 0.5 * np.median(amp[ref_sel])) if ref_sel.any() else amp > 0
        w = np.where(sel, amp.astype(float) ** 2, 0.0)
        ref_w[i] = w / max(w.sum(), 1e-300)
    nm = NoiseModel(s2=s2, a=a, b=b, J=J, JG=JG, ref_w=np.zeros(shape), cov_G=np.zeros((4, 4)),
                    sigma=np.zeros((4,) + shape), sigma_k=float(sigma_k), step_nm=grid.step_nm,
                    pixel_area_nm2=px * py)
    nm.ref_w = ref_w
    cov_G = np.zeros((4, 4))
    for i in range(2):
        one = [nm.functional_of(i, c, ref_w[i]) for c in range(2)]
        vx, vy = (nm._functional_var(*ab) for ab in one)
        vxy = nm._functional_var(one[0][0] + one[1][0], one[0][1] + one[1][1])
        cov_G[2 * i, 2 * i], cov_G[2 * i + 1, 2 * i + 1] = vx, vy
        cov_G[2 * i, 2 * i + 1] = cov_G[2 * i + 1, 2 * i] = 0.5 * (vxy - vx - vy)
    nm.cov_G = cov_G
    # per-pixel covariance of the inputs (block diagonal) -> outputs
    var = np.zeros((4,) + shape)
    for o in range(4):
        acc = np.zeros(shape)
        for i in range(2):
            jx, jy = J[o, 2 * i], J[o, 2 * i + 1]
            acc += jx * jx * covg[i, 0] + jy * jy * covg[i, 1] + 2 * jx * jy * covg[i, 2]
        jg = JG[o]
        acc += np.einsum("i...,ij,j...->...", jg, cov_G, jg)
        var[o] = acc
    nm.sigma = np.sqrt(np.maximum(var, 0.0))
    return nm
