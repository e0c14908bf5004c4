"""Orientation search: match measured FFT spots to the zone patterns of the candidate phases.

Spots are complex numbers m = kx + i ky (nm^-1, image axes).  A hypothesis is a pattern p and a
complex factor z = s e^{iθ}: pattern point G (complex, zone frame) appears at z G in the image, so θ
is the in-plane rotation of the zone frame and s the calibration scale factor (measured |g| over
theoretical |g|; s = 1.03 when the stated pixel size is 3 % too small).

1. **Pairs**: the strongest measured spots (one of each Friedel pair) form ordered pairs (a, b); each
   is compared with the library's pairs (P, Q) of low-order reflections: |a|/|P| and |b|/|Q| must
   agree within ``d_tolerance`` and lie within ``max_scale_error`` of 1, the signed angles a->b and
   P->Q within ``angle_tolerance_deg``.  Each accepted pair gives z by least squares; hypotheses
   equal up to the pattern's rotation symmetry are merged.
2. **Joint score** of every hypothesis on all spots at once (vectorised over hypotheses x spots):
   each spot is assigned to its nearest reciprocal lattice point of the zone; it is *explained* when
   that point is allowed (or dynamical) and within the position tolerance; z is refined by weighted
   least squares on the explained spots (rotation and isotropic scale) and the assignment repeated.
   ``score = E * C**β * Q * P_s`` with E the weighted fraction of measured spots explained (weights
   min(SNR, 1000)^0.75), C the |F|-weighted fraction of the zone's allowed spots found within the radius of the
   explained spots, Q = exp(-<(r/tol)²>/2) from the residuals: ``fit = E * C**β * Q``.  E penalises
   spots present but unexplained, C reflections predicted strong but absent.  The ranking
   ``score = fit * P_s`` adds a preference for the stored calibration,
   P_s = exp(-((s-s_0)/σ_s)²/2) (s_0 = 1, or the image's calibration from its identified regions, see
   :mod:`temtwin.phase.calibration`), which only breaks near-ties: a region is identified on its fit.
3. **Ranking**: the best hypothesis of each (phase, zone axis) is a candidate; candidates that fit
   about as well as the best (:func:`ranking`) are ranked by score, above the others; their
   confidence is the posterior softmax(κ·fit) times what is known of the calibration (and, for
   row-scanned images, the scan-drift prior)
   (:func:`posterior`); candidates the data do not rule out are listed as alternatives and make
   the region ``ambiguous`` (:func:`ambiguity`).
4. **Several crystals**: spots left unexplained by the winner are offered to a new search whose E
   counts only them (shared spots still count as found), so twins and epitaxial pairs overlapping
   in one FFT are both reported.

Measured spots beyond the library's g_max are left out (they cannot be explained by its patterns).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .match_kernels import match_pairs, nearest_lattice_points
from .diffraction import ABSENT, ALLOWED
from .library import MIN_PAIR_SIN, PatternLibrary

SCAN_SIGMA = 0.04                 # prior width of the scan-drift shear / stretch of row-scanned images
SNR_POWER, SNR_CAP = 0.75, 1000.0  # measured spot weight = min(SNR, cap) ** power
COMPETE = 0.75                    # hypotheses within this fraction of the best fit compete on the ranking score
POOL_SIZE, POOL_FRACTION = 40, 0.3  # candidates kept for the image calibration (fit >= fraction x best)


@dataclass
class MatchSettings:
    """Tolerances and weights of the search (see the phase_id config section for descriptions)."""

    d_tolerance: float = 0.05
    angle_tolerance_deg: float = 3.0
    position_tolerance: float = 0.02
    position_tolerance_px: float = 1.5
    max_scale_error: float = 0.12
    scale_sigma: float = 0.04
    scale_centre: float = 1.0     # centre of the calibration prior (the image's calibration when known)
    calibration_sigma: float = 0.0  # known calibration uncertainty (0: unknown, flat over the search range)
    ambiguity_ratio: float = 0.2
    identical_scale: float = 0.015
    n_seed_spots: int = 8
    coverage_exponent: float = 0.75
    min_score: float = 0.3
    min_confidence: float = 0.25
    confidence_sharpness: float = 20.0
    max_crystals: int = 2
    min_new_fraction: float = 0.2
    max_hypotheses: int = 4000
    n_candidates: int = 5
    refine_iterations: int = 3

    @classmethod
    def from_config(cls, cfg: dict) -> "MatchSettings":
        names = cls.__dataclass_fields__
        return cls(**{k: cfg[k] for k in names if k in cfg})


@dataclass
class Spots:
    """Measured spots: complex positions ``k`` (nm^-1), weights ``w`` (> 0), FFT sampling (nm^-1/px),
    ``index``: row of each spot in the original peak table."""

    k: np.ndarray
    w: np.ndarray
    sampling: float = 0.0
    index: np.ndarray | None = None

    def __post_init__(self):
        if self.index is None:
            self.index = np.arange(len(self.k))

    def within(self, g_max: float) -> "Spots":
        """The spots with |g| <= g_max."""
        ok = np.abs(self.k) <= g_max
        return Spots(self.k[ok], self.w[ok], self.sampling, self.index[ok])

    @classmethod
    def from_arrays(cls, kx, ky, snr=None, sampling: float | None = None) -> "Spots":
        kx, ky = np.asarray(kx, float), np.asarray(ky, float)
        k = kx + 1j * ky
        if snr is None:
            w = np.ones(len(k))
        else:
            w = np.clip(np.nan_to_num(np.asarray(snr, float), nan=1.0), 1.0, SNR_CAP) ** SNR_POWER
        ok = np.isfinite(k) & (np.abs(k) > 0)
        samp = float(sampling) if sampling is not None and np.isfinite(sampling) else 0.0
        return cls(k[ok], w[ok], samp, np.flatnonzero(ok))

    def __len__(self) -> int:
        return len(self.k)


@dataclass
class Evaluation:
    """Scores of hypotheses (arrays over H) and per-spot assignments (H, N)."""

    p: np.ndarray
    z: np.ndarray
    score: np.ndarray
    E: np.ndarray
    C: np.ndarray
    Q: np.ndarray
    explained: np.ndarray
    n: np.ndarray
    kind: np.ndarray
    resid: np.ndarray
    A: np.ndarray                 # (H, 2) scan-drift map [a, b] (A = [[1, 0], [a, b]]); [0, 1] = none
    fit: np.ndarray               # (H,) score without the calibration prior (E C^β Q, planar)

    def take(self, idx) -> "Evaluation":
        return Evaluation(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@dataclass
class Crystal:
    """One identified crystal (the winner of a search) and its ranked candidates."""

    p: int
    phase: str
    space_group: str
    uvw: np.ndarray
    uvw4: np.ndarray | None
    scale: float
    theta_deg: float
    rotation_deg: float
    M: np.ndarray
    score: float
    confidence: float
    E: float
    C: float
    spot_index: np.ndarray        # rows of the peak table (Spots.index) of the explained spots
    hkl: np.ndarray
    resid: np.ndarray
    k: np.ndarray = field(default_factory=lambda: np.zeros(0, complex))   # their measured positions
    w: np.ndarray = field(default_factory=lambda: np.zeros(0))            # and weights
    candidates: list = field(default_factory=list)
    identified: bool = True
    scan_distortion: np.ndarray | None = None
    fit: float = 0.0              # score without the calibration prior (the identification threshold)
    state: str = "identified"     # identified | ambiguous | not_identified
    alternatives: list = field(default_factory=list)   # other candidates the data do not rule out
    group_confidence: float = 0.0  # confidence of the crystal and its lattice-identical alternatives
    pool: list = field(default_factory=list)  # best candidates by fit (phase, zone, scale, fit, n_spots)


# ------------------------------------------------------------------------------------------ helpers
def _tolerance(spots: Spots, rel: float, px: float) -> np.ndarray:
    return np.maximum(rel * np.abs(spots.k), px * spots.sampling)


def friedel_representatives(spots: Spots, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vector per Friedel pair (angle in [0°, 180°)): (vectors, weights, index of the spot used)."""
    m = spots.k
    rep = np.where(np.angle(m) >= -1e-9, m, -m)
    rep = np.where(np.isclose(np.angle(rep), np.pi), -rep, rep)
    order = np.argsort(-spots.w, kind="stable")
    keep: list[int] = []
    for i in order:
        if all(abs(rep[i] - rep[j]) > tol[i] for j in keep):
            keep.append(int(i))
    keep_a = np.array(keep, int)
    # weight of a representative: the larger of the pair (already sorted by weight)
    return rep[keep_a], spots.w[keep_a], keep_a


def seed_hypotheses(lib: PatternLibrary, spots: Spots, cfg: MatchSettings,
                    priority: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hypotheses (pattern indices, z) from pairs of measured seed spots matched to library pairs.

    ``priority`` (N,) bool: spots to prefer as seeds (e.g. unexplained by an earlier crystal); each seed
    pair then contains at least one of them.
    """
    tol = _tolerance(spots, cfg.d_tolerance, cfg.position_tolerance_px)
    rep, w, idx = friedel_representatives(spots, tol)
    if priority is not None:
        pri = priority[idx]
        order = np.lexsort((-w, ~pri))
    else:
        pri = np.ones(len(rep), bool)
        order = np.argsort(-w, kind="stable")
    order = order[: cfg.n_seed_spots]
    rep, pri = rep[order], pri[order]
    K = len(rep)
    if K < 2:
        return np.zeros(0, int), np.zeros(0, complex)
    ii, jj = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    a, b = rep[ii], rep[jj]
    cross = (a.conj() * b).imag
    ok = (ii != jj) & (np.abs(cross) >= MIN_PAIR_SIN * np.abs(a) * np.abs(b)) & (pri[ii] | pri[jj])
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return np.zeros(0, int), np.zeros(0, complex)
    ms, dt = cfg.max_scale_error, cfg.d_tolerance
    # the library pairs of the same length ratio (bins of log |Q|/|P|) and |P| in the scale window
    idx, lo, hi = lib.pair_ranges(a, b, max(1 - ms - dt, 0.05), 1 + ms + dt, 1.5 * dt)
    a, b = a[idx], b[idx]
    p, z = match_pairs(a, b, lo, hi, lib.pair_P, lib.pair_Q, lib.pair_p, dt, ms,
                       float(np.deg2rad(cfg.angle_tolerance_deg)))
    p, z, _ = _dedupe(lib, p, z)
    return p, z


def _dedupe(lib: PatternLibrary, p: np.ndarray, z: np.ndarray, dtheta_deg: float = 0.5,
            dlog_s: float = 0.004) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge hypotheses equal up to the pattern's rotation symmetry (within 0.5° and 0.4 %).

    Returns the kept (p, z with θ brought into the first symmetry sector, indices into the input)."""
    if len(p) == 0:
        return p, z, np.zeros(0, int)
    sector = 2 * np.pi / lib.order[p]
    th = np.mod(np.angle(z), sector)
    zc = np.abs(z) * np.exp(1j * th)
    kt = np.round(np.rad2deg(th) / dtheta_deg).astype(np.int64)
    ks = np.round(np.log(np.abs(z)) / dlog_s).astype(np.int64)
    key = (p.astype(np.int64) * 100000 + kt) * 1000 + (ks + 500)
    _, first = np.unique(key, return_index=True)
    return p[first], zc[first], first


# ------------------------------------------------------------------------------------------ scoring
def evaluate(lib: PatternLibrary, spots: Spots, p: np.ndarray, z: np.ndarray, cfg: MatchSettings,
             tol_rel: float | None = None, e_weight: np.ndarray | None = None,
             iterations: int | None = None, scan: bool = False, A: np.ndarray | None = None) -> Evaluation:
    """Score hypotheses (p, z) on all spots jointly, refining z by least squares (see module doc).

    ``scan``: also refine the scan-drift map of a row-scanned image, spots m = A (z G) with
    A = [[1, 0], [a, b]] (``A`` (H, 2) holds a, b; the fast axis x is undistorted), alternating with z.
    The score is then multiplied by exp(-(a² + (b - 1)²) / (2 · 0.04²)).
    """
    m, w = spots.k, spots.w
    mx, my = m.real, m.imag
    tol_rel = cfg.position_tolerance if tol_rel is None else tol_rel
    tol = _tolerance(spots, tol_rel, cfg.position_tolerance_px)
    ew = w if e_weight is None else e_weight
    iters = cfg.refine_iterations if iterations is None else iterations
    z = z.copy()
    H = len(p)
    A = np.tile([0.0, 1.0], (H, 1)) if A is None else A.copy()
    for it in range(iters + 1):
        a_, b_ = A[:, :1], A[:, 1:]
        mu = mx[None, :] + 1j * (my[None, :] - a_ * mx[None, :]) / b_          # A^-1 m   (H, N)
        n, G, kind, wt = nearest_lattice_points(mu / z[:, None], p, lib.basis, lib.binv, lib.kind, lib.weight,
                                                lib.NP, ABSENT)
        P = z[:, None] * G
        resid = np.hypot(mx[None, :] - P.real, my[None, :] - (a_ * P.real + b_ * P.imag))
        expl = (kind > 0) & (resid <= tol[None, :])
        if it == iters:
            break
        wa = w[None, :] * expl
        num = (wa * mu * G.conj()).sum(1)
        den = (wa * np.abs(G) ** 2).sum(1)
        upd = (expl.sum(1) >= 2) & (den > 0)
        znew = np.where(upd, num / np.where(den > 0, den, 1), z)
        # keep refinements within the scale window
        z = np.where(np.abs(np.abs(znew) - 1) <= cfg.max_scale_error * 1.2, znew, z)
        if not scan:
            continue
        # row-scanned image: general linear map T (m = T G) by weighted least squares, then its LQ
        # decomposition T = (s A) R(θ) with A = [[1, 0], [a, b]] (fast axis x undistorted)
        gx, gy = G.real, G.imag
        s11, s12, s22 = (wa * gx * gx).sum(1), (wa * gx * gy).sum(1), (wa * gy * gy).sum(1)
        det = s11 * s22 - s12 ** 2
        good = (expl.sum(1) >= 3) & (det > 1e-9 * np.maximum(s11 * s22, 1e-300))
        dsafe = np.where(good, det, 1.0)
        rows = []
        for comp in (mx, my):
            r1, r2 = (wa * gx * comp[None, :]).sum(1), (wa * gy * comp[None, :]).sum(1)
            rows.append(((r1 * s22 - r2 * s12) / dsafe, (s11 * r2 - s12 * r1) / dsafe))
        (t00, t01), (t10, t11) = rows
        th = np.arctan2(-t01, t00)
        sc = np.hypot(t00, t01)
        c, sn = np.cos(th), np.sin(th)
        an = (t10 * c - t11 * sn) / np.where(sc > 0, sc, 1)        # L = T R^T; a = L10 / s, b = L11 / s
        bn = (t10 * sn + t11 * c) / np.where(sc > 0, sc, 1)
        ok = (good & (np.abs(sc - 1) <= cfg.max_scale_error * 1.2) & (np.abs(an) <= 0.15)
              & (np.abs(bn - 1) <= 0.15))
        z = np.where(ok, sc * np.exp(1j * th), z)
        A = np.where(ok[:, None], np.c_[an, bn], A)
    ews = ew.sum()
    E = (ew[None, :] * expl).sum(1) / (ews if ews > 0 else 1.0)
    # coverage: unique allowed lattice points found, over the expected weight within the explained radius
    S = 2 * lib.NP + 1
    code = np.where(expl & (kind == ALLOWED), (n[..., 0] + lib.NP) * S + (n[..., 1] + lib.NP), -1)
    o = np.argsort(code, axis=1)
    cs = np.take_along_axis(code, o, 1)
    ws = np.take_along_axis(np.where(code >= 0, wt, 0.0), o, 1)
    dup = np.zeros_like(cs, bool)
    dup[:, 1:] = cs[:, 1:] == cs[:, :-1]
    found = np.where(dup, 0.0, ws).sum(1)
    radius = np.where(expl, np.abs(m)[None, :], 0.0).max(1) / np.abs(z) * (1 + tol_rel)
    expected = lib.expected_weight(p, radius)
    C = np.clip(found / np.where(expected > 0, expected, np.inf), 0.0, 1.0)
    r2 = np.where(expl, (resid / tol[None, :]) ** 2, 0.0)
    nexp = expl.sum(1)
    Q = np.exp(-0.5 * r2.sum(1) / np.maximum(nexp, 1))
    logPs = -0.5 * ((np.abs(z) - cfg.scale_centre) / cfg.scale_sigma) ** 2
    if scan:
        logPs = logPs - 0.5 * (A[:, 0] ** 2 + (A[:, 1] - 1) ** 2) / SCAN_SIGMA ** 2
    # the explained spots must span two directions
    mm = np.where(expl, m[None, :], 0)
    ref = mm[np.arange(H), np.argmax(np.abs(mm), axis=1)]
    cr = np.abs((ref.conj()[:, None] * mm).imag)
    planar = (cr >= MIN_PAIR_SIN * np.abs(ref)[:, None] * np.abs(mm)).any(1)
    fit = E * C ** cfg.coverage_exponent * Q * planar
    score = fit * np.exp(logPs)      # ranking score: the fit weighted by the calibration preference
    return Evaluation(p, z, score, E, C, Q, expl, n, kind, resid, A, fit)


# ------------------------------------------------------------------------------------------ search
#: spots used by the coarse pass of :func:`search` (the strongest ones)
COARSE_MAX_SPOTS = 64
#: hypotheses refined on all spots after the coarse pass (see :func:`search`)
FINE_KEEP, FINE_FRACTION = 256, 0.25


def search(lib: PatternLibrary, spots: Spots, cfg: MatchSettings, previous: np.ndarray | None = None,
           scan: bool = False):
    """One search: the best Evaluation of each pattern, sorted by score (None without hypotheses).

    ``previous`` (N,) bool: spots explained by crystals found before (they count as found for the
    coverage but not in E; seed pairs contain at least one other spot).  ``scan``: refine the
    scan-drift map of a row-scanned image (see :func:`evaluate`).
    """
    priority = None if previous is None else ~previous
    p, z = seed_hypotheses(lib, spots, cfg, priority)
    if len(p) == 0:
        return None
    e_weight = None if previous is None else spots.w * (~previous)
    # coarse pass: loose tolerance (the seed pair fixes z only to a few degrees), then keep the best;
    # on the strongest COARSE_MAX_SPOTS spots only (rich FFTs have hundreds of weak high-order
    # spots that do not change the ranking but multiply the cost); the fine pass uses them all
    c_spots, c_weight = spots, e_weight
    if len(spots) > COARSE_MAX_SPOTS:
        sel = np.sort(np.argsort(-spots.w, kind="stable")[:COARSE_MAX_SPOTS])
        c_spots = Spots(spots.k[sel], spots.w[sel], spots.sampling, spots.index[sel])
        c_weight = None if e_weight is None else e_weight[sel]
    ev = evaluate(lib, c_spots, p, z, cfg, tol_rel=cfg.d_tolerance, e_weight=c_weight, iterations=2)
    if len(p) > cfg.max_hypotheses:
        keep = _top_per_pattern(ev, cfg.max_hypotheses)
        ev = ev.take(keep)
    # the fine pass (all spots, refinement) only for the hypotheses that can still matter: the
    # FINE_KEEP best by fit and the best of every pattern whose coarse fit is at least FINE_FRACTION
    # of the best one (the candidates, alternatives and calibration pool come from these)
    ev = ev.take(_prune(ev, FINE_KEEP, FINE_FRACTION))
    ev = evaluate(lib, spots, ev.p, ev.z, cfg, e_weight=e_weight, scan=scan)
    # re-merge hypotheses that converged to the same refined solution
    p2, z2, idx = _dedupe(lib, ev.p, ev.z, 0.2, 0.002)
    if len(p2) < len(ev.p):
        ev = evaluate(lib, spots, p2, z2, cfg, e_weight=e_weight, iterations=1, scan=scan, A=ev.A[idx])
    ev = ev.take(_best_per_pattern(ev))
    # reported scores follow the ranking: a candidate outside the competitive set (see ranking) scores at
    # most the lowest competitive one
    if len(ev.fit):
        comp = ev.fit >= COMPETE * ev.fit.max()
        ev.score = np.where(comp, ev.score, np.minimum(ev.score, ev.score[comp].min()))
    return ev


def _prune(ev: Evaluation, k: int, fraction: float) -> np.ndarray:
    """Indices of the k best hypotheses by fit and of each pattern's best with fit >= fraction x max."""
    if len(ev.p) <= k:
        return np.arange(len(ev.p))
    o = np.argsort(-ev.fit, kind="stable")[:k]
    best = _best_per_pattern(ev)
    best = best[ev.fit[best] >= fraction * ev.fit.max()]
    return np.unique(np.concatenate([o, best]))


def _top_per_pattern(ev: Evaluation, k: int) -> np.ndarray:
    """Indices of the k best hypotheses, always including the best of each pattern."""
    o = np.argsort(-ranking(ev), kind="stable")
    first = _best_per_pattern(ev)
    return np.unique(np.concatenate([o[:k], first]))


def _best_per_pattern(ev: Evaluation) -> np.ndarray:
    """Index of the best hypothesis of each pattern, sorted by score.

    Within a pattern the hypotheses are compared on ``fit`` (no calibration prior): the prior breaks
    ties between phases whose lattices differ by about the calibration error, but it must not pull the
    scale of the right phase towards 1 by choosing a worse-fitting setting (e.g. the a and c axes of a
    nearly cubic tetragonal zone exchanged).  Ranking across patterns uses the full score."""
    o = np.lexsort((-ev.fit, ev.p))
    _, first = np.unique(ev.p[o], return_index=True)
    best = o[first]
    return best[np.argsort(-ranking(ev)[best], kind="stable")]


def ranking(ev: Evaluation) -> np.ndarray:
    """Ranking key of hypotheses: the calibration preference (``score`` = fit x P_s) decides only among
    hypotheses that fit about as well as the best one (fit >= COMPETE x max fit), which all rank above
    the others: a zone pattern that fits well at s = 1.09 is not passed over for a poor fit at s = 1."""
    if len(ev.fit) == 0:
        return ev.score
    return np.where(ev.fit >= COMPETE * ev.fit.max(), 1.0, 0.0) + ev.score


def confidences(scores: np.ndarray, sharpness: float) -> np.ndarray:
    """Softmax of sharpness * score (normalised across candidates)."""
    if len(scores) == 0:
        return scores
    e = np.exp(sharpness * (scores - scores.max()))
    return e / e.sum()


def posterior(fit: np.ndarray, scale: np.ndarray, cfg: MatchSettings, A: np.ndarray | None = None) -> np.ndarray:
    """Confidence of each candidate (phase, zone): exp(κ fit) times the calibration prior, normalised.

    The prior is what is known of the calibration: flat over the search range 1 ± max_scale_error when
    ``calibration_sigma`` is 0 (unknown: the stored pixel size may be off by several %), else
    N(scale_centre, calibration_sigma) (an instrument uncertainty, the image's joint calibration or a
    reference phase).  Candidates that fit equally at different scale factors then share the
    confidence instead of the one nearer the stored calibration taking it.

    ``A`` (H, 2): the scan-drift map [a, b] of each candidate of a row-scanned image (see
    :func:`evaluate`); its prior N(0, SCAN_SIGMA) on the shear a and stretch b - 1 (scan drift of a
    few %) multiplies the posterior too: a candidate that fits only by a drift map far beyond the
    prior (e.g. 11 % shear) is not a confident answer."""
    if len(fit) == 0:
        return np.asarray(fit, float)
    logp = cfg.confidence_sharpness * np.asarray(fit, float)
    if A is not None:
        A = np.asarray(A, float)
        logp = logp - 0.5 * (A[:, 0] ** 2 + (A[:, 1] - 1) ** 2) / SCAN_SIGMA ** 2
    if cfg.calibration_sigma > 0:
        logp = logp - 0.5 * ((np.asarray(scale, float) - cfg.scale_centre) / cfg.calibration_sigma) ** 2
    e = np.exp(logp - logp.max())
    return e / e.sum()


def ambiguity(lib: PatternLibrary, ev: Evaluation, conf: np.ndarray, rank: int, cfg: MatchSettings):
    """(state, alternatives, group confidence) of candidate ``rank`` of a search.

    Alternatives: the other candidates (phase, zone) with a confidence at least ``ambiguity_ratio`` of
    this one's, each with the scale factor (calibration) it implies; ``lattice_identical`` when its
    scale factor is within ``identical_scale`` of this one's (the same spots at the same calibration:
    e.g. GaAs / Ge / AlAs, InSb / CdTe; only elements tell them apart)."""
    s0 = abs(ev.z[rank])
    alts, group = [], float(conf[rank])
    for r in np.flatnonzero(conf >= cfg.ambiguity_ratio * conf[rank]):
        if r == rank:
            continue
        pt = lib.patterns[int(ev.p[r])]
        s = float(abs(ev.z[r]))
        ident = abs(s / s0 - 1) <= cfg.identical_scale
        if ident:
            group += float(conf[r])
        alts.append({"phase": pt.phase, "zone_axis": [int(v) for v in pt.uvw], "scale_factor": s,
                     "fit": float(ev.fit[r]), "confidence": float(conf[r]), "lattice_identical": bool(ident)})
    alts.sort(key=lambda a: -a["confidence"])
    return ("ambiguous" if alts else "identified"), alts, group


def rotation_of(pattern, z: complex) -> float:
    """Reported in-plane rotation (deg, [0, 360)): the smallest image angle of the reference shell
    (largest-d allowed reflections) under hypothesis z."""
    a = np.rad2deg(np.angle(z) + pattern.ref_angles) % 360.0
    a = np.where(a > 360.0 - 1e-9, 0.0, a)
    return float(a.min())


def orientation_matrix(pattern, z: complex) -> np.ndarray:
    """M = Rz(θ) B: crystal Cartesian -> image frame (rows image x, image y, beam z)."""
    t = np.angle(z)
    R = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    return R @ pattern.B


def make_crystal(lib: PatternLibrary, spots: Spots, ev: Evaluation, rank: int, conf: np.ndarray,
                 cfg: MatchSettings, scan: bool = False) -> Crystal:
    """Crystal record of candidate ``rank`` of a search (with the candidate list)."""
    p = int(ev.p[rank])
    pat = lib.patterns[p]
    ph = lib.phase(p)
    z = complex(ev.z[rank])
    ex = np.flatnonzero(ev.explained[rank])
    n = ev.n[rank][ex]
    hkl = n @ pat.basis_hkl
    cands = []
    for r in range(min(cfg.n_candidates, len(ev.p))):
        pr = int(ev.p[r])
        pt = lib.patterns[pr]
        cands.append({
            "rank": r + 1, "phase": pt.phase, "space_group": lib.phase(pr).space_group,
            "zone_axis": [int(v) for v in pt.uvw], "rotation_deg": rotation_of(pt, complex(ev.z[r])),
            "scale_factor": float(abs(ev.z[r])), "score": float(ev.score[r]), "fit": float(ev.fit[r]),
            "confidence": float(conf[r]), "n_spots": int(ev.explained[r].sum()),
        })
    # the wider pool of candidates the image calibration is estimated from (ranked by fit, not score:
    # with an unknown calibration the right phase may be far from the stored scale)
    pool = []
    for r in np.argsort(-ev.fit, kind="stable")[:POOL_SIZE]:
        if ev.fit[r] < POOL_FRACTION * ev.fit.max():
            break
        pool.append({"phase": lib.patterns[int(ev.p[r])].phase,
                     "zone_axis": [int(v) for v in lib.patterns[int(ev.p[r])].uvw],
                     "scale_factor": float(abs(ev.z[r])), "fit": float(ev.fit[r]),
                     "n_spots": int(ev.explained[r].sum())})
    score = float(ev.score[rank])
    fit = float(ev.fit[rank])
    state, alts, group = ambiguity(lib, ev, conf, rank, cfg)
    ok = bool(fit >= cfg.min_score and group >= cfg.min_confidence)
    if fit < cfg.min_score:
        state = "not_identified"
    return Crystal(
        p=p, phase=pat.phase, space_group=ph.space_group, uvw=pat.uvw.copy(),
        uvw4=None if pat.uvw4 is None else pat.uvw4.copy(), scale=float(abs(z)),
        theta_deg=float(np.rad2deg(np.angle(z))), rotation_deg=rotation_of(pat, z),
        M=orientation_matrix(pat, z), score=score, confidence=float(conf[rank]), E=float(ev.E[rank]),
        C=float(ev.C[rank]), spot_index=spots.index[ex], hkl=hkl, resid=ev.resid[rank][ex], k=spots.k[ex],
        w=spots.w[ex], candidates=cands,
        identified=ok, scan_distortion=scan_map(ev.A[rank]) if scan else None, fit=fit, state=state,
        alternatives=alts, group_confidence=group, pool=pool,
    )


def scan_map(A) -> np.ndarray:
    """Real-space scan distortion D (x' = D x, [[1, α], [0, 1 + β]]) from the reciprocal map
    [a, b] (m = [[1, 0], [a, b]] g, i.e. A = D^-T)."""
    a, b = float(A[0]), float(A[1])
    return np.array([[1.0, -a / b], [0.0, 1.0 / b]])


def identify(lib: PatternLibrary, spots: Spots, cfg: MatchSettings | None = None,
             scan_rows: bool = False) -> list[Crystal]:
    """Crystals in one FFT's spots, best first (empty when no hypothesis explains two directions).

    The first crystal is always returned when any hypothesis exists (``identified`` False when its
    score or confidence is below the thresholds); further ones only when identified.  ``scan_rows``:
    the image was scanned row by row (STEM): spots are fitted with a scan-drift map besides rotation
    and scale, so the rotation is free of the shear that drift adds (see :func:`evaluate`).
    """
    cfg = cfg or MatchSettings()
    out: list[Crystal] = []
    spots = spots.within(lib.g_max)
    if len(spots) < 2:
        return out
    previous = np.zeros(len(spots), bool)
    for k in range(max(1, cfg.max_crystals)):
        if k > 0:
            left = spots.w[~previous].sum() / spots.w.sum()
            if left < cfg.min_new_fraction or (~previous).sum() < 2:
                break
        ev = search(lib, spots, cfg, previous if k > 0 else None, scan=scan_rows)
        if ev is None or len(ev.p) == 0 or ev.score[0] <= 0:
            break
        conf = posterior(ev.fit, np.abs(ev.z), cfg, ev.A if scan_rows else None)
        c = make_crystal(lib, spots, ev, 0, conf, cfg, scan=scan_rows)
        if k > 0:
            new = ev.explained[0] & ~previous
            if not c.identified or spots.w[new].sum() < cfg.min_new_fraction * spots.w.sum():
                break
        out.append(c)
        previous |= ev.explained[0]
    return out
