"""Kinematical electron diffraction: reciprocal lattice, electron structure factors, absences.

Units: reciprocal vectors in nm^-1 as spatial frequencies (|g| = 1/d, no 2π); s = sinθ/λ = |g|/2.

Electron scattering factors use the Doyle & Turner (1968) parametrisation,
``f_e(s) = Σ_{i=1..4} a_i exp(-b_i s²)`` (f_e in Å, s in Å⁻¹), P. A. Doyle and P. S. Turner,
"Relativistic Hartree-Fock X-ray and electron scattering factors", Acta Cryst. A24, 390-397 (1968),
also International Tables for Crystallography Vol. C, Table 4.3.2.2.  The coefficients are read at
run time from the table pymatgen ships (``pymatgen/analysis/diffraction/atomic_scattering_params.json``;
pymatgen uses them through the Mott-Bethe relation f_x = Z - 41.78214 s² f_e for X-rays), for Z = 1-98.
A Debye-Waller factor exp(-B s²) with one isotropic B (default 0.5 Å²) damps high orders.

Systematic absences are not looked up in tables: a reflection is *kinematically forbidden* when its
structure factor vanishes (|F|² below 1e-6 of the strongest), which covers lattice centring, screw
axes and glide planes alike.  In a zone-axis pattern, a forbidden reflection that is the sum of two
allowed zero-order reflections (e.g. Si 002 = 1-11 + -111 on [110]) can appear by double diffraction
and in projected-potential images; :func:`classify` marks those as *dynamical*.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

#: kinds of reciprocal lattice points in a zone pattern
ABSENT, ALLOWED, DYNAMICAL = 0, 1, 2
#: |F|² below this fraction of the zone's strongest reflection counts as zero
ZERO_F2 = 1e-6


@lru_cache(maxsize=1)
def doyle_turner_table() -> dict[int, np.ndarray]:
    """Atomic number -> (4, 2) array of Doyle-Turner (a_i [Å], b_i [Å²]) coefficients."""
    import pymatgen.analysis.diffraction as diff
    from pymatgen.core import Element

    path = Path(diff.__file__).with_name("atomic_scattering_params.json")
    raw = json.loads(path.read_text())
    table = {}
    for sym, coeffs in raw.items():
        try:
            z = Element(sym).Z
        except Exception:  # pragma: no cover - isotopes such as D
            continue
        if z not in table:
            table[z] = np.asarray(coeffs, float).reshape(-1, 2)
    return table


def electron_scattering_factor(Z, s) -> np.ndarray:
    """Electron scattering factors f_e (Å) of atoms ``Z`` (n,) at s = sinθ/λ (Å⁻¹) (m,) -> (n, m).

    Elements missing from the table (Z > 98) use the Z = 98 curve scaled by (Z/98)^(1/3).
    """
    Z = np.atleast_1d(np.asarray(Z, int))
    s2 = np.atleast_1d(np.asarray(s, float)) ** 2
    table = doyle_turner_table()
    out = np.empty((len(Z), len(s2)))
    for i, z in enumerate(Z):
        c = table.get(int(z))
        scale = 1.0
        if c is None:
            c, scale = table[98], (int(z) / 98.0) ** (1 / 3)
        out[i] = scale * (c[:, 0][:, None] * np.exp(-c[:, 1][:, None] * s2[None, :])).sum(0)
    return out


def g_cartesian(reciprocal_nm: np.ndarray, hkl) -> np.ndarray:
    """Cartesian reciprocal vectors (n, 3) in nm^-1 of Miller indices ``hkl`` (n, 3)."""
    return np.asarray(hkl, float) @ np.asarray(reciprocal_nm, float)


def structure_factors(phase, hkl, debye_waller_A2: float = 0.5, point_charges: bool = False) -> np.ndarray:
    """Complex kinematical electron structure factors F(hkl) (Å) of ``phase`` for ``hkl`` (n, 3).

    ``point_charges``: use f = Z (no s dependence, no Debye-Waller), the convention of the validation
    truth's ``F_rel`` and of "allowed" in its ``g_list``.
    """
    hkl = np.atleast_2d(np.asarray(hkl, float))
    frac, Z, occ, _ = phase.sites
    phase_arg = np.exp(2j * np.pi * (hkl @ frac.T))                       # (n, sites)
    if point_charges:
        f = np.broadcast_to(Z.astype(float)[None, :], phase_arg.shape)
    else:
        g = np.linalg.norm(g_cartesian(phase.reciprocal_nm, hkl), axis=1)  # nm^-1
        s = g / 20.0                                                      # sinθ/λ in Å^-1
        uz, inv = np.unique(Z, return_inverse=True)
        fe = electron_scattering_factor(uz, s)[inv].T                     # (n, sites)
        f = fe * np.exp(-debye_waller_A2 * s**2)[:, None]
    return (f * occ[None, :] * phase_arg).sum(1)


def allowed_mask(F: np.ndarray) -> np.ndarray:
    """Kinematically allowed reflections: |F|² above ZERO_F2 of the strongest of ``F``."""
    F2 = np.abs(F) ** 2
    return F2 > ZERO_F2 * max(float(F2.max(initial=0.0)), 1e-30)


def classify(n_idx: np.ndarray, allowed: np.ndarray, keep_forbidden: bool = True) -> np.ndarray:
    """Kind of each point of a 2D zone lattice: ABSENT, ALLOWED or DYNAMICAL.

    ``n_idx`` (n, 2) integer coordinates in the zone's 2D reciprocal basis; ``allowed`` (n,) bool.
    With ``keep_forbidden``, a forbidden point is DYNAMICAL when it belongs to the 2D lattice generated
    by the allowed points (sums of allowed reflections: double diffraction within the zero-order Laue
    zone).  Lattice-centring absences never are (the allowed points of a centred lattice form a
    sublattice closed under addition).
    """
    kind = np.where(allowed, ALLOWED, ABSENT).astype(np.int8)
    if not keep_forbidden or not allowed.any():
        return kind
    A = n_idx[allowed].astype(np.int64)
    # generated 2D integer lattice: Hermite normal form of the allowed vectors (rows)
    basis = _hnf_2d(A)
    if basis is None:
        return kind
    (a, b), (_, d) = basis          # upper triangular [[a, b], [0, d]], a > 0, d > 0 (rows)
    # point (x, y) = i*(a, b) + j*(0, d): i = x / a integer, j = (y - i*b) / d integer
    x, y = n_idx[:, 0].astype(np.int64), n_idx[:, 1].astype(np.int64)
    in_lat = (x % a == 0)
    i = x // a
    in_lat &= ((y - i * b) % d == 0)
    kind[(~allowed) & in_lat & ((x != 0) | (y != 0))] = DYNAMICAL
    return kind


def _hnf_2d(vecs: np.ndarray):
    """Basis [[a, b], [0, d]] of the 2D integer lattice spanned by the rows of ``vecs`` (None if rank < 2)."""
    v = [tuple(int(t) for t in r) for r in vecs if r[0] != 0 or r[1] != 0]
    if not v:
        return None
    # gcd of first components with the extended Euclid, tracking the second component
    a, b = 0, 0
    rest: list[int] = []          # second components of vectors with zero first component
    for x, y in v:
        if x == 0:
            rest.append(y)
            continue
        if a == 0:
            a, b = x, y
            continue
        g, p, q = _egcd(a, x)
        # new first vector p*(a, b) + q*(x, y) = (g, p*b + q*y); combination with first component 0:
        # (x/g)*(a, b) - (a/g)*(x, y) = (0, (x*b - a*y)/g)
        rest.append((x * b - a * y) // g)
        a, b = g, p * b + q * y
    if a == 0:
        return None
    if a < 0:
        a, b = -a, -b
    d = 0
    for y in rest:
        d = int(np.gcd(d, y))
    if d == 0:
        return None
    return (a, b % d), (0, d)


def _egcd(a: int, b: int):
    """g, p, q with p*a + q*b = g = gcd(a, b) > 0."""
    x0, x1, y0, y1 = 1, 0, 0, 1
    while b:
        q, a, b = a // b, b, a % b
        x0, x1 = x1, x0 - q * x1
        y0, y1 = y1, y0 - q * y1
    if a < 0:
        a, x0, y0 = -a, -x0, -y0
    return a, x0, y0


def electron_wavelength_nm(voltage_kV: float) -> float:
    """Relativistic electron wavelength (nm) at accelerating voltage ``voltage_kV``."""
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    V = voltage_kV * 1e3
    return h / np.sqrt(2 * m0 * e * V * (1 + e * V / (2 * m0 * c**2))) * 1e9
