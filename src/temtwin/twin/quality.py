"""Quality screen of an atomic model: nearest-neighbour distances and a map of unphysical distortions.

For every atom the distance to its nearest neighbour is compared with the ideal nearest-neighbour
distance d0 of its region's crystal (virtual cell).  The relative deviation δ = d/d0 − 1 flags
imaging artefacts that the displacement field turned into unphysical bonds (δ < −``short`` or
δ > +``long``).  The map bins atoms on an in-plane grid (nm) and gives per bin the fraction of
flagged atoms and the largest |δ|, so artefacts are visible before any physics is computed.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .displace import wrap_periodic


def nearest_neighbour(positions_nm: np.ndarray, period_z_nm: float | None = None) -> np.ndarray:
    """Distance (nm) from every atom to its nearest other atom (KD-tree; z periodic if given)."""
    p = np.asarray(positions_nm, float)
    if len(p) < 2:
        return np.full(len(p), np.nan)
    if period_z_nm:
        q = p - p.min(0)
        q[:, 2] = wrap_periodic(p[:, 2], period_z_nm)
        box = np.array([q[:, 0].max() + 10.0, q[:, 1].max() + 10.0, period_z_nm])
        tree = cKDTree(q, boxsize=box)
        d, _ = tree.query(q, k=2)
    else:
        tree = cKDTree(p)
        d, _ = tree.query(p, k=2)
    return d[:, 1]


def screen(positions_nm: np.ndarray, region: np.ndarray, ideal_nn_nm: dict[int, float],
           period_z_nm: float | None = None, short: float = 0.15, long: float = 0.15,
           bin_nm: float = 0.5, extent_nm=None) -> dict:
    """Nearest-neighbour statistics per region and the distortion map.

    Returns a dict with ``nn_nm`` (N,), ``deviation`` (N,) = d/d0 − 1, ``flagged`` (N,) bool,
    ``regions`` {label: {n_atoms, nn_mean_nm, nn_std_nm, nn_min_nm, nn_p01_nm, nn_p99_nm, ideal_nn_nm,
    rms_deviation, flagged_fraction}}, ``map_flagged`` and ``map_max_dev`` (rows, cols) on a grid of
    ``bin_nm`` covering ``extent_nm`` [x0, y0, x1, y1] (default the atoms' extent), and totals.
    """
    p = np.asarray(positions_nm, float)
    region = np.asarray(region)
    nn = nearest_neighbour(p, period_z_nm)
    if len(region):
        d0 = np.array([ideal_nn_nm.get(int(r), np.nan) for r in range(int(region.max()) + 1)])
        ref = d0[region]
    else:
        ref = np.zeros(0)
    dev = nn / ref - 1.0
    flagged = (dev < -short) | (dev > long)
    flagged &= np.isfinite(dev)
    stats = {}
    for lab in np.unique(region):
        s = region == lab
        v = nn[s]
        dv = dev[s]
        stats[str(int(lab))] = {
            "n_atoms": int(s.sum()), "nn_mean_nm": float(np.mean(v)), "nn_std_nm": float(np.std(v)),
            "nn_min_nm": float(np.min(v)), "nn_p01_nm": float(np.percentile(v, 1)),
            "nn_p99_nm": float(np.percentile(v, 99)), "ideal_nn_nm": float(ideal_nn_nm.get(int(lab), np.nan)),
            "rms_deviation": float(np.sqrt(np.nanmean(dv ** 2))), "flagged_fraction": float(flagged[s].mean()),
        }
    if extent_nm is None and len(p):
        extent_nm = [p[:, 0].min(), p[:, 1].min(), p[:, 0].max() + 1e-9, p[:, 1].max() + 1e-9]
    x0, y0, x1, y1 = extent_nm if extent_nm is not None else (0, 0, 1, 1)
    nx = max(1, int(np.ceil((x1 - x0) / bin_nm)))
    ny = max(1, int(np.ceil((y1 - y0) / bin_nm)))
    if len(p):
        ix = np.clip(((p[:, 0] - x0) / bin_nm).astype(np.int64), 0, nx - 1)
        iy = np.clip(((p[:, 1] - y0) / bin_nm).astype(np.int64), 0, ny - 1)
        flat = iy * nx + ix
        cnt = np.bincount(flat, minlength=nx * ny)
        nfl = np.bincount(flat, weights=flagged.astype(float), minlength=nx * ny)
        mx = np.zeros(nx * ny)
        np.maximum.at(mx, flat, np.nan_to_num(np.abs(dev)))
        with np.errstate(invalid="ignore", divide="ignore"):
            mflag = np.where(cnt > 0, nfl / np.maximum(cnt, 1), np.nan)
        mx = np.where(cnt > 0, mx, np.nan)
    else:
        mflag = np.full(nx * ny, np.nan)
        mx = np.full(nx * ny, np.nan)
    return {
        "nn_nm": nn, "deviation": dev, "flagged": flagged, "regions": stats,
        "map_flagged": mflag.reshape(ny, nx), "map_max_dev": mx.reshape(ny, nx),
        "map_extent_nm": [x0, y0, x0 + nx * bin_nm, y0 + ny * bin_nm], "bin_nm": bin_nm,
        "n_flagged": int(flagged.sum()), "flagged_fraction": float(flagged.mean()) if len(p) else 0.0,
        "nn_min_nm": float(np.nanmin(nn)) if len(p) > 1 else float("nan"),
        "thresholds": {"short": short, "long": long},
    }
