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


class Workflow:
    """Dataset view for the Snakefile; paths are relative to the working directory."""

    def __init__(self, config: dict):
        self.config = load_config(config)
        self.results = self.config["results"].rstrip("/")
        self.samples: dict[str, Sample] = discover(self.config["dataset"], self.config.get("samples") or None)

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
        files: list[Path] = []
        cfg = self.config.get("phase_id", {})
        if cfg.get("use_builtin_phases", True):
            files += sorted((REPO_ROOT / "resources" / "phases").glob("*.cif"))
        for folder in cfg.get("cif_folders", []) or []:
            files += sorted(Path(folder).glob("*.cif"))
        files += self.samples[wc.sample].phase_files
        return [str(f) for f in files]

    def eels_files(self, wc) -> list[str]:
        return [str(p) for p in self.samples[wc.sample].eels_files]

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
            if self.enabled("simulate_image"):
                t += [self.r(sample, im, "simulation.h5") for im in self.images(sample)]
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
