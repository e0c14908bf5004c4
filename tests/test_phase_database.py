"""Candidate-phase database: shipped CIFs, broken CIFs refused cleanly, element/name filters."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from temtwin.errors import UserError
from temtwin.phase.database import builtin_phase_files, load_builtin, load_cif, load_phases, select_phases

EXPECTED = {  # name: (space group number, crystal system, a in nm)
    "Si": (227, "cubic", 0.5431), "Ge": (227, "cubic", 0.5658), "C-diamond": (227, "cubic", 0.35668),
    "SiC-3C": (216, "cubic", 0.43596), "GaAs": (216, "cubic", 0.56533), "InP": (216, "cubic", 0.58687),
    "InSb": (216, "cubic", 0.64794), "GaN": (186, "hexagonal", 0.3189), "InAs-wurtzite": (186, "hexagonal", 0.42742),
    "Au": (225, "cubic", 0.40782), "Fe-bcc": (229, "cubic", 0.28665), "W": (229, "cubic", 0.31652),
    "SrTiO3": (221, "cubic", 0.3905), "BaTiO3": (99, "tetragonal", 0.39925),
    "TiO2-rutile": (136, "tetragonal", 0.45937), "TiO2-anatase": (141, "tetragonal", 0.37845),
    "Al2O3-corundum": (167, "trigonal", 0.47589), "HfO2-monoclinic": (14, "monoclinic", 0.5117),
    "Sn-alpha": (227, "cubic", 0.64892), "Sn-beta": (141, "tetragonal", 0.58316),
}


def test_shipped_database_complete_and_correct():
    names = {p.stem for p in builtin_phase_files()}
    required = {"Si", "Ge", "C-diamond", "SiC-3C", "GaAs", "AlAs", "GaP", "GaSb", "InAs", "InP", "InSb", "CdTe",
                "ZnS", "GaN", "AlN", "ZnO", "InAs-wurtzite", "Al", "Cu", "Ag", "Au", "Pt", "Pd", "Ni", "Fe-bcc", "W",
                "MgO", "SrTiO3", "BaTiO3", "TiO2-rutile", "TiO2-anatase", "Al2O3-corundum", "HfO2-monoclinic",
                "Sn-alpha", "Sn-beta"}
    assert required <= names
    phases = {p.name: p for p in load_builtin(EXPECTED)}
    for name, (num, system, a) in EXPECTED.items():
        p = phases[name]
        assert p.space_group_number == num, name
        assert p.crystal_system == system, name
        assert p.abc_nm[0] == pytest.approx(a, rel=1e-4), name
    assert phases["GaN"].is_hexagonal and phases["Al2O3-corundum"].is_hexagonal
    assert not phases["Si"].is_hexagonal
    assert phases["GaAs"].elements == ("As", "Ga")
    # reciprocal lattice: |g(111)| of Si = sqrt(3)/a
    g111 = np.linalg.norm(np.array([1, 1, 1]) @ phases["Si"].reciprocal_nm)
    assert g111 == pytest.approx(np.sqrt(3) / 0.5431, rel=1e-9)


def test_broken_cif_refused_with_one_line_and_others_used(tmp_path, caplog):
    good = builtin_phase_files()[0]
    bad = tmp_path / "Broken.cif"
    bad.write_text("data_broken\n_cell_length_a 5.0\nthis is not a CIF loop\n")
    empty = tmp_path / "Empty.cif"
    empty.write_text("")
    with pytest.raises(UserError) as e:
        load_cif(bad)
    assert "Broken.cif" in str(e.value) and "\n" not in str(e.value)
    with caplog.at_level(logging.WARNING, logger="temtwin"):
        phases = load_phases([bad, good, empty], logging.getLogger("temtwin"))
    assert [p.name for p in phases] == [good.stem]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2 and any("Broken.cif" in m for m in lines) and any("Empty.cif" in m for m in lines)
    assert all("\n" not in m for m in lines)


def test_later_cif_replaces_same_stem(tmp_path):
    from pymatgen.core import Lattice, Structure

    st = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.50), ["Si"], [[0, 0, 0]])
    p = tmp_path / "Si.cif"
    st.to(filename=str(p))
    phases = load_phases([*builtin_phase_files(), p])
    si = [x for x in phases if x.name == "Si"]
    assert len(si) == 1 and si[0].abc_nm[0] == pytest.approx(0.55)


def test_element_and_name_filters_and_clear_errors(tmp_path):
    phases = load_builtin()
    sub = select_phases(phases, elements=["Si", "Ge"])
    assert {p.name for p in sub} == {"Si", "Ge"}
    sub = select_phases(phases, elements=["In", "P", "Sb", "As"])
    assert {p.name for p in sub} == {"InP", "InSb", "InAs", "InAs-wurtzite"}
    sub = select_phases(phases, names=["GaN", "ZnO"])
    assert {p.name for p in sub} == {"GaN", "ZnO"}
    yml = tmp_path / "sample.yaml"
    with pytest.raises(UserError) as e:
        select_phases(phases, elements=["Xe"], source="sample.yaml key `elements`", path=yml)
    msg = str(e.value)
    assert "sample.yaml" in msg and "elements" in msg and "Xe" in msg
    with pytest.raises(UserError) as e:
        select_phases(phases, names=["Unobtainium"], source="config key `phase_id.phases`")
    assert "phase_id.phases" in str(e.value) and "Unobtainium" in str(e.value)
    with pytest.raises(UserError) as e:
        select_phases([], path=yml)
    assert "use_builtin_phases" in str(e.value)
