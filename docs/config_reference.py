"""Render the configuration schema as a markdown reference: ``python docs/config_reference.py``.

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


def main() -> None:
    t = table()
    (ROOT / "docs" / "CONFIG.md").write_text(
        "# Configuration reference\n\nGenerated from `config/schema.yaml` by `docs/config_reference.py`."
        " Set keys in `config/config.yaml` or on the command line (`--config key=value`).\n\n" + t + "\n")
    readme = ROOT / "README.md"
    if readme.is_file():
        s = readme.read_text()
        s = re.sub(r"(<!-- CONFIG:BEGIN -->\n).*?(\n<!-- CONFIG:END -->)", lambda m: m.group(1) + t + m.group(2),
                   s, flags=re.S)
        readme.write_text(s)


if __name__ == "__main__":
    main()
