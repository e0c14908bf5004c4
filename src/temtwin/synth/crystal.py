"""Crystals oriented in the image frame.

Frame: x right, y down, beam z = x × y (into the screen).  The orientation matrix M maps crystal
Cartesian coordinates (pymatgen lattice-matrix convention of the CIF's standard setting) to the image
frame, v_image = M @ v_crystal; its third row is the unit zone axis (beam direction).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

RESOURCE_PHASES = Path(__file__).resolve().parents[3] / "resources" / "phases"


#: tolerance (nm) of the box faces in :func:`oriented_atoms`
EPS_NM = 1e-6


@lru_cache(maxsize=64)
def load_structure(phase: str):
    """A pymatgen ``Structure`` from a CIF path or a phase name in ``resources/phases``.

    A few common phases are built in (Si, Ge, GaAs, InP, InSb, Au, Cu, Al) so tests do not depend on
    the shipped CIF database.
    """
    from pymatgen.core import Lattice, Structure

    p = Path(phase)
    if p.suffix.lower() == ".cif" and p.is_file():
        return Structure.from_file(str(p))
    cif = RESOURCE_PHASES / f"{phase}.cif"
    if cif.is_file():
        return Structure.from_file(str(cif))
    builtin = {
        "Si": ("Fd-3m", 5.431, ["Si"], [[0, 0, 0]]),
        "Ge": ("Fd-3m", 5.658, ["Ge"], [[0, 0, 0]]),
        "C": ("Fd-3m", 3.567, ["C"], [[0, 0, 0]]),
        "GaAs": ("F-43m", 5.6533, ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "InP": ("F-43m", 5.8687, ["In", "P"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "InSb": ("F-43m", 6.4794, ["In", "Sb"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "Au": ("Fm-3m", 4.0782, ["Au"], [[0, 0, 0]]),
        "Cu": ("Fm-3m", 3.6149, ["Cu"], [[0, 0, 0]]),
        "Al": ("Fm-3m", 4.0495, ["Al"], [[0, 0, 0]]),
    }
    if phase not in builtin:
        raise KeyError(f"unknown phase {phase!r}: give a CIF path or one of {sorted(builtin)}")
    sg, a, species, coords = builtin[phase]
    return Structure.from_spacegroup(sg, Lattice.cubic(a), species, coords)


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
