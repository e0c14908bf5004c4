"""Human corrections: ``<dataset>/<sample>/overrides.yaml`` (written by ``viewer.html``).

Schema: ``config/schema/overrides.yaml``.  Example::

    sample: sige_qw_device
    images:
      hrtem:
        regions:
          "3": {action: pick, phase: Si, zone_axis: [1, 1, 0]}   # phase_id: another ranked candidate
          "4": {action: amorphous}                                # phase_id: no crystal
          "5": {action: exclude}                                  # segment: label 0
        merge: [[1, 2]]                                           # segment: region 2 joins region 1

Region labels are those of the automatic segmentation; a merge keeps the smaller label and an excluded
region becomes 0, the other labels keep their numbers (so a later pick still names the right region).

Which rule honours what (:data:`STAGE_ACTIONS`): ``segment`` the exclusions and merges, ``phase_id`` the
picks and amorphous marks.  The Snakefile gives each job only its own slice of the file (an input
marked ``ancient`` plus the slice as a param), so editing one image's picks reruns that image's
``phase_id`` and what depends on it, nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import UserError

FILENAME = "overrides.yaml"
STAGE_ACTIONS = {"segment": ("exclude",), "phase_id": ("pick", "amorphous")}


def read_overrides(path: str | Path, sample: str | None = None) -> dict:
    """Read and validate an overrides.yaml (UserError naming the file and the problem)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({str(e).splitlines()[0]}); save the file the viewer produced "
                        "unchanged", path) from None
    if not isinstance(doc, dict):
        raise UserError("must be a mapping with `images:` (see config/schema/overrides.yaml)", path)
    from jsonschema import Draft202012Validator

    from ..config import _error_line, _load_schema, schema_dir

    folder = schema_dir()
    _, registry = _load_schema(str(folder))
    schema = registry.get_or_retrieve((folder / "schema" / "overrides.yaml").resolve().as_uri()).value.contents
    errors = sorted(Draft202012Validator(schema, registry=registry).iter_errors(doc),
                    key=lambda e: len(list(e.absolute_path)))
    if errors:
        raise UserError(_error_line(errors[0]) + " (see config/schema/overrides.yaml)", path)
    if sample is not None and doc.get("sample") not in (None, sample):
        raise UserError(f"written for sample {doc['sample']!r} but saved in sample {sample!r}; move it to "
                        f"<dataset>/{doc['sample']}/{FILENAME}", path)
    for im, entry in (doc.get("images") or {}).items():
        for a, b in entry.get("merge") or []:
            if a == b:
                raise UserError(f"images.{im}.merge: cannot merge region {a} with itself", path)
    return doc


def stage_actions(doc: dict | None, image: str, stage: str) -> dict:
    """The part of an overrides document one job of ``stage`` (segment / phase_id) honours for ``image``.

    segment: ``{"exclude": [labels], "merge": [[a, b], ...]}``; phase_id: ``{"regions": {label: entry}}``.
    Empty ({}) when the job has nothing to honour (then it does not depend on the file).
    """
    entry = ((doc or {}).get("images") or {}).get(image) or {}
    regions = {str(k): dict(v) for k, v in (entry.get("regions") or {}).items()}
    if stage == "segment":
        out: dict[str, Any] = {}
        ex = sorted(int(k) for k, v in regions.items() if v["action"] == "exclude")
        if ex:
            out["exclude"] = ex
        if entry.get("merge"):
            out["merge"] = [sorted(int(x) for x in pair) for pair in entry["merge"]]
        return out
    if stage == "phase_id":
        sel = {k: v for k, v in sorted(regions.items(), key=lambda kv: int(kv[0]))
               if v["action"] in STAGE_ACTIONS["phase_id"]}
        return {"regions": sel} if sel else {}
    raise ValueError(f"no override actions for stage {stage!r}")


# ------------------------------------------------------------------------------------------ segment
def apply_segment(labels: np.ndarray, actions: dict, path: str | Path = FILENAME) -> tuple[np.ndarray, dict]:
    """Labels after the exclusions (-> 0) and merges (the larger label joins the smaller).

    Merges are applied in order and chain (merging [1, 2] and [2, 3] puts 3 into 1).  Returns the new
    label map and attributes recording what was done.  UserError for a label the segmentation lacks.
    """
    present = set(np.unique(labels).tolist()) - {0}
    lut = np.arange(int(labels.max(initial=0)) + 1, dtype=np.int64)
    for a, b in actions.get("merge", []):
        for x in (a, b):
            if x not in present:
                raise UserError(f"merge names region {x}, which the segmentation does not have "
                                f"(regions {_fmt(present)}); fix the label", path)
        ra, rb = int(lut[a]), int(lut[b])
        keep, drop = min(ra, rb), max(ra, rb)
        lut[lut == drop] = keep
    for x in actions.get("exclude", []):
        if x not in present:
            raise UserError(f"exclude names region {x}, which the segmentation does not have "
                            f"(regions {_fmt(present)}); fix the label", path)
        lut[lut == lut[x]] = 0
    out = lut[labels].astype(labels.dtype)
    info = {"overrides_file": str(path), "overrides": json.dumps(actions, sort_keys=True)}
    return out, info


def _fmt(labels) -> str:
    return ", ".join(str(x) for x in sorted(labels)) or "none"


# ------------------------------------------------------------------------------------------ phase_id
def apply_phase(actions: dict, results: dict, reasons: dict, spots_of: dict, lib, mcfg, scan_rows: bool,
                path: str | Path = FILENAME, log=None) -> dict[int, dict]:
    """Honour picks and amorphous marks in the phase_id results (in place); returns per-label records.

    ``results`` label -> list of Crystal (best first), ``reasons`` label -> text, ``spots_of`` label ->
    Spots, as in :func:`temtwin.stages.phase_id.run`.  A pick re-runs the region's search and takes the
    picked candidate's refined solution (orientation, indexed spots, scale) from it, so everything
    downstream (GPA, twin) uses a self-consistent crystal; it is marked identified (a human decided),
    its score and confidence stay the automatic ones.  UserError when the picked phase / zone axis is
    not among the region's candidates.
    """
    from ..phase.matching import confidences, make_crystal, search

    done: dict[int, dict] = {}
    for key, entry in (actions.get("regions") or {}).items():
        label = int(key)
        if label not in results:
            raise UserError(f"region {label} is not in this image's results (regions {_fmt(results)}); it "
                            "may have been merged or excluded: fix the label", path)
        before = results[label][0] if results[label] else None
        auto = {"automatic_phase": before.phase if before is not None and before.identified else "",
                "automatic_zone_axis": [int(v) for v in before.uvw] if before is not None else []}
        note = str(entry.get("note", ""))
        if entry["action"] == "amorphous":
            results[label] = []
            reasons[label] = "marked amorphous by hand (overrides.yaml)"
            done[label] = {"override": "amorphous", "amorphous": True, **auto, "note": note}
        elif entry["action"] == "pick":
            want_phase, want_zone = str(entry["phase"]), [int(v) for v in entry["zone_axis"]]
            spots = spots_of[label].within(lib.g_max)
            ev = search(lib, spots, mcfg, None, scan=scan_rows) if len(spots) >= 2 else None
            rank = None
            if ev is not None:
                for r, p in enumerate(ev.p):
                    pat = lib.patterns[int(p)]
                    zone = [int(v) for v in (pat.uvw4 if len(want_zone) == 4 and pat.uvw4 is not None else pat.uvw)]
                    if pat.phase == want_phase and zone == want_zone:
                        rank = r
                        break
            if rank is None:
                raise UserError(f"region {label}: {want_phase} {want_zone} is not among its candidates; "
                                "pick a row of the candidate table in viewer.html", path)
            conf = confidences(ev.score, mcfg.confidence_sharpness)
            c = make_crystal(lib, spots, ev, rank, conf, mcfg, scan=scan_rows)
            if before is not None and before.candidates:
                c.candidates = before.candidates
            c.identified = True
            results[label] = [c]
            reasons[label] = f"picked by hand (overrides.yaml); automatic call {auto['automatic_phase'] or 'none'}"
            done[label] = {"override": "pick", **auto, "note": note}
        if log is not None:
            log.info("region %d: override %s (%s)", label, entry["action"], path)
    return done


def annotate_phase(f, summary: dict, done: dict[int, dict]) -> None:
    """Record the honoured overrides in phases.h5 (``/regions/<label>`` attrs) and the summary fragment."""
    from ..results.phases import Phases

    for label, rec in done.items():
        Phases.update_attrs(f, f"regions/{label}", source="override", override=rec["override"],
                            automatic_phase=rec["automatic_phase"])
        reg = summary.setdefault("regions", {}).setdefault(str(label), {})
        reg.update({k: v for k, v in rec.items() if k != "note" or v})
