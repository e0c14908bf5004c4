"""A SiGe quantum-well device cross-section for the demo dataset: one atomic model, several views.

The device (growth [001] up the image, zone [110], [1-10] along +x): relaxed Si(1-x)Ge(x) buffer,
a pseudomorphic Ge quantum well, a Si(1-x)Ge(x) cap, an amorphous SiO2 layer and vacuum on top, and
a trench (vacuum) cut into the stack on the right.  Every layer shares the buffer's in-plane lattice;
out of plane ε⊥ = −2 (C12/C11) ε∥ with C12/C11 interpolated between Si (0.3854) and Ge (0.376).

Views rendered from the same atoms: a low-magnification bright-field overview (mass-thickness
contrast), an atomic-resolution HRTEM image (weak-phase object with a CTF) of a window that holds
the trench corner, and EELS-like Ge/Si fraction maps over that window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .crystal import load_structure, orientation_matrix, oriented_atoms
from .render import _splat, add_noise, render_atoms
from .scenes import sige_lattice_constant_A


@dataclass
class Device:
    """Atoms (nm, device frame: x right, y down, z beam) and the design."""

    positions_nm: np.ndarray
    numbers: np.ndarray
    layer: np.ndarray               # per atom: 1 buffer, 2 QW, 3 cap, 4 oxide
    size_nm: tuple[float, float]
    interfaces_y_nm: dict[str, float]
    trench_x_nm: float
    info: dict = field(default_factory=dict)


def _c12_c11(x: float) -> float:
    return 0.3854 + (0.376 - 0.3854) * x


def sige_qw_device(size_nm=(64.0, 64.0), thickness_nm: float = 2.0, x_buffer: float = 0.7,
                   qw_nm: float = 5.0, cap_nm: float = 8.0, oxide_nm: float = 3.0, top_vacuum_nm: float = 10.0,
                   trench_x_nm: float | None = None, seed: int = 1) -> Device:
    """Build the device's atoms (see module docstring); the buffer fills the bottom of the field."""
    rng = np.random.default_rng(seed)
    W, H = size_nm
    a_buf = sige_lattice_constant_A(x_buffer)
    st = load_structure("Si")
    M = orientation_matrix(st, (1, 1, 0), 0.0, reference=(1, -1, 0))
    if (M @ st.lattice.matrix.T @ np.array([0, 0, 1.0]))[1] > 0:
        M = orientation_matrix(st, (-1, -1, 0), 0.0, reference=(1, -1, 0))
    pos, Z = oriented_atoms(st, M, (W, H, thickness_nm), lattice_scale=a_buf / st.lattice.a)
    y_top_surface = top_vacuum_nm + oxide_nm           # top of the cap
    y_cap_bottom = y_top_surface + cap_nm
    y_qw_bottom = y_cap_bottom + qw_nm
    # pseudomorphic Ge: out-of-plane strain relative to the buffer
    a_ge = 5.658
    e_par = a_buf / a_ge - 1.0
    e_perp = -2 * _c12_c11(1.0) * e_par
    eyy_qw = (a_ge * (1 + e_perp)) / a_buf - 1.0        # relative to the buffer lattice
    # reference heights (buffer lattice) of the QW: it is stretched by (1 + eyy_qw) along growth (-y)
    up = y_qw_bottom - pos[:, 1]                        # height above the QW bottom, reference coords
    t_ref_qw = qw_nm / (1 + eyy_qw)
    shift = np.where(up <= 0, 0.0, np.where(up < t_ref_qw, up * eyy_qw, t_ref_qw * eyy_qw))
    pos[:, 1] -= shift                                   # material above the QW bottom moves up
    y = pos[:, 1]
    layer = np.where(y >= y_qw_bottom, 1, np.where(y >= y_cap_bottom, 2, 3))
    keep = y >= y_top_surface
    if trench_x_nm is None:
        trench_x_nm = 0.62 * W
    keep &= ~((pos[:, 0] > trench_x_nm) & (y < y_qw_bottom + 6.0))   # trench reaches into the buffer
    pos, Z, layer = pos[keep], Z[keep], layer[keep]
    ge = np.where(layer == 2, 1.0, x_buffer)
    Z = np.where(rng.random(len(Z)) < ge, 32, 14)
    # amorphous SiO2 (2.2 g/cm^3: 22 Si + 44 O per nm^3) on top of the cap, outside the trench
    n_ox = int(66 * W * oxide_nm * thickness_nm)
    ox = rng.random((n_ox, 3)) * [W, oxide_nm, thickness_nm] + [0, top_vacuum_nm, 0]
    ox = ox[ox[:, 0] < trench_x_nm]
    oz = np.where(rng.random(len(ox)) < 1 / 3, 14, 8)
    positions = np.vstack([pos, ox])
    numbers = np.concatenate([Z, oz])
    layers = np.concatenate([layer, np.full(len(ox), 4)])
    info = {"a_buffer_A": a_buf, "x_buffer": x_buffer, "eyy_qw": eyy_qw, "orientation_matrix": M.tolist(),
            "zone_axis": [1, 1, 0], "growth": "[001] up (-y)"}
    return Device(positions, numbers, layers, (W, H),
                  {"top_surface": y_top_surface, "qw_top": y_cap_bottom, "qw_bottom": y_qw_bottom,
                   "oxide_top": top_vacuum_nm}, trench_x_nm, info)


def _in_window(dev: Device, offset_nm, rotation_deg: float, shape, pixel_size_nm, margin_nm=1.0):
    """Atom positions in a rotated window's own frame (x right, y down, origin at its pixel (0,0))."""
    t = np.deg2rad(rotation_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    rel = (dev.positions_nm[:, :2] - np.asarray(offset_nm)) @ R   # inverse rotation: R^T (p - o)
    w, h = shape[1] * pixel_size_nm, shape[0] * pixel_size_nm
    ok = (rel[:, 0] > -margin_nm) & (rel[:, 0] < w + margin_nm) & (rel[:, 1] > -margin_nm) & (rel[:, 1] < h + margin_nm)
    p = np.column_stack([rel[ok], dev.positions_nm[ok, 2]])
    return p, dev.numbers[ok], ok


def mass_thickness_transmission(p: np.ndarray, Z: np.ndarray, shape, pixel_size_nm: float,
                                blur_nm: float = 0.6, kappa: float = 0.005) -> np.ndarray:
    """Bright-field transmission exp(−κ Σ Z^1.5) of atoms ``p`` (window frame, nm) blurred by
    ``blur_nm``: the fraction of electrons not scattered outside the objective aperture (per nm², so
    the same κ gives the same contrast at every pixel size)."""
    dens = _splat(p, Z.astype(float) ** 1.5, shape, (pixel_size_nm, pixel_size_nm))
    dens = ndimage.gaussian_filter(dens, blur_nm / pixel_size_nm)
    return np.exp(-kappa * dens / (pixel_size_nm ** 2) * 0.01)


def render_overview(dev: Device, shape=(512, 512), pixel_size_nm: float = 0.125, dose: float = 300.0,
                    seed: int = 2, blur_nm: float = 0.6, kappa: float = 0.005) -> np.ndarray:
    """Bright-field mass-thickness overview: I = exp(−κ Σ Z^1.5 blurred), Poisson noise (counts)."""
    p, Z, _ = _in_window(dev, (0.0, 0.0), 0.0, shape, pixel_size_nm)
    clean = mass_thickness_transmission(p, Z, shape, pixel_size_nm, blur_nm, kappa)
    return add_noise(clean, np.random.default_rng(seed), dose)


def render_hrtem(dev: Device, offset_nm, rotation_deg: float, shape=(512, 512), pixel_size_nm: float = 0.025,
                 dose: float = 400.0, seed: int = 3, kappa: float = 0.0) -> np.ndarray:
    """HRTEM (weak-phase object, Scherzer-like CTF, 300 kV) of a window of the device (counts).

    ``kappa`` > 0 multiplies it by the bright-field mass-thickness transmission of the overview
    (amplitude contrast from the objective aperture), so both magnifications share the contrast of
    heavy/light regions; 0 (the demo) = pure phase contrast, whose mean intensity barely changes
    between the layers and the amorphous trench."""
    p, Z, _ = _in_window(dev, offset_nm, rotation_deg, shape, pixel_size_nm)
    clean = render_atoms(p, Z, shape, (pixel_size_nm, pixel_size_nm), mode="hrtem", sigma_nm=0.05)
    if kappa > 0:
        clean = clean * mass_thickness_transmission(p, Z, shape, pixel_size_nm, kappa=kappa)
    return add_noise(clean, np.random.default_rng(seed), dose)


def eels_maps(dev: Device, offset_nm, rotation_deg: float, shape, pixel_size_nm: float,
              sigma_nm: float = 0.25, noise: float = 0.03, seed: int = 4) -> dict[str, np.ndarray]:
    """Ge and Si atomic-fraction maps (of Si+Ge atoms, oxide excluded) with Gaussian noise."""
    p, Z, ok = _in_window(dev, offset_nm, rotation_deg, shape, pixel_size_nm, margin_nm=2.0)
    semi = dev.layer[ok] < 4
    px = (pixel_size_nm, pixel_size_nm)
    s = sigma_nm / pixel_size_nm
    pp = p[:, :2]  # map pixel (i, j) centre at window point offset + (j, i) * pixel_size
    ge = ndimage.gaussian_filter(_splat(pp[semi & (Z == 32)], np.ones((semi & (Z == 32)).sum()), shape, px), s)
    si = ndimage.gaussian_filter(_splat(pp[semi & (Z == 14)], np.ones((semi & (Z == 14)).sum()), shape, px), s)
    tot = ge + si
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        fge = np.where(tot > 0.2 * np.median(tot[tot > 0]), ge / tot, 0.0)
        fsi = np.where(tot > 0.2 * np.median(tot[tot > 0]), si / tot, 0.0)
    return {"Ge": (fge + rng.normal(0, noise, shape)).astype(np.float32),
            "Si": (fsi + rng.normal(0, noise, shape)).astype(np.float32)}
