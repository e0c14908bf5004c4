"""Generate the curated candidate-phase CIFs of temtwin (resources/phases/*.cif).

Each phase is built with pymatgen from its space group (Hermann-Mauguin symbol, pymatgen's default
setting: origin choice 1, hexagonal axes for rhombohedral groups), room-temperature literature lattice
parameters and Wyckoff positions; the sources are listed in SOURCES.md.  Run from the repository root:

    .venv/bin/python resources/phases/make_phases.py

The file stem is the phase name used everywhere in temtwin (``Si``, ``GaN``, ``TiO2-rutile``...).
Every structure is checked on generation: its space group number as found by spglib, its number of
atoms per cell and its shortest interatomic distance.
"""

from __future__ import annotations

from pathlib import Path

from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

HERE = Path(__file__).resolve().parent


def cubic(a):
    return Lattice.cubic(a)


def hexa(a, c):
    return Lattice.hexagonal(a, c)


def tetra(a, c):
    return Lattice.tetragonal(a, c)


DIAMOND = [[0.0, 0.0, 0.0]]
ZB = [[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]]
FCC = [[0.0, 0.0, 0.0]]
BCC = [[0.0, 0.0, 0.0]]
ROCKSALT = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]


def wz(u):
    """Wurtzite (P6_3mc, 2b): cation (1/3, 2/3, 0), anion (1/3, 2/3, u)."""
    return [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, u]]


VACUUM_C = 20.0   # Å: c of the monolayer cells of 2D crystals (a layer < 4 Å thick, the rest vacuum)

# name: (space group, lattice, species, fractional coords, expected sg number, atoms per cell)
PHASES = {
    # group IV (diamond, Fd-3m origin choice 1: 8a at 0,0,0)
    "Si": ("Fd-3m", cubic(5.4310), ["Si"], DIAMOND, 227, 8),
    "Ge": ("Fd-3m", cubic(5.6580), ["Ge"], DIAMOND, 227, 8),
    "C-diamond": ("Fd-3m", cubic(3.5668), ["C"], DIAMOND, 227, 8),
    "Sn-alpha": ("Fd-3m", cubic(6.4892), ["Sn"], DIAMOND, 227, 8),
    "Sn-beta": ("I4_1/amd", tetra(5.8316, 3.1815), ["Sn"], [[0.0, 0.0, 0.0]], 141, 4),
    # zinc blende (F-43m)
    "SiC-3C": ("F-43m", cubic(4.3596), ["Si", "C"], ZB, 216, 8),
    "GaAs": ("F-43m", cubic(5.6533), ["Ga", "As"], ZB, 216, 8),
    "AlAs": ("F-43m", cubic(5.6611), ["Al", "As"], ZB, 216, 8),
    "GaP": ("F-43m", cubic(5.4505), ["Ga", "P"], ZB, 216, 8),
    "GaSb": ("F-43m", cubic(6.0959), ["Ga", "Sb"], ZB, 216, 8),
    "InAs": ("F-43m", cubic(6.0583), ["In", "As"], ZB, 216, 8),
    "InP": ("F-43m", cubic(5.8687), ["In", "P"], ZB, 216, 8),
    "InSb": ("F-43m", cubic(6.4794), ["In", "Sb"], ZB, 216, 8),
    "CdTe": ("F-43m", cubic(6.4810), ["Cd", "Te"], ZB, 216, 8),
    "ZnS": ("F-43m", cubic(5.4093), ["Zn", "S"], ZB, 216, 8),
    # wurtzite (P6_3mc)
    "GaN": ("P6_3mc", hexa(3.1890, 5.1850), ["Ga", "N"], wz(0.3770), 186, 4),
    "AlN": ("P6_3mc", hexa(3.1120, 4.9820), ["Al", "N"], wz(0.3820), 186, 4),
    "ZnO": ("P6_3mc", hexa(3.2498, 5.2066), ["Zn", "O"], wz(0.3819), 186, 4),
    "InAs-wurtzite": ("P6_3mc", hexa(4.2742, 7.0250), ["In", "As"], wz(0.3750), 186, 4),
    # metals
    "Al": ("Fm-3m", cubic(4.0495), ["Al"], FCC, 225, 4),
    "Cu": ("Fm-3m", cubic(3.6149), ["Cu"], FCC, 225, 4),
    "Ag": ("Fm-3m", cubic(4.0857), ["Ag"], FCC, 225, 4),
    "Au": ("Fm-3m", cubic(4.0782), ["Au"], FCC, 225, 4),
    "Pt": ("Fm-3m", cubic(3.9236), ["Pt"], FCC, 225, 4),
    "Pd": ("Fm-3m", cubic(3.8907), ["Pd"], FCC, 225, 4),
    "Ni": ("Fm-3m", cubic(3.5240), ["Ni"], FCC, 225, 4),
    "Fe-bcc": ("Im-3m", cubic(2.8665), ["Fe"], BCC, 229, 2),
    "W": ("Im-3m", cubic(3.1652), ["W"], BCC, 229, 2),
    # nitrides and oxides
    "TiN": ("Fm-3m", cubic(4.2417), ["Ti", "N"], ROCKSALT, 225, 8),
    "MgO": ("Fm-3m", cubic(4.2112), ["Mg", "O"], ROCKSALT, 225, 8),
    "SrTiO3": ("Pm-3m", cubic(3.9050), ["Sr", "Ti", "O"],
               [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0]], 221, 5),
    "BaTiO3": ("P4mm", tetra(3.9925, 4.0365), ["Ba", "Ti", "O", "O"],
               [[0.0, 0.0, 0.0], [0.5, 0.5, 0.4820], [0.5, 0.5, -0.0160], [0.5, 0.0, 0.5150]], 99, 5),
    "TiO2-rutile": ("P4_2/mnm", tetra(4.5937, 2.9587), ["Ti", "O"],
                    [[0.0, 0.0, 0.0], [0.30478, 0.30478, 0.0]], 136, 6),
    "TiO2-anatase": ("I4_1/amd", tetra(3.7845, 9.5143), ["Ti", "O"],
                     [[0.0, 0.0, 0.0], [0.0, 0.0, 0.2081]], 141, 12),
    "Al2O3-corundum": ("R-3c", hexa(4.7589, 12.9910), ["Al", "O"],
                       [[0.0, 0.0, 0.35216], [0.30624, 0.0, 0.25]], 167, 30),
    "HfO2-monoclinic": ("P2_1/c", Lattice.monoclinic(5.1170, 5.1754, 5.2915, 99.216), ["Hf", "O", "O"],
                        [[0.2759, 0.0412, 0.2078], [0.0730, 0.3420, 0.3360], [0.4480, 0.7588, 0.4795]], 14, 12),
    # 2D crystals: one monolayer in a hexagonal cell with c = VACUUM_C of vacuum (temtwin.phase.layers
    # recognises the gap: only the [0001] zone is searched); S heights from the bulk 2H compounds
    "graphene": ("P6/mmm", hexa(2.4640, VACUUM_C), ["C"], [[1 / 3, 2 / 3, 0.0]], 191, 2),
    "hBN": ("P-6m2", hexa(2.5040, VACUUM_C), ["B", "N"], [[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.0]], 187, 2),
    "MoS2": ("P-6m2", hexa(3.1604, VACUUM_C), ["Mo", "S"], [[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 1.586 / VACUUM_C]],
             187, 3),
    "WS2": ("P-6m2", hexa(3.1532, VACUUM_C), ["W", "S"], [[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 1.571 / VACUUM_C]],
            187, 3),
}


def build(name: str) -> Structure:
    sg, lat, species, coords, number, n = PHASES[name]
    st = Structure.from_spacegroup(sg, lat, species, coords)
    st.merge_sites(tol=0.01, mode="delete")
    found = SpacegroupAnalyzer(st, symprec=0.01).get_space_group_number()
    if found != number or len(st) != n:
        raise RuntimeError(f"{name}: space group {found} (expected {number}), {len(st)} atoms (expected {n})")
    dmin = min(st.get_distance(i, j) for i in range(len(st)) for j in range(i + 1, len(st))) if len(st) > 1 else 0
    nn = min(min(x.nn_distance for x in st.get_neighbors(s, 4.0)) for s in st)
    if nn < 1.0:
        raise RuntimeError(f"{name}: shortest interatomic distance {nn:.2f} A is unphysical")
    del dmin
    return st


def main(names=None) -> None:
    for name in names or PHASES:
        st = build(name)
        text = str(CifWriter(st, symprec=0.01))
        back = Structure.from_str(text, fmt="cif")
        if len(back) != len(st) or abs(back.volume - st.volume) > 1e-3:
            raise RuntimeError(f"{name}: the CIF does not read back identically")
        (HERE / f"{name}.cif").write_text(text)
        print(f"{name:18s} {st.composition.reduced_formula:8s} {st.get_space_group_info()[0]:10s} "
              f"{len(st):3d} atoms  abc={tuple(round(x, 4) for x in st.lattice.abc)}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
