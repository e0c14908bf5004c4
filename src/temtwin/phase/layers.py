"""2D crystals: monolayer (or few-layer) phases stored as a layer in a cell with a vacuum gap.

A CIF whose atoms leave a gap of at least ``MIN_VACUUM_NM`` along c, with c normal to a and b, is a
two-dimensional crystal (graphene, hBN, MoS2, WS2 in ``resources/phases``).  Such a specimen lies flat
on its support and is seen along its normal: only the [001] ([0001]) zone is searched, so a scan
stretch of a few % is absorbed by the scan-distortion fit (reported) instead of tilting the zone.
"""

from __future__ import annotations

import numpy as np

MIN_VACUUM_NM = 0.6


def is_two_dimensional(phase, min_vacuum_nm: float = MIN_VACUUM_NM) -> bool:
    """True when ``phase``'s atoms leave a vacuum gap >= ``min_vacuum_nm`` along c (c normal to a, b)."""
    key = ("two_dimensional", float(min_vacuum_nm))
    cache = getattr(phase, "_cache", None)
    if cache is not None and key in cache:
        return cache[key]
    lat = phase.lattice_nm
    c = lat[2]
    normal = np.cross(lat[0], lat[1])
    out = False
    if abs(np.dot(c, normal)) >= 0.999 * np.linalg.norm(c) * np.linalg.norm(normal):
        frac = np.asarray(phase.sites[0], float)
        z = np.sort(frac[:, 2] % 1.0)
        gaps = np.diff(np.r_[z, z[0] + 1.0]) if len(z) else np.array([1.0])
        out = bool(gaps.max() * np.linalg.norm(c) >= min_vacuum_nm)
    if cache is not None:
        cache[key] = out
    return out


def layer_zones(phase) -> list[np.ndarray]:
    """The zone axes searched for a 2D crystal: its normal [001]."""
    return [np.array([0, 0, 1], int)]
