"""Validation regions for the fft_peaks bench: abTEM images of ../shared/validation with their truth.

Every record is one region: the image, its pixel size, the region mask, whether it is crystalline,
and (for crystalline regions on a zone axis) the truth reciprocal lattice in the image frame (nm^-1),
built from the truth ``g_list`` (a 2D basis indexing every listed reflection, extended to all integer
combinations, so dynamically allowed "forbidden" reflections such as diamond (002) on [110] are
lattice points too), mapped through the QW strain (sige_qw) and the scan distortion (z02_ZnO).
The noise-free image is carried along so that the bench can measure which reflections the image
really carries (truth SNR).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from temtwin.io.ingest import read_micrograph


@dataclass
class Region:
    case: str
    name: str
    image: np.ndarray
    clean: np.ndarray | None
    pixel_size_nm: tuple[float, float]
    mask: np.ndarray
    crystalline: bool | None  # None: ambiguous (off-zone particle)
    g_basis: np.ndarray | None = None  # (2, 2) rows = basis vectors [kx, ky] nm^-1


def g_from_list(g_list) -> np.ndarray:
    d = np.array([g["d_nm"] for g in g_list], float)
    a = np.deg2rad([g["angle_deg"] for g in g_list])
    return np.c_[np.cos(a) / d, np.sin(a) / d]


def lattice_basis(g: np.ndarray, tol: float = 0.03) -> np.ndarray:
    """Smallest-area basis (2, 2) among pairs of the shortest vectors that indexes every g integrally."""
    order = np.argsort(np.hypot(g[:, 0], g[:, 1]))
    cand = g[order[:12]]
    best, best_area = None, np.inf
    for i in range(len(cand)):
        for j in range(i + 1, len(cand)):
            B = np.array([cand[i], cand[j]])
            area = abs(np.linalg.det(B))
            if area < 1e-9 or area >= best_area:
                continue
            coef = g @ np.linalg.inv(B)
            if np.all(np.abs(coef - np.rint(coef)) < tol):
                best, best_area = B, area
    if best is None:
        raise ValueError("no lattice basis indexes the g list")
    return best


def lattice_points(basis: np.ndarray, g_max: float) -> np.ndarray:
    """All nonzero integer combinations of the basis rows with |g| <= g_max, (n, 2)."""
    nmax = int(np.ceil(g_max / np.min(np.abs(np.linalg.svd(basis, compute_uv=False))))) + 1
    ij = np.stack(np.meshgrid(np.arange(-nmax, nmax + 1), np.arange(-nmax, nmax + 1), indexing="ij"), -1)
    ij = ij.reshape(-1, 2)
    ij = ij[np.any(ij != 0, 1)]
    g = ij @ basis
    return g[np.hypot(g[:, 0], g[:, 1]) <= g_max]


def _transform(basis: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Reciprocal basis of a lattice whose real-space positions map r -> A r: g -> A^-T g (rows)."""
    return basis @ np.linalg.inv(A)


def _read(path: Path):
    m = read_micrograph(path)
    return m.data.astype(np.float32), m.pixel_size_nm


def validation_regions(root: Path):
    """Yield :class:`Region` records of every validation case present under ``root``."""
    # zoo: one crystal per image
    for d in sorted((root / "zoo").glob("z*")):
        t = json.loads((d / "truth.json").read_text())
        npz = np.load(d / "truth.npz")
        fname, meta = next(iter(t["images"].items()))
        img, px = _read(d / fname)
        basis = lattice_basis(g_from_list(t["g_list"]))
        sd = meta.get("scan_distortion")
        if sd:
            n = img.shape[0]
            a = sd["drift_x_nm"] / (n * px[1])
            b = sd["drift_y_nm"] / (n * px[1])
            # image point r shows specimen point A r: g_image = A^T g
            A = np.array([[1.0, a], [0.0, 1.0 + b]])
            basis = basis @ A
        yield Region("zoo", d.name, img, npz["image_noisefree"], px, np.ones(img.shape, bool), True, basis)
    # sige_qw: buffer / QW (strained) / cap
    for d in sorted((root / "sige_qw").glob("*")):
        t = json.loads((d / "truth.json").read_text())
        npz = np.load(d / "truth.npz")
        img, px = _read(d / "hrtem.hspy")
        basis = lattice_basis(g_from_list(t["orientation"]["g_list"]))
        q = t["strain"]["qw_plateau"]
        E = np.array([[q["exx"], q["exy"]], [q["exy"], q["eyy"]]])
        for lab, name in ((0, "buffer"), (1, "qw"), (2, "cap")):
            b = _transform(basis, np.eye(2) + E) if lab == 1 else basis
            yield Region("sige_qw", f"{d.name}/{name}", img, npz["hrtem_noisefree"], px, npz["labels"] == lab, True, b)
    # insb_inp: two relaxed lattices
    for d in sorted((root / "insb_inp").glob("*")):
        t = json.loads((d / "truth.json").read_text())
        npz = np.load(d / "truth.npz")
        img, px = _read(d / "hrtem.tif")
        for lab in (0, 1):
            r = t["regions"][str(lab)]
            basis = lattice_basis(g_from_list(r["orientation"]["g_list"]))
            yield Region("insb_inp", f"{d.name}/{r['phase']}", img, npz["hrtem_noisefree"], px,
                         npz["labels"] == lab, True, basis)
    # particles: vacuum, film, particles (on-zone with truth lattice, off-zone ambiguous)
    for d in sorted((root / "particles").glob("*")):
        t = json.loads((d / "truth.json").read_text())
        npz = np.load(d / "truth.npz")
        img, px = _read(d / "hrtem.hspy")
        pl, rl = npz["particle_labels"], npz["region_labels"]
        yield Region("particles", f"{d.name}/vacuum", img, npz["hrtem_noisefree"], px, (rl == 0) & (pl == 0), False)
        yield Region("particles", f"{d.name}/film", img, npz["hrtem_noisefree"], px, (rl == 1) & (pl == 0), False)
        for p in t["particles"]:
            basis = lattice_basis(g_from_list(p["g_list"])) if p.get("on_zone") else None
            yield Region("particles", f"{d.name}/particle{p['id']}", img, npz["hrtem_noisefree"], px,
                         pl == p["id"], True if p.get("on_zone") else None, basis)
    # stack: HRTEM (Si channel crystalline, oxides amorphous); overview and medium: no lattice resolved
    for d in sorted((root / "stack").glob("*")):
        t = json.loads((d / "truth.json").read_text())
        npz = np.load(d / "truth.npz")
        names = t["label_names"]
        for stem in ("hrtem", "medium_1", "overview"):
            img, px = _read(d / f"{stem}.hspy")
            labels = npz[f"{stem}_labels"]
            for lab in np.unique(labels):
                name = names[str(int(lab))]
                cryst = stem == "hrtem" and name.startswith("Si ")
                basis = None
                if cryst:
                    basis = si110_basis()
                yield Region("stack", f"{d.name}/{stem}/{name}", img, npz.get(f"{stem}_noisefree"), px,
                             labels == lab, bool(cryst), basis)


def si110_basis() -> np.ndarray:
    """Si [110] with [001] up (-y) and [1-10] along +x: basis g(1-11) and g(-111)... in nm^-1."""
    a = 0.5431
    # in-plane unit vectors: x = [1-10]/sqrt2, y (down) = -[001]
    def g(h, k, l):
        v = np.array([h, k, l], float) / a
        return np.array([v @ np.array([1, -1, 0]) / np.sqrt(2), -v[2]])
    return np.array([g(1, -1, 1), g(-1, 1, 1)])
