"""Chemical element symbols (IUPAC, Z = 1..118), for checking ``elements:`` lists without pymatgen."""

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf "
    "Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()


def unknown_elements(symbols) -> list[str]:
    """The entries of ``symbols`` that are not chemical element symbols (case-sensitive: ``Si``, not ``SI``)."""
    known = set(SYMBOLS)
    return [str(s) for s in symbols or [] if str(s) not in known]
