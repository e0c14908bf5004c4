"""The pattern library: every zone pattern of every candidate phase, stacked for vectorised matching.

Built once per stage run (and cached in memory by phase CIF digests and settings), shared by all
regions of an image.  Holds, per pattern p:

* ``kind[p]``, ``weight[p]``: (2N+1, 2N+1) grids over the zone's 2D reciprocal indices (padded to the
  library's largest N; outside = ABSENT);
* ``basis[p]`` (2, 2) and its inverse: pattern coords u = n @ basis, n = u @ binv;
* the coverage table: allowed weighted points sorted by |g| with cumulative weights, searchable for
  "total weight of expected spots within radius r" of all hypotheses at once;
* the seed-pair table: ordered pairs (P, Q) of low-order reflections, P one of each Friedel pair and Q
  any, sorted by |P| for range queries: |P|, pattern index, P and Q as complex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .diffraction import ALLOWED
from .zones import ZonePattern, zone_patterns

MIN_PAIR_SIN = np.sin(np.deg2rad(8.0))   # seed pairs closer to collinear than 8° are not used


@dataclass
class PatternLibrary:
    phases: list                  # Phase objects (candidates)
    patterns: list[ZonePattern]
    phase_of: np.ndarray          # (P,) index into phases
    g_max: float
    NP: int
    kind: np.ndarray              # (P, 2NP+1, 2NP+1) int8
    weight: np.ndarray            # (P, 2NP+1, 2NP+1) float32
    basis: np.ndarray             # (P, 2, 2)
    binv: np.ndarray              # (P, 2, 2)
    order: np.ndarray             # (P,)
    cov_key: np.ndarray           # sorted p * KEY + |g|
    cov_cum: np.ndarray           # cumulative weights aligned with cov_key (leading 0)
    cov_start: np.ndarray         # (P,) first index of pattern p in cov_key
    pair_lenP: np.ndarray
    pair_p: np.ndarray
    pair_P: np.ndarray            # complex
    pair_Q: np.ndarray            # complex
    pair_key: np.ndarray = None   # sorted (ratio bin - RATIO_OFFSET) * KEY + |P|

    KEY = 1.0e4
    RATIO_BIN = 0.05              # width of the log(|Q| / |P|) bins of the seed-pair table
    RATIO_OFFSET = -200           # keys stay positive for ratios down to exp(-10)

    def __len__(self) -> int:
        return len(self.patterns)

    def phase_name(self, p: int) -> str:
        return self.phases[int(self.phase_of[p])].name

    def phase(self, p: int):
        return self.phases[int(self.phase_of[p])]

    def pair_ranges(self, a: np.ndarray, b: np.ndarray, lo_scale: float, hi_scale: float, d_tol: float):
        """Library seed-pair rows that measured pairs (a, b) may match: |P| within |a| / [hi_scale,
        lo_scale] and log(|Q| / |P|) within the bins around log(|b| / |a|) ± d_tol.

        Returns (index of the measured pair, lo, hi) per visited bin (rows lo..hi-1)."""
        la = np.abs(a)
        r = np.log(np.abs(b) / la)
        k0 = np.floor((r - d_tol) / self.RATIO_BIN).astype(np.int64)
        k1 = np.floor((r + d_tol) / self.RATIO_BIN).astype(np.int64)
        nb = int((k1 - k0).max()) + 1 if len(a) else 0
        idx = np.repeat(np.arange(len(a)), nb)
        kk = (k0[:, None] + np.arange(nb)[None, :]).ravel()
        ok = kk <= np.repeat(k1, nb)
        idx, kk = idx[ok], kk[ok]
        base = (kk - self.RATIO_OFFSET) * self.KEY
        lo = np.searchsorted(self.pair_key, base + la[idx] / hi_scale, side="left")
        hi = np.searchsorted(self.pair_key, base + la[idx] / lo_scale, side="right")
        return idx, lo, hi

    def expected_weight(self, p: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """Total weight of allowed spots of patterns ``p`` with |g| <= radius (pattern units)."""
        p = np.asarray(p)
        key = p * self.KEY + np.minimum(radius, self.KEY * 0.99)
        i = np.searchsorted(self.cov_key, key, side="right")
        return self.cov_cum[i] - self.cov_cum[self.cov_start[p]]


def build_library(phases, max_index: int = 3, g_max: float = 18.0, keep_forbidden: bool = True,
                  forbidden_weight: float = 0.3, n_seeds: int = 16, debye_waller_A2: float = 0.5,
                  progress=None) -> PatternLibrary:
    """Zone patterns of every phase (|zone indices| <= max_index, spots up to g_max nm^-1), stacked."""
    patterns: list[ZonePattern] = []
    owner: list[int] = []
    for i, ph in enumerate(phases):
        pats = _cached_patterns(ph, max_index, float(g_max), bool(keep_forbidden), float(forbidden_weight),
                                int(n_seeds), float(debye_waller_A2))
        patterns += pats
        owner += [i] * len(pats)
        if progress:
            progress(i + 1, len(phases), "phases")
    if not patterns:
        raise ValueError("no observable zone pattern in any candidate phase")
    NP = max(p.N for p in patterns)
    P = len(patterns)
    S = 2 * NP + 1
    kind = np.zeros((P, S, S), np.int8)
    weight = np.zeros((P, S, S), np.float32)
    for j, p in enumerate(patterns):
        o = NP - p.N
        kind[j, o:o + 2 * p.N + 1, o:o + 2 * p.N + 1] = p.kind
        weight[j, o:o + 2 * p.N + 1, o:o + 2 * p.N + 1] = p.weight
    basis = np.array([p.basis for p in patterns])
    binv = np.linalg.inv(basis)
    order = np.array([p.order for p in patterns])
    # coverage table
    keys, ws, starts = [], [], []
    n = 0
    for j, p in enumerate(patterns):
        sel = (p.pts_kind == ALLOWED) & (p.pts_w > 0)
        g = np.hypot(*p.points[sel].T)
        o = np.argsort(g, kind="stable")
        keys.append(j * PatternLibrary.KEY + g[o])
        ws.append(p.pts_w[sel][o])
        starts.append(n)
        n += int(sel.sum())
    cov_key = np.concatenate(keys)
    cov_cum = np.concatenate([[0.0], np.cumsum(np.concatenate(ws))])
    # seed pairs
    rows = []
    for j, p in enumerate(patterns):
        S1 = p.seeds[:, 0] + 1j * p.seeds[:, 1]
        S2 = np.concatenate([S1, -S1])
        Pm, Qm = np.meshgrid(S1, S2, indexing="ij")
        Pm, Qm = Pm.ravel(), Qm.ravel()
        cross = (Pm.conj() * Qm).imag
        ok = np.abs(cross) >= MIN_PAIR_SIN * np.abs(Pm) * np.abs(Qm)
        Pm, Qm = Pm[ok], Qm[ok]
        rows.append((Pm, Qm, np.full(len(Pm), j)))
    pP = np.concatenate([r[0] for r in rows])
    pQ = np.concatenate([r[1] for r in rows])
    pp = np.concatenate([r[2] for r in rows])
    # sorted by (bin of log |Q|/|P|, |P|): a measured pair only visits the library pairs of its own
    # length-ratio bins (see pair_ranges)
    rbin = np.floor(np.log(np.abs(pQ) / np.abs(pP)) / PatternLibrary.RATIO_BIN).astype(np.int64)
    o = np.lexsort((np.abs(pP), rbin))
    pP, pQ, pp, rbin = pP[o], pQ[o], pp[o], rbin[o]
    return PatternLibrary(
        phases=list(phases), patterns=patterns, phase_of=np.array(owner), g_max=float(g_max), NP=NP,
        kind=kind, weight=weight, basis=basis, binv=binv, order=order, cov_key=cov_key, cov_cum=cov_cum,
        cov_start=np.array(starts), pair_lenP=np.abs(pP), pair_p=pp, pair_P=pP, pair_Q=pQ,
        pair_key=(rbin - PatternLibrary.RATIO_OFFSET) * PatternLibrary.KEY + np.abs(pP),
    )


_PATTERN_CACHE: dict = {}


def _cached_patterns(phase, max_index, g_max, keep_forbidden, forbidden_weight, n_seeds, dw) -> list[ZonePattern]:
    key = (phase.name, phase.digest, max_index, g_max, keep_forbidden, forbidden_weight, n_seeds, dw)
    if key not in _PATTERN_CACHE:
        if len(_PATTERN_CACHE) > 512:
            _PATTERN_CACHE.clear()
        _PATTERN_CACHE[key] = zone_patterns(phase, max_index, g_max, keep_forbidden=keep_forbidden,
                                            forbidden_weight=forbidden_weight, n_seeds=n_seeds,
                                            debye_waller_A2=dw)
    return _PATTERN_CACHE[key]

