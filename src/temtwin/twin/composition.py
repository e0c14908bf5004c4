"""Composition from quantified element maps (EELS or EDS), sublattice-aware site occupation.

Maps: ``<sample>/eels/<Element>.<ext>``, one quantified map per element (atomic fraction, or any
quantity proportional to it: the fractions of the elements that share a sublattice are normalised
locally).  Map pixel (i, j) lies at the image point ``offset_nm + (j·pe_x, i·pe_y)`` (axes parallel to
the image's); the offset comes from ``sample.yaml`` (``eels.offset_nm``), the config, or template
matching of the maps against the image.

Sublattices: each crystal site belongs to the sublattice of its CIF host species (e.g. Ga and As
sites of GaAs).  An element of the maps substitutes only on sublattices whose host is in the same
periodic-table group (Ge on Si sites, In on Ga sites, P on As sites), or on the host named in the
config's ``substitutions``; it never lands on another sublattice.  On each sublattice the local
fractions of the host and its substituents are normalised to 1 (host = remainder when the host has
no map) and each site draws its species from them with one uniform number from a seeded generator,
so the result is deterministic.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import UserError

log = logging.getLogger("temtwin")


@dataclass
class ElementMap:
    """A composition map of one element: values (rows, cols), pixel size (x, y) nm."""

    element: str
    data: np.ndarray
    pixel_size_nm: tuple[float, float]
    path: str = ""


def _element_from_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    m = re.match(r"^([A-Z][a-z]?)(?:$|[_\-\s])", stem)
    if not m:
        raise UserError("composition maps must be named <Element>.<ext> (e.g. Ge.hspy); rename the file", path)
    from pymatgen.core import Element

    try:
        Element(m.group(1))
    except ValueError:
        raise UserError(f"{m.group(1)!r} is not a chemical element; name composition maps <Element>.<ext>",
                        path) from None
    return m.group(1)


def read_element_map(path: str | Path, pixel_size_nm=None) -> ElementMap:
    """Read one map with rosettasciio (any format ingest reads) or numpy (.npy).

    ``pixel_size_nm`` (number or [x, y]) overrides the file's calibration; it is required for
    uncalibrated files.
    """
    from ..io.ingest import _read_signals, _unit_factor

    path = Path(path)
    element = _element_from_name(path)
    px = None
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any read failure is the user's file
            first = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise UserError(f"cannot read this .npy map ({type(e).__name__}: {first}); save it with "
                            "numpy.save as a plain 2D numeric array", path) from None
        if data.dtype.kind not in "biuf":
            raise UserError(f"the .npy map holds {data.dtype} values, not numbers; save a 2D numeric array",
                            path)
    else:
        sigs = _read_signals(path)
        sig = None
        for s in sigs:
            d = np.asarray(s["data"])
            if d.ndim == 2 and not d.dtype.names:
                sig = s
                break
        if sig is None:
            raise UserError("no 2D map in this file; save the quantified map as a 2D image", path)
        data = np.asarray(sig["data"])
        axes = [a for a in sig.get("axes", []) if not a.get("navigate", False)] or sig.get("axes", [])
        if len(axes) >= 2:
            fy = _unit_factor(axes[0].get("units"))
            fx = _unit_factor(axes[1].get("units"))
            if fx and fy:
                px = (float(axes[1].get("scale", 1.0)) * fx, float(axes[0].get("scale", 1.0)) * fy)
    if pixel_size_nm is not None:
        v = np.ravel(pixel_size_nm).astype(float)
        px = (float(v[0]), float(v[-1]))
    if px is None:
        raise UserError("the map has no length calibration; set eels.pixel_size_nm in sample.yaml", path)
    data = np.asarray(data, float)
    if data.ndim != 2:
        raise UserError(f"expected a 2D map, got shape {data.shape}", path)
    return ElementMap(element, data, px, str(path))


def read_element_maps(paths, pixel_size_nm=None) -> dict[str, ElementMap]:
    """Maps keyed by element; the maps of one sample must share shape and pixel size."""
    maps: dict[str, ElementMap] = {}
    for p in sorted(str(x) for x in paths):
        m = read_element_map(p, pixel_size_nm)
        if m.element in maps:
            raise UserError(f"two maps for {m.element}; keep one file per element", p)
        maps[m.element] = m
    if maps:
        first = next(iter(maps.values()))
        for m in maps.values():
            if m.data.shape != first.data.shape or not np.allclose(m.pixel_size_nm, first.pixel_size_nm):
                raise UserError(f"map shape/pixel size {m.data.shape}/{m.pixel_size_nm} differs from "
                                f"{first.element}'s {first.data.shape}/{first.pixel_size_nm}; resample the maps "
                                "onto one grid", m.path)
    return maps


def register_maps(maps: dict[str, ElementMap], image: np.ndarray, image_pixel_nm) -> tuple[np.ndarray, float]:
    """Offset (nm, [x, y]) of the maps' pixel (0, 0) in the image by template matching.

    The image is block-averaged to the maps' pixel size (local mean and local standard deviation,
    which follow composition in Z-contrast and in phase-contrast images alike), and the element map
    with the largest variance is matched against both feature images with normalised
    cross-correlation (either sign).  Returns (offset, best |correlation|).
    """
    import cv2

    m = max(maps.values(), key=lambda e: float(np.nanvar(e.data)))
    pe = np.asarray(m.pixel_size_nm, float)
    pi = np.asarray(image_pixel_nm, float)
    zoom = pi / pe                                    # image px -> map px (x, y)
    img = np.asarray(image, np.float32)
    h, w = img.shape
    size = (max(1, int(round(w * zoom[0]))), max(1, int(round(h * zoom[1]))))
    mean = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    sq = cv2.resize(img * img, size, interpolation=cv2.INTER_AREA)
    std = np.sqrt(np.clip(sq - mean * mean, 0, None))
    tmpl = np.nan_to_num(m.data.astype(np.float32))
    th, tw = tmpl.shape
    best = (-1.0, np.zeros(2))
    for feat in (mean, std):
        if feat.shape[0] < th or feat.shape[1] < tw:
            # the map is larger than the image: match the image inside the map instead
            res = cv2.matchTemplate(tmpl, feat.astype(np.float32), cv2.TM_CCOEFF_NORMED)
            sign = -1
        else:
            res = cv2.matchTemplate(feat.astype(np.float32), tmpl, cv2.TM_CCOEFF_NORMED)
            sign = 1
        a = np.abs(np.nan_to_num(res))
        i, j = np.unravel_index(np.argmax(a), a.shape)
        if a[i, j] > best[0]:
            # sub-pixel: parabola through the peak
            di = _parabola(a, i, j, 0)
            dj = _parabola(a, i, j, 1)
            shift = np.array([j + dj, i + di])
            # feature pixel (0,0) covers image pixels [0, 1/zoom): its centre is at (1/zoom - 1)/2 image px
            centre0 = (1.0 / zoom - 1.0) / 2.0 * pi
            best = (float(a[i, j]), sign * shift * pe + centre0)
    return best[1], best[0]


def _parabola(a, i, j, axis) -> float:
    n = a.shape[axis]
    k = i if axis == 0 else j
    if k == 0 or k == n - 1:
        return 0.0
    if axis == 0:
        l, c, r = a[i - 1, j], a[i, j], a[i + 1, j]
    else:
        l, c, r = a[i, j - 1], a[i, j], a[i, j + 1]
    den = l - 2 * c + r
    return 0.0 if den == 0 else float(0.5 * (l - r) / den)


def sample_maps(maps: dict[str, ElementMap], offset_nm, xy_nm: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Map values at image points (bilinear); returns ({element: values}, inside mask)."""
    first = next(iter(maps.values()))
    pe = first.pixel_size_nm
    rows, cols = first.data.shape
    c = (xy_nm[:, 0] - offset_nm[0]) / pe[0]
    r = (xy_nm[:, 1] - offset_nm[1]) / pe[1]
    inside = (r >= -0.5) & (r <= rows - 0.5) & (c >= -0.5) & (c <= cols - 0.5)
    coords = np.stack([np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)])
    vals = {el: ndimage.map_coordinates(np.nan_to_num(m.data), coords, order=1, mode="nearest")
            for el, m in maps.items()}
    return vals, inside


def substitution_plan(hosts: list[int], elements: list[str], substitutions: dict[str, str] | None = None
                      ) -> dict[int, list[str]]:
    """Sublattice index -> map elements that occupy it (host included when it has a map).

    An element goes on the sublattices whose host is the element itself, the host named in
    ``substitutions`` ({element: host symbol}), or a host of the same periodic-table group.
    """
    from pymatgen.core import Element

    subs = dict(substitutions or {})
    plan: dict[int, list[str]] = {k: [] for k in range(len(hosts))}
    for el in elements:
        e = Element(el)
        targets = []
        for k, z in enumerate(hosts):
            h = Element.from_Z(z)
            if el in subs:
                ok = subs[el] == h.symbol or h.symbol == el
            else:
                ok = h.symbol == el or (e.group == h.group and e.group is not None)
            if ok:
                targets.append(k)
        if not targets:
            log.warning("composition: element %s fits no sublattice of %s; its map is not used", el,
                        [Element.from_Z(z).symbol for z in hosts])
        for k in targets:
            plan[k].append(el)
    return plan


def site_fractions(values: dict[str, np.ndarray], host: str, elements: list[str]) -> tuple[list[str], np.ndarray]:
    """Per-site fractions (n, m) over [host, *substituents] of one sublattice, rows summing to 1."""
    others = [e for e in elements if e != host]
    n = len(next(iter(values.values()))) if values else 0
    F = np.zeros((n, 1 + len(others)))
    for k, e in enumerate(others):
        F[:, 1 + k] = np.clip(values[e], 0.0, None)
    if host in elements:
        F[:, 0] = np.clip(values[host], 0.0, None)
        tot = F.sum(1)
        ok = tot > 1e-9
        F[ok] /= tot[ok, None]
        F[~ok, 0] = 1.0
    else:
        s = F[:, 1:].sum(1)
        over = s > 1.0
        F[over, 1:] /= s[over, None]
        F[:, 0] = 1.0 - F[:, 1:].sum(1)
    return [host, *others], F


def assign_species(numbers: np.ndarray, sublattice: np.ndarray, hosts_Z: list[int], xy_nm: np.ndarray,
                   region: np.ndarray, maps: dict[str, ElementMap], offset_nm, rng: np.random.Generator,
                   substitutions: dict[str, str] | None = None) -> tuple[np.ndarray, dict]:
    """New atomic numbers drawn from the local map fractions, sublattice by sublattice.

    numbers: (N,) host species; sublattice: (N,) global sublattice id; hosts_Z: host Z per global
    sublattice id; xy_nm: (N, 2) image positions; region: (N,) labels.  Atoms outside the maps'
    footprint take the mean fractions of their region's covered atoms (of the same sublattice), or
    keep their host species when none is covered.  Returns (numbers, info per sublattice).
    """
    from pymatgen.core import Element

    out = np.array(numbers, copy=True)
    N = len(out)
    u = rng.random(N)
    elements = sorted(maps)
    plan = substitution_plan(hosts_Z, elements, substitutions)
    info: dict = {}
    for k, els in plan.items():
        if not els:
            continue
        host = Element.from_Z(hosts_Z[k]).symbol
        if els == [host]:
            continue
        idx = np.nonzero(sublattice == k)[0]
        if len(idx) == 0:
            continue
        vals, inside = sample_maps(maps, offset_nm, xy_nm[idx])
        species, F = site_fractions({e: vals[e] for e in els}, host, els)
        # outside the footprint: region mean of covered sites, else host
        reg = region[idx]
        for lab in np.unique(reg):
            sel = reg == lab
            cov = sel & inside
            fill = F[cov].mean(0) if cov.any() else np.eye(F.shape[1])[0]
            F[sel & ~inside] = fill
        cum = np.cumsum(F, axis=1)
        choice = (u[idx, None] >= cum[:, :-1]).sum(1) if F.shape[1] > 1 else np.zeros(len(idx), int)
        Zs = np.array([Element(s).Z for s in species])
        out[idx] = Zs[choice]
        info[host] = {"elements": species, "n_sites": int(len(idx)), "covered": float(inside.mean()),
                      "mean_fraction": dict(zip(species, F.mean(0).round(4).tolist()))}
    return out, info
