"""Candidate phases: CIF files read with pymatgen, filtered by elements and names.

A phase is named by its CIF file stem (``Si``, ``GaN``, ``TiO2-rutile``...), the name used in every
result file.  The structure keeps the CIF's own setting (no re-standardisation), so that the crystal
Cartesian frame of orientation matrices is pymatgen's lattice-matrix frame of that CIF.

Shipped database: ``resources/phases/*.cif`` (see ``resources/phases/SOURCES.md``).  A broken CIF is
refused with one log line and the others are used; an empty candidate list is a
:class:`~temtwin.errors.UserError` naming the setting that emptied it.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..errors import UserError

RESOURCE_PHASES = Path(__file__).resolve().parents[3] / "resources" / "phases"
log = logging.getLogger("temtwin")


@dataclass(eq=False)
class Phase:
    """One candidate phase.

    Attributes
    ----------
    name: CIF stem.
    path: the CIF file ("" when built in memory).
    cif: CIF text (stored in phases.h5 for the downstream stages).
    structure: pymatgen Structure (Å), in the CIF's setting.
    space_group, space_group_number, crystal_system: from spglib (symprec 0.01 Å).
    """

    name: str
    path: str
    cif: str
    structure: object
    space_group: str = ""
    space_group_number: int = 0
    crystal_system: str = ""
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(sorted(el.symbol for el in self.structure.composition.elements))

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    @property
    def lattice_nm(self) -> np.ndarray:
        """Direct lattice matrix (rows a, b, c) in nm, pymatgen Cartesian frame."""
        return np.asarray(self.structure.lattice.matrix, float) / 10.0

    @property
    def reciprocal_nm(self) -> np.ndarray:
        """Reciprocal lattice matrix (rows a*, b*, c*) in nm^-1 (|g| = 1/d, no 2π), same frame."""
        return np.linalg.inv(self.lattice_nm).T

    @property
    def abc_nm(self) -> np.ndarray:
        return np.asarray(self.structure.lattice.abc, float) / 10.0

    @property
    def angles_deg(self) -> np.ndarray:
        return np.asarray(self.structure.lattice.angles, float)

    @property
    def is_hexagonal(self) -> bool:
        """Hexagonal axes (a = b, γ = 120°, α = β = 90°): zone axes also given with 4 indices."""
        a, b, _ = self.structure.lattice.abc
        al, be, ga = self.structure.lattice.angles
        return abs(a - b) < 1e-4 * a and abs(ga - 120) < 0.01 and abs(al - 90) < 0.01 and abs(be - 90) < 0.01

    @cached_property
    def sites(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        """Scatterers: fractional coords (n, 3), atomic numbers (n,), occupancies (n,), symbols.

        A disordered site contributes one scatterer per species with its occupancy.
        """
        frac, Z, occ, sym = [], [], [], []
        for s in self.structure.sites:
            for sp, o in s.species.items():
                el = getattr(sp, "element", sp)
                frac.append(np.asarray(s.frac_coords, float) % 1.0)
                Z.append(int(el.Z))
                occ.append(float(o))
                sym.append(el.symbol)
        return np.array(frac), np.array(Z, int), np.array(occ, float), tuple(sym)

    @cached_property
    def digest(self) -> str:
        """sha256 of the CIF text (cache key)."""
        return hashlib.sha256(self.cif.encode()).hexdigest()[:16]


def phase_from_structure(name: str, structure, cif: str | None = None, path: str = "") -> Phase:
    """A :class:`Phase` from a pymatgen Structure (CIF text generated when not given)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if cif is None:
        from pymatgen.io.cif import CifWriter

        cif = str(CifWriter(structure))
    try:
        sga = SpacegroupAnalyzer(structure, symprec=0.01)
        sg, num, system = sga.get_space_group_symbol(), int(sga.get_space_group_number()), sga.get_crystal_system()
    except Exception:  # spglib failure: keep P1
        sg, num, system = "P1", 1, "triclinic"
    return Phase(name, path, cif, structure, sg, num, system)


def structure_from_cif(text: str, source: str | Path = "", what: str = ""):
    """pymatgen Structure of CIF text: the one parsing policy (CIF's own setting, pymatgen warnings
    silenced); UserError naming ``source`` when pymatgen cannot make a structure of it or the cell is
    empty or degenerate."""
    from pymatgen.core import Structure

    pre = f"{what}: " if what else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = Structure.from_str(text, fmt="cif")
    except Exception as e:  # pymatgen raises ValueError, KeyError, IndexError... on bad CIFs
        msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{pre}not a usable CIF ({msg}); fix or remove the file", source) from None
    if len(st) == 0 or st.volume <= 1e-6 or not np.all(np.isfinite(st.lattice.matrix)):
        raise UserError(f"{pre}CIF has no atoms or a degenerate cell; fix or remove the file", source)
    return st


def load_cif(path: str | Path) -> Phase:
    """Read one CIF; UserError (naming the file) when pymatgen cannot make a structure of it."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise UserError(f"cannot read the CIF ({e.strerror}); check the file", p) from None
    return phase_from_structure(p.stem, structure_from_cif(text, p), text, str(p))


#: phases built in without a CIF (space group, cubic a in Å, species, Wyckoff positions), so tests and
#: generated data do not depend on the shipped CIF database
BUILTIN_STRUCTURES = {
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


@lru_cache(maxsize=64)
def load_structure(phase: str):
    """The one structure loader: a pymatgen ``Structure`` from a CIF path, a phase name of the shipped
    database ``resources/phases/<name>.cif`` (both parsed by :func:`structure_from_cif`), or a
    built-in phase (:data:`BUILTIN_STRUCTURES`).  KeyError for an unknown name.  Cached: callers
    must not modify the returned structure."""
    p = Path(phase)
    if not (p.suffix.lower() == ".cif" and p.is_file()):
        p = RESOURCE_PHASES / f"{phase}.cif"
    if p.is_file():
        try:
            text = p.read_text(errors="replace")
        except OSError as e:
            raise UserError(f"cannot read the CIF ({e.strerror}); check the file", p) from None
        return structure_from_cif(text, p)
    if phase not in BUILTIN_STRUCTURES:
        raise KeyError(f"unknown phase {phase!r}: give a CIF path or one of {sorted(BUILTIN_STRUCTURES)}")
    from pymatgen.core import Lattice, Structure

    sg, a, species, coords = BUILTIN_STRUCTURES[phase]
    return Structure.from_spacegroup(sg, Lattice.cubic(a), species, coords)


def load_phases(paths, logger: logging.Logger | None = None) -> list[Phase]:
    """Read every CIF of ``paths``; a broken one is skipped with one warning line.

    When two files share a stem, the later one wins (the order of the phase_id rule's inputs is
    resources/phases, config folders, the sample's own phases/), with an info line.  Identical
    structures under different names are pooled (:func:`pool_duplicate_phases`).
    """
    lg = logger or log
    out: dict[str, Phase] = {}
    for p in paths:
        try:
            ph = load_cif(p)
        except UserError as e:
            lg.warning("phase_id: skipped %s", e)
            continue
        if ph.name in out:
            lg.info("phase_id: %s replaces %s for phase %r", ph.path, out[ph.name].path, ph.name)
        out[ph.name] = ph
    return pool_duplicate_phases(list(out.values()), lg)


def pool_duplicate_phases(phases: list[Phase], logger: logging.Logger | None = None,
                          length_tol: float = 0.005, angle_tol_deg: float = 0.5) -> list[Phase]:
    """Keep one candidate per structure: identical structures in several CIFs are pooled, with a warning.

    Two phases are the same structure when they have the same reduced formula and space group and
    pymatgen's StructureMatcher maps one onto the other without rescaling (lattice lengths within
    ``length_tol`` (fraction), angles within ``angle_tol_deg``, sites within 0.1 of the mean bond); the
    first one (in the order resources/phases, config folders, the sample's phases/) is kept under its
    name.  Duplicates would otherwise split the confidence, which is normalised across candidates.
    """
    lg = logger or log
    groups: dict[tuple[str, int], list[Phase]] = {}
    for ph in phases:
        groups.setdefault((ph.formula, ph.space_group_number), []).append(ph)
    if all(len(g) == 1 for g in groups.values()):
        return list(phases)
    from pymatgen.analysis.structure_matcher import StructureMatcher

    sm = StructureMatcher(ltol=length_tol, stol=0.1, angle_tol=angle_tol_deg, scale=False,
                          primitive_cell=True, attempt_supercell=False)
    dropped: set[int] = set()
    for group in groups.values():
        for i, keep in enumerate(group):
            if id(keep) in dropped:
                continue
            same = [other for other in group[i + 1:] if id(other) not in dropped
                    and sm.fit(keep.structure, other.structure)]
            if same:
                dropped.update(id(o) for o in same)
                lg.warning("phase_id: identical structures (%s, %s, same lattice) pooled as phase %r: %s; "
                           "remove the duplicate CIF(s)", keep.formula, keep.space_group, keep.name,
                           ", ".join(str(p.path or p.name) for p in [keep, *same]))
    return [ph for ph in phases if id(ph) not in dropped]


def builtin_phase_files() -> list[Path]:
    """The shipped database ``resources/phases/*.cif``."""
    return sorted(RESOURCE_PHASES.glob("*.cif"))


def load_builtin(names=None) -> list[Phase]:
    """Shipped phases (all, or those named)."""
    files = builtin_phase_files()
    if names is not None:
        wanted = set(names)
        files = [f for f in files if f.stem in wanted]
    return load_phases(files)


def select_phases(phases: list[Phase], elements=None, names=None, source: str = "",
                  path: str | Path | None = None) -> list[Phase]:
    """Candidates whose elements are all in ``elements`` and whose name is in ``names``.

    ``elements`` / ``names``: None or empty = no restriction.  ``source`` names where the restriction
    came from (e.g. ``"key `elements`"``) and ``path`` the file holding it (sample.yaml or the config),
    for the error message.  Raises UserError when no phase is left.
    """
    if not phases:
        raise UserError("no candidate phases: no readable CIF in resources/phases, the config "
                        "`phase_id.cif_folders` or the sample's phases/ folder; add CIF files or set "
                        "`phase_id.use_builtin_phases: true`", path)
    out = list(phases)
    if elements:
        allowed = {str(e) for e in elements}
        out = [p for p in out if set(p.elements) <= allowed]
        if not out:
            raise UserError(f"no candidate phase is made only of the elements {sorted(allowed)} "
                            f"({source or 'elements'}); add the missing elements or a CIF of the phase", path)
    if names:
        wanted = {str(n) for n in names}
        have = {p.name for p in out}
        out = [p for p in out if p.name in wanted]
        if not out:
            raise UserError(f"none of the phases {sorted(wanted)} ({source or 'phases'}) is among the "
                            f"candidates {sorted(have)}; fix the names (CIF stems) or add their CIFs", path)
    return out
