"""Rule ``fem_relax``: anisotropic linear elasticity of the device (plane strain) and of the TEM lamella
(3D slab), comparison with GPA, eigenstrain fit and the device strain it implies."""
