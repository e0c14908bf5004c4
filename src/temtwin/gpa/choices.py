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
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .core import FWHM_PER_SIGMA


# --------------------------------------------------------------------------------------- spots


@dataclass
class Spots:
    """Bragg spots, one per Friedel pair (angle in (-90°, 90°]): kx, ky (nm⁻¹); snr: peak power over
    the radial median background (detection); strength: power above background (∝ amplitude²,
    ranks the spots), sorted by decreasing strength."""

    kx: np.ndarray
    ky: np.ndarray
    snr: np.ndarray
    strength: np.ndarray | None = None

    def __post_init__(self):
        if self.strength is None:
            self.strength = np.asarray(self.snr, float).copy()

    def __len__(self) -> int:
        return len(self.kx)

    @property
    def k(self) -> np.ndarray:
        return np.column_stack([self.kx, self.ky])


def canonical(k: np.ndarray) -> np.ndarray:
    """Representative of ±k with angle in (-90°, 90°] (kx > 0, or kx == 0 and ky > 0)."""
    k = np.array(k, float, ndmin=2)
    flip = (k[:, 0] < 0) | ((k[:, 0] == 0) & (k[:, 1] < 0))
    k[flip] *= -1
    return k


def welch_power(image: np.ndarray, tile: int = 512, max_tiles: int = 16) -> np.ndarray:
    """Average Hann-windowed power spectrum (fftshifted, float64) of tiles of ``image``."""
    img = np.asarray(image, np.float32)
    R, C = img.shape
    ty, tx = min(tile, R), min(tile, C)
    nyt = max(1, int(math.ceil((R - ty) / (ty / 2))) + 1) if R > ty else 1
    nxt = max(1, int(math.ceil((C - tx) / (tx / 2))) + 1) if C > tx else 1
    ys = np.linspace(0, R - ty, nyt).astype(int)
    xs = np.linspace(0, C - tx, nxt).astype(int)
    pairs = [(y, x) for y in ys for x in xs]
    if len(pairs) > max_tiles:
        idx = np.linspace(0, len(pairs) - 1, max_tiles).astype(int)
        pairs = [pairs[i] for i in idx]
    win = (np.hanning(ty)[:, None] * np.hanning(tx)[None, :]).astype(np.float32)
    acc = np.zeros((ty, tx))
    for y, x in pairs:
        t = img[y:y + ty, x:x + tx]
        t = (t - t.mean()) * win
        acc += np.abs(np.fft.fft2(t)) ** 2
    return np.fft.fftshift(acc / len(pairs))


def fft_spots(image: np.ndarray, pixel_size_nm, min_snr: float = 15.0, tile: int = 512,
              k_min_nm: float = 0.6, max_spots: int = 24, k_max_nyquist: float = 0.8) -> Spots:
    """Bragg spots of an image from its Welch power spectrum (see module rules)."""
    P = welch_power(image, tile)
    ty, tx = P.shape
    px, py = pixel_size_nm
    dkx, dky = 1.0 / (tx * px), 1.0 / (ty * py)
    ky = (np.arange(ty) - ty // 2)[:, None] * dky
    kx = (np.arange(tx) - tx // 2)[None, :] * dkx
    kk = np.sqrt(kx * kx + ky * ky)
    lp = ndimage.gaussian_filter(np.log(P + 1e-30), 1.0)
    # radial median background
    dk = max(dkx, dky)
    bins = np.minimum((kk / dk).astype(int), int(kk.max() / dk))
    nb = bins.max() + 1
    order = np.argsort(bins, axis=None)
    b_sorted = bins.ravel()[order]
    v_sorted = lp.ravel()[order]
    edges = np.searchsorted(b_sorted, np.arange(nb + 1))
    med = np.array([np.median(v_sorted[edges[i]:edges[i + 1]]) if edges[i + 1] > edges[i] else 0.0
                    for i in range(nb)])
    med = ndimage.median_filter(med, 5, mode="nearest")
    ratio = lp - med[bins]
    nyq = 0.5 * min(1.0 / px, 1.0 / py)
    ok = (kk >= max(k_min_nm, 4 * dk)) & (kk <= k_max_nyquist * nyq)
    peak = (ratio == ndimage.maximum_filter(ratio, size=5)) & ok & (ratio >= math.log(min_snr))
    iy, ix = np.nonzero(peak)
    if len(iy) == 0:
        return Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    # sub-pixel: parabolic fit on the log power along each axis
    def para(a, b, c):
        d = a - 2 * b + c
        return np.where(np.abs(d) > 1e-12, 0.5 * (a - c) / d, 0.0).clip(-0.5, 0.5)
    iyc, ixc = np.clip(iy, 1, ty - 2), np.clip(ix, 1, tx - 2)
    oy = para(lp[iyc - 1, ixc], lp[iyc, ixc], lp[iyc + 1, ixc])
    ox = para(lp[iyc, ixc - 1], lp[iyc, ixc], lp[iyc, ixc + 1])
    k = np.column_stack([(ix - tx // 2 + ox) * dkx, (iy - ty // 2 + oy) * dky])
    snr = np.exp(ratio[iy, ix])
    power = np.exp(lp[iy, ix]) - np.exp(med[bins[iy, ix]])
    k = canonical(k)
    # merge Friedel mates (now on top of each other)
    order = np.argsort(-power)
    k, snr, power = k[order], snr[order], power[order]
    keep: list[int] = []
    for i in range(len(k)):
        if all(np.hypot(*(k[i] - k[j])) > 2.5 * dk for j in keep):
            keep.append(i)
        if len(keep) >= max_spots:
            break
    return Spots(k[keep, 0], k[keep, 1], snr[keep], power[keep])


def spots_from_table(kx, ky, strength, snr=None) -> Spots:
    """:class:`Spots` from a peaks.h5 table (kx, ky nm⁻¹; strength: the ``intensity`` column, or
    the snr when intensities are missing); Friedel mates merged (the stronger is kept)."""
    k = canonical(np.column_stack([np.ravel(kx), np.ravel(ky)]))
    s = np.asarray(strength, float).ravel()
    q = s.copy() if snr is None else np.asarray(snr, float).ravel()
    order = np.argsort(-s)
    k, s, q = k[order], s[order], q[order]
    keep: list[int] = []
    for i in range(len(k)):
        tol = 0.03 * max(np.hypot(*k[i]), 1e-9)
        if all(np.hypot(*(k[i] - k[j])) > tol for j in keep):
            keep.append(i)
    return Spots(k[keep, 0], k[keep, 1], q[keep], s[keep])


def region_spots(image: np.ndarray, pixel_size_nm, region: np.ndarray, min_snr: float = 15.0,
                 tile: int = 512) -> Spots:
    """Bragg spots of one region of an image: its bounding box, with the pixels outside the region
    set to the region's mean (so only the region's lattice contributes), Welch spectrum."""
    region = np.asarray(region, bool)
    rows = np.nonzero(region.any(1))[0]
    cols = np.nonzero(region.any(0))[0]
    if len(rows) < 16 or len(cols) < 16:
        return Spots(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = np.asarray(image, np.float32)[sl].copy()
    m = region[sl]
    crop[~m] = crop[m].mean()
    return fft_spots(crop, pixel_size_nm, min_snr=min_snr, tile=tile)


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
