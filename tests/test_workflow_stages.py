"""The stage registry is the one list of stages: rules, scripts, config sections and docs follow it."""

import importlib
import re

from conftest import REPO

from temtwin.config import load_config
from temtwin.workflow.stages import STAGES, markdown_table


def _rules() -> dict[str, str]:
    """rule name -> its text, from rules/*.smk."""
    out = {}
    for f in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):", f.read_text(), flags=re.M)
        out.update({parts[i]: parts[i + 1] for i in range(1, len(parts), 2)})
    return out


def test_every_rule_is_a_registry_stage_with_its_section_and_script():
    rules = _rules()
    assert set(rules) == {s.rule for s in STAGES}
    sections = set(load_config({}, require_dataset=False))
    for s in STAGES:
        text = rules[s.rule]
        # one name per stage: the config section is the rule's (the viewer's three rules share `viewer`)
        assert s.section in (s.rule, "viewer" if s.rule.startswith("viewer") else s.rule, ""), s
        if s.sections:
            assert set(s.sections) <= sections, s
            declared = ", ".join(f'"{x}"' for x in s.sections)
            assert re.search(rf'settings=W\.settings\({declared}[,)]', text), (s.rule, declared)
        if "category=" in text:
            assert f'category=category("{s.rule}")' in text, s.rule
        script = REPO / "scripts" / f"{s.rule}.py"
        assert f'"../scripts/{s.rule}.py"' in text and "run_stage(snakemake)" in script.read_text(), s.rule
        # the stage module is named as the rule: temtwin.stages.<rule>, function run
        assert s.entry == f"temtwin.stages.{s.rule}:run"
        assert callable(importlib.import_module(f"temtwin.stages.{s.rule}").run), s.rule
    modules = {p.stem for p in (REPO / "src" / "temtwin" / "stages").glob("*.py")} - {"__init__"}
    assert modules == {s.rule for s in STAGES}, "one module per rule in src/temtwin/stages/, nothing else"


def test_developing_page_shows_the_current_registry():
    page = (REPO / "docs" / "DEVELOPING.md").read_text()
    block = page.split("<!-- STAGES-REGISTRY:BEGIN -->\n")[1].split("<!-- STAGES-REGISTRY:END -->")[0]
    assert block.strip() == markdown_table().strip(), "run: python docs/config_reference.py"
