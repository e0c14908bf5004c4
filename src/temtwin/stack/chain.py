"""Registration chain: every image of a sample placed in the overview's frame.

Images are sorted by pixel size (coarsest first, after the overview).  Each image is registered into
the finest already-placed image that can contain it (not finer, and at least 1.25x coarser or with a
1.5x larger field of view: its natural parent, so ratios stay small and footprints large); if that
placement is refused, the next coarser placed image is tried, down to the overview itself.  The
first accepted placement is used and composed with the parent's transform into the overview frame.
Refused images keep their best attempt (for diagnosis) with ``accepted = False`` and the reason;
nothing is placed on a refused parent.

Frames (same as the validation ``stack`` truth): overview pixel (col, row) is the overview-frame point
(col * px, row * py) nm, so the origin is the centre of overview pixel (0, 0).  ``to_overview`` is the
(3, 3) homogeneous affine from image pixel (col, row, 1) to overview pixel (col, row, 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..io.image import Micrograph
from ..io.stage_metadata import stage_of
from .prior import register_with_prior, stage_prior
from .register import Placement, register_pair


@dataclass
class StackPlacement:
    """Where an image sits in the overview frame.

    to_overview: (3, 3) image pixel (col, row, 1) -> overview pixel (col, row, 1) (NaN if never found).
    offset_nm: overview-frame point of the image's pixel (0, 0) [x, y] (nm).
    scale: px_image / px_overview (true ratio as found); rotation_deg: image axes in the overview frame.
    confidence: the lowest link confidence along the chain to the overview; accepted: every link accepted.
    parent: the image it was registered into ("" for the overview); link: that registration's details.
    """

    name: str
    parent: str
    to_overview: np.ndarray
    offset_nm: tuple[float, float]
    scale: float
    rotation_deg: float
    confidence: float
    accepted: bool
    reason: str = ""
    link: Placement | None = None
    attempts: list[dict] = field(default_factory=list)

    @property
    def transform(self) -> np.ndarray:
        """(2, 3) affine image pixel (col, row, 1) -> overview pixel (col, row)."""
        return self.to_overview[:2]


def field_of_view_nm2(m: Micrograph) -> float:
    w, h = m.field_of_view_nm
    return float(w * h)


def choose_overview(images: Sequence[Micrograph], choice: str | None = None) -> str:
    """The overview image's name: ``choice`` when given, else the largest field of view (ties: name)."""
    names = [m.name for m in images]
    if choice:
        if choice not in names:
            raise UserError(f"register_stack.overview = {choice!r} is not an image of this sample "
                            f"(images: {', '.join(sorted(names))}); fix register_stack.overview in the config")
        return choice
    return max(images, key=lambda m: (field_of_view_nm2(m), m.name)).name


def _decompose(to_ov: np.ndarray, px_ov) -> tuple[tuple[float, float], float, float]:
    """(offset_nm, scale, rotation_deg) of an image-px -> overview-px affine."""
    L = to_ov[:2, :2]
    off = (float(to_ov[0, 2] * px_ov[0]), float(to_ov[1, 2] * px_ov[1]))
    # physical linear part (nm per image px in overview nm), scale = sqrt|det| relative to overview px
    scale = float(math.sqrt(abs(np.linalg.det(L))))
    rot = float(math.degrees(math.atan2(L[1, 0] - L[0, 1], L[0, 0] + L[1, 1])))
    return off, scale, rot


def place_stack(images: Sequence[Micrograph], overview: str, settings: Mapping | None = None,
                log: Callable[[str], None] | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, StackPlacement]:
    """Place every image in ``overview``'s frame (see module docstring).

    settings: the ``stack`` config section (min_confidence, max_error_pct, scale_search_pct,
    rotation_search_deg, lowpass_nm, min_footprint_px, coarse_px); missing keys take register_pair's
    defaults.  ``log(message)`` and ``progress(i, n)`` report each registration.
    """
    cfg = dict(settings or {})
    kw = {k: cfg[k] for k in ("min_confidence", "scale_search_pct", "rotation_search_deg", "coarse_px",
                              "min_footprint_px", "max_error_pct") if k in cfg}
    lp = cfg.get("lowpass_nm", "auto")
    kw["lowpass_nm"] = None if lp in (None, "auto") else float(lp)
    by_name = {m.name: m for m in images}
    ov = by_name[overview]
    px_ov = ov.pixel_size_nm
    out: dict[str, StackPlacement] = {
        overview: StackPlacement(overview, "", np.eye(3), (0.0, 0.0), 1.0, 0.0, 1.0, True)}
    rest = sorted((m for m in images if m.name != overview), key=lambda m: (-m.pixel_size, m.name))
    for i_img, m in enumerate(rest):
        if progress:
            progress(i_img, len(rest))
        parents = [by_name[n] for n, p in out.items() if p.accepted and _can_contain(by_name[n], m)]
        parents.sort(key=lambda p: (p.pixel_size, p.name))          # finest parent first
        best: tuple[Placement, str] | None = None
        attempts = []
        for par in parents:
            pl = _register(m, par, kw, cfg)
            attempts.append({"parent": par.name, "confidence": pl.confidence, "accepted": pl.accepted,
                             "reason": pl.reason, "basis": pl.info.get("basis", "content")})
            if log:
                log(f"{m.name} -> {par.name}: confidence {pl.confidence:.2f}, ncc {pl.ncc:.3f}, "
                    f"scale {pl.scale:.5g}, rotation {pl.rotation_deg:.2f} deg"
                    + ("" if pl.accepted else f" (refused: {pl.reason})"))
            if best is None or (pl.found and (not best[0].found or pl.confidence > best[0].confidence)):
                best = (pl, par.name)
            if pl.accepted:
                best = (pl, par.name)
                break
        if best is None:
            why = "no accepted image that is coarser or has a larger field of view to register into"
            out[m.name] = StackPlacement(m.name, "", np.full((3, 3), np.nan), (math.nan, math.nan), math.nan,
                                         math.nan, 0.0, False, why, None, attempts)
            continue
        pl, pname = best
        parent = out[pname]
        to_ov = parent.to_overview @ pl.matrix if pl.found else np.full((3, 3), np.nan)
        if pl.found:
            off, scale, rot = _decompose(to_ov, px_ov)
        else:
            off, scale, rot = (math.nan, math.nan), math.nan, math.nan
        conf = float(min(pl.confidence, parent.confidence))
        reason = "" if pl.accepted else (pl.reason if len(attempts) == 1 else
                                         "; ".join(f"into {a['parent']}: {a['reason']}" for a in attempts))
        out[m.name] = StackPlacement(m.name, pname, to_ov, off, scale, rot, conf, bool(pl.accepted), reason,
                                     pl, attempts)
    if progress:
        progress(len(rest), len(rest))
    return out


def _can_contain(parent: Micrograph, m: Micrograph) -> bool:
    """A possible parent: not finer, and clearly coarser or with a clearly larger field of view."""
    return (parent.pixel_size >= 0.95 * m.pixel_size
            and (parent.pixel_size >= 1.25 * m.pixel_size
                 or field_of_view_nm2(parent) >= 1.5 * field_of_view_nm2(m)))


def _register(m: Micrograph, par: Micrograph, kw: dict, cfg: Mapping) -> Placement:
    """Register ``m`` into ``par``.  When both have a stage position (and ``use_stage`` is on): by content
    alone if that is accepted and lies within 3 sigma of the stage position (basis ``content``), else
    stage-guided (:mod:`temtwin.stack.prior`).  Without: by content alone (a refusal then says how to
    give a stage position)."""
    sm, sp = stage_of(m.meta), stage_of(par.meta)
    if cfg.get("use_stage", True) and sm is not None and sp is not None:
        fov_p = ((par.shape[1] - 1) * par.pixel_size_nm[0], (par.shape[0] - 1) * par.pixel_size_nm[1])
        sigma = float(cfg.get("stage_uncertainty_pct", 3.0)) / 100.0 * max(fov_p)
        prior = stage_prior(sm, sp, fov_p)
        pc = register_pair(m.data, m.pixel_size_nm, par.data, par.pixel_size_nm, **kw)
        if pc.accepted:      # the content alone places it: used when inside the stage window
            c = (pc.matrix @ np.array([(m.shape[1] - 1) / 2, (m.shape[0] - 1) / 2, 1.0]))[:2] * np.asarray(
                par.pixel_size_nm)
            d = float(np.hypot(*(c - prior[:2])))
            if d <= 3.0 * sigma * math.sqrt(2):
                pc.info.update(basis="content", distance_from_stage_nm=d, stage_sigma_nm=sigma)
                return pc
        pkw = {k: kw[k] for k in ("lowpass_nm", "min_confidence", "coarse_px", "min_footprint_px",
                                  "max_error_pct", "scale_search_pct") if k in kw}
        pl = register_with_prior(m.data, m.pixel_size_nm, par.data, par.pixel_size_nm, prior,
                                 sigma_pos_nm=sigma,
                                 sigma_rot_deg=float(cfg.get("stage_rotation_uncertainty_deg", 1.0)),
                                 scale_pct=float(cfg.get("stage_scale_pct", 1.0)),
                                 stage_confidence=float(cfg.get("stage_confidence", 0.5)),
                                 max_stage_error_pct=float(cfg.get("stage_max_error_pct", 25.0)),
                                 content_alone_failed=not pc.accepted, **pkw)
        pl.info["stage_source"] = f"{m.meta.get('stage_source', '')}; parent {par.meta.get('stage_source', '')}"
        return pl
    pl = register_pair(m.data, m.pixel_size_nm, par.data, par.pixel_size_nm, **kw)
    pl.info["basis"] = "content"
    if not pl.accepted:
        missing = [x.name for x, st in ((m, sm), (par, sp)) if st is None]
        if missing:
            pl.reason += (f" (no stage position for {', '.join(missing)}: give images.<name>.stage_position_um "
                          "in sample.yaml, or use files whose metadata records it)")
    return pl
