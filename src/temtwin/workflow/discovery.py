"""Dataset discovery: ``<dataset>/<sample>/<image files>`` with optional per-sample files.

Per sample folder:

* image files: ``.dm3 .dm4 .emd .ser .hspy .tif .tiff`` (calibrated) and ``.png .jpg .jpeg``
  (uncalibrated: the pixel size must be given in ``sample.yaml``); the image name is the file stem;
* ``sample.yaml`` (optional): elements, candidate phases, pixel sizes, per-image settings, overrides
  of config sections (validated against ``config/schema/sample.yaml``);
* ``phases/*.cif`` (optional): the sample's own candidate phases;
* ``eels/<Element>.*`` (optional): composition maps;
* ``labels/<image>.tif|.png|.npy`` (optional): a hand-corrected label map replacing the automatic
  segmentation of that image.

Ignored: hidden files, ``truth.*`` (validation ground truth), ``.emi`` (read through its ``.ser``),
sub-folders other than the ones above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

CALIBRATED_EXT = (".dm3", ".dm4", ".emd", ".ser", ".hspy", ".tif", ".tiff")
UNCALIBRATED_EXT = (".png", ".jpg", ".jpeg")
IMAGE_EXT = CALIBRATED_EXT + UNCALIBRATED_EXT
LABEL_EXT = (".tif", ".tiff", ".png", ".npy")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class Sample:
    """One sample folder and what it holds."""

    name: str
    path: Path
    images: dict[str, Path] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    phase_files: list[Path] = field(default_factory=list)
    eels_files: list[Path] = field(default_factory=list)
    label_overrides: dict[str, Path] = field(default_factory=dict)

    @property
    def map_elements(self) -> list[str]:
        """Element symbols of the composition maps ``eels/<El>.*`` (file stems that are element symbols)."""
        return element_names(self.eels_files)

    @property
    def sample_yaml(self) -> Path | None:
        p = self.path / "sample.yaml"
        return p if p.is_file() else None


ELEMENT_RE = re.compile(r"^[A-Z][a-z]?$")


def element_names(files) -> list[str]:
    """Sorted element symbols among the stems of ``files`` (``eels/Si.tif`` -> ``Si``; others ignored)."""
    return sorted({Path(f).stem for f in files if ELEMENT_RE.match(Path(f).stem)})


def read_sample_yaml(path: Path) -> dict:
    """Read and validate a ``sample.yaml``; UserError with the file and key on problems."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({str(e).splitlines()[0]}); fix the syntax", path) from None
    if not isinstance(doc, dict):
        raise UserError("must be a mapping of keys (elements, phases, pixel_size_nm, images, ...)", path)
    from ..config import validate_sample

    return validate_sample(doc, path)


def discover(dataset: str | Path, samples: list[str] | None = None) -> dict[str, Sample]:
    """Scan a dataset folder; UserError for an empty or malformed dataset."""
    root = Path(dataset)
    if not root.is_dir():
        raise UserError("dataset folder not found; set `dataset:` in the config", root)
    found: dict[str, Sample] = {}
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if samples and sdir.name not in samples:
            continue
        s = Sample(sdir.name, sdir)
        for f in sorted(sdir.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.stem == "truth":
                continue
            if f.suffix.lower() not in IMAGE_EXT:
                continue
            stem = f.stem
            if not NAME_RE.match(stem):
                raise UserError("image names may contain letters, digits and _.+- only; rename the file", f)
            if stem in s.images:
                raise UserError(f"two images named {stem!r} ({s.images[stem].name} and {f.name}); "
                                "rename one", sdir)
            s.images[stem] = f
        if not s.images:
            continue
        if not NAME_RE.match(s.name):
            raise UserError("sample folder names may contain letters, digits and _.+- only; rename it", sdir)
        if s.sample_yaml:
            s.settings = read_sample_yaml(s.sample_yaml)
        if (sdir / "phases").is_dir():
            s.phase_files = sorted(p for p in (sdir / "phases").glob("*.cif"))
        if (sdir / "eels").is_dir():
            s.eels_files = sorted(p for p in (sdir / "eels").iterdir()
                                  if p.is_file() and not p.name.startswith("."))
        if (sdir / "labels").is_dir():
            for p in sorted((sdir / "labels").iterdir()):
                if p.suffix.lower() in LABEL_EXT and p.stem in s.images:
                    s.label_overrides[p.stem] = p
        for img, f in s.images.items():
            if f.suffix.lower() in UNCALIBRATED_EXT and pixel_size_from_settings(s.settings, img) is None:
                raise UserError(f"uncalibrated image: set `pixel_size_nm` (or `images: {{{img}: "
                                f"{{pixel_size_nm: ...}}}}`) in {sdir / 'sample.yaml'}", f)
        found[s.name] = s
    if samples:
        missing = sorted(set(samples) - set(found))
        if missing:
            raise UserError(f"sample(s) {', '.join(missing)} not found or without images; check `samples:`", root)
    if not found:
        raise UserError("no images found: the dataset must hold <sample>/<image> files "
                        f"({', '.join(IMAGE_EXT)})", root)
    return found


def sample_overrides(sample: Sample, section: str) -> dict:
    """The ``overrides.<section>`` mapping of a sample's sample.yaml ({} when none)."""
    ov = (sample.settings.get("overrides") or {}).get(section)
    return dict(ov) if isinstance(ov, dict) else {}


def merged_section(config: dict, section: str, overrides: dict, path: Path | None = None) -> dict:
    """Config ``section`` with ``overrides`` merged in (nested keys too), validated against its schema.

    UserError naming ``path`` (the sample.yaml) when an override key or value is wrong.
    """
    import copy

    from ..config import validate
    from ..report.summary import deep_merge

    if not overrides:
        return dict(config.get(section, {}) or {})
    if section not in config:
        raise UserError(f"overrides.{section}: no such config section "
                        f"(allowed: {', '.join(sorted(k for k, v in config.items() if isinstance(v, dict)))})",
                        path or "sample.yaml")
    merged = deep_merge(copy.deepcopy(dict(config[section])), overrides)
    try:
        return validate({section: merged})[section]
    except UserError as err:
        raise UserError(f"overrides: {err.message}", path or "sample.yaml") from None


def pixel_size_from_settings(settings: dict, image: str) -> tuple[float, float] | None:
    """Pixel size (x, y) in nm set for ``image`` in sample.yaml (per image, else per sample)."""
    per = (settings.get("images") or {}).get(image) or {}
    v = per.get("pixel_size_nm", settings.get("pixel_size_nm"))
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v), float(v)
    return float(v[0]), float(v[1])
