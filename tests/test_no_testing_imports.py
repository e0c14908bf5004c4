"""Production code never imports the test-data generators (issue 15): scan every module of src/temtwin
outside ``testing/`` for imports of ``temtwin.testing`` (absolute or relative), and outside ``testing/``,
``training/`` and the ``train-unet`` command of ``cli.py`` for imports of ``temtwin.training``."""

import ast
from pathlib import Path

import temtwin

ROOT = Path(temtwin.__file__).resolve().parent


def _imports(path: Path, root: Path = ROOT):
    """(line, absolute module name) of every import in ``path``, relative imports resolved."""
    pkg = path.relative_to(root.parent).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # "from temtwin import testing" / "from .. import testing"
                yield node.lineno, f"{mod}.{a.name}"


def _offenders(forbidden: str, allowed_dirs: tuple[str, ...], allowed_files: tuple[str, ...] = (),
               root: Path = ROOT):
    bad = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if rel.parts[0] in allowed_dirs or str(rel) in allowed_files:
            continue
        lines = sorted({line for line, mod in _imports(p, root)
                        if mod == forbidden or mod.startswith(forbidden + ".")})
        bad += [f"src/temtwin/{rel}:{line} imports {forbidden}" for line in lines]
    return bad


def test_scanner_catches_every_import_form(tmp_path):
    # the scanner itself, on a fake package tree: absolute, relative and "from .. import" forms
    root = tmp_path / "temtwin"
    (root / "gpa").mkdir(parents=True)
    (root / "testing").mkdir()
    (root / "gpa" / "stage.py").write_text("from ..testing.synth import crystal_scene\nfrom .. import testing\n"
                                           "import temtwin.testing.fft_spectra\nfrom .core import x\n")
    (root / "testing" / "gen.py").write_text("from ..testing import synth\n")
    bad = _offenders("temtwin.testing", ("testing",), root=root)
    assert [b.split(":")[1].split()[0] for b in bad] == ["1", "2", "3"]


def test_production_never_imports_testing():
    # temtwin.training (the U-Net training tool) draws its data from temtwin.testing; the next test
    # keeps every stage and the inference away from temtwin.training
    assert _offenders("temtwin.testing", ("testing", "training")) == []


def test_only_the_training_command_imports_training():
    assert _offenders("temtwin.training", ("testing", "training"), ("cli.py",)) == []
