"""Digital twins: finite-element geometry (GDS + mesh) and 3D atomic models.

FEM geometry (rule ``fem_geometry``, :mod:`temtwin.stages.fem_geometry`): :mod:`.boundaries` (conformal polygons from
a label map's shared boundaries), :mod:`.fem` (GDS, regions.json), :mod:`.mesh` (gmsh 2D mesh).

Atomic model (rule ``atomic_model``, :mod:`temtwin.stages.atomic_model`): :mod:`.fill` (oriented crystal fill,
virtual unit cell), :mod:`.displace` (Lagrangian displacement, close-atom removal),
:mod:`.register` (lattice origin on the image), :mod:`.composition` (element maps, sublattice-aware
species), :mod:`.builder` (region plans and the model), :mod:`.quality` (nearest-neighbour screen),
:mod:`.model_io` / :mod:`.extxyz` / :mod:`.lammps` (files).  :mod:`.inputs` reads the upstream
results; :mod:`temtwin.testing.twin_inputs` writes exact ones for tests and benchmarks.
"""
