"""Elastic constants and equilibrium lattice constants from the Keating model by straining a periodic cell.

Stress is the ASE convention (``(1/V) dE/d(strain)``); elastic constants come from central
differences of the stress over small strains ``±delta`` (Voigt 6 x 6 ``C``, GPa), with the internal
coordinates relaxed at each strain (so C44 is the *relaxed* shear constant).
"""

from __future__ import annotations

import numpy as np

from .keating import EV_PER_A3_TO_GPA, KeatingModel, KeatingParameters, stress_voigt
from .relax import relax

_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def strain_matrix(voigt_index: int, e: float) -> np.ndarray:
    """Symmetric strain tensor for Voigt component ``voigt_index`` (engineering shear ``e`` = 2 eps_ij)."""
    a, b = _VOIGT[voigt_index]
    eps = np.zeros((3, 3))
    if a == b:
        eps[a, a] = e
    else:
        eps[a, b] = eps[b, a] = 0.5 * e
    return eps


def stress_at_strain(model: KeatingModel, positions_A, cell_A, eps: np.ndarray, relax_internal: bool = True,
                     fmax: float = 1e-7) -> np.ndarray:
    """Voigt stress (eV/Å^3) of the homogeneously strained cell, internal coordinates relaxed."""
    cell = np.asarray(cell_A, float)
    f = np.eye(3) + eps
    new_cell = cell @ f.T
    pos = np.asarray(positions_A, float) @ f.T
    if relax_internal:
        pos = relax(model, pos, new_cell, fmax=fmax, max_steps=20000, method="lbfgs").positions
    r = model.evaluate(pos, new_cell, virial=True)
    return stress_voigt(r.virial, abs(np.linalg.det(new_cell)))


def elastic_tensor(atoms, delta: float = 1e-4, relax_internal: bool = True,
                   params: KeatingParameters | None = None) -> np.ndarray:
    """Voigt elastic tensor C (6 x 6, GPa) of a 3-D periodic Keating crystal at its given geometry."""
    if not np.all(atoms.pbc):
        raise ValueError("elastic constants need a cell periodic in all three directions")
    model = KeatingModel.from_atoms(atoms, params)
    pos, cell = atoms.get_positions(), atoms.cell[:]
    c = np.zeros((6, 6))
    for j in range(6):
        sp = stress_at_strain(model, pos, cell, strain_matrix(j, delta), relax_internal)
        sm = stress_at_strain(model, pos, cell, strain_matrix(j, -delta), relax_internal)
        c[:, j] = (sp - sm) / (2 * delta)
    return 0.5 * (c + c.T) * EV_PER_A3_TO_GPA


def cubic_constants(c: np.ndarray) -> dict:
    """C11, C12, C44 (GPa) of a cubic crystal: averages of the symmetry-equivalent entries."""
    return {"C11": float(np.mean(np.diag(c)[:3])),
            "C12": float(np.mean([c[0, 1], c[0, 2], c[1, 2]])),
            "C44": float(np.mean(np.diag(c)[3:]))}


def equilibrium_scale(atoms, params: KeatingParameters | None = None, relax_internal: bool = True,
                      bracket: tuple[float, float] = (0.95, 1.05), xtol: float = 1e-9) -> float:
    """Isotropic scale factor s that brings the (relaxed) pressure of a periodic cell to zero.

    The equilibrium cell is ``s * atoms.cell``; e.g. the relaxed lattice constant of a random alloy.
    """
    from scipy.optimize import brentq

    model = KeatingModel.from_atoms(atoms, params)
    pos, cell = atoms.get_positions(), atoms.cell[:]

    def pressure(s):
        st = stress_at_strain(model, pos, cell, (s - 1.0) * np.eye(3), relax_internal, fmax=1e-6)
        return float(st[:3].mean())

    return float(brentq(pressure, *bracket, xtol=xtol))
