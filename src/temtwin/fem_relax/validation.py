"""Validation cases of fem_relax with independent references (used by tests and bench/bench_fem_relax.py).

* :func:`keating_vs_fem_slab`: a SiGe/Ge/SiGe quantum-well lamella ([1−10] × [001] × [110], thin along
  the [110] beam, free surfaces) relaxed atomistically with temtwin's Keating model and with the
  3D lamella FEM using the Keating model's own elastic constants and lattice constants; returns the mean
  growth strain of the well from both.
* :func:`layered_device`: the rectangular well/barrier/substrate geometry of the relaxation-versus-
  thickness curve.
* :func:`gpa_fit_case` and :func:`noisy_gpa_measurement`: a generated GPA measurement with known
  eigenstrains and GPA-like correlated noise of known σ, for the calibration of the stage's fit (χ²_red ≈ 1,
  eigenstrains recovered within their σ).
"""

from __future__ import annotations

import numpy as np
from skfem import MeshTri

from .materials import cubic_voigt, rotate_stiffness, strain_voigt
from .solver import assemble, boundary_dofs, extrude, layer_average, solve_device

#: crystal → model rotation of a [110] cross-section: x = [1−10], y = [001] (growth), z = [110] (beam)
R110 = np.array([[1, -1, 0], [0, 0, np.sqrt(2)], [1, 1, 0]]) / np.sqrt(2)


def keating_vs_fem_slab(n_x: int = 2, n_buffer: int = 5, n_well: int = 6, n_cap: int = 3, n_beam: int = 6,
                        x_ge: float = 0.7, seed: int = 1, n_layers: int = 8, composition: str = "actual",
                        well_strain: str = "fit") -> dict:
    """Mean growth strain ε_yy of the Ge well (relative to the buffer lattice) in a thin lamella.

    Cells of the [1−10]/[001]/[110] diamond lattice (a/√2 × a × a/√2, 4 atoms): ``n_x`` along x
    (periodic), ``n_buffer`` + ``n_well`` + ``n_cap`` along growth (random Si(1−x)Ge(x) buffer and cap,
    pure Ge well; the bottom buffer cell is fixed, the top is free), ``n_beam`` along the beam with free
    surfaces.  Keating: relaxed to 1e-5 eV/Å.  FEM: the same geometry (clamped at the top of the fixed
    cell, periodic = roller sides, mesh rows on the (004) planes), lamella thickness = n_beam·a/√2,
    constants of the Keating model (analytic for Ge, alloy: Vegard of the analytic Si/Ge constants).

    The well strain is measured with ONE estimator on both models, from the mean height h_k of each
    (004) plane k of the well (FEM: u_y at the plane's nodes, trapezoid-averaged over x and the
    thickness): ``well_strain="fit"`` the least-squares slope of h_k over all the well's planes;
    ``"ends"`` (h_last − h_first) / ideal.  Both estimate the mean growth strain of the well, but "ends"
    rests on two planes only, each bonded to a random-alloy plane of ~n_x·n_beam atoms whose static
    (non-elastic) displacements do not average out in a small slab: the bench shows a ±9 % seed-to-seed
    scatter of "ends" against ≤ 2 % for "fit".  Also returned: the FEM area mean of ε_yy over the well.

    ``composition="actual"``: each
    alloy cell layer (along growth) gets the Ge fraction its atoms actually have (a 1344-atom slab has
    ~100 atoms per layer, so ±5 % composition noise per layer) and the lattice constant of the Keating
    alloy at that fraction (the relaxed reference cell's, shifted along Vegard's slope); ``"nominal"``:
    every alloy layer at the reference cell's lattice constant and x_ge.
    """
    from ase.build import bulk
    from ase.lattice.cubic import Diamond

    from ..physics.elastic import equilibrium_scale
    from ..physics.keating import KeatingModel, analytic_constants, default_parameters
    from ..physics.relax import relax

    rng = np.random.default_rng(seed)
    cell = bulk("Si", "diamond", 5.59, cubic=True).repeat(3)
    cell.numbers = np.where(rng.random(len(cell)) < x_ge, 32, 14)
    a_buf = 5.59 * equilibrium_scale(cell)                        # Å
    ny = n_buffer + n_well + n_cap
    at = Diamond(directions=[[1, -1, 0], [0, 0, 1], [1, 1, 0]], size=(n_x, ny, n_beam), symbol="Si",
                 latticeconstant=a_buf, pbc=(True, False, False))
    y = at.positions[:, 1].copy()
    y0, y1 = n_buffer * a_buf, (n_buffer + n_well) * a_buf
    well = (y >= y0 - 1e-6) & (y < y1 - 1e-6)
    at.numbers = np.where(well, 32, np.where(rng.random(len(at)) < x_ge, 32, 14))
    m = KeatingModel.from_atoms(at)
    fixed = y < a_buf - 1e-6
    r = relax(m, at.positions, at.cell[:], fixed=fixed, fmax=1e-5, max_steps=40000, method="lbfgs")
    plane = np.round(y / (a_buf / 4)).astype(int)
    p_first, p_last = plane[well].min(), plane[well].max()
    ideal = (p_last - p_first) * a_buf / 4
    idx = np.arange(p_first, p_last + 1)
    h_k = np.bincount(plane, weights=r.positions[:, 1])[idx] / np.bincount(plane)[idx]
    eps_k = {"ends": (h_k[-1] - h_k[0]) / ideal - 1, "fit": np.polyfit(idx, h_k, 1)[0] / (a_buf / 4) - 1}
    cell_layer = np.floor(y / a_buf + 1e-6).astype(int)
    x_layer = np.bincount(cell_layer, weights=(at.numbers == 32).astype(float), minlength=ny) / np.bincount(
        cell_layer, minlength=ny)
    x_cell = float(np.mean(cell.numbers == 32))

    # FEM on the same geometry (nm)
    p = default_parameters()
    a_ge = float(p.lattice_A[p.numbers.index(32)]) / 10
    cge, csi = analytic_constants("Ge"), analytic_constants("Si")
    a_si = float(p.lattice_A[p.numbers.index(14)]) / 10
    a_nm = a_buf / 10
    Lx = n_x * a_nm / np.sqrt(2)
    ys = np.arange(1, ny + 1e-9, 0.25) * a_nm                       # from the top of the fixed cell
    xs = np.linspace(0, Lx, 5)
    mesh = MeshTri.init_tensor(xs, ys)
    nodes, tri = mesh.p.T, mesh.t.T
    cy = nodes[tri].mean(1)[:, 1]
    in_well = (cy > y0 / 10) & (cy < y1 / 10)
    lay = np.clip(np.floor(cy / a_nm + 1e-9).astype(int), 0, ny - 1)
    xl = x_layer[lay] if composition == "actual" else np.full(len(tri), x_cell)
    xl = np.where(in_well, 1.0, xl)
    xu, inv = np.unique(xl, return_inverse=True)
    C = np.stack([rotate_stiffness(cubic_voigt(*[x * cge[k] + (1 - x) * csi[k] for k in ("C11", "C12", "C44")]), R110)
                  for x in xu])[inv]
    a_loc = np.where(in_well, a_ge, a_nm + (a_ge - a_si) * (xl - x_cell))        # Keating alloy ≈ Vegard slope
    E0 = (a_loc / a_nm - 1)[:, None] * strain_voigt(np.eye(3))[None]
    t = n_beam * a_nm / np.sqrt(2)
    nodes3, tets, src = extrude(nodes, tri, t, n_layers)
    sysm = assemble(nodes3, tets, C[src], boundary_dofs(nodes3))
    u3 = sysm.solve(sysm.load(E0[src]))
    lam = layer_average(sysm.strain(u3), src, sysm.vol, len(tri))
    dev = solve_device(nodes, tri, C, E0[None]).strain[0]
    area = np.abs(np.cross(nodes[tri[:, 1]] - nodes[tri[:, 0]], nodes[tri[:, 2]] - nodes[tri[:, 0]])) / 2
    eps_vol = float(np.average(lam[in_well, 1], weights=area[in_well]))
    eps_dev = float(np.average(dev[in_well, 1], weights=area[in_well]))
    # the atomistic estimator on the FEM: mean height of each (004) plane (mesh rows lie on the planes)
    w3 = _trapezoid_weights(nodes3[:, 0]) * _trapezoid_weights(nodes3[:, 2])
    row = np.round(nodes3[:, 1] / (a_nm / 4)).astype(int)
    h_fem = idx * a_nm / 4 + np.bincount(row, weights=w3 * u3[:, 1])[idx] / np.bincount(row, weights=w3)[idx]
    eps_f = {"ends": (h_fem[-1] - h_fem[0]) / (ideal / 10) - 1, "fit": np.polyfit(idx, h_fem, 1)[0] / (a_nm / 4) - 1}
    return {"eps_yy_keating": float(eps_k[well_strain]), "eps_yy_fem_lamella": float(eps_f[well_strain]),
            "eps_yy_keating_ends": float(eps_k["ends"]), "eps_yy_fem_lamella_ends": float(eps_f["ends"]),
            "eps_yy_fem_lamella_volume": eps_vol, "eps_yy_fem_device": eps_dev,
            "thickness_nm": float(t), "well_nm": n_well * a_nm, "n_atoms": len(at), "converged": bool(r.converged),
            "a_buffer_nm": a_nm, "x_cell": x_cell, "x_buffer": float(x_layer[1:n_buffer].mean()),
            "x_cap": float(x_layer[n_buffer + n_well:].mean())}


def _trapezoid_weights(c: np.ndarray) -> np.ndarray:
    """Per-node trapezoid weights (sum = span) of a tensor-grid coordinate."""
    u, inv = np.unique(np.round(c, 9), return_inverse=True)
    if len(u) == 1:
        return np.ones(len(c))
    w = np.zeros(len(u))
    d = np.diff(u)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w[inv]


def layered_device(well_nm: float = 16.0, cap_nm: float = 30.0, substrate_nm: float = 60.0, width_nm: float = 200.0,
                   h_nm: float = 2.0, well: str = "Ge", barrier: str = "Si0.3Ge0.7", table=None):
    """Rectangular Ge well in SiGe on a (relaxed) SiGe substrate, (001) growth, [110] cross-section.

    Returns (nodes, tri, C (ntri, 6, 6), eigenstrain (ntri, 6), well mask (ntri,), element areas)."""
    from .materials import MaterialTable, eigenstrain

    tab = table or MaterialTable()
    mw, mb = tab.get(well), tab.get(barrier)
    H = substrate_nm + well_nm + cap_nm
    xs = np.linspace(0, width_nm, int(round(width_nm / (4 * h_nm))) + 1)
    ys = np.unique(np.concatenate([np.linspace(0, substrate_nm, int(substrate_nm / (2 * h_nm)) + 1),
                                   np.linspace(substrate_nm, substrate_nm + well_nm, int(well_nm / h_nm) + 1),
                                   np.linspace(substrate_nm + well_nm, H, int(cap_nm / (2 * h_nm)) + 1)]))
    m = MeshTri.init_tensor(xs, ys)
    nodes, tri = m.p.T, m.t.T
    cy = nodes[tri].mean(1)[:, 1]
    in_w = (cy > substrate_nm) & (cy < substrate_nm + well_nm)
    C = np.where(in_w[:, None, None], rotate_stiffness(mw.C, R110), rotate_stiffness(mb.C, R110))
    E0 = np.zeros((len(tri), 6))
    E0[in_w] = strain_voigt(eigenstrain(mw, mb, R110))
    area = np.abs(np.cross(nodes[tri[:, 1]] - nodes[tri[:, 0]], nodes[tri[:, 2]] - nodes[tri[:, 0]])) / 2
    return nodes, tri, C, E0, in_w, area


#: generated GPA case: nm per pixel, noise correlation (Gaussian smoothing of white noise, px), per-pixel σ
GPA_CASE_PX, GPA_CASE_S_PX, GPA_CASE_SIGMA = 0.1, 4.0, 2e-3


def gpa_fit_case(thickness_nm: float = 10.0, n_layers: int = 3):
    """(RelaxModel solved, ImageGrid 160 × 200 px of 0.1 nm, regions.json document): Si0.3Ge0.7 substrate
    (reference, label 1, y < −8 nm), 4 nm Ge layer (2), 4 nm Si0.3Ge0.7 cap (3), 20 nm wide with free
    lateral edges (so the substrate under the layer is strained: GPA's reference area is not stress free)."""
    from .materials import MaterialTable
    from .model import RelaxModel, build_regions
    from ..stages.fem_relax import ImageGrid

    m = MeshTri.init_tensor(np.linspace(0, 20, 41), np.linspace(-16, 0, 33))
    nodes, tri = m.p.T, m.t.T
    yc = nodes[tri].mean(1)[:, 1]
    tri_region = np.where(yc < -8, 1, np.where(yc < -4, 2, 3))
    doc = {"regions": {"1": {"phase": "Si0.3Ge0.7"}, "2": {"phase": "Ge"}, "3": {"phase": "Si0.3Ge0.7"}}}
    regions, _ = build_regions(doc, MaterialTable(), 1)
    model = RelaxModel(nodes, tri, tri_region, regions, 1, thickness_nm)
    model.solve(n_layers, "free")
    ig = ImageGrid(nodes, tri, tri_region, (160, 200), (GPA_CASE_PX, GPA_CASE_PX))
    return model, ig, doc


def noisy_gpa_measurement(model, ig, delta_true, seed: int, sigma: float = GPA_CASE_SIGMA) -> dict:
    """GPA-like maps (the dict of :func:`temtwin.stages.fem_relax.read_gpa_maps`, image axes) of the case of
    :func:`gpa_fit_case`: the lamella strain at ``delta_true`` minus its mean over GPA's reference area
    (substrate rows below 11 nm; GPA references to the lattice *as it is* there), plus correlated Gaussian
    noise of per-pixel σ ``sigma`` (white noise smoothed by a Gaussian of GPA_CASE_S_PX px); NaN within
    0.3 nm of the interfaces (GPA's interface margin).  ``resolution_nm`` is set so that the stage's pixels
    per independent sample, (resolution/px)², equal the noise's correlation area 4π s²."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    truth = ig.on_grid(model.strain("lamella", np.asarray(delta_true, float)))
    shape = ig.inside.shape
    y = np.arange(shape[0])[:, None] * GPA_CASE_PX * np.ones((1, shape[1]))
    ref = (y > 11) & ig.inside
    near = (np.abs(y - 8) < 0.3) | (np.abs(y - 4) < 0.3)
    strain = {}
    for k, v in truth.items():
        n = gaussian_filter(rng.standard_normal(shape), GPA_CASE_S_PX, mode="wrap")
        strain[k] = np.where(near, np.nan, v - v[ref].mean() + n * (sigma / n.std()))
    res = np.sqrt(4 * np.pi) * GPA_CASE_S_PX * GPA_CASE_PX
    return {"applicable": True, "strain": strain, "sigma": {k: np.full(shape, sigma) for k in truth},
            "mask": ig.inside.copy(), "reference_label": 1, "resolution_nm": res, "reference": ref, "se": {}}
