"""What the Snakefile needs: validated config, discovered samples, input functions and targets.

Kept out of the Snakefile so that ``snakemake --lint`` stays clean and the logic is testable.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from pathlib import Path

from ..config import REPO_ROOT, load_config
from ..errors import UserError
from .discovery import Sample, discover, merged_section, sample_overrides
from .stages import STAGES
from .stages import enabled as stage_enabled


#: memory model of the per-image rules: (floor MB = the former fixed value, base MB, bytes per pixel):
#: about twice the growth of the peak RSS measured by bench/bench_startup.py between 2048² and 4096²
#: images; segment 1.35 times the 44 B/px measured up to 12 000²; phase_id twice the 48 B/px measured
#: (542 MB on 2048², 1124 MB on 4096² with 44 crystals: no longer grows with the crystal count); gpa
#: (136 B/px) about 1.2 times (bench/results/startup.md)
MEM_MODEL = {"ingest": (2000, 400, 14), "segment": (4000, 800, 60), "fft_peaks": (4000, 1200, 40),
             "phase_id": (4000, 1200, 100), "gpa": (6000, 1000, 100), "scan_correct": (3000, 400, 80),
             # per sample, scaled to its largest image (the overview): measured 24 B/px (image, labels, phase
             # map, coverage; bench/results/gigapixel_segment.md) + 33 B/px when GPA maps of it are propagated
             "register_stack": (6000, 1000, 56)}


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
        from .overrides import FILENAME, read_overrides

        self.overrides = {s: read_overrides(p, s) for s, smp in self.samples.items()
                          if (p := smp.path / FILENAME).is_file()}
        self._sections: dict[tuple[str, str | None], dict] = {}
        for name, smp in self.samples.items():   # a wrong override stops the run at start, naming the file
            for section in (smp.settings.get("overrides") or {}):
                self.section_for(section, name)
        for s in self.samples.values():                      # scan pairs name existing images
            for im in s.images:
                self.scan_pair_raw(SimpleNamespace(sample=s.name, image=im))
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

    def scan_pair_raw(self, wc) -> list[str]:
        """raw.h5 of the image's scan-pair partner (sample.yaml ``images.<a>.scan_pair: <b>``), or []."""
        from ..scan_correct.pair import scan_partner

        s = self.samples[wc.sample]
        pair = scan_partner(s.settings, wc.image)
        if pair is None:
            return []
        if pair[0] not in s.images:
            raise UserError(f"images.{wc.image if pair[1] == 'a' else pair[0]}.scan_pair names {pair[0]!r}, "
                            f"which is no image of this sample; use one of {', '.join(sorted(s.images))}",
                            s.sample_yaml)
        return [self.r(wc.sample, pair[0], "raw.h5")]

    def label_override(self, wc) -> list[str]:
        p = self.samples[wc.sample].label_overrides.get(wc.image)
        return [str(p)] if p else []

    def phase_files(self, wc) -> list[str]:
        """Candidate CIFs: resources/phases, config `phase_id.cif_folders`, <sample>/phases."""
        return [str(f) for f in candidate_cifs(self.config, self.samples[wc.sample])]

    def eels_files(self, wc) -> list[str]:
        return [str(p) for p in self.samples[wc.sample].eels_files]

    def map_elements(self, wc) -> list[str]:
        """Element symbols of the sample's composition maps (eels/<El>.*), for phase_id's candidates."""
        return self.samples[wc.sample].map_elements

    def mem_mb(self, rule: str):
        """A rule's ``resources: mem_mb=``: scaled to the image's pixel count (read from the file's header)."""
        def f(wildcards, attempt=1):
            from ..io.ingest import image_pixels

            key = (wildcards.sample, wildcards.image)
            if key not in self._pixels:
                self._pixels[key] = image_pixels(self.samples[wildcards.sample].images[wildcards.image]) or 0
            return mem_mb_for(rule, self._pixels[key]) * attempt
        return f

    def mem_mb_sample(self, rule: str):
        """``resources: mem_mb=`` of a per-sample rule (register_stack): scaled to the pixel count of the
        sample's largest image (the overview, which the rule holds at full size)."""
        def f(wildcards, attempt=1):
            from ..io.ingest import image_pixels

            most = 0
            for im, path in self.samples[wildcards.sample].images.items():
                key = (wildcards.sample, im)
                if key not in self._pixels:
                    self._pixels[key] = image_pixels(path) or 0
                most = max(most, self._pixels[key])
            return mem_mb_for(rule, most) * attempt
        return f

    def per_image(self, stage_file: str):
        """Input function: ``stage_file`` (e.g. 'gpa.h5') of every image of the sample."""
        def f(wc):
            return [self.r(wc.sample, im, stage_file) for im in self.images(wc.sample)]
        return f

    def relaxed_structure(self, section: str):
        """Input function: ``relaxed.extxyz`` when config ``<section>.structure`` is ``relaxed``, else none.

        The as-built structure needs only model.h5, so Keating is then not a dependency of the stage.
        """
        def f(wc):
            if self.config.get(section, {}).get("structure") == "relaxed" and self.enabled("keating"):
                return [self.r(wc.sample, "relaxed.extxyz")]
            return []
        return f

    def chunks(self) -> list[int]:
        return list(range(int(self.config["tb_moments"]["n_chunks"])))

    def settings(self, *sections: str, overrides: str | None = None):
        """A rule's ``params: settings=``: the config sections its stage reads, and the seed.

        Each section is the global one with the sample's ``sample.yaml`` ``overrides.<section>`` merged in
        (:meth:`section_for`), so per-sample overrides apply to every stage in one way.  Snakemake's
        ``params`` rerun trigger compares these values with those recorded when the job last ran, so
        changing one key of one section (globally or in one sample's overrides) reruns exactly that
        stage and what depends on it.  Every rule declares the sections it uses this way.

        With ``overrides=<rule>`` (segment, phase_id) the settings also carry, when the job's image has
        corrections in the sample's overrides.yaml (written by the viewer), their slice (``overrides``), so
        editing that file reruns exactly the jobs whose corrections changed.
        """
        def f(wc):
            sample = getattr(wc, "sample", None)
            out = {"seed": int(self.config["seed"]), **{s: self.section_for(s, sample) for s in sections}}
            if overrides is not None:
                from .overrides import stage_actions

                acts = stage_actions(self.overrides.get(sample), getattr(wc, "image", None), overrides)
                if acts:
                    out["overrides"] = acts
            return out
        return f

    def section_for(self, section: str, sample: str | None = None) -> dict:
        """Config ``section`` for ``sample``: the global section with the sample's overrides, validated."""
        key = (section, sample)
        if key not in self._sections:
            smp = self.samples.get(sample) if sample else None
            ov = sample_overrides(smp, section) if smp else {}
            self._sections[key] = merged_section(self.config, section, ov, smp.sample_yaml if smp else None)
        return self._sections[key]

    def overrides_input(self, stage: str):
        """Input function: the sample's overrides.yaml for a ``stage`` job that has corrections to honour.

        Marked ``ancient`` so that editing the file reruns only the jobs whose own slice changed (the
        slice is the rule's ``params: overrides=``, see :meth:`overrides_params`); adding or removing a
        job's first correction changes its input list, which reruns it too.
        """
        def f(wc):
            from snakemake.io import ancient

            from .overrides import FILENAME, stage_actions

            if not stage_actions(self.overrides.get(wc.sample), wc.image, stage):
                return []
            return [ancient(str(self.samples[wc.sample].path / FILENAME))]
        return f

    def overrides_file(self, wc) -> list[str]:
        """The sample's overrides.yaml when present (the viewer shows the corrections already made)."""
        from .overrides import FILENAME

        p = self.samples[wc.sample].path / FILENAME
        return [str(p)] if p.is_file() else []

    def viewer_inputs(self, wc) -> list[str]:
        """Every result file the viewer page of a sample reads (per-image files and the stage sinks)."""
        return self.sample_targets(wc.sample) + [self.r(wc.sample, "summary.json")]

    def enabled(self, stage: str) -> bool:
        return bool(self.config["stages"].get(stage, True))

    # ---------------------------------------------------------------- targets
    def sample_targets(self, sample: str) -> list[str]:
        """The result files of every enabled per-image and per-sample stage of ``sample`` (the registry's)."""
        t = [self.r(sample, im, st.result) for st in STAGES if st.scope == "image" and self.stage_on(st)
             for im in self.images(sample)]
        return t + [self.r(sample, st.result) for st in STAGES
                    if st.scope == "sample" and st.summary and self.stage_on(st)]

    def stage_on(self, st) -> bool:
        """Whether registry stage ``st`` runs with this config's ``stages`` switches."""
        return stage_enabled(st, self.config["stages"])

    def summary_inputs(self, wc) -> list[str]:
        """Input function of ``summarize``: every result file of sample ``wc.sample`` (it reads them all)."""
        return self.sample_targets(wc.sample)

    def write_partial_table(self) -> None:
        """After a failed run: summary.tsv from the samples that finished, failed ones with reasons."""
        from ..report.summary import write_table

        results = Path(self.results)
        if results.is_dir():
            n, failed = write_table(results, list(self.samples), results / "summary.tsv")
            print(f"temtwin: {results / 'summary.tsv'}: {n} rows; failed sample(s): {', '.join(failed) or 'none'}",
                  file=sys.stderr)

    def all_targets(self) -> list[str]:
        t = [self.r(s, "summary.json") for s in self.samples] + [self.r("summary.tsv")]
        if self.enabled("viewer"):
            t += [self.r(s, "viewer.html") for s in self.samples] + [self.r("index.html")]
        return t


def make_workflow(config: dict) -> Workflow:
    """Build the Workflow or stop with one line for user errors (no traceback)."""
    try:
        return Workflow(config)
    except UserError as err:
        print(f"temtwin: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
