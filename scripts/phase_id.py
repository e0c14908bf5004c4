"""Snakemake adapter for rule `phase_id` (the science is in temtwin.phase.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.phase.stage:run")  # noqa: F821
