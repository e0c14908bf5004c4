"""Complete synthetic scenes with their truth (labels, phases, strain fields, atoms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from .crystal import load_structure, orientation_matrix, oriented_atoms
from .render import add_noise, render_atoms


@dataclass
class Scene:
    """A synthetic micrograph and its truth.

    image: float32 (rows, cols); pixel_size_nm: (x, y).
    labels: int32 truth regions (0 = vacuum/none where meaningful).
    truth: free-form dict (phases per label, zone axes, rotations, strain values, ...).
    positions_nm / numbers: the atoms that were rendered (None for low-magnification scenes).
    """

    image: np.ndarray
    pixel_size_nm: tuple[float, float]
    labels: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)
    positions_nm: np.ndarray | None = None
    numbers: np.ndarray | None = None
    noisefree: np.ndarray | None = None


def _grid_xy(shape, pixel_size_nm):
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    return x * pixel_size_nm[0], y * pixel_size_nm[1]


def crystal_scene(phase: str = "Si", zone_axis=(1, 1, 0), rotation_deg: float = 0.0,
                  shape=(256, 256), pixel_size_nm=(0.02, 0.02), thickness_nm: float = 2.0,
                  strain=None, displacement: Callable | None = None, mode: str = "haadf",
                  dose: float | None = 2000.0, seed: int = 0, sigma_nm: float = 0.05,
                  reference=None) -> Scene:
    """A single crystal filling the field of view.

    strain: uniform 2x2 small-strain/deformation gradient ``[[exx, exy],[eyx, eyy]]`` applied to the
    in-plane positions about the image origin (u = E @ r); displacement: callable (x_nm, y_nm) ->
    (ux, uy) applied to atoms (Lagrangian).  truth: phase, zone, rotation, orientation matrix, M.
    """
    st = load_structure(phase)
    M = orientation_matrix(st, zone_axis, rotation_deg, reference)
    px, py = pixel_size_nm
    w, h = shape[1] * px, shape[0] * py
    pad = 1.0
    pos, Z = oriented_atoms(st, M, (w + 2 * pad, h + 2 * pad, thickness_nm), origin_nm=(0, 0, 0))
    pos[:, :2] -= pad
    if strain is not None:
        E = np.asarray(strain, float)
        pos[:, :2] = pos[:, :2] + pos[:, :2] @ E.T
    if displacement is not None:
        ux, uy = displacement(pos[:, 0], pos[:, 1])
        pos[:, 0] += ux
        pos[:, 1] += uy
    clean = render_atoms(pos, Z, shape, pixel_size_nm, mode=mode, sigma_nm=sigma_nm,
                         background=0.05 if mode == "haadf" else 0.0)
    rng = np.random.default_rng(seed)
    img = add_noise(clean, rng, dose) if dose else clean.copy()
    truth = {"phase": phase, "zone_axis": list(zone_axis), "rotation_deg": rotation_deg,
             "orientation_matrix": M.tolist(), "thickness_nm": thickness_nm,
             "strain": None if strain is None else np.asarray(strain).tolist()}
    return Scene(img, (px, py), np.ones(shape, np.int32), truth, pos, Z, clean)


def sige_lattice_constant_A(x):
    """Si(1-x)Ge(x) lattice constant in Å (Dismukes/Rieger-Vogl quadratic)."""
    return 5.431 + 0.200326 * x * (1 - x) + (5.658 - 5.431) * x ** 2


def layered_scene(layers=None, shape=(384, 384), pixel_size_nm=(0.02, 0.02), rotation_deg: float = 0.0,
                  thickness_nm: float = 2.0, mode: str = "haadf", dose: float | None = 2000.0,
                  seed: int = 0, sigma_nm: float = 0.05, vacuum_top_nm: float = 0.0) -> Scene:
    """A coherent (pseudomorphic) heterostructure of diamond/zinc-blende layers, growth up the image.

    Each layer: ``dict(thickness_nm=..., eyy=..., exx=0.0, ge_fraction=None, phase=None)``; listed from
    the bottom.  All layers share the first layer's lattice ("Si" by default, or ``phase``) deformed by
    the layer's strain relative to the bottom layer (the reference, u = 0 at the bottom), so the truth
    strain is exact.  ``ge_fraction`` makes a random Si/Ge alloy on the sites.  Zone [110], growth
    [001] up (-y), [1-10] along +x rotated by ``rotation_deg``.

    truth: per-layer boundaries (y in nm, from top), ``eyy``/``exx`` maps, ``ge_fraction`` map, labels
    (1..n from the bottom; 0 for vacuum).
    """
    if layers is None:
        layers = [dict(thickness_nm=3.0, ge_fraction=0.7), dict(thickness_nm=2.0, ge_fraction=1.0, eyy=0.0231),
                  dict(thickness_nm=3.0, ge_fraction=0.7)]
    px, py = pixel_size_nm
    rows, cols = shape
    W, H = cols * px, rows * py
    base_phase = layers[0].get("phase") or "Si"
    st = load_structure(base_phase)
    ref_a = None
    if layers[0].get("ge_fraction") is not None:
        ref_a = sige_lattice_constant_A(layers[0]["ge_fraction"])
        scale = ref_a / st.lattice.a
    else:
        scale = 1.0
    # growth [001] up: reference direction [1-10] along +x; then [001] is along -y
    M = orientation_matrix(st, (1, 1, 0), rotation_deg, reference=(1, -1, 0))
    if (M @ st.lattice.matrix.T @ np.array([0, 0, 1.0]))[1] > 0:  # make [001] point up (-y)
        M = orientation_matrix(st, (-1, -1, 0), rotation_deg, reference=(1, -1, 0))
    pad = 1.0
    pos, Z = oriented_atoms(st, M, (W + 2 * pad, H + 2 * pad, thickness_nm), lattice_scale=scale)
    pos[:, :2] -= pad
    # layer boundaries measured from the bottom (y = H) upwards, in reference coordinates
    t_ref = np.array([l["thickness_nm"] for l in layers], float)
    eyy = np.array([l.get("eyy", 0.0) for l in layers], float)
    exx = np.array([l.get("exx", 0.0) for l in layers], float)
    z_ref = np.concatenate([[0.0], np.cumsum(t_ref / (1 + eyy))])  # heights in reference lattice
    z_def = np.concatenate([[0.0], np.cumsum(t_ref)])              # heights after deformation
    # up-coordinate of each atom in the reference lattice (growth up = -y)
    up = H - pos[:, 1]
    li = np.clip(np.searchsorted(z_ref, up, side="right") - 1, 0, len(layers) - 1)
    up_def = z_def[li] + (up - z_ref[li]) * (1 + eyy[li])
    new_y = H - up_def
    new_x = pos[:, 0] * (1 + exx[li])
    pos = np.column_stack([new_x, new_y, pos[:, 2]])
    keep = up_def <= z_def[-1]
    if vacuum_top_nm > 0:
        keep &= new_y >= vacuum_top_nm
    rng = np.random.default_rng(seed)
    gef = np.array([np.nan if l.get("ge_fraction") is None else l["ge_fraction"] for l in layers])
    alloy = ~np.isnan(gef[li])
    draw = rng.random(len(Z))
    Z = Z.copy()
    Z[alloy] = np.where(draw[alloy] < gef[li][alloy], 32, 14)
    pos, Z, li = pos[keep], Z[keep], li[keep]
    clean = render_atoms(pos, Z, shape, pixel_size_nm, mode=mode, sigma_nm=sigma_nm,
                         background=0.05 if mode == "haadf" else 0.0)
    img = add_noise(clean, rng, dose) if dose else clean.copy()
    X, Y = _grid_xy(shape, pixel_size_nm)
    upg = H - Y
    lab = np.clip(np.searchsorted(z_def, upg, side="right"), 1, len(layers)).astype(np.int32)
    lab[upg >= z_def[-1]] = 0
    truth = {
        "layers": [{"label": i + 1, "y_bottom_nm": float(H - z_def[i]), "y_top_nm": float(H - z_def[i + 1]),
                    "eyy": float(eyy[i]), "exx": float(exx[i]),
                    "ge_fraction": None if np.isnan(gef[i]) else float(gef[i])} for i in range(len(layers))],
        "eyy": np.where(lab > 0, eyy[np.clip(lab - 1, 0, None)], 0.0),
        "exx": np.where(lab > 0, exx[np.clip(lab - 1, 0, None)], 0.0),
        "zone_axis": [1, 1, 0], "rotation_deg": rotation_deg, "orientation_matrix": M.tolist(),
        "reference_a_A": ref_a or st.lattice.a, "phase": base_phase,
    }
    return Scene(img, (px, py), lab, truth, pos, Z, clean)


def particles_scene(shape=(384, 384), pixel_size_nm=(0.02, 0.02), particles=None, film_edge_frac=0.75,
                    film_thickness_nm: float = 3.0, mode: str = "hrtem", dose: float | None = 500.0,
                    seed: int = 0) -> Scene:
    """Crystalline particles (default Au) on an amorphous carbon film with a vacuum edge on the right.

    particles: list of ``dict(center_nm=(x, y), diameter_nm=..., zone_axis=(1,1,0), rotation_deg=0,
    phase="Au")``.  labels: 0 vacuum, 1 film, 2.. particles (in list order).
    """
    rng = np.random.default_rng(seed)
    px, py = pixel_size_nm
    rows, cols = shape
    W, H = cols * px, rows * py
    if particles is None:
        particles = [dict(center_nm=(0.3 * W, 0.35 * H), diameter_nm=0.25 * W, zone_axis=(1, 1, 0), rotation_deg=10),
                     dict(center_nm=(0.55 * W, 0.72 * H), diameter_nm=0.22 * W, zone_axis=(0, 0, 1), rotation_deg=30)]
    # amorphous carbon: random atoms at ~100 atoms/nm^3 (2 g/cm^3)
    edge_x = film_edge_frac * W
    yy = np.linspace(0, H, 64)
    edge = edge_x + 0.05 * W * np.sin(2 * np.pi * yy / H * 1.5 + rng.uniform(0, 6))
    n_c = int(100 * W * H * film_thickness_nm)
    c = rng.random((n_c, 3)) * [W, H, film_thickness_nm]
    c = c[c[:, 0] < np.interp(c[:, 1], yy, edge)]
    pos = [c]
    Zs = [np.full(len(c), 6)]
    X, Y = _grid_xy(shape, pixel_size_nm)
    lab = (X < np.interp(Y, yy, edge)).astype(np.int32)
    for k, p in enumerate(particles):
        st = load_structure(p.get("phase", "Au"))
        M = orientation_matrix(st, p.get("zone_axis", (1, 1, 0)), p.get("rotation_deg", 0.0))
        d = p["diameter_nm"]
        cx, cy = p["center_nm"]
        a, z = oriented_atoms(st, M, (d, d, d))
        a = a - d / 2
        inside = (a ** 2).sum(1) <= (d / 2) ** 2
        a = a[inside] + [cx, cy, film_thickness_nm + d / 2]
        pos.append(a)
        Zs.append(z[inside])
        lab[(X - cx) ** 2 + (Y - cy) ** 2 <= (d / 2) ** 2] = k + 2
    pos = np.vstack(pos)
    Z = np.concatenate(Zs)
    clean = render_atoms(pos, Z, shape, pixel_size_nm, mode=mode, sigma_nm=0.05,
                         background=0.02 if mode == "haadf" else 0.0)
    img = add_noise(clean, rng, dose) if dose else clean.copy()
    return Scene(img, (px, py), lab, {"particles": particles}, pos, Z, clean)


def lowmag_device(shape=(512, 512), pixel_size_nm=(1.0, 1.0), layers=None, seed: int = 0,
                  dose: float | None = 200.0, wire: bool = True, rotation_deg: float = 0.0,
                  texture: float = 0.05, blur_nm: float = 1.5) -> Scene:
    """A low-magnification bright-field device cross-section (mass-thickness contrast, no atoms).

    layers: list of ``(name, thickness_nm, transmission)`` from the top of the image down; the rest of
    the image below is the substrate (last layer extends).  An optional round nanowire is embedded in
    the second layer.  Interfaces are slightly rough.  labels: 1..n per layer (+ n+1 for the wire).
    """
    rng = np.random.default_rng(seed)
    px, py = pixel_size_nm
    rows, cols = shape
    W, H = cols * px, rows * py
    if layers is None:
        layers = [("vacuum", 0.15 * H, 0.95), ("Pt", 0.15 * H, 0.25), ("HfO2", 0.12 * H, 0.55),
                  ("Si", 0.25 * H, 0.75), ("SiO2", 0.13 * H, 0.88), ("Si-sub", 1e9, 0.7)]
    X, Y = _grid_xy(shape, pixel_size_nm)
    t = np.deg2rad(rotation_deg)
    Yr = -np.sin(t) * (X - W / 2) + np.cos(t) * (Y - H / 2) + H / 2
    bounds = np.cumsum([l[1] for l in layers])
    rough = ndimage.gaussian_filter1d(rng.normal(0, 1, cols), 8) * 3 * py
    lab = np.searchsorted(bounds, Yr + rough[None, :], side="right") + 1
    lab = np.clip(lab, 1, len(layers)).astype(np.int32)
    trans = np.array([l[2] for l in layers])[lab - 1]
    if wire:
        cx, cy, r = 0.6 * W, bounds[1] + 0.5 * layers[2][1], 0.35 * layers[2][1]
        m = (X - cx) ** 2 + (Yr - cy) ** 2 <= r * r
        lab[m] = len(layers) + 1
        trans = np.where(m, 0.4, trans)
    tex = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    clean = trans * (1 + texture * tex / max(tex.std(), 1e-9))
    clean = ndimage.gaussian_filter(clean, (blur_nm / py, blur_nm / px)).astype(np.float32)
    img = add_noise(clean, rng, dose) if dose else clean.copy()
    names = [l[0] for l in layers] + (["wire"] if wire else [])
    return Scene(img, (px, py), lab, {"names": names}, None, None, clean)


def device_overview(shape=(512, 512), pixel_size_nm=(1.0, 1.0), seed: int = 0,
                    widths_px=(2, 3, 5, 8, 12, 20, 40, 100), contrast: str = "bf", tilt_deg: float | None = None,
                    roughness_px: float | None = None, blur_px: float | None = None, dose: float | None = None,
                    texture: float | None = None, min_step: float = 0.12, inclusions: tuple = ("wire",),
                    vacuum_px: float = 40.0) -> Scene:
    """A random low-magnification device cross-section (the family of the multilayer segmentation
    bench).  Artefact model, all drawn from ``seed`` where not given:

    * layers: one per entry of ``widths_px`` (pixels along the layer normal), in random order, under
      ``vacuum_px`` of vacuum and over a substrate filling the rest; transmissions uniform in
      [0.25, 0.9], neighbours differing by at least ``min_step`` (and inclusions from every layer
      they touch);
    * geometry: the layer normal tilted by ``tilt_deg`` from the image vertical (uniform ±8°);
      every interface rough, an independent Gaussian-correlated profile (correlation 10 px) of rms
      ``roughness_px`` (uniform 0-1.5 px);
    * inclusions (each its own truth label): ``wire`` a disc in a layer ≥ 20 px (diameter 60-90 % of
      it), ``fin`` a rectangle 10-30 px wide rising from the substrate through the lowest 1-3 layers,
      ``trench`` a rectangle 10-30 px wide cut from the top of the stack down through 1-3 layers;
    * contrast: ``bf`` = transmission, ``haadf`` = 1.2 − transmission (mass-thickness, inverted);
      mottled texture of rms ``texture`` (2-8 %, correlation 2 px), Gaussian blur ``blur_px``
      (0.5-1.5 px), Poisson noise at ``dose`` (100-1000 counts per unit transmission).

    labels: 1 vacuum, 2..n+1 the layers top to bottom, n+2 the substrate, then the inclusions.
    truth: ``names``, ``widths_px`` (per label, None for vacuum/substrate/inclusions), ``contrast``
    (per label: smallest transmission step to a neighbour), and the drawn parameters.
    """
    rng = np.random.default_rng(seed)
    px, py = pixel_size_nm
    rows, cols = shape
    tilt = float(rng.uniform(-8, 8)) if tilt_deg is None else float(tilt_deg)
    rough = float(rng.uniform(0, 1.5)) if roughness_px is None else float(roughness_px)
    blur = float(rng.uniform(0.5, 1.5)) if blur_px is None else float(blur_px)
    dose_ = float(rng.uniform(100, 1000)) if dose is None else dose
    tex_amp = float(rng.uniform(0.02, 0.08)) if texture is None else float(texture)
    order = [int(w) for w in rng.permutation(np.asarray(widths_px))]
    trans = [0.97]
    for _ in range(len(order) + 1):
        t = trans[-1]
        while abs(t - trans[-1]) < min_step:
            t = float(rng.uniform(0.25, 0.9))
        trans.append(t)
    names = ["vacuum"] + [f"w{w}" for w in order] + ["substrate"]
    tops = np.concatenate([[vacuum_px], vacuum_px + np.cumsum(order)])        # interface positions (px)
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    t = np.deg2rad(tilt)
    u = -np.sin(t) * (x - cols / 2) + np.cos(t) * (y - rows / 2) + rows / 2      # along the normal
    v = np.cos(t) * (x - cols / 2) + np.sin(t) * (y - rows / 2) + cols / 2      # along the layers
    n_lat = int(np.ceil(np.hypot(rows, cols))) + 4
    vi = np.clip(np.rint(v + (n_lat - cols) / 2).astype(int), 0, n_lat - 1)
    lab = np.ones(shape, np.int32)
    for k, top in enumerate(tops):
        prof = ndimage.gaussian_filter1d(rng.normal(0, 1, n_lat), 10.0)
        prof *= rough / max(prof.std(), 1e-9)
        lab = np.where(u >= top + prof[vi], k + 2, lab)
    tr = np.asarray(trans)[lab - 1]
    truth_contrast = [min(abs(trans[i] - trans[i - 1]) if i > 0 else 9, abs(trans[i] - trans[i + 1])
                          if i + 1 < len(trans) else 9) for i in range(len(trans))]
    widths = [None] + order + [None]
    nxt = len(names) + 1
    for kind in inclusions:
        if kind == "wire":
            thick = [i for i, w in enumerate(order) if w >= 20]
            if not thick:
                continue
            i = int(rng.choice(thick))
            d = order[i] * float(rng.uniform(0.6, 0.9))
            cu, cv = tops[i] + order[i] / 2, float(rng.uniform(0.25, 0.75)) * cols
            m = (u - cu) ** 2 + (v - cv) ** 2 <= (d / 2) ** 2
            touched = [i + 2]
        elif kind in ("fin", "trench"):
            k = int(rng.integers(1, 4))
            # at least 20 px tall: more layers are crossed where the drawn ones are thin
            if kind == "fin":
                while k < len(order) and tops[-1] - tops[len(order) - k] < 20:
                    k += 1
            else:
                while k < len(order) and tops[k] - tops[0] < 20:
                    k += 1
            w = float(rng.uniform(10, 30))
            cv = float(rng.uniform(0.2, 0.8)) * cols
            if kind == "fin":
                lo_, hi_ = tops[len(order) - k], tops[-1] + 1
                touched = list(range(len(order) - k + 1, len(order) + 3))
            else:
                lo_, hi_ = tops[0] - 1, tops[k]
                touched = list(range(1, k + 3))
            m = (np.abs(v - cv) <= w / 2) & (u >= lo_) & (u < hi_)
        else:
            raise ValueError(f"unknown inclusion {kind!r}")
        near = [trans[j - 1] for j in touched]
        tv = float(rng.uniform(0.25, 0.9))
        tries = 0
        while min(abs(tv - q) for q in near) < min_step:
            tries += 1
            if tries > 200:          # no value that far from every touched layer: the farthest one
                grid = np.linspace(0.25, 0.9, 66)
                tv = float(grid[np.argmax([min(abs(g - q) for q in near) for g in grid])])
                break
            tv = float(rng.uniform(0.25, 0.9))
        lab = np.where(m, nxt, lab)
        tr = np.where(m, tv, tr)
        names.append(f"{kind}{nxt}")
        widths.append(None)
        truth_contrast.append(min(abs(tv - q) for q in near))
        nxt += 1
    tex = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    clean = tr * (1 + tex_amp * tex / max(tex.std(), 1e-9))
    if contrast == "haadf":
        clean = 1.2 - clean
    elif contrast != "bf":
        raise ValueError("contrast is 'bf' or 'haadf'")
    clean = ndimage.gaussian_filter(clean, blur).astype(np.float32)
    img = add_noise(clean, rng, dose_) if dose_ else clean.copy()
    truth = {"names": names, "widths_px": widths, "contrast": truth_contrast, "tilt_deg": tilt,
             "roughness_px": rough, "blur_px": blur, "dose": dose_, "texture": tex_amp, "mode": contrast}
    return Scene(img.astype(np.float32), (px, py), lab.astype(np.int32), truth, None, None, clean)
