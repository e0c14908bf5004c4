"""Keating valence force field for diamond-structure Si/Ge alloys: energy, forces, virial stress.

Energy (P. N. Keating, Phys. Rev. 145, 637 (1966); parameters in ``resources/physics/keating.yaml``),
with the first sum over every atom i and each of its bonds s (so each bond is counted from both
ends) and the second over each pair s < t of the bonds of atom i::

    E = sum_i sum_s 3 alpha_s / (16 d_s^2) (r_s.r_s - d_s^2)^2
      + sum_i sum_{s<t} 3 beta_st / (8 d_s d_t) (r_s.r_t + d_s d_t / 3)^2

``r_s`` is the bond vector, ``d_s`` the ideal length of the bond's pair of species.  With this form
(bond term counted twice) the elastic constants are Keating's C11 = (alpha + 3 beta)/a,
C12 = (alpha - beta)/a, relaxed C44 = 4 alpha beta / (a (alpha + beta)) and the zone-centre optical
phonon omega^2 = 8 (alpha + beta) / M, which the reference table's ``checks:`` quote (tested).

Mixed Si-Ge bonds (reference table): alpha = mean of Si and Ge, d0 = (d_Si + d_Ge)/2, beta of a bond
= mean of Si and Ge, and the angle term of a triple uses the mean of its two bonds' beta.

Units: Å, eV, eV/Å, stress eV/Å^3 (ASE: ``stress = (1/V) dE/d(strain)``, Voigt order xx yy zz yz xz xy;
compressive stress negative).  alpha, beta are converted from N/m with 1 N/m = 0.0624151 eV/Å^2.

The neighbour topology (4 mutual nearest neighbours, KD-tree, periodic along ``pbc``) is built once
for a structure and kept fixed while positions change (Keating is a fixed-topology model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from . import keating_kernels as kk
from .neighbors import NeighborTable, neighbor_table

KEATING_YAML = Path(__file__).resolve().parents[3] / "resources" / "physics" / "keating.yaml"
N_PER_M_TO_EV_PER_A2 = 0.0624151
EV_PER_A3_TO_GPA = 160.21766208

_SYMBOLS = {14: "Si", 32: "Ge", 6: "C", 50: "Sn"}


@dataclass(frozen=True)
class KeatingParameters:
    """Keating parameters per species and per bond type.

    Attributes
    ----------
    numbers: atomic numbers of the supported species (type index = position in this tuple).
    alpha, beta: (T, T) bond-stretching / bond-bending constants per bond type (eV/Å^2).
    d0: (T, T) ideal bond lengths (Å).
    lattice_A: (T,) lattice constants of the pure crystals (Å).
    source: file the values came from.
    """

    numbers: tuple[int, ...]
    alpha: np.ndarray
    beta: np.ndarray
    d0: np.ndarray
    lattice_A: np.ndarray
    source: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "KeatingParameters":
        """Read the parameter table (default ``resources/physics/keating.yaml``).

        Every top-level entry with ``alpha``, ``beta`` (N/m) and ``a`` (Å) whose key is an element
        symbol is a species; mixed bonds follow the arithmetic-mean rules of the module docstring.
        """
        path = Path(path or KEATING_YAML)
        doc = yaml.safe_load(path.read_text())
        sym_to_z = {v: k for k, v in _SYMBOLS.items()}
        species = [(sym_to_z[k], v) for k, v in doc.items()
                   if k in sym_to_z and isinstance(v, dict) and {"alpha", "beta", "a"} <= set(v)]
        species.sort()
        z = tuple(s[0] for s in species)
        a = np.array([float(s[1]["a"]) for s in species])
        al = np.array([float(s[1]["alpha"]) for s in species]) * N_PER_M_TO_EV_PER_A2
        be = np.array([float(s[1]["beta"]) for s in species]) * N_PER_M_TO_EV_PER_A2
        d = a * np.sqrt(3.0) / 4.0
        return cls(numbers=z, alpha=0.5 * (al[:, None] + al[None, :]),
                   beta=0.5 * (be[:, None] + be[None, :]), d0=0.5 * (d[:, None] + d[None, :]),
                   lattice_A=a, source=str(path))

    def types(self, numbers) -> np.ndarray:
        """Type index (int8) of each atom; raises ValueError naming unsupported elements."""
        numbers = np.asarray(numbers, int)
        lut = np.full(max(int(numbers.max(initial=0)), max(self.numbers)) + 1, -1, np.int64)
        for t, z in enumerate(self.numbers):
            lut[z] = t
        t = lut[numbers] if len(numbers) else np.zeros(0, np.int64)
        if (t < 0).any():
            from ase.data import chemical_symbols

            bad = sorted({chemical_symbols[z] for z in np.unique(numbers[t < 0])})
            raise ValueError(f"no Keating parameters for {', '.join(bad)} "
                             f"(supported: {', '.join(chemical_symbols[z] for z in self.numbers)})")
        return t.astype(np.int8)

    def supports(self, numbers) -> bool:
        return bool(np.isin(np.asarray(numbers, int), self.numbers).all())

    @property
    def kb(self) -> np.ndarray:
        """Bond-stretch prefactor 3 alpha / (16 d0^2) (eV/Å^4)."""
        return 3.0 * self.alpha / (16.0 * self.d0 ** 2)


_DEFAULT: KeatingParameters | None = None


def default_parameters() -> KeatingParameters:
    """The parameters of ``resources/physics/keating.yaml`` (cached)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = KeatingParameters.load()
    return _DEFAULT


def analytic_constants(symbol: str, params: KeatingParameters | None = None) -> dict:
    """Keating's analytic C11, C12, relaxed C44 (GPa) and Gamma optical phonon (meV) of a pure crystal."""
    from ase.data import atomic_masses, atomic_numbers

    p = params or default_parameters()
    t = p.numbers.index(atomic_numbers[symbol])
    al, be, a = p.alpha[t, t], p.beta[t, t], p.lattice_A[t]
    c = EV_PER_A3_TO_GPA
    omega2 = 8.0 * (al + be) / atomic_masses[atomic_numbers[symbol]]  # eV/(Å^2 amu)
    return {"C11": (al + 3 * be) / a * c, "C12": (al - be) / a * c,
            "C44": 4 * al * be / (a * (al + be)) * c,
            "gamma_optical_meV": EV_A2_AMU_TO_MEV * np.sqrt(omega2)}


# hbar * sqrt(eV / (Å^2 amu)) in meV
EV_A2_AMU_TO_MEV = 1e3 * 6.582119569e-16 * np.sqrt(1.602176634e-19 / (1e-20 * 1.66053906660e-27))


@dataclass
class KeatingResult:
    """Energies (eV), forces (eV/Å) and optionally the virial (eV) of one evaluation."""

    energy: float
    forces: np.ndarray
    energies: np.ndarray
    virial: np.ndarray | None = None  # sum over bonds of g (x) r = V * stress tensor (eV)


@dataclass
class KeatingModel:
    """Keating force field bound to a fixed topology (neighbour table) of one structure.

    Build with :meth:`from_atoms` or :meth:`from_arrays`; then :meth:`evaluate` any positions
    (and cell) of the same atoms.
    """

    table: NeighborTable
    types: np.ndarray
    params: KeatingParameters
    numbers: np.ndarray
    pbc: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))

    @classmethod
    def from_arrays(cls, positions_A, numbers, cell_A=None, pbc=(False, False, False),
                    params: KeatingParameters | None = None, max_bond_A: float | None = None):
        params = params or default_parameters()
        numbers = np.asarray(numbers, int)
        types = params.types(numbers)
        cell = np.zeros((3, 3)) if cell_A is None else np.asarray(cell_A, float).reshape(3, 3)
        pbc = np.broadcast_to(np.asarray(pbc, bool), (3,)).copy()
        if max_bond_A is None and len(numbers):
            # 1.2 x the largest ideal bond of the species present (robust for distorted models)
            max_bond_A = 1.2 * float(params.d0[np.ix_(np.unique(types), np.unique(types))].max())
        table = neighbor_table(positions_A, cell, pbc, 4, max_bond_A)
        return cls(table=table, types=types, params=params, numbers=numbers, pbc=pbc, cell=cell)

    @classmethod
    def from_atoms(cls, atoms, params: KeatingParameters | None = None, max_bond_A: float | None = None):
        return cls.from_arrays(atoms.get_positions(), atoms.get_atomic_numbers(), atoms.cell[:],
                               atoms.pbc, params, max_bond_A)

    def __len__(self) -> int:
        return len(self.types)

    def bond_vectors(self, positions_A, cell_A=None) -> np.ndarray:
        cell = self.cell if cell_A is None else np.asarray(cell_A, float)
        return kk.bond_vectors(np.ascontiguousarray(positions_A, dtype=float), np.ascontiguousarray(cell),
                               self.table.nbr, self.table.image)

    def evaluate(self, positions_A, cell_A=None, virial: bool = False) -> KeatingResult:
        """Energy, forces (and the virial when asked) at ``positions_A`` (Å) in ``cell_A``."""
        if len(self) == 0:
            return KeatingResult(0.0, np.zeros((0, 3)), np.zeros(0), np.zeros((3, 3)) if virial else None)
        p = self.params
        vec = self.bond_vectors(positions_A, cell_A)
        e_atom, g = kk.energy_gradient(vec, self.table.nbr, self.types, p.kb, p.d0, p.beta)
        f = kk.gather_forces(g, self.table.nbr, self.table.rev)
        w = np.einsum("nka,nkb->ab", g, vec) if virial else None
        if w is not None:
            w = 0.5 * (w + w.T)
        return KeatingResult(float(e_atom.sum()), f, e_atom, w)

    def local_hessians(self, positions_A, cell_A=None) -> np.ndarray:
        """(N, K, K, 3, 3) second derivatives of each atom's energy w.r.t. its bond vectors."""
        p = self.params
        vec = self.bond_vectors(positions_A, cell_A)
        return kk.local_hessians(vec, self.table.nbr, self.types, p.kb, p.d0, p.beta)


def energy_forces(atoms, params: KeatingParameters | None = None) -> tuple[float, np.ndarray]:
    """Keating energy (eV) and forces (N, 3) eV/Å of an ``ase.Atoms`` (Si/Ge; periodic along pbc)."""
    res = KeatingModel.from_atoms(atoms, params).evaluate(atoms.get_positions(), atoms.cell[:])
    return res.energy, res.forces


def stress_voigt(virial: np.ndarray, volume_A3: float) -> np.ndarray:
    """ASE stress (Voigt xx yy zz yz xz xy, eV/Å^3) from the virial sum g (x) r (eV)."""
    s = virial / volume_A3
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


try:  # ASE calculator wrapper
    from ase.calculators.calculator import Calculator, all_changes

    class KeatingCalculator(Calculator):
        """ASE calculator: Keating energy, forces, per-atom energies and stress (Si/Ge).

        The neighbour topology is built on the first calculation and kept while the atomic numbers
        and periodicity are unchanged (call :meth:`reset_topology` after re-bonding the structure).
        Stress needs a 3-D periodic cell (its volume).
        """

        implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]

        def __init__(self, params: KeatingParameters | None = None, max_bond_A: float | None = None, **kw):
            super().__init__(**kw)
            self.params = params or default_parameters()
            self.max_bond_A = max_bond_A
            self._model: KeatingModel | None = None

        def reset_topology(self) -> None:
            self._model = None

        def model_for(self, atoms) -> KeatingModel:
            m = self._model
            if (m is None or len(m) != len(atoms) or not np.array_equal(m.numbers, atoms.numbers)
                    or not np.array_equal(m.pbc, atoms.pbc)):
                m = KeatingModel.from_atoms(atoms, self.params, self.max_bond_A)
                self._model = m
            return m

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            m = self.model_for(self.atoms)
            want_stress = "stress" in properties
            res = m.evaluate(self.atoms.get_positions(), self.atoms.cell[:], virial=want_stress)
            self.results["energy"] = res.energy
            self.results["free_energy"] = res.energy
            self.results["forces"] = res.forces
            self.results["energies"] = res.energies
            if want_stress:
                self.results["stress"] = stress_voigt(res.virial, self.atoms.get_volume())

except ImportError:  # pragma: no cover - ase is a dependency
    pass


def central_differences(fn, positions_A: np.ndarray, atoms=None, step_A: float = 1e-5) -> np.ndarray:
    """Numerical derivative of ``fn(positions) -> array`` (or scalar) with respect to the Cartesian
    coordinates of ``atoms`` (indices; default all) by central differences of step ``step_A`` (Å).

    Returns (len(atoms), 3, *fn_shape).  A check of analytic derivatives (forces are minus the
    derivative of the energy, force constants minus that of the forces) on small cells: it costs
    6 evaluations per atom.
    """
    pos = np.asarray(positions_A, float)
    idx = np.arange(len(pos)) if atoms is None else np.asarray(atoms)
    out = []
    for i in idx:                       # a numerical check over a few atoms, not a hot path
        for a in range(3):
            p = pos.copy()
            p[i, a] += step_A
            fp = np.asarray(fn(p), float)
            p[i, a] -= 2 * step_A
            fm = np.asarray(fn(p), float)
            out.append((fp - fm) / (2 * step_A))
    out = np.array(out)
    return out.reshape(len(idx), 3, *out.shape[1:])
