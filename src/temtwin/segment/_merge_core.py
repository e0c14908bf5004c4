"""Numba kernels of the region merging described in :mod:`temtwin.segment.merge`.

Regions are ids 1..n-1 with area, feature sums, a union-find parent and a version counter; a
boundary e between regions ea[e] < eb[e] carries its length, Canny-edge count, summed edge strength
and summed feature jump (oriented from ea to eb).  Adjacency is one typed dict per region
(neighbour -> boundary id).  Merging uses a binary heap of (strength, a, b, version_a, version_b)
with lazy re-evaluation: an entry whose regions changed since it was pushed is re-scored when it
reaches the top, so a merge costs O(degree of the absorbed region · log E).

``params`` = [1/min_boundary_g, min_contrast, min_significance, min_jump, min_support,
(unused), step_width, min_area, max_transition_width, thin_width]; ``ca`` the per-channel correlation areas.
"""

from __future__ import annotations

import heapq

import numba as nb
import numpy as np
from numba import types
from numba.typed import Dict, List

_KEY = types.int64
_VAL = types.int64

P_INV_G, P_CONTRAST, P_SIGNIF, P_JUMP, P_SUPPORT, P_CORR, P_WIDTH, P_MINAREA, P_TRANS, P_THIN = range(10)


@nb.njit(cache=True)
def _difference(a, b, area, sums, inv_noise, p, ca):
    """max over channels of min(z/min_contrast, t/min_significance)."""
    best = 0.0
    for c in range(sums.shape[0]):
        se = np.sqrt(ca[c] / area[a] + ca[c] / area[b])
        z = abs(sums[c, a] / area[a] - sums[c, b] / area[b]) * inv_noise[c]
        v = min(z / p[P_CONTRAST], z / se / p[P_SIGNIF])
        if v > best:
            best = v
    return best


@nb.njit(cache=True)
def _edge(a, b, e, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p):
    """Edge evidence: max(jump ratio / min_jump, support / min_support)."""
    sign = 1.0 if e_a[e] == a else -1.0          # jump stored oriented e_a -> e_b
    ww = 0.0
    dw = 0.0
    for c in range(sums.shape[0]):
        w = (sums[c, b] / area[b] - sums[c, a] / area[a]) * inv_noise[c]
        d = sign * e_jump[c, e] / e_len[e] * p[P_WIDTH] * inv_noise[c]
        ww += w * w
        dw += d * w
    ratio = dw / max(ww, 1e-12)
    return max(ratio / p[P_JUMP], e_sup[e] / e_len[e] / max(p[P_SUPPORT], 1e-9))


@nb.njit(cache=True)
def _strength(mode, a, b, e, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p, ca):
    if mode == 0:      # grow: merge while low mean G and no difference
        return max(e_g[e] / e_len[e] * p[P_INV_G], _difference(a, b, area, sums, inv_noise, p, ca))
    # validate: merge when no difference or no edge
    return min(_difference(a, b, area, sums, inv_noise, p, ca),
               _edge(a, b, e, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p))


@nb.njit(cache=True)
def _absorb(a, b, parent, version, area, sums, adj, e_a, e_b, e_len, e_sup, e_g, e_jump, alive_e, touched):
    """Merge region b into a; ``touched`` receives the neighbours whose boundary with a changed."""
    parent[b] = a
    area[a] += area[b]
    for c in range(sums.shape[0]):
        sums[c, a] += sums[c, b]
    area[b] = 0.0
    touched.clear()
    for c, e in adj[b].items():
        if c == a:
            alive_e[e] = False
            continue
        adj[c].pop(b)
        # orient e's jump as b -> c
        if e_a[e] != b:
            for k in range(e_jump.shape[0]):
                e_jump[k, e] = -e_jump[k, e]
        if c in adj[a]:
            f = adj[a][c]
            sgn = 1.0 if e_a[f] == a else -1.0   # add (b -> c) jump to f's orientation
            e_len[f] += e_len[e]
            e_sup[f] += e_sup[e]
            e_g[f] += e_g[e]
            for k in range(e_jump.shape[0]):
                e_jump[k, f] += sgn * e_jump[k, e]
            alive_e[e] = False
        else:
            e_a[e] = a
            e_b[e] = c
            adj[a][c] = e
            adj[c][a] = e
        touched.append(c)
    adj[a].pop(b, -1)
    adj[b].clear()
    version[a] += 1
    version[b] += 1


@nb.njit(cache=True)
def _merge_pass(mode, parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                alive_e, p, ca):
    heap = [(0.0, np.int64(0), np.int64(0), np.int64(0), np.int64(0))]
    heap.pop()
    for e in range(len(e_a)):
        if alive_e[e]:
            a, b = e_a[e], e_b[e]
            s = _strength(mode, a, b, e, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p, ca)
            if s < 1.0:
                heap.append((s, a, b, version[a], version[b]))
    heapq.heapify(heap)
    touched = List.empty_list(types.int64)
    while len(heap) > 0:
        s, a, b, va, vb = heapq.heappop(heap)
        if parent[a] != a or parent[b] != b or area[a] == 0 or area[b] == 0:
            continue
        if b not in adj[a]:
            continue
        e = adj[a][b]
        if version[a] != va or version[b] != vb:
            s2 = _strength(mode, a, b, e, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p, ca)
            if s2 < 1.0:
                heapq.heappush(heap, (s2, a, b, version[a], version[b]))
            continue
        if area[b] > area[a]:
            a, b = b, a
        _absorb(a, b, parent, version, area, sums, adj, e_a, e_b, e_len, e_sup, e_g, e_jump, alive_e, touched)
        for i in range(len(touched)):
            c = touched[i]
            f = adj[a][c]
            s2 = _strength(mode, a, c, f, area, sums, inv_noise, e_a, e_len, e_sup, e_g, e_jump, p, ca)
            if s2 < 1.0:
                heapq.heappush(heap, (s2, a, c, version[a], version[c]))


@nb.njit(cache=True)
def _merge_transitions(parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                       alive_e, p, ca):
    """Thin regions (mean width area / half perimeter < max_transition_width) whose mean lies between
    their two longest-bordering neighbours join the nearer; those thinner than thin_width join
    their most similar neighbour in any case."""
    n = len(area)
    cand_w = []
    cand_r = []
    for r in range(1, n):
        if parent[r] == r and area[r] > 0 and len(adj[r]) >= 2:
            per = 0.0
            for e in adj[r].values():
                per += e_len[e]
            w = area[r] / max(0.5 * per, 1.0)
            if w < max(p[P_TRANS], p[P_THIN]):
                cand_w.append(w)
                cand_r.append(r)
    order = np.argsort(np.array(cand_w)) if len(cand_w) > 0 else np.zeros(0, np.int64)
    touched = List.empty_list(types.int64)
    C = sums.shape[0]
    for i in order:
        r = cand_r[i]
        if parent[r] != r or area[r] == 0 or len(adj[r]) < 2:
            continue
        a = -1
        b = -1
        la = -1.0
        lb = -1.0
        for c, e in adj[r].items():
            if e_len[e] > la:
                b, lb = a, la
                a, la = c, e_len[e]
            elif e_len[e] > lb:
                b, lb = c, e_len[e]
        dd = 0.0
        num = 0.0
        for k in range(C):
            d = (sums[k, b] / area[b] - sums[k, a] / area[a]) * inv_noise[k]
            m = (sums[k, r] / area[r] - sums[k, a] / area[a]) * inv_noise[k]
            dd += d * d
            num += m * d
        if dd <= 0:
            continue
        alpha = num / dd
        resid = 0.0
        for k in range(C):
            d = (sums[k, b] / area[b] - sums[k, a] / area[a]) * inv_noise[k]
            m = (sums[k, r] / area[r] - sums[k, a] / area[a]) * inv_noise[k]
            resid = max(resid, abs(m - alpha * d))
        if 0.0 < alpha < 1.0 and resid < p[P_CONTRAST]:
            tgt = a if alpha < 0.5 else b
        elif cand_w[i] < p[P_THIN]:
            # thinner than the feature resolution: join the most similar neighbour
            tgt = -1
            best_s = 1e300
            for c in adj[r].keys():
                sc = _difference(r, c, area, sums, inv_noise, p, ca)
                if sc < best_s:
                    best_s = sc
                    tgt = c
        else:
            continue
        _absorb(tgt, r, parent, version, area, sums, adj, e_a, e_b, e_len, e_sup, e_g, e_jump, alive_e, touched)


@nb.njit(cache=True)
def _merge_small(parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                 alive_e, p, ca):
    """Regions below the minimum area join their most similar neighbour, smallest first."""
    n = len(area)
    heap = [(0.0, np.int64(0))]
    heap.pop()
    for r in range(1, n):
        if parent[r] == r and 0 < area[r] < p[P_MINAREA]:
            heap.append((area[r], np.int64(r)))
    heapq.heapify(heap)
    touched = List.empty_list(types.int64)
    while len(heap) > 0:
        ar, r = heapq.heappop(heap)
        if parent[r] != r or area[r] != ar or area[r] >= p[P_MINAREA]:
            continue
        best = -1
        best_s = 1e300
        best_len = -1.0
        for c, e in adj[r].items():
            s = _difference(r, c, area, sums, inv_noise, p, ca)
            if s < best_s or (s == best_s and e_len[e] > best_len):
                best, best_s, best_len = c, s, e_len[e]
        if best < 0:
            continue
        _absorb(best, r, parent, version, area, sums, adj, e_a, e_b, e_len, e_sup, e_g, e_jump, alive_e,
                touched)
        if area[best] < p[P_MINAREA]:
            heapq.heappush(heap, (area[best], np.int64(best)))


@nb.njit(cache=True)
def _compress(parent):
    """Path compression: every id -> the root of its merge tree (in place)."""
    for i in range(len(parent)):
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    return parent


@nb.njit(cache=True)
def _run(n, area, sums, inv_noise, e_a, e_b, e_len, e_sup, e_g, e_jump, p, ca, stages):
    parent = np.arange(n)
    version = np.zeros(n, np.int64)
    adj = List()
    for _ in range(n):
        adj.append(Dict.empty(_KEY, _VAL))
    alive_e = np.ones(len(e_a), np.bool_)
    for e in range(len(e_a)):
        adj[e_a[e]][e_b[e]] = e
        adj[e_b[e]][e_a[e]] = e
    if stages == 0 or stages == 2:
        _merge_pass(0, parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                    alive_e, p, ca)
    if stages == 0:
        return _compress(parent)
    _merge_pass(1, parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump, alive_e, p,
                ca)
    _merge_transitions(parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                       alive_e, p, ca)
    if p[P_MINAREA] > 0:
        _merge_small(parent, version, area, sums, inv_noise, adj, e_a, e_b, e_len, e_sup, e_g, e_jump,
                     alive_e, p, ca)
    return _compress(parent)


def run_merge(n, area, sums, inv_noise, e_a, e_b, e_len, e_sup, e_g, e_jump, params, corr_area,
              stages: str = "all") -> np.ndarray:
    """Run merge stages; returns the root id of every region id.

    stages: "grow" (pass 1 only), "validate" (pass 2, transitions, minimum area) or "all".
    corr_area: (C,) correlation area of each channel's noise (pixels)."""
    code = {"grow": 0, "validate": 1, "all": 2}[stages]
    return _run(int(n), area.copy(), sums.copy(), inv_noise, e_a.copy(), e_b.copy(), e_len.copy(),
                e_sup.copy(), e_g.copy(), e_jump.copy(), params, corr_area, code)
