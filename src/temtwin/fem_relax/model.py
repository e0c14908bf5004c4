"""The relaxation model of a sample: materials per region, unit eigenstrain responses, fit to GPA.

The strain of both problems is linear in the regions' eigenstrains, so each non-reference region r
gets one unit load case (its eigenstrain *shape*: the identity for cubic phases, ε0/max|ε0| for
hexagonal ones) and the strain of any set of mismatches δ_r is Σ_r δ_r U_r.  The table value δ_r comes
from the lattice constants (:func:`.materials.eigenstrain`); the fit adjusts δ_r so that the lamella
strain matches the GPA region means (weighted least squares; uncertainties from the GPA σ maps when
present, else from the spread of the map, with the number of independent samples = area /
resolution²; the covariance is scaled by the reduced χ² when that exceeds 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .materials import Material, MaterialTable, eigenstrain, proper_rotation, rotate_stiffness, strain_voigt
from .solver import Responses, solve_device, solve_lamella


@dataclass
class RegionModel:
    label: int
    phase: str
    material: Material
    R: np.ndarray                  # v_model = R @ v_crystal
    oriented: bool                 # False: no orientation matrix, crystal axes = model axes assumed
    delta_table: float = 0.0       # amplitude of the eigenstrain shape (table lattices)
    shape: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class RelaxModel:
    nodes: np.ndarray              # (n, 2) nm model axes
    tri: np.ndarray                # (ntri, 3)
    tri_region: np.ndarray         # (ntri,) labels
    regions: dict[int, RegionModel]
    reference: int
    thickness_nm: float
    device: Responses | None = None
    lamella: Responses | None = None

    @property
    def fitted_labels(self) -> list[int]:
        """Regions with an eigenstrain parameter (all but the reference), in load-case order."""
        return [lab for lab in sorted(self.regions) if lab != self.reference]

    def stiffness(self) -> np.ndarray:
        C = np.zeros((len(self.tri), 6, 6))
        for lab, rm in self.regions.items():
            C[self.tri_region == lab] = rotate_stiffness(rm.material.C, rm.R)
        return C

    def load_cases(self) -> np.ndarray:
        cases = np.zeros((len(self.fitted_labels), len(self.tri), 6))
        for i, lab in enumerate(self.fitted_labels):
            cases[i, self.tri_region == lab] = strain_voigt(self.regions[lab].shape)
        return cases

    def solve(self, n_layers: int, lateral: str = "roller", progress=None) -> None:
        C = self.stiffness()
        cases = self.load_cases()
        if len(cases) == 0:
            cases = np.zeros((1, len(self.tri), 6))
        self.device = solve_device(self.nodes, self.tri, C, cases, lateral)
        if progress:
            progress(1, 2, "problems")
        self.lamella = solve_lamella(self.nodes, self.tri, C, cases, self.thickness_nm, n_layers, lateral)
        if progress:
            progress(2, 2, "problems")

    def deltas_table(self) -> np.ndarray:
        return np.array([self.regions[lab].delta_table for lab in self.fitted_labels])

    def strain(self, which: str, deltas: np.ndarray) -> np.ndarray:
        """Total strain per triangle (ntri, 6) Voigt (engineering shears), model axes."""
        r = self.device if which == "device" else self.lamella
        if len(deltas) == 0:
            return np.zeros(r.strain.shape[1:])
        return np.einsum("m,mtj->tj", deltas, r.strain[:len(deltas)])

    def strain_sigma(self, which: str, cov: np.ndarray) -> np.ndarray:
        """1σ of the strain per triangle (ntri, 6) propagated from the covariance of the deltas."""
        r = self.device if which == "device" else self.lamella
        if len(cov) == 0:
            return np.zeros(r.strain.shape[1:])
        U = r.strain[:len(cov)]
        return np.sqrt(np.maximum(np.einsum("mtj,mn,ntj->tj", U, cov, U), 0.0))

    def eigenstrain_voigt(self, deltas: np.ndarray) -> np.ndarray:
        """Eigenstrain per triangle (ntri, 6) for the given deltas."""
        out = np.zeros((len(self.tri), 6))
        for d, lab in zip(deltas, self.fitted_labels):
            out[self.tri_region == lab] = d * strain_voigt(self.regions[lab].shape)
        return out


def build_regions(doc: dict, table: MaterialTable, reference: int, composition: dict | None = None,
                  where: str = "regions.json") -> tuple[dict[int, RegionModel], list[str]]:
    """RegionModels from a regions.json document; returns (models, notes).  Regions without a phase are
    left out (treated as void: free surfaces); a phase without elastic constants is a UserError."""
    composition = {str(k): v for k, v in (composition or {}).items()}
    regions: dict[int, RegionModel] = {}
    notes = []
    for key, rec in doc.get("regions", {}).items():
        lab = int(key)
        phase = composition.get(key) or rec.get("phase") or ""
        if not phase:
            notes.append(f"region {lab}: no identified phase, left out of the model (void)")
            continue
        mat = table.get(phase, where)
        M = rec.get("orientation_matrix")
        oriented = M is not None
        R = proper_rotation(np.asarray(M, float)) if oriented else np.eye(3)
        if not oriented:
            notes.append(f"region {lab}: no orientation matrix, crystal axes taken as model axes")
        regions[lab] = RegionModel(lab, phase, mat, R, oriented)
    if reference not in regions:
        raise ValueError(f"reference region {reference} has no material")
    ref = regions[reference]
    for rm in regions.values():
        e0 = eigenstrain(rm.material, ref.material, rm.R)
        amp = float(np.max(np.abs(e0)))
        if amp < 1e-12 or np.allclose(e0, e0[0, 0] * np.eye(3), atol=1e-9 * max(amp, 1e-12)):
            rm.shape = np.eye(3)
            rm.delta_table = float(e0[0, 0])
        else:
            k = np.unravel_index(np.argmax(np.abs(e0)), e0.shape)
            rm.shape = e0 / e0[k]
            rm.delta_table = float(e0[k])
    return regions, notes


@dataclass
class FitResult:
    labels: list[int]
    delta: np.ndarray
    sigma: np.ndarray
    cov: np.ndarray
    fitted: np.ndarray             # bool per label: constrained by data
    chi2_red: float
    n_data: int
    predicted: np.ndarray | None = None   # model value of each datum at the fitted deltas


def fit_deltas(model_means: np.ndarray, data: np.ndarray, sigma: np.ndarray, prior: np.ndarray) -> FitResult:
    """Weighted least squares of the deltas.

    model_means (n_data, n_par): region-mean lamella strain per unit delta; data, sigma (n_data,).
    Parameters without sensitivity keep their prior (table) value with infinite σ (reported as nan).
    """
    n_par = model_means.shape[1]
    ok = np.isfinite(data) & np.isfinite(sigma) & (sigma > 0)
    A = model_means[ok] / sigma[ok, None]
    b = data[ok] / sigma[ok]
    sens = np.abs(A).max(axis=0) > 1e-3 * max(np.abs(A).max(), 1e-300) if A.size else np.zeros(n_par, bool)
    delta = prior.astype(float).copy()
    cov = np.full((n_par, n_par), np.nan)
    chi2 = np.nan
    if sens.any() and ok.sum() >= sens.sum():
        As = A[:, sens]
        sol, *_ = np.linalg.lstsq(As, b - A[:, ~sens] @ prior[~sens], rcond=None)
        delta[sens] = sol
        res = b - A @ delta
        dof = max(int(ok.sum()) - int(sens.sum()), 1)
        chi2 = float(res @ res / dof)
        c = np.linalg.pinv(As.T @ As) * max(1.0, chi2)
        cov = np.zeros((n_par, n_par))
        cov[np.ix_(sens, sens)] = c
    sig = np.where(sens, np.sqrt(np.clip(np.diag(np.nan_to_num(cov)), 0, None)), np.nan)
    return FitResult([], delta, sig, np.nan_to_num(cov), sens, chi2, int(ok.sum()), model_means @ delta)
