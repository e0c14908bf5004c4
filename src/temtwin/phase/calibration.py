"""The image's calibration, shared by all its regions.

The scale factor s of a region (measured |g| over the identified phase's |g|) is the image's
calibration error times the region's own lattice deviation from its CIF (strain, alloy composition:
usually within 1-2 %).  One region alone cannot tell a phase seen with a 3 % calibration error from an
isostructural phase whose lattice is 3 % different (InP seen 3 % small is GaAs seen 0.8 % large); the
calibration prior then prefers the phase nearer s = 1.  Several regions of one image share the
calibration, which resolves this: the image's scale s* maximises

    log P(s) = sum_regions log max(max_k fit_k N(s_k; s, sigma), floor_r) + log N(s; 1, sigma_cal)

over the candidates k of every region (fit: the score without the calibration prior, s_k: the
candidate's scale factor; ``floor_r`` = 5 % of the region's best fit, so one region with an unusual
lattice cannot veto the others).  Every region is then identified again with the calibration prior
centred on s* and of width ``sigma`` (:func:`shared_settings`).  With a single region this is the
ordinary choice, so it is only applied to images with two or more crystalline regions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .matching import Crystal, MatchSettings

FLOOR = 0.05


@dataclass
class ImageCalibration:
    """scale: the image's scale factor s* (measured over theoretical reciprocal lengths; 1.03 = the stated
    pixel size is 3 % too small); regions: labels of the regions that took part; scales: the scale factor of each
    region's candidate that agrees best with s*."""

    scale: float
    regions: list
    scales: list

    def as_summary(self) -> dict:
        return {"scale_factor": round(self.scale, 5), "regions": [str(a) for a in self.regions],
                "region_scale_factors": [round(s, 5) for s in self.scales]}


def image_calibration(results: Mapping, mcfg: MatchSettings, sigma: float,
                      step: float = 2e-4) -> ImageCalibration | None:
    """Joint estimate of the image's scale factor from the candidates of every identified region
    (see the module docstring); None when no region is identified.  ``mcfg`` gives the prior
    (centre ``scale_centre``, width ``scale_sigma``) and the search range (``max_scale_error``)."""
    rows = [(label, cs[0]) for label, cs in sorted(results.items()) if cs and cs[0].identified]
    if not rows:
        return None
    grid = np.arange(1 - mcfg.max_scale_error, 1 + mcfg.max_scale_error + step / 2, step)
    logp = -0.5 * ((grid - mcfg.scale_centre) / mcfg.scale_sigma) ** 2
    likes = []
    for _, c in rows:     # the candidate list always holds the crystal itself (rank 1)
        fit = np.array([k["fit"] for k in c.candidates])
        sc = np.array([k["scale_factor"] for k in c.candidates])
        like = fit[:, None] * np.exp(-0.5 * ((sc[:, None] - grid[None, :]) / sigma) ** 2)
        logp = logp + np.log(np.maximum(like.max(axis=0), FLOOR * max(float(fit.max()), 1e-12)))
        likes.append((like, sc))
    i = int(np.argmax(logp))
    chosen = [float(sc[np.argmax(like[:, i])]) for like, sc in likes]
    return ImageCalibration(float(grid[i]), [label for label, _ in rows], chosen)


def shared_settings(mcfg: MatchSettings, cal: ImageCalibration, sigma: float) -> MatchSettings:
    """Match settings whose calibration prior is centred on the image's calibration, width ``sigma``."""
    return dataclasses.replace(mcfg, scale_centre=cal.scale, scale_sigma=float(sigma))


def changed(before: list[Crystal], after: list[Crystal]) -> bool:
    """True when the first crystal's phase or zone changed."""
    if not before or not after:
        return bool(before) != bool(after)
    a, b = before[0], after[0]
    return a.phase != b.phase or not np.array_equal(a.uvw, b.uvw)
