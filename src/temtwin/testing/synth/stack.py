"""Multi-magnification image stacks of one device with exactly known placements (for stack registration).

A :class:`DeviceField` is an analytic device cross-section (mass-thickness bright field) defined at every
point of the plane in nm, with structure at all length scales from ~0.5 nm to the whole field: layers
with multi-scale rough interfaces, gate/spacer columns, round nanowires with shells, nanoparticles and a
multi-octave thickness texture (grains).  It can be rendered at any pixel size, offset and rotation, so
an overview, medium and high-magnification images of the same device agree exactly.

Frame and truth (same convention as the validation ``stack`` case): the overview frame has its origin at
the centre of overview pixel (0, 0), x right, y down, in nm.  Image k's pixel (i, j) shows the frame
point ``offset_nm + R(rotation_deg) @ (j * px, i * py)`` with ``R(t) = [[cos t, -sin t], [sin t, cos t]]``
(rotation from +x towards +y) and (px, py) its *true* pixel size; the pixel size stated in the image's
calibration differs from the true one by the calibration error.  ``scale_ratio = px_true / px_overview``.

Rendering is alias-free by construction: edges are smooth steps of width ~ one pixel (evaluated from
analytic signed distances) and texture octaves finer than two pixels are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, spatial

from ...io.image import Micrograph
from .render import add_noise

# bright-field absorption per nm of thickness, per material: mass-thickness, plus diffraction contrast for
# the crystalline semiconductors (Bragg scattering outside the objective aperture darkens them)
KAPPA = {"vacuum": 0.0, "Pt": 0.030, "W": 0.026, "TiN": 0.009, "HfO2": 0.018, "SiO2": 0.0045,
         "Si": 0.009, "BOX": 0.0045, "Si-sub": 0.009, "Ge": 0.016, "Au": 0.030}
GRAIN = {"Pt": 0.25, "W": 0.25, "TiN": 0.12, "Si": 0.04, "Si-sub": 0.04, "Ge": 0.08, "Au": 0.0}


@dataclass
class DeviceField:
    """An analytic device cross-section over ``size_nm`` (x, y); see the module docstring."""

    size_nm: tuple[float, float]
    layer_names: list[str]
    layer_top_nm: np.ndarray                 # (n,) mean top y of each layer (first = 0)
    rough: list[np.ndarray]                  # per interface (n-1): (m, 3) amplitude nm, wavelength nm, phase
    spacer_x_nm: np.ndarray                  # (k, 2) x ranges of spacer columns (SiO2) in the gate stack
    spacer_bottom_layer: int                 # spacers cut through layers [1, spacer_bottom_layer)
    circles: np.ndarray                      # (c, 4) x, y, radius, shell thickness (nm)
    circle_kind: list[str]                   # "Ge" wire (HfO2 shell) or "Au" particle
    octaves: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (wavelength, amp, coeffs)
    thickness_nm: float = 60.0
    edge_nm: float = 0.3                     # physical width of interfaces and particle edges (tanh)

    # -------------------------------------------------------------- geometry
    def _interface_exact(self, k: int, x: np.ndarray) -> np.ndarray:
        y = np.full_like(x, self.layer_top_nm[k + 1])
        for a, lam, ph in self.rough[k]:
            y = y + a * np.sin(2 * np.pi * x / lam + ph)
        return y

    def _interface_y(self, k: int, x: np.ndarray) -> np.ndarray:
        """y (nm) of interface k (below layer k) at x, from a 0.02 nm table (linear interpolation)."""
        tab = self.__dict__.setdefault("_itab", {})
        if k not in tab:
            W = self.size_nm[0]
            xs = np.arange(-0.2 * W - 10.0, 1.2 * W + 10.0, 0.02)
            tab[k] = (xs, self._interface_exact(k, xs))
        xs, ys = tab[k]
        return np.interp(x, xs, ys)

    def _texture(self, x: np.ndarray, y: np.ndarray, px_nm: float) -> np.ndarray:
        """Multi-octave smooth noise (zero mean, ~unit std).  Each octave is attenuated as pixel
        integration would (Gaussian of sigma 0.4 px at wavenumber 1/lambda); negligible ones are skipped."""
        out = np.zeros_like(x)
        for lam, amp, coef in self.octaves:
            att = np.exp(-2 * np.pi ** 2 * (0.4 * px_nm / lam) ** 2)
            if att < 1e-3:
                continue
            coords = np.stack([y / lam + 2.0, x / lam + 2.0])
            out += amp * att * ndimage.map_coordinates(coef, coords, order=3, mode="nearest", prefilter=False)
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray, px_nm: float) -> np.ndarray:
        """Noise-free bright-field intensity (vacuum = 1) at frame points (x, y) nm.

        Edges are tanh steps of width ``edge_nm`` (a physical property of the object, the same in every
        view), widened to 0.6 px for coarser pixels so that point sampling does not alias."""
        w = max(self.edge_nm, 0.6 * px_nm)

        def step(d):  # smooth 0 -> 1 as d goes from negative to positive (d in nm)
            return 0.5 * (1.0 + np.tanh(d / w))

        n = len(self.layer_names)
        kap = np.full_like(x, KAPPA[self.layer_names[0]])
        grain = np.zeros_like(x)
        for k in range(n - 1):  # below interface k the material is layer k+1
            below = step(y - self._interface_y(k, x))
            name = self.layer_names[k + 1]
            prev = self.layer_names[k]
            kap += below * (KAPPA[name] - KAPPA[prev])
            grain += below * (GRAIN.get(name, 0.0) - GRAIN.get(prev, 0.0))
        if len(self.spacer_x_nm):
            top = self._interface_y(0, x)
            bot = self._interface_y(self.spacer_bottom_layer - 1, x)
            inside_y = step(y - top) * step(bot - y)
            inside_x = np.zeros_like(x)
            for x0, x1 in self.spacer_x_nm:
                inside_x = np.maximum(inside_x, step(x - x0) * step(x1 - x))
            sp = inside_x * inside_y
            kap = kap * (1 - sp) + sp * KAPPA["SiO2"]
            grain = grain * (1 - sp)
        if len(self.circles):
            tree = spatial.cKDTree(self.circles[:, :2])
            rmax = float(self.circles[:, 2].max() + self.circles[:, 3].max())
            pts = np.column_stack([x.ravel(), y.ravel()])
            kk = min(4, len(self.circles))
            kap_circle = np.array([KAPPA[k] for k in self.circle_kind])
            dist, idx = tree.query(pts, k=kk, distance_upper_bound=rmax + 4 * w)
            dist = dist.reshape(len(pts), kk)
            idx = idx.reshape(len(pts), kk)
            kap_f = kap.ravel().copy()
            gr_f = grain.ravel().copy()
            for c in range(kk - 1, -1, -1):  # nearest circle painted last (on top)
                ok = np.isfinite(dist[:, c])
                if not ok.any():
                    continue
                i = idx[ok, c]
                d = dist[ok, c]
                r, sh = self.circles[i, 2], self.circles[i, 3]
                core = step(r - d)
                shell = step(r + sh - d) * (1 - core)
                kc = kap_circle[i]
                kap_f[ok] = kap_f[ok] * (1 - core - shell) + core * kc + shell * KAPPA["HfO2"]
                gr_f[ok] = gr_f[ok] * (1 - core - shell)
            kap = kap_f.reshape(x.shape)
            grain = gr_f.reshape(x.shape)
        W, H = self.size_nm
        t = self.thickness_nm * (1.0 + 0.25 * y / H + 0.05 * np.sin(2 * np.pi * x / (0.7 * W)))
        tex = self._texture(x, y, px_nm)
        t = t * (1.0 + 0.08 * tex) * (1.0 + grain * tex)
        return np.exp(-kap * t)

    def labels(self, offset_nm, rotation_deg: float, shape, pixel_size_nm) -> np.ndarray:
        """Truth label map at the pixel centres of a view (same geometry as :meth:`render`).

        1..n = layers from the top (``layer_names``), n+1 = spacer columns (SiO2), n+2 = Ge nanowires
        (core and shell); particles are not labelled (they sit on the lamella surface).
        """
        px, py = (pixel_size_nm, pixel_size_nm) if np.isscalar(pixel_size_nm) else pixel_size_nm
        rows, cols = shape
        t = np.deg2rad(rotation_deg)
        jj, ii = np.meshgrid(np.arange(cols) * px, np.arange(rows) * py)
        x = offset_nm[0] + np.cos(t) * jj - np.sin(t) * ii
        y = offset_nm[1] + np.sin(t) * jj + np.cos(t) * ii
        n = len(self.layer_names)
        lab = np.ones(x.shape, np.int32)
        for k in range(n - 1):
            lab += (y > self._interface_y(k, x)).astype(np.int32)
        if len(self.spacer_x_nm):
            top = self._interface_y(0, x)
            bot = self._interface_y(self.spacer_bottom_layer - 1, x)
            inx = np.zeros(x.shape, bool)
            for x0, x1 in self.spacer_x_nm:
                inx |= (x > x0) & (x < x1)
            lab[inx & (y > top) & (y < bot)] = n + 1
        for (cx, cy, r, sh), kind in zip(self.circles, self.circle_kind):
            if kind == "Ge":
                lab[(x - cx) ** 2 + (y - cy) ** 2 <= (r + sh) ** 2] = n + 2
        return lab

    # -------------------------------------------------------------- rendering
    def render(self, offset_nm, rotation_deg: float, shape, pixel_size_nm, dose: float | None = 500.0,
               rng: np.random.Generator | None = None, gamma: float = 1.0, blur_px: float = 0.4,
               supersample: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(noisy counts, noise-free) image whose pixel (i, j) shows offset + R(rot) (j px, i py).

        ``pixel_size_nm`` is the *true* pixel size (px, py); each pixel integrates the field over its
        area (``supersample``² points; default: enough points to sample the finest texture and the
        edges, at most 4²); ``gamma`` changes the contrast (intensity ** gamma, as a different
        detector/exposure would); ``blur_px`` is the detector blur (Gaussian sigma, pixels).
        """
        px, py = (pixel_size_nm, pixel_size_nm) if np.isscalar(pixel_size_nm) else pixel_size_nm
        finest = min(self.edge_nm, min(lam for lam, _, _ in self.octaves) if self.octaves else self.edge_nm)
        ss = supersample or int(np.clip(np.ceil(6.0 * max(px, py) / finest), 1, 4))
        rows, cols = shape
        t = np.deg2rad(rotation_deg)
        clean = np.zeros((rows, cols), np.float64)
        step = max(1, (1 << 19) // cols)          # about half a million points per block
        sub = (np.arange(ss) + 0.5) / ss - 0.5    # sub-pixel sample offsets (pixel units)
        p_eval = float(np.sqrt(px * py)) / ss
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            for su in sub:
                for sv in sub:
                    jj, ii = np.meshgrid((np.arange(cols) + su) * px, (np.arange(r0, r1) + sv) * py)
                    x = offset_nm[0] + np.cos(t) * jj - np.sin(t) * ii
                    y = offset_nm[1] + np.sin(t) * jj + np.cos(t) * ii
                    clean[r0:r1] += self.evaluate(x, y, p_eval) ** gamma
        clean /= ss * ss
        if blur_px:
            clean = ndimage.gaussian_filter(clean, blur_px, mode="nearest")
        clean = clean.astype(np.float32)
        if dose:
            img = add_noise(clean, rng if rng is not None else np.random.default_rng(0), dose)
        else:
            img = clean.copy()
        return img, clean


def device_field(size_nm=(400.0, 400.0), seed: int = 0, n_particles: int | None = None,
                 finest_nm: float = 0.4) -> DeviceField:
    """A random device cross-section (seeded): gate stack with spacers, channel, BOX, substrate,
    nanowires and particles.  ``n_particles`` defaults to one per ~250 nm²; ``finest_nm`` is the finest
    texture wavelength."""
    rng = np.random.default_rng(seed)
    W, H = size_nm
    names = ["vacuum", "Pt", "W", "TiN", "HfO2", "SiO2", "Si", "BOX", "Si-sub"]
    frac = np.array([0.06, 0.08, 0.16, 0.08, 0.03, 0.02, 0.10, 0.10])
    frac = frac * rng.uniform(0.8, 1.2, len(frac))
    tops = np.concatenate([[0.0], np.cumsum(frac) * H])
    rough = []
    for _ in range(len(names) - 1):
        m = 5
        lam = np.exp(rng.uniform(np.log(4.0), np.log(0.5 * W), m))
        amp = 0.02 * lam ** 0.7 * rng.uniform(0.5, 1.0, m)
        rough.append(np.column_stack([amp, lam, rng.uniform(0, 2 * np.pi, m)]))
    # spacer columns through Pt..HfO2 (layers 1..4), random widths
    xs, x = [], rng.uniform(0.02, 0.1) * W
    while x < W:
        wdt = rng.uniform(0.03, 0.09) * W
        xs.append((x, x + wdt))
        x += wdt + rng.uniform(0.12, 0.3) * W
    circles, kinds = [], []
    for _ in range(rng.integers(2, 4)):  # Ge nanowires in the W/TiN region
        circles.append((rng.uniform(0.1, 0.9) * W, rng.uniform(tops[2], tops[4]),
                        rng.uniform(0.02, 0.04) * W, 0.006 * W))
        kinds.append("Ge")
    n_particles = int(W * H / 250.0) if n_particles is None else n_particles
    r = np.exp(rng.uniform(np.log(0.8), np.log(0.012 * W + 1.0), n_particles))
    cx = rng.uniform(0, W, n_particles)
    cy = rng.uniform(0, H, n_particles)
    for a, b, c in zip(cx, cy, r):
        circles.append((a, b, c, 0.0))
        kinds.append("Au")
    octaves = []
    lam = finest_nm
    while lam < 0.5 * max(W, H):
        nx, ny = int(W / lam) + 6, int(H / lam) + 6
        coef = 2.0 * rng.normal(0, 1, (ny, nx))   # B-spline coefficients: smooth, nearly band-limited
        octaves.append((lam, (lam / finest_nm) ** 0.15, coef))
        lam *= 2.0
    tot = np.sqrt(sum(a * a for _, a, _ in octaves))
    octaves = [(lam, a / tot, c) for lam, a, c in octaves]
    return DeviceField((W, H), names, tops, rough, np.asarray(xs, float).reshape(-1, 2), 5,
                       np.asarray(circles, float), kinds, octaves)


@dataclass
class StackImage:
    """One image of a generated stack: the micrograph (with its *stated* calibration) and its truth."""

    micrograph: Micrograph
    offset_nm: tuple[float, float]
    rotation_deg: float
    pixel_size_true_nm: float
    scale_ratio: float
    parent: str
    noisefree: np.ndarray
    matching: bool = True


@dataclass
class GeneratedStack:
    """A generated stack: images by name (overview first) and the truth in the validation format."""

    images: dict[str, StackImage]
    overview: str
    field: DeviceField
    other_field: DeviceField | None = None

    def labels(self, name: str) -> np.ndarray:
        """Truth label map of image ``name`` (see :meth:`DeviceField.labels`); None-like for ``wrong``."""
        si = self.images[name]
        fld = self.field if si.matching else self.other_field
        return fld.labels(si.offset_nm, si.rotation_deg, si.micrograph.shape, si.pixel_size_true_nm)

    def truth(self) -> dict:
        """Truth as in the validation ``stack`` case's truth.json ``images`` (keyed by image name)."""
        return {n: {"offset_nm": list(s.offset_nm), "rotation_deg": s.rotation_deg,
                    "scale_ratio": s.scale_ratio, "pixel_size_nm": s.pixel_size_true_nm,
                    "stated_pixel_size_nm": s.micrograph.pixel_size_nm[0], "shape": list(s.micrograph.shape),
                    "parent": s.parent, "matching": s.matching}
                for n, s in self.images.items()}

    @property
    def micrographs(self) -> list[Micrograph]:
        return [s.micrograph for s in self.images.values()]


def _inside_offset(rng, parent: StackImage, fov_nm: float, rot_deg: float, margin: float = 0.08,
                   field_: DeviceField | None = None) -> tuple[float, float]:
    """A random offset placing a square window of side ``fov_nm`` (rotation rot_deg) inside ``parent``.

    With ``field_``, the window centre is drawn until it lies within a quarter field of view of one of
    the field's layer interfaces (high magnification is used on interfaces; up to 200 draws)."""
    pw = parent.micrograph.shape[1] * parent.pixel_size_true_nm
    ph = parent.micrograph.shape[0] * parent.pixel_size_true_nm
    half = 0.5 * fov_nm * (abs(np.cos(np.deg2rad(rot_deg))) + abs(np.sin(np.deg2rad(rot_deg))))
    lo_x, hi_x = margin * pw + half, (1 - margin) * pw - half
    lo_y, hi_y = margin * ph + half, (1 - margin) * ph - half
    if hi_x < lo_x or hi_y < lo_y:
        raise ValueError("window does not fit into its parent; use a larger ratio")
    # centre in the parent's own frame -> overview frame
    tp = np.deg2rad(parent.rotation_deg)
    Rp = np.array([[np.cos(tp), -np.sin(tp)], [np.sin(tp), np.cos(tp)]])
    for _ in range(200 if field_ is not None else 1):
        c_par = np.array([rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)])
        c = np.asarray(parent.offset_nm) + Rp @ c_par
        if field_ is not None:
            d = min(abs(c[1] - float(field_._interface_y(k, np.array([c[0]]))[0]))
                    for k in range(len(field_.layer_names) - 1))
            if d < 0.25 * fov_nm:
                break
    t = np.deg2rad(rot_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    o = c - R @ np.array([0.5 * fov_nm, 0.5 * fov_nm])
    return float(o[0]), float(o[1])


def device_stack(ratios=(6.0, 7.0), shape=(256, 256), overview_shape=(384, 384), overview_px_nm: float = 0.5,
                 chain: bool = True, max_rotation_deg: float = 3.0, calibration_error: float = 0.03,
                 dose: float = 2000.0, overview_dose: float = 2000.0, wrong_image: bool = True, seed: int = 0,
                 field_: DeviceField | None = None, at_interface: bool = True) -> GeneratedStack:
    """A stack: an overview plus one image per entry of ``ratios`` (magnification ratio to its parent).

    chain=True: image k sits inside image k-1 (ratios multiply: (6, 7) gives 6x and 42x the overview);
    chain=False: every image sits directly inside the overview with its own ratio.  Each non-overview
    image is rotated by a random angle within ±max_rotation_deg relative to its parent, has a stated
    pixel size off by a random calibration error within ±calibration_error (relative), and is centred
    within a quarter of its field of view of a layer interface (``at_interface``; else anywhere).
    ``wrong_image`` adds ``wrong``, rendered from another device (another seed) at the first image's
    magnification, centred on that device's gate stack.
    """
    rng = np.random.default_rng(seed)
    ov_size = (overview_shape[1] * overview_px_nm, overview_shape[0] * overview_px_nm)
    fld = field_ if field_ is not None else device_field(ov_size, seed=seed)
    img, clean = fld.render((0.0, 0.0), 0.0, overview_shape, overview_px_nm, overview_dose, rng)
    ov = StackImage(Micrograph(img, (overview_px_nm, overview_px_nm), "overview", "generated",
                               {"mode": "TEM", "units": "counts"}),
                    (0.0, 0.0), 0.0, overview_px_nm, 1.0, "", clean)
    out = {"overview": ov}
    parent = ov
    for k, ratio in enumerate(ratios):
        par = parent if chain else ov
        px_true = par.pixel_size_true_nm / ratio
        rot = par.rotation_deg + float(rng.uniform(-max_rotation_deg, max_rotation_deg))
        fov = shape[1] * px_true
        off = _inside_offset(rng, par, fov, rot, field_=fld if at_interface else None)
        stated = px_true * (1.0 + rng.uniform(-calibration_error, calibration_error))
        img, clean = fld.render(off, rot, shape, px_true, dose, rng, gamma=float(rng.uniform(0.8, 1.25)))
        name = f"mag{k + 1}"
        si = StackImage(Micrograph(img, (stated, stated), name, "generated", {"mode": "TEM", "units": "counts"}),
                        off, rot, px_true, px_true / overview_px_nm, par.micrograph.name, clean)
        out[name] = si
        parent = si
    other = None
    if wrong_image and ratios:
        other = device_field(ov_size, seed=seed + 7919)
        px_true = overview_px_nm / ratios[0]
        fov = shape[1] * px_true
        # centred on the other device's gate stack (strong structure, so refusal is not trivial)
        y_c = float(other.layer_top_nm[3]) + rng.uniform(-0.5, 0.5) * fov
        y_c = float(np.clip(y_c, 0.55 * fov, ov_size[1] - 0.55 * fov))
        off = (float(rng.uniform(0.05 * ov_size[0], 0.95 * ov_size[0] - fov)), y_c - 0.5 * fov)
        img, clean = other.render(off, 0.0, shape, px_true, dose, rng)
        out["wrong"] = StackImage(Micrograph(img, (px_true, px_true), "wrong", "generated",
                                             {"mode": "TEM", "units": "counts"}),
                                  off, 0.0, px_true, px_true / overview_px_nm, "", clean, matching=False)
    return GeneratedStack(out, "overview", fld, other)
