"""Fast, deterministic generators of micrographs with exactly known structure (for tests and bench).

* :mod:`.crystal`: atoms of a crystal in a given zone axis and in-plane rotation, in the image frame;
* :mod:`.render`: atom columns to images (HAADF-like Z-contrast or weak-phase HRTEM with a CTF),
  noise (Poisson dose, read noise) and scan drift;
* :mod:`.scenes`: complete scenes with truth: strained single crystals, layered heterostructures,
  particles on amorphous film, low-magnification devices.
"""

from .crystal import load_structure, oriented_atoms, orientation_matrix, zone_frame  # noqa: F401
from .render import add_noise, apply_scan_drift, render_atoms  # noqa: F401
from .scenes import Scene, crystal_scene, device_overview, layered_scene, lowmag_device, particles_scene  # noqa: F401
