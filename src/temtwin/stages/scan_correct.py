"""Stage ``scan_correct``: raw.h5 (ingest) -> image.h5, the STEM image with its scan distortion corrected.

Every later stage reads image.h5 unchanged. image.h5 has ingest's layout (``/image``, root attributes)
plus a group ``/scan_correction``: attrs ``applicable``, ``reason``, ``method``, ``changed``,
``lattice_assumption``, ``jitter_rms_px``, ``jitter_rms_nm``, ``valid_region_px``; datasets ``drift`` [dx, dy]
(fraction of the frame height per frame, x = fast scan, y = slow scan; 0 when not applied),
``drift_sigma``, ``drift_measured`` (the estimate, also when not significant), ``drift_px`` and ``drift_nm``
(the drift over the whole frame), ``jitter_px`` / ``jitter_nm`` (rows,) per-row fast-scan offsets (the
specimen x sampled at column j of row i is j + jitter_px[i]), ``jitter_sigma_px``.
Parallel-beam (TEM) images are copied unchanged with ``applicable = False``.
"""

from __future__ import annotations

import numpy as np

from ..io.h5 import set_summary
from ..results import TreeResult, read_summary
from ..results.image import Image
from ..io.image import read_image
from ..scan_correct.core import correct_scan, valid_region


def _summary(applicable: bool, reason: str, method: str, res, px: float, rows: int) -> dict:
    out = {"applicable": applicable, "reason": reason, "method": method, "changed": False}
    if res is not None:
        d = res.drift
        out.update({"changed": res.changed, "lattice_assumption": d.lattice if d else "",
                    "drift": [float(v) for v in d.drift] if d else [0.0, 0.0],
                    "drift_sigma": [float(v) for v in d.sigma] if d else [None, None],
                    "drift_measured": [float(v) for v in d.measured] if d else [None, None],
                    "drift_nm": [float(v) * rows * px for v in d.drift] if d else [0.0, 0.0],
                    "jitter_rms_px": float(res.jitter.rms_px) if (res.jitter and "jitter" in method) else 0.0})
        out["jitter_rms_nm"] = out["jitter_rms_px"] * px
    return out


def run(ctx) -> None:
    """Stage ``scan_correct``."""
    cfg = ctx.section("scan_correct")
    m = read_image(ctx.input["raw"])
    mode = str(m.meta.get("mode", "unknown"))
    rows = m.data.shape[0]
    px_x = float(m.pixel_size_nm[0])
    res = None
    pair_paths = ctx.paths("pair")
    if pair_paths and cfg.get("enabled", True):
        return _run_pair(ctx, cfg, m, pair_paths[0])
    if not cfg.get("enabled", True):
        applicable, reason, method = False, "scan correction switched off (scan_correct.enabled: false)", "none"
    elif mode == "TEM" or (mode != "STEM" and not cfg.get("correct_unknown_mode", False)):
        applicable, method = False, "none"
        reason = ("parallel-beam TEM image: no scan, nothing to correct" if mode == "TEM" else
                  f"acquisition mode {mode!r} is not STEM: set `mode: STEM` for this image in sample.yaml "
                  "(images.<name>.mode) or scan_correct.correct_unknown_mode: true to correct it")
    else:
        res = correct_scan(m.data, m.pixel_size_nm, jitter=cfg.get("jitter", True),
                           linear_drift=cfg.get("linear_drift", True), lattice=cfg.get("lattice", "auto"),
                           max_drift=cfg.get("max_drift", 0.05), min_drift=cfg.get("min_drift", 0.002),
                           n_sigma=cfg.get("n_sigma", 3.0), min_jitter_px=cfg.get("min_jitter_px", 0.08),
                           jitter_max_period=cfg.get("jitter_max_period", 1.0))
        applicable, reason, method = res.drift is not None, res.reason, res.method
        ctx.log.info("%s: %s; %s", m.name, method, reason or "all parts applied")
        m.data = res.image
    frag = _summary(applicable, reason, method, res, px_x, rows)
    d = res.drift if res is not None else None
    drift = np.asarray(d.drift if d is not None else [0.0, 0.0], float)
    jit = res.jitter if (res is not None and "jitter" in method) else None
    o = jit.offset_px if jit is not None else np.zeros(rows)
    g = TreeResult(attrs={"": {"applicable": applicable, "reason": reason, "method": method,
                     "changed": frag["changed"], "lattice_assumption": frag.get("lattice_assumption", ""),
                     "jitter_rms_px": frag.get("jitter_rms_px", 0.0),
                     "jitter_rms_nm": frag.get("jitter_rms_nm", 0.0),
                     "convention": "x = fast scan (columns), y = slow scan (rows); drift per frame as a "
                                   "fraction of the frame height; specimen x at (row i, column j) = "
                                   "j + jitter_px[i] + drift[0] * i",
                     "valid_region_px": np.asarray((res.info if res is not None else {}).get(
                         "valid_region_px", [0, 0, rows, m.data.shape[1]]), np.int64)}})
    g.put("drift", drift, "1", description="[dx, dy] drift per frame / frame height")
    g.put("drift_sigma", np.asarray(d.sigma if d is not None else [np.nan, np.nan], float), "1")
    g.put("drift_measured", np.asarray(d.measured if d is not None else [np.nan, np.nan], float), "1",
          description="drift that would restore the assumed lattice (applied only when significant)")
    g.put("drift_px", drift * rows, "px", description="drift over the frame [x, y]")
    g.put("drift_nm", drift * rows * np.asarray(m.pixel_size_nm, float), "nm")
    g.put("jitter_px", o, "px", description="fast-scan offset of each row")
    g.put("jitter_nm", o * px_x, "nm")
    g.put("jitter_sigma_px", jit.sigma_px if jit is not None else np.full(rows, np.nan), "px")
    if res is not None and res.g_px is not None:
        g.put("g_basis_px", res.g_px, "1/px", description="reduced reciprocal basis [kx, ky]")
    img = Image.from_micrograph(m)
    img.scan_correction = g
    with ctx.h5("h5") as f:
        img.write(f)
        summ = read_summary(ctx.input["raw"])       # ingest's fragment (pixel size, shape, mode, ...)
        summ["scan_correction"] = frag
        set_summary(f, summ)
    out = ctx.output.get("figures")
    if out:
        from ..scan_correct.figures import scan_correction_figures
        scan_correction_figures(read_image(ctx.input["raw"]).data, m, frag, res, out)


def _run_pair(ctx, cfg, m, partner_path) -> None:
    """The two-scan correction of a declared scan pair (:mod:`temtwin.scan_correct.pair`)."""
    from ..errors import UserError
    from ..scan_correct.pair import correct_pair, scan_partner

    settings = ctx.sample_settings()
    partner, role = scan_partner(settings, m.name) or ("", "a")
    other = read_image(partner_path)
    yaml_path = ctx.sample_yaml()
    if str(m.meta.get("mode", "")) == "TEM" or str(other.meta.get("mode", "")) == "TEM":
        raise UserError(f"images {m.name} and {partner} are declared a scan pair but one is a TEM image; "
                        "remove `scan_pair` or fix `mode`", yaml_path)
    if m.data.shape != other.data.shape or m.data.shape[0] != m.data.shape[1] \
            or not np.allclose(m.pixel_size_nm, other.pixel_size_nm, rtol=1e-3):
        raise UserError(f"scan pair {m.name}/{partner}: the two scans must be square with the same shape and "
                        f"pixel size ({m.data.shape} vs {other.data.shape}); remove `scan_pair` or crop them",
                        yaml_path)
    a, b = (m.data, other.data) if role == "a" else (other.data, m.data)
    ctx.log.info("%s: scan pair with %s (this image is the %s scan)", m.name, partner, "0°" if role == "a" else "90°")
    res = correct_pair(a, b, max_drift=cfg.get("max_drift", 0.05))
    rows = m.data.shape[0]
    drift = res.drift if role == "a" else np.array([res.drift[1], -res.drift[0]])
    offsets = res.offsets_a if role == "a" else res.offsets_b
    jit_rms = float(np.sqrt(np.mean(offsets ** 2)))
    significant = bool(np.max(np.abs(res.drift)) >= cfg.get("min_drift", 0.002)
                       or jit_rms >= cfg.get("min_jitter_px", 0.08))
    raw = m.data.copy()
    if significant:
        m.data = res.image if role == "a" else np.ascontiguousarray(np.rot90(res.image, 1))
    method = "scan pair (Ophus 2016): linear drift + row offsets, mean of both scans"
    reason = "" if significant else "scan pair: no significant drift or row offsets; image left unchanged"
    frag = {"applicable": True, "reason": reason, "method": method if significant else "none",
            "changed": significant, "lattice_assumption": "", "scan_pair": partner,
            "drift": [float(v) for v in drift], "drift_sigma": [None, None],
            "drift_nm": [float(v) * rows * m.pixel_size_nm[0] for v in drift],
            "jitter_rms_px": jit_rms, "jitter_rms_nm": jit_rms * float(m.pixel_size_nm[0]),
            "pair_correlation": [float(res.score_no_drift), float(res.score)]}
    g = TreeResult(attrs={"": {"applicable": True, "reason": reason, "method": frag["method"], "changed": significant,
                     "lattice_assumption": "", "scan_pair": partner, "scan_role": role,
                     "jitter_rms_px": jit_rms, "jitter_rms_nm": frag["jitter_rms_nm"],
                     "convention": "drift and row offsets in this image's own scan frame (x = its fast scan)",
                     "valid_region_px": np.asarray(valid_region(m.data.shape, drift, offsets) if significant
                                                   else [0, 0, rows, m.data.shape[1]], np.int64)}})
    g.put("drift", drift, "1", description="[dx, dy] drift per frame / frame height")
    g.put("drift_sigma", np.array([np.nan, np.nan]), "1")
    g.put("drift_px", drift * rows, "px")
    g.put("drift_nm", drift * rows * np.asarray(m.pixel_size_nm, float), "nm")
    g.put("jitter_px", offsets, "px", description="fast-scan offset of each scan line")
    g.put("jitter_nm", offsets * float(m.pixel_size_nm[0]), "nm")
    g.put("jitter_sigma_px", np.full(rows, np.nan), "px")
    img = Image.from_micrograph(m)
    img.scan_correction = g
    with ctx.h5("h5") as f:
        img.write(f)
        summ = read_summary(ctx.input["raw"])
        summ["scan_correction"] = frag
        set_summary(f, summ)
    out = ctx.output.get("figures")
    if out:
        from ..scan_correct.figures import scan_correction_figures
        scan_correction_figures(raw, m, frag, None, out)
