"""Applying a measured displacement field to a lattice, and removing atoms that end up too close.

GPA measures the displacement u_E(x) at *deformed* (image) positions x: x = X + u_E(x), where X
is the reference-lattice position.  Atoms are generated at reference positions X, so the
Lagrangian displacement u_L(X) = u_E(X + u_L(X)) is needed.  It is the fixed point of

    u ← u_E(X + u),   starting from u = u_E(X),

which converges geometrically with rate ≈ |∇u| (the strain, ≪ 1).  The iteration is vectorised
over all columns and uses a cubic B-spline interpolant of the measured field (smooth, and exact for
fields linear in x: the map is extended beyond its edges by odd reflection, which continues a
linear field linearly, before the spline coefficients are computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from numba import njit
from scipy.spatial import cKDTree


@dataclass
class DisplacementField:
    """A 2D displacement field u = (ux, uy) (nm) sampled on an image's pixel grid.

    Pixel (i, j) is the point (x, y) = (j·px, i·py) nm.  Invalid pixels (mask False or NaN) are
    filled with the nearest valid value.  ``pad`` pixels of linear (odd-reflection) extension are
    added on every side; beyond them the field is held constant.
    """

    coeffs: np.ndarray            # (2, rows + 2 pad, cols + 2 pad) spline coefficients
    pixel_size_nm: tuple[float, float]
    pad: int
    max_abs_nm: float = 0.0       # largest |u| component of the (filled) maps

    @classmethod
    def from_maps(cls, ux: np.ndarray, uy: np.ndarray, pixel_size_nm, mask: np.ndarray | None = None,
                  pad: int = 16) -> "DisplacementField":
        u = np.stack([np.asarray(ux, float), np.asarray(uy, float)])
        valid = np.all(np.isfinite(u), axis=0)
        if mask is not None:
            valid &= np.asarray(mask, bool)
        if not valid.any():
            raise ValueError("displacement field has no valid pixel")
        if not valid.all():
            _, (ii, jj) = ndimage.distance_transform_edt(~valid, return_indices=True)
            u = u[:, ii, jj]
        up = np.pad(u, ((0, 0), (pad, pad), (pad, pad)), mode="reflect", reflect_type="odd")
        coeffs = np.stack([ndimage.spline_filter(c, order=3, mode="mirror") for c in up])
        return cls(coeffs, (float(pixel_size_nm[0]), float(pixel_size_nm[1])), pad, float(np.abs(u).max()))

    @classmethod
    def uniform_gradient(cls, grad: np.ndarray, shape, pixel_size_nm, origin_nm=(0.0, 0.0)) -> "DisplacementField":
        """The Eulerian field of a uniform deformation gradient F = I + grad: u_E(x) = (I − F⁻¹)(x − o)."""
        F = np.eye(2) + np.asarray(grad, float)
        G = np.eye(2) - np.linalg.inv(F)
        rows, cols = shape
        y, x = np.mgrid[0:rows, 0:cols].astype(float)
        x = x * pixel_size_nm[0] - origin_nm[0]
        y = y * pixel_size_nm[1] - origin_nm[1]
        return cls.from_maps(G[0, 0] * x + G[0, 1] * y, G[1, 0] * x + G[1, 1] * y, pixel_size_nm)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """u_E (n, 2) nm at image points ``xy`` (n, 2) nm (cubic spline)."""
        xy = np.asarray(xy, float)
        coords = np.stack([xy[:, 1] / self.pixel_size_nm[1] + self.pad, xy[:, 0] / self.pixel_size_nm[0] + self.pad])
        hi = np.array(self.coeffs.shape[1:], float)[:, None] - 1
        coords = np.clip(coords, 0, hi)
        return np.column_stack([ndimage.map_coordinates(c, coords, order=3, mode="mirror", prefilter=False)
                                for c in self.coeffs])

    def lagrangian(self, X: np.ndarray, tol_nm: float = 1e-7, max_iter: int = 60) -> tuple[np.ndarray, dict]:
        """Lagrangian displacement u_L at reference points X (n, 2) nm by fixed-point iteration.

        Returns (u_L (n, 2) nm, info with ``iterations`` and ``residual_nm`` = max |u − u_E(X + u)|).
        Points whose iteration has not converged after ``max_iter`` steps keep their last value and
        are counted in ``info["not_converged"]``.
        """
        X = np.asarray(X, float)
        u = self(X)
        active = np.arange(len(X))
        it = 0
        res = 0.0
        while len(active) and it < max_iter:
            it += 1
            new = self(X[active] + u[active])
            step = np.abs(new - u[active]).max(axis=1)
            u[active] = new
            active = active[step > tol_nm]
        if len(X):
            res = float(np.abs(self(X + u) - u).max())
        return u, {"iterations": it, "residual_nm": res, "not_converged": int(len(active))}


def remove_close_atoms(positions_nm: np.ndarray, min_distance_nm: float, priority: np.ndarray | None = None,
                       period_z_nm: float | None = None) -> tuple[np.ndarray, int]:
    """Keep-mask removing atoms closer than ``min_distance_nm`` to a kept atom (KD-tree rule).

    Every close pair (i, j) loses the atom of lower priority (higher ``priority`` value; ties: the
    higher index).  Pairs are resolved in order of priority so that an atom already removed does not
    remove its partner too.  ``period_z_nm``: the slab is periodic along z with that period.
    Returns (keep (N,) bool, number of close pairs found).
    """
    p = np.asarray(positions_nm, float)
    n = len(p)
    keep = np.ones(n, bool)
    if n < 2 or min_distance_nm <= 0:
        return keep, 0
    tree = _tree(p, period_z_nm, min_distance_nm)
    pairs = tree.query_pairs(min_distance_nm, output_type="ndarray")
    if len(pairs) == 0:
        return keep, 0
    pr = np.zeros(n) if priority is None else np.asarray(priority, float)
    i, j = pairs[:, 0], pairs[:, 1]
    # loser: lower priority (larger value), ties -> larger index
    swap = (pr[i] > pr[j]) | ((pr[i] == pr[j]) & (i > j))
    win = np.where(swap, j, i)
    lose = np.where(swap, i, j)
    # greedy in rank order: a loser always ranks below its winner, so when a pair is reached every
    # pair that could remove its winner has already been decided (exact sequential greedy)
    rank = np.empty(n, np.int64)
    rank[np.lexsort((np.arange(n), pr))] = np.arange(n)
    order = np.argsort(rank[win], kind="stable")
    _greedy(win[order], lose[order], keep)
    return keep, int(len(pairs))


def _tree(p: np.ndarray, period_z_nm: float | None, cutoff: float) -> cKDTree:
    if period_z_nm:
        lo = p.min(0)
        q = p - lo
        q[:, 2] = wrap_periodic(p[:, 2], period_z_nm)
        box = np.array([q[:, 0].max() + 4 * cutoff + 1.0, q[:, 1].max() + 4 * cutoff + 1.0, period_z_nm])
        return cKDTree(q, boxsize=box)
    return cKDTree(p)


@njit(cache=True)
def _greedy(win, lose, keep):
    for k in range(len(win)):
        if keep[win[k]]:
            keep[lose[k]] = False


def wrap_periodic(z: np.ndarray, period: float) -> np.ndarray:
    """z folded into [0, period) (round-off that lands exactly on ``period`` goes to 0)."""
    w = np.mod(z, period)
    w[w >= period] = 0.0
    return w
