"""Stage position, magnification and scan rotation of an image, from vendor metadata or sample.yaml.

Values (the keys of :data:`STAGE_KEYS`, stored as root attributes of ``raw.h5`` / ``image.h5``):

* ``stage_x_um``, ``stage_y_um``: stage position of the image's centre (µm);
* ``scan_rotation_deg``: angle of the image's +x axis in the stage frame (degrees, from +x towards +y;
  for STEM the scan rotation, for TEM whatever image rotation the user states);
* ``magnification``: indicated magnification (1; NaN when unknown);
* ``stage_source``: where the position came from (``"file metadata (<format>)"``, ``"sample.yaml"``
  or ``""`` when unknown).

Convention (the stage frame): a point at image offset ``v`` (nm, image axes x right, y down) from the
image's centre sits at the stage point ``stage + R(scan_rotation_deg) @ v``; only *differences* of stage
positions between images of one sample are used (their origin does not matter).

Vendor sources (``original_metadata`` as rosettasciio returns it; the native units are converted here,
not taken from rosettasciio's ``metadata`` mapping, whose units differ between readers):

* Gatan DigitalMicrograph (.dm3/.dm4): ``ImageTags.Microscope Info.Stage Position.Stage X/Y`` (µm),
  ``Microscope Info.Indicated Magnification``, ``DigiScan.Rotation`` (degrees);
* Thermo Fisher Velox (.emd): ``Stage.Position.x/y`` (m), ``Scan.ScanRotation`` (rad),
  ``Optics.NominalMagnification`` / ``CustomProperties.StemMagnification.value``;
* FEI TIA (.ser with .emi): ``ObjectInfo.ExperimentalDescription.Stage X [um]`` (any spelling that
  rosettasciio produces), ``Magnification_x``, ``Stem Rotation_deg`` when present; the experimental
  description lives in the companion ``<name>.emi`` of ``<name>_<n>.ser`` (read by
  :func:`tia_companion_metadata` when the .ser's own signal lacks it);
* HyperSpy (.hspy): ``Acquisition_instrument.TEM.Stage.x/y`` (mm, HyperSpy's convention).
"""

from __future__ import annotations

import math
import re
from typing import Any

STAGE_KEYS = ("stage_x_um", "stage_y_um", "scan_rotation_deg", "stage_source")


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _num(v: Any) -> float:
    if isinstance(v, dict) and "value" in v:
        v = v["value"]
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _find_key(d: Any, pattern: str) -> Any:
    """The value of the first key (depth first) whose name matches ``pattern`` (regex, case-insensitive)."""
    rx = re.compile(pattern, re.I)
    stack = [d]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, dict):
            continue
        for k, v in cur.items():
            if isinstance(v, dict):
                stack.append(v)
            elif rx.fullmatch(str(k)):
                return v
    return None


def _dm(om: dict) -> dict:
    tags = None
    for img in (_get(om, "ImageList") or {}).values():   # the image with microscope tags
        t = _get(img, "ImageTags")
        if isinstance(t, dict) and ("Microscope Info" in t or "DigiScan" in t):
            tags = t
    if tags is None:
        return {}
    mi = tags.get("Microscope Info") or {}
    sp = mi.get("Stage Position") or {}
    return {"x_um": _num(sp.get("Stage X")), "y_um": _num(sp.get("Stage Y")),
            "rot_deg": _num(_get(tags, "DigiScan", "Rotation")),
            "mag": _num(mi.get("Indicated Magnification", mi.get("Actual Magnification")))}


def _velox(om: dict) -> dict:
    if not isinstance(om.get("Stage"), dict) and not isinstance(om.get("Scan"), dict):
        return {}
    rot = _num(_get(om, "Scan", "ScanRotation"))
    mag = _num(_get(om, "CustomProperties", "StemMagnification", "value"))
    if not math.isfinite(mag):
        mag = _num(_get(om, "Optics", "NominalMagnification"))
    return {"x_um": _num(_get(om, "Stage", "Position", "x")) * 1e6,
            "y_um": _num(_get(om, "Stage", "Position", "y")) * 1e6,
            "rot_deg": math.degrees(rot) if math.isfinite(rot) else math.nan, "mag": mag}


def _tia(om: dict) -> dict:
    ed = _get(om, "ObjectInfo", "ExperimentalDescription")
    if not isinstance(ed, dict):
        return {}
    return {"x_um": _num(_find_key(ed, r"stage[ _]?x[ _\[]*um\]?")),
            "y_um": _num(_find_key(ed, r"stage[ _]?y[ _\[]*um\]?")),
            "rot_deg": _num(_find_key(ed, r"stem[ _]?rotation([ _\[]*deg\]?)?")),
            "mag": _num(_find_key(ed, r"magnification[ _]?x?"))}


def tia_companion_metadata(path) -> dict:
    """``original_metadata`` (with ``ObjectInfo``) of a TIA ``<name>_<n>.ser`` read through its
    companion ``<name>.emi`` (rosettasciio's TIA reader, lazily: no pixel data), or {} when there is
    no companion or it cannot be read (the stage is then unknown, not zero)."""
    from pathlib import Path

    p = Path(path)
    m = re.fullmatch(r"(.*)_(\d+)", p.stem)
    if p.suffix.lower() != ".ser" or not m:
        return {}
    emi = next((q for q in (p.with_name(m.group(1) + ".emi"), p.with_name(m.group(1) + ".EMI")) if q.is_file()),
               None)
    if emi is None:
        return {}
    try:
        from rsciio.tia import file_reader

        sigs = file_reader(str(emi), lazy=True)
    except Exception:  # noqa: BLE001 - a damaged .emi only loses the stage metadata
        return {}
    k = int(m.group(2)) - 1
    if not isinstance(sigs, list) or not 0 <= k < len(sigs):
        return {}
    return sigs[k].get("original_metadata") or {}


def _hyperspy(md: dict) -> dict:
    st = _get(md, "Acquisition_instrument", "TEM", "Stage") or _get(md, "Acquisition_instrument", "SEM", "Stage")
    if not isinstance(st, dict):
        return {}
    return {"x_um": _num(st.get("x")) * 1e3, "y_um": _num(st.get("y")) * 1e3, "rot_deg": math.nan,
            "mag": _num(_get(md, "Acquisition_instrument", "TEM", "magnification"))}


def stage_from_signal(signal: dict, suffix: str = "") -> dict[str, Any]:
    """Stage values (see module docstring) of one rosettasciio signal dict; absent values are NaN/""."""
    om = signal.get("original_metadata") or {}
    md = signal.get("metadata") or {}
    suffix = suffix.lower()
    readers = {".dm3": ("DigitalMicrograph", _dm), ".dm4": ("DigitalMicrograph", _dm),
               ".emd": ("Velox", _velox), ".ser": ("TIA", _tia)}
    found: dict = {}
    fmt = ""
    if suffix in readers:
        fmt, fn = readers[suffix]
        found = fn(om)
    if not (math.isfinite(found.get("x_um", math.nan)) and math.isfinite(found.get("y_um", math.nan))):
        hs = _hyperspy(md)
        if math.isfinite(hs.get("x_um", math.nan)) and math.isfinite(hs.get("y_um", math.nan)):
            found = {**hs, "rot_deg": found.get("rot_deg", math.nan), "mag": found.get("mag", hs["mag"])}
            fmt = fmt or "HyperSpy"
    x, y = found.get("x_um", math.nan), found.get("y_um", math.nan)
    ok = math.isfinite(x) and math.isfinite(y)
    rot = found.get("rot_deg", math.nan)
    return {"stage_x_um": x if ok else math.nan, "stage_y_um": y if ok else math.nan,
            "scan_rotation_deg": rot if math.isfinite(rot) else (0.0 if ok else math.nan),
            "stage_source": f"file metadata ({fmt})" if ok else "",
            "magnification_metadata": found.get("mag", math.nan)}


def apply_sample_yaml(values: dict, settings: dict | None, image: str) -> dict:
    """``values`` with ``images.<image>.stage_position_um`` / ``rotation_deg`` of sample.yaml applied
    (a user's statement overrides the file's metadata)."""
    per = ((settings or {}).get("images") or {}).get(image) or {}
    out = dict(values)
    if per.get("stage_position_um") is not None:
        x, y = per["stage_position_um"]
        out.update(stage_x_um=float(x), stage_y_um=float(y), stage_source="sample.yaml")
        if per.get("rotation_deg") is None and not math.isfinite(out.get("scan_rotation_deg", math.nan)):
            out["scan_rotation_deg"] = 0.0
    if per.get("rotation_deg") is not None:
        out["scan_rotation_deg"] = float(per["rotation_deg"])
    return out


def write_stage_attrs(f, meta: dict) -> None:
    """Write the stage values of ``meta`` (if any) as root attributes of an open HDF5 file."""
    for k in ("stage_x_um", "stage_y_um", "scan_rotation_deg"):
        f.attrs[k] = float(meta.get(k, math.nan))
    f.attrs["stage_source"] = str(meta.get("stage_source", "") or "")


def stage_of(meta: dict) -> tuple[float, float, float] | None:
    """(x_um, y_um, rotation_deg) of an image's metadata (image.h5 attrs), or None when not known."""
    try:
        x, y = float(meta.get("stage_x_um", math.nan)), float(meta.get("stage_y_um", math.nan))
        r = float(meta.get("scan_rotation_deg", math.nan))
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return x, y, (r if math.isfinite(r) else 0.0)


def stage_meta(signal: dict, suffix: str, settings: dict | None, image: str, path=None) -> dict:
    """Stage values for an image's metadata: the file's (:func:`stage_from_signal`) with sample.yaml's
    applied; ``magnification`` is included when the file's mapped metadata lacked it.  ``path``: the
    image file (a TIA .ser's experimental description is then read from its companion .emi)."""
    if suffix.lower() == ".ser" and path is not None and not _get(signal.get("original_metadata") or {},
                                                                  "ObjectInfo", "ExperimentalDescription"):
        om = tia_companion_metadata(path)
        if om:
            signal = {**signal, "original_metadata": om}
    v = apply_sample_yaml(stage_from_signal(signal, suffix), settings, image)
    mag = v.pop("magnification_metadata", math.nan)
    md_mag = _num(_get(signal.get("metadata") or {}, "Acquisition_instrument", "TEM", "magnification"))
    if not math.isfinite(md_mag) and math.isfinite(mag):
        v["magnification"] = mag
    return v
