"""Automated geometric phase analysis (GPA): strain, rotation and displacement maps.

* :mod:`.core`: the analysis for given g vectors and mask (Fourier windows cropped to the mask
  support, wrap-immune phase gradients, g refinement, exact 2x2 lattice distortion, displacement);
* :mod:`.choices`: automatic choices (reference region, g vectors, mask resolution, mask centres);
* :mod:`.absolute`: local lattice parameters and strain relative to each region's relaxed lattice,
  rotation of the tensor into the crystal or interface frame;
* :mod:`temtwin.stages.gpa`: ``run(ctx)`` of rule ``gpa``.
"""

from .core import GpaResult, gpa, resolution_to_sigma, sigma_to_resolution  # noqa: F401
