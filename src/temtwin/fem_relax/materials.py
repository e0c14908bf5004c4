"""Elastic materials of fem_relax: stiffness tensors per phase, rotation, Vegard alloys, eigenstrains.

Table: ``resources/physics/elastic.yaml`` (GPa, nm, sources per entry).  Cubic phases need C11, C12,
C44; hexagonal phases C11, C12, C13, C33, C44.  Stiffness in Voigt notation (order xx yy zz yz xz xy,
engineering shear strains γ = 2ε), crystal Cartesian axes of the CIF standard setting (hexagonal: c
along z, a along x).

Alloys are written ``Si0.3Ge0.7`` (element fractions summing to 1 over the end members of the table):
C_ij and the lattice constants are interpolated linearly between the end members (Vegard).

Eigenstrain of a region: its stress-free lattice relative to the reference region's lattice,
``ε0 = a_region / a_ref − 1`` (cubic: isotropic; hexagonal: ``a`` in the basal plane, ``c`` along z),
a tensor in crystal axes rotated into model axes with the region's orientation matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError

ELASTIC_YAML = Path(__file__).resolve().parents[3] / "resources" / "physics" / "elastic.yaml"
_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
_ALLOY = re.compile(r"([A-Z][a-z]?)(\d*\.?\d+)")


@dataclass(frozen=True)
class Material:
    """A phase's elastic constants and stress-free lattice.

    Attributes
    ----------
    name: phase name (CIF stem or alloy formula).
    C: (6, 6) Voigt stiffness, GPa, crystal axes.
    lattice_nm: (3,) stress-free lattice lengths along crystal x, y, z (cubic a, a, a; hexagonal a, a, c).
    source: where the constants come from.
    """

    name: str
    C: np.ndarray
    lattice_nm: np.ndarray
    source: str = ""


def cubic_voigt(c11: float, c12: float, c44: float) -> np.ndarray:
    """Voigt stiffness (6, 6) of a cubic crystal."""
    C = np.zeros((6, 6))
    C[:3, :3] = c12
    C[[0, 1, 2], [0, 1, 2]] = c11
    C[[3, 4, 5], [3, 4, 5]] = c44
    return C


def hexagonal_voigt(c11: float, c12: float, c13: float, c33: float, c44: float) -> np.ndarray:
    """Voigt stiffness (6, 6) of a hexagonal crystal (c along z); C66 = (C11 − C12)/2."""
    C = np.zeros((6, 6))
    C[0, 0] = C[1, 1] = c11
    C[0, 1] = C[1, 0] = c12
    C[0, 2] = C[2, 0] = C[1, 2] = C[2, 1] = c13
    C[2, 2] = c33
    C[3, 3] = C[4, 4] = c44
    C[5, 5] = 0.5 * (c11 - c12)
    return C


def voigt_to_tensor(C: np.ndarray) -> np.ndarray:
    """(6, 6) Voigt stiffness → (3, 3, 3, 3) tensor."""
    T = np.zeros((3, 3, 3, 3))
    for I, (i, j) in enumerate(_VOIGT):
        for J, (k, l) in enumerate(_VOIGT):
            for a, b in {(i, j), (j, i)}:
                for c, d in {(k, l), (l, k)}:
                    T[a, b, c, d] = C[I, J]
    return T


def tensor_to_voigt(T: np.ndarray) -> np.ndarray:
    """(3, 3, 3, 3) stiffness tensor → (6, 6) Voigt."""
    return np.array([[T[i, j, k, l] for (k, l) in _VOIGT] for (i, j) in _VOIGT])


def rotate_stiffness(C: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Voigt stiffness in the frame where v_new = R @ v_crystal (R orthogonal, e.g. an orientation matrix)."""
    R = np.asarray(R, float)
    T = np.einsum("ai,bj,ck,dl,ijkl->abcd", R, R, R, R, voigt_to_tensor(C))
    return tensor_to_voigt(T)


def proper_rotation(M: np.ndarray) -> np.ndarray:
    """The nearest orthogonal matrix to ``M`` (polar decomposition); orientation matrices may be improper
    (the model frame is the image frame mirrored), which leaves a stiffness tensor unchanged."""
    u, _, vt = np.linalg.svd(np.asarray(M, float))
    return u @ vt


def strain_voigt(eps: np.ndarray) -> np.ndarray:
    """Strain tensor(s) (..., 3, 3) → Voigt vectors (..., 6) with engineering shears."""
    e = np.asarray(eps, float)
    return np.stack([e[..., 0, 0], e[..., 1, 1], e[..., 2, 2], 2 * e[..., 1, 2], 2 * e[..., 0, 2],
                     2 * e[..., 0, 1]], axis=-1)


class MaterialTable:
    """The elastic table plus user-given extra materials (config ``fem_relax.materials``)."""

    def __init__(self, path: str | Path | None = None, extra: dict | None = None):
        self.path = Path(path or ELASTIC_YAML)
        doc = yaml.safe_load(self.path.read_text())
        self.entries: dict[str, Material] = {}
        for name, v in (doc.get("cubic") or {}).items():
            a = float(v["a"])
            self.entries[name] = Material(name, cubic_voigt(*v["C"]), np.array([a, a, a]), v.get("source", ""))
        for name, v in (doc.get("hexagonal") or {}).items():
            a, c = float(v["a"]), float(v["c"])
            self.entries[name] = Material(name, hexagonal_voigt(*v["C"]), np.array([a, a, c]), v.get("source", ""))
        for name, v in (extra or {}).items():
            self.entries[name] = self._from_config(name, v)

    @staticmethod
    def _from_config(name: str, v: dict) -> Material:
        C = list(v.get("C", []))
        if len(C) == 3:
            a = float(v["a_nm"])
            return Material(name, cubic_voigt(*C), np.array([a, a, a]), "config fem_relax.materials")
        if len(C) == 5:
            a, c = float(v["a_nm"]), float(v["c_nm"])
            return Material(name, hexagonal_voigt(*C), np.array([a, a, c]), "config fem_relax.materials")
        raise UserError(f"fem_relax.materials.{name}: give C = [C11, C12, C44] (cubic) or [C11, C12, C13, C33, C44] "
                        "(hexagonal) in GPa and a_nm (and c_nm)", "config")

    def get(self, phase: str, where: str = "regions.json") -> Material:
        """The material of a phase or alloy formula; a UserError names the fix when it is unknown."""
        if phase in self.entries:
            return self.entries[phase]
        parts = _ALLOY.findall(phase)
        if len(parts) >= 2 and "".join(f"{e}{x}" for e, x in parts) == phase:
            fr = np.array([float(x) for _, x in parts])
            ends = [e for e, _ in parts]
            if abs(fr.sum() - 1.0) < 1e-6 and all(e in self.entries for e in ends):
                mats = [self.entries[e] for e in ends]
                if len({m.C[0, 2] == m.C[0, 1] for m in mats}) == 1:
                    C = sum(f * m.C for f, m in zip(fr, mats))
                    lat = sum(f * m.lattice_nm for f, m in zip(fr, mats))
                    return Material(phase, C, lat, "Vegard interpolation of " + ", ".join(ends))
        raise UserError(f"phase '{phase}' has no elastic constants: add C and a to {self.path} or set "
                        f"fem_relax.materials.{phase} = {{C: [C11, C12, C44], a_nm: ...}} in the config", where)


def eigenstrain(mat: Material, ref: Material, R: np.ndarray | None = None) -> np.ndarray:
    """Eigenstrain tensor (3, 3) of ``mat`` relative to the reference lattice, rotated into model axes.

    Both lattices are compared along the same crystal axes: ε0_ii = a_i(mat) / a_i(ref) − 1.  ``R`` maps
    crystal to model axes (v_model = R @ v_crystal); None = crystal axes = model axes.
    """
    e = np.diag(mat.lattice_nm / ref.lattice_nm - 1.0)
    if R is None:
        return e
    R = proper_rotation(R)
    return R @ e @ R.T
