"""Snakemake adapter for rule `phase_id` (its stage function is in temtwin.workflow.stages)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake)  # noqa: F821
