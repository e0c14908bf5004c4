"""Absolute lattice parameters, strain relative to each region's relaxed lattice, tensor frames.

GPA measures the lattice *relative to the reference region*: ``G_loc = G_ref F^-1`` (reciprocal
bases as rows, nm⁻¹).  When the reference region's phase is identified, the reference is taken as
that phase, relaxed: its two reflections are indexed (hkl from the phase_id spots table) and their
relaxed reciprocal basis ``G_rel`` (lengths 1/d_hkl from the CIF lattice, angle from the reciprocal
metric, oriented like the measured g1 and on the same side for g2) replaces ``G_ref``.  Then

* local spacings ``d_i = 1/|g_i,loc|`` with ``g_loc = G_rel F^-1`` (nm, calibrated by the
  reference phase, independent of the pixel-size calibration); the ratio |G_rel|/|G_ref| is the
  pixel-size correction factor reported as ``calibration``;
* for cubic reference phases the lattice parameter implied by each reflection,
  ``a_i = d_i sqrt(h² + k² + l²)`` (nm);
* strain relative to a region's own relaxed lattice (phase P, relaxed basis ``G_P`` built the same
  way from P's CIF and the region's hkl): ``F_P = G_loc^-1 G_P = F G_rel^-1 G_P``, decomposed as
  ``F_P = V R`` (strain ``V - I`` in image axes).  For epitaxial cubic layers this is
  ``F · a_ref / a_P``: a fully relaxed layer gives 0, a pseudomorphic one its misfit strain.

Frames (:func:`rotate_tensor`): ``image`` (x right, y down), ``crystal`` (x' along the reference
region's in-plane reference direction from phase_id ``rotation_deg``, else along g1) and
``interface`` (x' along the boundary between the reference region and its crystalline neighbours,
fitted by principal axes; y' along its normal).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .core import polar_strain


def reciprocal_metric(abc_nm, angles_deg) -> np.ndarray:
    """Reciprocal metric tensor G* (3, 3) in nm⁻² of a lattice (a, b, c nm; α, β, γ degrees)."""
    a, b, c = (float(v) for v in abc_nm)
    al, be, ga = (math.radians(float(v)) for v in angles_deg)
    G = np.array([[a * a, a * b * math.cos(ga), a * c * math.cos(be)],
                  [a * b * math.cos(ga), b * b, b * c * math.cos(al)],
                  [a * c * math.cos(be), b * c * math.cos(al), c * c]])
    return np.linalg.inv(G)


def relaxed_basis(hkl_pair, abc_nm, angles_deg, g_measured: np.ndarray) -> np.ndarray:
    """Relaxed reciprocal basis (2, 2) nm⁻¹ of reflections ``hkl_pair`` of a lattice, oriented like
    ``g_measured`` (g1 along measured g1, g2 on the same side of g1 as measured g2)."""
    Gs = reciprocal_metric(abc_nm, angles_deg)
    h1, h2 = (np.asarray(h, float) for h in hkl_pair)
    n1 = math.sqrt(h1 @ Gs @ h1)
    n2 = math.sqrt(h2 @ Gs @ h2)
    cosang = float(np.clip((h1 @ Gs @ h2) / (n1 * n2), -1, 1))
    gm = np.asarray(g_measured, float)
    t1 = math.atan2(gm[0, 1], gm[0, 0])
    side = np.sign(gm[0, 0] * gm[1, 1] - gm[0, 1] * gm[1, 0]) or 1.0
    t2 = t1 + side * math.acos(cosang)
    return np.array([[n1 * math.cos(t1), n1 * math.sin(t1)], [n2 * math.cos(t2), n2 * math.sin(t2)]])


def index_reflection(g: np.ndarray, spots: dict | None, rel_tol: float = 0.06) -> tuple | None:
    """hkl of the phase_id spot nearest to ``g`` (± g equivalent; sign flipped with it), or None.

    spots: table with kx, ky (nm⁻¹), h, k, l (phases.h5 ``/regions/<label>/spots``).
    """
    if not spots or len(np.atleast_1d(spots.get("kx", []))) == 0:
        return None
    k = np.column_stack([np.ravel(spots["kx"]), np.ravel(spots["ky"])]).astype(float)
    hkl = np.column_stack([np.ravel(spots["h"]), np.ravel(spots["k"]), np.ravel(spots["l"])]).astype(int)
    g = np.asarray(g, float)
    d_plus = np.hypot(*(k - g).T)
    d_minus = np.hypot(*(k + g).T)
    i, j = int(np.argmin(d_plus)), int(np.argmin(d_minus))
    gn = math.hypot(*g)
    if d_plus[i] <= d_minus[j]:
        return tuple(int(v) for v in hkl[i]) if d_plus[i] <= rel_tol * gn else None
    return tuple(int(-v) for v in hkl[j]) if d_minus[j] <= rel_tol * gn else None


def distortion_from_maps(exx, eyy, exy, rotation):
    """F = V R (components Fxx, Fxy, Fyx, Fyy) from strain (V - I) and rotation maps."""
    c, s = np.cos(rotation), np.sin(rotation)
    Vxx, Vyy, Vxy = 1.0 + exx, 1.0 + eyy, exy
    return (Vxx * c + Vxy * s, -Vxx * s + Vxy * c, Vxy * c + Vyy * s, -Vxy * s + Vyy * c)


def local_g(F, G: np.ndarray):
    """Local reciprocal vectors (2 g, 2 comp, ...) = G F^-1 for maps F = (Fxx, Fxy, Fyx, Fyy)."""
    Fxx, Fxy, Fyx, Fyy = F
    det = Fxx * Fyy - Fxy * Fyx
    iFxx, iFxy, iFyx, iFyy = Fyy / det, -Fxy / det, -Fyx / det, Fxx / det
    out = []
    for gx, gy in np.asarray(G, float):
        out.append([gx * iFxx + gy * iFyx, gx * iFxy + gy * iFyy])
    return np.array(out)


def strain_relative_to(F, G_from: np.ndarray, G_to: np.ndarray):
    """Strain (exx, eyy, exy, ω) of the local lattice ``G_from F^-1`` relative to the lattice with
    reciprocal basis ``G_to``: ``F' = F G_from^-1 G_to``."""
    Fxx, Fxy, Fyx, Fyy = F
    Mm = np.linalg.solve(np.asarray(G_from, float), np.asarray(G_to, float))
    return polar_strain(Fxx * Mm[0, 0] + Fxy * Mm[1, 0], Fxx * Mm[0, 1] + Fxy * Mm[1, 1],
                        Fyx * Mm[0, 0] + Fyy * Mm[1, 0], Fyx * Mm[0, 1] + Fyy * Mm[1, 1])


def rotate_tensor(exx, eyy, exy, angle_deg: float):
    """Components of a symmetric 2D tensor in axes rotated by ``angle_deg`` (x' at that angle from
    +x towards +y): e' = Rᵀ e R."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    xx = exx * c * c + eyy * s * s + 2 * exy * c * s
    yy = exx * s * s + eyy * c * c - 2 * exy * c * s
    xy = (eyy - exx) * c * s + exy * (c * c - s * s)
    return xx, yy, xy


def interface_angle(labels: np.ndarray, reference_label: int, neighbours=None) -> float | None:
    """Angle (deg, in (-90, 90]) of the boundary between the reference region and its neighbours
    (labels > 0, optionally restricted to ``neighbours``), by principal axes of the boundary pixels;
    None when there is no such boundary."""
    lab = np.asarray(labels)
    ref = lab == reference_label
    other = (lab > 0) & ~ref
    if neighbours is not None:
        other &= np.isin(lab, list(neighbours))
    edge = ref & ndimage.binary_dilation(other)
    yy, xx = np.nonzero(edge)
    if len(yy) < 5:
        return None
    X = np.column_stack([xx - xx.mean(), yy - yy.mean()]).astype(float)
    w, v = np.linalg.eigh(X.T @ X)
    d = v[:, -1]
    ang = math.degrees(math.atan2(d[1], d[0]))
    if ang <= -90:
        ang += 180
    elif ang > 90:
        ang -= 180
    return ang
