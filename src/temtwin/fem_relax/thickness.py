"""Lamella thickness of fem_relax: the thickness fitted by ``simulate_image`` when that stage ran on the
geometry image and determined it, else the configured ``fem_relax.thickness_nm``.

``simulation.h5`` (simulate_image) holds the table ``/fit`` (parameter, value, sigma; sigma NaN = not
determined) and, for HRTEM, the scanned exit-wave planes ``/fit_scan/thickness_nm``.  A fitted thickness
is used only when it is finite, positive, *inside* the scanned range and has a determined σ: at the
largest scanned plane it is a lower bound (the atomic model is thinner than the lamella), at the smallest an
upper bound, and without a σ it is not a measurement; then the config value is kept with a note (its σ:
``thickness_sigma_nm``, null = 20 % of t).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Thickness:
    """Lamella thickness (nm), its standard uncertainty (nm), where it comes from and why."""

    value_nm: float
    sigma_nm: float
    source: str            # "simulate_image" or "config"
    note: str

    def summary(self) -> dict:
        return {"value_nm": self.value_nm, "sigma_nm": self.sigma_nm, "source": self.source, "note": self.note}


def read_simulated_thickness(path) -> tuple[float | None, float | None, str]:
    """(thickness nm, σ nm or None, note) fitted by simulate_image in ``simulation.h5`` (read through
    :class:`temtwin.results.simulation.Simulation`); None when absent."""
    from ..results.simulation import Simulation

    p = Path(path)
    if not p.is_file():
        return None, None, f"{p.name}: no simulation file"
    sim = Simulation.read(p, only=("fit", "fit_scan"))
    if not sim.applicable:
        return None, None, "simulate_image not applicable: " + sim.reason
    fit = sim.table("fit")
    names = [str(x) for x in fit.get("parameter", [])]
    if "thickness_nm" not in names:
        return None, None, f"simulate_image ({sim.group_attrs().get('mode', '')}) did not fit a thickness"
    i = names.index("thickness_nm")
    t, s = float(fit["value"][i]), float(fit["sigma"][i])
    scanned = np.asarray(sim.get("fit_scan/thickness_nm", np.zeros(0)), float)
    if not np.isfinite(t) or t <= 0:
        return None, None, "simulate_image's thickness is not finite"
    if scanned.size and t >= float(np.max(scanned)) - 1e-6:
        return None, None, (f"simulate_image's thickness {t:.2f} nm is the largest scanned plane (the atomic "
                            "model's thickness): a lower bound, not a measurement")
    if scanned.size and t <= float(np.min(scanned)) + 1e-6:
        return None, None, (f"simulate_image's thickness {t:.2f} nm is the smallest scanned plane: an upper "
                            "bound, not a measurement")
    if not (np.isfinite(s) and s > 0):
        return None, None, f"simulate_image's thickness {t:.2f} nm is not determined by its fit (no σ)"
    return t, s, "fitted by simulate_image"


def lamella_thickness(cfg: dict, simulation_path=None) -> Thickness:
    """The thickness fem_relax uses (``cfg`` = the fem_relax section; ``simulation_path`` = the geometry
    image's simulation.h5 or None)."""
    t_cfg = float(cfg["thickness_nm"])
    s_cfg = cfg.get("thickness_sigma_nm")

    def sigma_for(t):
        return 0.2 * t if s_cfg is None else float(s_cfg)

    if cfg.get("thickness_source", "auto") == "config" or simulation_path is None:
        why = "fem_relax.thickness_source = config" if cfg.get("thickness_source") == "config" else \
            "no simulate_image result for the geometry image"
        return Thickness(t_cfg, sigma_for(t_cfg), "config", why)
    t, s, note = read_simulated_thickness(simulation_path)
    if t is None:
        return Thickness(t_cfg, sigma_for(t_cfg), "config", note)
    return Thickness(t, s, "simulate_image", note)
