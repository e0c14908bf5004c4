"""Render the configuration schema as a markdown reference: ``python docs/config_reference.py``.

Also refreshes the stage-registry table of docs/DEVELOPING.md (from temtwin.workflow.stages).
Writes docs/CONFIG.md and refreshes the table between the CONFIG markers in README.md, so the
documentation of every key (type, default, description) comes from config/schema*.yaml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "config"


def _load(ref: str) -> dict:
    return yaml.safe_load((CFG / ref).read_text())


def _rows(schema: dict, prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    for key, sub in (schema.get("properties") or {}).items():
        if "$ref" in sub:
            sub = _load(sub["$ref"])
        name = f"{prefix}{key}"
        typ = sub.get("type", "enum" if "enum" in sub else "")
        if "enum" in sub:
            typ = " \\| ".join(str(v) for v in sub["enum"])
        if isinstance(typ, list):
            typ = " \\| ".join(typ)
        default = sub.get("default", "")
        if sub.get("type") == "object" and sub.get("properties"):
            rows.append((name, "section", "", sub.get("description", sub.get("title", ""))))
            rows += _rows(sub, name + ".")
            continue
        d = json.dumps(default) if default != "" else ""
        rows.append((name, str(typ), d, " ".join(str(sub.get("description", "")).split())))
    return rows


def table() -> str:
    schema = yaml.safe_load((CFG / "schema.yaml").read_text())
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k, t, d, m in _rows(schema):
        lines.append(f"| `{k}` | {t} | {('`' + d + '`') if d else ''} | {m} |")
    return "\n".join(lines)


PURPOSE = {
    "stages": "switch the costly per-sample stages on or off",
    "ingest": "reading micrographs: frame alignment, calibration fallbacks",
    "segmentation": "rule `segment`: method (auto / canny / layers / sam / override), scales, multilayer-device settings, minimum region area, region cap, SAM checkpoint",
    "peaks": "rule `fft_peaks`: region windows, FFT grid, detectors (gauss / unet / profile), thresholds",
    "phase_id": "rule `phase_id`: candidate phases, zone-axis search, tolerances, scoring, Bragg filtering",
    "stack": "rule `register_stack`: overview choice, scale/rotation search ranges, minimum confidence",
    "gpa": "rule `gpa`: reference region, g vectors, mask resolution, tensor frame",
    "fem": "rule `fem_geometry`: source image, contour tolerance, mesh sizes",
    "fem_relax": "rule `fem_relax`: lamella thickness and layers, lateral boundary, reference region, compositions, "
                 "extra materials, fit",
    "spin_orbit": "rule `spin_orbit`: strain source, well phase, section direction, profile grid, positions, "
                  "Monte-Carlo samples",
    "model": "rule `atomic_model`: thickness, periodicity, displacement and composition maps, quality screen",
    "keating": "rule `keating`: relaxation method, force tolerance, fixed slabs, map bins",
    "phonons": "rule `phonons`: structure, regions/slabs, KPM moments and vectors, broadening",
    "tight_binding": "rules `tb_moments`/`tb_ldos`: Hamiltonian options, KPM moments, chunks, backend, band edges",
    "simulate_image": "rule `simulate_image`: imaging mode, optics start values and search ranges, multislice "
                      "sampling, fit crop, coverage, HAADF linear model, refinement, device",
}


def overview() -> str:
    """Compact table for README.md: top-level keys, and one row per stage section."""
    schema = yaml.safe_load((CFG / "schema.yaml").read_text())
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, sub in (schema.get("properties") or {}).items():
        if "$ref" in sub:
            sub = _load(sub["$ref"])
        desc = " ".join(str(sub.get("description", sub.get("title", ""))).split())
        if sub.get("type") == "object" and sub.get("properties"):
            n = len(_rows(sub))
            first = PURPOSE.get(key, desc.split(". ")[0].rstrip("."))
            lines.append(f"| `{key}.*` | | {first}. {n} keys: [reference](docs/CONFIG.md) |")
        else:
            d = json.dumps(sub.get("default", "")) if "default" in sub else ""
            lines.append(f"| `{key}` | {('`' + d + '`') if d else ''} | {desc} |")
    return "\n".join(lines)


def main() -> None:
    t = table()
    (ROOT / "docs" / "CONFIG.md").write_text(
        "# Configuration reference\n\nGenerated from `config/schema.yaml` by `docs/config_reference.py`."
        " Set keys in `config/config.yaml` or on the command line (`--config key=value`).\n\n" + t + "\n")
    readme = ROOT / "README.md"
    if readme.is_file():
        s = readme.read_text()
        s = re.sub(r"(<!-- CONFIG:BEGIN -->\n).*?(<!-- CONFIG:END -->)",
                   lambda m: m.group(1) + overview() + "\n" + m.group(2),
                   s, flags=re.S)
        readme.write_text(s)
    dev = ROOT / "docs" / "DEVELOPING.md"
    from temtwin.workflow.stages import markdown_table

    s = dev.read_text()
    s = re.sub(r"(<!-- STAGES-REGISTRY:BEGIN -->\n).*?(<!-- STAGES-REGISTRY:END -->)",
               lambda m: m.group(1) + markdown_table() + "\n" + m.group(2), s, flags=re.S)
    dev.write_text(refresh_results_layout(s))


def refresh_results_layout(text: str) -> str:
    """``text`` (docs/DEVELOPING.md) with the tables between the RESULTS-LAYOUT markers regenerated from
    the result modules (:func:`temtwin.results.markdown_layout`)."""
    from temtwin.results import markdown_layout

    return re.sub(r"(<!-- RESULTS-LAYOUT:BEGIN -->\n).*?(<!-- RESULTS-LAYOUT:END -->)",
                  lambda m: m.group(1) + markdown_layout() + "\n" + m.group(2), text, flags=re.S)


if __name__ == "__main__":
    main()
