"""Simulated FFT spot lists with known answers (tests and bench of the orientation search).

Independent of the matcher's own model where it matters: the orientation comes from
:func:`temtwin.testing.synth.crystal.zone_frame`, reflections are enumerated directly in 3D (zone law
h·u + k·v + l·w = 0) and their visibility uses point-charge structure factors (f = Z, the convention
of the validation truth).  Spots are perturbed like real peak lists: calibration scale, affine
distortion (scan drift, shear), position noise, missing reflections, spurious spots (in Friedel pairs,
as in any power spectrum) and double-diffraction spots (kinematically forbidden zone reflections that
are sums of two allowed ones, e.g. Si 002 on [110]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synth.crystal import zone_frame
from ..phase.diffraction import allowed_mask, g_cartesian, structure_factors


@dataclass
class SimulatedSpots:
    """A simulated peak list and its truth."""

    kx: np.ndarray
    ky: np.ndarray
    snr: np.ndarray
    true: np.ndarray              # bool: a real reflection (not spurious)
    hkl: np.ndarray               # (n, 3), zeros for spurious spots
    M: np.ndarray                 # true orientation matrix
    scale: float
    ref_angles_deg: np.ndarray    # image angles of the true reference shell (largest-d allowed)
    rotation_deg: float           # smallest of them (the validation convention)


def zone_reflections(phase, uvw, g_max: float):
    """hkl (n, 3) of the zone [uvw] with 0 < |g| <= g_max (nm^-1), |F| (f = Z) and allowed flags."""
    uvw = np.asarray(uvw, int)
    amax = np.linalg.norm(phase.lattice_nm, axis=1).max()
    H = int(np.ceil(g_max * amax)) + 1
    r = np.arange(-H, H + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ uvw == 0) & np.any(hkl != 0, axis=1)]
    g = np.linalg.norm(g_cartesian(phase.reciprocal_nm, hkl), axis=1)
    hkl = hkl[g <= g_max]
    F = structure_factors(phase, hkl, point_charges=True)
    return hkl, np.abs(F), allowed_mask(F)


def simulate_spots(phase, uvw, rotation_deg: float, rng: np.random.Generator, scale: float = 1.0,
                   g_max: float = 8.0, distortion=None, position_noise: float = 0.004,
                   abs_noise: float = 0.01, missing: float = 0.2, n_spurious: int = 2,
                   n_visible: int = 24, dynamical: bool = True, orientation=None) -> SimulatedSpots:
    """A peak list of ``phase`` along ``uvw`` rotated by ``rotation_deg`` (reference direction of
    :func:`~temtwin.testing.synth.crystal.zone_frame`).

    scale: measured/true |g| (a calibration error: 1.03 for a stated pixel size 3 % too small).
    distortion: 2x2 real-space affine E (r' = (I + E) r); reciprocal vectors map with (I + E)^-T.
    position_noise: relative Gaussian noise on each position; abs_noise: absolute (nm^-1).
    missing: fraction of the visible reflections dropped at random (with their Friedel mates).
    n_spurious: spurious Friedel pairs added; n_visible: reflections kept by decreasing intensity.
    orientation: an explicit orientation matrix (then ``uvw`` must be its beam direction and
    ``rotation_deg`` is ignored), e.g. for twins.
    """
    L = phase.lattice_nm
    M = zone_frame(L, uvw, rotation_deg) if orientation is None else np.asarray(orientation, float)
    hkl, F, allowed = zone_reflections(phase, uvw, g_max)
    g3 = g_cartesian(phase.reciprocal_nm, hkl) @ M.T
    g = g3[:, 0] + 1j * g3[:, 1]
    glen = np.abs(g)
    # reference shell (largest-d allowed)
    gmin = glen[allowed].min()
    shell = allowed & np.isclose(glen, gmin, rtol=1e-6)
    ref = np.rad2deg(np.angle(g[shell])) % 360.0
    # visibility: |F|^2 with an envelope; dynamical spots from sums of allowed ones
    inten = np.where(allowed, F**2, 0.0) * np.exp(-(glen / (0.6 * g_max)) ** 2)
    if dynamical:
        al = {tuple(h) for h in hkl[allowed]}
        for i in np.flatnonzero(~allowed):
            h = hkl[i]
            if any(tuple(h - np.asarray(a)) in al for a in al):
                inten[i] = 0.15 * np.median(inten[allowed])
    vis = np.flatnonzero(inten > 0)
    vis = vis[np.argsort(-inten[vis], kind="stable")][:n_visible]
    # a power spectrum is centrosymmetric: reflections go missing in Friedel pairs
    drop = {}
    for i in vis:
        h = tuple(hkl[i])
        mate = tuple(-x for x in h)
        if mate in drop:
            drop[h] = drop[mate]
        else:
            drop[h] = rng.random() < missing
    keep = np.array([i for i in vis if not drop[tuple(hkl[i])]], int)
    # the two strongest shells always visible (a real FFT shows them), at least 4 spots
    if len(keep) < 4:
        keep = vis[:4]
    A = np.eye(2) + (np.zeros((2, 2)) if distortion is None else np.asarray(distortion, float))
    gv = np.stack([g[keep].real, g[keep].imag], 1) @ np.linalg.inv(A)   # g' = A^-T g (row vectors)
    gk = scale * (gv[:, 0] + 1j * gv[:, 1])
    n = len(gk)
    gk = gk * (1 + position_noise * rng.standard_normal(n)) + abs_noise * (rng.standard_normal(n)
                                                                          + 1j * rng.standard_normal(n))
    snr = 4 + 40 * np.sqrt(inten[keep] / inten[vis].max())
    kx, ky, sn, tr, hk = [gk.real], [gk.imag], [snr], [np.ones(n, bool)], [hkl[keep]]
    gm = float(np.abs(gk).max()) if n else g_max
    for _ in range(n_spurious):
        r = rng.uniform(0.25, 1.0) * gm
        t = rng.uniform(0, 2 * np.pi)
        v = r * np.exp(1j * t)
        s = rng.uniform(3, 12)
        kx.append(np.array([v.real, -v.real]))
        ky.append(np.array([v.imag, -v.imag]))
        sn.append(np.array([s, s]))
        tr.append(np.zeros(2, bool))
        hk.append(np.zeros((2, 3), int))
    return SimulatedSpots(np.concatenate(kx), np.concatenate(ky), np.concatenate(sn), np.concatenate(tr),
                          np.concatenate(hk), M, float(scale), np.sort(ref), float(ref.min()))


def angle_set_error(found_deg, true_deg) -> float:
    """Rotation error (deg) between two sets of reference-shell angles: the largest distance from a
    true angle to the nearest found one, on the circle (0 when the sets coincide)."""
    f = np.asarray(found_deg, float)[None, :]
    t = np.asarray(true_deg, float)[:, None]
    d = np.abs((f - t + 180.0) % 360.0 - 180.0)
    return float(d.min(1).max())


LOW_INDEX_ZONES = {
    "cubic": [(0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2)],
    "hexagonal": [(0, 0, 1), (1, 1, 0), (1, -1, 0)],
    "tetragonal": [(0, 0, 1), (1, 0, 0), (1, 1, 0)],
    "other": [(0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 0)],
}


def low_index_zones(phase) -> list[tuple[int, int, int]]:
    """The validation set's zone list for the phase's crystal system (hexagonal axes for trigonal);
    [001] only for a 2D crystal (:mod:`temtwin.phase.layers`)."""
    from ..phase.layers import is_two_dimensional

    if is_two_dimensional(phase):
        return [(0, 0, 1)]
    if phase.is_hexagonal:
        return LOW_INDEX_ZONES["hexagonal"]
    return LOW_INDEX_ZONES.get(phase.crystal_system, LOW_INDEX_ZONES["other"])


def indistinguishable(a, b, rel: float = 0.03) -> bool:
    """The validation set's rule: same crystal system and centring, all lattice parameters within 3 %
    and angles within 1° (such phases cannot be told apart from spot geometry)."""
    if a.crystal_system != b.crystal_system or a.space_group[:1] != b.space_group[:1]:
        return False
    return bool(np.all(np.abs(a.abc_nm / b.abc_nm - 1) < rel) and np.all(np.abs(a.angles_deg - b.angles_deg) < 1))


def is_two_dimensional(sim: SimulatedSpots) -> bool:
    """True when the true spots span two directions (a zone pattern, not a single row of fringes)."""
    v = sim.kx[sim.true] + 1j * sim.ky[sim.true]
    if len(v) < 2:
        return False
    ref = v[np.argmax(np.abs(v))]
    return bool(np.max(np.abs((ref.conjugate() * v).imag)) > 0.1 * np.abs(ref) * np.abs(v).max())


def held_set(phases, rng: np.random.Generator, n_distractors: int = 5, repeats: int = 1,
             scale_range: float = 0.01, pool=None, exclude_coincident: bool = False, scale: float | None = None,
             **kw):
    """Generated cases: every phase of ``phases`` x its low-index zones, random in-plane rotation and
    calibration (uniform within ±scale_range), with candidates = the phase + ``n_distractors`` random
    others (from ``pool``, default ``phases``) that are not :func:`indistinguishable` from it.  Yields
    (phase, zone, SimulatedSpots, candidate list); ``kw`` go to :func:`simulate_spots`.
    One-dimensional patterns are skipped.  ``exclude_coincident``: also leave out distractors with a
    zone whose allowed-spot lattice coincides with the true one (:func:`coincident_zone`), i.e.
    ambiguities no spot-geometry method can resolve.  ``scale``: a fixed calibration error instead
    (then distractors coinciding with the true lattice or with the scaled one are excluded).
    """
    kw = {"g_max": 10.0, "missing": 0.25, "n_spurious": 2, **kw}
    for _ in range(repeats):
        for ph in phases:
            for z in low_index_zones(ph):
                s = scale if scale is not None else 1 + rng.uniform(-scale_range, scale_range)
                sim = simulate_spots(ph, z, rng.uniform(0, 360), rng, scale=s, **kw)
                if not is_two_dimensional(sim):
                    continue
                others = [p for p in (pool or phases) if p.name != ph.name and not indistinguishable(p, ph)]
                if exclude_coincident:
                    others = [p for p in others if not coincident_zone(ph, z, p, scales=(1.0, s))]
                pick = rng.choice(len(others), min(n_distractors, len(others)), replace=False)
                yield ph, z, sim, [ph] + [others[i] for i in pick]


def allowed_lattice_shape(pattern) -> tuple[float, float, float]:
    """(|b1|, |b2|/|b1|, |cos γ|) of the reduced basis of the 2D lattice generated by a zone pattern's
    allowed reflections (what spot geometry alone can measure)."""
    from ..lattice_reduction import gauss_reduce
    from ..phase.diffraction import ALLOWED

    pts = pattern.points[pattern.pts_kind == ALLOWED]
    order = np.argsort(np.hypot(*pts.T), kind="stable")
    pts = pts[order]
    b1 = pts[0]
    cross = np.abs(b1[0] * pts[:, 1] - b1[1] * pts[:, 0])
    ok = cross > 1e-6 * np.hypot(*b1) * np.hypot(*pts.T)
    area = cross[ok].min()
    cand = pts[ok & (cross < area * (1 + 1e-6))]
    b1, b2 = gauss_reduce(b1, cand[0], lambda v: v)
    n1, n2 = np.hypot(*b1), np.hypot(*b2)
    return float(n1), float(n2 / n1), float(abs(b1 @ b2) / (n1 * n2))


_SHAPES: dict = {}


def _zone_shapes(phase, max_index: int, g_max: float) -> list:
    from ..phase.zones import zone_patterns

    key = (phase.name, phase.digest, max_index, g_max)
    if key not in _SHAPES:
        _SHAPES[key] = [allowed_lattice_shape(p) for p in zone_patterns(phase, max_index, g_max)]
    return _SHAPES[key]


def coincident_zone(phase, uvw, other, max_index: int = 3, scale_tol: float = 0.03,
                    shape_tol: float = 0.01, g_max: float = 10.0, scales=(1.0,)) -> bool:
    """True when some zone of ``other`` gives the same allowed-spot lattice as ``phase`` along ``uvw``
    (within ``scale_tol`` in size, about any of ``scales`` times the true size, and ``shape_tol`` in
    shape): spot geometry cannot tell them apart."""
    from ..phase.zones import build_pattern

    a = allowed_lattice_shape(build_pattern(phase, uvw, g_max))
    for b in _zone_shapes(other, max_index, g_max):
        if (any(abs(b[0] / (a[0] * c) - 1) <= scale_tol for c in scales)
                and abs(b[1] - a[1]) <= shape_tol * a[1] and abs(b[2] - a[2]) <= shape_tol):
            return True
    return False
