"""Crystalline regions of partly crystalline images (particles on amorphous film, crystal/amorphous stacks).

The crystallinity channel (:func:`temtwin.segment.features._crystallinity`) is the log local energy of
the image band-passed on the lattice rings.  Crystal, amorphous material and vacuum sit at distinct
levels of it (Bragg energy ≫ amorphous speckle ≫ shot noise), while the regions of a fully
crystalline image (layers of a heterostructure) differ by much less.

Levels are found by recursive Otsu thresholding of the channel: the upper class is split again as long
as the split separates class medians by at least ``min_log_ratio`` (an energy ratio, default ln 4 —
a fixed physical contrast, not a per-image setting).  The last accepted threshold is the crystal
*core* threshold; crystals are grown by hysteresis down to the *detection* threshold, the median of
the class below plus ``detect_sd`` robust standard deviations of it (the faint rim of a rounded
particle, whose thickness and lattice contrast fall to zero at its edge, still counts).  Holes are
filled and each connected crystalline component becomes one region ("each particle its own region":
thickness or bending contrast inside a particle never splits it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold, threshold_otsu


@dataclass
class CrystalLevels:
    """core/detect: thresholds on the log energy; background: median log energy of the class below
    the crystals; fraction: area fraction above core; levels: class medians found (low to high)."""

    core: float
    detect: float
    background: float
    fraction: float
    levels: list


def _robust_std(v: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(v - np.median(v))))


def crystal_levels(log_energy: np.ndarray, min_log_ratio: float = float(np.log(4.0)), detect_sd: float = 3.0,
                   max_fraction: float = 0.95, border: int = 0) -> CrystalLevels | None:
    """Crystal thresholds of a crystallinity map (see module docstring), or None when the image is not
    partly crystalline (no level split, or the crystal covers more than ``max_fraction``).

    border: analysis pixels ignored at each edge (partial smoothing windows)."""
    L = log_energy[border:-border or None, border:-border or None] if border else log_energy
    v = np.asarray(L, np.float64).ravel()
    v = v[np.isfinite(v)]
    core = None
    below = None
    levels: list[float] = []
    cur = v
    while len(cur) > 64 and np.ptp(cur) > 0:
        t = float(threshold_otsu(cur))
        lo, hi = cur[cur <= t], cur[cur > t]
        if len(lo) == 0 or len(hi) == 0 or np.median(hi) - np.median(lo) < min_log_ratio:
            break
        core, below = t, lo
        levels.append(float(np.median(lo)))
        cur = hi
    if core is None:
        return None
    levels.append(float(np.median(cur)))
    fraction = float(np.mean(v > core))
    if fraction > max_fraction:
        return None
    detect = min(core, float(np.median(below)) + detect_sd * _robust_std(below))
    return CrystalLevels(core=core, detect=detect, background=float(np.median(below)), fraction=fraction, levels=levels)


def crystal_mask(log_energy_full: np.ndarray, lv: CrystalLevels, min_area_px: float, margin_px: int = 0,
                 ) -> np.ndarray:
    """int32 map of crystalline components 1..k (0 elsewhere) at full resolution.

    Components are found by hysteresis between the detection and core thresholds (holes filled,
    those below ``min_area_px`` dropped).  Each one's edge is then placed at its half-amplitude
    crossing: with E_c its median energy above the core threshold and E_b the background energy
    (median of the class below the crystals), the edge is where the lattice amplitude above the
    background falls to half that of the crystal, E = (E_c − E_b)/4 + E_b.  Half the amplitude
    rather than half the energy: a rounded particle's lattice contrast fades with its projected
    thickness towards the rim (amplitude ∝ thickness for a thin crystal), and the energy mid-level
    would cut it short; a level near the background would inflate bright crystals by the blur and
    their delocalised fringes.  The component is regrown within ``margin_px`` of itself down to that
    level (or trimmed up to it).
    """
    L = log_energy_full
    m = apply_hysteresis_threshold(L, lv.detect, lv.core)
    m = ndi.binary_fill_holes(m)
    cc, n = ndi.label(m)
    out = np.zeros(L.shape, np.int32)
    if n == 0:
        return out
    e_b = float(np.exp(lv.background))
    k_out = 0
    for k, sl in enumerate(ndi.find_objects(cc), start=1):   # a loop over crystals, not pixels
        r0 = max(sl[0].start - margin_px, 0)
        c0 = max(sl[1].start - margin_px, 0)
        r1 = min(sl[0].stop + margin_px, L.shape[0])
        c1 = min(sl[1].stop + margin_px, L.shape[1])
        sub = L[r0:r1, c0:c1]
        own = cc[r0:r1, c0:c1] == k
        core = own & (sub > lv.core)
        if not core.any():
            continue
        e_c = float(np.exp(np.median(sub[core])))
        t = float(np.log(0.25 * max(e_c - e_b, 0.0) + e_b))
        free = (cc[r0:r1, c0:c1] == 0) | own
        grown = (sub > t) & free
        lab, _ = ndi.label(grown)
        ids = np.unique(lab[core & grown])
        ids = ids[ids > 0]
        mk = ndi.binary_fill_holes(np.isin(lab, ids))
        if mk.sum() < min_area_px:
            continue
        k_out += 1
        view = out[r0:r1, c0:c1]
        view[mk & (view == 0)] = k_out
    return out

