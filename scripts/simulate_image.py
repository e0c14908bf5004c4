"""Snakemake adapter for rule `simulate_image` (its stage function is in temtwin.workflow.stages)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake)  # noqa: F821
