"""Pairwise registration of a finer (higher-magnification) image into a coarser one.

The model is a similarity in physical units.  With nm coordinates of each image (pixel (i, j) at
(j * px, i * py), the pixel size being the image's *calibrated* one)::

    f = c_F + [[a, -b], [b, a]] @ (m - c_M)

maps the point m of the moving image (nm, its own frame) to the point f of the fixed image (nm, its own
frame); c_M is the moving image's centre, c_F where it lands.  ``a + ib = s exp(i theta)``: ``s`` is the
scale correction to the calibrated pixel-size ratio (calibrations are rarely better than a few %) and
``theta`` the rotation (degrees from +x towards +y, as everywhere in temtwin).

Algorithm (correlations are Pearson / ``cv2.TM_CCOEFF_NORMED``, so gain and offset do not matter):

1. both images are compared in log intensity (bright-field mass-thickness contrast is linear in log I,
   so contrast/gamma differences become a gain), low-passed to a common resolution and resampled to a
   common square pixel (``resample``); ``lowpass_nm`` (auto: from the lattice fringes found in either
   image's power spectrum) washes out lattice fringes of atomic-resolution images so that only their
   mean intensity is compared;
2. coarse search on a level where the moving image is ``coarse_px`` pixels across, on band-passed
   images: ``cv2.matchTemplate`` of the whole moving image (scaled) over the whole parent (rotated) for
   a grid of scales (± ``scale_search_pct``) and rotations (± ``rotation_search_deg``), steps such that
   the template edge moves by < 1 pixel; the best distinct peaks are candidates;
3. each candidate is refined on the four similarity parameters by Gauss-Newton steps that maximise
   the linearised correlation (enhanced correlation coefficient, plane projected out; damped least
   squares as fallback) through a pyramid down to the parent's own pixel size; the best correlation
   wins (results stuck at the edge of the search range are refused);
4. ``confidence`` (right place?) = correlation x distinctness against the placement shifted by a
   quarter of its footprint and the next-best distinct place (see :func:`confidence`); precision:
   ``precision_pct`` = jackknife estimate from fits of the image's halves (corner error, % of the
   field of view) and ``sigma_*`` = Gauss-Newton standard errors.  A placement is accepted when
   confidence >= ``min_confidence`` and precision_pct <= ``max_error_pct``; otherwise it is refused
   with the reason (``accepted = False``), never silently used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .lattice import auto_lowpass_nm, lattice_spacing_nm  # noqa: F401 (re-exported)
from .sampling import as_xy, features



@dataclass
class Placement:
    """The placement of a moving image in a fixed (parent) image.

    matrix: (3, 3) homogeneous affine from moving pixel (col, row, 1) to fixed pixel (col, row, 1).
    scale: px_moving / px_fixed as found (true pixel-size ratio, mean of x and y).
    scale_factor: found / calibrated pixel-size ratio (1.03 = the moving image's calibration is 3 % small).
    rotation_deg: rotation of the moving image's axes in the fixed frame (from +x towards +y).
    ncc: final correlation coefficient at the fixed image's resolution; psr: peak-to-sidelobe ratio.
    confidence: in [0, 1] (see module docstring); accepted: confidence >= min_confidence.
    """

    matrix: np.ndarray
    scale: float
    scale_factor: float
    rotation_deg: float
    ncc: float
    psr: float
    confidence: float
    accepted: bool
    reason: str = ""
    footprint_px: float = 0.0
    info: dict = field(default_factory=dict)

    @classmethod
    def refused(cls, reason: str, footprint_px: float = 0.0) -> "Placement":
        return cls(np.full((3, 3), np.nan), float("nan"), float("nan"), float("nan"), float("nan"),
                   float("nan"), 0.0, False, reason, footprint_px)

    @property
    def found(self) -> bool:
        """True when a transform was computed (even if refused for low confidence)."""
        return bool(np.isfinite(self.matrix).all())


# ----------------------------------------------------------------------------- coarse search
def _psr(R: np.ndarray, r: int, c: int, excl: int) -> float:
    """Peak-to-sidelobe ratio: (peak - mean) / std of the map outside a (2 excl + 1)² window."""
    mask = np.ones(R.shape, bool)
    mask[max(0, r - excl):r + excl + 1, max(0, c - excl):c + excl + 1] = False
    side = R[mask & np.isfinite(R)]
    if side.size < 16:
        return float("nan")
    sd = float(side.std())
    return float((R[r, c] - side.mean()) / sd) if sd > 0 else float("inf")


# ----------------------------------------------------------------------------- refinement
def _lk_level(T: np.ndarray, F: np.ndarray, p_l: float, origin_F: np.ndarray, c_M: np.ndarray,
              params: np.ndarray, iters: int = 30, bounds=None, cov_out: dict | None = None,
              sigma_l: float = 0.0, margin: int = 0, use: np.ndarray | None = None
              ) -> tuple[np.ndarray, float, float]:
    """Refine params = (cFx, cFy, a, b) on one level by correlation-maximising Gauss-Newton steps.

    T: moving image on its level grid (pixel u at nm p_l * u); F: fixed image on its level grid (pixel v
    at nm origin_F + p_l * v).  Photometric model: W(p) = g T + P(x, y), with a gain g and a plane P
    (smooth thickness/illumination gradients).  Steps: the ECC update (:func:`_ecc_step`), halved up to
    twice, then damped least squares over the similarity params, g and P (Levenberg-Marquardt); a step
    is kept only when it raises the correlation ``ncc`` (the partial correlation of W and T with the
    plane projected out).  ``bounds`` =
    (s_lo, s_hi, theta_max in rad) keeps scale and rotation inside the search range.
    Returns (params, ncc, valid fraction); ncc = -1 when less than half of T lands inside F.
    ``margin``: template pixels this close to T's edge are left out (their blur reached past the image);
    ``use``: optional bool mask of the template pixels to use (e.g. one half of the image).
    ``cov_out``: filled with the covariance of (cFx, cFy, a, b) at the result (Gauss-Newton, residual
    variance from the fit, samples correlated over the common resolution ``sigma_l`` nm).
    """
    rows, cols = T.shape
    uu, vv = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    dx = (uu * p_l - c_M[0]).ravel()
    dy = (vv * p_l - c_M[1]).ravel()
    t = T.ravel().astype(np.float64)
    xn = (uu.ravel() - 0.5 * (cols - 1)) / max(0.5 * (cols - 1), 1.0)
    yn = (vv.ravel() - 0.5 * (rows - 1)) / max(0.5 * (rows - 1), 1.0)
    poly = np.column_stack([np.ones_like(xn), xn, yn])
    H, W = F.shape
    r_nm = max(float(np.sqrt(np.mean(dx * dx + dy * dy))), 1e-9)
    grads: list = []
    m = int(min(margin, (min(rows, cols) - 4) // 4)) if margin > 0 else 0
    interior = np.ones((rows, cols), bool)
    if m > 0:
        interior[:m] = interior[-m:] = False
        interior[:, :m] = interior[:, -m:] = False
    if use is not None:
        interior &= use
    interior = interior.ravel()
    qcache: list = []

    def clamp(p):
        if bounds is not None:
            sc = min(max(math.hypot(p[2], p[3]), bounds[0]), bounds[1])
            an = min(max(math.atan2(p[3], p[2]), -bounds[2]), bounds[2])
            p[2], p[3] = sc * math.cos(an), sc * math.sin(an)
        return p

    def evaluate(p, with_grad):
        fx = p[0] + p[2] * dx - p[3] * dy
        fy = p[1] + p[3] * dx + p[2] * dy
        X = ((fx - origin_F[0]) / p_l).astype(np.float32)
        Y = ((fy - origin_F[1]) / p_l).astype(np.float32)
        ok = (X >= 1) & (X <= W - 2) & (Y >= 1) & (Y <= H - 2)
        frac = float(ok.mean())
        if frac < 0.5:
            return -1.0, frac, None
        ok &= interior
        Xg, Yg = X.reshape(rows, cols), Y.reshape(rows, cols)
        w = cv2.remap(F, Xg, Yg, cv2.INTER_CUBIC).ravel()[ok].astype(np.float64)
        if qcache and np.array_equal(qcache[0], ok):      # same template pixels: same plane basis
            tt, P, Q = qcache[1:]
        else:
            tt, P = t[ok], poly[ok]
            Q, _ = np.linalg.qr(P)
            qcache[:] = [ok, tt, P, Q]
        wr = w - Q @ (Q.T @ w)
        tr_ = tt - Q @ (Q.T @ tt)
        nw, nt = float(np.linalg.norm(wr)), float(np.linalg.norm(tr_))
        if nw <= 0 or nt <= 0:
            return -1.0, frac, None
        ncc = float(wr @ tr_ / (nw * nt))
        if not with_grad:
            return ncc, frac, None
        if not grads:
            grads.append(cv2.Sobel(F, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8.0))
            grads.append(cv2.Sobel(F, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8.0))
        wx = cv2.remap(grads[0], Xg, Yg, cv2.INTER_CUBIC).ravel()[ok].astype(np.float64) / p_l
        wy = cv2.remap(grads[1], Xg, Yg, cv2.INTER_CUBIC).ravel()[ok].astype(np.float64) / p_l
        ddx, ddy = dx[ok], dy[ok]
        G = np.empty((len(w), 4))        # d(warped)/d(similarity params); gain and plane columns: full_jacobian
        G[:, 0], G[:, 1] = wx, wy
        G[:, 2] = (wx * ddx + wy * ddy) * r_nm
        G[:, 3] = (-wx * ddy + wy * ddx) * r_nm
        return ncc, frac, (G, w, Q, tt, P)

    def full_jacobian(lin):
        """(J, w): the similarity columns then the gain and plane columns (photometric model)."""
        G, w, _, tt, P = lin
        return np.column_stack([G, -tt / max(float(tt.std()), 1e-12), -P]), w

    p = clamp(params.astype(np.float64).copy())
    ncc, frac, lin = evaluate(p, iters > 0)
    if ncc <= -1 or iters <= 0:
        return p, ncc, frac
    lam = 1e-3
    for _ in range(iters):
        A = g = None
        improved = False
        ecc = _ecc_step(*lin[:4])
        for _try in range(9):
            if ecc is not None and _try < 3:     # correlation-maximising step, then halved
                sol = ecc * 0.5 ** _try
            else:                                # fallback: damped least squares with gain and plane
                if A is None:
                    J, w = full_jacobian(lin)
                    A, g = J.T @ J, J.T @ (-w)
                sol = np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-12), g)
                lam *= 8.0
            step = sol[:4].copy()
            step[2:] *= r_nm
            lim = 0.5 * p_l   # keep steps inside the capture range of the linearisation
            tr = math.hypot(step[0], step[1])
            rot = math.hypot(step[2], step[3]) * r_nm
            f = min(1.0, lim / max(tr, 1e-12), lim / max(rot, 1e-12))
            q = clamp(p + f * step)
            v, fr, lin_q = evaluate(q, True)
            if v > ncc:
                improved = True
                break
        if not improved:
            break
        moved = math.hypot(q[0] - p[0], q[1] - p[1]) + math.hypot(q[2] - p[2], q[3] - p[3]) * r_nm
        p, ncc, frac, lin = q, v, fr, lin_q
        lam = max(lam / 4.0, 1e-6)
        if moved < 1e-3 * p_l:
            break
    if cov_out is not None and lin is not None:
        J, w = full_jacobian(lin)
        A = J.T @ J
        try:
            sol = np.linalg.lstsq(J[:, 4:], -w, rcond=None)[0]     # photometric fit at the result
            res = w + J[:, 4:] @ sol
            dof = max(len(w) - J.shape[1], 1)
            var = float(res @ res) / dof
            corr = max(1.0, 4 * np.pi * (sigma_l / p_l) ** 2)       # samples per independent sample
            C = np.linalg.inv(A) * var * corr
            scl = np.array([1.0, 1.0, r_nm, r_nm])
            cov_out["cov"] = C[:4, :4] * np.outer(scl, scl)
        except np.linalg.LinAlgError:
            pass
    return p, ncc, frac


def _ecc_step(J: np.ndarray, w: np.ndarray, Q: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """Gauss-Newton step of the four similarity parameters that maximises the linearised correlation
    of the warped fixed image with the template (the enhanced-correlation-coefficient update of
    Evangelidis & Psarakis 2008), with the plane (columns of Q) projected out of both.

    J: Jacobian whose first four columns are d(warped)/d(params) (further columns are ignored); w: warped
    fixed image values;
    t: template values.  Returns the step in J's column units, or None when the correlation is not
    positive (no ascent direction of this form)."""
    G = J[:, :4]
    Gp = G - Q @ (Q.T @ G)
    wp = w - Q @ (Q.T @ w)
    tp = t - Q @ (Q.T @ t)
    H = Gp.T @ Gp
    H = H + 1e-12 * np.trace(H) * np.eye(4)
    Gw, Gt = Gp.T @ wp, Gp.T @ tp
    try:
        Hw, Ht = np.linalg.solve(H, Gw), np.linalg.solve(H, Gt)
    except np.linalg.LinAlgError:
        return None
    den = float(tp @ wp - Gt @ Hw)
    if den <= 0:
        return None
    lam = float(wp @ wp - Gw @ Hw) / den
    return np.concatenate([lam * Ht - Hw, np.zeros(J.shape[1] - 4)])


@dataclass
class _Prep:
    """Inputs in nm: images, calibrated pixel sizes, centre of the moving image."""

    moving: np.ndarray
    fixed: np.ndarray
    pm: tuple[float, float]
    pf: tuple[float, float]
    c_M: np.ndarray
    fov_m: tuple[float, float]     # moving field of view (w, h) nm
    fov_f: tuple[float, float]
    bg_nm: float = 0.0
    log_m: bool = False
    log_f: bool = False


def _level_sigma(p_l: float, lowpass_nm: float) -> float:
    """Common resolution (Gaussian sigma, nm) of both images on a level of pixel size p_l."""
    return max(0.6 * p_l, lowpass_nm)


def _refine(prep: _Prep, params: np.ndarray, p_start: float, lowpass_nm: float,
            iters: int = 30, bounds=None, cov_out: dict | None = None) -> tuple[np.ndarray, float, float]:
    """Refine params from level p_start down to the fixed image's pixel size (factor 2 per level)."""
    p_fine = float(np.sqrt(prep.pf[0] * prep.pf[1]))
    levels = [p_start]
    while levels[-1] / 2 > p_fine * 1.05:
        levels.append(levels[-1] / 2)
    if levels[-1] > p_fine * 1.001:
        levels.append(p_fine)
    ncc, frac = -1.0, 0.0
    for p_l in levels:
        sig = _level_sigma(p_l, lowpass_nm)
        T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
        # crop the fixed image around the current footprint (+ margin)
        s = float(np.hypot(params[2], params[3]))
        half = 0.5 * s * math.hypot(*prep.fov_m) + 8 * p_l + 0.1 * max(prep.fov_m) * s
        x0 = max(0.0, params[0] - half)
        y0 = max(0.0, params[1] - half)
        x1 = min(prep.fov_f[0], params[0] + half)
        y1 = min(prep.fov_f[1], params[1] + half)
        if x1 - x0 < 4 * p_l or y1 - y0 < 4 * p_l:
            return params, -1.0, 0.0
        size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
        F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
        last = p_l == levels[-1]
        params, ncc, frac = _lk_level(T, F, p_l, np.array([x0, y0]), prep.c_M, params, iters, bounds,
                                      cov_out if last else None, sig, int(math.ceil(2.5 * sig / p_l)))
        if ncc <= -1:
            break
    return params, ncc, frac


def _polish(prep: _Prep, params: np.ndarray, ncc: float, lowpass_nm: float, bounds,
            corner_px: float = 2.0) -> tuple[np.ndarray, float, dict]:
    """Escape shallow local maxima: restart the final-level refinement from the result with scale and
    rotation changed so that the corners move by ``corner_px`` parent pixels (4 starts); keep the best.
    Returns (params, ncc, covariance dict of the kept result)."""
    p_l = float(np.sqrt(prep.pf[0] * prep.pf[1]))
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
    s = float(np.hypot(params[2], params[3]))
    th = math.atan2(params[3], params[2])
    half = 0.5 * s * math.hypot(*prep.fov_m) * 1.1 + 8 * p_l
    x0, y0 = max(0.0, params[0] - half), max(0.0, params[1] - half)
    x1, y1 = min(prep.fov_f[0], params[0] + half), min(prep.fov_f[1], params[1] + half)
    size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
    F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
    margin = int(math.ceil(2.5 * sig / p_l))
    rel = corner_px * p_l / max(0.5 * s * math.hypot(*prep.fov_m), 1e-12)
    best_p, best_v, best_cov = params, ncc, None
    for s2, t2 in ((s * (1 + rel), th), (s * (1 - rel), th), (s, th + rel), (s, th - rel)):
        q = params.copy()
        q[2], q[3] = s2 * math.cos(t2), s2 * math.sin(t2)
        cov: dict = {}
        q, v, frac = _lk_level(T, F, p_l, np.array([x0, y0]), prep.c_M, q, 30, bounds, cov, sig, margin)
        if v > best_v + 1e-6:
            best_p, best_v, best_cov = q, v, cov
    return best_p, best_v, best_cov or {}


def _competitors(prep: _Prep, params: np.ndarray, lowpass_nm: float, shift_frac: float = 0.25,
                 corner_px: float = 1.0) -> dict:
    """Correlations of perturbed versions of the refined placement (at the fixed image's resolution).

    ``shifted``: best over 8 shifts by ``shift_frac`` of the footprint (close to the placement's own
    correlation when the match can slide, e.g. along a straight interface: position not determined);
    ``scaled`` / ``rotated``: best over scale / rotation changes that move the footprint's corners by
    ``corner_px`` parent pixels (close when the content does not fix scale / rotation to that level);
    ``self``: the unperturbed placement on the same sampling grid (what the others compare with).
    """
    p_l = float(np.sqrt(prep.pf[0] * prep.pf[1]))
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
    s = float(np.hypot(params[2], params[3]))
    th = math.atan2(params[3], params[2])
    d = shift_frac * s * min(prep.fov_m)
    half = 0.5 * s * math.hypot(*prep.fov_m) + d + 4 * p_l
    x0, y0 = max(0.0, params[0] - half), max(0.0, params[1] - half)
    x1, y1 = min(prep.fov_f[0], params[0] + half), min(prep.fov_f[1], params[1] + half)
    size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
    F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
    margin = int(math.ceil(2.5 * sig / p_l))

    def ncc_at(q):
        _, v, frac = _lk_level(T, F, p_l, np.array([x0, y0]), prep.c_M, q, iters=0, margin=margin)
        return v if frac >= 0.75 else -1.0

    out = {"self": ncc_at(params), "shifted": -1.0, "scaled": -1.0, "rotated": -1.0}
    for ang in np.arange(8) * (np.pi / 4):
        q = params.copy()
        q[0] += d * math.cos(ang)
        q[1] += d * math.sin(ang)
        out["shifted"] = max(out["shifted"], ncc_at(q))
    rel = corner_px * p_l / max(0.5 * s * math.hypot(*prep.fov_m), 1e-12)   # relative scale, rad
    for sgn in (-1.0, 1.0):
        for key, s2, t2 in (("scaled", s * (1 + sgn * rel), th), ("rotated", s, th + sgn * rel)):
            q = params.copy()
            q[2], q[3] = s2 * math.cos(t2), s2 * math.sin(t2)
            out[key] = max(out[key], ncc_at(q))
    out["perturbation_pct"] = 100 * rel
    return out


def _split_disagreement(prep: _Prep, params: np.ndarray, lowpass_nm: float, bounds) -> float:
    """Largest corner displacement (nm) between the placement and placements refined from each half
    of the image alone (left, right, top, bottom), at the fixed image's resolution.

    A jackknife estimate of the placement's real uncertainty: it includes what the residual statistics
    cannot see (content that fixes the geometry only at one edge, model mismatch between the images).
    """
    p_l = float(np.sqrt(prep.pf[0] * prep.pf[1]))
    sig = _level_sigma(p_l, lowpass_nm)
    T = features(prep.moving, prep.pm, p_l, sig, 0.0, prep.log_m)
    s = float(np.hypot(params[2], params[3]))
    half = 0.5 * s * math.hypot(*prep.fov_m) + 8 * p_l
    x0, y0 = max(0.0, params[0] - half), max(0.0, params[1] - half)
    x1, y1 = min(prep.fov_f[0], params[0] + half), min(prep.fov_f[1], params[1] + half)
    size = (int((y1 - y0) / p_l) + 1, int((x1 - x0) / p_l) + 1)
    F = features(prep.fixed, prep.pf, p_l, sig, 0.0, prep.log_f, origin_nm=(x0, y0), size=size)
    rows, cols = T.shape
    cm = np.array([[0.0, 0.0], [prep.fov_m[0], 0.0], [0.0, prep.fov_m[1]], [prep.fov_m[0], prep.fov_m[1]]]) - prep.c_M

    def corners(p):
        S = np.array([[p[2], -p[3]], [p[3], p[2]]])
        return p[:2] + cm @ S.T

    base = corners(params)
    cc, rr = np.meshgrid(np.arange(cols), np.arange(rows))
    worst = 0.0
    for use in (cc < cols / 2, cc >= cols / 2, rr < rows / 2, rr >= rows / 2):
        q, v, frac = _lk_level(T, F, p_l, np.array([x0, y0]), prep.c_M, params, 30, bounds,
                               margin=int(math.ceil(2.5 * sig / p_l)), use=use)
        if v <= -1:
            return float("inf")
        worst = max(worst, float(np.hypot(*(corners(q) - base).T).max()))
    return worst


# ----------------------------------------------------------------------------- public API
def _local_maxima(R: np.ndarray, n: int) -> list[tuple[float, int, int]]:
    """The ``n`` highest strict local maxima (3x3) of R: (value, row, col)."""
    Rd = cv2.dilate(R, np.ones((3, 3), np.uint8))
    rr, cc = np.nonzero((R >= Rd) & np.isfinite(R))
    if rr.size == 0:
        return []
    v = R[rr, cc]
    top = np.argsort(-v)[:n]
    return [(float(v[i]), int(rr[i]), int(cc[i])) for i in top]


def pair_geometry(moving, fixed, px_moving, px_fixed):
    """Common geometry of a moving/fixed image pair.

    Returns (moving, fixed) as float32, their pixel sizes (x, y) nm, fields of view (x, y) nm (pixel
    centre to centre), the moving image's centre (nm, its own frame), the fixed image's mean pixel size
    and the moving image's footprint in fixed pixels (its smaller side).
    """
    pm, pf = as_xy(px_moving), as_xy(px_fixed)
    moving = np.asarray(moving, np.float32)
    fixed = np.asarray(fixed, np.float32)
    fov_m = ((moving.shape[1] - 1) * pm[0], (moving.shape[0] - 1) * pm[1])
    fov_f = ((fixed.shape[1] - 1) * pf[0], (fixed.shape[0] - 1) * pf[1])
    p_fine = float(np.sqrt(pf[0] * pf[1]))
    return moving, fixed, pm, pf, fov_m, fov_f, 0.5 * np.array(fov_m), p_fine, min(fov_m) / p_fine


def register_pair(moving: np.ndarray, px_moving, fixed: np.ndarray, px_fixed, *,
                  scale_search_pct: float = 5.0, rotation_search_deg: float = 4.0,
                  lowpass_nm: float | None = None, min_confidence: float = 0.3, coarse_px: int = 48,
                  min_footprint_px: int = 16, n_candidates: int = 3, background_frac: float = 0.125,
                  log_intensity: bool = True, max_error_pct: float = 2.0) -> Placement:
    """Place ``moving`` (finer pixels) in ``fixed`` (coarser) by normalised cross-correlation.

    px_moving / px_fixed: calibrated pixel sizes (x, y) in nm (scalars allowed).  The search covers the
    whole fixed image, scales within ± scale_search_pct of the calibrated ratio and rotations within
    ± rotation_search_deg.  ``lowpass_nm``: Gaussian sigma (nm) applied to both images at least; None =
    automatic (removes lattice fringes when either image shows them, see ``auto_lowpass_nm``).
    ``max_error_pct``: refuse when fits of image halves disagree (jackknife error estimate, corners,
    % of the image's field of view) by more.  ``background_frac``: the coarse search compares
    band-passed images (background sigma = background_frac x the moving field of view).  A moving
    image whose footprint is smaller than ``min_footprint_px`` fixed pixels, or that does not fit
    inside the fixed image, is refused without searching.  See the module docstring for the method.
    """
    moving, fixed, pm, pf, fov_m, fov_f, c_M, p_fine, foot_px = pair_geometry(moving, fixed, px_moving, px_fixed)
    s_lo, s_hi = 1.0 - scale_search_pct / 100.0, 1.0 + scale_search_pct / 100.0
    if foot_px < min_footprint_px:
        return Placement.refused(f"footprint of {foot_px:.1f} px in the parent is below min_footprint_px "
                                 f"({min_footprint_px})", foot_px)
    if fov_m[0] * s_lo > fov_f[0] or fov_m[1] * s_lo > fov_f[1]:
        return Placement.refused("image is larger than the parent's field of view", foot_px)
    if not (np.std(moving) > 0 and np.std(fixed) > 0):
        return Placement.refused("image has no contrast", foot_px)
    if lowpass_nm is None:
        lowpass_nm = auto_lowpass_nm((moving, pm), (fixed, pf))
    bg_nm = background_frac * min(fov_m)
    log_m = log_intensity and float(moving.min()) >= 0
    log_f = log_intensity and float(fixed.min()) >= 0
    prep = _Prep(moving, fixed, pm, pf, c_M, fov_m, fov_f, bg_nm, log_m, log_f)

    # ---- coarse level: band-passed images, full search over translation x scale x rotation.
    # The parent is rotated (not the template), so the whole moving image is the template.
    p_c = max(p_fine, min(fov_m) / coarse_px)
    sig_c = _level_sigma(p_c, lowpass_nm)
    Tc = features(moving, pm, p_c, sig_c, bg_nm, log_m)
    Fc = features(fixed, pf, p_c, sig_c, bg_nm, log_f)
    cT = c_M / p_c
    r_px = 0.5 * min(Tc.shape)
    th_max = float(rotation_search_deg)
    n_th = 1 if th_max <= 0 else int(math.ceil(2 * math.radians(th_max) * r_px)) + 1
    thetas = np.linspace(-th_max, th_max, n_th) if n_th > 1 else np.array([0.0])
    n_s = 1 if scale_search_pct <= 0 else int(math.ceil((s_hi - s_lo) * r_px)) + 1
    scales = np.linspace(s_lo, s_hi, n_s) if n_s > 1 else np.array([1.0])
    H_c, W_c = Fc.shape
    if Tc.shape[0] * s_lo >= H_c or Tc.shape[1] * s_lo >= W_c:
        return Placement.refused("image is larger than the parent's field of view", foot_px)
    cF_c = np.array([(W_c - 1) / 2.0, (H_c - 1) / 2.0])
    templates = []
    for s in scales:   # template pixel u' = s u (pixel 0 kept), centre s cT
        w_s, h_s = int(math.floor((Tc.shape[1] - 1) * s)) + 1, int(math.floor((Tc.shape[0] - 1) * s)) + 1
        A = np.array([[1 / s, 0, 0], [0, 1 / s, 0]], np.float64)
        tmpl = cv2.warpAffine(Tc, A, (w_s, h_s), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        if tmpl.std() <= 1e-6 * max(1e-6, float(np.abs(tmpl).mean())):
            return Placement.refused("image has no contrast at the parent's resolution", foot_px)
        templates.append((float(s), tmpl))
    excl = max(3, int(0.25 * min(Tc.shape)))
    cands = []
    maps = {}
    for i_t, t_deg in enumerate(thetas):
        t = math.radians(t_deg)
        ct, st_ = math.cos(t), math.sin(t)
        Wr = int(math.ceil(W_c * abs(ct) + H_c * abs(st_)))
        Hr = int(math.ceil(W_c * abs(st_) + H_c * abs(ct)))
        cR = np.array([(Wr - 1) / 2.0, (Hr - 1) / 2.0])
        # rotated-parent pixel q -> parent pixel v = cF + R(t) (q - cR)
        Rm = np.array([[ct, -st_], [st_, ct]])
        A = np.hstack([Rm, (cF_c - Rm @ cR)[:, None]])
        Fr = cv2.warpAffine(Fc, A, (Wr, Hr), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        valid = cv2.warpAffine(np.ones_like(Fc), A, (Wr, Hr), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        for i_s, (s, tmpl) in enumerate(templates):
            h_s, w_s = tmpl.shape
            if h_s >= Hr or w_s >= Wr:
                continue
            R = cv2.matchTemplate(Fr, tmpl, cv2.TM_CCOEFF_NORMED)
            inside = cv2.boxFilter(valid, -1, (w_s, h_s), anchor=(0, 0), normalize=True,
                                   borderType=cv2.BORDER_CONSTANT)[:R.shape[0], :R.shape[1]]
            R[~np.isfinite(R) | (inside < 0.999)] = -1.0
            maps[(i_s, i_t)] = R
            for v, r, c in _local_maxima(R, 4 * n_candidates):
                if v <= -1:
                    continue
                q = np.array([c, r], float) + s * cT          # template centre in the rotated parent
                vF = cF_c + Rm @ (q - cR)                    # ... in the parent (coarse pixels)
                cands.append((v, float(vF[1]), float(vF[0]), s, float(t_deg), (i_s, i_t), (r, c)))
    cands.sort(key=lambda z: -z[0])
    chosen: list[tuple] = []
    for cand in cands:   # distinct positions over all (scale, rotation)
        if all(math.hypot(cand[1] - o[1], cand[2] - o[2]) > excl for o in chosen):
            chosen.append(cand)
    if not chosen:
        return Placement.refused("no correlation peak", foot_px)
    v_best, _, _, _, _, key, (rb, cb) = chosen[0]
    psr = _psr(maps[key], rb, cb, excl)
    v_second = chosen[1][0] if len(chosen) > 1 else -1.0
    # ---- refine the best candidates, keep the best correlation (distinct final positions)
    bounds = (s_lo - 0.01, s_hi + 0.01, math.radians(th_max + 0.5))
    results = []
    for v, r, c, s, t_deg, _, _ in chosen[:n_candidates]:
        t = math.radians(t_deg)
        cF = p_c * np.array([c, r], float)
        params = np.array([cF[0], cF[1], s * math.cos(t), s * math.sin(t)])
        cov: dict = {}
        params, ncc, frac = _refine(prep, params, p_c, lowpass_nm, bounds=bounds, cov_out=cov)
        sfac = math.hypot(params[2], params[3])
        at_bound = (sfac <= bounds[0] * 1.0001 or sfac >= bounds[1] * 0.9999
                    or abs(math.atan2(params[3], params[2])) >= bounds[2] * 0.9999)
        if ncc > -1:
            results.append((ncc, params, v, frac, at_bound, cov.get("cov")))
    if not results:
        return Placement.refused("refinement left the parent image", foot_px)
    # prefer results inside the search range, then the highest correlation
    results.sort(key=lambda z: (z[4], -z[0]))
    ncc, params, v0, frac, at_bound, C = results[0]
    if not at_bound:
        p2, v2, cov2 = _polish(prep, params, ncc, lowpass_nm, bounds)
        if v2 > ncc:
            params, ncc, C = p2, v2, cov2.get("cov", C)
            sf = math.hypot(params[2], params[3])
            at_bound = (sf <= bounds[0] * 1.0001 or sf >= bounds[1] * 0.9999
                        or abs(math.atan2(params[3], params[2])) >= bounds[2] * 0.9999)
    unc = _uncertainty(C, fov_m)
    second = [z[0] for z in results[1:]
              if math.hypot(*(z[1][:2] - params[:2])) > excl * p_c]
    ncc2 = second[0] if second else -1.0
    comp = _competitors(prep, params, lowpass_nm)
    shifted = comp["shifted"]
    a, b = params[2], params[3]
    sfac = float(math.hypot(a, b))
    rot = float(math.degrees(math.atan2(b, a)))
    # matrix: moving px -> fixed px:  x_f = diag(1/pf) (cF + S (diag(pm) x_m - c_M))
    S = np.array([[a, -b], [b, a]])
    L = np.diag([1 / pf[0], 1 / pf[1]]) @ S @ np.diag(pm)
    tvec = np.diag([1 / pf[0], 1 / pf[1]]) @ (params[:2] - S @ c_M)
    Mx = np.eye(3)
    Mx[:2, :2] = L
    Mx[:2, 2] = tvec
    scale = sfac * float(np.sqrt(pm[0] * pm[1] / (pf[0] * pf[1])))
    ncc_ref = comp["self"] if comp["self"] > -1 else ncc
    split = _split_disagreement(prep, params, lowpass_nm, bounds)
    precision_pct = 100 * split / math.sqrt(2) / (sfac * min(fov_m))
    conf = 0.0 if at_bound else confidence(ncc_ref, [shifted, ncc2])
    precise = precision_pct <= max_error_pct
    accepted = conf >= min_confidence and precise
    if accepted:
        reason = ""
    elif at_bound:
        reason = ("no consistent match: the best fit needs a scale or rotation at the edge of the search "
                  "range (an image from elsewhere, or calibrations off by more than scale_search_pct / "
                  "rotation_search_deg)")
    elif conf >= min_confidence:
        reason = (f"placement not precise: fits of halves of the image disagree by {precision_pct:.1f} % of its "
                  f"field of view (max_error_pct {max_error_pct:g}); too little structure shared with the parent")
    else:
        reason = (f"confidence {conf:.2f} below min_confidence {min_confidence:g} (correlation {ncc_ref:.3f}; "
                  f"{shifted:.3f} when shifted by a quarter field of view, {ncc2:.3f} at the next-best place)")
    return Placement(Mx, scale, sfac, rot, float(ncc), float(psr), conf, bool(accepted), reason, foot_px,
                     {"coarse_ncc": float(v_best), "coarse_second_ncc": float(v_second),
                      "refined_second_ncc": float(ncc2), "shifted_ncc": float(shifted),
                      "scaled_ncc": float(comp["scaled"]), "rotated_ncc": float(comp["rotated"]),
                      "perturbation_pct": float(comp["perturbation_pct"]), "precision_pct": float(precision_pct),
                      "coarse_pixel_nm": p_c, "lowpass_nm": float(lowpass_nm), "n_scales": int(n_s),
                      "n_rotations": int(n_th), "valid_fraction": frac, **unc})


def _uncertainty(C: np.ndarray | None, fov_m) -> dict:
    """Standard errors from the refinement's covariance: centre position (nm), worst corner (nm),
    scale (%) and rotation (deg) (NaN when unknown)."""
    if C is None or not np.all(np.isfinite(C)):
        nan = float("nan")
        return {"sigma_centre_nm": nan, "sigma_corner_nm": nan, "sigma_scale_pct": nan, "sigma_rotation_deg": nan}
    sc = float(np.sqrt(max(C[0, 0] + C[1, 1], 0.0)))
    sa, sb = float(np.sqrt(max(C[2, 2], 0.0))), float(np.sqrt(max(C[3, 3], 0.0)))
    half_diag = 0.5 * math.hypot(*fov_m)
    corner = float(math.sqrt(sc * sc + (half_diag * sa) ** 2 + (half_diag * sb) ** 2))
    return {"sigma_centre_nm": sc, "sigma_corner_nm": corner,
            "sigma_scale_pct": 100 * sa, "sigma_rotation_deg": float(math.degrees(sb))}


def confidence(ncc: float, competitors) -> float:
    """Confidence in [0, 1] that a placement is at the right place.

    competitors: correlations of alternatives (-1 = none): the placement shifted by a quarter of its
    footprint (close to ``ncc`` when the match can slide, e.g. along a straight interface) and the
    next-best distinct place found by the search.  Each competitor c gives a distinctness
    (ncc - c) / (1 - c): the share of the decorrelation that the alternative causes which the placement
    recovers (1 = perfectly distinct, 0 = as good).  confidence = ncc x the smallest distinctness.
    The precision of an accepted placement is reported separately (``sigma_*``: Gauss-Newton standard
    errors, from the fit residuals; a lower bound, as model mismatch between the images adds to them).
    """
    def distinct(c: float) -> float:
        if c <= -1:
            return 1.0
        if c >= ncc:
            return 0.0
        return (ncc - c) / max(1.0 - c, 1e-9)
    return float(max(0.0, ncc) * min(distinct(c) for c in competitors))
