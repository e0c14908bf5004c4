"""Snakemake adapter for rule `register_stack` (the science is in temtwin.stack.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.stack.stage:run")  # noqa: F821
