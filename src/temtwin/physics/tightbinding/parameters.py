"""sp3d5s* tight-binding parameters for Si, Ge, Si–Ge bonds and H passivation.

The tables live in ``resources/physics/tb_sp3d5s_star_SiGe.yaml`` (a copy of the project's reference
file with its sources: Niquet et al., PRB 79, 245201 (2009) for the strained sp3d5s* set; hydrogen
from Zheng et al., IEEE TED 52, 1092 (2005)).  Energies in eV, lengths in Å.

Conventions
-----------
Orbitals per atom (spin-less), in this order: ``s, px, py, pz, dyz, dzx, dxy, dx2-y2, d3z2-r2, s*``.

Two-centre integrals are stored *directed*, for an ordered pair of species (A on atom i, B on atom
j): ``V[A, B, k]`` is the integral whose first orbital sits on A and second on B, with the value in
the canonical Slater–Koster sense (the orbital with the lower angular momentum at the origin, the other
at +z).  For example ``ps_sigma`` of (Si, Ge) is the table's ``pssigma`` (p on Si, s on Ge) and
``sp_sigma`` of (Ge, Si) is the same number.  Homopolar pairs have ``ps = sp`` etc.  The sign rules
for the reversed orientation (p–s = −s–p along the bond) are applied in
:mod:`temtwin.physics.tightbinding.slater_koster`, not here.

Bond-length scaling: ``V(d) = V0 (d0/d)**n`` with ``d0`` of the pair.  Exponents missing for the
reversed Si–Ge integrals (``ps``, ``ss*``, ``ds``, ...) are taken equal to those of the forward
ones (``sp``, ``s*s``, ``sd``, ...), the only information the source gives.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from ...errors import UserError

RESOURCE = Path(__file__).resolve().parents[4] / "resources" / "physics" / "tb_sp3d5s_star_SiGe.yaml"

ORBITALS = ("s", "px", "py", "pz", "dyz", "dzx", "dxy", "dx2-y2", "d3z2-r2", "s*")
N_ORB = 10
#: index slices of the orbital shells
S, P, D, SSTAR = 0, slice(1, 4), slice(4, 9), 9

#: directed two-centre integrals (first letter: orbital on atom i, second: on atom j; S = s*)
INTEGRALS = ("ss_sigma", "sS_sigma", "Ss_sigma", "SS_sigma",
             "sp_sigma", "Sp_sigma", "ps_sigma", "pS_sigma",
             "sd_sigma", "Sd_sigma", "ds_sigma", "dS_sigma",
             "pp_sigma", "pp_pi",
             "pd_sigma", "pd_pi", "dp_sigma", "dp_pi",
             "dd_sigma", "dd_pi", "dd_delta")
IDX = {k: i for i, k in enumerate(INTEGRALS)}
#: integral pairs exchanged when the bond is read from the other atom
_SWAP = (("sS_sigma", "Ss_sigma"), ("sp_sigma", "ps_sigma"), ("Sp_sigma", "pS_sigma"),
         ("sd_sigma", "ds_sigma"), ("Sd_sigma", "dS_sigma"), ("pd_sigma", "dp_sigma"),
         ("pd_pi", "dp_pi"))
#: names in the reference YAML for a pair (first orbital on the first species)
_YAML_NAMES = {
    "ss_sigma": "sssigma", "sS_sigma": "ssstarsigma", "Ss_sigma": "sstarssigma",
    "SS_sigma": "sstarsstarsigma", "sp_sigma": "spsigma", "Sp_sigma": "sstarpsigma",
    "ps_sigma": "pssigma", "pS_sigma": "psstarsigma", "sd_sigma": "sdsigma",
    "Sd_sigma": "sstardsigma", "ds_sigma": "dssigma", "dS_sigma": "dsstarsigma",
    "pp_sigma": "ppsigma", "pp_pi": "pppi", "pd_sigma": "pdsigma", "pd_pi": "pdpi",
    "dp_sigma": "dpsigma", "dp_pi": "dppi", "dd_sigma": "ddsigma", "dd_pi": "ddpi",
    "dd_delta": "dddelta",
}
#: for a homopolar table, or a missing exponent, the integral whose value is used instead
_FALLBACK = {"sS_sigma": "Ss_sigma", "ps_sigma": "sp_sigma", "pS_sigma": "Sp_sigma",
             "ds_sigma": "sd_sigma", "dS_sigma": "Sd_sigma", "dp_sigma": "pd_sigma",
             "dp_pi": "pd_pi"}
#: on-site strain coefficients (Niquet 2009) in the order stored in TBParameters.beta
BETA_NAMES = ("p0", "p1", "pd0", "pd1", "d0", "sp0", "sstarp0", "sd0", "sstard0")
SPECIES = ("Si", "Ge", "H")
Z_OF = {"Si": 14, "Ge": 32, "H": 1}
HOST = ("Si", "Ge")


@dataclass(frozen=True)
class TBParameters:
    """Parameter arrays indexed by species (0 Si, 1 Ge, 2 H).

    Attributes
    ----------
    species: species names, ``("Si", "Ge", "H")``.
    n_orb: spin-less orbitals per species (10, 10, 1); H uses the ``s`` slot.
    onsite: (3, 10) eV, bare on-site energies (Ge includes the valence-band-offset shift when on).
    lambda_so: (3,) eV, spin–orbit λ of the p shell (Δ_SO = 3λ).
    V0, n: (3, 3, 21) directed two-centre integrals (eV) and their bond-length exponents.
    d0: (3, 3) Å, unstrained bond length of each pair (Si–H, Ge–H: the H bond length).
    alpha: (3, 4) eV, hydrostatic on-site shifts of s, p, d, s*.
    beta: (3, 9) eV, on-site strain couplings named :data:`BETA_NAMES`.
    vbo_shift: eV added to every Ge on-site energy (0 when switched off).
    sources: text of the table's provenance.
    """

    species: tuple
    n_orb: np.ndarray
    onsite: np.ndarray
    lambda_so: np.ndarray
    V0: np.ndarray
    n: np.ndarray
    d0: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    vbo_shift: float
    sources: str = ""
    extra: dict = field(default_factory=dict)

    def species_index(self, numbers) -> np.ndarray:
        """Species index (0 Si, 1 Ge, 2 H) of atomic numbers; -1 for anything else."""
        z = np.asarray(numbers)
        out = np.full(z.shape, -1, np.int64)
        for k, name in enumerate(self.species):
            out[z == Z_OF[name]] = k
        return out


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg}


def _num(expr) -> float:
    """A number or a small arithmetic expression such as ``"5.431*sqrt(3)/4"``."""
    if isinstance(expr, (int, float)):
        return float(expr)

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
                and len(node.args) == 1):
            return math.sqrt(ev(node.args[0]))
        raise ValueError(f"unsupported expression {expr!r}")

    return ev(ast.parse(str(expr), mode="eval"))


def _directed(table: dict) -> np.ndarray:
    """Directed integrals from a YAML table; a missing reversed entry takes the forward value."""
    out = np.zeros(len(INTEGRALS))
    for k, name in enumerate(INTEGRALS):
        key = _YAML_NAMES[name]
        if key not in table and name in _FALLBACK:
            key = _YAML_NAMES[_FALLBACK[name]]
        out[k] = float(table[key])
    return out


def _swap(v: np.ndarray) -> np.ndarray:
    """Integrals of the reversed pair (B, A) from those of (A, B)."""
    w = v.copy()
    for a, b in _SWAP:
        w[IDX[a]], w[IDX[b]] = v[IDX[b]], v[IDX[a]]
    return w


@lru_cache(maxsize=8)
def load_parameters(path: str | None = None, valence_band_offset: bool = True) -> TBParameters:
    """Read the sp3d5s* tables into :class:`TBParameters`.

    ``valence_band_offset`` adds the file's ``Ge.valence_band_offset_shift`` (0.68 eV) to every Ge
    on-site energy, which puts the unstrained Ge valence-band maximum above that of Si by the
    measured band offset (checked in tests/test_physics_tightbinding.py).
    """
    p = Path(path) if path else RESOURCE
    if not p.is_file():
        raise UserError("tight-binding parameter file not found; restore it from the repository", p)
    doc = yaml.safe_load(p.read_text())
    ns = len(SPECIES)
    onsite = np.zeros((ns, N_ORB))
    lam = np.zeros(ns)
    V0 = np.zeros((ns, ns, len(INTEGRALS)))
    nexp = np.zeros_like(V0)
    d0 = np.zeros((ns, ns))
    alpha = np.zeros((ns, 4))
    beta = np.zeros((ns, len(BETA_NAMES)))
    vbo = float(doc["Ge"].get("valence_band_offset_shift", 0.0)) if valence_band_offset else 0.0
    for k, name in enumerate(HOST):
        t = doc[name]
        o = t["onsite"]
        shift = vbo if name == "Ge" else 0.0
        onsite[k] = np.array([o["s"], o["p"], o["p"], o["p"], *[o["d"]] * 5, o["sstar"]]) + shift
        lam[k] = float(t["lambda_so"])
        V0[k, k] = _directed(t["V"])
        nexp[k, k] = _directed(t["n"])
        d0[k, k] = _num(t["d0"])
        a = t["onsite_strain"]["alpha"]
        alpha[k] = [a["s"], a["p"], a["d"], a["sstar"]]
        b = t["onsite_strain"]["beta"]
        beta[k] = [b[x] for x in BETA_NAMES]
    sg = doc["SiGe"]
    v = _directed(sg["V"])
    nn = _directed(sg["n"])        # exponents: reversed ones fall back to the forward ones
    V0[0, 1], V0[1, 0] = v, _swap(v)
    nexp[0, 1], nexp[1, 0] = nn, _swap(nn)
    d0[0, 1] = d0[1, 0] = _num(sg["d0"])
    # hydrogen: a single s orbital; integrals with the host orbital first (host on atom i)
    h = doc["hydrogen_passivation"]["explicit_H"]
    onsite[2, 0] = float(h["E_s_H"])
    vh = np.zeros(len(INTEGRALS))
    vh[IDX["ss_sigma"]] = h["sssigma"]
    vh[IDX["Ss_sigma"]] = h["sstarssigma"]     # s* on host, s on H
    vh[IDX["ps_sigma"]] = h["spsigma"]         # p on host, s on H (canonical s-p value)
    vh[IDX["ds_sigma"]] = h["sdsigma"]         # d on host, s on H
    for k in range(2):
        V0[k, 2], V0[2, k] = vh, _swap(vh)
    d0[0, 2] = d0[2, 0] = 1.48                 # Si–H bond length (Å); H integrals are not rescaled
    d0[1, 2] = d0[2, 1] = 1.53                 # Ge–H
    head = [ln[1:].strip() for ln in p.read_text().splitlines()[:8] if ln.startswith("#")]
    return TBParameters(species=SPECIES, n_orb=np.array([N_ORB, N_ORB, 1]), onsite=onsite,
                        lambda_so=lam, V0=V0, n=nexp, d0=d0, alpha=alpha, beta=beta,
                        vbo_shift=vbo, sources="\n".join(head),
                        extra={"path": str(p), "checks": doc.get("checks", {}),
                               "sp3_shift_note": "Lee et al., PRB 69, 045316 (2004)"})
