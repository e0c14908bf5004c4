"""sp3d5s* tight binding for Si, Ge and Si–Ge with strain, spin–orbit and H passivation.

Public API
----------
* :func:`load_parameters` — the parameter tables (``resources/physics/tb_sp3d5s_star_SiGe.yaml``).
* :func:`prepare_structure` — bonds, pruning of under-coordinated atoms, dangling bonds, passivation.
* :func:`build_hamiltonian` — sparse CSR Hamiltonian (:class:`TBHamiltonian`; ``to_csr`` gives the
  complex64/complex128 spin-orbital matrix).
* :class:`TBOperator` — fast products with vector blocks (numba, SciPy or torch CPU/CUDA).
* :func:`build_matrix_free`, :class:`MatrixFreeOperator` — the same products with the blocks
  computed on the fly from the bond list (no matrix stored).
* :func:`bands`, :func:`bloch_hamiltonians`, :func:`diamond_primitive` — bulk band structures.
* :func:`sk_blocks`, :func:`onsite_blocks`, :func:`spin_orbit_matrix` — the matrix elements.

Energies in eV, lengths in Å (ASE convention), k in rad/Å.
"""

from .bulk import bands, bloch_hamiltonians, diamond_cubic, diamond_primitive, k_path
from .hamiltonian import TBHamiltonian, build_hamiltonian, spin_orbit_csr
from .matrix_free import MatrixFreeHamiltonian, MatrixFreeOperator, build_matrix_free
from .operator import BACKENDS, TBOperator
from .parameters import INTEGRALS, N_ORB, ORBITALS, TBParameters, load_parameters
from .slater_koster import onsite_blocks, sk_blocks, spin_orbit_matrix
from .structure import PASSIVATIONS, TBStructure, prepare_structure

__all__ = [
    "BACKENDS", "INTEGRALS", "MatrixFreeHamiltonian", "MatrixFreeOperator",
    "N_ORB", "ORBITALS", "PASSIVATIONS", "TBHamiltonian", "TBOperator",
    "TBParameters", "TBStructure", "bands", "bloch_hamiltonians", "build_hamiltonian",
    "build_matrix_free", "diamond_cubic", "diamond_primitive", "k_path", "load_parameters", "onsite_blocks",
    "prepare_structure", "sk_blocks", "spin_orbit_csr", "spin_orbit_matrix",
]
