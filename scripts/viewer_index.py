"""Snakemake adapter for rule `viewer_index` (its stage function is in temtwin.workflow.stages)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake)  # noqa: F821
