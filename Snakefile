# temtwin: (S)TEM micrographs -> phases, strain, digital twins and their physics.
# Run:  snakemake --cores 8 [--config dataset=PATH]      (see README.md)

import os

from temtwin.workflow.snake import make_workflow
from temtwin.workflow.stages import category


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


W = make_workflow(config)
config.update(W.config)
R = W.results


report: "report/workflow.rst"


wildcard_constraints:
    sample=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    image=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    chunk=r"\d+",


include: "rules/ingest.smk"
include: "rules/scan_correct.smk"
include: "rules/segment.smk"
include: "rules/fft_peaks.smk"
include: "rules/phase_id.smk"
include: "rules/register_stack.smk"
include: "rules/gpa.smk"
include: "rules/fem_geometry.smk"
include: "rules/fem_relax.smk"
include: "rules/spin_orbit.smk"
include: "rules/atomic_model.smk"
include: "rules/keating.smk"
include: "rules/phonons.smk"
include: "rules/tb_moments.smk"
include: "rules/tb_ldos.smk"
include: "rules/simulate_image.smk"
include: "rules/summarize.smk"
include: "rules/viewer.smk"


rule all:
    input:
        W.all_targets(),
    default_target: True


onerror:
    # One failing sample must not hide the others: tabulate what exists (with --keep-going the other
    # samples' summary.json files were written) and list the failed samples with their reasons.
    W.write_partial_table()
