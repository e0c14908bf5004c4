"""Digital twins: finite-element geometry (GDS + mesh) and 3D atomic models."""
