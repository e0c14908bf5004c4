"""Physics of the atomic model: Keating forces, phonon LDOS, sp3d5s* tight binding and KPM."""
