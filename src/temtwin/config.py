"""Configuration: load, validate against ``config/schema.yaml`` (JSON Schema 2020-12), fill defaults.

The schema lives in the repository's ``config/`` folder; a copy is shipped inside the package
(``temtwin/data/config``) so the library validates configs when installed without the workflow.
Stage sections are separate schema files (``config/schema/<section>.yaml``) referenced from the main
schema with relative ``$ref``; they are resolved by a :mod:`referencing` registry.

A wrong key or type fails at start with one line that names the key, e.g.::

    config: segment.min_area_nm2: 'big' is not of type 'number'
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


def schema_dir() -> Path:
    """Folder holding ``schema.yaml`` (the repository's config/, else the packaged copy)."""
    env = os.environ.get("TEMTWIN_SCHEMA_DIR")
    if env:
        return Path(env)
    repo = REPO_ROOT / "config"
    if (repo / "schema.yaml").is_file():
        return repo
    return Path(__file__).resolve().parent / "data" / "config"


@lru_cache(maxsize=4)
def _load_schema(folder: str) -> tuple[dict, Registry]:
    base = Path(folder)
    resources = []
    for p in sorted(base.rglob("*.yaml")):
        if p.name == "config.yaml":
            continue
        doc = yaml.safe_load(p.read_text())
        if isinstance(doc, dict):
            if p.name != "schema.yaml":
                # a nested $schema would make jsonschema switch validator class and skip defaults
                doc.pop("$schema", None)
            resources.append((p.resolve().as_uri(), Resource.from_contents(doc, DRAFT202012)))
    main = yaml.safe_load((base / "schema.yaml").read_text())
    main.setdefault("$id", (base / "schema.yaml").resolve().as_uri())
    registry = Registry().with_resources(resources)
    return main, registry


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                sub = subschema
                if "$ref" in sub and "default" not in sub:
                    try:
                        sub = validator._resolver.lookup(sub["$ref"]).contents
                    except Exception:  # pragma: no cover
                        sub = subschema
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
                elif sub.get("type") == "object" and prop not in instance and "properties" in sub:
                    instance[prop] = {}
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultFilling = _extend_with_default(Draft202012Validator)


def _error_line(err) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    msg = err.message
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        where = f"{path}." if path else ""
        keys = ", ".join(f"{where}{k}" for k in extra)
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        return f"unknown key {keys} (allowed here: {allowed})"
    return f"{path or '(top level)'}: {msg}"


#: config sections renamed to their rule's name (issue 15: one name per stage): old -> new
RENAMED_SECTIONS = {"segmentation": "segment", "peaks": "fft_peaks", "stack": "register_stack",
                    "fem": "fem_geometry", "model": "atomic_model", "tight_binding": ("tb_moments", "tb_ldos")}


def renamed_section_message(old: str, where: str = "") -> str:
    """The one-line fix for a config section under its former name ``old`` (``where``: e.g. 'overrides.')."""
    new = RENAMED_SECTIONS[old]
    if isinstance(new, tuple):
        return (f"config section `{where}{old}` was split into `{where}{new[0]}` (model, structure, moments, "
                f"chunks, MPI, checkpoints, resources) and `{where}{new[1]}` (LDOS energies, band edges, "
                f"states); move each key to its section (see config/schema/{new[0]}.yaml and {new[1]}.yaml)")
    return f"config section `{where}{old}` is now called `{where}{new}` (its rule's name); rename it"


def check_renamed_sections(doc: Mapping[str, Any] | None, path, where: str = "") -> None:
    """UserError naming ``path`` when ``doc`` holds a section under its former name."""
    old = next((k for k in (doc or {}) if k in RENAMED_SECTIONS), None)
    if old is not None:
        raise UserError(renamed_section_message(old, where), path)


def validate(config: Mapping[str, Any], folder: Path | None = None, path: Path | str = "config") -> dict:
    """Validate ``config`` and return a copy with defaults filled in; UserError on the first problem."""
    main, registry = _load_schema(str(folder or schema_dir()))
    cfg = copy.deepcopy(dict(config))
    check_renamed_sections(cfg, path)
    v = _DefaultFilling(main, registry=registry)
    # two passes: the first fills defaults (so nested defaults exist), the second reports errors
    for _ in v.iter_errors(cfg):
        pass
    errors = sorted(Draft202012Validator(main, registry=registry).iter_errors(cfg),
                    key=lambda e: (len(list(e.absolute_path)), str(list(e.absolute_path))))
    if errors:
        raise UserError(_error_line(errors[0]), path)
    _check_elements((cfg.get("phase_id") or {}).get("elements"), "phase_id.elements", path)
    return cfg


def _check_elements(symbols, key: str, path) -> None:
    """UserError when an ``elements`` list holds something that is not an element symbol."""
    from .elements import unknown_elements

    bad = unknown_elements(symbols)
    if bad:
        raise UserError(f"{key}: {', '.join(repr(b) for b in bad)} is not a chemical element symbol; write "
                        "symbols like Si, Ge, In, Sb", path)


def load_config(config: Mapping[str, Any] | str | os.PathLike | None = None,
                require_dataset: bool = True) -> dict:
    """Load a config mapping or YAML file, validate it and fill defaults.

    With ``require_dataset`` the ``dataset`` folder must exist.
    """
    p: Path | str = "config"
    if config is None:
        cfg: dict = {}
    elif isinstance(config, (str, os.PathLike)):
        p = Path(config)
        if not p.is_file():
            raise UserError("config file not found; pass an existing YAML file", p)
        try:
            cfg = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"not valid YAML ({str(e).splitlines()[0]})", p) from None
    else:
        cfg, p = dict(config), "config"
    cfg = validate(cfg, path=p)
    if require_dataset:
        ds = Path(cfg["dataset"])
        if not ds.is_dir():
            raise UserError("dataset folder not found; set `dataset:` in the config "
                            "(or --config dataset=PATH) to a folder of <sample>/<image> files", ds)
    return cfg


def validate_sample(doc: Mapping[str, Any], path: Path | str = "sample.yaml") -> dict:
    """Validate a sample.yaml mapping against ``config/schema/sample.yaml``."""
    folder = schema_dir()
    _, registry = _load_schema(str(folder))
    uri = (folder / "schema" / "sample.yaml").resolve().as_uri()
    schema = registry.get_or_retrieve(uri).value.contents
    ov = doc.get("overrides")
    check_renamed_sections(ov if isinstance(ov, Mapping) else None, path, "overrides.")
    errors = sorted(Draft202012Validator(schema, registry=registry).iter_errors(dict(doc)),
                    key=lambda e: len(list(e.absolute_path)))
    if errors:
        raise UserError(_error_line(errors[0]), path)
    _check_elements(doc.get("elements"), "elements", path)
    return dict(doc)
