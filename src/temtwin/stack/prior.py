"""Stage-guided placement: a prior from the stage positions, refined by content within its window.

The stage positions (and scan rotations) of an image and of its parent (``temtwin.io.stage_metadata``:
file metadata or sample.yaml) give where the image's centre sits in the parent and its rotation: the
*prior*, with an uncertainty (``sigma_pos_nm``, default a few % of the parent's field of view, and
``sigma_rot_deg``).  The content refines the placement from the prior (when that finds no
correlation, from the best place of a content search inside the prior's window, ± 3 sigma: the full
search of :func:`temtwin.stack.register.register_pair` on that crop of the parent), by the Gauss-Newton
correlation refinement of :mod:`temtwin.stack.register`, and the two are fused
as independent Gaussian estimates of the four similarity parameters (cFx, cFy, a, b)::

    P = (C_content^-1 + C_prior^-1)^-1,   x = P (C_content^-1 x_content + C_prior^-1 x_prior)

so a direction the content fixes (across an interface) follows the content and a direction it does not
fix (along a straight interface) stays at the stage prior.  The result reports its **basis**:

* ``content``: the content alone fixes the position (each translation direction's variance is < 10 %
  of the prior's; the prior only chose the window);
* ``stage``: the content adds nothing (> 90 % in every direction): the placement *is* the prior;
* ``content+stage``: one direction from each (the typical interface-only atomic-resolution image).

Confidence: for ``content`` / ``content+stage``, correlation x distinctness against the placement
shifted by a quarter of the footprint along the direction the content fixes best (as in
:func:`temtwin.stack.register.confidence`), the larger of its values at the parent's pixel size and on
the coarse level (footprint ``coarse_px`` pixels; ``info["confidence_pixel_nm"]`` says which): when
the shared structure is much larger than a pixel and the images' noise and fine texture are
independent, the parent-resolution correlation is mostly that noise (a 1024 nm member in a 16 384²
overview: 0.45 at 1 nm/px, 0.97 at 21 nm/px) and says nothing about the place; for ``stage``, the
configured ``stage_confidence``.  Rotation: content that does not notice a rotation moving its
corners by a quarter of the footprint (rotational symmetry: the inside of a round wire) leaves the
rotation to the stage prior (``info["rotation_from_content"]`` False) instead of trusting its
Gauss-Newton error.
Precision: ``precision_pct`` is the posterior standard error at the corners along the content-fixed
direction (% of the image's field of view) and decides acceptance (``max_error_pct``);
``stage_limited_error_pct`` is the worst direction (what the stage uncertainty leaves).  A content
estimate more than 3 prior sigmas from the prior in a direction it fixes contradicts the stage and the
placement is refused with that reason.
"""

from __future__ import annotations

import math

import numpy as np

from .lattice import auto_lowpass_nm
from .register import (Placement, _level_sigma, _lk_level, _Prep, _refine, _uncertainty, confidence, pair_geometry,
                       register_pair)
from .sampling import features



def stage_prior(child_stage, parent_stage, parent_fov_nm) -> np.ndarray:
    """Prior params (cFx, cFy, a, b) of the child in the parent from stage positions.

    child_stage / parent_stage: (x_um, y_um, rotation_deg) of each image's centre (rotation: the image's
    +x axis in the stage frame).  parent_fov_nm: (w, h) of the parent between its outer pixel centres
    ((cols - 1) px, (rows - 1) py); the parent's centre is at half of it.  Returns the child's centre in
    the parent's nm frame and (cos t, sin t) of the relative rotation t = rot_child - rot_parent.
    """
    dx, dy = (child_stage[0] - parent_stage[0]) * 1e3, (child_stage[1] - parent_stage[1]) * 1e3
    rp = math.radians(parent_stage[2])
    # stage vector -> parent image axes: R(-rot_parent)
    vx = math.cos(rp) * dx + math.sin(rp) * dy
    vy = -math.sin(rp) * dx + math.cos(rp) * dy
    t = math.radians(child_stage[2] - parent_stage[2])
    return np.array([0.5 * parent_fov_nm[0] + vx, 0.5 * parent_fov_nm[1] + vy, math.cos(t), math.sin(t)])


_UNFIXED_NM2 = 1.0e4      # variance (nm²) of a direction the content does not fix: uninformative next to the prior
_UNFIXED_ROT_RAD2 = 1.0   # variance (rad²) of a rotation the content does not fix


def _ncc_probe(prep: _Prep, x: np.ndarray, probes, lowpass_nm: float, p_l: float) -> list[float]:
    """Correlations (no refinement) of the placements ``probes`` (params (cFx, cFy, a, b), near ``x``)
    on the level of pixel size ``p_l`` nm (both images low-passed to its common resolution); -1 where
    less than half of the image lands in the parent."""
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
    s = float(np.hypot(x[2], x[3]))
    reach = max(float(np.hypot(*(np.asarray(q)[:2] - x[:2]))) for q in probes)
    half = 0.5 * s * math.hypot(*prep.fov_m) * 1.05 + reach + 8 * p_l
    x0, y0 = max(0.0, x[0] - half), max(0.0, x[1] - half)
    x1, y1 = min(prep.fov_f[0], x[0] + half), min(prep.fov_f[1], x[1] + half)
    if x1 - x0 < 4 * p_l or y1 - y0 < 4 * p_l:
        return [-1.0] * len(probes)
    size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
    F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
    margin = int(math.ceil(2.5 * sig / p_l))
    return [_lk_level(T, F, p_l, np.array([x0, y0]), prep.c_M, np.asarray(q, np.float64), 0, margin=margin)[1]
            for q in probes]


def _rotation_fixed(prep: _Prep, x: np.ndarray, lowpass_nm: float, p_l: float, min_distinct: float = 0.25) -> bool:
    """Whether the content fixes the rotation: the placement rotated about its centre by the angle that
    moves its corners by a quarter of the footprint must lose at least ``min_distinct`` of the
    decorrelation ((ncc - ncc_rot) / (1 - ncc_rot), as for a shift in :func:`_translation_cov`),
    judged on the level ``p_l`` (the coarse level: pixel noise averaged out).  Content with rotational
    symmetry (the inside of a round wire, a particle) does not fix it: its Gauss-Newton rotation error is
    then meaningless and the rotation is left to the stage prior."""
    s = float(np.hypot(x[2], x[3]))
    th = math.atan2(x[3], x[2])
    d = 0.5 * min(prep.fov_m) / math.hypot(*prep.fov_m)        # corner moves by a quarter footprint
    probes = [x] + [np.array([x[0], x[1], s * math.cos(th + sg * d), s * math.sin(th + sg * d)]) for sg in (1, -1)]
    v = _ncc_probe(prep, x, probes, lowpass_nm, p_l)
    if v[0] <= 0.05:
        return False
    n_rot = max(v[1:])
    return (v[0] - n_rot) / max(1.0 - n_rot, 1e-9) >= min_distinct


def _translation_cov(prep: _Prep, x: np.ndarray, lowpass_nm: float,
                     min_distinct: float = 0.25) -> np.ndarray | None:
    """Covariance (nm², 2 x 2) of the content's translation estimate at ``x``, from the correlation's
    drop when the placement is shifted by a quarter of the footprint in four directions.

    The drop (ncc - ncc_shifted) fits a quadratic form q² uᵀ K u / 2 (K: curvature of the correlation,
    nm⁻²); for a template matched against a copy with uncorrelated differences (correlation rho) the
    variance of the position is (1 - rho²) / (rho N_eff) K⁻¹, N_eff = area / (4 pi sigma²) independent
    samples.  A quarter-footprint shift measures the curvature at the scale that matters: along a
    straight interface the correlation barely drops, so that direction gets a large variance even when
    noise-level texture gives the Gauss-Newton covariance a small one.  A direction whose quarter shift
    keeps more than 1 - ``min_distinct`` of the decorrelation ((rho - ncc) / (1 - ncc) < min_distinct,
    the distinctness of :func:`temtwin.stack.register.confidence`) is treated as not fixed at all.
    """
    p_l = float(np.sqrt(prep.pf[0] * prep.pf[1]))
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
    s = float(np.hypot(x[2], x[3]))
    q = 0.25 * s * min(prep.fov_m)
    half = 0.5 * s * math.hypot(*prep.fov_m) + q + 8 * p_l
    x0, y0 = max(0.0, x[0] - half), max(0.0, x[1] - half)
    x1, y1 = min(prep.fov_f[0], x[0] + half), min(prep.fov_f[1], x[1] + half)
    if x1 - x0 < 4 * p_l or y1 - y0 < 4 * p_l:
        return None
    size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
    F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
    margin = int(math.ceil(2.5 * sig / p_l))
    org = np.array([x0, y0])

    def ncc_at(d):
        return _lk_level(T, F, p_l, org, prep.c_M, x + np.r_[d, 0.0, 0.0], 0, margin=margin)[1]

    rho = ncc_at(np.zeros(2))
    if rho <= 0.05:
        return None
    rows, A = [], []
    for ang in (0.0, 45.0, 90.0, 135.0):
        u = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
        drop = rho - 0.5 * (ncc_at(q * u) + ncc_at(-q * u))      # symmetric: odd terms cancel
        rows.append(max(drop, 0.0) * 2.0 / q ** 2)
        A.append([u[0] ** 2, 2 * u[0] * u[1], u[1] ** 2])
    k = np.linalg.lstsq(np.array(A), np.array(rows), rcond=None)[0]
    K = np.array([[k[0], k[1]], [k[1], k[2]]])
    w, V = np.linalg.eigh(K)
    w = np.maximum(w, 1e-6 * max(float(w.max()), 1e-12) + 1e-12)
    n_eff = max(float(T.size) * p_l ** 2 / (4 * math.pi * sig ** 2), 1.0)
    var = (1 - rho ** 2) / (rho * n_eff) / w
    for k in range(2):      # a shift the correlation hardly notices is not fixed by the content
        n_k = 0.5 * (ncc_at(q * V[:, k]) + ncc_at(-q * V[:, k]))
        if (rho - n_k) / max(1.0 - n_k, 1e-9) < min_distinct:
            var[k] = _UNFIXED_NM2
    return (V * np.minimum(var, _UNFIXED_NM2)) @ V.T


def _window_search(moving, pm, fixed, pf, prior, sigma_pos_nm, s0, fov_m, c_M, th_max, scale_search_pct,
                   lowpass_nm, coarse_px, min_footprint_px, log_intensity) -> np.ndarray | None:
    """Best content placement (params in the fixed image's nm frame) inside prior ± 3 sigma, or None."""
    p_fine = float(np.sqrt(pf[0] * pf[1]))
    win = 3.0 * sigma_pos_nm + 0.5 * s0 * math.hypot(*fov_m) + 4 * p_fine
    c0 = int(max(0, math.floor((prior[0] - win) / pf[0])))
    r0 = int(max(0, math.floor((prior[1] - win) / pf[1])))
    c1 = int(min(fixed.shape[1], math.ceil((prior[0] + win) / pf[0]) + 1))
    r1 = int(min(fixed.shape[0], math.ceil((prior[1] + win) / pf[1]) + 1))
    if c1 - c0 <= 8 or r1 - r0 <= 8:
        return None
    pl = register_pair(moving, pm, fixed[r0:r1, c0:c1], pf, scale_search_pct=scale_search_pct,
                       rotation_search_deg=max(math.degrees(th_max), 0.5), lowpass_nm=lowpass_nm,
                       coarse_px=coarse_px, min_footprint_px=min_footprint_px, log_intensity=log_intensity)
    if not pl.found:
        return None
    M = pl.matrix.copy()
    M[0, 2] += c0
    M[1, 2] += r0
    cw = (M @ np.array([c_M[0] / pm[0], c_M[1] / pm[1], 1.0]))[:2] * np.array(pf)
    if float(np.hypot(*(cw - prior[:2]))) > 3.0 * sigma_pos_nm * math.sqrt(2):
        return None
    t = math.radians(pl.rotation_deg)
    return np.array([cw[0], cw[1], pl.scale_factor * math.cos(t), pl.scale_factor * math.sin(t)])


def register_with_prior(moving: np.ndarray, px_moving, fixed: np.ndarray, px_fixed, prior: np.ndarray, *,
                        sigma_pos_nm: float, sigma_rot_deg: float = 1.0, scale_pct: float = 1.0,
                        scale_search_pct: float = 5.0,
                        lowpass_nm: float | None = None, min_confidence: float = 0.3, coarse_px: int = 48,
                        min_footprint_px: int = 16, max_error_pct: float = 2.0, stage_confidence: float = 0.5,
                        max_stage_error_pct: float = 25.0,
                        mismatch_factor: float = 4.0, min_content_ncc: float = 0.3,
                        content_alone_failed: bool = False, log_intensity: bool = True, **_ignored) -> Placement:
    """Place ``moving`` in ``fixed`` from a stage prior refined by content (module docstring).

    prior: (cFx, cFy, a, b) from :func:`stage_prior` (nm in the fixed image's frame, pixel (j, i) at
    (j px, i py)).  sigma_pos_nm: 1-sigma of the prior's position (nm); sigma_rot_deg: of its rotation.
    The scale stays within ± scale_pct of the calibrated ratio (sigma scale_pct / 2): content that
    fixes a position across an interface does not fix the scale, so the calibration is trusted here.
    ``mismatch_factor`` multiplies the content covariance (Gauss-Newton errors are a lower bound:
    model mismatch between the images adds to them).  ``content_alone_failed``: the content alone did
    not place the image (register_pair refused it, e.g. it slides along an interface or has several
    near-equal places): then only the direction the content fixes best is taken from it.  A placement
    whose stage-limited error exceeds ``max_stage_error_pct`` (% of the image's field of view) is
    refused.  A content refinement whose correlation stays below ``min_content_ncc`` (the images do not
    share structure at the parent's resolution) is not used: the placement rests on the stage alone.
    Returns a :class:`Placement` whose ``info`` holds ``basis``, ``prior`` (params), ``content_fraction``
    (per translation direction, 1 = fixed by content), ``precision_pct``, ``stage_limited_error_pct``.
    """
    moving, fixed, pm, pf, fov_m, fov_f, c_M, p_fine, foot_px = pair_geometry(moving, fixed, px_moving, px_fixed)
    prior = np.asarray(prior, np.float64)
    if foot_px < 2:
        return Placement.refused(f"footprint of {foot_px:.1f} px in the parent is too small to place", foot_px)
    if not (-0.5 * min(fov_m) <= prior[0] <= fov_f[0] + 0.5 * min(fov_m)
            and -0.5 * min(fov_m) <= prior[1] <= fov_f[1] + 0.5 * min(fov_m)):
        return Placement.refused("the stage position puts the image outside the parent", foot_px)
    if lowpass_nm is None:
        lowpass_nm = auto_lowpass_nm((moving, pm), (fixed, pf))
    log_m = log_intensity and float(moving.min()) >= 0
    log_f = log_intensity and float(fixed.min()) >= 0
    prep = _Prep(moving, fixed, pm, pf, c_M, fov_m, fov_f, 0.0, log_m, log_f)
    s0 = float(np.hypot(prior[2], prior[3]))
    s_lo, s_hi = s0 * (1.0 - scale_pct / 100.0), s0 * (1.0 + scale_pct / 100.0)
    th_max = abs(math.atan2(prior[3], prior[2])) + math.radians(3 * sigma_rot_deg + 0.5)
    bounds = (s_lo, s_hi, th_max)
    sig_s = max(scale_pct / 200.0, 1e-5)
    C_p = np.diag([sigma_pos_nm ** 2, sigma_pos_nm ** 2, sig_s ** 2, math.radians(sigma_rot_deg) ** 2])
    # rotate the (a, b) prior covariance into the prior's frame (a along s, b across)
    t0 = math.atan2(prior[3], prior[2])
    Rt = np.array([[math.cos(t0), -math.sin(t0)], [math.sin(t0), math.cos(t0)]])
    C_p[2:, 2:] = Rt @ C_p[2:, 2:] @ Rt.T

    x_c, C_c, ncc_c = None, None, -1.0
    rot_fixed = True
    start = prior.copy()
    p_c = max(p_fine, min(fov_m) / coarse_px)       # the coarse level (pixel noise averaged out)
    if foot_px >= min_footprint_px and np.std(moving) > 0 and np.std(fixed) > 0:
        cov: dict = {}
        x_try, ncc_c, _ = _refine(prep, start, p_c, lowpass_nm, bounds=bounds, cov_out=cov)
        if ncc_c < min_content_ncc:
            # the refinement from the prior found nothing: search the content inside the prior's window
            # (the full search of register_pair on that crop of the parent) and refine from its best place
            x_w = _window_search(moving, pm, fixed, pf, prior, sigma_pos_nm, s0, fov_m, c_M, th_max,
                                 scale_search_pct, lowpass_nm, coarse_px, min_footprint_px, log_intensity)
            if x_w is not None:
                sc = math.hypot(x_w[2], x_w[3])
                x_w[2:] *= min(max(sc, s_lo), s_hi) / sc
                cov2: dict = {}
                x2, n2, _ = _refine(prep, x_w, p_fine, lowpass_nm, bounds=bounds, cov_out=cov2)
                if n2 > ncc_c:
                    x_try, ncc_c, cov = x2, n2, cov2
        if ncc_c > -1 and cov.get("cov") is not None and np.all(np.isfinite(cov["cov"])):
            C_t = _translation_cov(prep, x_try, lowpass_nm) if ncc_c >= min_content_ncc else None
            if C_t is not None and content_alone_failed:
                # the content alone could not place the image (register_pair refused it), so it cannot
                # fix both directions: only its best-fixed direction is used, the other follows the stage
                wt, Vt = np.linalg.eigh(C_t)
                C_t = (Vt * np.array([wt[0], _UNFIXED_NM2])) @ Vt.T
            if C_t is not None:
                C_c = mismatch_factor * cov["cov"]
                C_c[:2, :] = 0.0
                C_c[:, :2] = 0.0
                C_c[:2, :2] = mismatch_factor * C_t
                rot_fixed = _rotation_fixed(prep, x_try, lowpass_nm, p_c)
                if not rot_fixed:     # rotation-symmetric content: the rotation follows the stage
                    u = np.array([-x_try[3], x_try[2]]) / max(float(np.hypot(x_try[2], x_try[3])), 1e-12)
                    C_c[2:, 2:] += _UNFIXED_ROT_RAD2 * np.outer(u, u)
                x_c = x_try
    if x_c is not None:
        try:
            Ic, Ip = np.linalg.inv(C_c), np.linalg.inv(C_p)
            P = np.linalg.inv(Ic + Ip)
            x = P @ (Ic @ x_c + Ip @ prior)
        except np.linalg.LinAlgError:
            x_c = None
    if x_c is None:
        x, P = prior.copy(), C_p.copy()
    # how much of each translation direction the content fixes
    w, V = np.linalg.eigh(P[:2, :2])
    frac = np.clip(1.0 - w / sigma_pos_nm ** 2, 0.0, 1.0)          # ascending variance: best-fixed first
    if frac.min() > 0.9:
        basis = "content"
    elif frac.max() < 0.1 or x_c is None:
        basis = "stage"
    else:
        basis = "content+stage"
    # consistency: content vs prior along the directions the content fixes
    contradiction = 0.0
    if x_c is not None:
        d = x_c[:2] - prior[:2]
        for k in range(2):
            if frac[k] >= 0.5:
                contradiction = max(contradiction, abs(float(V[:, k] @ d)) / sigma_pos_nm)
    # correlation at the result and a quarter-footprint shift along the best-fixed direction
    p_l = p_fine
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(moving, pm, p_l, sig, 0.0, log_m)
    s = float(np.hypot(x[2], x[3]))
    half = 0.5 * s * math.hypot(*fov_m) + 0.3 * s * max(fov_m) + 8 * p_l
    x0, y0 = max(0.0, x[0] - half), max(0.0, x[1] - half)
    x1, y1 = min(fov_f[0], x[0] + half), min(fov_f[1], x[1] + half)
    ncc_x, sh = -1.0, -1.0
    if x1 - x0 > 4 * p_l and y1 - y0 > 4 * p_l:
        size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
        F = features(fixed, pf, p_l, sig, 0.0, log_f, origin_nm=(x0, y0), size=size)
        margin = int(math.ceil(2.5 * sig / p_l))
        ncc_x = _lk_level(T, F, p_l, np.array([x0, y0]), c_M, x, 0, margin=margin)[1]
        shift = 0.25 * s * min(fov_m) * V[:, 0]
        vals = [_lk_level(T, F, p_l, np.array([x0, y0]), c_M, x + np.r_[sg * shift, 0, 0], 0, margin=margin)[1]
                for sg in (1, -1)]
        sh = max(vals)
    half_diag = 0.5 * math.hypot(*fov_m)
    # corner errors: along the best-fixed direction (content) and the worst (stage-limited)
    rot_var = P[2, 2] + P[3, 3]
    prec = 100 * math.sqrt(max(w[0], 0) + half_diag ** 2 * rot_var) / (s * min(fov_m))
    worst = 100 * math.sqrt(max(w[1], 0) + half_diag ** 2 * rot_var) / (s * min(fov_m))
    if basis == "stage":
        conf = float(stage_confidence)
        prec = worst
    else:
        conf = confidence(ncc_x, [sh]) if ncc_x > -1 else 0.0
    conf_level, ncc_fine = p_fine, ncc_x
    if basis != "stage" and p_c > 1.5 * p_fine:
        # the same test on the coarse level: where the shared structure is large and the pixel noise of
        # the images is uncorrelated, the parent-resolution correlation measures mostly that noise
        shift = np.r_[0.25 * s * min(fov_m) * V[:, 0], 0.0, 0.0]
        v = _ncc_probe(prep, x, [x, x + shift, x - shift], lowpass_nm, p_c)
        conf_c = confidence(v[0], [max(v[1:])]) if v[0] > -1 else 0.0
        if conf_c > conf:
            conf, conf_level, ncc_x, sh = conf_c, p_c, v[0], max(v[1:])
    reason = ""
    if contradiction > 3.0:
        reason = (f"the content places the image {contradiction:.1f} stage sigmas from its stage position "
                  "(a wrong stage position, or the image is not where the stage says): not placed")
    elif basis != "stage" and conf < min_confidence:
        reason = (f"stage-guided: confidence {conf:.2f} below min_confidence {min_confidence:g} "
                  f"(correlation {ncc_x:.3f}; {sh:.3f} when shifted by a quarter field of view, "
                  f"at {conf_level:.3g} nm/px)")
    elif basis == "stage" and conf < min_confidence:
        reason = f"stage position only (content adds nothing); stage_confidence {conf:.2f} < min_confidence"
    elif worst > max_stage_error_pct:
        reason = (f"stage-guided ({basis}): the stage leaves an error of {worst:.0f} % of the field of view "
                  f"(stage_max_error_pct {max_stage_error_pct:g}; stage_uncertainty_pct too large for this image)")
    elif basis != "stage" and prec > max_error_pct:
        reason = (f"stage-guided: the content-fixed direction has an error of {prec:.1f} % of the field of view "
                  f"(max_error_pct {max_error_pct:g})")
    accepted = not reason
    a, b = x[2], x[3]
    S = np.array([[a, -b], [b, a]])
    Mx = np.eye(3)
    Mx[:2, :2] = np.diag([1 / pf[0], 1 / pf[1]]) @ S @ np.diag(pm)
    Mx[:2, 2] = np.diag([1 / pf[0], 1 / pf[1]]) @ (x[:2] - S @ c_M)
    scale = s * float(np.sqrt(pm[0] * pm[1] / (pf[0] * pf[1])))
    info = {"basis": basis, "prior": [float(v) for v in prior], "content_fraction": [float(v) for v in frac],
            "content_fixed_direction": [float(v) for v in V[:, 0]], "precision_pct": float(prec),
            "stage_limited_error_pct": float(worst), "stage_sigma_nm": float(sigma_pos_nm),
            "stage_sigma_rotation_deg": float(sigma_rot_deg), "content_ncc": float(ncc_c),
            "shifted_ncc": float(sh), "contradiction_sigma": float(contradiction),
            "confidence_pixel_nm": float(conf_level), "rotation_from_content": bool(rot_fixed and x_c is not None),
            "lowpass_nm": float(lowpass_nm), **_uncertainty(P, fov_m)}
    return Placement(Mx, scale, s, float(math.degrees(math.atan2(b, a))), float(ncc_fine), float("nan"),
                     float(conf), bool(accepted), reason, foot_px, info)
