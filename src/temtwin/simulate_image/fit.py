"""Fits of the imaging parameters by minimising the residual to the micrograph, with uncertainties.

Every fit uses a global linear intensity model ``data ≈ a + b · simulated`` solved in closed form for each
trial (variable projection), over the pixels of ``mask``.  Nonlinear parameters are refined with
``scipy.optimize.least_squares``; their 1-σ uncertainties come from the Jacobian at the optimum,
cov = s² (JᵀJ)⁻¹ with s² = χ²/(n − p) (the residual variance, so model error widens them), inflated by
√(Σ_τ ρ(τ)), the sum of the residual's normalised autocorrelation over lags within ``corr_window_px``
(1 for white noise): residuals correlated in space (model error, blur) carry fewer independent samples.
Because s² is the residual variance and not the noise variance, this is the reduced-χ² (model-error)
inflation: a model that explains the image only to k × the noise gets k × wider σ.  Parameter
correlations are in it too (the diagonal of the full inverse, not 1/diag(JᵀJ)).
Systematic part: a parameter held fixed (HRTEM focal spread, probe convergence angle) is not known
exactly either.  With a prior 1-σ δ for it (``simulate_image.systematic``), the fit is repeated from its
optimum with that parameter at p₀ − δ and p₀ + δ; σ_sys,k = |θ_k(p₀+δ) − θ_k(p₀−δ)| / 2 (linear propagation
of the prior) and the reported σ = √(σ_stat² + σ_sys²), with both parts stored.  The HRTEM thickness also
gets the quantisation term h/√12 of its exit-plane spacing h (the parabola only interpolates between
planes).  A parameter that ends at a bound of its search range, or whose σ is beyond ``SIGMA_LIMITS``, is
reported as not determined.
The HRTEM thickness is discrete (exit planes); it is refined by a parabola through the costs of the best
plane and its neighbours, and its uncertainty is from that parabola's curvature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from .hrtem import HRTEMImager


def linear_intensity(sim: np.ndarray, data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares a, b of ``data ≈ a + b·sim`` over ``mask``."""
    s = sim[mask]
    d = data[mask]
    sc = s - s.mean()
    var = float(sc @ sc)
    b = float(sc @ (d - d.mean())) / var if var > 0 else 0.0
    return float(d.mean() - b * s.mean()), b


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson) of two images over ``mask``."""
    x = a[mask] if mask is not None else a.ravel()
    y = b[mask] if mask is not None else b.ravel()
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else 0.0


@dataclass
class FitResult:
    """Fitted parameters (name -> value) and 1-σ uncertainties (name -> σ or None when not determined)."""

    values: dict
    sigma: dict
    cost: float
    ncc: float
    simulated: np.ndarray
    ambiguous: bool = False
    notes: list = field(default_factory=list)
    scan: dict = field(default_factory=dict)
    sigma_stat: dict = field(default_factory=dict)
    sigma_sys: dict = field(default_factory=dict)


def add_systematic(sigma: dict, values: dict, hi: dict, lo: dict, what: str, notes: list) -> tuple[dict, dict]:
    """(total σ, σ_sys) from the statistical ``sigma`` and two refits ``hi``/``lo`` at a fixed parameter's ±1-σ.

    Only parameters with a statistical σ get a systematic part (the others stay not determined).
    """
    sys_ = {}
    tot = dict(sigma)
    for k, s in sigma.items():
        if s is None or k not in hi or k not in lo or hi[k] is None or lo[k] is None:
            continue
        d = 0.5 * abs(float(hi[k]) - float(lo[k]))
        sys_[k] = d
        tot[k] = float(np.hypot(s, d))
    if sys_:
        notes.append(f"sigma includes the systematic part from {what}")
    return tot, sys_


def _at_bound(x, lo, hi, names, sigma: dict, notes: list) -> None:
    """Mark parameters that ended at a bound of their search range as not determined."""
    for xi, a, b, k in zip(x, lo, hi, names):
        if np.isfinite(a) and np.isfinite(b) and min(xi - a, b - xi) <= 1e-3 * (b - a):
            notes.append(f"{k} at the bound of its search range [{a:g}, {b:g}]: not determined")
            sigma[k] = None


def correlation_inflation(resid: np.ndarray, mask: np.ndarray, window_px: int = 8) -> float:
    """√(Σ ρ(τ)) over lags |τ| ≤ ``window_px`` of the residual map (masked pixels only), at least 1."""
    r = np.where(mask, resid - resid[mask].mean(), 0.0)
    f = np.fft.rfft2(r, s=(2 * r.shape[0], 2 * r.shape[1]))
    ac = np.fft.irfft2(f * np.conj(f), s=(2 * r.shape[0], 2 * r.shape[1]))
    n = np.fft.irfft2(np.abs(np.fft.rfft2(mask.astype(float), s=ac.shape)) ** 2, s=ac.shape)
    ac = np.where(n > 0.5, ac / np.maximum(n, 1.0), 0.0)
    if ac[0, 0] <= 0:
        return 1.0
    rho = ac / ac[0, 0]
    w = int(window_px)
    idx = np.r_[0:w + 1, -w:0]
    block = rho[np.ix_(idx, idx)]
    return float(np.sqrt(max(1.0, block.sum())))


# a 1-σ beyond these is "not determined by the data" (reported as None with a note)
SIGMA_LIMITS = {"defocus_nm": 50.0, "cs_um": 500.0, "blur_nm": 0.05, "source_nm": 0.1, "exponent": 1.0,
                "shift_x_px": 2.0, "shift_y_px": 2.0, "thickness_nm": 50.0}


def poor_fit(sigma: dict, fit_ncc: float, min_ncc: float, notes: list) -> bool:
    """When the best fit's NCC is below ``min_ncc`` the model does not reproduce the image: every σ becomes
    None (not determined), in place, with a note.  Returns whether that happened."""
    if not (np.isfinite(fit_ncc) and fit_ncc >= min_ncc):
        notes.append(f"the simulation does not reproduce the image (NCC {fit_ncc:.3f} < {min_ncc:g}): the fitted "
                     "optics are not determined")
        for k in sigma:
            sigma[k] = None
        return True
    return False


def _determined(sigma: dict, notes: list) -> dict:
    out = {}
    for k, s in sigma.items():
        if s is not None and (not np.isfinite(s) or s > SIGMA_LIMITS.get(k, np.inf)):
            notes.append(f"{k} not determined by the data (1-sigma {s:.3g})")
            s = None
        out[k] = s
    return out


def _cov_sigma(jac: np.ndarray, resid: np.ndarray, n_extra: int = 2) -> np.ndarray:
    n, p = jac.shape
    dof = max(n - p - n_extra, 1)
    s2 = float(resid @ resid) / dof
    jtj = jac.T @ jac
    if not np.all(np.isfinite(jtj)):
        return np.full(p, np.nan)
    # a tiny ridge keeps a singular direction from failing the inversion: it gets a huge variance
    # instead, which _determined() reports as "not determined"
    jtj = jtj + np.eye(p) * 1e-12 * max(float(np.max(np.diag(jtj))), 1e-300)
    try:
        cov = np.linalg.inv(jtj) * s2
        return np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        return np.full(p, np.nan)


def fit_hrtem(imager: HRTEMImager, data: np.ndarray, mask: np.ndarray, *, defocus_range_nm=(-30.0, 30.0),
              defocus_step_nm: float = 1.0, cs_um=(-15.0, 0.0, 15.0, 30.0), fit_cs: bool = True,
              focal_spread_nm: float = 3.0,
              blur_nm: float = 0.005, fit_blur: bool = True, planes: np.ndarray | None = None,
              corr_window_px: int = 8, focal_spread_sigma_nm: float = 0.0, potential_rel_sigma: float = 0.0,
              min_ncc: float = 0.0, log=None) -> FitResult:
    """Fit defocus (nm, +underfocus), thickness (exit plane), Cs (µm), blur (nm), shift (px) and a, b.

    Coarse: every exit plane in ``planes`` × a defocus grid × the start values ``cs_um`` (µm, a number or a
    list), scored by NCC over ``mask``.
    Fine: least squares over (defocus, Cs, blur, dx, dy) on the best plane and its two neighbours.
    ``ambiguous`` is set when a distinct coarse optimum (defocus > 3 steps away or thickness > 2 planes
    away) scores within 1 % of the best NCC after refinement.
    ``potential_rel_sigma``: prior relative 1-σ of the projected potential's strength (static-lattice neutral-atom
    potential: no Debye–Waller damping, no bonding).  With a free intensity scale the thickness is read from the
    phase the specimen imparts, ∝ V·t to first order, so a relative error δ of V maps to δ·t of the thickness:
    σ_sys(thickness) gets the term δ·t.
    ``min_ncc``: below this NCC of the best fit the model does not reproduce the image, so no optical
    parameter is determined by it (every σ None, with a note): its optimum is not a measurement.
    """
    th = imager.thickness_nm
    planes = np.arange(len(th)) if planes is None else np.asarray(planes, int)
    dfs = np.arange(defocus_range_nm[0], defocus_range_nm[1] + 1e-9, defocus_step_nm)
    css = np.atleast_1d(np.asarray(cs_um, float))
    score3 = np.full((len(css), len(planes), len(dfs)), -2.0)
    for c, cs in enumerate(css):
        for i, p in enumerate(planes):
            for j, df in enumerate(dfs):
                score3[c, i, j] = ncc(imager.image(int(p), df, cs, focal_spread_nm, blur_nm), data, mask)
            if log is not None:
                log.info("progress: hrtem coarse fit Cs %g µm, plane %d/%d", cs, i + 1, len(planes))
    best_c = int(np.argmax(score3.max(axis=(1, 2))))
    cs_start = float(css[best_c])
    score = score3[best_c]
    order = np.argsort(score, axis=None)[::-1]
    best_i, best_j = np.unravel_index(order[0], score.shape)
    # a distinct runner-up basin
    rival = None
    for o in order[1:]:
        i, j = np.unravel_index(o, score.shape)
        if abs(j - best_j) > 3 or abs(i - best_i) > 2:
            rival = (int(i), int(j), float(score[i, j]))
            break

    names = ["defocus_nm", "cs_um", "blur_nm", "shift_x_px", "shift_y_px"]
    free = [True, bool(fit_cs), bool(fit_blur), True, True]

    def refine(plane: int, df0: float, fs: float = focal_spread_nm, start=None):
        x0_full = np.array([df0, cs_start, blur_nm, 0.0, 0.0]) if start is None else np.array(start, float)
        idx = [k for k in range(5) if free[k]]

        def full(x):
            v = x0_full.copy()
            v[idx] = x
            return v

        def resid(x):
            v = full(x)
            sim = imager.image(plane, v[0], v[1], fs, max(v[2], 0.0), (v[3], v[4]))
            a, b = linear_intensity(sim, data, mask)
            return (data[mask] - a - b * sim[mask])

        lo = np.array([-np.inf, -np.inf, 0.0, -3.0, -3.0])[idx]
        hi = np.array([np.inf, np.inf, 0.1, 3.0, 3.0])[idx]
        x0 = np.clip(x0_full[idx], lo + 1e-9, hi - 1e-9)
        r = least_squares(resid, x0, bounds=(lo, hi), x_scale=np.array([1.0, 5.0, 0.005, 0.2, 0.2])[idx],
                          diff_step=1e-3, max_nfev=60)
        sig = np.full(5, np.nan)
        sig[idx] = _cov_sigma(r.jac, r.fun)
        return full(r.x), sig, float(r.fun @ r.fun)

    cand = {}
    i_start = int(best_i)
    for _ in range(len(planes)):
        for i in (i_start - 1, i_start, i_start + 1):
            if 0 <= i < len(planes) and i not in cand:
                df0 = float(cand[i_start][0][0]) if i_start in cand else float(dfs[best_j])
                cand[i] = refine(int(planes[i]), df0)
        costs = {i: c[2] for i, c in cand.items()}
        ib = min(costs, key=costs.get)
        if ib == i_start:
            break
        i_start = ib
    v, sig, cost = cand[ib]

    def parabola(costs):
        """Thickness (nm) and its σ from the parabola through the costs of plane ib and its neighbours."""
        t = float(th[planes[ib]])
        if ib - 1 in costs and ib + 1 in costs:
            c0, c1, c2 = costs[ib - 1], costs[ib], costs[ib + 1]
            h = 0.5 * (float(th[planes[ib + 1]]) - float(th[planes[ib - 1]]))
            curv = (c0 - 2 * c1 + c2) / h**2
            if curv > 0:
                s2 = c1 / max(int(mask.sum()) - 8, 1)
                return t + float(np.clip(-(c2 - c0) / (2 * h) / curv, -h, h)), float(np.sqrt(2.0 * s2 / curv))
        return t, None

    t, t_sig = parabola(costs)
    sim = imager.image(int(planes[ib]), v[0], v[1], focal_spread_nm, max(v[2], 0.0), (v[3], v[4]))
    a, b = linear_intensity(sim, data, mask)
    best_ncc = ncc(sim, data, mask)
    infl = correlation_inflation(data - a - b * sim, mask, corr_window_px)
    sig = sig * infl
    if t_sig is not None:
        t_sig *= infl
    values = dict(zip(names, [float(x) for x in v]))
    values.update(thickness_nm=t, focal_spread_nm=float(focal_spread_nm), offset=a, scale=b,
                  plane=int(planes[ib]), sigma_inflation=infl)
    sigma = {k: (None if not np.isfinite(s) or not free[i] else float(s)) for i, (k, s) in enumerate(zip(names, sig))}
    sigma["thickness_nm"] = t_sig
    ambiguous = False
    notes = []
    if ib == len(planes) - 1:
        notes.append("thickness at the upper end of the searched range (the model's thickness): the sample "
                     "may be thicker; its uncertainty is not determined")
    elif ib == 0:
        notes.append("thickness at the lower end of the searched range; its uncertainty is not determined")
    if rival is not None:
        ri, rj, rs = rival
        if rs > 0:
            rv, _, rcost = refine(int(planes[ri]), float(dfs[rj]))
            if rcost <= cost * 1.02 and (abs(rv[0] - v[0]) > 3 * defocus_step_nm or abs(ri - ib) > 2):
                ambiguous = True
                notes.append(f"rival optimum at defocus {rv[0]:.1f} nm, thickness {th[planes[ri]]:.2f} nm "
                             f"with cost ratio {rcost / cost:.3f}")
    sigma = _determined(sigma, notes)
    stat, sys_ = dict(sigma), {}
    if focal_spread_sigma_nm > 0:
        alt = []
        for fs in (max(focal_spread_nm - focal_spread_sigma_nm, 0.0), focal_spread_nm + focal_spread_sigma_nm):
            c_fs, v_fs = {}, None
            for i in (ib - 1, ib, ib + 1):
                if i in costs:
                    vi, _, ci = refine(int(planes[i]), float(v[0]), fs, start=v)
                    c_fs[i] = ci
                    v_fs = vi if i == ib else v_fs
            t_fs, _ = parabola(c_fs)
            alt.append({**dict(zip(names, [float(x) for x in v_fs])), "thickness_nm": t_fs})
            if log is not None:
                log.info("progress: hrtem systematic refit at focal spread %.2f nm", fs)
        sigma, sys_ = add_systematic(sigma, values, alt[1], alt[0],
                                     f"the focal spread's prior 1-sigma {focal_spread_sigma_nm:g} nm", notes)
    if sigma.get("thickness_nm") is not None and len(planes) > 1:
        # the thickness candidates are exit planes h apart and the parabola through three plane costs only
        # interpolates between them: its error is bounded by the quantisation term h/√12
        h = float(np.median(np.diff(th[planes])))
        sys_["thickness_nm"] = float(np.hypot(sys_.get("thickness_nm", 0.0), h / np.sqrt(12.0)))
        sigma["thickness_nm"] = float(np.hypot(stat["thickness_nm"], sys_["thickness_nm"]))
        notes.append(f"thickness sigma includes the exit-plane quantisation {h:.3g}/sqrt(12) nm")
    if sigma.get("thickness_nm") is not None and potential_rel_sigma > 0:
        sys_["thickness_nm"] = float(np.hypot(sys_.get("thickness_nm", 0.0), potential_rel_sigma * t))
        sigma["thickness_nm"] = float(np.hypot(stat["thickness_nm"], sys_["thickness_nm"]))
        notes.append(f"thickness sigma includes the projected potential's prior relative 1-sigma "
                     f"{potential_rel_sigma:g} (phase ∝ V·t)")
    _propagate_thickness(values, sigma, stat, sys_, cand, ib, th[planes], notes)
    poor_fit(sigma, best_ncc, min_ncc, notes)
    return FitResult(values, sigma, cost, best_ncc, a + b * sim, ambiguous, notes,
                     {"planes": planes, "defocus_nm": dfs, "cs_um": css, "ncc": score3}, stat, sys_)


def _propagate_thickness(values, sigma, stat, sys_, cand, ib, th, notes,
                         keys=("defocus_nm", "cs_um")) -> None:
    """Propagate the thickness uncertainty into the parameters fitted at the best exit plane.

    Defocus and Cs are refined at the discrete plane ``ib`` only; their correlation with the thickness is not in
    their Jacobian σ.  The slope dθ/dt from the refits at the neighbouring planes (``cand``: plane index ->
    (values, σ, cost), ``th``: thickness per index, nm) times the thickness σ is added to σ_sys.  When the
    thickness is not determined (end of the searched range), the change of θ over one plane is added instead
    (the least the thickness is uncertain by).
    """
    nb = [i for i in (ib - 1, ib + 1) if i in cand]
    if not nb:
        return
    t_sig = sigma.get("thickness_nm")
    names = ["defocus_nm", "cs_um", "blur_nm", "shift_x_px", "shift_y_px"]
    for k in keys:
        if sigma.get(k) is None:
            continue
        j = names.index(k)
        if len(nb) == 2:
            slope = (cand[nb[1]][0][j] - cand[nb[0]][0][j]) / (th[nb[1]] - th[nb[0]])
        else:
            slope = (cand[nb[0]][0][j] - cand[ib][0][j]) / (th[nb[0]] - th[ib])
        d = abs(slope) * (t_sig if t_sig is not None else abs(th[nb[0]] - th[ib]))
        sys_[k] = float(np.hypot(sys_.get(k, 0.0), d))
        sigma[k] = float(np.hypot(stat[k], sys_[k]))
    notes.append("defocus and Cs sigma include the thickness uncertainty propagated by their slope over the "
                 "neighbouring exit planes" + ("" if t_sig is not None else
                                               " (thickness not determined: the change over one plane)"))


def fit_haadf(imager, data: np.ndarray, mask: np.ndarray, xy_nm: np.ndarray, numbers: np.ndarray, *,
              defocus_range_nm=(-6.0, 6.0), defocus_step_nm: float = 2.0, cs_um: float = 0.0, fit_cs: bool = False,
              source_nm: float = 0.03, exponent: float = 1.7, fit_exponent: bool = True,
              corr_window_px: int = 8, imager_at=None, convergence_sigma_mrad: float = 0.0) -> FitResult:
    """Fit the linear HAADF model: probe defocus (nm), Cs (µm, optional), source size (nm), Z exponent n,
    shift (px) and a, b.  Thickness is not identifiable in the linear model (it only scales the column
    weights, absorbed by b): it is reported absent with that reason.
    ``imager_at(convergence_mrad)`` -> imager and ``convergence_sigma_mrad`` > 0 add the systematic part of
    the convergence angle's uncertainty (refits from the optimum at α ± δ).
    """
    xy = np.asarray(xy_nm, float)[:, :2]
    z = np.asarray(numbers, float)
    multi_species = len(np.unique(z)) > 1
    names = ["defocus_nm", "cs_um", "source_nm", "exponent", "shift_x_px", "shift_y_px"]
    free = [True, bool(fit_cs), True, bool(fit_exponent and multi_species), True, True]
    idx = [k for k in range(6) if free[k]]

    def render(v):
        return imager.image(xy, z ** v[3], v[0], v[1], max(v[2], 1e-4), (v[4], v[5]))

    def make(x, base):
        v = base.copy()
        v[idx] = x
        return v

    best = None
    lo = np.array([-50.0, -1e3, 1e-4, 0.5, -3.0, -3.0])[idx]
    hi = np.array([50.0, 1e3, 0.2, 2.5, 3.0, 3.0])[idx]
    for df0 in np.arange(defocus_range_nm[0], defocus_range_nm[1] + 1e-9, defocus_step_nm):
        base = np.array([df0, cs_um, source_nm, exponent, 0.0, 0.0])

        def resid(x, base=base):
            sim = render(make(x, base))
            a, b = linear_intensity(sim, data, mask)
            return data[mask] - a - b * sim[mask]

        r = least_squares(resid, np.clip(base[idx], lo + 1e-9, hi - 1e-9), bounds=(lo, hi),
                          x_scale=np.array([1.0, 5.0, 0.01, 0.1, 0.2, 0.2])[idx], diff_step=1e-3, max_nfev=40)
        c = float(r.fun @ r.fun)
        if best is None or c < best[0]:
            best = (c, make(r.x, base), r)
    cost, v, r = best
    sig = np.full(6, np.nan)
    sig[idx] = _cov_sigma(r.jac, r.fun)
    sim = render(v)
    a, b = linear_intensity(sim, data, mask)
    infl = correlation_inflation(data - a - b * sim, mask, corr_window_px)
    sig = sig * infl
    values = dict(zip(names, [float(x) for x in v]))
    values.update(offset=a, scale=b, thickness_nm=None, sigma_inflation=infl)
    sigma = {k: (float(s) if free[i] and np.isfinite(s) else None) for i, (k, s) in enumerate(zip(names, sig))}
    notes = ["thickness not identifiable with the linear HAADF model (it only scales the column weights)"]
    if not multi_species:
        notes.append("Z exponent not fitted: one species only")
    _at_bound(v[idx], lo, hi, [names[k] for k in idx], sigma, notes)
    sigma = _determined(sigma, notes)
    stat, sys_ = dict(sigma), {}
    if imager_at is not None and convergence_sigma_mrad > 0:
        conv = float(imager.conv)
        alt = []
        for c in (conv - convergence_sigma_mrad, conv + convergence_sigma_mrad):
            f2 = fit_haadf(imager_at(c), data, mask, xy, z, defocus_range_nm=(v[0], v[0]), defocus_step_nm=1.0,
                           cs_um=v[1], fit_cs=fit_cs, source_nm=v[2], exponent=v[3], fit_exponent=fit_exponent,
                           corr_window_px=corr_window_px)
            alt.append(f2.values)
        sigma, sys_ = add_systematic(sigma, values, alt[1], alt[0],
                                     f"the convergence angle's prior 1-sigma {convergence_sigma_mrad:g} mrad", notes)
    return FitResult(values, sigma, cost, ncc(sim, data, mask), a + b * sim, False, notes, {}, stat, sys_)
