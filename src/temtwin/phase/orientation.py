"""Relative orientation (misorientation) of two identified crystals, with crystal symmetry.

Orientation matrices map crystal Cartesian coordinates to the image frame (v_image = M @ v_crystal).
A crystal is unchanged by its symmetry rotations S (Laue group, proper part, Cartesian), so M and M S
describe the same orientation.  The misorientation of crystals 1 and 2 is the smallest rotation angle
of ``(M2 S2)^T (M1 S1)`` over all symmetry pairs; its axis is reported in crystal 1's frame, as a
Cartesian unit vector and as a direction [uvw] of crystal 1's lattice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .zones import cartesian_rotations


@dataclass
class Misorientation:
    angle_deg: float
    axis: np.ndarray           # unit vector, crystal-1 Cartesian frame
    axis_uvw: np.ndarray       # direction indices of crystal 1 (small integers, approximate)
    relation: str              # "cube-on-cube (parallel)", "Σ3 twin (60° about <111>)", ...


def rotation_angle_axis(R: np.ndarray) -> tuple[float, np.ndarray]:
    """Angle (deg) and unit axis of a rotation matrix."""
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    ang = float(np.degrees(np.arccos(c)))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if np.linalg.norm(v) < 1e-8:
        if ang < 1e-6:
            return 0.0, np.array([0.0, 0.0, 1.0])
        # 180°: axis from R + I
        B = R + np.eye(3)
        v = B[:, int(np.argmax(np.linalg.norm(B, axis=0)))]
    return ang, v / np.linalg.norm(v)


def _small_integers(v: np.ndarray, max_index: int = 6) -> np.ndarray:
    """Integer direction closest in angle to ``v`` with indices up to ``max_index``."""
    r = np.arange(-max_index, max_index + 1)
    cand = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    cand = cand[np.any(cand != 0, axis=1)]
    cn = cand / np.linalg.norm(cand, axis=1)[:, None]
    vn = v / np.linalg.norm(v)
    cos = cn @ vn
    best = np.max(cos)
    ok = cos >= best - 1e-9
    sub = cand[ok]
    return sub[np.argmin(np.abs(sub).sum(1))]


def misorientation(phase1, M1, phase2, M2) -> Misorientation:
    """Smallest rotation between two orientations, over both crystals' symmetry (see module doc)."""
    S1 = cartesian_rotations(phase1)
    S2 = cartesian_rotations(phase2)
    D = np.asarray(M2).T @ np.asarray(M1)                        # crystal-1 coords -> crystal-2 coords
    R = np.einsum("jba,bc,icd->ijad", S2, D, S1).reshape(-1, 3, 3)
    tr = np.trace(R, axis1=1, axis2=2)
    k = int(np.argmax(tr))
    ang, axis_c2 = rotation_angle_axis(R[k])
    # R[k] maps crystal-1 coordinates to crystal-2 coordinates; its axis (R v = v) is expressed in both
    axis = axis_c2
    uvw = _small_integers(axis @ np.linalg.inv(phase1.lattice_nm))
    return Misorientation(ang, axis, uvw, describe(phase1, phase2, ang, uvw))


def describe(phase1, phase2, angle_deg: float, uvw, tol_deg: float = 2.0) -> str:
    """A short name for a relation: parallel (cube-on-cube), Σ3 twin, or angle about an axis."""
    cubic = phase1.crystal_system == "cubic" and phase2.crystal_system == "cubic"
    if angle_deg <= tol_deg:
        return "cube-on-cube (parallel)" if cubic else "parallel"
    u = np.abs(np.asarray(uvw))
    if cubic and abs(angle_deg - 60.0) <= tol_deg and len(set(u.tolist())) == 1 and u[0] > 0:
        return "Σ3 twin (60° about <111>)"
    s = "".join(str(int(x)) if x >= 0 else f"-{-int(x)}" for x in uvw)
    return f"{angle_deg:.1f}° about [{s}]"

