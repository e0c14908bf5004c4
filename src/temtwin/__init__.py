"""temtwin: (S)TEM micrographs to crystal phases, strain maps and digital twins."""

__version__ = "0.1.0"
