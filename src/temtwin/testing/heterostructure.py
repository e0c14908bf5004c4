"""Mismatched (relaxed) heterostructures with exact strain truth, for GPA tests and benches.

Model (documented artefact model of the ``gpa_hetero`` bench):

* **Structure**: crystal A (the substrate, bottom of the image, the GPA reference) and crystal B
  (the layer, top), both fully relaxed, cube-on-cube epitaxy: B has the same orientation matrix as
  A, so B's lattice in the image frame is A's lattice deformed by ``F = M L_B^T L_A^-T M^T`` (L:
  Cartesian lattice matrices of the CIF standard settings, M: orientation).  The truth strain of B
  relative to A is the polar decomposition of F's in-plane 2x2 block (image axes); A's is 0.  A
  random substitutional alloy (e.g. Si(1-x)Ge(x) on a Ge lattice) is drawn per site with the
  alloy's lattice constant (Vegard scaling of the host CIF).
* **Geometry**: the interface is a straight line through the image centre along the rotated
  in-plane ``reference`` direction (growth normal to it); the whole structure is rotated by
  ``rotation_deg`` (from +x towards +y).  Thickness along the beam ``thickness_nm``.
* **Imaging**: ``temtwin.testing.synth.render_atoms``: weak-phase HRTEM (projected potential, CTF with
  ``defocus_nm``, Cs 0.015 mm, 300 kV, objective aperture 12 nm⁻¹) or HAADF (Z^1.7 Gaussians).  A
  projection model: thickness changes the projected potential (column contrast), not dynamical
  scattering.  The composition change across the interface changes the contrast and the
  Bragg amplitudes (the mean-inner-potential/projected-structure artefact of GPA appears at the
  interface through the Fourier mask).
* **Noise**: Poisson for ``dose`` electrons per pixel (vacuum intensity 1 in HRTEM; HAADF scaled
  to its maximum).

Truth: ``labels`` (1 = A, 2 = B), ``truth`` dict with per-label ``exx``, ``eyy``, ``exy``,
``rotation`` (rad) and ``mismatch`` (B/A lattice scale minus 1 along each image axis).
"""

from __future__ import annotations

import math

import numpy as np

from ..gpa.core import polar_strain
from .synth import add_noise, load_structure, oriented_atoms, render_atoms
from .synth.crystal import orientation_matrix

#: the families of the gpa_hetero bench: (A, B, zone axis, in-plane interface direction, alloy of A)
SYSTEMS = {
    "InSb/InP": dict(a="InP", b="InSb", zone=(1, 1, 0), reference=(1, -1, 0)),
    "Ge/SiGe": dict(a="Ge", b="Ge", zone=(1, 1, 0), reference=(1, -1, 0), alloy_a=("Si", 0.49)),
    "GaN/AlN": dict(a="AlN", b="GaN", zone=(1, 1, 0), reference=(0, 0, 1)),
    "BaTiO3/SrTiO3": dict(a="SrTiO3", b="BaTiO3", zone=(1, 0, 0), reference=(0, 1, 0)),
}


def sige_a_A(x_ge: float) -> float:
    """Si(1-x)Ge(x) lattice constant (Å), Dismukes quadratic."""
    return 5.431 + 0.200326 * x_ge * (1 - x_ge) + (5.658 - 5.431) * x_ge ** 2


def _structure(name: str, alloy):
    st = load_structure(name)
    scale = 1.0
    if alloy is not None:
        other, frac = alloy
        if name == "Ge" and other == "Si":
            scale = sige_a_A(1.0 - frac) / sige_a_A(1.0)
    return st, scale


def heterostructure(system: str = "InSb/InP", shape=(384, 384), pixel_size_nm=(0.02, 0.02),
                    rotation_deg: float = 0.0, thickness_nm: float = 5.0, defocus_nm: float | None = None,
                    dose: float | None = 400.0, mode: str = "hrtem", seed: int = 0):
    """A two-crystal relaxed heterostructure image (see module docstring).

    Returns ``(image float32, noise-free image, labels int32, truth dict)``.
    """
    pos, Z, labels, truth, _ = heterostructure_atoms(system, shape, pixel_size_nm, rotation_deg, thickness_nm,
                                                     seed=seed)
    clean = render_atoms(pos, Z, shape, pixel_size_nm, mode=mode, defocus_nm=defocus_nm,
                         background=0.05 if mode == "haadf" else 0.0)
    rng = np.random.default_rng([seed, 1])
    img = add_noise(clean, rng, dose) if dose else clean.copy()
    truth.update({"defocus_nm": defocus_nm, "dose": dose, "mode": mode})
    return img, clean, labels, truth


def heterostructure_atoms(system: str = "InSb/InP", shape=(384, 384), pixel_size_nm=(0.02, 0.02),
                          rotation_deg: float = 0.0, thickness_nm: float = 5.0, seed: int = 0):
    """The atoms of :func:`heterostructure`: positions (N, 3) nm in the image frame (z along the
    beam, 0..thickness), atomic numbers, labels, truth and the box (width, height, thickness) nm."""
    spec = SYSTEMS[system]
    px, py = pixel_size_nm
    rows, cols = shape
    W, H = cols * px, rows * py
    st_a, sa = _structure(spec["a"], spec.get("alloy_a"))
    st_b, sb = _structure(spec["b"], spec.get("alloy_b"))
    M = orientation_matrix(st_a, spec["zone"], rotation_deg, reference=spec["reference"])
    La = st_a.lattice.matrix * sa
    Lb = st_b.lattice.matrix * sb
    F3 = M @ Lb.T @ np.linalg.inv(La.T) @ M.T
    F = F3[:2, :2]
    exx, eyy, exy, om = polar_strain(F[0, 0], F[0, 1], F[1, 0], F[1, 1])
    # interface through the centre along the rotated reference direction; B on the side of -growth
    t = math.radians(rotation_deg)
    normal = np.array([math.sin(t), -math.cos(t)])          # "up" (towards -y for rotation 0)
    centre = np.array([W / 2, H / 2])
    big = math.hypot(W, H) + 2.0
    rng = np.random.default_rng(seed)
    out_pos, out_Z = [], []
    for which, st, scale in (("a", st_a, sa), ("b", st_b, sb)):
        pos, Z = oriented_atoms(st, M, (big, big, thickness_nm), origin_nm=(0.0, 0.0, 0.0), lattice_scale=scale)
        pos[:, :2] += centre - big / 2
        side = (pos[:, :2] - centre) @ normal
        keep = (side <= 0) if which == "a" else (side > 0)
        keep &= (pos[:, 0] > -1) & (pos[:, 0] < W + 1) & (pos[:, 1] > -1) & (pos[:, 1] < H + 1)
        pos, Z = pos[keep], Z[keep].copy()
        alloy = spec.get(f"alloy_{which}")
        if alloy is not None:
            from pymatgen.core import Element

            Z = np.where(rng.random(len(Z)) < alloy[1], Element(alloy[0]).Z, Z)
        out_pos.append(pos)
        out_Z.append(Z)
    pos = np.vstack(out_pos)
    Z = np.concatenate(out_Z)
    yy, xx = np.mgrid[0:rows, 0:cols]
    side = (xx * px - centre[0]) * normal[0] + (yy * py - centre[1]) * normal[1]
    labels = np.where(side > 0, 2, 1).astype(np.int32)
    truth = {"system": system, "rotation_deg": rotation_deg, "thickness_nm": thickness_nm, "F": F.tolist(),
             1: {"exx": 0.0, "eyy": 0.0, "exy": 0.0, "rotation": 0.0},
             2: {"exx": float(exx), "eyy": float(eyy), "exy": float(exy), "rotation": float(om)},
             "interface_normal": normal.tolist(), "orientation_matrix": M.tolist()}
    return pos, Z, labels, truth, (W, H, thickness_nm)
