"""Hole subbands of a (Si)Ge quantum well: 4×4 Luttinger–Kohn + Bir–Pikus, finite differences along growth.

Hamiltonian (electron energies in eV; valence-band top of unstrained Ge at 0; holes are the highest
states), basis |3/2,+3/2⟩, |3/2,+1/2⟩, |3/2,−1/2⟩, |3/2,−3/2⟩, crystal cubic axes with growth along
[001] = z (S. L. Chuang, *Physics of Optoelectronic Devices*, ch. 4; Bir–Pikus with k_i k_j → ε_ij)::

    H = V(z) − [[P+Q, −S,   R,   0  ],
                [−S†, P−Q,  0,   R  ],
                [R†,  0,    P−Q, S  ],
                [0,   R†,   S†,  P+Q]]

    P = c γ1 (k∥² + kz²)                      (hydrostatic a_v omitted: a rigid shift of all four bands)
    Q = c γ2 (k∥² − 2 kz²) − (b/2)(εxx + εyy − 2 εzz)
    R = c √3 [−γ2 (kx² − ky²) + 2i γ3 kx ky] + (√3/2) b (εxx − εyy) − i d εxy
    S = 2√3 c γ3 (kx − i ky) kz − d (εxz − i εyz),          c = ħ²/2m0 = 0.0381 eV nm²

kz = −i ∂/∂z with the position-dependent parameters symmetrised (kz γ kz, {γ3, kz}/2), three-point
finite differences, hard walls at the ends of the profile.  An inhomogeneous shear ε_xz(z), ε_yz(z)
enters S, which couples heavy and light holes together with the kinetic k∓ kz term: a gradient of
the shear along growth gives the heavy-hole doublet a spin splitting linear in k∥ (Abadillo-Uriel,
Rodríguez-Mena, Martinez, Niquet, Phys. Rev. Lett. 131, 097002 (2023)); a uniform strain in a
symmetric well gives none (inversion × time reversal keep every level doubly degenerate).

Linear-in-k coefficient: the splitting of the top (ground heavy-hole) doublet ΔE(k) = 2 α k + 2 β k³
at k and 2k along the in-plane direction gives α = (8 ΔE(k) − ΔE(2k)) / (12 k) (eV nm; ≥ 0: the
magnitude of the spin–orbit field).

**Signed α** (``alpha_signed_eV_nm``): the linear term of a shear gradient is diagonal in the heavy-hole
pseudospin σ_z (J_z = ±3/2 along the growth axis), H_so = α_s σ_z k for k along the given in-plane
direction u, so ΔE_s(k) = E(⇑) − E(⇓), with ⇑ the doublet member with ⟨J_z⟩ > 0 (J_z along crystal +z =
[001], the growth direction pointing from the substrate to the surface) and E electron energies (the
hole ground doublet is the top of the spectrum), gives α_s = (8 ΔE_s(k) − ΔE_s(2k)) / (12 k), |α_s| = α.
Perturbation theory (S couples HH and LH through the kinetic term {γ3, kz} k₋ and the shear term
d (ε_xz − i ε_yz)) gives α_s ∝ (k̂ × ∂ε/∂z)_z with ∂ε/∂z = (∂ε_xz/∂z, ∂ε_yz/∂z): reversing the shear
gradient, or k, flips the sign; for Ge parameters (d < 0) α_s < 0 for k along +y and ∂ε_xz/∂z > 0
(bench/results/spin_orbit.md).  In-plane mass m∥ from the doublet's mean curvature; inverse
spin–orbit length 1/l_so = m∥ α / ħ² (nm⁻¹; convention H_so = α (σ × k), l_so = ħ²/(m∥ α)).

Wave vectors k in rad/nm (k·p convention, 2π included), lengths in nm, energies in eV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import yaml

HBAR2_2M0 = 0.0380998212     # eV nm²
KP_YAML = Path(__file__).resolve().parents[3] / "resources" / "physics" / "kp_holes.yaml"
_KEYS = ("gamma1", "gamma2", "gamma3", "b", "d", "Delta_so", "E_v_av")


def load_parameters(path: str | Path | None = None) -> dict[str, dict]:
    """Si and Ge hole parameters (resources/physics/kp_holes.yaml)."""
    return yaml.safe_load(Path(path or KP_YAML).read_text())


def alloy_parameters(x_ge: np.ndarray, table: dict | None = None) -> dict[str, np.ndarray]:
    """Per-point parameters of Si(1−x)Ge(x) by linear interpolation; ``Ev`` = valence-band top (eV)
    relative to unstrained Ge."""
    t = table or load_parameters()
    x = np.asarray(x_ge, float)
    out = {k: x * float(t["Ge"][k]) + (1 - x) * float(t["Si"][k]) for k in _KEYS}
    ev = out["E_v_av"] + out["Delta_so"] / 3.0
    ev_ge = float(t["Ge"]["E_v_av"]) + float(t["Ge"]["Delta_so"]) / 3.0
    out["Ev"] = ev - ev_ge
    return out


@dataclass
class Profile:
    """A growth profile: z (n,) nm uniform grid, parameters per point, strain (n, 3, 3) in crystal axes."""

    z: np.ndarray
    params: dict[str, np.ndarray]
    strain: np.ndarray

    @property
    def h(self) -> float:
        return float(self.z[1] - self.z[0])


def _second(coef: np.ndarray, h: float) -> sp.csr_matrix:
    """kz coef kz = −d/dz coef d/dz, Dirichlet ends, coefficients at midpoints."""
    n = len(coef)
    cm = np.empty(n + 1)
    cm[1:-1] = 0.5 * (coef[1:] + coef[:-1])
    cm[0], cm[-1] = coef[0], coef[-1]
    main = (cm[:-1] + cm[1:]) / h**2
    off = -cm[1:-1] / h**2
    return sp.diags([off, main, off], [-1, 0, 1], format="csr")


def _first_sym(coef: np.ndarray, h: float) -> sp.csr_matrix:
    """{coef, kz}/2 with kz = −i d/dz (central differences), Hermitian."""
    n = len(coef)
    K1 = sp.diags([np.full(n - 1, 1j / (2 * h)), np.full(n - 1, -1j / (2 * h))], [-1, 1], format="csr")
    G = sp.diags(coef)
    return (0.5 * (G @ K1 + K1 @ G)).tocsr()


def hamiltonian(p: Profile, kx: float, ky: float) -> sp.csr_matrix:
    """Sparse 4n × 4n Hamiltonian at in-plane wave vector (kx, ky) (crystal axes, rad/nm)."""
    c = HBAR2_2M0
    g1, g2, g3, b, d = (p.params[k] for k in ("gamma1", "gamma2", "gamma3", "b", "d"))
    e = p.strain
    n, h = len(p.z), p.h
    kp2 = kx**2 + ky**2
    D = sp.diags
    P = c * (D(g1 * kp2) + _second(g1, h))
    Q = c * (D(g2 * kp2) - 2 * _second(g2, h)) + D(-(b / 2) * (e[:, 0, 0] + e[:, 1, 1] - 2 * e[:, 2, 2]))
    R = c * np.sqrt(3) * D(-g2 * (kx**2 - ky**2) + 2j * g3 * kx * ky) \
        + D(np.sqrt(3) / 2 * b * (e[:, 0, 0] - e[:, 1, 1]) - 1j * d * e[:, 0, 1])
    S = 2 * np.sqrt(3) * c * (kx - 1j * ky) * _first_sym(g3, h) + D(-d * (e[:, 0, 2] - 1j * e[:, 1, 2]))
    Z = sp.csr_matrix((n, n))
    Sd, Rd = S.getH(), R.getH()
    M = sp.bmat([[P + Q, -S, R, Z],
                 [-Sd, P - Q, Z, R],
                 [Rd, Z, P - Q, S],
                 [Z, Rd, Sd, P + Q]], format="csr")
    V = sp.kron(sp.identity(4), D(p.params["Ev"]), format="csr")
    return (V - M).tocsr()


def spectrum_top(p: Profile) -> float:
    """An upper bound (eV) of the spectrum: the highest local band edge plus the largest strain splitting."""
    e = np.abs(p.strain).reshape(len(p.z), -1).max(axis=1)
    dp = np.maximum(np.abs(p.params["b"]), np.abs(p.params["d"]))
    return float(np.max(p.params["Ev"] + 6 * dp * e)) + 0.05


def top_levels(H: sp.csr_matrix, n_levels: int, sigma: float) -> np.ndarray:
    """The ``n_levels`` highest eigenvalues (eV, descending) by shift-invert Lanczos about ``sigma``
    (above the spectrum, so the nearest eigenvalues are the highest)."""
    vals = spla.eigsh(H.tocsc(), k=n_levels, sigma=sigma, which="LM", return_eigenvectors=False, tol=1e-12)
    return np.sort(vals.real)[::-1]


@dataclass
class SpinOrbit:
    """Linear-in-k spin–orbit of the ground heavy-hole doublet.

    alpha_eV_nm: |α| (eV nm); inv_lso_per_um: 1/l_so (µm⁻¹); mass: in-plane m∥/m0; splitting_eV at k;
    E0_eV: doublet energy at k = 0 (eV, electron-energy scale); alpha_signed_eV_nm: α with the sign of
    E(⇑) − E(⇓) (module docstring).
    """

    alpha_eV_nm: float
    inv_lso_per_um: float
    mass: float
    splitting_eV: float
    E0_eV: float
    alpha_signed_eV_nm: float = float("nan")


def top_doublet(H: sp.csr_matrix, sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two highest eigenvalues (eV, descending) and their ⟨J_z⟩ (J_z = +3/2, +1/2, −1/2, −3/2 on the
    four blocks of ``n`` grid points)."""
    vals, vecs = spla.eigsh(H.tocsc(), k=4, sigma=sigma, which="LM", tol=1e-12)
    o = np.argsort(vals.real)[::-1][:2]
    jz = np.repeat([1.5, 0.5, -0.5, -1.5], n)
    w = np.abs(vecs[:, o]) ** 2
    return vals.real[o], (jz @ w) / w.sum(axis=0)


def linear_soi(p: Profile, direction: np.ndarray, k: float = 0.02) -> SpinOrbit:
    """α and 1/l_so of the ground doublet for in-plane k along ``direction`` (crystal axes, unit, k in rad/nm)."""
    u = np.asarray(direction, float)[:2]
    u = u / np.linalg.norm(u)
    sig = spectrum_top(p)
    # k > 0 only: at k = 0 the doublet is exactly degenerate, which Lanczos may resolve as one level
    n = len(p.z)
    e1, j1 = top_doublet(hamiltonian(p, *(k * u)), sig, n)
    e2, j2 = top_doublet(hamiltonian(p, *(2 * k * u)), sig, n)
    d1, d2 = e1[0] - e1[1], e2[0] - e2[1]
    alpha = max((8 * d1 - d2) / (12 * k), 0.0)
    s1, s2 = np.sign(j1[0] - j1[1]), np.sign(j2[0] - j2[1])        # E(⇑) − E(⇓) = sign · (E0 − E1)
    alpha_s = (8 * s1 * d1 - s2 * d2) / (12 * k)
    curv = (e1.mean() - e2.mean()) / (3 * k**2)          # = ħ²/2m∥ (eV nm²), quartic terms neglected
    mean0 = e1.mean() + curv * k**2
    mass = HBAR2_2M0 / curv if curv > 0 else np.nan
    inv_lso = mass * alpha / (2 * HBAR2_2M0) if np.isfinite(mass) else np.nan   # m α / ħ²
    return SpinOrbit(float(alpha), float(inv_lso) * 1e3, float(mass), float(d1), float(mean0), float(alpha_s))


def crystal_strain(eps_model: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Strain tensors (..., 3, 3) from model axes to crystal axes (v_model = R @ v_crystal)."""
    return np.einsum("ai,...ab,bj->...ij", R, eps_model, R)


def section_rotation(inplane: np.ndarray) -> np.ndarray:
    """R (v_model = R @ v_crystal) of a cross-section with growth [001] along model y and the given crystal
    direction along model x (e.g. [1, −1, 0]); beam = x × y."""
    x = np.asarray(inplane, float)
    if abs(x[2]) > 1e-9:
        raise ValueError("the in-plane direction must be perpendicular to the [001] growth axis")
    x = x / np.linalg.norm(x)
    y = np.array([0.0, 0.0, 1.0])
    return np.stack([x, y, np.cross(x, y)])
