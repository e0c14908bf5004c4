"""What the Snakefile needs: validated config, discovered samples, input functions and targets.

Kept out of the Snakefile so that ``snakemake --lint`` stays clean and the logic is testable.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import REPO_ROOT, load_config
from ..errors import UserError
from .discovery import Sample, discover

PER_IMAGE_FILES = ("image.h5", "segmentation.h5", "peaks.h5", "phases.h5", "gpa.h5")

#: memory model of the per-image rules: (floor MB = the former fixed value, base MB, bytes per pixel):
#: about twice the growth of the peak RSS measured by bench/bench_startup.py between 2048² and 4096²
#: images; segment 1.35 times the 44 B/px measured up to 12 000²; phase_id (845 B/px measured) and gpa
#: (136 B/px) about 1.2 times (bench/results/startup.md)
MEM_MODEL = {"ingest": (2000, 400, 14), "segment": (4000, 800, 60), "fft_peaks": (4000, 1200, 40),
             "phase_id": (4000, 1200, 1000), "gpa": (6000, 1000, 100)}


def mem_mb_for(rule: str, pixels: int) -> int:
    """Memory (MB) a per-image rule declares for an image of ``pixels`` pixels (all frames)."""
    floor, base, bpp = MEM_MODEL[rule]
    return int(max(floor, base + bpp * pixels / 2 ** 20))


def candidate_cifs(config: dict, sample: Sample) -> list[Path]:
    """A sample's candidate CIFs: resources/phases, config `phase_id.cif_folders`, <sample>/phases."""
    files: list[Path] = []
    cfg = config.get("phase_id", {}) or {}
    if cfg.get("use_builtin_phases", True):
        files += sorted((REPO_ROOT / "resources" / "phases").glob("*.cif"))
    for folder in cfg.get("cif_folders", []) or []:
        files += sorted(Path(folder).glob("*.cif"))
    files += sample.phase_files
    return files


def check_phase_names(config: dict, samples: dict[str, Sample]) -> None:
    """At the start of a run: every phase named in sample.yaml `phases` (else config `phase_id.phases`)
    is the stem of one of the sample's candidate CIFs; UserError naming the file and the names otherwise."""
    for s in samples.values():
        if s.settings.get("phases"):
            names, where, key = s.settings["phases"], s.sample_yaml, "phases"
        else:
            names, where, key = (config.get("phase_id") or {}).get("phases") or [], "config", "phase_id.phases"
        if not names:
            continue
        have = sorted({f.stem for f in candidate_cifs(config, s)})
        unknown = [n for n in names if n not in have]
        if unknown:
            raise UserError(f"{key}: unknown phase(s) {', '.join(unknown)} for sample {s.name} (no such CIF); "
                            f"use CIF stems among {', '.join(have) or 'none'}, or add the CIF to "
                            f"{s.path / 'phases'}/", where)


class Workflow:
    """Dataset view for the Snakefile; paths are relative to the working directory."""

    def __init__(self, config: dict):
        self.config = load_config(config)
        self.results = self.config["results"].rstrip("/")
        self.samples: dict[str, Sample] = discover(self.config["dataset"], self.config.get("samples") or None)
        check_phase_names(self.config, self.samples)
        self._pixels: dict[tuple[str, str], int] = {}

    # ---------------------------------------------------------------- paths
    def r(self, *parts: str) -> str:
        return "/".join([self.results, *parts])

    def images(self, sample: str) -> list[str]:
        return list(self.samples[sample].images)

    def image_file(self, wc) -> str:
        return str(self.samples[wc.sample].images[wc.image])

    def sample_files(self, wc) -> list[str]:
        """sample.yaml (when present): ingest reruns when calibration settings change."""
        p = self.samples[wc.sample].sample_yaml
        return [str(p)] if p else []

    def label_override(self, wc) -> list[str]:
        p = self.samples[wc.sample].label_overrides.get(wc.image)
        return [str(p)] if p else []

    def phase_files(self, wc) -> list[str]:
        """Candidate CIFs: resources/phases, config `phase_id.cif_folders`, <sample>/phases."""
        return [str(f) for f in candidate_cifs(self.config, self.samples[wc.sample])]

    def eels_files(self, wc) -> list[str]:
        return [str(p) for p in self.samples[wc.sample].eels_files]

    def mem_mb(self, rule: str):
        """A rule's ``resources: mem_mb=``: scaled to the image's pixel count (read from the file's header)."""
        def f(wildcards, attempt=1):
            from ..io.ingest import image_pixels

            key = (wildcards.sample, wildcards.image)
            if key not in self._pixels:
                self._pixels[key] = image_pixels(self.samples[wildcards.sample].images[wildcards.image]) or 0
            return mem_mb_for(rule, self._pixels[key]) * attempt
        return f

    def per_image(self, stage_file: str):
        """Input function: ``stage_file`` (e.g. 'gpa.h5') of every image of the sample."""
        def f(wc):
            return [self.r(wc.sample, im, stage_file) for im in self.images(wc.sample)]
        return f

    def chunks(self) -> list[int]:
        return list(range(int(self.config["tight_binding"]["n_chunks"])))

    def settings(self, *sections: str) -> dict:
        """A rule's ``params: settings=``: the config sections its stage reads, and the seed.

        Snakemake's ``params`` rerun trigger compares these with the values recorded when the job last
        ran, so changing one key of one section reruns exactly that stage and what depends on it.
        Every rule declares the sections it uses this way (one section per stage, named like it).
        """
        return {"seed": int(self.config["seed"]), **{s: self.config.get(s, {}) for s in sections}}

    def enabled(self, stage: str) -> bool:
        return bool(self.config["stages"].get(stage, True))

    # ---------------------------------------------------------------- targets
    def sample_targets(self, sample: str) -> list[str]:
        t = []
        for im in self.images(sample):
            t += [self.r(sample, im, f) for f in ("image.h5", "segmentation.h5", "peaks.h5", "phases.h5", "gpa.h5")]
        t.append(self.r(sample, "stack.h5"))
        if self.enabled("fem_geometry"):
            t.append(self.r(sample, "fem", "fem.h5"))
        if self.enabled("atomic_model"):
            t.append(self.r(sample, "model.h5"))
            if self.enabled("keating"):
                t.append(self.r(sample, "keating.h5"))
            if self.enabled("phonons"):
                t.append(self.r(sample, "phonons.h5"))
            if self.enabled("tight_binding"):
                t.append(self.r(sample, "tb.h5"))
        return t

    def summary_inputs(self, wc=None) -> list[str]:
        """The last products of each sample (they depend on every earlier result of the sample).

        summarize reads every stage file of the sample; declaring only the sinks keeps the DAG readable
        while any upstream change still reaches summarize through them.
        """
        t: list[str] = []
        for s in self.samples:
            sinks = [f for f in self.sample_targets(s) if not f.endswith(PER_IMAGE_FILES)]
            t += [f for f in sinks if not f.endswith("/model.h5") or not (self.enabled("keating")
                                                                         or self.enabled("tight_binding"))]
        return t

    def all_targets(self) -> list[str]:
        return [self.r(s, "summary.json") for s in self.samples] + [self.r("summary.tsv")]


def make_workflow(config: dict) -> Workflow:
    """Build the Workflow or stop with one line for user errors (no traceback)."""
    try:
        return Workflow(config)
    except UserError as err:
        print(f"temtwin: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
