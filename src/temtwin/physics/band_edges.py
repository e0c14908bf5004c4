"""Band edges of a local density of states (the estimator of ``tb_ldos``).

Band edges (documented estimator)
---------------------------------
For the LDOS ρ(E) of a region or slab (states/eV/atom, Jackson-broadened): the gap centre ``E_mid``
is the minimum of ρ inside ``gap_window_eV``; the valence-band edge ``E_v`` is the energy below
``E_mid`` at which ρ integrated downward from ``E_mid`` reaches ``band_edge_states_per_atom``
(default 0.002 states/atom), the conduction-band edge ``E_c`` likewise upward.  Integrating averages
the stochastic noise of the LDOS (a plain threshold on ρ gave a much noisier slab profile).  The
estimate sits within about the broadening (π a / N ≈ 0.15 eV at 512 moments) of the true edge,
with a material-dependent sign; offsets between regions are more reliable than absolute edges
(bench/results/tight_binding.md compares the quantum-well offset with exact bulk values).
"""

from __future__ import annotations

import numpy as np


def band_edges(energies: np.ndarray, rho: np.ndarray, window=(-0.5, 2.0), states: float = 0.002):
    """(E_v, E_c, E_mid) eV of an LDOS per atom (see module doc); NaN where not found.

    ``E_mid`` = minimum of ρ inside ``window``; ``E_v`` (``E_c``) = the energy below (above) ``E_mid``
    where ρ integrated from ``E_mid`` reaches ``states`` states/atom.
    """
    E = np.asarray(energies, float)
    rho = np.asarray(rho, float)
    m = (E >= window[0]) & (E <= window[1])
    if not m.any() or len(E) < 2:
        return np.nan, np.nan, np.nan
    im = int(np.nonzero(m)[0][np.argmin(rho[m])])
    dE = np.diff(E)
    # cumulative trapezoids outward from E_mid
    seg = 0.5 * (np.clip(rho[1:], 0, None) + np.clip(rho[:-1], 0, None)) * dE
    down = np.cumsum(seg[:im][::-1])                 # down[k]: integral from E[im-1-k] to E[im]
    up = np.cumsum(seg[im:])                         # up[k]: integral from E[im] to E[im+1+k]
    kd = np.nonzero(down >= states)[0]
    ku = np.nonzero(up >= states)[0]
    ev = E[im - 1 - kd[0]] if len(kd) else np.nan
    ec = E[im + 1 + ku[0]] if len(ku) else np.nan
    return float(ev), float(ec), float(E[im])
