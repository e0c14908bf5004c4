"""The image's calibration: a measured quantity, shared by all its regions.

The scale factor s of a region (measured |g| over the identified phase's |g|; 1.03 = the stored pixel
size is 3 % too small) is the image's calibration error times the region's own lattice deviation from
its CIF (strain, alloy composition: usually within 1-2 %).  One region alone cannot tell a phase seen
with a calibration error from an isostructural phase whose lattice differs by that much (fcc with
a = 0.370 nm is Cu at s = 1.00 or Au at s = 1.10).  Several regions of one image share the
calibration, which resolves this: the image's scale s* maximises

    log P(s) = sum_regions log max(max_k exp(κ (fit_k - fit_best)) N(s_k; s, sigma), floor) + log prior(s)

over the candidates k of every region whose best fit passes ``min_score`` (fit: the score without
the calibration prior, κ: ``confidence_sharpness``, s_k: the candidate's scale factor; floor = 0.05,
so one region with an unusual lattice cannot veto the others).  The prior is flat over the search
range 1 ± max_scale_error when the calibration is unknown, or N(1, uncertainty) with a known
instrument uncertainty.  Its uncertainty is the half width of P(s) at exp(-1/2) of its maximum; when
another calibration at least ``ambiguity_ratio`` as probable exists (more than 2 sigma away) the
calibration is ``ambiguous`` and reported with both values (the one nearest the stored calibration
first).  Every region is then identified again
with the calibration prior centred on s* and of width ``sigma`` (:func:`shared_settings`).

A reference phase (``calibration.reference_phase``, e.g. the Si substrate of a device) pins the
calibration: the same estimate from that phase's candidates alone (:func:`reference_calibration`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .matching import Crystal, MatchSettings

FLOOR = 0.05
#: the regions' candidates enter the joint calibration as exp(CAL_SHARPNESS κ fit): softer than their
#: confidence, because fits of isostructural phases differ by structure-factor weights that a real
#: image (dynamical scattering, thickness, optics) does not reproduce reliably
CAL_SHARPNESS = 0.5


@dataclass
class ImageCalibration:
    """scale: the image's scale factor s* (measured over theoretical reciprocal lengths; 1.03 = the stated
    pixel size is 3 % too small); uncertainty: its standard uncertainty; regions: labels of the regions that
    took part; scales: the scale factor of each region's candidate that agrees best with s*; phases: that
    candidate's phase; n_spots: the reflections it rests on; status: ``recovered`` (measured from the
    regions), ``reference`` (pinned to a reference phase), ``ambiguous`` (two calibrations fit: see
    ``alternatives``) or ``assumed`` (nothing to measure it on: the stored calibration is kept)."""

    scale: float
    regions: list
    scales: list
    uncertainty: float = float("nan")
    phases: list = field(default_factory=list)
    n_spots: int = 0
    status: str = "recovered"
    alternatives: list = field(default_factory=list)
    reference_phase: str = ""

    def as_summary(self) -> dict:
        d = {"scale_factor": round(self.scale, 5), "uncertainty": round(float(self.uncertainty), 5),
             "status": self.status, "recovered": self.status in ("recovered", "reference"),
             "regions": [str(a) for a in self.regions],
             "region_scale_factors": [round(s, 5) for s in self.scales],
             "region_phases": list(self.phases), "n_reflections": int(self.n_spots)}
        if self.alternatives:
            d["alternatives"] = [{"scale_factor": round(a["scale_factor"], 5),
                                  "relative_probability": round(a["relative_probability"], 4)}
                                 for a in self.alternatives]
        if self.reference_phase:
            d["reference_phase"] = self.reference_phase
        return d


def assumed_calibration(mcfg: MatchSettings) -> ImageCalibration:
    """The stored calibration kept: scale 1 with the instrument uncertainty (or the std of a uniform
    distribution over the search range when it is unknown)."""
    u = mcfg.calibration_sigma if mcfg.calibration_sigma > 0 else mcfg.max_scale_error / np.sqrt(3.0)
    return ImageCalibration(1.0, [], [], float(u), status="assumed")


def _rows(results: Mapping, min_score: float) -> list:
    rows = []
    for label, cs in sorted(results.items()):
        if not cs:
            continue
        cands = list(cs[0].pool or cs[0].candidates)
        if cands and max(k["fit"] for k in cands) >= min_score:
            rows.append((label, cands))
    return rows


def image_calibration(results: Mapping, mcfg: MatchSettings, sigma: float, step: float = 2e-4,
                      reference: Mapping | None = None, ambiguity_ratio: float | None = None,
                      phase: str = "") -> ImageCalibration | None:
    """Joint estimate of the image's scale factor from the candidates of every region whose best fit
    passes ``min_score`` (see the module docstring); None when there is none.  ``reference``: the
    regions matched against a reference phase alone (``phase``): the calibration must also let that
    phase explain at least one region (the term log max_regions like_ref(s) is added).  ``mcfg`` gives
    the prior (flat when ``calibration_sigma`` is 0, else N(``scale_centre``, ``calibration_sigma``))
    and the search range (``max_scale_error``)."""
    rows = _rows(results, mcfg.min_score)
    if not rows:
        return None
    grid = np.arange(1 - mcfg.max_scale_error, 1 + mcfg.max_scale_error + step / 2, step)
    if mcfg.calibration_sigma > 0:
        logp = -0.5 * ((grid - mcfg.scale_centre) / mcfg.calibration_sigma) ** 2
    else:
        logp = np.zeros_like(grid)
    likes = []
    for _, cands in rows:
        fit = np.array([k["fit"] for k in cands])
        sc = np.array([k["scale_factor"] for k in cands])
        # likelihood of the region's candidates on the scale of their confidence, exp(κ fit)
        like = (CAL_SHARPNESS * mcfg.confidence_sharpness * (fit[:, None] - fit.max())
                - 0.5 * ((sc[:, None] - grid[None, :]) / sigma) ** 2)
        logp = logp + np.maximum(like.max(axis=0), np.log(FLOOR))
        likes.append((like, sc, cands))
    if reference is not None:
        rrows = _rows(reference, mcfg.min_score)
        if not rrows:
            return None
        best = np.full(len(grid), -np.inf)
        for _, cands in rrows:
            fit = np.array([k["fit"] for k in cands])
            sc = np.array([k["scale_factor"] for k in cands])
            like = (CAL_SHARPNESS * mcfg.confidence_sharpness * (fit[:, None] - fit.max())
                    - 0.5 * ((sc[:, None] - grid[None, :]) / sigma) ** 2)
            best = np.maximum(best, like.max(axis=0))
        logp = logp + np.maximum(best, np.log(1e-6))
    # ties on a flat top (e.g. one region): the middle of the maximal plateau
    top = np.flatnonzero(logp >= logp.max() - 1e-9)
    i = int(top[len(top) // 2])
    unc = _half_width(logp, i, grid, step)
    # other local maxima of comparable probability, away from this one
    ratio = mcfg.ambiguity_ratio if ambiguity_ratio is None else ambiguity_ratio
    far = np.abs(grid - grid[i]) > max(2 * unc, 2 * sigma)
    peak = np.r_[False, (logp[1:-1] >= logp[:-2]) & (logp[1:-1] >= logp[2:]), False]
    maxima = [i]
    for j in np.flatnonzero(far & peak & (logp >= logp[i] + np.log(ratio))):
        if all(abs(grid[j] - grid[m]) > 2 * sigma for m in maxima):
            maxima.append(int(j))
    if len(maxima) > 1:
        # ambiguous: report first the calibration nearest the prior's centre (the stored one), which is
        # also the one the regions' rankings prefer on a tie; the others as alternatives
        i = min(maxima, key=lambda m: abs(grid[m] - mcfg.scale_centre))
        unc = _half_width(logp, i, grid, step)
    alts = [{"scale_factor": float(grid[m]), "relative_probability": float(np.exp(logp[m] - logp[i]))}
            for m in maxima if m != i]
    chosen = [int(np.argmax(like[:, i])) for like, _, _ in likes]
    scales = [float(sc[j]) for (_, sc, _), j in zip(likes, chosen)]
    phases = [cands[j]["phase"] for (_, _, cands), j in zip(likes, chosen)]
    n_spots = int(sum(cands[j].get("n_spots", 0) for (_, _, cands), j in zip(likes, chosen)))
    status = "ambiguous" if alts else ("reference" if reference is not None else "recovered")
    return ImageCalibration(float(grid[i]), [label for label, _ in rows], scales, float(unc), phases, n_spots,
                            status, alts, phase or "")


def _half_width(logp: np.ndarray, i: int, grid: np.ndarray, step: float) -> float:
    """Half width of the connected interval around grid[i] where log P >= log P[i] - 1/2."""
    lo, hi = i, i
    while lo - 1 >= 0 and logp[lo - 1] >= logp[i] - 0.5:
        lo -= 1
    while hi + 1 < len(grid) and logp[hi + 1] >= logp[i] - 0.5:
        hi += 1
    return float(max(0.5 * (grid[hi] - grid[lo]), step))


def shared_settings(mcfg: MatchSettings, cal: ImageCalibration, sigma: float) -> MatchSettings:
    """Match settings whose calibration prior (ranking and confidence) is centred on the image's
    calibration, width ``sigma`` (the spread of the regions' lattices around it)."""
    w = float(sigma)
    return dataclasses.replace(mcfg, scale_centre=cal.scale, scale_sigma=w, calibration_sigma=w)


def instrument_settings(mcfg: MatchSettings, uncertainty: float | None) -> MatchSettings:
    """Match settings for a known instrument calibration uncertainty (relative, e.g. 0.02)."""
    if not uncertainty:
        return mcfg
    u = float(uncertainty)
    return dataclasses.replace(mcfg, scale_sigma=u, calibration_sigma=u)


def changed(before: list[Crystal], after: list[Crystal]) -> bool:
    """True when the first crystal's phase or zone changed."""
    if not before or not after:
        return bool(before) != bool(after)
    a, b = before[0], after[0]
    return a.phase != b.phase or not np.array_equal(a.uvw, b.uvw)
