"""Snakemake adapter for rule `gpa` (the science is in temtwin.gpa.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.gpa.stage:run")  # noqa: F821
