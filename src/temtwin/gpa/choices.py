"""Automatic GPA choices: Bragg spots, g vectors, reference region, mask resolution and centres.

Rules (each can be overridden in config section ``gpa``):

* **Spots**: from ``peaks.h5`` (per region, when the fft_peaks stage found them) or, as a fallback,
  from the image's own Welch-averaged power spectrum (:func:`fft_spots`): local maxima whose power
  is at least ``min_spot_snr`` times the radial median power at the same |k|.  An image with fewer
  than two non-collinear spots is not crystalline (GPA not applicable).
* **g vectors** (:func:`pick_g_pair`): strong, low-order and non-collinear.  Candidates are spots
  of at least 2 % of the strongest power with |g| ≤ 2.5 x the smallest |g| of the spots of at least
  10 % strength (weak low-k spots from layer contrast are ignored); the pair
  maximises ``a1 a2 |g1 x g2|`` (a: Bragg amplitude), i.e. the smallest strain error, with an
  angle of 35-145°.  In an epitaxial stack a spot is a candidate only when every other crystalline
  region has a matching spot (|Δg|/|g| ≤ 15 %, angle ≤ 8°, ± g equivalent), so that one mask spans
  the spots of all phases.
* **Reference region** (:func:`choose_reference`): among the crystalline regions covering at least
  ``min_area_fraction`` of the image, the *substrate-like* region is the one with the longest contact
  with the image edge on the ``substrate_side`` (cross-section convention: growth upwards, substrate
  at the bottom); its phase is the substrate-like phase.  The reference is the largest region of that
  phase touching that edge; when no crystalline region touches it, the largest region of the phase
  with the largest total area; with ``substrate_side: none`` simply the largest crystalline region.
  The stage erodes it by one resolution (away from interfaces) before refining g on it.
* **Mask** (:func:`auto_resolution`, :func:`mask_centres`): Gaussian, σ_k set by a resolution (nm)
  of ``periods`` (5) x the largest lattice spacing among g1, g2, clipped to [1, 4] nm.  When the
  phases' spots of one g are separated by Δ (mismatch), the mask is centred midway between the
  extreme spots and the resolution is capped at 0.75/Δ, so that every phase's spot lies within
  1 σ_k of the centre (≥ 60 % transmission).  The resolution is kept above 1.5/d_nn (d_nn: distance
  from the mask centre to the nearest other spot or to k = 0), so that masks do not overlap
  (leakage below exp(-8)).  These midpoint masks are used where no region-specific set applies:
  the stage gives every region that shows both reflections masks centred on its own spots
  (region-adaptive masks, :func:`temtwin.gpa.core.gpa`).
"""

from __future__ import annotations

import math

import numpy as np

from .core import FWHM_PER_SIGMA


# --------------------------------------------------------------------------------------- spots
# one spots type and finder for the whole code (temtwin.peaks.spots); re-exported here
from ..peaks.spots import Spots, canonical, fft_spots, region_spots, spots_from_table, welch_power  # noqa: E402,F401


# ---------------------------------------------------------------------------------- g vectors


def match_spot(g: np.ndarray, spots: Spots, rel_tol: float = 0.15, ang_tol_deg: float = 8.0) -> int:
    """Index of the spot of ``spots`` matching g (or -g), -1 if none (closest in |Δk| wins)."""
    if len(spots) == 0:
        return -1
    k = spots.k
    g = np.asarray(g, float)
    gn = np.hypot(*g)
    best, best_d = -1, np.inf
    for sgn in (1.0, -1.0):
        kk = sgn * k
        n = np.hypot(kk[:, 0], kk[:, 1])
        cosang = (kk @ g) / np.maximum(n * gn, 1e-30)
        ang = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
        ok = (np.abs(n - gn) <= rel_tol * gn) & (ang <= ang_tol_deg)
        d = np.hypot(kk[:, 0] - g[0], kk[:, 1] - g[1])
        d = np.where(ok, d, np.inf)
        i = int(np.argmin(d))
        if d[i] < best_d:
            best, best_d = i, d[i]
    return best


def pick_g_pair(ref: Spots, others: list[Spots] | None = None, strength_fraction: float = 0.02,
                max_order_ratio: float = 2.5, min_angle_deg: float = 35.0) -> tuple[np.ndarray, dict]:
    """Two non-collinear, strong, low-order g vectors (2, 2) from the reference region's spots.

    Candidates: spots with strength ≥ ``strength_fraction`` x the strongest, |g| between 0.5 and
    ``max_order_ratio`` x the smallest |g| of the spots of ≥ 10 % strength (low order) and, when
    ``others`` (spots of the other crystalline regions) are given, a matching spot in each of them
    (shared by all phases).
    The pair maximises ``a1 a2 |g1 x g2|`` (a = sqrt(strength), the Bragg amplitude): the strain
    error of a two-g GPA scales as 1 / (a |g|) per reflection and 1 / sin(angle) for the pair, so
    this is the most precise pair; the angle must lie in [min_angle, 180° - min_angle].
    Returns (g (2, 2) nm⁻¹ sorted by |g|, info with ``matched`` (per g: the matched spot positions in
    the other regions), ``reason`` and ``strength``).  Raises ValueError when no pair exists.
    """
    others = others or []
    if len(ref) < 2:
        raise ValueError("fewer than two Bragg spots")
    st = np.clip(ref.strength / max(ref.strength.max(), 1e-30), 0, None)
    k = ref.k
    n = np.hypot(k[:, 0], k[:, 1])
    matched = []
    shared = np.ones(len(ref), bool)
    for i in range(len(ref)):
        m = []
        for o in others:
            j = match_spot(k[i], o)
            if j < 0:
                shared[i] = False
                m.append(None)
            else:
                kj = o.k[j]
                m.append(kj if kj @ k[i] > 0 else -kj)
        matched.append(m)
    smin = math.sin(math.radians(min_angle_deg))
    attempts = [(shared & (st >= strength_fraction), "shared by all crystalline regions"),
                (st >= strength_fraction, "reference region only (no spot pair shared by all regions)"),
                (np.ones(len(ref), bool), "reference region only, weak spots")]
    for cand, reason in attempts:
        if others == [] and reason.startswith("shared"):
            reason = "strongest pair"
        idx = np.nonzero(cand)[0]
        if len(idx) < 2:
            continue
        # order scale: the smallest |g| among the strong (>= 10 %) candidates; weak low-k spots
        # (layer contrast, thickness fringes) neither set it nor qualify
        strong = idx[st[idx] >= 0.1 * st[idx].max()]
        n_ref = n[strong].min()
        idx = idx[(n[idx] <= max_order_ratio * n_ref) & (n[idx] >= 0.5 * n_ref)]
        a = np.sqrt(st)
        best, best_score = None, -1.0
        for ii, i in enumerate(idx):
            for j in idx[ii + 1:]:
                cross = abs(k[i, 0] * k[j, 1] - k[i, 1] * k[j, 0])
                if cross < smin * n[i] * n[j]:
                    continue
                score = a[i] * a[j] * cross
                if score > best_score:
                    best, best_score = (i, j), score
        if best is None:
            continue
        i, j = sorted(best, key=lambda q: (n[q], -st[q]))
        return np.array([k[i], k[j]]), {"matched": [matched[i], matched[j]], "reason": reason,
                                         "strength": [float(st[i]), float(st[j])]}
    raise ValueError("no two non-collinear Bragg spots")


# --------------------------------------------------------------------------------- mask choice


def mask_centres(g: np.ndarray, matched: list[list]) -> tuple[np.ndarray, np.ndarray]:
    """Mask centres (2, 2) and spot spreads Δ (2,) nm⁻¹: for each g, the midpoint between g and the
    farthest matching spot of another region (g itself when there is none)."""
    C = np.array(g, float).copy()
    spread = np.zeros(2)
    for i in range(2):
        pts = [np.asarray(p, float) for p in (matched[i] if matched else []) if p is not None]
        if not pts:
            continue
        d = [np.hypot(*(p - g[i])) for p in pts]
        j = int(np.argmax(d))
        spread[i] = d[j]
        C[i] = 0.5 * (g[i] + pts[j])
    return C, spread


def auto_resolution(g: np.ndarray, spread=None, other_spots: np.ndarray | None = None,
                    centres: np.ndarray | None = None, periods: float = 5.0,
                    limits=(1.0, 4.0)) -> tuple[float, str]:
    """Mask resolution (nm) and the rule that set it (see module docstring)."""
    g = np.asarray(g, float)
    C = g if centres is None else np.asarray(centres, float)
    d_max = 1.0 / np.hypot(g[:, 0], g[:, 1]).min()
    r = float(np.clip(periods * d_max, *limits))
    why = f"{periods:g} x largest spacing {d_max:.3f} nm"
    spread = np.zeros(2) if spread is None else np.asarray(spread, float)
    if spread.max() > 0:
        r_mis = 0.75 / spread.max()
        if r_mis < r:
            r = r_mis
            why = f"mismatch: spots {spread.max():.3f} nm^-1 apart (0.75/Δ)"
    # keep masks apart: sigma_k <= d_nn / 4  <=>  r >= 1.5 / d_nn (times FWHM/(2π)/0.375 ~ 1)
    pts = [np.zeros(2)] + [s for s in np.vstack([g, -g])]
    if other_spots is not None and len(other_spots):
        pts += list(np.asarray(other_spots, float)) + list(-np.asarray(other_spots, float))
    d_nn = np.inf
    for c in C:
        for p in pts:
            d = np.hypot(*(p - c))
            if d > 0.25 * np.hypot(*c):   # spots of the same reflection (other phases) excluded
                d_nn = min(d_nn, d)
    r_min = 4.0 * FWHM_PER_SIGMA / (2 * math.pi * d_nn) if np.isfinite(d_nn) else 0.0
    if r < r_min:
        r = r_min
        why += f"; raised to {r_min:.2f} nm so that masks do not overlap"
    return r, why


# --------------------------------------------------------------------------------- reference


def choose_reference(labels: np.ndarray, crystalline: dict | None = None, phase_of: dict | None = None,
                     substrate_side: str = "bottom", min_area_fraction: float = 0.02) -> tuple[int, str]:
    """Reference region label and the reason (rule in the module docstring).

    labels: int (rows, cols), 0 = unassigned; crystalline: label -> bool (None: every label > 0);
    phase_of: label -> phase name or "" (None: unknown).  Returns (0, reason) when there is no
    crystalline region.
    """
    lab = np.asarray(labels)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    total = lab.size
    cand = [int(i) for i in ids if (crystalline is None or crystalline.get(int(i), False))
            and area[int(i)] >= min_area_fraction * total]
    if not cand:
        return 0, "no crystalline region"
    phase_of = phase_of or {}

    def ph(l):
        p = phase_of.get(l) or ""
        return p if p else f"#region{l}"

    edge = {"bottom": lab[-1, :], "top": lab[0, :], "left": lab[:, 0], "right": lab[:, -1]}.get(substrate_side)
    if edge is None:
        best = max(cand, key=lambda l: (area[l], -l))
        return best, "largest crystalline region"
    contact = {l: int(np.count_nonzero(edge == l)) for l in cand}
    sub = max(cand, key=lambda l: (contact[l], area[l], -l))
    if contact[sub] == 0:
        # no region on the substrate side: the phase with the largest total area
        tot: dict[str, int] = {}
        for l in cand:
            tot[ph(l)] = tot.get(ph(l), 0) + area[l]
        phase = max(tot, key=lambda p: (tot[p], p))
        same = [l for l in cand if ph(l) == phase]
        best = max(same, key=lambda l: (area[l], -l))
        return best, f"largest region of the most extended phase {phase!r} (none touches the {substrate_side} edge)"
    phase = ph(sub)
    same = [l for l in cand if ph(l) == phase and contact[l] > 0]
    best = max(same, key=lambda l: (area[l], -l))
    name = phase if not phase.startswith("#") else "unidentified"
    return best, f"largest region of the substrate-like phase ({name}) touching the {substrate_side} edge"


# ------------------------------------------------------------------------- separate g per crystal


def corresponding_pair(g: np.ndarray, spots: Spots, max_scale_dev: float = 0.25, max_rot_deg: float = 12.0,
                       max_anisotropy: float = 0.08, strength_fraction: float = 0.02) -> tuple[np.ndarray, dict] | None:
    """The two spots of a crystal that correspond to the reference reflections ``g`` (2, 2) nm⁻¹.

    A crystal whose spots do not match g within :func:`match_spot`'s tolerance (large mismatch, or
    a rotated/strained crystal) still shows the same planes if a pair (p1, p2) of its spots (±) is
    the image of (g1, g2) under a near-similarity: the 2x2 map T with rows ``p_i = g_i T`` has its
    singular values within ``1 ± max_scale_dev`` of 1, their relative difference (anisotropic
    mismatch or strain) ≤ ``max_anisotropy``, and rotation ≤ ``max_rot_deg``.  Among these the pair
    closest to a pure scaling (smallest |ln s| + anisotropy + rotation) wins.
    Returns (pair (2, 2) nm⁻¹, info with ``scale``, ``anisotropy``, ``rotation_deg``) or None.
    """
    if len(spots) < 2:
        return None
    st = spots.strength / max(float(spots.strength.max()), 1e-30)
    k = spots.k[st >= strength_fraction]
    cand = np.vstack([k, -k])
    G = np.asarray(g, float)
    Gi = np.linalg.inv(G)
    best, best_score = None, np.inf
    for i, p1 in enumerate(cand):
        if abs(np.hypot(*p1) / np.hypot(*G[0]) - 1) > max_scale_dev:
            continue
        for j, p2 in enumerate(cand):
            if i == j or abs(np.hypot(*p2) / np.hypot(*G[1]) - 1) > max_scale_dev:
                continue
            T = Gi @ np.array([p1, p2])
            if np.linalg.det(T) <= 0:
                continue
            sv = np.linalg.svd(T, compute_uv=False)
            U, _, Vt = np.linalg.svd(T)
            R = U @ Vt
            rot = abs(math.degrees(math.atan2(R[1, 0], R[0, 0])))
            aniso = (sv[0] - sv[1]) / sv.mean()
            scale = float(sv.mean())
            if abs(scale - 1) > max_scale_dev or aniso > max_anisotropy or rot > max_rot_deg:
                continue
            score = abs(math.log(scale)) + aniso + math.radians(rot)
            if score < best_score:
                best, best_score = (np.array([p1, p2]), {"scale": scale, "anisotropy": float(aniso),
                                                          "rotation_deg": rot}), score
    return best
