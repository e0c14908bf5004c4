"""Crystals oriented in the image frame.

Frame: x right, y down, beam z = x × y (into the screen).  The orientation matrix M maps crystal
Cartesian coordinates (pymatgen lattice-matrix convention of the CIF's standard setting) to the image
frame, v_image = M @ v_crystal; its third row is the unit zone axis (beam direction).
"""

from __future__ import annotations

import numpy as np

from ...phase.database import RESOURCE_PHASES  # noqa: F401  (re-exported)
from ...phase.database import load_structure as _load_structure


#: tolerance (nm) of the box faces in :func:`oriented_atoms`
EPS_NM = 1e-6


def load_structure(phase: str):
    """A pymatgen ``Structure`` from a CIF path, a phase name in ``resources/phases`` or a built-in phase
    (Si, Ge, C, GaAs, InP, InSb, Au, Cu, Al): the one loader,
    :func:`temtwin.phase.database.load_structure` (cached; do not modify the result)."""
    return _load_structure(phase)


def zone_frame(lattice_matrix: np.ndarray, zone_axis, rotation_deg: float = 0.0,
               reference=None) -> np.ndarray:
    """Orientation matrix M (3x3) putting direction ``zone_axis`` [uvw] along the beam (+z).

    The in-plane rotation places the projection of crystal direction ``reference`` (default: the
    first lattice direction perpendicular-ish to the zone axis) at ``rotation_deg`` from +x towards +y.
    ``lattice_matrix`` rows are a, b, c in Cartesian coordinates (any length unit).
    """
    L = np.asarray(lattice_matrix, float)
    z = np.asarray(zone_axis, float) @ L
    z /= np.linalg.norm(z)
    if reference is None:
        cands = [np.array(v, float) for v in ([1, -1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, -1])]
        for c in cands:
            r = c @ L
            r = r - z * (r @ z)
            if np.linalg.norm(r) > 1e-6 * np.linalg.norm(c @ L):
                break
    else:
        r = np.asarray(reference, float) @ L
        r = r - z * (r @ z)
    x0 = r / np.linalg.norm(r)
    y0 = np.cross(z, x0)
    base = np.vstack([x0, y0, z])  # crystal -> frame with reference along +x
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return rot @ base


def orientation_matrix(structure, zone_axis, rotation_deg: float = 0.0, reference=None) -> np.ndarray:
    """:func:`zone_frame` for a pymatgen Structure."""
    return zone_frame(structure.lattice.matrix, zone_axis, rotation_deg, reference)


def oriented_atoms(structure, M: np.ndarray, box_nm, origin_nm=(0.0, 0.0, 0.0),
                   lattice_scale=1.0):
    """Atoms of ``structure`` filling an axis-aligned box in the image frame.

    Parameters
    ----------
    structure: pymatgen Structure (Å).
    M: orientation matrix (crystal Cartesian -> image frame).
    box_nm: (width x, height y, thickness z) in nm; the box spans [0, w] x [0, h] x [0, t].
    origin_nm: image-frame position (nm) of the crystal origin (shifts the lattice).
    lattice_scale: isotropic (float) or general (3x3, applied in image frame) scaling of positions.

    Returns
    -------
    positions_nm (N, 3) in the image frame, atomic numbers (N,).
    """
    L = structure.lattice.matrix / 10.0  # nm
    frac = np.array([s.frac_coords for s in structure.sites]) % 1.0
    Z = np.array([s.specie.Z for s in structure.sites])
    S = np.eye(3) * lattice_scale if np.isscalar(lattice_scale) else np.asarray(lattice_scale)
    A = (S @ M @ L.T)  # columns: lattice vectors in image frame
    w, h, t = box_nm
    corners = np.array([[x, y, z] for x in (0, w) for y in (0, h) for z in (0, t)]) - np.asarray(origin_nm)
    nf = np.linalg.solve(A, corners.T).T
    lo = np.floor(nf.min(0)).astype(int) - 1
    hi = np.ceil(nf.max(0)).astype(int) + 1
    g = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    allf = (g[:, None, :] + frac[None, :, :]).reshape(-1, 3)
    pos = allf @ A.T + np.asarray(origin_nm)
    nums = np.tile(Z, len(g))
    # half-open box [0, w) x [0, h) x [0, t), shifted by EPS_NM so that atoms lying on a face (e.g. an
    # origin-choice-1 diamond cut at z = 0) are all in or all out, not decided by rounding errors that
    # vary smoothly across the field (a spurious thickness gradient)
    e = EPS_NM
    keep = ((pos[:, 0] >= -e) & (pos[:, 0] < w - e) & (pos[:, 1] >= -e) & (pos[:, 1] < h - e)
            & (pos[:, 2] >= -e) & (pos[:, 2] < t - e))
    return pos[keep], nums[keep]
