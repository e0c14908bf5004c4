"""The stage registry: every stage of the pipeline, its names and its result file, in one place.

This table feeds the workflow's targets (:meth:`temtwin.workflow.snake.Workflow.sample_targets`), the
files ``summarize`` merges into ``summary.json``, the rules' report categories and the stage table of
``docs/DEVELOPING.md`` (:func:`markdown_table`; a test keeps that page in step). A stage has one name:
its rule, its config section, its stage module (``temtwin.stages.<rule>``, function ``run``), its figure
folder (``figures/<rule>/``) and its report category; its rule declares
``params: settings=W.settings(section, *reads)``.  Exceptions: the three viewer rules share the section
``viewer``; ``summarize`` and ``summary_table`` have none; ``tb_ldos`` also reads the model keys of
``tb_moments`` (``reads``), so an LDOS-only key does not rerun the moments.

Adding a stage: a row here, ``rules/<rule>.smk``, ``scripts/<rule>.py`` (``run_stage(snakemake)``), its
stage function ``run(ctx)`` in ``src/temtwin/stages/<rule>.py`` (the same name again), the config section's
schema, and the science in ``src/temtwin/<package>/``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes
    ----------
    rule: rule name (also the figure folder and report category name).
    section: the stage's own config section (its rule's name; "" for none; ``viewer`` for the viewer rules).
    scope: ``image`` (one job per image: ``results/<sample>/<image>/<result>``), ``sample`` (one job per
        sample: ``results/<sample>/<result>``), ``chunk`` (several jobs per sample) or ``run`` (one job).
    result: the result file, relative to the scope's folder.
    title: what the stage gives, as the report category shows it.
    switch: ``stages.<switch>`` config key that turns the stage on (None: always on).
    requires: other switches that must be on too (e.g. the physics needs the atomic model).
    summary: whether the result file carries a fragment of ``summary.json``.
    reads: other stages' config sections the rule declares too (after its own).
    """

    rule: str
    section: str
    scope: str
    result: str
    title: str
    switch: str | None = None
    requires: tuple[str, ...] = ()
    summary: bool = True
    reads: tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        """The stage function, ``temtwin.stages.<rule>:run`` (one module per rule)."""
        return f"temtwin.stages.{self.rule}:run"

    @property
    def sections(self) -> tuple[str, ...]:
        """The config sections the rule declares in ``params: settings=W.settings(...)``, in order."""
        return (self.reads + (self.section,)) if self.section else self.reads


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingest", "image", "raw.h5", "Micrographs", summary=False),
    Stage("scan_correct", "scan_correct", "image", "image.h5", "Scan correction"),
    Stage("segment", "segment", "image", "segmentation.h5", "Segmentation"),
    Stage("fft_peaks", "fft_peaks", "image", "peaks.h5", "FFT peaks"),
    Stage("phase_id", "phase_id", "image", "phases.h5", "Phases and orientations"),
    Stage("gpa", "gpa", "image", "gpa.h5", "Strain (GPA)"),
    Stage("register_stack", "register_stack", "sample", "stack.h5", "Image stack"),
    Stage("fem_geometry", "fem_geometry", "sample", "fem/fem.h5", "FEM geometry", switch="fem_geometry"),
    Stage("fem_relax", "fem_relax", "sample", "fem/relax.h5", "FEM relaxation (lamella and device)",
          switch="fem_relax", requires=("fem_geometry",)),
    Stage("spin_orbit", "spin_orbit", "sample", "spin_orbit.h5", "Spin-orbit map", switch="spin_orbit",
          requires=("fem_geometry", "fem_relax")),
    Stage("atomic_model", "atomic_model", "sample", "model.h5", "Atomic model", switch="atomic_model"),
    Stage("keating", "keating", "sample", "keating.h5", "Keating forces", switch="keating",
          requires=("atomic_model",)),
    Stage("simulate_image", "simulate_image", "image", "simulation.h5", "Simulated micrographs",
          switch="simulate_image", requires=("atomic_model",)),
    Stage("phonons", "phonons", "sample", "phonons.h5", "Phonons", switch="phonons", requires=("atomic_model",)),
    Stage("tb_moments", "tb_moments", "chunk", "tb/moments_{chunk}.h5", "KPM moments", switch="tight_binding",
          requires=("atomic_model",), summary=False),
    Stage("tb_ldos", "tb_ldos", "sample", "tb.h5", "Electronic LDOS", switch="tight_binding",
          requires=("atomic_model",), reads=("tb_moments",)),
    Stage("viewer_assets", "viewer", "run", "viewer_assets/plotly.min.js", "Viewer assets", switch="viewer",
          summary=False),
    Stage("summarize", "", "sample", "summary.json", "Summary", summary=False),
    Stage("summary_table", "", "run", "summary.tsv", "Summary table", summary=False),
    Stage("viewer", "viewer", "sample", "viewer.html", "Viewer page", switch="viewer", summary=False),
    Stage("viewer_index", "viewer", "run", "index.html", "Viewer index", switch="viewer", summary=False),
)

BY_RULE: dict[str, Stage] = {s.rule: s for s in STAGES}


def stage(rule: str) -> Stage:
    """The registry entry of ``rule`` (KeyError names the known rules)."""
    try:
        return BY_RULE[rule]
    except KeyError:
        raise KeyError(f"no stage {rule!r} in temtwin.workflow.stages (known: {', '.join(BY_RULE)})") from None


def enabled(s: Stage, switches: dict) -> bool:
    """Whether ``s`` runs with the config's ``stages`` switches (missing switches are on)."""
    return all(bool(switches.get(k, True)) for k in ((s.switch,) if s.switch else ()) + s.requires)


def category(rule: str) -> str:
    """The report category of ``rule``: '<n> <title>' numbered in pipeline order (figures' stages only)."""
    with_figures = [s for s in STAGES if s.scope in ("image", "sample") and s.summary]
    n = next(i for i, s in enumerate(with_figures, 1) if s.rule == rule)
    return f"{n} {stage(rule).title}"


def summary_files(scope: str) -> tuple[str, ...]:
    """Result files of ``scope`` ('image' or 'sample') whose summary fragments summary.json merges."""
    return tuple(s.result for s in STAGES if s.scope == scope and s.summary)


def markdown_table() -> str:
    """The registry as the markdown table shown in docs/DEVELOPING.md."""
    where = {"image": "results/<sample>/<image>/", "sample": "results/<sample>/", "chunk": "results/<sample>/",
             "run": "results/"}
    rows = ["| stage = rule = config section = figures/ folder | config sections declared | one job per | result "
            "| switch | stage module |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in STAGES:
        sw = " + ".join(f"`stages.{k}`" for k in ((s.switch,) if s.switch else ()) + s.requires) or "always"
        secs = " + ".join(f"`{x}`" for x in s.sections) or "—"
        rows.append(f"| `{s.rule}` | {secs} | {s.scope} | "
                    f"`{where[s.scope]}{s.result}` | {sw} | `temtwin.stages.{s.rule}` |")
    return "\n".join(rows)
