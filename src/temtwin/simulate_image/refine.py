"""Refinement of the model against a HAADF image with the linear model: per-column in-plane displacements
and per-column composition (the fraction of a heavier substituent, e.g. the Ge fraction in SiGe).

Each iteration linearises I = bg + b · Σ_c w_c K(r − r_c) about the current columns (K: the fitted PSF) and
solves for all column shifts δr_c and weight changes δw_c at once with sparse least squares (each column
touches only a window of ``halfwidth`` pixels), then re-simulates.  The residual is exact (FFT model);
only the Jacobian is windowed.  A column's weight is w = n_atoms · ((1 − x) Z_a^n + x Z_b^n), so the
composition is x = (w / n_atoms − Z_a^n) / (Z_b^n − Z_a^n).  The global intensity scale and the column
weights are degenerate (scale · w): the image fixes only the column-to-column differences, so the mean
weight is held at the start model's (its mean composition, from EELS or the design, is the absolute
reference) and the scale is re-estimated with the weights at every iteration; the background offset is
refined too.  Lengths in nm, image frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import lsqr

from .linear import LinearHAADF


@dataclass
class Columns:
    """Atom columns: ``xy_nm`` (C, 2), ``n_atoms`` (C,), ``atom_column`` (N,) index of each atom's column."""

    xy_nm: np.ndarray
    n_atoms: np.ndarray
    atom_column: np.ndarray


def find_columns(positions_nm: np.ndarray, tol_nm: float = 0.005) -> Columns:
    """Group atoms that share (x, y) within ``tol_nm`` into columns along the beam."""
    key = np.round(np.asarray(positions_nm)[:, :2] / tol_nm).astype(np.int64)
    _, first, inv, counts = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    xy = np.zeros((len(counts), 2))
    np.add.at(xy, inv, np.asarray(positions_nm)[:, :2])
    return Columns(xy / counts[:, None], counts, inv)


def composition_from_weight(w: np.ndarray, n_atoms: np.ndarray, za: int, zb: int, exponent: float) -> np.ndarray:
    """Fraction x of species ``zb`` in each column from its linear-model weight."""
    a, b = float(za) ** exponent, float(zb) ** exponent
    return (w / n_atoms - a) / (b - a)


def weight_from_composition(x: np.ndarray, n_atoms: np.ndarray, za: int, zb: int, exponent: float) -> np.ndarray:
    a, b = float(za) ** exponent, float(zb) ** exponent
    return n_atoms * ((1 - x) * a + x * b)


def _psf_fine(imager: LinearHAADF, defocus_nm, cs_um, source_nm):
    """PSF centred on the fine grid, with its gradients (per fine pixel)."""
    ft = imager.transfer(defocus_nm, cs_um, source_nm)
    psf = np.fft.fftshift(np.fft.ifft2(ft).real)
    gy, gx = np.gradient(psf)
    return psf, gx, gy


def refine_columns(imager: LinearHAADF, data: np.ndarray, xy_nm: np.ndarray, weights: np.ndarray, *,
                   defocus_nm: float, cs_um: float, source_nm: float, offset: float, scale: float,
                   iterations: int = 3, halfwidth_px: int = 6, mask: np.ndarray | None = None,
                   max_step_nm: float = 0.02, fix_mean_weight: bool = True, callback=None):
    """Gauss–Newton refinement of column positions (nm) and weights against ``data``.

    Returns (xy_nm, weights, history) with history the residual RMS per iteration (iteration 0 = start).
    ``callback(k, xy, w)`` is called after each iteration (and for k = 0 before the first).
    """
    rows, cols = imager.shape
    px, py = imager.pixel_nm
    os_ = imager.os
    psf, gx, gy = _psf_fine(imager, defocus_nm, cs_um, source_nm)
    fr, fc = psf.shape
    c0r, c0c = fr // 2, fc // 2
    mask = np.ones(imager.shape, bool) if mask is None else mask
    xy = np.array(xy_nm, float)
    w = np.array(weights, float)
    w0_mean = float(w.mean())
    nc = len(w)
    h = int(halfwidth_px)
    dr, dc = np.meshgrid(np.arange(-h, h + 1), np.arange(-h, h + 1), indexing="ij")
    dr = dr.ravel()
    dc = dc.ravel()
    hist = []

    def model(xy, w):
        return offset + scale * imager.image(xy, w, defocus_nm, cs_um, source_nm)

    r = data - model(xy, w)
    hist.append(float(np.sqrt(np.mean(r[mask] ** 2))))
    if callback:
        callback(0, xy, w)
    norm = float(os_ * os_)
    for k in range(1, iterations + 1):
        # pixels near each column
        ci = np.round(xy[:, 1] / py).astype(int)
        cj = np.round(xy[:, 0] / px).astype(int)
        pr = ci[:, None] + dr[None, :]
        pc = cj[:, None] + dc[None, :]
        ok = (pr >= 0) & (pr < rows) & (pc >= 0) & (pc < cols)
        prc = np.clip(pr, 0, rows - 1)
        pcc = np.clip(pc, 0, cols - 1)
        ok &= mask[prc, pcc]
        # offsets pixel - column in fine pixels, PSF index
        ox = (pc * px - xy[:, 0:1]) / (px / os_) + c0c
        oy = (pr * py - xy[:, 1:2]) / (py / os_) + c0r
        coords = np.stack([oy.ravel(), ox.ravel()])
        kv = ndimage.map_coordinates(psf, coords, order=1, mode="constant").reshape(pr.shape) * norm
        kx = ndimage.map_coordinates(gx, coords, order=1, mode="constant").reshape(pr.shape) * norm
        ky = ndimage.map_coordinates(gy, coords, order=1, mode="constant").reshape(pr.shape) * norm
        # d model / d x_c = -scale * w_c * dK/dx (per nm: fine pixel = px/os)
        jx = -scale * w[:, None] * kx / (px / os_)
        jy = -scale * w[:, None] * ky / (py / os_)
        jw = scale * kv
        pix = (prc * cols + pcc)
        rowsel = pix[ok]
        colid = np.repeat(np.arange(nc)[:, None], pr.shape[1], axis=1)[ok]
        # scale unknowns: positions in pm-ish units, weights relative
        sx, sw = 0.01, max(float(np.median(w)), 1e-9) * 0.1
        so = max(abs(offset), 1.0) * 0.01
        valid = np.flatnonzero(mask.ravel())
        jac = sparse.csr_matrix(
            (np.concatenate([jx[ok] * sx, jy[ok] * sx, jw[ok] * sw, np.full(len(valid), so)]),
             (np.concatenate([rowsel, rowsel, rowsel, valid]),
              np.concatenate([colid, colid + nc, colid + 2 * nc, np.full(len(valid), 3 * nc)]))),
            shape=(rows * cols, 3 * nc + 1))
        step = lsqr(jac, r.ravel() * mask.ravel(), damp=1e-3 * abs(scale) * sw, atol=1e-10, btol=1e-10,
                    iter_lim=500)[0]
        dx = np.clip(step[:nc] * sx, -max_step_nm, max_step_nm)
        dy = np.clip(step[nc:2 * nc] * sx, -max_step_nm, max_step_nm)
        xy = xy + np.stack([dx, dy], axis=1)
        w = np.clip(w + step[2 * nc:3 * nc] * sw, 0, None)
        offset = offset + step[3 * nc] * so
        if fix_mean_weight:
            f = w0_mean / max(float(w.mean()), 1e-12)
            w = w * f
            scale = scale / f
        r = data - model(xy, w)
        hist.append(float(np.sqrt(np.mean(r[mask] ** 2))))
        if callback:
            callback(k, xy, w)
    return xy, w, hist
