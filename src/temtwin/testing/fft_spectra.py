"""Simulated FFTs with exact ground-truth reflections (training data for the U-Net, tests, bench).

Two generators:

* :func:`simulate_spectrum`: a kinematical power spectrum drawn directly on the standard grid
  (see :mod:`.fftprep`): the zone-axis reciprocal lattice of a real crystal (built-in phases Si,
  Ge, GaAs, InP, InSb, Au, Cu, Al and every CIF in ``resources/phases``; low-index zone axes), or a
  random 2D lattice, optionally with a second overlapping grain; in-plane rotation, sampling
  (pixel size and window), affine distortion (strain, scan drift), spot broadening, kinematical
  intensities |F|^2 with an envelope and a CTF-like modulation; a radial background with optional
  Thon rings (amorphous film, possibly astigmatic) and cross-shaped streak artefacts; Welch noise
  from ``M`` averaged tiles, centrosymmetric like the power spectrum of any real image.  Each
  reflection is the exact Hann main lobe of the tile window, so the truth positions are exact; the
  noise is complex Gaussian passed through the same window.
* :func:`render_region`: a real-space image rendered with :mod:`temtwin.testing.synth` (HAADF or HRTEM,
  dose, scan drift) whose truth is the projected reciprocal lattice of the zone, with the visible
  reflections measured on the noise-free image.

Truth spot positions are float grid (row, col) positions; ``snr`` is the expected significance of
the reflection at its nearest pixel (the quantity reported as SNR, see :mod:`.fftprep`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..peaks.fftprep import Spectrum, region_spectrum, standardise

BUILTIN_PHASES = ("Si", "Ge", "GaAs", "InP", "InSb", "Au", "Cu", "Al")
CUBIC_ZONES = ((0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 2), (0, 1, 2), (0, 1, 3), (1, 2, 3), (1, 1, 3))
GENERIC_ZONES = ((0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1), (2, 1, 0),
                 (1, -1, 0), (2, -1, 0))
ELECTRON_WAVELENGTH_NM = 1.9687e-3  # 300 kV


def available_phases() -> list[str]:
    """Built-in phases plus the CIF stems in resources/phases (when present)."""
    from .synth.crystal import RESOURCE_PHASES

    names = list(BUILTIN_PHASES)
    if RESOURCE_PHASES.is_dir():
        names += sorted(p.stem for p in RESOURCE_PHASES.glob("*.cif") if p.stem not in names)
    return names


@lru_cache(maxsize=256)
def _structure_arrays(phase: str):
    from .synth.crystal import load_structure

    st = load_structure(phase)
    frac = np.array([s.frac_coords for s in st.sites]) % 1.0
    Z = np.array([s.specie.Z for s in st.sites], float)
    recip = st.lattice.reciprocal_lattice_crystallographic.matrix * 10.0  # rows a*, b*, c* in nm^-1
    cubic = bool(st.lattice.is_orthogonal and np.ptp(st.lattice.abc) < 1e-6)
    return st.lattice.matrix / 10.0, recip, frac, Z, cubic


def zone_lattice(phase: str, zone_axis, rotation_deg: float, g_max: float, distortion=None):
    """The zero-order Laue zone of ``phase`` along ``zone_axis``, in the image frame.

    Returns dict: ``g`` (n, 2) [kx, ky] nm^-1 of every reciprocal lattice point with 0 < |g| <= g_max
    (extinct ones included), ``F2`` (n,) kinematical |F|^2 with f = Z (0 for extinct points),
    ``hkl`` (n, 3), ``M`` the orientation matrix.  ``distortion`` (2x2, u = E r) maps the lattice
    (reciprocal vectors transform with (I + E)^-T).
    """
    from .synth.crystal import zone_frame

    L, recip, frac, Z, _ = _structure_arrays(phase)
    M = zone_frame(L, zone_axis, rotation_deg)
    uvw = np.asarray(zone_axis, int)
    amax = np.linalg.norm(L, axis=1).max()
    hmax = int(np.ceil(g_max * amax * 1.05)) + 1
    rng_ = np.arange(-hmax, hmax + 1)
    hkl = np.stack(np.meshgrid(rng_, rng_, rng_, indexing="ij"), -1).reshape(-1, 3)
    hkl = hkl[(hkl @ uvw) == 0]
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g3 = (hkl @ recip) @ M.T
    g = g3[:, :2]
    keep = np.hypot(g[:, 0], g[:, 1]) <= g_max * 1.2
    hkl, g = hkl[keep], g[keep]
    if distortion is not None:
        A = np.eye(2) + np.asarray(distortion, float)
        g = g @ np.linalg.inv(A)  # g' = A^-T g  (row vectors: g' = g A^-1)
    keep = np.hypot(g[:, 0], g[:, 1]) <= g_max
    hkl, g = hkl[keep], g[keep]
    F = (Z[None, :] * np.exp(2j * np.pi * (hkl @ frac.T))).sum(1)
    F2 = np.abs(F) ** 2
    F2[F2 < 1e-6 * max(F2.max(initial=0), 1e-30)] = 0.0
    return {"g": g, "F2": F2, "hkl": hkl, "M": M}


def hann_lobe(d: np.ndarray) -> np.ndarray:
    """Amplitude of the periodic Hann window's spectrum at offset ``d`` bins (1 at d = 0)."""
    return np.sinc(d) + 0.5 * np.sinc(d - 1.0) + 0.5 * np.sinc(d + 1.0)


@dataclass
class SimSpectrum:
    """A simulated standard-grid spectrum and its truth.

    spectrum: the standardised :class:`~temtwin.peaks.fftprep.Spectrum`.
    rows, cols: float grid positions of the reflections in the searched area (``spectrum.inner()``).
    snr: expected significance of each (the SNR the pipeline reports); amp: peak excess power.
    all_rows, all_cols, all_snr: every reflection of the valid area (training targets).
    info: the random choices (grains, tiles, streaks, Thon rings, ...).
    """

    spectrum: Spectrum
    rows: np.ndarray
    cols: np.ndarray
    snr: np.ndarray
    amp: np.ndarray
    info: dict = field(default_factory=dict)
    all_rows: np.ndarray | None = None
    all_cols: np.ndarray | None = None
    all_snr: np.ndarray | None = None

    def k(self):
        return self.spectrum.to_k(self.rows, self.cols)


def _random_lattice(rng, g_max):
    """A random 2D reciprocal lattice (n, 2) nm^-1 with random structure-factor weights."""
    a = rng.uniform(0.18, 1.2)
    b = a * rng.uniform(1.0, 2.5) if rng.random() < 0.6 else a
    gam = np.deg2rad(rng.choice([60.0, 90.0, 120.0]) if rng.random() < 0.5 else rng.uniform(55, 125))
    A = np.array([[a, 0], [b * np.cos(gam), b * np.sin(gam)]])  # rows: real-space a, b (nm)
    R = np.linalg.inv(A).T  # rows: reciprocal basis
    nmax = int(np.ceil(g_max / min(np.linalg.norm(R, axis=1)) * 1.5)) + 1
    ij = np.stack(np.meshgrid(np.arange(-nmax, nmax + 1), np.arange(-nmax, nmax + 1), indexing="ij"), -1)
    ij = ij.reshape(-1, 2)
    ij = ij[np.any(ij != 0, 1)]
    g = ij @ R
    keep = np.hypot(g[:, 0], g[:, 1]) <= g_max
    ij, g = ij[keep], g[keep]
    # weights symmetric under g -> -g; random extinctions of a centred cell
    key = np.where((ij[:, 0] > 0) | ((ij[:, 0] == 0) & (ij[:, 1] > 0)), 1, -1)[:, None] * ij
    _, inv = np.unique(key, axis=0, return_inverse=True)
    w = rng.lognormal(0, 1.0, inv.max() + 1)[inv.ravel()]
    if rng.random() < 0.3:
        w[(ij.sum(1) % 2) != 0] = 0.0
    return g, w


def _background(rng, k, kmag_max):
    """Radial background power (noise mean) at |k| (nm^-1), with optional Thon rings."""
    kc = rng.uniform(0.1, 0.6) * kmag_max
    p = rng.uniform(1.0, 3.0)
    B = 1.0 / (1.0 + (k / kc) ** p) + rng.uniform(0.02, 0.3)
    return B, kc


def _centrosymmetric(P: np.ndarray, c: int) -> np.ndarray:
    """The power spectrum of a real image is centrosymmetric: copy one half-plane onto the other."""
    S = P.shape[0]
    I, J = np.mgrid[0:S, 0:S]
    pi, pj = 2 * c - I, 2 * c - J
    take = ((I > c) | ((I == c) & (J > c))) & (pi >= 0) & (pj >= 0) & (pi < S) & (pj < S)
    out = P.copy()
    out[take] = P[pi[take], pj[take]]
    return out


def simulate_spectrum(rng: np.random.Generator, size: int = 128, n_tiles: int | None = None,
                      s_max: float | None = None, phase: str | None = None, zone_axis=None,
                      amorphous_only: bool = False, artefacts: bool = True, broaden: bool = True,
                      dk: float | None = None, second_grain: bool | None = None, noise: bool = True,
                      phases=BUILTIN_PHASES) -> SimSpectrum:
    """Draw one kinematical spectrum on a ``size`` x ``size`` standard grid (see module docstring).

    Every random choice comes from ``rng``; arguments fix a choice (``s_max``: power SNR of the
    brightest reflection; ``amorphous_only``: no crystal at all; ``phases``: the phase names drawn
    from, default the built-in ones so that the draws do not depend on resources/phases; pass
    :func:`available_phases` for every CIF).
    """
    S = size
    c = S // 2
    info: dict = {}
    # crystal lattice(s) first (shape only), then a sampling that puts them on the grid
    grains = []
    if not amorphous_only:
        n_grains = 2 if (second_grain if second_grain is not None else rng.random() < 0.15) else 1
        for _ in range(n_grains):
            rot = float(rng.uniform(0, 360))
            E = rng.normal(0, 0.015, (2, 2)) if rng.random() < 0.6 else None
            if phase is not None or rng.random() < 0.7:
                ph = str(phase or rng.choice(list(phases)))
                zones = CUBIC_ZONES if _structure_arrays(ph)[4] else GENERIC_ZONES
                za = tuple(zone_axis) if zone_axis is not None else zones[rng.integers(len(zones))]
                gz = zone_lattice(ph, za, rot, 12.0, distortion=E)
                gz = gz["g"][gz["F2"] > 0]
                grains.append(("phase", ph, za, rot, E, gz))
            else:
                g2, w2 = _random_lattice(rng, 12.0)
                th = np.deg2rad(rot)
                Rm = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
                g2 = g2 @ Rm.T
                if E is not None:
                    g2 = g2 @ np.linalg.inv(np.eye(2) + E)
                grains.append(("random", g2, w2, rot, None, g2[w2 > 0]))
    if dk is None:
        gmins = [np.hypot(*gr[5].T).min() for gr in grains if len(gr[5])]
        lo, hi = 0.015, 0.4
        if gmins:
            gmin = min(gmins)
            lo, hi = max(lo, gmin / (0.45 * S)), min(hi, gmin / 5.0)
            if lo > hi:
                lo = hi
        dk = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    ratio = 1.0 + (rng.uniform(-0.03, 0.03) if rng.random() < 0.3 else 0.0)
    dkx, dky = dk, dk * ratio
    rr, cc = np.mgrid[0:S, 0:S].astype(float)
    KX, KY = (cc - c) * dkx, (rr - c) * dky
    K = np.hypot(KX, KY)
    kmag_max = c * dk
    # valid area: Nyquist inside the grid sometimes (small windows / low magnification)
    valid = np.ones((S, S), bool)
    if rng.random() < 0.25:
        nq = rng.uniform(0.55, 1.0) * c
        valid = (np.abs(rr - c) <= nq) & (np.abs(cc - c) <= nq)
    # background
    B, _ = _background(rng, K, kmag_max)
    if rng.random() < 0.45 or amorphous_only:
        df = rng.uniform(-150, 150)
        cs = rng.choice([0.0, 1e6, 1.5e4])
        lam = ELECTRON_WAVELENGTH_NM
        az = np.arctan2(KY, KX)
        ast = rng.uniform(0, 25) if rng.random() < 0.4 else 0.0
        dfa = df + ast * np.cos(2 * (az - rng.uniform(0, np.pi)))
        chi = np.pi * lam * dfa * K ** 2 - 0.5 * np.pi * cs * lam ** 3 * K ** 4
        # rings closer than the grid resolves are averaged by the window (no aliasing moire)
        dchi = np.abs(2 * np.pi * lam * dfa * K - 2 * np.pi * cs * lam ** 3 * K ** 3) * dk
        ring = 0.5 + (np.sin(chi) ** 2 - 0.5) * np.exp(-(dchi / 1.5) ** 2)
        env = np.exp(-(K / rng.uniform(3, 12)) ** 2)
        B = B + rng.uniform(0.3, 3.0) * ring * env / (1 + (K / 2.0) ** 2)
        info["thon"] = True
    # reflections on this grid
    g_max = kmag_max * 1.45
    gs, ws = [], []
    for k, gr in enumerate(grains):
        if gr[0] == "phase":
            _, ph, za, rot, E, _ = gr
            zl = zone_lattice(ph, za, rot, g_max, distortion=E)
            g, w = zl["g"], zl["F2"]
            info.setdefault("grains", []).append({"phase": ph, "zone_axis": list(map(int, za)), "rotation_deg": rot})
        else:
            _, g, w, rot, _, _ = gr
            keep = np.hypot(g[:, 0], g[:, 1]) <= g_max
            g, w = g[keep], w[keep]
            info.setdefault("grains", []).append({"phase": "random2d", "rotation_deg": rot})
        gs.append(g)
        ws.append(w * rng.uniform(0.2, 1.0) if k > 0 else w)
    if gs:
        g = np.concatenate(gs)
        w = np.concatenate(ws).astype(float)
    else:
        g = np.zeros((0, 2))
        w = np.zeros(0)
    rows = g[:, 1] / dky + c
    cols = g[:, 0] / dkx + c
    inside = (rows >= 0) & (rows <= S - 1) & (cols >= 0) & (cols <= S - 1)
    ri, ci = np.clip(np.rint(rows).astype(int), 0, S - 1), np.clip(np.rint(cols).astype(int), 0, S - 1)
    inside &= valid[ri, ci] & (np.hypot(rows - c, cols - c) >= 3)
    g, w, rows, cols = g[inside], w[inside], rows[inside], cols[inside]
    gm = np.hypot(g[:, 0], g[:, 1])
    # intensity envelope (Debye-Waller / information limit) and CTF-like modulation
    env = np.exp(-(gm / rng.uniform(3.0, 15.0)) ** 2)
    if rng.random() < 0.5:
        env *= 0.15 + 0.85 * np.sin(np.pi * ELECTRON_WAVELENGTH_NM * rng.uniform(-100, 100) * gm ** 2 + 0.8) ** 2
    w = w * env
    # noise: number of averaged tiles
    M = int(n_tiles if n_tiles is not None else np.clip(np.rint(np.exp(rng.uniform(0, np.log(40)))), 1, 40))
    Bi = B[np.clip(np.rint(rows).astype(int), 0, S - 1), np.clip(np.rint(cols).astype(int), 0, S - 1)]
    if s_max is None:
        s_max = float(np.exp(rng.uniform(np.log(2.0), np.log(2000.0))))
    rel = w / np.maximum(Bi / np.sqrt(M), 1e-30)
    amp = np.zeros_like(w) if rel.size == 0 or rel.max() <= 0 else w * s_max / rel.max()
    # spot field: Hann lobes, optionally broadened (Monte-Carlo convolution with a Gaussian)
    half = 6
    off = np.arange(-half, half + 1)
    field_ = np.zeros((S, S), complex)
    n = len(rows)
    if n:
        r0 = np.rint(rows).astype(int)
        c0 = np.rint(cols).astype(int)
        dr = (r0[:, None] + off[None, :]) - rows[:, None]  # (n, P)
        dc = (c0[:, None] + off[None, :]) - cols[:, None]
        prof = (hann_lobe(dr)[:, :, None] * hann_lobe(dc)[:, None, :]) ** 2  # power, (n, P, P)
        if broaden and rng.random() < 0.5:
            sig = rng.uniform(0.2, 1.3, 2)
            th = rng.uniform(0, np.pi)
            Rb = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) * sig[None, :]
            eps = rng.normal(size=(12, 2)) @ Rb.T
            eps -= eps.mean(0)
            prof = np.mean([(hann_lobe(dr - e[0])[:, :, None] * hann_lobe(dc - e[1])[:, None, :]) ** 2
                            for e in eps], axis=0)
            info["broadening_px"] = sig.tolist()
        phase_ = np.exp(2j * np.pi * rng.random(n))
        vals = np.sqrt(amp)[:, None, None] * np.sqrt(prof) * phase_[:, None, None]
        RR = (r0[:, None] + off[None, :])[:, :, None] + 0 * off[None, None, :]
        CC = (c0[:, None] + off[None, :])[:, None, :] + 0 * off[None, :, None]
        ok = (RR >= 0) & (RR < S) & (CC >= 0) & (CC < S)
        np.add.at(field_, (RR[ok], CC[ok]), vals[ok])
        peak_excess = amp * prof.max(axis=(1, 2))
    else:
        peak_excess = np.zeros(0)
    # streak (cross) artefacts along the kx = 0 and/or ky = 0 axes
    streak = np.zeros((S, S))
    if artefacts and rng.random() < 0.3:
        lvl = rng.uniform(2.0, 30.0)
        width = rng.uniform(0.4, 1.0)
        if rng.random() < 0.7:
            streak += lvl * np.exp(-0.5 * ((cc - c) / width) ** 2) / (1 + np.abs(rr - c) / 10)
        if rng.random() < 0.7:
            streak += lvl * np.exp(-0.5 * ((rr - c) / width) ** 2) / (1 + np.abs(cc - c) / 10)
        info["streaks"] = True
    Btot = B * (1.0 + streak)
    # Welch noise: M tiles of complex Gaussian noise through the Hann window (3-tap kernel per axis)
    acc = np.zeros((S, S))
    kern = np.array([-0.25, 0.5, -0.25]) / np.sqrt(0.375)
    if not noise:
        acc = M * (np.abs(field_) ** 2 + Btot)
    for _ in range(M if noise else 0):
        wn = (rng.normal(size=(S, S)) + 1j * rng.normal(size=(S, S))) / np.sqrt(2)
        wn = kern[0] * np.roll(wn, 1, 0) + kern[1] * wn + kern[2] * np.roll(wn, -1, 0)
        wn = kern[0] * np.roll(wn, 1, 1) + kern[1] * wn + kern[2] * np.roll(wn, -1, 1)
        acc += np.abs(field_ + np.sqrt(Btot) * wn) ** 2
    power = _centrosymmetric(acc / M, c)
    power[~valid] = 0.0
    sp = standardise(power, valid, (dkx, dky), n_tiles=M, tile_px=(0, 0))
    # expected significance of each reflection at its nearest pixel, under the spectrum's own
    # (estimated) noise model, as the pipeline measures it
    if n:
        near = amp * prof[:, half, half]
        ri, ci = np.clip(r0, 0, S - 1), np.clip(c0, 0, S - 1)
        snr = sp.significance_of(sp.mu[ri, ci] + near, ri, ci)
        searched = sp.inner()[ri, ci]
    else:
        snr = np.zeros(0)
        searched = np.zeros(0, bool)
    info.update(n_tiles=M, dk=[dkx, dky], s_max=s_max)
    # truth of the searched area (beyond the ellipse inscribed in the measured band nothing is
    # searched); every reflection of the valid area in all_rows / all_cols / all_snr
    out = SimSpectrum(sp, rows[searched], cols[searched], snr[searched], peak_excess[searched], info)
    out.all_rows, out.all_cols, out.all_snr = rows, cols, snr
    return out


# ----------------------------------------------------------------------------- real-space renders

@dataclass
class RenderedRegion:
    """A rendered crystal image with its spectrum and truth (see :func:`render_region`)."""

    image: np.ndarray
    pixel_size_nm: tuple[float, float]
    spectrum: Spectrum
    rows: np.ndarray
    cols: np.ndarray
    snr: np.ndarray
    info: dict = field(default_factory=dict)


def truth_snr(clean: Spectrum, noisy: Spectrum, rows, cols) -> np.ndarray:
    """Expected significance of reflections: the noise-free excess power at their nearest pixel added to
    the noisy spectrum's background, under the noisy spectrum's noise model."""
    S = noisy.size
    i = np.clip(np.rint(rows).astype(int), 0, S - 1)
    j = np.clip(np.rint(cols).astype(int), 0, S - 1)
    excess = np.maximum(clean.power[i, j] - clean.mu[i, j], 0.0)
    return noisy.significance_of(noisy.mu[i, j] + excess, i, j)


def lattice_points_px(sp: Spectrum, g: np.ndarray):
    """Grid (rows, cols) of reciprocal vectors g (n, 2) [kx, ky] that fall in the searched area."""
    rows, cols = sp.to_px(g[:, 0], g[:, 1])
    S = sp.size
    ri = np.clip(np.rint(rows).astype(int), 0, S - 1)
    ci = np.clip(np.rint(cols).astype(int), 0, S - 1)
    inside = (rows >= 0) & (rows <= S - 1) & (cols >= 0) & (cols <= S - 1)
    inside &= sp.inner()[ri, ci]
    return rows[inside], cols[inside], inside


def render_region(rng: np.random.Generator, shape=(512, 512), phase: str | None = None, zone_axis=None,
                  pixel_size_nm: float | None = None, mode: str | None = None, dose: float | None = None,
                  size: int = 256, k_max: float = 12.5, drift: bool | None = None) -> RenderedRegion:
    """Render a crystal with :func:`temtwin.testing.synth.crystal_scene` and measure its truth reflections.

    Truth: every point of the zone's reciprocal lattice (extinct ones included) inside the valid area,
    plus every other reflection the noise-free image's spectrum carries (a finite slab projects
    higher-order Laue zones; ``info["on_lattice"]`` tells which); ``snr`` from the noise-free image
    (so only reflections the image really carries count as visible).  Scan drift shears the lattice;
    the truth lattice is sheared with it.
    """
    from .synth import crystal_scene

    ph = phase or str(rng.choice(BUILTIN_PHASES))
    za = tuple(zone_axis) if zone_axis is not None else CUBIC_ZONES[rng.integers(4)]
    px = float(pixel_size_nm or np.exp(rng.uniform(np.log(0.008), np.log(0.04))))
    mode = mode or str(rng.choice(["haadf", "hrtem"]))
    dose = float(dose if dose is not None else np.exp(rng.uniform(np.log(20), np.log(3000))))
    rot = float(rng.uniform(0, 360))
    E = None
    if drift if drift is not None else rng.random() < 0.3:
        E = np.array([[0.0, rng.uniform(-0.03, 0.03)], [0.0, rng.uniform(-0.02, 0.02)]])
    thick = float(rng.uniform(1.5, 4.0))
    s = crystal_scene(ph, za, rot, shape=shape, pixel_size_nm=(px, px), thickness_nm=thick, strain=E,
                      mode=mode, dose=dose, seed=int(rng.integers(2 ** 31)))
    noisy = region_spectrum(s.image, (px, px), size=size, k_max=k_max)
    clean = region_spectrum(s.noisefree * dose, (px, px), size=size, k_max=k_max)
    zl = zone_lattice(ph, za, rot, g_max=0.75 * size * max(noisy.dk), distortion=E)
    # lattice points (extinct ones included) plus any other reflection the noise-free image carries
    rows, cols, _ = lattice_points_px(noisy, zl["g"])
    rows, cols, snr, on = truth_with_clean_peaks(clean, noisy, rows, cols)
    info = {"phase": ph, "zone_axis": list(za), "rotation_deg": rot, "pixel_size_nm": px, "mode": mode,
            "dose": dose, "thickness_nm": thick, "drift": None if E is None else E.tolist(), "on_lattice": on}
    return RenderedRegion(s.image, (px, px), noisy, rows, cols, snr, info)


def render_amorphous(rng: np.random.Generator, shape=(512, 512), pixel_size_nm: float | None = None,
                     kind: str | None = None, dose: float | None = None, size: int = 256,
                     k_max: float = 12.5) -> tuple[np.ndarray, tuple[float, float], str]:
    """An amorphous film (random carbon atoms) or vacuum (flat + noise) image: no reflections.

    Returns (image, pixel size (x, y), kind).
    """
    from .synth.render import add_noise, render_atoms

    px = float(pixel_size_nm or np.exp(rng.uniform(np.log(0.008), np.log(0.04))))
    kind = kind or str(rng.choice(["film_hrtem", "film_haadf", "vacuum"]))
    dose = float(dose if dose is not None else np.exp(rng.uniform(np.log(20), np.log(3000))))
    if kind == "vacuum":
        img = add_noise(np.ones(shape), rng, dose)
        return img, (px, px), kind
    W, H = shape[1] * px, shape[0] * px
    t = rng.uniform(2.0, 8.0)
    n = int(100 * W * H * t)
    pos = rng.random((n, 3)) * [W, H, t]
    Z = np.full(n, 6)
    mode = "hrtem" if kind == "film_hrtem" else "haadf"
    clean = render_atoms(pos, Z, shape, (px, px), mode=mode, sigma_nm=0.05,
                         defocus_nm=float(rng.uniform(-60, 60)) if mode == "hrtem" else None,
                         background=0.05 if mode == "haadf" else 0.0)
    img = add_noise(clean, rng, dose)
    return img, (px, px), kind


def phases_dir() -> Path:
    from .synth.crystal import RESOURCE_PHASES

    return RESOURCE_PHASES


def truth_with_clean_peaks(clean: Spectrum, noisy: Spectrum, rows, cols, min_snr: float = 1.0,
                           sep_px: float = 1.5):
    """Truth reflections of an image: the given lattice points plus every other reflection that the
    noise-free image's spectrum carries.

    A noise-free image can show reflections off the zone's reciprocal lattice (projected higher-order
    Laue zones of a slab, a second lattice); every local maximum of the noise-free spectrum whose
    expected significance in the noisy spectrum is at least ``min_snr`` and that is not within
    ``sep_px`` of a lattice point is added.  Returns (rows, cols, snr, on_lattice).
    """
    from scipy import ndimage

    from ..peaks.gaussian import fit_gaussians

    rows = np.asarray(rows, float)
    cols = np.asarray(cols, float)
    snr = truth_snr(clean, noisy, rows, cols)
    excess = np.where(clean.valid, np.maximum(clean.power - clean.mu, 0.0), 0.0)
    mx = ndimage.maximum_filter(excess, size=3, mode="constant")
    pr, pc = np.nonzero((excess == mx) & (excess > 0) & noisy.inner())
    psnr = noisy.significance_of(noisy.mu[pr, pc] + excess[pr, pc], pr, pc)
    keep = psnr >= min_snr
    pr, pc = pr[keep], pc[keep]
    fit = fit_gaussians(excess, pr, pc, half=2)
    fr = np.where(fit["ok"], fit["row"], pr)
    fc = np.where(fit["ok"], fit["col"], pc)
    if len(rows):
        d = np.hypot(fr[:, None] - rows[None, :], fc[:, None] - cols[None, :]).min(1)
        extra = d > sep_px
    else:
        extra = np.ones(len(fr), bool)
    fr, fc = fr[extra], fc[extra]
    esnr = truth_snr(clean, noisy, fr, fc)
    on = np.r_[np.ones(len(rows), bool), np.zeros(len(fr), bool)]
    return np.r_[rows, fr], np.r_[cols, fc], np.r_[snr, esnr], on
